"""The staff admin of appointments: a list and a calendar per location; booking, moving and cancelling.

Every change to a booking goes through appointments.services (the CRM retry
through appointments.crm_sync); the views here read a form, call the service and
show its refusal. Everything is scoped to the staff user's locations: lists,
the calendar, the booking form's choices and every page reached by URL.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from datetime import date, timedelta
from typing import Any
from urllib.parse import urlencode

from django.contrib import admin, messages
from django.contrib.admin.helpers import ACTION_CHECKBOX_NAME
from django.core.exceptions import PermissionDenied
from django.db.models import QuerySet
from django.http import Http404, HttpRequest, HttpResponse, HttpResponseRedirect
from django.shortcuts import get_object_or_404
from django.template.response import TemplateResponse
from django.urls import URLPattern, path, reverse
from django.utils import timezone
from django.utils.html import format_html, format_html_join
from django.utils.text import Truncator

from appointments import calendar, crm_sync, services
from appointments.forms import (
    BookForm,
    CancelForm,
    MoveForm,
    price_display,
)
from appointments.models import (
    Appointment,
    AppointmentSource,
    AppointmentStatus,
    CrmSyncStatus,
    ScheduledMessage,
)
from leadorch.errors import ApplicationError
from leads.models import OPEN_STATUSES, Lead
from locations import selectors as location_selectors
from locations.admin_scoping import LocationScopedAdminMixin, ReadOnlyAdminMixin
from locations.models import Location

RETRYABLE_SYNC = (CrmSyncStatus.FAILED, CrmSyncStatus.GAVE_UP)


def _may_see_location(user: Any, location_id: int) -> bool:
    ids = location_selectors.location_ids_visible_to(user=user)
    return ids is None or location_id in ids


# --- the calendar ------------------------------------------------------------------------


def calendar_url(location: Location, day: date, view: str = "day") -> str:
    query = urlencode(
        {"location": location.pk, "date": f"{day:%Y-%m-%d}", "view": view}
    )
    return f"{reverse('admin:appointments_calendar')}?{query}"


# --- the admin ---------------------------------------------------------------------------


@admin.register(Appointment)
class AppointmentAdmin(LocationScopedAdminMixin, admin.ModelAdmin):
    location_path = "location"
    list_display = (
        "start_local",
        "lead",
        "service",
        "location",
        "bay",
        "status",
        "source",
        "crm_sync",
    )
    list_filter = (
        "status",
        ("location", admin.RelatedOnlyFieldListFilter),
        "source",
        "crm_sync_status",
    )
    list_select_related = ("lead", "service", "location")
    search_fields = (
        "lead__first_name",
        "lead__last_name",
        "lead__email",
        "lead__phone",
    )
    date_hierarchy = "starts_at"
    ordering = ("-starts_at", "bay")
    actions = [
        "cancel_appointments",
        "mark_completed",
        "mark_no_show",
        "retry_crm_sync",
    ]
    fieldsets = (
        (
            None,
            {
                "fields": (
                    "lead",
                    "location",
                    "service",
                    "start_local",
                    "end_local",
                    "bay",
                    "status",
                    "source",
                    "price",
                    "is_additional",
                    "booked_by",
                )
            },
        ),
        ("Notes", {"fields": ("notes",)}),
        ("Cancellation", {"fields": ("cancelled_at", "cancel_reason")}),
        ("Reminders and follow-ups", {"fields": ("scheduled",)}),
        (
            "CRM",
            {
                "fields": (
                    "crm_appointment_id",
                    "crm_sync_status",
                    "crm_sync_error",
                    "crm_sync_attempts",
                    "crm_synced_at",
                    "crm_next_attempt_at",
                )
            },
        ),
        ("Record", {"fields": ("public_id", "created_at", "updated_at")}),
    )
    # Everything but the notes: a booking changes only through the services (move, cancel, ...).
    readonly_fields = tuple(
        name
        for _, options in fieldsets
        for name in options["fields"]
        if name != "notes"
    )

    # --- list and change page -------------------------------------------------------------

    @admin.display(description="start (local time)", ordering="starts_at")
    def start_local(self, obj: Appointment) -> str:
        return calendar.local_display(obj.starts_at, obj.location.zone)

    @admin.display(description="end (local time)")
    def end_local(self, obj: Appointment) -> str:
        return calendar.local_display(obj.ends_at, obj.location.zone)

    @admin.display(description="price")
    def price(self, obj: Appointment) -> str:
        return price_display(obj.price_cents)

    @admin.display(description="CRM sync", ordering="crm_sync_status")
    def crm_sync(self, obj: Appointment) -> str:
        if not obj.crm_sync_error:
            return obj.get_crm_sync_status_display()
        return format_html(
            '{}<br><small title="{}">{}</small>',
            obj.get_crm_sync_status_display(),
            obj.crm_sync_error,
            Truncator(obj.crm_sync_error).chars(120),
        )

    @admin.display(description="scheduled messages")
    def scheduled(self, obj: Appointment) -> str:
        rows = [
            (
                message.get_kind_display(),
                message.get_channel_display(),
                calendar.local_display(message.due_at, obj.location.zone),
                message.get_status_display(),
                f" ({message.reason})" if message.reason else "",
            )
            for message in obj.scheduled_messages.order_by("due_at", "pk")
        ]
        if not rows:
            return "None."
        return format_html_join("", "{} by {}, {}: {}{}<br>", rows)

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        # Appointments are cancelled, never deleted: the customer, the CRM and the history rely on them.
        return False

    def add_view(
        self,
        request: HttpRequest,
        form_url: str = "",
        extra_context: dict[str, Any] | None = None,
    ) -> HttpResponse:
        # An appointment is booked for a lead in one of its location's free times.
        return HttpResponseRedirect(reverse("admin:appointments_book_start"))

    def save_model(
        self, request: HttpRequest, obj: Appointment, form: Any, change: bool
    ) -> None:
        obj.save(update_fields=["notes", "updated_at"])

    def render_change_form(
        self,
        request: HttpRequest,
        context: dict[str, Any],
        add: bool = False,
        change: bool = False,
        form_url: str = "",
        obj: Appointment | None = None,
    ) -> HttpResponse:
        if obj is not None and obj.pk:
            zone = obj.location.zone
            may_change = self.has_change_permission(request, obj)
            is_booked = obj.status == AppointmentStatus.BOOKED
            context.update(
                calendar_url=calendar_url(
                    obj.location, obj.starts_at.astimezone(zone).date()
                ),
                move_url=reverse("admin:appointments_move", args=[obj.pk])
                if may_change and is_booked
                else "",
                cancel_url=reverse("admin:appointments_cancel", args=[obj.pk])
                if may_change and is_booked
                else "",
                can_retry_crm_sync=may_change and obj.crm_sync_status in RETRYABLE_SYNC,
            )
        return super().render_change_form(request, context, add, change, form_url, obj)

    def response_change(self, request: HttpRequest, obj: Appointment) -> HttpResponse:
        if "_retry_crm_sync" in request.POST:
            self._retry_sync(request, [obj])
            return HttpResponseRedirect(request.path)
        return super().response_change(request, obj)

    def changelist_view(
        self, request: HttpRequest, extra_context: dict[str, Any] | None = None
    ) -> HttpResponse:
        extra = {
            **(extra_context or {}),
            "calendar_url": reverse("admin:appointments_calendar"),
        }
        return super().changelist_view(request, extra)

    # --- actions ----------------------------------------------------------------------------

    @admin.action(description="Cancel selected appointments", permissions=["change"])
    def cancel_appointments(
        self, request: HttpRequest, queryset: QuerySet[Appointment]
    ) -> HttpResponse | None:
        form = CancelForm(request.POST if "apply" in request.POST else None)
        if not form.is_valid():
            appointments = queryset.select_related("lead", "location", "service")
            context = {
                **self.admin_site.each_context(request),
                "title": "Cancel appointments",
                "form": form,
                "appointments": [
                    (a, calendar.appointment_label(a)) for a in appointments
                ],
                "opts": self.model._meta,
                "action_checkbox_name": ACTION_CHECKBOX_NAME,
                "action": "cancel_appointments",
            }
            return TemplateResponse(request, "admin/appointments/cancel.html", context)
        reason = form.cleaned_data["reason"]
        self._each(
            request,
            queryset,
            lambda a: services.appointment_cancel(
                appointment=a, reason=reason, actor=request.user
            ),
            "cancelled",
        )
        return None

    @admin.action(
        description="Mark selected appointments completed", permissions=["change"]
    )
    def mark_completed(
        self, request: HttpRequest, queryset: QuerySet[Appointment]
    ) -> None:
        self._each(
            request,
            queryset,
            lambda a: services.appointment_complete(appointment=a, actor=request.user),
            "marked completed",
        )

    @admin.action(
        description="Mark selected appointments as no-shows", permissions=["change"]
    )
    def mark_no_show(
        self, request: HttpRequest, queryset: QuerySet[Appointment]
    ) -> None:
        self._each(
            request,
            queryset,
            lambda a: services.appointment_mark_no_show(
                appointment=a, actor=request.user
            ),
            "marked as no-shows",
        )

    @admin.action(
        description="Retry the CRM sync of selected appointments",
        permissions=["change"],
    )
    def retry_crm_sync(
        self, request: HttpRequest, queryset: QuerySet[Appointment]
    ) -> None:
        self._retry_sync(request, queryset)

    def _each(
        self,
        request: HttpRequest,
        queryset: QuerySet[Appointment],
        operation: Callable[[Appointment], Appointment],
        verb: str,
    ) -> None:
        """Run a service on each row; a refusal becomes a message naming the appointment."""
        done = 0
        for appointment in queryset.select_related("lead", "location", "service"):
            try:
                operation(appointment)
            except ApplicationError as error:
                self.message_user(
                    request,
                    f"{calendar.appointment_label(appointment)}: {error.message}",
                    messages.ERROR,
                )
            else:
                done += 1
        if done:
            self.message_user(
                request, f"{done} appointment(s) {verb}.", messages.SUCCESS
            )

    def _retry_sync(
        self, request: HttpRequest, appointments: Iterable[Appointment]
    ) -> None:
        retried, left = 0, 0
        for appointment in appointments:
            if appointment.crm_sync_status in RETRYABLE_SYNC:
                crm_sync.appointment_crm_sync_retry(appointment=appointment)
                retried += 1
            else:
                left += 1
        if retried:
            self.message_user(
                request,
                f"CRM sync queued again for {retried} appointment(s).",
                messages.SUCCESS,
            )
        if left:
            self.message_user(
                request,
                f"{left} appointment(s) had no failed CRM sync and were left as they are.",
                messages.WARNING,
            )

    # --- custom views -----------------------------------------------------------------------

    def get_urls(self) -> list[URLPattern]:
        wrap = self.admin_site.admin_view
        return [
            path("calendar/", wrap(self.calendar_view), name="appointments_calendar"),
            path("book/", wrap(self.book_view), name="appointments_book_start"),
            path("book/<int:lead_id>/", wrap(self.book_view), name="appointments_book"),
            path(
                "move/<int:appointment_id>/",
                wrap(self.move_view),
                name="appointments_move",
            ),
            path(
                "cancel/<int:appointment_id>/",
                wrap(self.cancel_view),
                name="appointments_cancel",
            ),
            *super().get_urls(),
        ]

    def _context(
        self, request: HttpRequest, title: str, **values: Any
    ) -> dict[str, Any]:
        return {
            **self.admin_site.each_context(request),
            "title": title,
            "opts": self.model._meta,
            **values,
        }

    def _location(self, request: HttpRequest, value: str | None) -> Location | None:
        """The location asked for (404 unless the user may see it), else the user's first one."""
        locations = location_selectors.location_list_for_user(user=request.user)
        if not value:
            return locations.first()
        try:
            location_id = int(value)
        except ValueError as error:
            raise Http404("No such location.") from error
        return get_object_or_404(locations, pk=location_id)

    def _appointment(self, request: HttpRequest, appointment_id: int) -> Appointment:
        appointment = (
            self.get_queryset(request)
            .select_related("lead", "location", "service")
            .filter(pk=appointment_id)
            .first()
        )
        if appointment is None:
            raise Http404("No such appointment.")
        if not self.has_change_permission(request, appointment):
            raise PermissionDenied
        return appointment

    def calendar_view(self, request: HttpRequest) -> HttpResponse:
        """A location's day (a column per bay, a row per half hour) or week, in its own time."""
        if not self.has_view_permission(request):
            raise PermissionDenied
        location = self._location(request, request.GET.get("location"))
        if location is None:
            return TemplateResponse(
                request,
                "admin/appointments/calendar.html",
                self._context(request, "Calendar", location=None),
            )
        zone = location.zone
        today = timezone.now().astimezone(zone).date()
        day = calendar.parse_date(request.GET.get("date")) or today
        view = "week" if request.GET.get("view") == "week" else "day"
        first, count = (
            (day - timedelta(days=day.weekday()), 7) if view == "week" else (day, 1)
        )
        plans = calendar.calendar_days(
            self.get_queryset(request), location, first, count
        )
        step = timedelta(days=count)
        context = self._context(
            request,
            f"Calendar: {location.name}",
            location=location,
            locations=location_selectors.location_list_for_user(user=request.user),
            zone_name=location.time_zone,
            view=view,
            day=day,
            date_value=f"{day:%Y-%m-%d}",
            heading=(
                f"Week of {first:%A, %B %d, %Y}" if view == "week" else plans[0].label
            ),
            previous_url=calendar_url(location, day - step, view),
            next_url=calendar_url(location, day + step, view),
            today_url=calendar_url(location, today, view),
            day_url=calendar_url(location, day, "day"),
            week_url=calendar_url(location, day, "week"),
            book_url=(
                f"{reverse('admin:appointments_book_start')}?"
                + urlencode({"location": location.pk, "date": f"{day:%Y-%m-%d}"})
                if self.has_add_permission(request)
                else ""
            ),
            changelist_url=reverse("admin:appointments_appointment_changelist"),
        )
        if view == "week":
            context["days"] = [
                (plan, calendar_url(location, plan.day, "day")) for plan in plans
            ]
        else:
            plan = plans[0]
            context["plan"] = plan
            context["bays"], context["rows"] = calendar.day_grid(plan, location.bays)
        return TemplateResponse(request, "admin/appointments/calendar.html", context)

    def book_view(
        self, request: HttpRequest, lead_id: int | None = None
    ) -> HttpResponse:
        """Book for a lead: choose the lead (unless in the URL), service and day, then a free time."""
        if not self.has_add_permission(request):
            raise PermissionDenied
        visible_leads = location_selectors.scope_to_user(
            Lead.objects.select_related("location"),
            user=request.user,
            location_path="location",
        )
        if lead_id is not None:
            lead = get_object_or_404(visible_leads, pk=lead_id)
            location = lead.location
            leads = visible_leads.filter(pk=lead.pk)
        else:
            lead = None
            location = self._location(
                request, request.POST.get("location") or request.GET.get("location")
            )
            if location is None:
                raise Http404("You have no locations.")
            leads = visible_leads.filter(
                location=location, status__in=OPEN_STATUSES
            ).order_by("-created_at", "-pk")
        zone = location.zone
        posted = request.method == "POST"
        data = request.POST.copy() if posted else None
        if not posted and "service" in request.GET:
            data = request.GET.copy()
        if data is not None and lead is not None:
            data["lead"] = str(lead.pk)
        today = timezone.now().astimezone(zone).date()
        form = BookForm(
            data,
            leads=leads,
            services=location_selectors.service_list_for_location(location=location),
            lead_fixed=lead is not None,
            require_slot=posted,
            initial={
                "lead": lead.pk if lead else request.GET.get("lead"),
                "date": calendar.parse_date(request.GET.get("date")) or today,
            },
        )
        slots_shown, chosen_lead, day = False, lead, None
        if data is not None:
            valid = form.is_valid()
            chosen_lead = form.cleaned_data.get("lead") or lead
            service = form.cleaned_data.get("service")
            day = form.cleaned_data.get("date")
            if posted and valid:
                if not _may_see_location(request.user, chosen_lead.location_id):
                    raise Http404("No such lead.")
                try:
                    appointment = services.appointment_book(
                        lead=chosen_lead,
                        service=service,
                        starts_at=form.cleaned_data["slot"],
                        source=AppointmentSource.STAFF,
                        actor=request.user,
                        additional=form.cleaned_data["additional"],
                    )
                except ApplicationError as error:
                    # SlotTakenError's message names the nearest free times; the list below is refreshed.
                    form.add_error(None, error.message)
                else:
                    self.message_user(
                        request,
                        f"Booked {service.name} for {chosen_lead} on "
                        f"{calendar.local_display(appointment.starts_at, zone)}, bay {appointment.bay}.",
                        messages.SUCCESS,
                    )
                    return HttpResponseRedirect(
                        calendar_url(
                            location, appointment.starts_at.astimezone(zone).date()
                        )
                    )
            if service is not None and day is not None:
                try:
                    slots = services.availability_for(
                        location=location, service=service, date_from=day, date_to=day
                    )
                except ApplicationError as error:
                    form.add_error(None, error.message)
                else:
                    form.show_slots(slots, zone)
                    slots_shown = True
        current = (
            Appointment.objects.filter(
                lead=chosen_lead, status=AppointmentStatus.BOOKED
            )
            .select_related("service")
            .order_by("starts_at")
            if chosen_lead is not None
            else []
        )
        context = self._context(
            request,
            f"Book for {lead}" if lead else f"Book at {location.name}",
            form=form,
            lead=lead,
            location=location,
            locations=None
            if lead
            else location_selectors.location_list_for_user(user=request.user),
            zone_name=location.time_zone,
            slots_shown=slots_shown,
            date_value=f"{day:%Y-%m-%d}" if day else "",
            current=[(a, calendar.local_display(a.starts_at, zone)) for a in current],
            calendar_url=calendar_url(location, today),
        )
        return TemplateResponse(request, "admin/appointments/book.html", context)

    def move_view(self, request: HttpRequest, appointment_id: int) -> HttpResponse:
        """Move an appointment to a free time of a chosen day, for its service and length."""
        appointment = self._appointment(request, appointment_id)
        location = appointment.location
        zone = location.zone
        posted = request.method == "POST"
        data = (
            request.POST if posted else (request.GET if "date" in request.GET else None)
        )
        current_day = appointment.starts_at.astimezone(zone).date()
        form = MoveForm(data, require_slot=posted, initial={"date": current_day})
        day: date | None = current_day
        if data is not None:
            valid = form.is_valid()
            day = form.cleaned_data.get("date")
            if posted and valid:
                try:
                    moved = services.appointment_reschedule(
                        appointment=appointment,
                        starts_at=form.cleaned_data["slot"],
                        actor=request.user,
                    )
                except ApplicationError as error:
                    form.add_error(None, error.message)
                else:
                    self.message_user(
                        request,
                        f"Moved to {calendar.local_display(moved.starts_at, zone)}, bay {moved.bay}.",
                        messages.SUCCESS,
                    )
                    return HttpResponseRedirect(
                        reverse(
                            "admin:appointments_appointment_change", args=[moved.pk]
                        )
                    )
        is_booked = appointment.status == AppointmentStatus.BOOKED
        if is_booked and day is not None:
            form.show_slots(
                services.availability_for(
                    location=location,
                    service=appointment.service,
                    date_from=day,
                    date_to=day,
                    exclude=appointment,
                    duration=appointment.ends_at - appointment.starts_at,
                ),
                zone,
            )
        context = self._context(
            request,
            f"Move {calendar.appointment_label(appointment)}",
            form=form,
            appointment=appointment,
            original=appointment,
            is_booked=is_booked,
            slots_shown=is_booked and day is not None,
            date_value=f"{day:%Y-%m-%d}" if day else "",
            location=location,
            zone_name=location.time_zone,
            starts=calendar.local_display(appointment.starts_at, zone),
            ends=calendar.local_display(appointment.ends_at, zone),
            change_url=reverse(
                "admin:appointments_appointment_change", args=[appointment.pk]
            ),
        )
        return TemplateResponse(request, "admin/appointments/move.html", context)

    def cancel_view(self, request: HttpRequest, appointment_id: int) -> HttpResponse:
        """Cancel one appointment from its page, with a reason."""
        appointment = self._appointment(request, appointment_id)
        change_url = reverse(
            "admin:appointments_appointment_change", args=[appointment.pk]
        )
        form = CancelForm(request.POST if request.method == "POST" else None)
        if form.is_valid():
            try:
                services.appointment_cancel(
                    appointment=appointment,
                    reason=form.cleaned_data["reason"],
                    actor=request.user,
                )
            except ApplicationError as error:
                form.add_error(None, error.message)
            else:
                self.message_user(
                    request,
                    f"Cancelled {calendar.appointment_label(appointment)}.",
                    messages.SUCCESS,
                )
                return HttpResponseRedirect(change_url)
        context = self._context(
            request,
            "Cancel appointment",
            form=form,
            appointments=[(appointment, calendar.appointment_label(appointment))],
            change_url=change_url,
        )
        return TemplateResponse(request, "admin/appointments/cancel.html", context)


@admin.register(ScheduledMessage)
class ScheduledMessageAdmin(
    ReadOnlyAdminMixin, LocationScopedAdminMixin, admin.ModelAdmin
):
    location_path = "appointment__location"
    list_display = (
        "due_at",
        "kind",
        "channel",
        "status",
        "lead",
        "appointment",
        "reason",
    )
    list_filter = ("kind", "status", "channel")
    list_select_related = ("lead", "appointment__lead", "appointment__service")
    search_fields = (
        "lead__first_name",
        "lead__last_name",
        "lead__email",
        "lead__phone",
    )
    date_hierarchy = "due_at"

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False
