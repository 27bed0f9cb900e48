"""Set-up work of the fault tests, with the product's own services and models.

Runs as a subprocess against a scenario's database (DATABASE_URL in its
environment; see harness.ctl), never against the test session's::

    python tests/faults/_ctl.py <command> '<json arguments>'

The last line of its output is the JSON answer.
"""

from __future__ import annotations

import json
import os
import sys
from datetime import UTC, datetime, timedelta
from datetime import time as clock
from pathlib import Path
from typing import Any

REPO_ROOT = Path(__file__).resolve().parents[2]

CRM_LOCATION_ID = "f4a17e57-0001-4a11-9e55-fault0000001"
LEAD_COLUMN_ID = "f4a17e57-00c0-4a11-9e55-fault00000c0"
CATALOG = (
    ("tint-sedan-ceramic", "Window tint", "Window tint - full sedan, ceramic film", 449, 180),
    ("tint-sedan-carbon", "Window tint", "Window tint - full sedan, carbon film", 299, 150),
    ("ceramic-coating-1yr", "Ceramic coating", "Ceramic coating - 1-year", 399, 180),
)  # fmt: skip


def daytime_zone(now: datetime) -> str:
    """A fixed-offset zone where it is about noon now: quiet hours never interfere."""
    offset = (12 - now.hour) % 24
    offset = offset - 24 if offset > 12 else offset
    return "Etc/GMT" + (f"{-offset:+d}" if offset else "")


def setup_base(*, webhook_secret: str) -> dict[str, Any]:
    """The brand, a location open every day with a catalog, a ShopMonkey connection
    (polling off; scenarios switch it on) and an empty default cadence."""
    from django_tenants.utils import tenant_context

    from leads.models import CRMConnection
    from locations.models import Location, LocationHours, ServiceCatalogItem
    from tenants.services import tenant_create, tenant_primary_host
    from touchpoints.models import Cadence

    tenant = tenant_create(name="Fault Tint", slug="faults")
    with tenant_context(tenant):
        # New leads are enrolled in a cadence without steps: the follow-up's own
        # work is the subject of the worker scenario, not of the intake ones.
        Cadence.objects.create(name="Fault tests: no follow-up", is_default=True)
        location = Location.objects.create(
            name="Fault Store 001",
            crm_location_id=CRM_LOCATION_ID,
            time_zone=daytime_zone(datetime.now(UTC)),
            address_line1="1 Fault Street",
            city="San Diego",
            region="CA",
            postal_code="92111",
            phone="+16195550100",
            bays=4,
        )
        LocationHours.objects.bulk_create(
            LocationHours(
                location=location,
                weekday=day,
                opens_at=clock(0),
                closes_at=clock(23, 59),
            )
            for day in range(7)
        )
        ServiceCatalogItem.objects.bulk_create(
            ServiceCatalogItem(
                code=code,
                category=category,
                name=name,
                price_cents=dollars * 100,
                duration_minutes=minutes,
            )
            for code, category, name, dollars, minutes in CATALOG
        )
        connection = CRMConnection.objects.create(
            name="Fault ShopMonkey",
            api_key="fault-api-key",
            webhook_secret=webhook_secret,
            lead_workflow_status_id=LEAD_COLUMN_ID,
            lead_name_prefix="New Quote",
            poll_enabled=False,
        )
    return {
        "schema": tenant.schema_name,
        "host": tenant_primary_host(slug=tenant.slug),
        "connection_public_id": str(connection.public_id),
        "connection_id": connection.pk,
        "location_id": location.pk,
        "crm_location_id": CRM_LOCATION_ID,
        "lead_column_id": LEAD_COLUMN_ID,
    }


