"""Rate limits: the counter, client addresses, chat link lookups (page, API, socket)
and the messaging webhooks."""

from __future__ import annotations

import uuid

import pytest
from asgiref.sync import async_to_sync
from channels.testing import WebsocketCommunicator
from django.core.cache import cache
from django.test import Client
from django_tenants.utils import schema_context, tenant_context

from chat import api as chat_api
from chat import services as chat_services
from chat.consumers import CLOSE_NOT_FOUND, CLOSE_RATE_LIMITED
from chat.views import CONTENT_SECURITY_POLICY
from leadorch import ratelimit
from leadorch.asgi import application
from tests.conftest import PLATFORM_HOST, host_of
from tests.factories import LeadFactory
from tests.messaging.test_inbound_sms import post_sms, sms

ADDRESS = "198.51.100.7"
OTHER_ADDRESS = "198.51.100.8"


@pytest.fixture(autouse=True)
def _fresh_cache():
    cache.clear()
    yield
    cache.clear()


def key() -> str:
    return f"test:{uuid.uuid4()}"


# --- the counter ------------------------------------------------------------------


def test_a_fixed_window_allows_the_limit_then_refuses_until_it_ends(tenant):
    name, start = key(), 60 * 16_667 + 20.0  # 20 s into a minute
    decisions = [
        ratelimit.rate_limit_hit(name, limit=3, window=60, now=start + i)
        for i in range(4)
    ]
    assert [d.allowed for d in decisions] == [True, True, True, False]
    assert [d.count for d in decisions] == [1, 2, 3, 4]
    assert decisions[-1].retry_after == 37
    assert ratelimit.rate_limit_hit(name, limit=3, window=60, now=start + 40).allowed
    assert ratelimit.rate_limit_hit(name, limit=3, window=60, now=start + 40).count == 2


def test_looking_does_not_count(tenant):
    name = key()
    for _ in range(5):
        assert ratelimit.rate_limit_exceeded(name, limit=2, window=60).allowed
    ratelimit.rate_limit_hit(name, limit=2, window=60)
    assert ratelimit.rate_limit_exceeded(name, limit=2, window=60).allowed
    ratelimit.rate_limit_hit(name, limit=2, window=60)
    assert not ratelimit.rate_limit_exceeded(name, limit=2, window=60).allowed


def test_zero_switches_a_limit_off(tenant):
    name = key()
    assert all(
        ratelimit.rate_limit_hit(name, limit=0, window=60).allowed for _ in range(50)
    )


def test_each_brand_counts_separately(test_tenants):
    name = key()
    with tenant_context(test_tenants["alpha"]):
        ratelimit.rate_limit_hit(name, limit=1, window=60)
        assert not ratelimit.rate_limit_hit(name, limit=1, window=60).allowed
    with tenant_context(test_tenants["bravo"]):
        assert ratelimit.rate_limit_hit(name, limit=1, window=60).allowed


class BrokenCache:
    def incr(self, *args, **kwargs):
        raise ConnectionError("redis is down")

    add = get = incr


def test_an_unreachable_cache_lets_requests_through(tenant, monkeypatch):
    monkeypatch.setattr(ratelimit, "cache", BrokenCache())
    assert ratelimit.rate_limit_hit(key(), limit=1, window=60).allowed
    assert ratelimit.rate_limit_exceeded(key(), limit=1, window=60).allowed


# --- client addresses -------------------------------------------------------------


@pytest.mark.parametrize(
    ("behind_proxy", "hops", "forwarded", "expected"),
    [
        (False, 1, "203.0.113.1", "10.0.0.1"),  # no proxy: the header is the client's
        (True, 1, None, "10.0.0.1"),
        (True, 1, "203.0.113.1", "203.0.113.1"),
        (True, 1, "1.2.3.4, 203.0.113.1", "203.0.113.1"),  # forged entry ignored
        (True, 2, "1.2.3.4, 203.0.113.1, 10.1.1.1", "203.0.113.1"),
        (True, 3, "203.0.113.1", "203.0.113.1"),
        (True, 1, " , ", "10.0.0.1"),
    ],
)
def test_client_address(settings, behind_proxy, hops, forwarded, expected):
    settings.BEHIND_PROXY = behind_proxy
    settings.TRUSTED_PROXY_HOPS = hops
    assert (
        ratelimit.client_ip_from(remote_addr="10.0.0.1", forwarded_for=forwarded)
        == expected
    )


