"""The demo brand: a window-tint franchise with two San Diego-area stores.

`manage.py seed_demo` calls :func:`demo_seed`. Running it again changes
nothing that exists: rows are found by their natural keys and only missing ones
are added. Passwords are for development only.
"""

from __future__ import annotations

import base64
import secrets
from dataclasses import dataclass, field
from datetime import time, timedelta

from django.contrib.auth.models import Group, Permission, User
from django.db import transaction
from django.utils import timezone
from django_tenants.utils import get_public_schema_name, schema_context, tenant_context

from chat import services as chat_services
from leads import services as lead_services
from leads.models import OPEN_STATUSES, CRMConnection, Lead, LeadSource, LeadStatus
from locations.models import (
    Location,
    LocationHours,
    ServiceCatalogItem,
    ServiceOverride,
    StaffMembership,
    Weekday,
)
from tenants import selectors as tenant_selectors
from tenants import services as tenant_services
from tenants.models import Tenant

DEMO_SLUG = "tintworld"
DEMO_NAME = "Tint World"
DEMO_EXTRA_HOSTS = ("localhost",)

PLATFORM_ADMIN = ("platform", "platform-demo-pass")
BRAND_ADMIN = ("brandadmin", "tintworld-demo-pass")
LOCATION_STAFF = ("store094", "store094-demo-pass")

LOCATION_STAFF_GROUP = "Location staff"
# The board column website quotes land in (any id works; the connection stores it).
DEMO_LEAD_COLUMN_ID = "77315398-aa11-462e-8956-e90d2f5ec026"

# (code, category, name, description, price in dollars, minutes)
CATALOG = [
    (
        "tint-front-two-carbon",
        "Window tint",
        "Window tint - front two windows, carbon film",
        "Match the factory rear tint on the two front door windows. Carbon film, lifetime warranty.",
        149,
        60,
    ),
    (
        "tint-sedan-carbon",
        "Window tint",
        "Window tint - full sedan, carbon film",
        "All side and rear windows of a sedan or coupe. Carbon film: no fade, no signal interference.",
        299,
        150,
    ),
    (
        "tint-sedan-ceramic",
        "Window tint",
        "Window tint - full sedan, ceramic film",
        "All side and rear windows with ceramic film that rejects up to 88% of infrared heat.",
        449,
        180,
    ),
    (
        "tint-suv-carbon",
        "Window tint",
        "Window tint - SUV or truck, carbon film",
        "All side and rear windows of an SUV, minivan or truck, carbon film.",
        349,
        180,
    ),
    (
        "tint-suv-ceramic",
        "Window tint",
        "Window tint - SUV or truck, ceramic IR film",
        "All side and rear windows of an SUV, minivan or truck, ceramic IR film.",
        549,
        210,
    ),
    (
        "windshield-clear-ceramic",
        "Windshield",
        "Windshield - clear ceramic heat-rejection film",
        "Nearly invisible film on the full windshield; cuts heat and glare, legal in every state.",
        249,
        90,
    ),
    (
        "windshield-sun-strip",
        "Windshield",
        "Windshield sun strip",
        "A tinted visor strip across the top of the windshield, down to the AS-1 line.",
        69,
        30,
    ),
    (
        "windshield-chip-repair",
        "Windshield",
        "Windshield chip repair",
        "Resin repair of up to three chips smaller than a quarter.",
        79,
        45,
    ),
    (
        "ppf-partial-front",
        "Paint protection film",
        "Paint protection film - partial front",
        "Self-healing clear film on the bumper, the first 18 inches of hood and fenders, and the mirrors.",
        895,
        300,
    ),
    (
        "ppf-full-front",
        "Paint protection film",
        "Paint protection film - full front",
        "Full bumper, hood, fenders and mirrors, wrapped edges where possible.",
        1895,
        480,
    ),
    (
        "ppf-track-pack",
        "Paint protection film",
        "Paint protection film - track pack",
        "Full front plus rocker panels, rear quarter impact areas and A-pillars.",
        2495,
        600,
    ),
    (
        "ceramic-coating-1yr",
        "Ceramic coating",
        "Ceramic coating - 1-year",
        "Decontamination wash and a one-year ceramic coating on paint and wheels.",
        399,
        180,
    ),
    (
        "ceramic-coating-5yr",
        "Ceramic coating",
        "Ceramic coating - 5-year with paint correction",
        "One-step paint correction and a five-year ceramic coating on paint, glass and wheels.",
        1199,
        480,
    ),
    (
        "tint-removal-full",
        "Tint removal",
        "Tint removal - full vehicle",
        "Steam removal of old film and adhesive from every window, rear defroster lines protected.",
        199,
        120,
    ),
    (
        "tint-removal-rear",
        "Tint removal",
        "Tint removal - rear windshield only",
        "Steam removal of old film from the rear windshield.",
        99,
        60,
    ),
]