def touchpoints_seed(*, count: int) -> dict[str, Any]:
    """``count`` leads, each with one SMS touch point due now, the brand live."""
    from django.db import connection as db
    from django_tenants.utils import tenant_context

    from leads.models import Lead, LeadSource
    from locations.models import Location
    from messaging.models import MessagingPolicy
    from tenants.models import Tenant
    from touchpoints.models import Cadence, CadenceEnrollment, CadenceStep, TouchPoint

    tenant = Tenant.objects.get(slug="faults")
    Tenant.objects.filter(pk=tenant.pk).update(outbound_mode="live")
    now = datetime.now(UTC)
    with tenant_context(tenant):
        location = Location.objects.get(crm_location_id=CRM_LOCATION_ID)
        Location.objects.filter(pk=location.pk).update(time_zone=daytime_zone(now))
        MessagingPolicy.objects.update_or_create(
            singleton=True, defaults={"daily_cap": 10}
        )
        cadence = Cadence.objects.create(name="Fault cadence")
        step = CadenceStep.objects.create(
            cadence=cadence,
            position=1,
            channel="sms",
            delay_minutes=0,
            template="Hi {{ first_name }}, thanks for asking {{ location }} for a quote. "
            "{{ chat_link }} {{ opt_out }}",
        )
        leads = Lead.objects.bulk_create(
            Lead(
                location=location,
                first_name=f"Customer{i:04d}",
                phone=f"+1555{i:07d}",
                email=f"customer{i:04d}@example.com",
                source=LeadSource.STAFF,
                ingested_at=now,
            )
            for i in range(count)
        )
        CadenceEnrollment.objects.bulk_create(
            CadenceEnrollment(lead=lead, cadence=cadence, started_at=now)
            for lead in leads
        )
        TouchPoint.objects.bulk_create(
            TouchPoint(
                lead=lead, step=step, channel="sms", due_at=now - timedelta(minutes=1)
            )
            for lead in leads
        )
        with db.cursor() as cursor:
            cursor.execute("ANALYZE")
    return {"touchpoints": count, "schema": tenant.schema_name}


def connection_update(**fields: Any) -> dict[str, Any]:
    from django_tenants.utils import tenant_context

    from leads.models import CRMConnection
    from tenants.models import Tenant

    tenant = Tenant.objects.get(slug="faults")
    with tenant_context(tenant):
        connection = CRMConnection.objects.get()
        for name, value in fields.items():
            setattr(connection, name, value)
        connection.save()
        return {"connection_id": connection.pk}


def chats_create(*, count: int) -> dict[str, Any]:
    """``count`` leads at the location, each with a chat link; returns the tokens."""
    from django_tenants.utils import tenant_context

    from chat import services as chat_services
    from leads.models import Lead, LeadSource
    from locations.models import Location
    from tenants.models import Tenant

    tenant = Tenant.objects.get(slug="faults")
    with tenant_context(tenant):
        location = Location.objects.get(crm_location_id=CRM_LOCATION_ID)
        leads = Lead.objects.bulk_create(
            Lead(
                location=location,
                first_name=f"Chatter{n:03d}",
                last_name="Fault",
                email=f"chatter{n:03d}@example.com",
                vehicle_year=2021,
                vehicle_make="Toyota",
                vehicle_model="Camry",
                source=LeadSource.STAFF,
            )
            for n in range(count)
        )
        paths = chat_services.chat_links_create(leads=leads)
        return {
            "chats": [
                {"lead_id": lead.pk, "token": paths[lead.pk].removeprefix("/c/")}
                for lead in leads
            ]
        }


COMMANDS = {
    "setup-base": setup_base,
    "touchpoints-seed": touchpoints_seed,
    "connection-update": connection_update,
    "chats-create": chats_create,
}


def main() -> None:
    sys.path.insert(0, str(REPO_ROOT))
    os.chdir(REPO_ROOT)
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "leadorch.settings")
    import django

    django.setup()
    command, arguments = (
        sys.argv[1],
        json.loads(sys.argv[2] if len(sys.argv) > 2 else "{}"),
    )
    answer = COMMANDS[command](**arguments)
    sys.stdout.write(json.dumps(answer) + "\n")


if __name__ == "__main__":
    main()
