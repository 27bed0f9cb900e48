"""leads.asgi: ShopMonkey deliveries answered ahead of Django, exactly as Django answers them.

Each request goes to Django's own ASGI handler (the view) and to the lean route
wrapping it; both answers must be the same, and the lean route must have
answered itself (or, for what it does not serve, handed the request to Django).
The route stores deliveries from its own threads, so these tests commit.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from types import SimpleNamespace
from typing import Any

import pytest
from asgiref.sync import async_to_sync
from django.core.cache import cache
from django.core.handlers.asgi import ASGIHandler
from django.db import OperationalError
from django.db.backends.base.base import BaseDatabaseWrapper
from django.urls import reverse
from django_tenants.utils import tenant_context

from leads import webhooks
from leads.asgi import WEBHOOK_PATH, ShopMonkeyWebhookRoute
from leads.models import DeliveryStatus, Lead, WebhookDelivery
from tests.conftest import PLATFORM_HOST, host_of
from tests.factories import LocationFactory
from tests.leads.conftest import event, make_connection, order_row, signed
from tests.leads.shopmonkey_fakes import LEAD_ORDER_ID, LOCATION_ID

# --- Driving an ASGI app -------------------------------------------------------------


@dataclass(frozen=True)
class Answer:
    status: int
    headers: dict[str, str]
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body)


def _scope(
    *, method: str, path: str, host: str, headers: dict[str, str], scheme: str
) -> dict[str, Any]:
    return {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": method,
        "scheme": scheme,
        "path": path,
        "raw_path": path.encode(),
        "root_path": "",
        "query_string": b"",
        "headers": [
            (name.lower().encode("latin1"), value.encode("latin1"))
            for name, value in {"Host": host, **headers}.items()
        ],
        "client": ("127.0.0.1", 50000),
        "server": ("127.0.0.1", 8000),
    }


async def _acall(app: Any, scope: dict[str, Any], chunks: list[bytes]) -> Answer:
    incoming = [
        {"type": "http.request", "body": chunk, "more_body": i < len(chunks) - 1}
        for i, chunk in enumerate(chunks)
    ]
    finished = asyncio.Event()
    sent: list[dict[str, Any]] = []

    async def receive() -> dict[str, Any]:
        if incoming:
            return incoming.pop(0)
        await finished.wait()
        return {"type": "http.disconnect"}

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    try:
        await app(scope, receive, send)
    finally:
        finished.set()
    start = next(m for m in sent if m["type"] == "http.response.start")
    return Answer(
        status=start["status"],
        headers={
            name.decode("latin1").lower(): value.decode("latin1")
            for name, value in start["headers"]
        },
        body=b"".join(
            m.get("body", b"") for m in sent if m["type"] == "http.response.body"
        ),
    )


def call(
    app: Any,
    *,
    host: str,
    path: str,
    body: bytes = b"",
    headers: dict[str, str] | None = None,
    method: str = "POST",
    scheme: str = "http",
    chunk_size: int | None = None,
    declare_length: bool = True,
) -> Answer:
    """One request through ``app``; the body in chunks of ``chunk_size`` bytes if given."""
    headers = {"Content-Type": "application/json", **(headers or {})}
    if declare_length:
        headers["Content-Length"] = str(len(body))
    chunks = (
        [body[i : i + chunk_size] for i in range(0, len(body), chunk_size)]
        if chunk_size
        else [body]
    )
    scope = _scope(method=method, path=path, host=host, headers=headers, scheme=scheme)
    return async_to_sync(_acall)(app, scope, chunks)


class Recorder:
    """Passes requests to Django and counts them: did the lean route hand one over?"""

    def __init__(self, app: Any) -> None:
        self.app = app
        self.calls = 0

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        self.calls += 1
        await self.app(scope, receive, send)


def build_apps() -> SimpleNamespace:
    """Django's handler alone, and the route in front of another one. Middleware read
    their settings when built: build after changing settings."""
    django = Recorder(ASGIHandler())
    return SimpleNamespace(
        django=ASGIHandler(), lean=ShopMonkeyWebhookRoute(django), handed_over=django
    )


@pytest.fixture
def apps() -> SimpleNamespace:
    return build_apps()


# --- Deliveries ---------------------------------------------------------------------


def raw_headers(meta: dict[str, str]) -> dict[str, str]:
    """Test-client META names (HTTP_WEBHOOK_ID) as the header names ShopMonkey sends."""
    return {name[5:].replace("_", "-").lower(): value for name, value in meta.items()}


def delivery(body: dict[str, Any] | bytes, **signing: Any) -> dict[str, Any]:
    """A signed request: its body and headers."""
    raw, meta = signed(body, **signing)
    return {"body": raw, "headers": raw_headers(meta)}


@pytest.fixture
def brand(tenant_tx) -> SimpleNamespace:
    LocationFactory(name="Tint World - Store094", crm_location_id=LOCATION_ID)
    crm = make_connection()
    return SimpleNamespace(
        tenant=tenant_tx,
        host=host_of(tenant_tx),
        crm=crm,
        path=f"/webhooks/shopmonkey/{crm.public_id}/",
    )


def comparable(answer: Answer) -> tuple[int, dict[str, str], Any]:
    """Status, headers and JSON body; the delivery's id and length may differ."""
    headers = {k: v for k, v in answer.headers.items() if k != "content-length"}
    body = answer.json()
    if isinstance(body, dict) and "delivery" in body:
        body = {**body, "delivery": "<id>"}
    return answer.status, headers, body