# The second store prices some work differently and does not offer full-front PPF.
SECOND_STORE_OVERRIDES = {
    "tint-sedan-ceramic": {"price_cents": 47900},
    "tint-suv-ceramic": {"price_cents": 57900, "duration_minutes": 240},
    "ceramic-coating-5yr": {"price_cents": 129900},
    "ppf-full-front": {"is_available": False},
}

LOCATIONS = [
    {
        "name": "Tint World - Store094",
        "crm_location_id": "store094",
        "time_zone": "America/Los_Angeles",
        "address_line1": "7520 Convoy Ct",
        "city": "San Diego",
        "region": "CA",
        "postal_code": "92111",
        "phone": "+16195550194",
        "email": "store094@tintworld.example",
        "bays": 3,
    },
    {
        "name": "Tint World - Store112",
        "crm_location_id": "store112",
        "time_zone": "America/Los_Angeles",
        "address_line1": "880 Eastlake Pkwy",
        "city": "Chula Vista",
        "region": "CA",
        "postal_code": "91914",
        "phone": "+16195550112",
        "email": "store112@tintworld.example",
        "bays": 2,
    },
]

# Mon-Fri 09:00-18:00, Sat 09:00-16:00, Sun closed.
WEEK_HOURS = {
    **{day: (time(9), time(18)) for day in range(Weekday.MONDAY, Weekday.SATURDAY)},
    Weekday.SATURDAY: (time(9), time(16)),
    Weekday.SUNDAY: None,
}

# (order id, location index, first, last, email, phone, year, make, model, path through the funnel)
LEADS = [
    (
        "demo-1001",
        0,
        "Maria",
        "Lopez",
        "maria.lopez@example.com",
        "(619) 555-0141",
        2021,
        "Toyota",
        "Camry",
        [],
    ),
    (
        "demo-1002",
        0,
        "James",
        "Carter",
        "james.carter@example.com",
        "619-555-0142",
        2019,
        "Ford",
        "F-150",
        [LeadStatus.CONTACTED],
    ),
    (
        "demo-1003",
        0,
        "Aisha",
        "Khan",
        "aisha.khan@example.com",
        "+1 619 555 0143",
        2023,
        "Tesla",
        "Model Y",
        [LeadStatus.CONTACTED, LeadStatus.ENGAGED],
    ),
    (
        "demo-1004",
        0,
        "Daniel",
        "Nguyen",
        "daniel.nguyen@example.com",
        "6195550144",
        2022,
        "Honda",
        "Civic",
        [LeadStatus.CONTACTED, LeadStatus.ENGAGED, LeadStatus.APPOINTMENT_SET],
    ),
    (
        "demo-1005",
        1,
        "Sofia",
        "Ramirez",
        "sofia.ramirez@example.com",
        "(619) 555-0145",
        2020,
        "Jeep",
        "Wrangler",
        [LeadStatus.CONTACTED, LeadStatus.LOST],
    ),
    (
        "demo-1006",
        1,
        "Ethan",
        "Brooks",
        "ethan.brooks@example.com",
        "619.555.0146",
        2024,
        "BMW",
        "X5",
        [],
    ),
]


@dataclass
class DemoSummary:
    tenant: Tenant
    hosts: list[str]
    created: list[str] = field(default_factory=list)
    logins: list[tuple[str, str, str]] = field(default_factory=list)
    # A fresh chat link ("/c/<token>") of an open demo lead, for trying the chat page.
    chat_path: str = ""


def demo_seed() -> DemoSummary:
    """Create whatever part of the demo brand is missing; return what a developer needs to log in."""
    tenant_services.tenant_ensure_public()
    tenant = tenant_selectors.tenant_get_by_slug(slug=DEMO_SLUG)
    created: list[str] = []
    if tenant is None:
        tenant = tenant_services.tenant_create(name=DEMO_NAME, slug=DEMO_SLUG)
        created.append(f"brand {DEMO_NAME}")
    for host in DEMO_EXTRA_HOSTS:
        tenant_services.tenant_add_domain(tenant=tenant, host=host)

    with schema_context(get_public_schema_name()):
        if _ensure_superuser(*PLATFORM_ADMIN):
            created.append("platform admin")

    with tenant_context(tenant), transaction.atomic():
        created += _seed_brand()
        chat_path = _demo_chat_path()

    hosts = list(
        tenant.domains.order_by("-is_primary", "domain").values_list(
            "domain", flat=True
        )
    )
    return DemoSummary(
        tenant=tenant,
        hosts=hosts,
        created=created,
        logins=[
            ("platform admin", *PLATFORM_ADMIN),
            ("brand admin (all locations)", *BRAND_ADMIN),
            ("location staff (Store094 only)", *LOCATION_STAFF),
        ],
        chat_path=chat_path,
    )


def _demo_chat_path() -> str:
    """A new link to the chat of the demo's first open lead (each run makes a new one)."""
    lead = (
        Lead.objects.filter(source=LeadSource.DEMO, status__in=list(OPEN_STATUSES))
        .order_by("crm_order_id")
        .first()
    )
    if lead is None:
        return ""
    return chat_services.chat_links_create(leads=[lead])[lead.pk]


