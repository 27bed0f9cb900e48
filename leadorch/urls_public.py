"""URLs of the platform host (public schema): the platform admin."""

from django.urls import include, path
from django.views.generic import RedirectView

from leadorch.admin_sites import platform_site

urlpatterns = [
    path("", RedirectView.as_view(url="/admin/", permanent=False)),
    path("admin/", platform_site.urls),
    path("", include("messaging.urls_public")),
]