def _bad_signature(brand: SimpleNamespace) -> dict[str, Any]:
    request = delivery(event(order_row()))
    request["headers"]["webhook-signature"] = (
        "v1,AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA="
    )
    return request


def _tampered(brand: SimpleNamespace) -> dict[str, Any]:
    request = delivery(event(order_row()))
    request["body"] = request["body"].replace(b"Estimate", b"Invoice")
    return request


def _missing_id(brand: SimpleNamespace) -> dict[str, Any]:
    request = delivery(event(order_row()))
    del request["headers"]["webhook-id"]
    return request


def _malformed_signature(brand: SimpleNamespace) -> dict[str, Any]:
    request = delivery(event(order_row()))
    request["headers"]["webhook-signature"] = "v1,not-base64!"
    return request


def _other_brands_secret(brand: SimpleNamespace) -> dict[str, Any]:
    return delivery(
        event(order_row()), secret="whsec_YnJhdm8tb25seS1zZWNyZXQtZm9yLXRlc3Rz"
    )


def _unknown_connection(brand: SimpleNamespace) -> dict[str, Any]:
    return {
        **delivery(event(order_row())),
        "path": "/webhooks/shopmonkey/00000000-0000-0000-0000-000000000000/",
    }


def _too_large(brand: SimpleNamespace) -> dict[str, Any]:
    return delivery(event(order_row(complaint="x" * 2 * BODY_LIMIT)))


def _too_large_undeclared(brand: SimpleNamespace) -> dict[str, Any]:
    return {**_too_large(brand), "declare_length": False, "chunk_size": 1500}


# Larger than a fixture delivery (about 3 kB), small enough to exceed in a test.
BODY_LIMIT = 5000

REFUSALS: dict[str, tuple[Callable[[SimpleNamespace], dict[str, Any]], int, str]] = {
    "bad signature": (_bad_signature, 401, "invalid_signature"),
    "tampered body": (_tampered, 401, "invalid_signature"),
    "missing webhook-id": (_missing_id, 401, "invalid_signature"),
    "malformed signature": (_malformed_signature, 401, "invalid_signature"),
    "another brand's secret": (_other_brands_secret, 401, "invalid_signature"),
    "stale timestamp": (
        lambda b: delivery(
            event(order_row()), at=datetime.now(UTC) - timedelta(minutes=6)
        ),
        401,
        "stale_timestamp",
    ),
    "future timestamp": (
        lambda b: delivery(
            event(order_row()), at=datetime.now(UTC) + timedelta(minutes=6)
        ),
        401,
        "stale_timestamp",
    ),
    "malformed JSON": (
        lambda b: delivery(b'{"operation": "INSERT", "table": '),
        400,
        "invalid_json",
    ),
    "no record": (
        lambda b: delivery(
            {"operation": "INSERT", "table": "order", "data": {"name": "no id"}}
        ),
        400,
        "invalid_body",
    ),
    "unknown connection": (_unknown_connection, 404, "unknown_connection"),
    "declared too large": (_too_large, 413, "too_large"),
    "undeclared too large": (_too_large_undeclared, 413, "too_large"),
}


