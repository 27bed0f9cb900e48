"""The ShopMonkey v3 API: the one module that knows its shapes and quirks.

What is known of the API (with sources) is summarised in the project's
reference notes; the quirks this module handles:

- every response is an envelope ``{"success": bool, "data": ..., "meta": {...}}``;
  errors carry ``message`` and ``code``;
- lists page with ``limit`` (silently clamped to 100) and ``skip`` until
  ``meta.hasMore`` is false; the sort parameter is lowercase ``orderby`` with a
  JSON value (camelCase ``orderBy`` is silently ignored and makes paging unstable);
- a ``where`` filter with an unknown operator or field is silently ignored and
  the whole table comes back, so callers re-check every row in code;
- contact data lives in ``emails[]`` / ``phoneNumbers[]`` with a ``primary`` flag;
  the top-level ``email`` / ``phone`` keys are always null;
- ``order.number`` is a string now and was an integer once; ids are opaque strings;
- unknown fields and enum values appear without notice: parsing keeps what it
  knows and ignores the rest.

Every call has a timeout and is retried on 429, 5xx and transport errors with
exponential backoff that honours ``Retry-After``.
"""

from __future__ import annotations

import json
import logging
import random
import ssl
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from functools import cache
from typing import Any

import httpx

logger = logging.getLogger(__name__)

DEFAULT_BASE_URL = "https://api.shopmonkey.cloud"
MAX_PAGE_SIZE = 100
RETRY_STATUSES = frozenset({408, 429, 500, 502, 503, 504})


# --- Errors -------------------------------------------------------------------


class ShopMonkeyError(Exception):
    """Base of every error this client raises."""

    def __init__(
        self, message: str, *, status: int | None = None, code: str = ""
    ) -> None:
        super().__init__(message)
        self.message = message
        self.status = status
        self.code = code


class ShopMonkeyAuthError(ShopMonkeyError):
    """401/403: the API key is wrong or lacks permission."""


class ShopMonkeyNotFoundError(ShopMonkeyError):
    """404: no such record."""


class ShopMonkeyRequestError(ShopMonkeyError):
    """Another 4xx: the request was refused as it stands; retrying will not help."""


class ShopMonkeyUnavailableError(ShopMonkeyError):
    """429, 5xx, timeouts or connection errors that outlasted every retry."""


class ShopMonkeyResponseError(ShopMonkeyError):
    """The response was not the JSON shape the API documents."""


# --- Typed results ----------------------------------------------------------------


def parse_datetime(value: Any) -> datetime | None:
    """ISO-8601 as the API sends it (``2026-09-24T14:12:05.318Z``); None for null or garbage."""
    if not isinstance(value, str) or not value:
        return None
    try:
        parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


def format_datetime(value: datetime) -> str:
    """The API's own format: UTC with milliseconds and a Z."""
    return (
        value.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.")
        + f"{value.microsecond // 1000:03d}Z"
    )


def _str(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, bool):
        return ""
    if isinstance(value, str | int | float):
        # PostgreSQL text cannot hold NUL characters; they never mean anything here.
        return str(value).replace("\x00", "").strip()
    return ""


def _int(value: Any) -> int | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, str) and value.strip().lstrip("-").isdigit():
        return int(value.strip())
    return None


def _require_id(data: dict[str, Any], kind: str) -> str:
    record_id = _str(data.get("id"))
    if not record_id:
        raise ShopMonkeyResponseError(f"A {kind} in the response has no id.")
    return record_id


@dataclass(frozen=True)
class Customer:
    id: str
    first_name: str
    last_name: str
    email: str
    phone: str
    raw: dict[str, Any] = field(repr=False, compare=False)

    @classmethod
    def from_api(cls, data: Any) -> Customer:
        if not isinstance(data, dict):
            raise ShopMonkeyResponseError(
                "A customer in the response is not an object."
            )
        return cls(
            id=_require_id(data, "customer"),
            first_name=_str(data.get("firstName")),
            last_name=_str(data.get("lastName")),
            email=_primary(data.get("emails"), "email"),
            phone=_primary(data.get("phoneNumbers"), "number"),
            raw=data,
        )


def _primary(records: Any, key: str) -> str:
    """The value of the primary sub-record (first one when none is marked primary)."""
    if not isinstance(records, list):
        return ""
    usable = [r for r in records if isinstance(r, dict) and _str(r.get(key))]
    if not usable:
        return ""
    primary = next((r for r in usable if r.get("primary") is True), usable[0])
    return _str(primary.get(key))


