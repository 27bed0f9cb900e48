from datetime import timedelta

import pytest
import time_machine
from django.core.cache import cache
from django.db import OperationalError, connection
from django.test import Client
from django.utils import timezone

from chat.ai import health as ai_health
from leadorch import tasks
from leadorch.dispatch import dispatch_tick, registered_jobs
from leadorch.models import ProcessHeartbeat, ProcessKind
from tests.conftest import PLATFORM_HOST, host_of


@pytest.fixture
def running_processes(public_schema):
    """A dispatcher tick, which queues a worker heartbeat that the (in-process) worker runs."""
    tasks.process_heartbeat_record(kind=ProcessKind.DISPATCHER)
    assert "worker-heartbeat" in dispatch_tick(jobs=registered_jobs())


@pytest.mark.parametrize(
    "host", [PLATFORM_HOST, "alpha.localhost", "unknown.localhost", "127.0.0.1"]
)
def test_healthy_on_any_host(test_tenants, running_processes, host):
    response = Client(HTTP_HOST=host).get("/api/health")

    assert response.status_code == 200
    body = response.json()
    assert body["status"] == "ok"
    assert body["checks"]["database"]["ok"] is True
    assert body["checks"]["worker"]["ok"] is True
    assert body["checks"]["worker"]["processes"] == 1
    assert body["checks"]["dispatcher"]["ok"] is True
    assert body["checks"]["queue"] == {"ok": True, "pending": 0, "broker": "orm"}
    assert response["Cache-Control"] == "no-store"


def test_unavailable_when_no_worker_ever_reported(test_tenants, public_schema):
    ProcessHeartbeat.objects.all().delete()

    response = Client(HTTP_HOST=PLATFORM_HOST).get("/api/health")

    assert response.status_code == 503
    body = response.json()
    assert body["status"] == "unavailable"
    assert body["checks"]["worker"] == {
        "ok": False,
        "error": "no worker has reported yet",
    }


def test_unavailable_when_worker_heartbeat_is_stale(
    test_tenants, running_processes, settings
):
    ProcessHeartbeat.objects.filter(kind=ProcessKind.WORKER).update(
        last_seen_at=timezone.now()
        - timedelta(seconds=settings.HEALTH_WORKER_STALE_SECONDS + 5)
    )

    response = Client(HTTP_HOST=PLATFORM_HOST).get("/api/health")

    assert response.status_code == 503
    worker = response.json()["checks"]["worker"]
    assert worker["ok"] is False
    assert worker["processes"] == 0
    assert "no worker heartbeat" in worker["error"]


def _refuse(*args, **kwargs):
    raise OperationalError("connection refused")


def test_unavailable_with_json_when_database_is_down(test_tenants, monkeypatch):
    with monkeypatch.context() as patch:
        patch.setattr(connection, "cursor", _refuse)
        response = Client(HTTP_HOST=PLATFORM_HOST).get("/api/health")

    assert response.status_code == 503
    assert response.json()["checks"] == {
        "database": {"ok": False, "error": "OperationalError"}
    }


def test_pages_answer_503_not_500_when_database_is_down(test_tenants, monkeypatch):
    client = Client(
        HTTP_HOST=host_of(test_tenants["alpha"]), raise_request_exception=False
    )

    with monkeypatch.context() as patch:
        patch.setattr(connection, "cursor", _refuse)
        page = client.get("/admin/login/")
        api = client.get("/api/schema/")

    assert page.status_code == 503
    assert "Temporarily unavailable" in page.content.decode()
    assert page["Retry-After"] == "5"
    assert api.status_code == 503
    assert api.json()["error"] == "service_unavailable"


def test_ping_answers_without_the_database(test_tenants, monkeypatch):
    with monkeypatch.context() as patch:
        patch.setattr(connection, "cursor", _refuse)
        response = Client(HTTP_HOST="anything.localhost").get("/api/ping")

    assert response.status_code == 200
    assert response.json() == {"status": "ok"}


@pytest.fixture
def clean_cache():
    yield
    cache.clear()


def test_health_reports_each_assistant_provider(
    clean_cache, test_tenants, running_processes, settings
):
    settings.ANTHROPIC_API_KEY = "sk-ant-never-shown"
    settings.OPENAI_API_KEY = ""
    ai_health.record(
        "anthropic", ok=False, error="anthropic: HTTP 529 overloaded_error"
    )
    body = Client(HTTP_HOST=PLATFORM_HOST).get("/api/health").json()
    assistant = body["checks"]["assistant"]
    assert body["status"] == "ok"  # the offline assistant still answers
    providers = assistant["providers"]
    assert providers["anthropic"]["status"] == "failing"
    assert (
        providers["anthropic"]["last_error"] == "anthropic: HTTP 529 overloaded_error"
    )
    assert providers["openai"]["status"] == "not_configured"
    assert providers["scripted"]["status"] == "ok"
    assert "sk-ant-never-shown" not in str(body)


def test_a_process_writes_a_providers_success_at_most_every_refresh(
    clean_cache, monkeypatch
):
    now = [1000.0]
    monkeypatch.setattr(ai_health, "_clock", lambda: now[0])
    monkeypatch.setattr(ai_health, "_ok_written", {})

    def state():
        return cache.get(ai_health.KEY.format(name="anthropic"), version=0)

    with time_machine.travel("2026-12-01 10:00:00Z", tick=False) as traveller:
        ai_health.record("anthropic", ok=True)
        first_ok = state()["last_ok_at"]
        traveller.shift(10)
        now[0] += 10
        ai_health.record("anthropic", ok=True)
        assert state()["last_ok_at"] == first_ok  # not written again

        ai_health.record("anthropic", ok=False, error="HTTP 529")
        assert state()["consecutive_failures"] == 1
        traveller.shift(1)
        now[0] += 1
        ai_health.record("anthropic", ok=True)  # the recovery shows at once
        assert state()["consecutive_failures"] == 0
        recovered = state()["last_ok_at"]
        assert recovered > first_ok

        traveller.shift(ai_health.OK_REFRESH_SECONDS)
        now[0] += ai_health.OK_REFRESH_SECONDS
        ai_health.record("anthropic", ok=True)
        assert state()["last_ok_at"] > recovered
