"""A ShopMonkey v3 API stand-in for benchmarks: a real HTTP server on loopback.

Answers ``GET /v3/customer/<id>``, ``/v3/vehicle/<id>`` and ``/v3/order/<id>``
with the v3 envelope ``{"success": true, "data": {...}}``. Records are shaped
like the recorded fixtures in ``tests/fixtures/shopmonkey`` (customer.json,
vehicle.json, order_website_lead.json) with every id, name and contact derived
from the requested id, so different ids give different leads. Contacts use the
``+1555555xxxx`` test numbers and ``@example.com`` addresses.

Usage::

    with shopmonkey_mock(delay=0.3) as api:
        connection.base_url = api.base_url
        ...
        print(api.calls)  # {"customer": 12, "vehicle": 12, "order": 0, "other": 0}

Not a benchmark itself: the leading underscore keeps ``make bench`` from running it.
"""

from __future__ import annotations

import copy
import hashlib
import json
import re
import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from functools import cache
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

FIXTURES = Path(__file__).resolve().parents[1] / "tests" / "fixtures" / "shopmonkey"

# The ids the recorded fixtures use; benchmarks may use others.
FIXTURE_LOCATION_ID = "13d82785-1240-40f4-9ed6-8825fe03e2cd"
FIXTURE_LEAD_COLUMN_ID = "77315398-aa11-462e-8956-e90d2f5ec026"

FIRST_NAMES = ("Jordan", "Avery", "Casey", "Riley", "Morgan", "Quinn", "Taylor", "Sam")
LAST_NAMES = ("Rivera", "Nguyen", "Patel", "Okafor", "Schmidt", "Kowalski", "Lopez")
VEHICLES = (
    (2018, "Honda", "Civic", "EX"),
    (2021, "Toyota", "Camry", "SE"),
    (2016, "Ford", "F-150", "XLT"),
    (2023, "Tesla", "Model 3", "Long Range"),
    (2012, "Chevrolet", "Malibu", "LT"),
)
ROUTE = re.compile(r"^/v3/(customer|vehicle|order)/([^/?#]+)$")


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    # Many workers connect at once; the default backlog of 5 would refuse some.
    request_queue_size = 128


@cache
def _fixture(name: str) -> dict[str, Any]:
    return json.loads((FIXTURES / name).read_text())["data"]


def _number(record_id: str) -> int:
    """A stable number derived from an id."""
    return int.from_bytes(hashlib.sha256(record_id.encode()).digest()[:8], "big")


def _derived_id(record_id: str, kind: str) -> str:
    return str(uuid.uuid5(uuid.NAMESPACE_URL, f"shopmonkey-mock:{kind}:{record_id}"))


def customer_id_for(order_id: str) -> str:
    return _derived_id(order_id, "customer")


def vehicle_id_for(order_id: str) -> str:
    return _derived_id(order_id, "vehicle")


def customer_phone(customer_id: str) -> str:
    """The primary phone number of a mock customer, E.164 (+1555555xxxx)."""
    return f"+1555555{_number(customer_id) % 10_000:04d}"


