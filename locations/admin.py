from __future__ import annotations

from typing import Any

from django import forms
from django.contrib import admin
from django.http import HttpRequest

from locations import selectors
from locations.admin_scoping import BrandWideOnlyAdminMixin, LocationScopedAdminMixin
from locations.models import (
    Closure,
    Location,
    LocationHours,
    ServiceCatalogItem,
    ServiceOverride,
    StaffMembership,
)
from locations.time_zones import TIME_ZONE_CHOICES


class LocationForm(forms.ModelForm):
    time_zone = forms.ChoiceField(
        choices=TIME_ZONE_CHOICES, initial="America/Los_Angeles"
    )

    class Meta:
        model = Location
        fields = ["time_zone"]  # the admin adds the rest from its fieldsets


class LocationHoursInline(LocationScopedAdminMixin, admin.TabularInline):
    model = LocationHours
    extra = 0
    max_num = 7


class ClosureInline(LocationScopedAdminMixin, admin.TabularInline):
    model = Closure
    extra = 0
    fields = ("starts_on", "ends_on", "reason")


class LocationOverrideInline(LocationScopedAdminMixin, admin.TabularInline):
    model = ServiceOverride
    extra = 0
    autocomplete_fields = ("item",)
    fields = ("item", "price_cents", "duration_minutes", "is_available")


@admin.register(Location)
class LocationAdmin(LocationScopedAdminMixin, admin.ModelAdmin):
    location_path = "pk"
    form = LocationForm
    list_display = (
        "name",
        "city",
        "region",
        "time_zone",
        "bays",
        "crm_location_id",
        "is_active",
    )
    list_filter = ("is_active", "region", "time_zone")
    search_fields = ("name", "city", "crm_location_id", "postal_code")
    readonly_fields = ("public_id", "created_at", "updated_at")
    fieldsets = (
        (
            None,
            {"fields": ("name", "crm_location_id", "is_active", "bays", "time_zone")},
        ),
        (
            "Address and contact",
            {
                "fields": (
                    "address_line1",
                    "address_line2",
                    "city",
                    "region",
                    "postal_code",
                    "country",
                    "phone",
                    "email",
                )
            },
        ),
        (
            "Record",
            {
                "classes": ("collapse",),
                "fields": ("public_id", "created_at", "updated_at"),
            },
        ),
    )
    inlines = [LocationHoursInline, ClosureInline, LocationOverrideInline]

    def has_add_permission(self, request: HttpRequest) -> bool:
        return selectors.user_is_brand_wide(
            user=request.user
        ) and super().has_add_permission(request)

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return selectors.user_is_brand_wide(
            user=request.user
        ) and super().has_delete_permission(request, obj)


@admin.register(Closure)
class ClosureAdmin(LocationScopedAdminMixin, admin.ModelAdmin):
    list_display = ("location", "starts_on", "ends_on", "reason")
    list_filter = (("location", admin.RelatedOnlyFieldListFilter),)
    list_select_related = ("location",)
    date_hierarchy = "starts_on"
    search_fields = ("reason", "location__name")


class ItemOverrideInline(LocationScopedAdminMixin, admin.TabularInline):
    model = ServiceOverride
    extra = 0
    fields = ("location", "price_cents", "duration_minutes", "is_available")


@admin.register(ServiceCatalogItem)
class ServiceCatalogItemAdmin(BrandWideOnlyAdminMixin, admin.ModelAdmin):
    list_display = ("name", "category", "price", "duration_minutes", "is_active")
    list_filter = ("category", "is_active")
    search_fields = ("name", "code", "category", "description")
    readonly_fields = ("public_id", "created_at", "updated_at")
    prepopulated_fields = {"code": ("name",)}
    inlines = [ItemOverrideInline]

    @admin.display(description="price", ordering="price_cents")
    def price(self, obj: ServiceCatalogItem) -> str:
        return f"${obj.price_cents / 100:,.2f}"


@admin.register(ServiceOverride)
class ServiceOverrideAdmin(LocationScopedAdminMixin, admin.ModelAdmin):
    list_display = (
        "item",
        "location",
        "price_cents",
        "duration_minutes",
        "is_available",
    )
    list_filter = (
        ("location", admin.RelatedOnlyFieldListFilter),
        "is_available",
        "item__category",
    )
    list_select_related = ("item", "location")
    search_fields = ("item__name", "location__name")


@admin.register(StaffMembership)
class StaffMembershipAdmin(BrandWideOnlyAdminMixin, admin.ModelAdmin):
    list_display = ("user", "location")
    list_filter = ("location",)
    list_select_related = ("user", "location")
    search_fields = ("user__username", "user__email", "location__name")
    autocomplete_fields = ("user",)

    def has_module_permission(self, request: HttpRequest) -> bool:
        return selectors.user_is_brand_wide(
            user=request.user
        ) and super().has_module_permission(request)

    def has_view_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return selectors.user_is_brand_wide(
            user=request.user
        ) and super().has_view_permission(request, obj)
