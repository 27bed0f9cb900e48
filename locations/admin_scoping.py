"""Admin behaviour for location-limited staff: they see and touch only their locations' rows.

Every admin (and inline) of a model that belongs to a location uses
``LocationScopedAdminMixin`` and names the path from its model to Location.
Lists, change views reached by URL, delete and bulk actions all start from
``get_queryset``, so scoping it scopes them; foreign-key and many-to-many choices
are limited through the related model's own admin.
"""

from __future__ import annotations

from typing import Any

from django.contrib import admin
from django.db.models import Model, QuerySet
from django.http import HttpRequest

from locations import selectors
from locations.models import Location


class LocationScopedAdminMixin:
    #: ORM path from the admin's model to its Location ("pk" for Location itself).
    location_path: str = "location"

    admin_site: admin.AdminSite

    def get_queryset(self, request: HttpRequest) -> QuerySet[Any]:
        queryset = super().get_queryset(request)  # type: ignore[misc]
        return selectors.scope_to_user(
            queryset, user=request.user, location_path=self.location_path
        )

    def _scoped_choices(
        self, model: type[Model], request: HttpRequest
    ) -> QuerySet[Any] | None:
        if model is Location:
            return selectors.location_list_for_user(user=request.user)
        related_admin = self.admin_site._registry.get(model)
        if isinstance(related_admin, LocationScopedAdminMixin):
            return related_admin.get_queryset(request)
        return None

    def formfield_for_foreignkey(
        self, db_field: Any, request: HttpRequest, **kwargs: Any
    ) -> Any:
        queryset = self._scoped_choices(db_field.related_model, request)
        if queryset is not None:
            kwargs["queryset"] = queryset
        return super().formfield_for_foreignkey(db_field, request, **kwargs)  # type: ignore[misc]

    def formfield_for_manytomany(
        self, db_field: Any, request: HttpRequest, **kwargs: Any
    ) -> Any:
        queryset = self._scoped_choices(db_field.related_model, request)
        if queryset is not None:
            kwargs["queryset"] = queryset
        return super().formfield_for_manytomany(db_field, request, **kwargs)  # type: ignore[misc]


class BrandWideOnlyAdminMixin:
    """For brand-level data (catalog, staff access): location-limited staff may only look."""

    def _brand_wide(self, request: HttpRequest) -> bool:
        return selectors.user_is_brand_wide(user=request.user)

    def has_add_permission(self, request: HttpRequest, *args: Any) -> bool:
        return self._brand_wide(request) and super().has_add_permission(request, *args)  # type: ignore[misc]

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return self._brand_wide(request) and super().has_change_permission(request, obj)  # type: ignore[misc]

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return self._brand_wide(request) and super().has_delete_permission(request, obj)  # type: ignore[misc]


class BrandOnlyAdminMixin(BrandWideOnlyAdminMixin):
    """For brand configuration and logs (CRM credentials, opt-outs, policy): hidden from location-limited staff."""

    def has_module_permission(self, request: HttpRequest) -> bool:
        return self._brand_wide(request) and super().has_module_permission(request)  # type: ignore[misc]

    def has_view_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return self._brand_wide(request) and super().has_view_permission(request, obj)  # type: ignore[misc]


class ReadOnlyAdminMixin:
    """Logs written by the system: listed and opened, never added or edited by hand."""

    def has_add_permission(self, request: HttpRequest, *args: Any) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False