def customer_record(customer_id: str) -> dict[str, Any]:
    """A customer as ``GET /v3/customer/<id>`` returns it, derived from its id."""
    n = _number(customer_id)
    first = FIRST_NAMES[n % len(FIRST_NAMES)]
    last = LAST_NAMES[(n // 8) % len(LAST_NAMES)]
    record = copy.deepcopy(_fixture("customer.json"))
    record.update(id=customer_id, firstName=first, lastName=last)
    for email in record["emails"]:
        email["customerId"] = customer_id
        email["id"] = _derived_id(f"{customer_id}:{email['id']}", "email")
    record["emails"][0]["email"] = (
        f"{first}.{last}.{n % 100_000:05d}@example.com".lower()
    )
    for position, phone in enumerate(record["phoneNumbers"]):
        phone["customerId"] = customer_id
        phone["id"] = _derived_id(f"{customer_id}:{phone['id']}", "phone")
        phone["number"] = (
            customer_phone(customer_id)
            if position == 0
            else f"+1555555{(n // 10_000) % 10_000:04d}"
        )
    return record


def vehicle_record(vehicle_id: str) -> dict[str, Any]:
    """A vehicle as ``GET /v3/vehicle/<id>`` returns it, derived from its id."""
    year, make, model, submodel = VEHICLES[_number(vehicle_id) % len(VEHICLES)]
    record = copy.deepcopy(_fixture("vehicle.json"))
    record.update(id=vehicle_id, year=year, make=make, model=model, submodel=submodel)
    return record


def order_record(
    order_id: str,
    *,
    location_id: str = FIXTURE_LOCATION_ID,
    workflow_status_id: str = FIXTURE_LEAD_COLUMN_ID,
    number: int | None = None,
) -> dict[str, Any]:
    """A website-lead order (status Estimate, not authorized, no messages, "New Quote ..."),
    as ``GET /v3/order/<id>`` and a webhook's ``data`` carry it, derived from its id."""
    n = _number(order_id)
    record = copy.deepcopy(_fixture("order_website_lead.json"))
    customer_id, vehicle_id = customer_id_for(order_id), vehicle_id_for(order_id)
    record.update(
        id=order_id,
        publicId=hashlib.sha1(order_id.encode(), usedforsecurity=False).hexdigest(),
        number=str(number if number is not None else n % 1_000_000),
        locationId=location_id,
        workflowStatusId=workflow_status_id,
        customerId=customer_id,
        vehicleId=vehicle_id,
        status="Estimate",
        authorized=False,
        messageCount=0,
    )
    record["meta"] = {**record["meta"], "version": 700_000_000_000 + n % 100_000_000}
    return record


class ShopMonkeyMock:
    """The server and what it served. Start it with :func:`shopmonkey_mock`."""

    def __init__(
        self,
        *,
        delay: float = 0.0,
        location_id: str = FIXTURE_LOCATION_ID,
        workflow_status_id: str = FIXTURE_LEAD_COLUMN_ID,
        host: str = "127.0.0.1",
    ) -> None:
        self.delay = delay  # seconds each call waits before answering; may be changed while running
        self.location_id = location_id
        self.workflow_status_id = workflow_status_id
        self._lock = threading.Lock()
        self._calls = {"customer": 0, "vehicle": 0, "order": 0, "other": 0}
        self._server = _Server((host, 0), self._handler_class())
        self._thread: threading.Thread | None = None

    @property
    def base_url(self) -> str:
        host, port = self._server.server_address[:2]
        return f"http://{host}:{port}"

    @property
    def calls(self) -> dict[str, int]:
        """Calls served so far, by record kind ("other": unknown paths)."""
        with self._lock:
            return dict(self._calls)

    def reset_counts(self) -> None:
        with self._lock:
            for kind in self._calls:
                self._calls[kind] = 0

    def start(self) -> ShopMonkeyMock:
        self._thread = threading.Thread(
            target=self._server.serve_forever,
            kwargs={"poll_interval": 0.1},
            name="shopmonkey-mock",
            daemon=True,
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._thread is not None:
            self._server.shutdown()
            self._thread.join(timeout=5)
            self._thread = None
        self._server.server_close()

    def answer(self, path: str) -> tuple[int, dict[str, Any]]:
        match = ROUTE.match(path.split("?", 1)[0])
        kind = match.group(1) if match else "other"
        with self._lock:
            self._calls[kind] += 1
        if self.delay > 0:
            time.sleep(self.delay)
        if match is None:
            return 404, {"success": False, "message": "Not found", "code": "NF"}
        record_id = match.group(2)
        if kind == "customer":
            data = customer_record(record_id)
        elif kind == "vehicle":
            data = vehicle_record(record_id)
        else:
            data = order_record(
                record_id,
                location_id=self.location_id,
                workflow_status_id=self.workflow_status_id,
            )
        return 200, {"success": True, "data": data}

    def _handler_class(self) -> type[BaseHTTPRequestHandler]:
        mock = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = (
                "HTTP/1.1"  # keep-alive for clients that reuse connections
            )

            def do_GET(self) -> None:
                status, body = mock.answer(self.path)
                raw = json.dumps(body, separators=(",", ":")).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(raw)))
                self.end_headers()
                self.wfile.write(raw)

            def log_message(self, format: str, *args: Any) -> None:
                pass  # one line per call would cost more than the answer

        return Handler


@contextmanager
def shopmonkey_mock(
    *,
    delay: float = 0.0,
    location_id: str = FIXTURE_LOCATION_ID,
    workflow_status_id: str = FIXTURE_LEAD_COLUMN_ID,
) -> Iterator[ShopMonkeyMock]:
    """Run the mock API on a free loopback port for the duration of the block."""
    mock = ShopMonkeyMock(
        delay=delay, location_id=location_id, workflow_status_id=workflow_status_id
    )
    mock.start()
    try:
        yield mock
    finally:
        mock.stop()


if __name__ == "__main__":
    # A quick look at the mock: serve for a few seconds and print one answer.
    import urllib.request

    with shopmonkey_mock() as api:
        url = f"{api.base_url}/v3/customer/{customer_id_for('example-order')}"
        with urllib.request.urlopen(url, timeout=5) as response:  # noqa: S310 - loopback
            print(response.read().decode()[:300], "...")
        print(api.calls)
