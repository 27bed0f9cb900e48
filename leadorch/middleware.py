"""Request middleware: health before tenancy, tenant routing that degrades to 503."""

from __future__ import annotations

import copy
import threading
import time
from collections.abc import Callable
from typing import Any

from django.conf import settings
from django.db import InterfaceError, OperationalError
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.template.loader import render_to_string
from django_tenants.middleware.main import TenantMainMiddleware
from django_tenants.utils import get_tenant_domain_model

from leadorch.health import health_check

HEALTH_PATHS = {"/api/health", "/api/health/"}
PING_PATHS = {"/api/ping", "/api/ping/"}


def _wants_json(request: HttpRequest) -> bool:
    return request.path.startswith(("/api/", "/webhooks/"))


# The JSON answer while the database cannot be reached, and when to try again.
SERVICE_UNAVAILABLE = {
    "error": "service_unavailable",
    "detail": "The database is unavailable; try again shortly.",
}
RETRY_AFTER_SECONDS = 5


def service_unavailable(request: HttpRequest) -> HttpResponse:
    """The answer while the database cannot be reached: 503 with a retry hint, never a 500."""
    if _wants_json(request):
        response: HttpResponse = JsonResponse(SERVICE_UNAVAILABLE, status=503)
    else:
        response = HttpResponse(render_to_string("503.html"), status=503)
    response["Retry-After"] = str(RETRY_AFTER_SECONDS)
    return response


class HealthCheckMiddleware:
    """Answers /api/health (readiness) and /api/ping (liveness) on any host, before
    tenant routing needs the database."""

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        if request.path in PING_PATHS:
            # Liveness: the process answers. No database, no tenant.
            return JsonResponse({"status": "ok"})
        if request.path in HEALTH_PATHS and request.method in {"GET", "HEAD"}:
            report = health_check()
            response = JsonResponse(
                report.as_dict(), status=200 if report.healthy else 503
            )
            response["Cache-Control"] = "no-store"
            return response
        return self.get_response(request)


_host_tenants: dict[str, tuple[float, Any]] = {}
_host_tenants_lock = threading.Lock()


def cached_tenant(hostname: str) -> Any | None:
    """The brand of ``hostname`` when this process looked it up within
    DOMAIN_CACHE_SECONDS, else None. Never touches the database."""
    cached = _host_tenants.get(hostname)
    if cached is not None and cached[0] > time.monotonic():
        return copy.copy(cached[1])
    return None


def tenant_for_host(hostname: str) -> Any:
    """The brand a host belongs to (a copy, free to annotate), looked up in the public
    schema and kept for DOMAIN_CACHE_SECONDS in the process.

    A brand's hosts rarely change; a change is seen by every process within
    DOMAIN_CACHE_SECONDS. Raises the domain model's DoesNotExist for an unknown host.
    """
    tenant = cached_tenant(hostname)
    if tenant is not None:
        return tenant
    expires = time.monotonic() + settings.DOMAIN_CACHE_SECONDS
    domain = (
        get_tenant_domain_model().objects.select_related("tenant").get(domain=hostname)
    )
    with _host_tenants_lock:
        if len(_host_tenants) > 10_000:
            _host_tenants.clear()
        _host_tenants[hostname] = (expires, domain.tenant)
    return copy.copy(domain.tenant)


class TenantMiddleware(TenantMainMiddleware):
    """django-tenants routing by host, answering 503 when the database is down.

    Host-to-brand answers come from :func:`tenant_for_host`, which saves a query
    (and a search_path switch) on most requests.
    """

    def get_tenant(self, domain_model: Any, hostname: str) -> Any:
        return tenant_for_host(hostname)

    def process_request(self, request: HttpRequest) -> HttpResponse | None:
        try:
            return super().process_request(request)
        except (OperationalError, InterfaceError):
            return service_unavailable(request)

    def process_exception(
        self, request: HttpRequest, exception: Exception
    ) -> HttpResponse | None:
        if isinstance(exception, OperationalError | InterfaceError):
            return service_unavailable(request)
        return None
