"""HTTP-level stand-ins for the ShopMonkey API: httpx transports that answer from the shared fixtures."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "shopmonkey"

LOCATION_ID = "13d82785-1240-40f4-9ed6-8825fe03e2cd"
LEAD_COLUMN_ID = "77315398-aa11-462e-8956-e90d2f5ec026"
LEAD_ORDER_ID = "2147ec13-21a4-4789-9626-b8b523507b06"
CUSTOMER_ID = "e68460c3-854e-4fcb-a478-ce2b81269ee2"
VEHICLE_ID = "345e32e3-4849-4efc-91ef-c6efedf73733"
WEBHOOK_SECRET = "whsec_dGVzdC1vbmx5LXNob3Btb25rZXktd2ViaG9vay1zZWNyZXQtbm90LXJlYWw="


def fixture(name: str) -> Any:
    return json.loads((FIXTURES / name).read_text())


def fixture_bytes(name: str) -> bytes:
    return (FIXTURES / name).read_bytes()


class RecordingTransport(httpx.MockTransport):
    """A MockTransport that keeps every request it answered."""

    def __init__(self, handler: Callable[[httpx.Request], httpx.Response]) -> None:
        self.requests: list[httpx.Request] = []

        def record(request: httpx.Request) -> httpx.Response:
            self.requests.append(request)
            return handler(request)

        super().__init__(record)

    def paths(self) -> list[str]:
        return [request.url.path for request in self.requests]


def shopmonkey_api(
    orders: dict[str, dict[str, Any]] | None = None,
) -> RecordingTransport:
    """A fake API serving the fixture customer and vehicle, and ``orders`` by id (the lead order by default)."""
    orders = (
        orders
        if orders is not None
        else {LEAD_ORDER_ID: fixture("order_website_lead.json")["data"]}
    )

    def handler(request: httpx.Request) -> httpx.Response:
        path = request.url.path
        if path.startswith("/v3/order/"):
            order = orders.get(path.rsplit("/", 1)[1])
            if order is None:
                return httpx.Response(
                    404,
                    json={"success": False, "message": "Order not found", "code": "NF"},
                )
            return httpx.Response(200, json={"success": True, "data": order})
        if path == f"/v3/customer/{CUSTOMER_ID}" or path.startswith("/v3/customer/"):
            return httpx.Response(200, json=fixture("customer.json"))
        if path.startswith("/v3/vehicle/"):
            return httpx.Response(200, json=fixture("vehicle.json"))
        if path == "/v3/order":
            rows = list(orders.values())
            return httpx.Response(
                200,
                json={
                    "success": True,
                    "data": rows,
                    "meta": {"total": len(rows), "hasMore": False},
                },
            )
        return httpx.Response(404, json={"success": False, "message": "no route"})

    return RecordingTransport(handler)