# --- Same answers as the view -------------------------------------------------------


@pytest.mark.parametrize("case", list(REFUSALS))
def test_a_refused_delivery_gets_the_views_answer_and_stores_nothing(
    brand, apps, settings, case
):
    settings.WEBHOOK_MAX_BODY_BYTES = BODY_LIMIT
    make, status, code = REFUSALS[case]
    request = {"path": brand.path, **make(brand)}

    by_django = call(apps.django, host=brand.host, **request)
    by_route = call(apps.lean, host=brand.host, **request)

    assert (by_route.status, by_route.json()["error"]) == (status, code)
    assert comparable(by_route) == comparable(by_django)
    assert by_route.headers["content-type"] == "application/json"
    assert apps.handed_over.calls == 0
    assert not WebhookDelivery.objects.exists()


def test_each_connection_is_rate_limited_by_either_path(brand, apps, settings):
    settings.WEBHOOK_RATE_PER_MINUTE = 2
    cache.clear()
    request = {"path": brand.path, **_bad_signature(brand)}

    first = call(apps.django, host=brand.host, **request)
    second = call(apps.lean, host=brand.host, **request)
    by_route = call(apps.lean, host=brand.host, **request)
    by_django = call(apps.django, host=brand.host, **request)
    other = make_connection(name="Second shop")
    elsewhere = call(
        apps.lean,
        host=brand.host,
        **{**request, "path": f"/webhooks/shopmonkey/{other.public_id}/"},
    )

    assert (first.status, second.status, elsewhere.status) == (401, 401, 401)
    for answer in (by_route, by_django):
        assert answer.status == 429
        assert answer.json()["error"] == "rate_limited"
        assert (
            0 < int(answer.headers["retry-after"]) == answer.json()["retry_after"] <= 60
        )
    assert apps.handed_over.calls == 0
    cache.clear()


def test_another_brands_connection_is_unknown_at_this_host(brand, apps, other_tenant):
    with tenant_context(other_tenant):
        bravo = make_connection()
    request = {
        "path": f"/webhooks/shopmonkey/{bravo.public_id}/",
        **delivery(event(order_row())),
    }

    by_route = call(apps.lean, host=brand.host, **request)

    assert comparable(by_route) == comparable(
        call(apps.django, host=brand.host, **request)
    )
    assert (by_route.status, by_route.json()["error"]) == (404, "unknown_connection")


def test_a_delivery_is_stored_processed_and_acknowledged_like_the_views(
    brand, apps, shopmonkey
):
    by_django = call(
        apps.django, host=brand.host, path=brand.path, **delivery(event(order_row()))
    )
    row = order_row(id=LEAD_ORDER_ID)

    by_route = call(apps.lean, host=brand.host, path=brand.path, **delivery(event(row)))

    assert comparable(by_route) == comparable(by_django)
    assert by_route.status == 202
    assert apps.handed_over.calls == 0
    stored = WebhookDelivery.objects.get(pk=by_route.json()["delivery"])
    assert (stored.connection, stored.record_id, stored.operation, stored.attempt) == (
        brand.crm,
        LEAD_ORDER_ID,
        "INSERT",
        1,
    )
    assert json.loads(stored.body)["data"]["id"] == LEAD_ORDER_ID
    # Tests run queued tasks at once: the delivery was processed into its lead.
    assert stored.status == DeliveryStatus.PROCESSED
    assert Lead.objects.filter(crm_order_id=LEAD_ORDER_ID).count() == 1


def test_a_body_in_several_chunks_is_read_whole(brand, apps, shopmonkey):
    request = delivery(event(order_row()))

    answer = call(
        apps.lean, host=brand.host, path=brand.path, chunk_size=100, **request
    )

    assert answer.status == 202
    assert WebhookDelivery.objects.get().body.encode() == request["body"]


