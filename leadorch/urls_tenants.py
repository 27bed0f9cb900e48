"""URLs of a brand's hosts (its schema): the staff admin, the API and webhooks."""

from django.contrib import admin
from django.urls import include, path
from django.views.generic import RedirectView
from drf_spectacular.views import SpectacularAPIView

urlpatterns = [
    path("", RedirectView.as_view(url="/admin/", permanent=False)),
    path("admin/", admin.site.urls),
    path("", include("leads.urls")),
    path("", include("messaging.urls")),
    path("", include("chat.urls")),
    path(
        "api/schema/",
        SpectacularAPIView.as_view(urlconf="leadorch.urls_tenants"),
        name="api_schema",
    ),
]
