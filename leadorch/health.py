"""What /api/health reports: the database, the job worker, the dispatcher and the queue."""

from __future__ import annotations

import time
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from django.conf import settings
from django.db import DatabaseError, connection
from django.utils import timezone

from chat.ai import health as ai_health
from leadorch.models import ProcessHeartbeat, ProcessKind


@dataclass(frozen=True)
class HealthReport:
    healthy: bool
    checks: dict[str, dict[str, Any]]

    def as_dict(self) -> dict[str, Any]:
        return {
            "status": "ok" if self.healthy else "unavailable",
            "time": timezone.now().isoformat(),
            "checks": self.checks,
        }


def health_check() -> HealthReport:
    """Check every part the product needs to take leads and send messages.

    Any database failure is reported, never raised.
    """
    checks: dict[str, dict[str, Any]] = {}
    started = time.perf_counter()
    try:
        connection.set_schema_to_public()
        with connection.cursor() as cursor:
            cursor.execute("SELECT 1")
            cursor.fetchone()
    except DatabaseError as error:
        checks["database"] = {"ok": False, "error": error.__class__.__name__}
        return HealthReport(healthy=False, checks=checks)
    checks["database"] = {
        "ok": True,
        "latency_ms": round((time.perf_counter() - started) * 1000, 2),
    }

    try:
        checks["worker"] = _process_status(ProcessKind.WORKER)
        checks["dispatcher"] = _process_status(ProcessKind.DISPATCHER)
        checks["queue"] = _queue_status()
    except DatabaseError as error:
        checks["database"] = {"ok": False, "error": error.__class__.__name__}
    # The offline assistant always answers, so a failing provider degrades, never fails.
    checks["assistant"] = {"ok": True, **ai_health.report()}
    healthy = all(check["ok"] for check in checks.values())
    return HealthReport(healthy=healthy, checks=checks)


def _process_status(kind: str) -> dict[str, Any]:
    stale_after = settings.HEALTH_WORKER_STALE_SECONDS
    now = timezone.now()
    recent = ProcessHeartbeat.objects.filter(
        kind=kind, last_seen_at__gte=now - timedelta(seconds=stale_after)
    )
    latest = (
        ProcessHeartbeat.objects.filter(kind=kind).order_by("-last_seen_at").first()
    )
    if latest is None:
        return {"ok": False, "error": f"no {kind} has reported yet"}
    age = (now - latest.last_seen_at).total_seconds()
    status: dict[str, Any] = {
        "ok": age <= stale_after,
        "last_seen_seconds_ago": round(age, 1),
        "processes": recent.count(),
    }
    if not status["ok"]:
        status["error"] = f"no {kind} heartbeat for {int(age)} s"
    return status


def _queue_status() -> dict[str, Any]:
    from django_q.brokers import get_broker

    broker = get_broker()
    try:
        pending = broker.queue_size()
    except Exception as error:  # a broken broker is reported, not raised
        return {"ok": False, "error": error.__class__.__name__}
    return {
        "ok": True,
        "pending": pending,
        "broker": "redis" if settings.REDIS_URL else "orm",
    }
