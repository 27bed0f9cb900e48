from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime
from typing import Any

import httpx
import pytest
import respx
from standardwebhooks import Webhook

from leads.models import CRMConnection
from locations.models import Location
from tests.factories import LocationFactory
from tests.leads.shopmonkey_fakes import (
    LEAD_COLUMN_ID,
    LEAD_ORDER_ID,
    LOCATION_ID,
    WEBHOOK_SECRET,
    fixture,
)

API = "https://shopmonkey.test"


@pytest.fixture
def store(tenant) -> Location:
    return LocationFactory(name="Tint World - Store094", crm_location_id=LOCATION_ID)


def make_connection(**overrides: Any) -> CRMConnection:
    values = {
        "name": "ShopMonkey",
        "api_key": "sk-test",
        "webhook_secret": WEBHOOK_SECRET,
        "base_url": API,
        "lead_workflow_status_id": LEAD_COLUMN_ID,
        **overrides,
    }
    return CRMConnection.objects.create(**values)


@pytest.fixture
def crm(store) -> CRMConnection:
    return make_connection()


class FakeShopMonkey:
    """The ShopMonkey API at the HTTP layer (respx), serving fixture records."""

    def __init__(self, router: respx.MockRouter) -> None:
        self.router = router
        self.orders: dict[str, dict[str, Any]] = {
            LEAD_ORDER_ID: fixture("order_website_lead.json")["data"]
        }
        self.customer = fixture("customer.json")["data"]
        self.vehicle = fixture("vehicle.json")["data"]
        self.list_pages: list[dict[str, Any]] | None = None
        self.order_route = router.get(
            url__regex=rf"{API}/v3/order/(?P<order_id>[^/]+)$"
        ).mock(side_effect=self._order)
        self.customer_route = router.get(url__regex=rf"{API}/v3/customer/[^/]+$").mock(
            side_effect=self._customer
        )
        self.vehicle_route = router.get(url__regex=rf"{API}/v3/vehicle/[^/]+$").mock(
            side_effect=self._vehicle
        )
        self.list_route = router.get(f"{API}/v3/order").mock(side_effect=self._list)

    def _order(self, request: httpx.Request, order_id: str) -> httpx.Response:
        order = self.orders.get(order_id)
        if order is None:
            return httpx.Response(404, json={"success": False, "message": "not found"})
        return httpx.Response(200, json={"success": True, "data": order})

    def _customer(self, request: httpx.Request) -> httpx.Response:
        return httpx.Response(200, json={"success": True, "data": self.customer})

    def _vehicle(self, request: httpx.Request) -> httpx.Response:
        return httpx.Response(200, json={"success": True, "data": self.vehicle})

    def _list(self, request: httpx.Request) -> httpx.Response:
        if self.list_pages is not None:
            skip = int(request.url.params.get("skip", 0))
            return httpx.Response(
                200, json=self.list_pages[min(skip, len(self.list_pages) - 1)]
            )
        rows = list(self.orders.values())
        return httpx.Response(
            200,
            json={
                "success": True,
                "data": rows,
                "meta": {"total": len(rows), "hasMore": False},
            },
        )


@pytest.fixture
def shopmonkey():
    with respx.mock(assert_all_called=False) as router:
        yield FakeShopMonkey(router)


def order_row(**changes: Any) -> dict[str, Any]:
    """The lead order fixture with ``changes`` (a fresh id unless one is given)."""
    row = json.loads(json.dumps(fixture("order_website_lead.json")["data"]))
    row["id"] = changes.pop("id", str(uuid.uuid4()))
    row.update(changes)
    return row


def signed(
    body: dict[str, Any] | bytes,
    *,
    secret: str = WEBHOOK_SECRET,
    at: datetime | None = None,
    msg_id: str | None = None,
) -> tuple[bytes, dict[str, str]]:
    """A body and the Standard Webhooks headers ShopMonkey would send with it."""
    raw = (
        body
        if isinstance(body, bytes)
        else json.dumps(body, separators=(",", ":")).encode()
    )
    when = at or datetime.now(UTC)
    msg_id = msg_id or f"msg_{uuid.uuid4().hex[:24]}"
    signature = Webhook(secret).sign(msg_id, when, raw.decode(errors="replace"))
    headers = {
        "HTTP_WEBHOOK_ID": msg_id,
        "HTTP_WEBHOOK_TIMESTAMP": str(int(when.timestamp())),
        "HTTP_WEBHOOK_SIGNATURE": signature,
        "HTTP_X_ATTEMPT": "1",
    }
    return raw, headers


def event(data: dict[str, Any], operation: str = "INSERT") -> dict[str, Any]:
    return {"apiVersion": "3", "operation": operation, "table": "order", "data": data}
