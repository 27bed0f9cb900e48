from __future__ import annotations

from typing import Any

from django import forms
from django.contrib import admin, messages
from django.core.exceptions import PermissionDenied
from django.db import connection
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect
from django.template.response import TemplateResponse
from django.urls import path

from leadorch.errors import ApplicationError
from locations import selectors as location_selectors
from locations.admin_scoping import (
    BrandOnlyAdminMixin,
    LocationScopedAdminMixin,
    ReadOnlyAdminMixin,
)
from messaging import services
from messaging.models import (
    InboundMessage,
    MessagingPolicy,
    OptOut,
    OutboundMessage,
    OutboundModeChange,
    WhitelistEntry,
)
from tenants.models import OutboundMode


@admin.register(OutboundMessage)
class OutboundMessageAdmin(
    ReadOnlyAdminMixin, LocationScopedAdminMixin, admin.ModelAdmin
):
    list_display = (
        "created_at",
        "channel",
        "kind",
        "to",
        "status",
        "block_reason",
        "delivery_status",
        "lead",
    )
    list_filter = (
        "status",
        "channel",
        "kind",
        "block_reason",
        ("location", admin.RelatedOnlyFieldListFilter),
    )
    list_select_related = ("lead",)
    search_fields = (
        "to",
        "body",
        "provider_message_id",
        "lead__first_name",
        "lead__last_name",
    )
    date_hierarchy = "created_at"
    raw_id_fields = ("lead",)


@admin.register(InboundMessage)
class InboundMessageAdmin(
    ReadOnlyAdminMixin, LocationScopedAdminMixin, admin.ModelAdmin
):
    location_path = "lead__location"
    list_display = ("received_at", "from_number", "kind", "body", "lead")
    list_filter = ("kind",)
    list_select_related = ("lead",)
    search_fields = ("from_number", "body")
    raw_id_fields = ("lead",)


@admin.register(OptOut)
class OptOutAdmin(BrandOnlyAdminMixin, admin.ModelAdmin):
    list_display = ("address", "channel", "source", "created_at", "revoked_at")
    list_filter = ("channel", "source", ("revoked_at", admin.EmptyFieldListFilter))
    search_fields = ("address",)
    readonly_fields = ("created_at", "revoked_at")

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        # An opt-out is a record of what the customer said: add, never edit.
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False


@admin.register(WhitelistEntry)
class WhitelistEntryAdmin(BrandOnlyAdminMixin, admin.ModelAdmin):
    list_display = ("email", "note", "created_at")
    search_fields = ("email", "note")

    def save_model(
        self, request: HttpRequest, obj: WhitelistEntry, form: Any, change: bool
    ) -> None:
        obj.email = obj.email.strip().lower()
        super().save_model(request, obj, form, change)


class OutboundModeForm(forms.Form):
    mode = forms.ChoiceField(choices=OutboundMode.choices, widget=forms.RadioSelect)
    confirm = forms.BooleanField(
        required=False,
        label="I confirm real customers will receive messages from this brand.",
    )
    note = forms.CharField(
        required=False, max_length=300, help_text="Why (kept in the audit log)."
    )

    def clean(self) -> dict[str, Any]:
        data = super().clean()
        if data.get("mode") == OutboundMode.LIVE and not data.get("confirm"):
            self.add_error(
                "confirm", "Confirm before sending to every customer the rules allow."
            )
        return data


@admin.register(MessagingPolicy)
class MessagingPolicyAdmin(BrandOnlyAdminMixin, admin.ModelAdmin):
    list_display = ("__str__", "quiet_hours_start", "quiet_hours_end", "daily_cap")
    change_form_template = "admin/messaging/messagingpolicy/change_form.html"

    def has_add_permission(self, request: HttpRequest, *args: Any) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def changelist_view(
        self, request: HttpRequest, extra_context: dict | None = None
    ) -> HttpResponse:
        policy = services.policy_get()
        return redirect("admin:messaging_messagingpolicy_change", policy.pk)

    def change_view(
        self,
        request: HttpRequest,
        object_id: str,
        form_url: str = "",
        extra_context: dict | None = None,
    ) -> HttpResponse:
        extra = {
            **(extra_context or {}),
            "outbound_mode": connection.tenant.get_outbound_mode_display(),
        }
        return super().change_view(request, object_id, form_url, extra)

    def get_urls(self) -> list:
        return [
            path(
                "outbound-mode/",
                self.admin_site.admin_view(self.outbound_mode_view),
                name="messaging_outbound_mode",
            ),
            *super().get_urls(),
        ]

    def outbound_mode_view(self, request: HttpRequest) -> HttpResponse:
        """Switch what the brand may send. Going live asks for confirmation; every switch is logged."""
        if not (
            location_selectors.user_is_brand_wide(user=request.user)
            and self.has_change_permission(request)
        ):
            raise PermissionDenied
        tenant = connection.tenant
        form = OutboundModeForm(
            request.POST or None, initial={"mode": tenant.outbound_mode}
        )
        if request.method == "POST" and form.is_valid():
            try:
                services.outbound_mode_set(
                    mode=form.cleaned_data["mode"],
                    actor=request.user,
                    note=form.cleaned_data["note"],
                )
            except ApplicationError as error:
                form.add_error(None, error.message)
            else:
                self.message_user(
                    request,
                    f"Outbound mode is now {OutboundMode(form.cleaned_data['mode']).label}.",
                    messages.SUCCESS,
                )
                return redirect("admin:messaging_outbound_mode")
        context = {
            **self.admin_site.each_context(request),
            "title": "Outbound mode",
            "form": form,
            "current": tenant.get_outbound_mode_display(),
            "changes": OutboundModeChange.objects.select_related("actor")[:20],
            "opts": self.model._meta,
        }
        return TemplateResponse(request, "admin/messaging/outbound_mode.html", context)


@admin.register(OutboundModeChange)
class OutboundModeChangeAdmin(
    ReadOnlyAdminMixin, BrandOnlyAdminMixin, admin.ModelAdmin
):
    list_display = ("changed_at", "from_mode", "to_mode", "actor", "note")
    list_select_related = ("actor",)

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False