@dataclass(frozen=True)
class Vehicle:
    id: str
    year: int | None
    make: str
    model: str
    submodel: str
    raw: dict[str, Any] = field(repr=False, compare=False)

    @classmethod
    def from_api(cls, data: Any) -> Vehicle:
        if not isinstance(data, dict):
            raise ShopMonkeyResponseError("A vehicle in the response is not an object.")
        year = _int(data.get("year"))
        return cls(
            id=_require_id(data, "vehicle"),
            year=year if year and 1900 <= year <= 2100 else None,
            make=_str(data.get("make")),
            model=_str(data.get("model")),
            submodel=_str(data.get("submodel")),
            raw=data,
        )


@dataclass(frozen=True)
class Order:
    id: str
    number: str
    name: str
    status: str
    authorized: bool
    message_count: int
    workflow_status_id: str
    location_id: str
    customer_id: str
    vehicle_id: str
    created_at: datetime | None
    updated_at: datetime | None
    version: str
    customer: Customer | None = None
    vehicle: Vehicle | None = None
    raw: dict[str, Any] = field(default_factory=dict, repr=False, compare=False)

    @classmethod
    def from_api(cls, data: Any) -> Order:
        if not isinstance(data, dict):
            raise ShopMonkeyResponseError("An order in the response is not an object.")
        meta = data.get("meta") if isinstance(data.get("meta"), dict) else {}
        created = parse_datetime(data.get("orderCreatedDate")) or parse_datetime(
            data.get("createdDate")
        )
        updated = parse_datetime(data.get("updatedDate")) or parse_datetime(
            data.get("createdDate")
        )
        # Relations are not documented as embedded; use them when they are.
        customer = data.get("customer")
        vehicle = data.get("vehicle")
        return cls(
            id=_require_id(data, "order"),
            number=_str(data.get("number")),
            name=_str(data.get("name")) or _str(data.get("coalescedName")),
            status=_str(data.get("status")),
            authorized=data.get("authorized") is True,
            message_count=_int(data.get("messageCount")) or 0,
            workflow_status_id=_str(data.get("workflowStatusId")),
            location_id=_str(data.get("locationId")),
            customer_id=_str(data.get("customerId")),
            vehicle_id=_str(data.get("vehicleId")),
            created_at=created,
            updated_at=updated,
            version=_str(meta.get("version")) or _str(data.get("updatedDate")),
            customer=Customer.from_api(customer)
            if isinstance(customer, dict) and customer.get("id")
            else None,
            vehicle=Vehicle.from_api(vehicle)
            if isinstance(vehicle, dict) and vehicle.get("id")
            else None,
            raw=data,
        )

    @property
    def is_complete(self) -> bool:
        """Carries every field the lead rule reads (a webhook row does; a bare reference does not)."""
        return all(
            key in self.raw
            for key in ("status", "authorized", "messageCount", "name", "locationId")
        )


@dataclass(frozen=True)
class Page:
    items: list[dict[str, Any]]
    total: int | None
    has_more: bool


@dataclass(frozen=True)
class WebhookEvent:
    """A webhook body: ``{"apiVersion", "operation", "table", "data", "diff"}``."""

    operation: str
    table: str
    record_id: str
    record_version: str
    data: dict[str, Any]

    @classmethod
    def from_body(cls, body: Any) -> WebhookEvent:
        if not isinstance(body, dict):
            raise ShopMonkeyResponseError("The webhook body is not a JSON object.")
        data = body.get("data")
        table = _str(body.get("table"))
        operation = _str(body.get("operation")).upper()
        if not table or not operation:
            raise ShopMonkeyResponseError("The webhook body has no table or operation.")
        if not isinstance(data, dict) or not _str(data.get("id")):
            raise ShopMonkeyResponseError(
                "The webhook body has no data object with an id."
            )
        meta = data.get("meta") if isinstance(data.get("meta"), dict) else {}
        version = (
            _str(meta.get("version"))
            or _str(data.get("updatedDate"))
            or _str(data.get("createdDate"))
        )
        return cls(
            operation=operation,
            table=table,
            record_id=_str(data["id"]),
            record_version=version,
            data=data,
        )


# --- The client -----------------------------------------------------------------------


@cache
def _tls_context() -> ssl.SSLContext:
    """httpx's default verification (certifi's roots, or SSL_CERT_FILE), built once a
    process: loading the roots costs far more than a whole request to the API."""
    return httpx.create_ssl_context()


