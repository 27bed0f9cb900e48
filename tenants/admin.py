from __future__ import annotations

from typing import Any

from django.contrib import admin
from django.db.models import QuerySet
from django.http import HttpRequest
from django_tenants.admin import TenantAdminMixin
from django_tenants.utils import get_public_schema_name

from leadorch.admin_sites import platform_site
from tenants import services
from tenants.models import Domain, Tenant


class DomainInline(admin.TabularInline):
    model = Domain
    extra = 0


@admin.register(Tenant, site=platform_site)
class TenantAdmin(TenantAdminMixin, admin.ModelAdmin):
    list_display = (
        "name",
        "slug",
        "schema_name",
        "outbound_mode",
        "is_active",
        "created_at",
    )
    list_filter = ("outbound_mode", "is_active")
    search_fields = ("name", "slug", "domains__domain")
    readonly_fields = ("schema_name", "created_at")
    inlines = [DomainInline]

    def get_queryset(self, request: HttpRequest) -> QuerySet[Tenant]:
        return (
            super().get_queryset(request).exclude(schema_name=get_public_schema_name())
        )

    def get_readonly_fields(
        self, request: HttpRequest, obj: Tenant | None = None
    ) -> tuple[str, ...]:
        # The slug names the schema and the hosts; it is fixed once the brand exists.
        return (*self.readonly_fields, "slug") if obj else tuple(self.readonly_fields)

    def save_model(
        self, request: HttpRequest, obj: Tenant, form: Any, change: bool
    ) -> None:
        if not change:
            obj.schema_name = obj.slug.replace("-", "_")
        super().save_model(request, obj, form, change)
        if not change:
            services.tenant_add_domain(
                tenant=obj, host=services.tenant_primary_host(slug=obj.slug)
            )
