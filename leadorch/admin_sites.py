"""The two admin sites: the platform admin (public host) and a brand's staff admin (its hosts)."""

from __future__ import annotations

from django.contrib import admin
from django.contrib.auth.admin import GroupAdmin, UserAdmin
from django.contrib.auth.models import Group, User


class PlatformAdminSite(admin.AdminSite):
    site_header = "Lead Orchestrator platform"
    site_title = "Lead Orchestrator platform"
    index_title = "Brands and platform users"


platform_site = PlatformAdminSite(name="platform_admin")
platform_site.register(User, UserAdmin)
platform_site.register(Group, GroupAdmin)

# A brand's admin is Django's default site, routed from the tenant URLconf only.
admin.site.site_header = "Lead Orchestrator"
admin.site.site_title = "Lead Orchestrator"
admin.site.index_title = "Leads, locations and conversations"