def test_client_address_of_a_socket(settings):
    settings.BEHIND_PROXY = True
    scope = {
        "client": ("10.0.0.1", 5000),
        "headers": [(b"host", b"x"), (b"x-forwarded-for", b"9.9.9.9, 203.0.113.4")],
    }
    assert ratelimit.client_ip_of_scope(scope) == "203.0.113.4"
    settings.BEHIND_PROXY = False
    assert ratelimit.client_ip_of_scope(scope) == "10.0.0.1"
    assert ratelimit.client_ip_of_scope({"headers": []}) == "unknown"


# --- chat link lookups --------------------------------------------------------------


@pytest.fixture
def limited(settings):
    settings.CHAT_TOKEN_FAILURES_PER_MINUTE = 3


@pytest.fixture
def token(tenant):
    lead = LeadFactory()
    return chat_services.chat_links_create(leads=[lead])[lead.pk][3:]


def get(client: Client, path: str, address: str = ADDRESS, **extra):
    return client.get(path, REMOTE_ADDR=address, **extra)


def test_the_page_refuses_an_address_after_too_many_bad_links(
    limited, token, tenant_client
):
    for n in range(3):
        assert get(tenant_client, f"/c/guess-{n}").status_code == 404
    refused = get(tenant_client, "/c/guess-4")
    assert refused.status_code == 429
    assert refused["Retry-After"].isdigit()
    assert refused["Content-Security-Policy"] == CONTENT_SECURITY_POLICY
    assert refused["Cache-Control"] == "no-store"
    assert "Too many attempts" in refused.content.decode()
    # A good link from that address is refused too: the answer tells nothing.
    assert get(tenant_client, f"/c/{token}").status_code == 429
    # A forged X-Forwarded-For does not make a new client.
    forged = get(tenant_client, "/c/guess-5", HTTP_X_FORWARDED_FOR="192.0.2.55")
    assert forged.status_code == 429
    # Other addresses are not affected.
    assert get(tenant_client, f"/c/{token}", OTHER_ADDRESS).status_code == 200


def test_good_links_do_not_count(limited, token, tenant_client):
    for _ in range(10):
        assert get(tenant_client, f"/c/{token}").status_code == 200
    assert get(tenant_client, "/c/guess").status_code == 404


def test_the_api_refuses_an_address_after_too_many_bad_links(
    limited, token, tenant_client
):
    for n in range(3):
        assert get(tenant_client, f"/api/chat/guess-{n}/context").status_code == 404
    refused = get(tenant_client, f"/api/chat/{token}/messages")
    assert refused.status_code == 429
    assert refused.json()["error"] == "throttled"
    assert refused["Retry-After"].isdigit()
    other = get(tenant_client, f"/api/chat/{token}/messages", OTHER_ADDRESS)
    assert other.status_code == 200


def test_page_and_api_share_the_count(limited, tenant_client):
    get(tenant_client, "/c/guess-1")
    get(tenant_client, "/api/chat/guess-2/messages")
    get(tenant_client, "/c/guess-3")
    assert get(tenant_client, "/api/chat/guess-4/messages").status_code == 429


def test_the_api_throttle_ignores_a_forged_forwarded_for(
    token, tenant_client, monkeypatch
):
    monkeypatch.setattr(chat_api.TokenLookupThrottle, "rate", "3/min")
    codes = [
        get(
            tenant_client,
            f"/api/chat/{token}/context",
            HTTP_X_FORWARDED_FOR=f"192.0.2.{n}",
        ).status_code
        for n in range(4)
    ]
    assert codes == [200, 200, 200, 429]


