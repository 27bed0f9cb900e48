from __future__ import annotations

from django.contrib import admin
from django.core.exceptions import ValidationError
from django.db.models import Count, QuerySet
from django.http import HttpRequest
from django.utils.html import format_html

from locations.admin_scoping import (
    BrandOnlyAdminMixin,
    LocationScopedAdminMixin,
    ReadOnlyAdminMixin,
)
from touchpoints import services
from touchpoints.models import Cadence, CadenceEnrollment, CadenceStep, TouchPoint


def _preview(step: CadenceStep) -> str:
    if not step.template:
        return ""
    try:
        subject = services.template_validate(step.subject) if step.subject else ""
        body = services.template_validate(step.template)
    except ValidationError as error:
        return " ".join(error.messages)
    return format_html(
        "<strong>{}</strong><br><span style='white-space: pre-wrap'>{}</span>",
        subject,
        body,
    )


class CadenceStepInline(admin.StackedInline):
    model = CadenceStep
    extra = 0
    fields = ("position", "channel", "delay_minutes", "subject", "template", "preview")
    readonly_fields = ("preview",)
    ordering = ("position",)

    @admin.display(description="preview (sample lead)")
    def preview(self, step: CadenceStep) -> str:
        return _preview(step)


@admin.register(Cadence)
class CadenceAdmin(BrandOnlyAdminMixin, admin.ModelAdmin):
    list_display = ("name", "is_default", "is_active", "step_count")
    inlines = [CadenceStepInline]

    def get_queryset(self, request: HttpRequest) -> QuerySet[Cadence]:
        return super().get_queryset(request).annotate(steps_total=Count("steps"))

    @admin.display(description="steps", ordering="steps_total")
    def step_count(self, cadence: Cadence) -> int:
        return cadence.steps_total


@admin.register(CadenceStep)
class CadenceStepAdmin(BrandOnlyAdminMixin, admin.ModelAdmin):
    list_display = ("cadence", "position", "channel", "delay_minutes", "subject")
    list_filter = ("cadence", "channel")
    list_select_related = ("cadence",)
    readonly_fields = ("preview",)

    @admin.display(description="preview (sample lead)")
    def preview(self, step: CadenceStep) -> str:
        return _preview(step)


@admin.register(CadenceEnrollment)
class CadenceEnrollmentAdmin(
    ReadOnlyAdminMixin, LocationScopedAdminMixin, admin.ModelAdmin
):
    location_path = "lead__location"
    list_display = (
        "lead",
        "cadence",
        "status",
        "stop_reason",
        "started_at",
        "stopped_at",
    )
    list_filter = ("status", "stop_reason", "cadence")
    list_select_related = ("lead", "cadence")
    search_fields = (
        "lead__first_name",
        "lead__last_name",
        "lead__email",
        "lead__phone",
    )


@admin.register(TouchPoint)
class TouchPointAdmin(ReadOnlyAdminMixin, LocationScopedAdminMixin, admin.ModelAdmin):
    location_path = "lead__location"
    list_display = (
        "lead",
        "step",
        "channel",
        "due_at",
        "status",
        "reason",
        "deferrals",
    )
    list_filter = ("status", "channel")
    list_select_related = ("lead", "step__cadence")
    search_fields = (
        "lead__first_name",
        "lead__last_name",
        "lead__email",
        "lead__phone",
    )
    date_hierarchy = "due_at"
    raw_id_fields = ("lead", "outbound_message")
