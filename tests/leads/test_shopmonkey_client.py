"""The ShopMonkey client against HTTP-level fakes built from the shared fixtures."""

import json
import ssl

import httpx
import pytest

from leads.shopmonkey import (
    Order,
    ShopMonkeyAuthError,
    ShopMonkeyClient,
    ShopMonkeyNotFoundError,
    ShopMonkeyRequestError,
    ShopMonkeyResponseError,
    ShopMonkeyUnavailableError,
    WebhookEvent,
)
from tests.leads.shopmonkey_fakes import (
    CUSTOMER_ID,
    LEAD_ORDER_ID,
    RecordingTransport,
    fixture,
)


def _client(
    handler, **kwargs
) -> tuple[ShopMonkeyClient, RecordingTransport, list[float]]:
    transport = RecordingTransport(handler)
    sleeps: list[float] = []
    client = ShopMonkeyClient(
        api_key="sk-test",
        base_url="https://api.test",
        transport=transport,
        sleep=sleeps.append,
        **kwargs,
    )
    return client, transport, sleeps


def test_reads_an_order_with_bearer_auth():
    client, transport, _ = _client(
        lambda r: httpx.Response(200, json=fixture("order_website_lead.json"))
    )

    order = client.get_order(LEAD_ORDER_ID)

    assert transport.requests[0].headers["authorization"] == "Bearer sk-test"
    assert transport.paths() == [f"/v3/order/{LEAD_ORDER_ID}"]
    assert (
        order.id,
        order.number,
        order.status,
        order.authorized,
        order.message_count,
    ) == (
        LEAD_ORDER_ID,
        "1047",
        "Estimate",
        False,
        0,
    )
    assert order.name == "New Quote - Front brakes grinding"
    assert order.created_at.isoformat() == "2026-09-24T14:12:05.318000+00:00"
    assert order.version == "770700275967"
    assert order.is_complete


def test_customer_contact_comes_from_primary_sub_records():
    client, _, _ = _client(lambda r: httpx.Response(200, json=fixture("customer.json")))

    customer = client.get_customer(CUSTOMER_ID)

    assert (customer.first_name, customer.last_name) == ("Jordan", "Rivera")
    assert customer.email == "jordan.rivera@example.com"
    assert customer.phone == "+15555550142"


def test_vehicle_is_typed():
    client, _, _ = _client(lambda r: httpx.Response(200, json=fixture("vehicle.json")))

    vehicle = client.get_vehicle("v1")

    assert (vehicle.year, vehicle.make, vehicle.model, vehicle.submodel) == (
        2018,
        "Honda",
        "Civic",
        "EX",
    )


def test_pages_with_limit_and_skip_until_has_more_is_false():
    pages = {0: fixture("order_list_page1.json"), 2: fixture("order_list_page2.json")}

    def handler(request):
        return httpx.Response(200, json=pages[int(request.url.params["skip"])])

    client, transport, _ = _client(handler)

    seen = [
        (skip, [o.number for o in orders])
        for skip, orders in client.iter_order_pages(
            where={"status": "Estimate"}, orderby={"createdDate": "desc"}, page_size=2
        )
    ]

    assert seen == [(0, ["1048", "1047"]), (2, ["1039", "1021"])]
    first = transport.requests[0].url.params
    assert (first["limit"], first["skip"]) == ("2", "0")
    # lowercase orderby with a JSON value: camelCase is silently ignored by the API
    assert json.loads(first["orderby"]) == {"createdDate": "desc"}
    assert "orderBy" not in first
    assert json.loads(first["where"]) == {"status": "Estimate"}


def test_limit_is_clamped_to_100():
    client, transport, _ = _client(
        lambda r: httpx.Response(
            200, json={"success": True, "data": [], "meta": {"hasMore": False}}
        )
    )
    client.list_orders(limit=500)
    assert transport.requests[0].url.params["limit"] == "100"


def test_rows_repeated_across_pages_are_dropped():
    row = fixture("order_website_lead.json")["data"]
    pages = {
        0: {"success": True, "data": [row], "meta": {"total": 2, "hasMore": True}},
        1: {"success": True, "data": [row], "meta": {"total": 2, "hasMore": False}},
    }
    client, _, _ = _client(
        lambda r: httpx.Response(200, json=pages[int(r.url.params["skip"])])
    )

    orders = [o.id for _, page in client.iter_order_pages(page_size=1) for o in page]

    assert orders == [LEAD_ORDER_ID]


def test_429_waits_for_retry_after_then_succeeds():
    answers = iter(
        [
            httpx.Response(
                429,
                headers={"Retry-After": "7"},
                json={"success": False, "message": "slow down"},
            ),
            httpx.Response(200, json=fixture("customer.json")),
        ]
    )
    client, transport, sleeps = _client(lambda r: next(answers))

    customer = client.get_customer(CUSTOMER_ID)

    assert customer.first_name == "Jordan"
    assert sleeps == [7.0]
    assert len(transport.requests) == 2


