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

from leadorch.health import health_check

HEALTH_PATHS = {"/api/health", "/api/health/"}
PING_PATHS = {"/api/ping", "/api/ping/"}


def _wants_json(request: HttpRequest) -> bool:
    return request.path.startswith(("/api/", "/webhooks/"))


def service_unavailable(request: HttpRequest) -> HttpResponse:
    """The answer while the database cannot be reached: 503 with a retry hint, never a 500."""
    if _wants_json(request):
        response: HttpResponse = JsonResponse(
            {
                "error": "service_unavailable",
                "detail": "The database is unavailable; try again shortly.",
            },
            status=503,
        )
    else:
        response = HttpResponse(render_to_string("503.html"), status=503)
    response["Retry-After"] = "5"
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


class TenantMiddleware(TenantMainMiddleware):
    """django-tenants routing by host, answering 503 when the database is down.

    Host-to-brand answers are kept for a few seconds in the process, which saves a
    query (and a search_path switch) on every request. A brand's hosts rarely
    change; a change is seen by every process within DOMAIN_CACHE_SECONDS.
    """

    _cache: dict[str, tuple[float, Any]] = {}
    _lock = threading.Lock()

    def get_tenant(self, domain_model: Any, hostname: str) -> Any:
        now = time.monotonic()
        cached = self._cache.get(hostname)
        if cached is not None and cached[0] > now:
            return copy.copy(cached[1])
        tenant = super().get_tenant(domain_model, hostname)
        with self._lock:
            if len(self._cache) > 10_000:
                self._cache.clear()
            self._cache[hostname] = (now + settings.DOMAIN_CACHE_SECONDS, tenant)
        return copy.copy(tenant)

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
