from __future__ import annotations

import binascii
from typing import Any

from django import forms
from django.conf import settings
from django.contrib import admin, messages
from django.db import connection
from django.db.models import QuerySet
from django.http import (
    HttpRequest,
    HttpResponse,
    HttpResponseNotAllowed,
    HttpResponseRedirect,
)
from django.shortcuts import get_object_or_404
from django.template.response import TemplateResponse
from django.urls import URLPattern, path, reverse
from django.utils.html import format_html_join
from standardwebhooks import Webhook
from standardwebhooks.webhooks import EmptyWebhookSecretError

from chat import services as chat_services
from leadorch.errors import ApplicationError
from leads import admin_dashboard, services, webhooks, workspace
from leads.models import (
    CRMConnection,
    IgnoredOrder,
    IgnoreReason,
    JobExecution,
    Lead,
    LeadStatus,
    WebhookDelivery,
)
from locations.admin_scoping import (
    BrandOnlyAdminMixin,
    LocationScopedAdminMixin,
    ReadOnlyAdminMixin,
)
from locations.models import Location
from touchpoints import services as cadence


class MarkLostForm(forms.Form):
    reason = forms.CharField(
        max_length=200,
        help_text="Why these leads are lost, e.g. 'went with another shop'.",
    )


@admin.register(Lead)
class LeadAdmin(LocationScopedAdminMixin, admin.ModelAdmin):
    list_display = (
        "__str__",
        "location",
        "status",
        "vehicle_display",
        "phone",
        "email",
        "source",
        "created_at",
    )
    list_filter = (
        "status",
        ("location", admin.RelatedOnlyFieldListFilter),
        "source",
        ("created_at", admin.DateFieldListFilter),
    )
    list_select_related = ("location",)
    search_fields = (
        "first_name",
        "last_name",
        "email",
        "phone",
        "crm_order_id",
        "crm_customer_id",
    )
    date_hierarchy = "created_at"
    readonly_fields = (
        "public_id",
        "status",
        "crm_created_at",
        "ingested_at",
        "first_contacted_at",
        "engaged_at",
        "qualified_at",
        "booked_at",
        "completed_at",
        "lost_at",
        "lost_reason",
        "created_at",
        "updated_at",
    )
    fieldsets = (
        (None, {"fields": ("location", "status", "lost_reason")}),
        ("Customer", {"fields": ("first_name", "last_name", "email", "phone")}),
        ("Vehicle", {"fields": ("vehicle_year", "vehicle_make", "vehicle_model")}),
        (
            "CRM",
            {"fields": ("source", "crm_order_id", "crm_customer_id", "crm_vehicle_id")},
        ),
        (
            "Timeline",
            {
                "fields": (
                    "crm_created_at",
                    "ingested_at",
                    "first_contacted_at",
                    "engaged_at",
                    "qualified_at",
                    "booked_at",
                    "completed_at",
                    "lost_at",
                    "created_at",
                    "updated_at",
                    "public_id",
                )
            },
        ),
    )
    change_form_template = "admin/leads/lead/change_form.html"
    actions = ["mark_lost", "pause_follow_up", "resume_follow_up"]

    # --- the lead's page ------------------------------------------------------------

    def get_urls(self) -> list[URLPattern]:
        wrap = self.admin_site.admin_view
        return [
            path(
                "dashboard/",
                wrap(admin_dashboard.dashboard_view_for(self)),
                name="leads_lead_dashboard",
            ),
            path(
                "<int:pk>/do/<str:action>/",
                wrap(self.lead_action_view),
                name="leads_lead_action",
            ),
            *super().get_urls(),
        ]

    def change_view(
        self,
        request: HttpRequest,
        object_id: str,
        form_url: str = "",
        extra_context: dict[str, Any] | None = None,
    ) -> HttpResponse:
        lead = self.get_object(request, object_id)
        if lead is not None:
            extra_context = {
                **(extra_context or {}),
                "page": workspace.lead_page(lead=lead),
                "can_act": self.has_change_permission(request, lead),
                "lost_form": MarkLostForm(),
                "book_url": reverse("admin:appointments_book", args=[lead.pk]),
            }
        return super().change_view(request, object_id, form_url, extra_context)

    def lead_action_view(
        self, request: HttpRequest, pk: int, action: str
    ) -> HttpResponse:
        """One button of the lead's page: mark lost, pause or resume the follow-up,
        send the chat link. POST only; the lead must be in the user's locations."""
        if request.method != "POST":
            return HttpResponseNotAllowed(["POST"])
        lead = get_object_or_404(self.get_queryset(request), pk=pk)
        back = HttpResponseRedirect(reverse("admin:leads_lead_change", args=[lead.pk]))
        if not self.has_change_permission(request, lead):
            messages.error(request, "You may not change this lead.")
            return back
        try:
            if action == "lost":
                form = MarkLostForm(request.POST)
                if not form.is_valid():
                    messages.error(request, "Give a reason to mark the lead lost.")
                    return back
                cadence.lead_mark_lost(
                    lead=lead, reason=form.cleaned_data["reason"], actor=request.user
                )
                messages.success(request, "The lead is marked lost.")
            elif action == "pause":
                held = cadence.cadence_pause(lead=lead, actor=request.user)
                messages.success(request, f"Follow-up paused ({held} message(s) held).")
            elif action == "resume":
                moved = cadence.cadence_resume(lead=lead, actor=request.user)
                messages.success(
                    request, f"Follow-up resumed ({moved} message(s) rescheduled)."
                )
            elif action == "chat-link":
                sent = chat_services.chat_link_send(lead=lead, actor=request.user)
                if sent.status == "blocked":
                    messages.warning(
                        request,
                        f"The chat link was not sent: {sent.get_block_reason_display()}.",
                    )
                else:
                    messages.success(
                        request,
                        f"Chat link {sent.get_status_display().lower()} by "
                        f"{sent.get_channel_display()} to {sent.to}.",
                    )
            else:
                messages.error(request, "Unknown action.")
        except ApplicationError as error:
            messages.error(request, error.message)
        return back

    @admin.display(description="vehicle")
    def vehicle_display(self, obj: Lead) -> str:
        return obj.vehicle

    def save_model(
        self, request: HttpRequest, obj: Lead, form: Any, change: bool
    ) -> None:
        if change:
            super().save_model(request, obj, form, change)
        else:
            services.lead_save_new(lead=obj, actor=request.user)

    @admin.action(description="Mark selected leads as lost", permissions=["change"])
    def mark_lost(
        self, request: HttpRequest, queryset: QuerySet[Lead]
    ) -> HttpResponse | None:
        form = MarkLostForm(request.POST if "apply" in request.POST else None)
        if not form.is_valid():
            context = {
                **self.admin_site.each_context(request),
                "title": "Mark leads as lost",
                "form": form,
                "leads": queryset,
                "opts": self.model._meta,
                "action_checkbox_name": admin.helpers.ACTION_CHECKBOX_NAME,
            }
            return TemplateResponse(request, "admin/leads/mark_lost.html", context)
        moved, refused = 0, []
        for lead in queryset.exclude(
            status__in=[LeadStatus.LOST, LeadStatus.COMPLETED]
        ):
            try:
                cadence.lead_mark_lost(
                    lead=lead, reason=form.cleaned_data["reason"], actor=request.user
                )
                moved += 1
            except ApplicationError as error:
                refused.append(f"{lead}: {error.message}")
        skipped = queryset.count() - moved - len(refused)
        self.message_user(request, f"{moved} lead(s) marked lost.", messages.SUCCESS)
        if skipped:
            self.message_user(
                request,
                f"{skipped} lead(s) were already closed and were left as they are.",
                messages.WARNING,
            )
        for line in refused:
            self.message_user(request, line, messages.ERROR)
        return None

    @admin.action(
        description="Pause the follow-up of selected leads", permissions=["change"]
    )
    def pause_follow_up(self, request: HttpRequest, queryset: QuerySet[Lead]) -> None:
        self._each(request, queryset, cadence.cadence_pause, "paused")

    @admin.action(
        description="Resume the follow-up of selected leads", permissions=["change"]
    )
    def resume_follow_up(self, request: HttpRequest, queryset: QuerySet[Lead]) -> None:
        self._each(request, queryset, cadence.cadence_resume, "resumed")

    def _each(
        self, request: HttpRequest, queryset: QuerySet[Lead], operation: Any, verb: str
    ) -> None:
        done = 0
        for lead in queryset.select_related("location"):
            try:
                operation(lead=lead, actor=request.user)
                done += 1
            except ApplicationError as error:
                self.message_user(request, f"{lead}: {error.message}", messages.WARNING)
        self.message_user(
            request, f"Follow-up {verb} for {done} lead(s).", messages.SUCCESS
        )


