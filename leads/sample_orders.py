"""Sample ShopMonkey webhook events for demos: real shapes, invented people.

The order carries its customer and vehicle, so processing needs no API call and
the demo runs offline through the real endpoint, signature check and intake.
"""

from __future__ import annotations

import hashlib
import json
import uuid
from datetime import UTC, datetime
from typing import Any

from standardwebhooks import Webhook

from leads.shopmonkey import format_datetime

SAMPLE_CUSTOMERS = [
    (
        "Jordan",
        "Rivera",
        2018,
        "Honda",
        "Civic",
        "EX",
        "Front windows too light, want them matched",
    ),
    (
        "Priya",
        "Patel",
        2022,
        "Tesla",
        "Model 3",
        "Long Range",
        "Ceramic tint all around, what's the price?",
    ),
    (
        "Marcus",
        "Lee",
        2020,
        "Ford",
        "F-150",
        "XLT",
        "Need old purple tint removed and new film",
    ),
    (
        "Elena",
        "Garcia",
        2023,
        "Toyota",
        "RAV4",
        "XLE",
        "Clear film on the windshield for heat",
    ),
]


def sample_order_event(
    *, location_crm_id: str, workflow_status_id: str, order_id: str | None = None
) -> dict[str, Any]:
    """A webhook body for a new website quote that meets the default lead rule."""
    order_id = order_id or str(uuid.uuid4())
    seed = int(hashlib.sha256(order_id.encode()).hexdigest(), 16)
    first, last, year, make, model, submodel, complaint = SAMPLE_CUSTOMERS[
        seed % len(SAMPLE_CUSTOMERS)
    ]
    now = format_datetime(datetime.now(UTC))
    customer_id, vehicle_id = (
        str(uuid.uuid5(uuid.NAMESPACE_URL, order_id + "c")),
        str(uuid.uuid5(uuid.NAMESPACE_URL, order_id + "v")),
    )
    phone = f"+1555555{seed % 10000:04d}"
    return {
        "apiVersion": "3",
        "operation": "INSERT",
        "table": "order",
        "data": {
            "id": order_id,
            "meta": {"version": seed % 10**12},
            "createdDate": now,
            "updatedDate": now,
            "orderCreatedDate": now,
            "locationId": location_crm_id,
            "number": str(2000 + seed % 8000),
            "name": f"New Quote - {complaint}",
            "status": "Estimate",
            "authorized": False,
            "messageCount": 0,
            "workflowStatusId": workflow_status_id,
            "customerId": customer_id,
            "vehicleId": vehicle_id,
            "complaint": f"Website quote request: {complaint}",
            "customer": {
                "id": customer_id,
                "firstName": first,
                "lastName": last,
                "email": None,
                "phone": None,
                "emails": [
                    {
                        "email": f"{first}.{last}@example.com".lower(),
                        "primary": True,
                        "subscribed": True,
                    }
                ],
                "phoneNumbers": [{"number": phone, "primary": True, "type": "Mobile"}],
            },
            "vehicle": {
                "id": vehicle_id,
                "year": year,
                "make": make,
                "model": model,
                "submodel": submodel,
            },
        },
    }


def sign_event(
    *, secret: str, body: bytes, at: datetime | None = None
) -> dict[str, str]:
    """The Standard Webhooks headers ShopMonkey sends with ``body``."""
    msg_id = f"msg_{uuid.uuid4().hex[:24]}"
    when = at or datetime.now(UTC)
    return {
        "content-type": "application/json",
        "webhook-id": msg_id,
        "webhook-timestamp": str(int(when.timestamp())),
        "webhook-signature": Webhook(secret).sign(msg_id, when, body.decode()),
        "webhook-version": "3",
        "x-attempt": "1",
    }


def encode(event: dict[str, Any]) -> bytes:
    return json.dumps(event, separators=(",", ":")).encode()