def test_500_then_success_backs_off_exponentially():
    answers = iter(
        [
            httpx.Response(500, json=fixture("error_response.json")),
            httpx.Response(502, text="<html>bad gateway</html>"),
            httpx.Response(200, json=fixture("vehicle.json")),
        ]
    )
    client, transport, sleeps = _client(lambda r: next(answers), backoff_base=1.0)

    vehicle = client.get_vehicle("v1")

    assert vehicle.make == "Honda"
    assert len(transport.requests) == 3
    assert (
        0.5 <= sleeps[0] <= 1.0
    )  # jittered in [ceiling/2, ceiling], ceiling doubling per try
    assert 1.0 <= sleeps[1] <= 2.0


def test_gives_up_after_max_attempts_with_a_clear_error():
    client, transport, sleeps = _client(
        lambda r: httpx.Response(
            503, json={"success": False, "message": "maintenance"}
        ),
        max_attempts=3,
    )

    with pytest.raises(
        ShopMonkeyUnavailableError,
        match=r"HTTP 503: maintenance Gave up after 3 attempts",
    ):
        client.get_order("o1")

    assert len(transport.requests) == 3
    assert len(sleeps) == 2


def test_a_timeout_is_retried_then_reported():
    def handler(request):
        raise httpx.ReadTimeout("read timed out", request=request)

    client, transport, _ = _client(handler, max_attempts=2)

    with pytest.raises(
        ShopMonkeyUnavailableError, match="did not answer GET /v3/order/o1 in time"
    ):
        client.get_order("o1")
    assert len(transport.requests) == 2


def test_timeout_is_set_on_every_call():
    client = ShopMonkeyClient(api_key="k", base_url="https://api.test", timeout=4.5)
    assert client._http.timeout.read == 4.5
    assert client._http.timeout.connect == 4.5


def test_clients_verify_tls_with_one_context_built_once():
    # Every task builds a client; loading the certificate roots each time cost more
    # than the request itself.
    first = ShopMonkeyClient(api_key="k", base_url="https://api.test")
    second = ShopMonkeyClient(api_key="k2", base_url="https://api.test")
    contexts = [c._http._transport._pool._ssl_context for c in (first, second)]
    assert contexts[0] is contexts[1]
    assert contexts[0].verify_mode is ssl.CERT_REQUIRED
    assert contexts[0].check_hostname


@pytest.mark.parametrize(
    "body",
    [
        b"<html>oops</html>",
        b"[1, 2, 3]",
        b'{"success": true}',
        b'{"success": true, "data": "not an order"}',
    ],
)
def test_a_malformed_body_is_a_clear_error(body):
    client, _, _ = _client(
        lambda r: httpx.Response(
            200, content=body, headers={"content-type": "application/json"}
        )
    )

    with pytest.raises(ShopMonkeyResponseError):
        client.get_order("o1")


def test_an_order_without_id_is_a_clear_error():
    client, _, _ = _client(
        lambda r: httpx.Response(200, json={"success": True, "data": {"name": "x"}})
    )
    with pytest.raises(ShopMonkeyResponseError, match="has no id"):
        client.get_order("o1")


def test_error_envelope_on_a_4xx_is_not_retried():
    client, transport, sleeps = _client(
        lambda r: httpx.Response(400, json=fixture("error_response.json"))
    )

    with pytest.raises(
        ShopMonkeyRequestError, match="Invalid filter value for field 'number'"
    ) as failure:
        client.list_orders(where={"number": 1})

    assert failure.value.code == "EXMP-1a2b3c"
    assert len(transport.requests) == 1
    assert sleeps == []


@pytest.mark.parametrize(
    ("status", "error"),
    [
        (401, ShopMonkeyAuthError),
        (403, ShopMonkeyAuthError),
        (404, ShopMonkeyNotFoundError),
    ],
)
def test_auth_and_not_found_are_distinct(status, error):
    client, _, _ = _client(
        lambda r: httpx.Response(status, json={"success": False, "message": "no"})
    )
    with pytest.raises(error):
        client.get_order("o1")


def test_unknown_fields_are_tolerated_and_number_may_be_an_integer():
    data = {
        **fixture("order_website_lead.json")["data"],
        "number": 1047,
        "brandNewField": {"x": 1},
    }
    order = Order.from_api(data)
    assert order.number == "1047"


def test_webhook_event_parses_the_fixture():
    event = WebhookEvent.from_body(fixture("webhook_order_updated.json"))
    assert (event.operation, event.table, event.record_id, event.record_version) == (
        "UPDATE",
        "order",
        LEAD_ORDER_ID,
        "770700275968",
    )