class BrandWideAdmin(BrandOnlyAdminMixin, admin.ModelAdmin):
    """Brand-level intake configuration and logs: not shown to location-limited staff."""


class ReadOnlyLogAdmin(ReadOnlyAdminMixin, BrandWideAdmin):
    pass


class SecretField(forms.CharField):
    """Write-only: never rendered back; empty keeps the stored value."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(
            required=False,
            strip=True,
            widget=forms.PasswordInput(render_value=False),
            **kwargs,
        )


class CRMConnectionForm(forms.ModelForm):
    api_key = SecretField(
        help_text="Stored encrypted, never shown. Leave empty to keep the current key."
    )
    webhook_secret = SecretField(
        help_text="The signing secret of the ShopMonkey webhook (whsec_...). Stored encrypted, never shown. "
        "Leave empty to keep the current one."
    )
    base_url = forms.URLField(
        label="API base URL",
        required=False,
        assume_scheme="https",
        help_text="Empty: the public API, or SHOPMONKEY_BASE_URL when set.",
    )

    class Meta:
        model = CRMConnection
        fields = [
            "name",
            "provider",
            "is_active",
            "api_key",
            "webhook_secret",
            "base_url",
            "lead_workflow_status_id",
            "lead_name_prefix",
            "is_demo_mode",
            "demo_email_patterns",
            "demo_phone_patterns",
            "poll_enabled",
            "poll_cursor",
        ]

    def _keep(self, name: str) -> str:
        value = self.cleaned_data.get(name, "")
        if not value and self.instance.pk:
            return getattr(self.instance, name)
        return value

    def clean_api_key(self) -> str:
        return self._keep("api_key")

    def clean_webhook_secret(self) -> str:
        secret = self._keep("webhook_secret")
        if secret:
            try:
                Webhook(secret)
            except (ValueError, binascii.Error, EmptyWebhookSecretError) as error:
                raise forms.ValidationError(
                    "This is not a webhook secret (expected whsec_ followed by base64)."
                ) from error
        return secret


@admin.register(CRMConnection)
class CRMConnectionAdmin(BrandWideAdmin):
    form = CRMConnectionForm
    list_display = (
        "name",
        "provider",
        "is_active",
        "is_demo_mode",
        "poll_enabled",
        "last_polled_at",
        "poll_health",
    )
    list_filter = ("provider", "is_active", "is_demo_mode")
    readonly_fields = (
        "webhook_url",
        "credentials",
        "mapped_locations",
        "last_polled_at",
        "last_poll_error",
        "public_id",
    )
    fieldsets = (
        (None, {"fields": ("name", "provider", "is_active")}),
        (
            "Credentials",
            {"fields": ("credentials", "api_key", "webhook_secret", "base_url")},
        ),
        ("Webhook", {"fields": ("webhook_url",)}),
        (
            "Website-lead rule",
            {"fields": ("lead_workflow_status_id", "lead_name_prefix")},
        ),
        (
            "Demo mode",
            {"fields": ("is_demo_mode", "demo_email_patterns", "demo_phone_patterns")},
        ),
        ("Locations", {"fields": ("mapped_locations",)}),
        (
            "Polling",
            {
                "fields": (
                    "poll_enabled",
                    "poll_cursor",
                    "last_polled_at",
                    "last_poll_error",
                    "public_id",
                )
            },
        ),
    )

    @admin.display(description="webhook URL")
    def webhook_url(self, obj: CRMConnection) -> str:
        if not obj.pk:
            return "Shown once the connection is saved."
        domain = connection.tenant.get_primary_domain()
        scheme = "https" if settings.HTTPS else "http"
        path = reverse(
            "leads:shopmonkey_webhook", kwargs={"connection_id": obj.public_id}
        )
        return f"{scheme}://{domain.domain}{path}" if domain else path

    @admin.display(description="stored secrets")
    def credentials(self, obj: CRMConnection) -> str:
        parts = [
            f"API key {'set' if obj.api_key else 'not set'}",
            f"webhook secret {'set' if obj.webhook_secret else 'not set'}",
        ]
        return ", ".join(parts)

    @admin.display(description="CRM locations")
    def mapped_locations(self, obj: CRMConnection) -> str:
        mapped = (
            Location.objects.exclude(crm_location_id="")
            .order_by("name")
            .values_list("name", "crm_location_id")
        )
        lines = [f"{name}: {crm_id}" for name, crm_id in mapped] or [
            "No location has a CRM location id yet."
        ]
        unmapped = (
            obj.ignored_orders.filter(reason=IgnoreReason.UNMAPPED_LOCATION)
            .values_list("crm_location_id", flat=True)
            .distinct()
            if obj.pk
            else []
        )
        if unmapped:
            lines.append(
                "Seen in orders but not mapped: " + ", ".join(sorted(set(unmapped)))
            )
        lines.append(
            "Set a location's CRM location id on the location's page to map it."
        )
        return format_html_join("", "{}<br>", ((line,) for line in lines))

    @admin.display(description="last poll")
    def poll_health(self, obj: CRMConnection) -> str:
        if not obj.poll_enabled or not obj.api_key:
            return "off"
        return (
            "error"
            if obj.last_poll_error
            else ("ok" if obj.last_polled_at else "not yet")
        )


@admin.register(IgnoredOrder)
class IgnoredOrderAdmin(ReadOnlyLogAdmin):
    list_display = (
        "crm_order_number",
        "crm_order_id",
        "reason",
        "crm_location_id",
        "detail",
        "times_seen",
        "last_seen_at",
    )
    list_filter = ("reason", "connection")
    list_select_related = ("connection",)
    search_fields = ("crm_order_id", "crm_order_number", "crm_location_id")


@admin.register(WebhookDelivery)
class WebhookDeliveryAdmin(BrandWideAdmin):
    """Read-only rows (change permission serves the 'process again' action)."""

    list_display = (
        "received_at",
        "table",
        "operation",
        "record_id",
        "status",
        "result",
        "tries",
    )
    list_filter = ("status", "table", "operation", "connection")
    list_select_related = ("connection",)
    search_fields = ("record_id", "webhook_id")
    date_hierarchy = "received_at"
    actions = ["process_again"]

    @admin.action(description="Process the selected deliveries again")
    def process_again(
        self, request: HttpRequest, queryset: QuerySet[WebhookDelivery]
    ) -> None:
        count = webhooks.webhook_deliveries_requeue(
            delivery_ids=list(queryset.values_list("pk", flat=True))
        )
        self.message_user(
            request, f"{count} delivery(ies) queued for processing.", messages.SUCCESS
        )

    def has_add_permission(self, request: HttpRequest, *args: Any) -> bool:
        return False

    def get_readonly_fields(self, request: HttpRequest, obj: Any = None) -> list[str]:
        return [field.name for field in WebhookDelivery._meta.fields]


@admin.register(JobExecution)
class JobExecutionAdmin(ReadOnlyLogAdmin):
    list_display = (
        "started_at",
        "kind",
        "connection",
        "status",
        "pages",
        "orders_seen",
        "leads_created",
        "orders_ignored",
        "errors",
    )
    list_filter = ("kind", "status", "connection")
    list_select_related = ("connection",)
    date_hierarchy = "started_at"