def test_the_socket_refuses_the_handshake_after_too_many_bad_links(settings, tenant_tx):
    settings.CHAT_TOKEN_FAILURES_PER_MINUTE = 2
    lead = LeadFactory()
    token = chat_services.chat_links_create(leads=[lead])[lead.pk][3:]
    host = host_of(tenant_tx)

    async def attempt(path_token: str, address: str):
        socket = WebsocketCommunicator(
            application,
            f"/ws/chat/{path_token}/",
            headers=[(b"host", host.encode()), (b"origin", f"http://{host}".encode())],
        )
        socket.scope["client"] = (address, 40000)
        connected, code = await socket.connect()
        await socket.disconnect()
        return connected, code

    async def scenario():
        return [
            await attempt("guess-1", ADDRESS),
            await attempt("guess-2", ADDRESS),
            await attempt(token, ADDRESS),
            await attempt(token, OTHER_ADDRESS),
        ]

    results = async_to_sync(scenario)()
    assert results[0] == (False, CLOSE_NOT_FOUND)
    assert results[1] == (False, CLOSE_NOT_FOUND)
    assert results[2] == (False, CLOSE_RATE_LIMITED)
    assert results[3][0] is True


# --- webhooks -----------------------------------------------------------------------


def test_twilio_webhooks_are_limited_per_brand_before_any_check(settings, test_tenants):
    settings.WEBHOOK_RATE_PER_MINUTE = 2
    settings.TWILIO_AUTH_TOKEN = ""
    alpha = Client(HTTP_HOST=host_of(test_tenants["alpha"]))
    codes = [post_sms(alpha, sms("hi"), signature="x").status_code for _ in range(3)]
    assert codes == [403, 403, 429]
    refused = alpha.post("/webhooks/twilio/status", {"MessageSid": "SM1"})
    assert refused.status_code == 429
    assert refused.json()["error"] == "rate_limited"
    assert int(refused["Retry-After"]) == refused.json()["retry_after"] > 0
    bravo = Client(HTTP_HOST=host_of(test_tenants["bravo"]))
    assert post_sms(bravo, sms("hi"), signature="x").status_code == 403


def test_sendgrid_webhook_is_limited_per_host(settings, test_tenants):
    settings.WEBHOOK_RATE_PER_MINUTE = 1
    alpha = Client(HTTP_HOST=host_of(test_tenants["alpha"]))
    platform = Client(HTTP_HOST=PLATFORM_HOST)
    path = "/webhooks/sendgrid/events"
    assert alpha.post(path, "[]", content_type="application/json").status_code == 403
    assert alpha.post(path, "[]", content_type="application/json").status_code == 429
    assert platform.post(path, "[]", content_type="application/json").status_code == 403
    assert platform.post(path, "[]", content_type="application/json").status_code == 429


def test_the_limit_for_shopmonkey_connections(settings, tenant):
    """What leads.webhooks.webhook_deliver gets from the limiter, per connection."""
    settings.WEBHOOK_RATE_PER_MINUTE = 2
    first, second = str(uuid.uuid4()), str(uuid.uuid4())
    assert ratelimit.webhook_rate_limited(source="shopmonkey", ident=first) is None
    assert ratelimit.webhook_rate_limited(source="shopmonkey", ident=first) is None
    body = ratelimit.webhook_rate_limited(source="shopmonkey", ident=first)
    assert body is not None
    assert body["error"] == "rate_limited"
    assert 0 < body["retry_after"] <= 60
    assert ratelimit.webhook_rate_limited(source="shopmonkey", ident=second) is None
    with schema_context("bravo"):
        assert ratelimit.webhook_rate_limited(source="shopmonkey", ident=first) is None


def test_the_default_webhook_limit_is_generous(settings):
    assert settings.WEBHOOK_RATE_PER_MINUTE >= 6000