class ShopMonkeyClient:
    """A small, synchronous client. One instance per task; close it (or use ``with``)."""

    def __init__(
        self,
        *,
        api_key: str,
        base_url: str = DEFAULT_BASE_URL,
        timeout: float = 10.0,
        max_attempts: int = 4,
        backoff_base: float = 0.5,
        backoff_cap: float = 30.0,
        transport: httpx.BaseTransport | None = None,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.max_attempts = max(1, max_attempts)
        self.backoff_base = backoff_base
        self.backoff_cap = backoff_cap
        self.sleep = sleep
        self._http = httpx.Client(
            base_url=base_url.rstrip("/"),
            headers={
                "Authorization": f"Bearer {api_key}",
                "Accept": "application/json",
                "User-Agent": "LeadOrchestrator/1.0",
            },
            timeout=httpx.Timeout(timeout, connect=min(timeout, 5.0)),
            verify=_tls_context(),
            transport=transport,
        )

    def __enter__(self) -> ShopMonkeyClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self._http.close()

    # -- records --

    def get_order(self, order_id: str) -> Order:
        return Order.from_api(self._data(self._request("GET", f"/v3/order/{order_id}")))

    def get_customer(self, customer_id: str) -> Customer:
        return Customer.from_api(
            self._data(self._request("GET", f"/v3/customer/{customer_id}"))
        )

    def get_vehicle(self, vehicle_id: str) -> Vehicle:
        return Vehicle.from_api(
            self._data(self._request("GET", f"/v3/vehicle/{vehicle_id}"))
        )

    def list_orders(
        self,
        *,
        where: dict[str, Any] | None = None,
        orderby: dict[str, str] | None = None,
        limit: int = 100,
        skip: int = 0,
    ) -> Page:
        params: dict[str, Any] = {
            "limit": min(max(1, limit), MAX_PAGE_SIZE),
            "skip": max(0, skip),
        }
        if where:
            params["where"] = json.dumps(where, separators=(",", ":"))
        if orderby:
            params["orderby"] = json.dumps(
                orderby, separators=(",", ":")
            )  # lowercase: see module doc
        body = self._request("GET", "/v3/order", params=params)
        items = self._data(body)
        if not isinstance(items, list):
            raise ShopMonkeyResponseError("The order list's data is not a list.")
        meta = body.get("meta") if isinstance(body.get("meta"), dict) else {}
        has_more = meta.get("hasMore")
        if not isinstance(has_more, bool):
            # Without hasMore, a short page is the last one.
            has_more = len(items) >= params["limit"]
        return Page(
            items=[i for i in items if isinstance(i, dict)],
            total=_int(meta.get("total")),
            has_more=has_more,
        )

    def iter_order_pages(
        self,
        *,
        where: dict[str, Any] | None = None,
        orderby: dict[str, str] | None = None,
        page_size: int = MAX_PAGE_SIZE,
        start_skip: int = 0,
        max_pages: int = 10_000,
    ) -> Iterator[tuple[int, list[Order]]]:
        """Yield ``(skip, orders)`` page by page until ``hasMore`` is false.

        Rows seen on an earlier page (offset paging can repeat rows when data
        changes under it) are dropped.
        """
        seen: set[str] = set()
        skip = start_skip
        for _ in range(max_pages):
            page = self.list_orders(
                where=where, orderby=orderby, limit=page_size, skip=skip
            )
            orders = []
            for item in page.items:
                order = Order.from_api(item)
                if order.id not in seen:
                    seen.add(order.id)
                    orders.append(order)
            yield skip, orders
            if not page.has_more or not page.items:
                return
            skip += len(page.items)
        raise ShopMonkeyResponseError(
            f"The order list did not end after {max_pages} pages."
        )

    # -- appointments --

    def create_appointment(self, body: dict[str, Any]) -> str:
        """POST /v3/appointment; returns the new appointment's id."""
        data = self._data(self._request("POST", "/v3/appointment", json=body))
        if not isinstance(data, dict):
            raise ShopMonkeyResponseError("The created appointment is not an object.")
        return _require_id(data, "appointment")

    def update_appointment(self, appointment_id: str, body: dict[str, Any]) -> None:
        self._data(self._request("PUT", f"/v3/appointment/{appointment_id}", json=body))

    def delete_appointment(self, appointment_id: str) -> None:
        """DELETE with an empty JSON object: ShopMonkey refuses a JSON content type with no body."""
        try:
            self._request("DELETE", f"/v3/appointment/{appointment_id}", json={})
        except ShopMonkeyNotFoundError:
            return  # gone already: what we wanted

    # -- transport --

    def _data(self, body: dict[str, Any]) -> Any:
        if "data" not in body:
            raise ShopMonkeyResponseError("The response has no data.")
        return body["data"]

    def _request(self, method: str, path: str, **kwargs: Any) -> dict[str, Any]:
        last_error: ShopMonkeyError | None = None
        for attempt in range(1, self.max_attempts + 1):
            try:
                response = self._http.request(method, path, **kwargs)
            except httpx.TimeoutException as error:
                last_error = ShopMonkeyUnavailableError(
                    f"ShopMonkey did not answer {method} {path} in time ({error})."
                )
                delay = self._backoff(attempt)
            except httpx.TransportError as error:
                last_error = ShopMonkeyUnavailableError(
                    f"Could not reach ShopMonkey for {method} {path} ({error})."
                )
                delay = self._backoff(attempt)
            else:
                if response.status_code < 400:
                    return self._parse(response, method, path)
                error = self._error_for(response, method, path)
                if response.status_code not in RETRY_STATUSES:
                    raise error
                last_error = error
                delay = self._retry_after(response) or self._backoff(attempt)
            if attempt < self.max_attempts:
                logger.info(
                    "ShopMonkey %s %s failed (%s); retry %d in %.1f s",
                    method,
                    path,
                    last_error,
                    attempt,
                    delay,
                )
                self.sleep(delay)
        assert last_error is not None
        raise ShopMonkeyUnavailableError(
            f"{last_error.message} Gave up after {self.max_attempts} attempts.",
            status=last_error.status,
            code=last_error.code,
        )

    def _parse(
        self, response: httpx.Response, method: str, path: str
    ) -> dict[str, Any]:
        try:
            body = response.json()
        except (json.JSONDecodeError, UnicodeDecodeError, RecursionError) as error:
            raise ShopMonkeyResponseError(
                f"ShopMonkey answered {method} {path} with something that is not JSON "
                f"({response.headers.get('content-type', 'no content type')}).",
                status=response.status_code,
            ) from error
        if not isinstance(body, dict):
            raise ShopMonkeyResponseError(
                f"ShopMonkey answered {method} {path} with JSON that is not an object."
            )
        if body.get("success") is False:
            raise ShopMonkeyRequestError(
                f"ShopMonkey refused {method} {path}: {_str(body.get('message')) or 'no message'}",
                status=response.status_code,
                code=_str(body.get("code")),
            )
        return body

    def _error_for(
        self, response: httpx.Response, method: str, path: str
    ) -> ShopMonkeyError:
        status = response.status_code
        message, code = "", ""
        try:
            body = response.json()
            if isinstance(body, dict):
                message, code = _str(body.get("message")), _str(body.get("code"))
        except (json.JSONDecodeError, UnicodeDecodeError, RecursionError):
            pass
        text = f"ShopMonkey answered {method} {path} with HTTP {status}" + (
            f": {message}" if message else "."
        )
        if status in {401, 403}:
            if status == 403 and "text/html" in response.headers.get(
                "content-type", ""
            ):
                text += (
                    " (an HTML page: probably a firewall challenge, not a key problem)"
                )
            return ShopMonkeyAuthError(text, status=status, code=code)
        if status == 404:
            return ShopMonkeyNotFoundError(text, status=status, code=code)
        if status in RETRY_STATUSES:
            return ShopMonkeyUnavailableError(text, status=status, code=code)
        return ShopMonkeyRequestError(text, status=status, code=code)

    def _retry_after(self, response: httpx.Response) -> float | None:
        value = response.headers.get("retry-after", "").strip()
        if not value:
            return None
        if value.replace(".", "", 1).isdigit():
            return min(float(value), self.backoff_cap)
        try:
            when = parsedate_to_datetime(value)
        except (TypeError, ValueError):
            return None
        if when.tzinfo is None:
            when = when.replace(tzinfo=UTC)
        return min(
            max(0.0, (when - datetime.now(UTC)).total_seconds()), self.backoff_cap
        )

    def _backoff(self, attempt: int) -> float:
        ceiling = min(self.backoff_cap, self.backoff_base * 2 ** (attempt - 1))
        return ceiling / 2 + random.uniform(0, ceiling / 2)  # noqa: S311 - jitter, not security


# --- appointments (written by the booking sync) -------------------------------------------


def appointment_body(
    *,
    customer_id: str,
    vehicle_id: str,
    order_id: str,
    location_id: str,
    name: str,
    starts_at: datetime,
    ends_at: datetime,
    note: str,
) -> dict[str, Any]:
    """A POST/PUT /v3/appointment body. ShopMonkey's own confirmations and reminders stay off:
    we send ours. Empty ids are left out rather than sent as empty strings."""
    body: dict[str, Any] = {
        "name": name[:200],
        "startDate": format_datetime(starts_at),
        "endDate": format_datetime(ends_at),
        "color": "blue",
        "note": note[:1000],
        "sendConfirmation": False,
        "sendReminder": False,
        "useSMS": False,
        "useEmail": False,
    }
    for key, value in (
        ("customerId", customer_id),
        ("vehicleId", vehicle_id),
        ("orderId", order_id),
        ("locationId", location_id),
    ):
        if value:
            body[key] = value
    return body