def test_a_redelivered_version_is_acknowledged_once_by_either_path(
    brand, apps, shopmonkey
):
    row = order_row(id=LEAD_ORDER_ID)

    first = call(apps.django, host=brand.host, path=brand.path, **delivery(event(row)))
    again_by_route = call(
        apps.lean, host=brand.host, path=brand.path, **delivery(event(row))
    )
    again_by_django = call(
        apps.django, host=brand.host, path=brand.path, **delivery(event(row))
    )

    assert (first.status, again_by_route.status) == (202, 200)
    assert comparable(again_by_route) == comparable(again_by_django)
    assert again_by_route.json()["status"] == "duplicate"
    assert WebhookDelivery.objects.count() == 1
    assert Lead.objects.count() == 1


def test_the_queue_row_commits_with_the_delivery(brand, apps, settings, monkeypatch):
    from django_q.models import OrmQ
    from django_q.signing import SignedPackage

    settings.Q_CLUSTER = {**settings.Q_CLUSTER, "sync": False}
    monkeypatch.setattr("django_q.conf.Conf.SYNC", False)
    OrmQ.objects.all().delete()

    answer = call(
        apps.lean, host=brand.host, path=brand.path, **delivery(event(order_row()))
    )

    assert answer.status == 202
    stored = WebhookDelivery.objects.get()
    assert stored.status == DeliveryStatus.RECEIVED
    task = SignedPackage.loads(OrmQ.objects.get().payload)
    assert task["func"] == "leads.tasks.webhook_delivery_process"
    assert task["kwargs"] == {
        "schema_name": brand.tenant.schema_name,
        "delivery_id": stored.pk,
    }
    OrmQ.objects.all().delete()


def test_twenty_concurrent_deliveries_of_one_order_make_one_lead(
    brand, apps, shopmonkey
):
    row = order_row(id=LEAD_ORDER_ID)
    requests = [
        delivery(
            event(
                {**row, "meta": {"version": 1000 + (i if i % 2 else 0)}},
                operation="UPDATE" if i else "INSERT",
            )
        )
        for i in range(20)
    ]

    async def send_all() -> list[Answer]:
        scopes = [
            (
                _scope(
                    method="POST",
                    path=brand.path,
                    host=brand.host,
                    headers={
                        "Content-Type": "application/json",
                        "Content-Length": str(len(r["body"])),
                        **r["headers"],
                    },
                    scheme="http",
                ),
                [r["body"]],
            )
            for r in requests
        ]
        return await asyncio.gather(*(_acall(apps.lean, s, c) for s, c in scopes))

    statuses = [answer.status for answer in async_to_sync(send_all)()]

    # One for version 1000, one for each of the ten odd versions.
    assert sorted(statuses) == [200] * 9 + [202] * 11
    assert WebhookDelivery.objects.count() == 11
    assert Lead.objects.filter(crm_order_id=LEAD_ORDER_ID).count() == 1


# --- What the route hands to Django ---------------------------------------------------


@pytest.mark.parametrize(
    ("change", "status"),
    [
        ({"method": "GET"}, 405),
        ({"host": "nobody.localhost"}, 404),
        ({"host": PLATFORM_HOST}, 404),
        ({"host": "evil.example.org"}, 404),
        ({"path": "/webhooks/shopmonkey/not-a-uuid/"}, 404),
    ],
    ids=["GET", "unknown host", "platform host", "disallowed host", "not a uuid"],
)
def test_what_it_does_not_serve_goes_to_django(brand, apps, change, status):
    request = {
        "host": brand.host,
        "path": brand.path,
        **delivery(event(order_row())),
        **change,
    }

    by_route = call(apps.lean, **request)

    assert apps.handed_over.calls == 1
    assert (by_route.status, by_route.body) == (
        status,
        call(apps.django, **request).body,
    )
    # Django ran on this thread; an unknown host left its connection in the public schema.
    with tenant_context(brand.tenant):
        assert not WebhookDelivery.objects.exists()


def test_plain_http_is_redirected_by_django_when_https_is_required(brand, settings):
    settings.SECURE_SSL_REDIRECT = True
    apps = build_apps()
    request = {"host": brand.host, "path": brand.path, **delivery(event(order_row()))}

    answer = call(apps.lean, **request)

    assert (answer.status, apps.handed_over.calls) == (301, 1)
    assert answer.headers["location"].startswith("https://")