def _seed_brand() -> list[str]:
    created = []
    locations = []
    for spec in LOCATIONS:
        location, was_created = Location.objects.get_or_create(
            crm_location_id=spec["crm_location_id"], defaults=spec
        )
        if was_created:
            location.full_clean()
            created.append(f"location {location.name}")
        locations.append(location)
        for weekday, hours in WEEK_HOURS.items():
            opens, closes = hours or (None, None)
            LocationHours.objects.get_or_create(
                location=location,
                weekday=weekday,
                defaults={
                    "opens_at": opens,
                    "closes_at": closes,
                    "is_closed": hours is None,
                },
            )

    for code, category, name, description, dollars, minutes in CATALOG:
        _, was_created = ServiceCatalogItem.objects.get_or_create(
            code=code,
            defaults={
                "category": category,
                "name": name,
                "description": description,
                "price_cents": dollars * 100,
                "duration_minutes": minutes,
            },
        )
        if was_created:
            created.append(f"service {code}")
    items = {
        item.code: item
        for item in ServiceCatalogItem.objects.filter(code__in=SECOND_STORE_OVERRIDES)
    }
    for code, values in SECOND_STORE_OVERRIDES.items():
        ServiceOverride.objects.get_or_create(
            item=items[code], location=locations[1], defaults=values
        )

    group = _ensure_location_staff_group()
    if _ensure_superuser(*BRAND_ADMIN):
        created.append("brand admin")
    staff = User.objects.filter(username=LOCATION_STAFF[0]).first()
    if staff is None:
        staff = User.objects.create_user(
            LOCATION_STAFF[0], password=LOCATION_STAFF[1], is_staff=True
        )
        created.append("location staff user")
    staff.groups.add(group)
    StaffMembership.objects.get_or_create(user=staff, location=locations[0])

    if _ensure_crm_connection():
        created.append("ShopMonkey connection (demo mode)")
    if _ensure_whitelist_mode():
        created.append("whitelist mode with the sample customers")

    now = timezone.now()
    for index, (
        order_id,
        loc,
        first,
        last,
        email,
        phone,
        year,
        make,
        model,
        path,
    ) in enumerate(LEADS):
        if Lead.objects.filter(crm_order_id=order_id).exists():
            continue
        lead = lead_services.lead_create(
            location=locations[loc],
            first_name=first,
            last_name=last,
            email=email,
            phone=phone,
            vehicle_year=year,
            vehicle_make=make,
            vehicle_model=model,
            source=LeadSource.DEMO,
            crm_order_id=order_id,
            crm_created_at=now - timedelta(hours=6 * (len(LEADS) - index), minutes=1),
        )
        for status in path:
            reason = "Chose another shop" if status == LeadStatus.LOST else ""
            lead_services.lead_transition(lead=lead, to_status=status, reason=reason)
        created.append(f"lead {order_id}")
    return created


def _ensure_whitelist_mode() -> bool:
    """Whitelist mode, listing the sample customers: replayed quotes get their messages
    recorded by the outbox (or sent, if providers are configured, to example.com only)."""
    from leads.sample_orders import SAMPLE_CUSTOMERS
    from messaging import services as messaging
    from messaging.models import OutboundModeChange, WhitelistEntry

    if OutboundModeChange.objects.exists():
        return False  # someone chose a mode already: leave it
    for first, last, *_ in SAMPLE_CUSTOMERS:
        WhitelistEntry.objects.get_or_create(
            email=f"{first}.{last}@example.com".lower(), defaults={"note": "Demo"}
        )
    messaging.outbound_mode_set(
        mode="whitelist", note="Demo brand: sample customers only"
    )
    return True


def _ensure_crm_connection() -> bool:
    """A demo-mode ShopMonkey connection with a webhook secret and no API key (so no polling):
    `manage.py replay_sample_webhook` sends it signed sample orders."""
    if CRMConnection.objects.exists():
        return False
    CRMConnection.objects.create(
        name="ShopMonkey",
        webhook_secret="whsec_" + base64.b64encode(secrets.token_bytes(32)).decode(),
        lead_workflow_status_id=DEMO_LEAD_COLUMN_ID,
        is_demo_mode=True,
    )
    return True


def _ensure_superuser(username: str, password: str) -> bool:
    if User.objects.filter(username=username).exists():
        return False
    User.objects.create_superuser(username, password=password)
    return True


def _ensure_location_staff_group() -> Group:
    """What location staff may do, before StaffMembership narrows it to their locations."""
    group, _ = Group.objects.get_or_create(name=LOCATION_STAFF_GROUP)
    codenames = [
        "view_location",
        "change_location",
        *(
            f"{verb}_{model}"
            for verb in ("view", "add", "change", "delete")
            for model in ("locationhours", "closure", "serviceoverride")
        ),
        "view_servicecatalogitem",
        *(f"{verb}_lead" for verb in ("view", "add", "change")),
        "view_leadevent",
    ]
    group.permissions.set(Permission.objects.filter(codename__in=codenames))
    return group
