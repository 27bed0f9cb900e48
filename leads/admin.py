from __future__ import annotations

from typing import Any

from django import forms
from django.contrib import admin, messages
from django.db.models import QuerySet
from django.http import HttpRequest, HttpResponse
from django.template.response import TemplateResponse

from leadorch.errors import ApplicationError
from leads import services
from leads.models import Lead, LeadEvent, LeadStatus
from locations.admin_scoping import LocationScopedAdminMixin


class LeadEventInline(admin.TabularInline):
    model = LeadEvent
    extra = 0
    can_delete = False
    fields = ("created_at", "kind", "from_status", "to_status", "message", "actor")
    readonly_fields = fields
    ordering = ("-created_at", "-pk")
    verbose_name_plural = "history"

    def has_add_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False


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
        "location",
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
    inlines = [LeadEventInline]
    actions = ["mark_lost"]

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
                services.lead_mark_lost(
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