def test_https_behind_a_proxy_is_answered_with_the_same_security_headers(
    brand, settings, shopmonkey
):
    settings.SECURE_SSL_REDIRECT = True
    settings.SECURE_HSTS_SECONDS = 3600
    settings.SECURE_HSTS_INCLUDE_SUBDOMAINS = True
    settings.SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
    apps = build_apps()

    def send(app: Any) -> Answer:
        request = delivery(event(order_row()))
        request["headers"]["X-Forwarded-Proto"] = "https"
        return call(app, host=brand.host, path=brand.path, **request)

    by_route, by_django = send(apps.lean), send(apps.django)

    assert by_route.status == 202
    assert apps.handed_over.calls == 0
    assert by_route.headers["strict-transport-security"] == (
        "max-age=3600; includeSubDomains"
    )
    assert comparable(by_route) == comparable(by_django)


# --- Failures -------------------------------------------------------------------------


def _refuse(*args: Any, **kwargs: Any) -> Any:
    raise OperationalError("connection refused")


def test_database_down_before_the_brand_is_known_is_503_like_the_view(
    brand, apps, monkeypatch
):
    request = {"host": brand.host, "path": brand.path, **delivery(event(order_row()))}

    with monkeypatch.context() as patch:
        patch.setattr(BaseDatabaseWrapper, "cursor", _refuse)
        by_route = call(apps.lean, **request)
        by_django = call(apps.django, **request)

    assert (by_route.status, by_route.json()) == (
        503,
        {
            "error": "service_unavailable",
            "detail": "The database is unavailable; try again shortly.",
        },
    )
    assert by_route.headers["retry-after"] == "5"
    assert comparable(by_route) == comparable(by_django)


def test_database_down_while_storing_is_503_like_the_view(
    brand, apps, settings, monkeypatch
):
    # The brand is remembered from an earlier request; the delivery's queries fail.
    settings.DOMAIN_CACHE_SECONDS = 60
    monkeypatch.setattr("leadorch.middleware._host_tenants", {})
    call(apps.lean, host=brand.host, path=brand.path, **delivery(b"{}"))
    request = {"host": brand.host, "path": brand.path, **delivery(event(order_row()))}

    with monkeypatch.context() as patch:
        patch.setattr(BaseDatabaseWrapper, "cursor", _refuse)
        by_route = call(apps.lean, **request)
        by_django = call(apps.django, **request)

    assert (by_route.status, by_route.json()["error"]) == (503, "service_unavailable")
    assert comparable(by_route) == comparable(by_django)
    assert apps.handed_over.calls == 0


def test_an_unexpected_error_is_a_logged_json_500(brand, apps, monkeypatch, caplog):
    def broken(**kwargs: Any) -> Any:
        raise RuntimeError("bug")

    monkeypatch.setattr(webhooks, "webhook_deliver", broken)

    answer = call(
        apps.lean, host=brand.host, path=brand.path, **delivery(event(order_row()))
    )

    assert (answer.status, answer.json()["error"]) == (500, "server_error")
    record = next(r for r in caplog.records if r.name == "django.request")
    assert record.getMessage() == f"Internal Server Error: {brand.path}"
    assert record.exc_info is not None


def test_a_sender_that_disconnects_before_its_body_gets_no_answer(brand, apps):
    scope = _scope(
        method="POST",
        path=brand.path,
        host=brand.host,
        headers={"Content-Length": "100"},
        scheme="http",
    )

    async def disconnect() -> dict[str, Any]:
        return {"type": "http.disconnect"}

    async def send(message: dict[str, Any]) -> None:
        raise AssertionError(f"answered {message}")

    async_to_sync(apps.lean)(scope, disconnect, send)

    assert not WebhookDelivery.objects.exists()


# --- Wiring ---------------------------------------------------------------------------


def test_the_route_serves_the_views_url():
    connection_id = "0b9d2f8e-4c41-4a8e-9d55-3c1f0a6e7b21"
    path = reverse(
        "leads:shopmonkey_webhook",
        urlconf="leadorch.urls_tenants",
        kwargs={"connection_id": connection_id},
    )

    match = WEBHOOK_PATH.fullmatch(path)

    assert match is not None
    assert match["connection_id"] == connection_id


def test_the_asgi_application_puts_the_route_in_front_of_django():
    from leadorch.asgi import application, django_asgi_app

    http = application.application_mapping["http"]

    assert isinstance(http, ShopMonkeyWebhookRoute)
    assert http.app is django_asgi_app
