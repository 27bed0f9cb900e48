"""Lead intake from the CRM: one processing function behind webhooks, polling and backfill."""

from __future__ import annotations

import fnmatch
import logging
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from django.conf import settings
from django.core.exceptions import ValidationError
from django.core.validators import validate_email
from django.db import IntegrityError, transaction
from django.db.models import Q
from django.utils import timezone

from leadorch.phones import normalize_phone
from leadorch.tasks import enqueue_on_commit
from leads import services
from leads.models import (
    CRMConnection,
    IgnoredOrder,
    IgnoreReason,
    JobExecution,
    JobKind,
    JobStatus,
    Lead,
    LeadSource,
)
from leads.shopmonkey import (
    DEFAULT_BASE_URL,
    Customer,
    Order,
    ShopMonkeyClient,
    ShopMonkeyError,
    ShopMonkeyNotFoundError,
    Vehicle,
    format_datetime,
)
from locations.models import Location

logger = logging.getLogger(__name__)

LEAD_STATUS = "Estimate"
POLL_LOCK = timedelta(minutes=15)


class Outcome:
    CREATED = "created"
    EXISTS = "exists"
    NOT_A_LEAD = "not_a_lead"
    IGNORED = "ignored"
    WOULD_CREATE = "would_create"


@dataclass
class IntakeResult:
    outcome: str
    lead: Lead | None = None
    detail: str = ""


def connection_client(connection: CRMConnection, **kwargs: Any) -> ShopMonkeyClient:
    """A client for ``connection``'s API, with the configured timeout and retries."""
    base_url = connection.base_url or settings.SHOPMONKEY_BASE_URL or DEFAULT_BASE_URL
    kwargs.setdefault("timeout", settings.SHOPMONKEY_TIMEOUT_SECONDS)
    return ShopMonkeyClient(api_key=connection.api_key, base_url=base_url, **kwargs)


ClientFactory = Callable[[CRMConnection], ShopMonkeyClient]


# --- the rule -------------------------------------------------------------------------


def lead_rule_check(*, connection: CRMConnection, order: Order) -> str:
    """Why ``order`` is not a website lead under the connection's rule; "" when it is one."""
    if order.status != LEAD_STATUS:
        return f"status is {order.status or 'missing'}, not {LEAD_STATUS}"
    if order.authorized:
        return "already authorized"
    if order.message_count:
        return f"already has {order.message_count} message(s)"
    if connection.lead_name_prefix and not order.name.startswith(
        connection.lead_name_prefix
    ):
        return f"name does not start with {connection.lead_name_prefix!r}"
    if (
        connection.lead_workflow_status_id
        and order.workflow_status_id != connection.lead_workflow_status_id
    ):
        return "not in the lead workflow column"
    return ""


def demo_mode_allows(*, connection: CRMConnection, email: str, phone: str) -> bool:
    """In demo mode only test contacts get in: an email or phone matching a demo pattern."""
    if not (connection.is_demo_mode or settings.DEMO_MODE):
        return True
    email_patterns = _patterns(connection.demo_email_patterns)
    phone_patterns = _patterns(connection.demo_phone_patterns)
    return bool(
        (
            email
            and any(
                fnmatch.fnmatchcase(email.lower(), p.lower()) for p in email_patterns
            )
        )
        or (phone and any(fnmatch.fnmatchcase(phone, p) for p in phone_patterns))
    )


def _patterns(text: str) -> list[str]:
    return [
        line.strip() for line in text.replace(",", "\n").splitlines() if line.strip()
    ]


# --- processing ---------------------------------------------------------------------------


def intake_process_order(
    *,
    connection: CRMConnection,
    order: Order,
    source: str,
    client: ShopMonkeyClient | None = None,
    dry_run: bool = False,
) -> IntakeResult:
    """Turn one CRM order into a lead if it is one. Safe to call any number of times, concurrently.

    Applies the website-lead rule, maps the CRM location, fetches the customer and
    vehicle when the order does not carry them, applies demo mode, then creates the
    lead (unique per connection and order in the database) and hands it on. An
    order that is a lead but cannot be ingested is recorded as an IgnoredOrder.
    Network calls happen outside any transaction. Raises ShopMonkeyError when the
    API fails, so callers can retry or keep their cursor.
    """
    existing = Lead.objects.filter(
        crm_connection=connection, crm_order_id=order.id
    ).first()
    if existing is not None:
        return IntakeResult(Outcome.EXISTS, existing)
    refusal = lead_rule_check(connection=connection, order=order)
    if refusal:
        return IntakeResult(Outcome.NOT_A_LEAD, detail=refusal)

    location = (
        Location.objects.filter(
            crm_location_id=order.location_id, is_active=True
        ).first()
        if order.location_id
        else None
    )
    if location is None:
        detail = f"CRM location {order.location_id or '(none)'} is not mapped to an active location"
        return _ignore(
            connection, order, IgnoreReason.UNMAPPED_LOCATION, detail, dry_run
        )

    customer, vehicle = _fetch_relations(
        connection=connection, order=order, client=client
    )
    email, phone = _contact(customer)
    if not email and not phone:
        return _ignore(
            connection,
            order,
            IgnoreReason.NO_CONTACT,
            "the customer has no usable email or phone",
            dry_run,
        )
    if not demo_mode_allows(connection=connection, email=email, phone=phone):
        return _ignore(
            connection,
            order,
            IgnoreReason.DEMO_MODE,
            "contact matches no demo pattern",
            dry_run,
        )
    if dry_run:
        return IntakeResult(
            Outcome.WOULD_CREATE, detail=f"{location.name}: {email or phone}"
        )

    lead, created = lead_upsert_from_crm(
        connection=connection,
        order=order,
        location=location,
        customer=customer,
        vehicle=vehicle,
        email=email,
        phone=phone,
        source=source,
    )
    return IntakeResult(Outcome.CREATED if created else Outcome.EXISTS, lead)


def _fetch_relations(
    *, connection: CRMConnection, order: Order, client: ShopMonkeyClient | None
) -> tuple[Customer | None, Vehicle | None]:
    customer, vehicle = order.customer, order.vehicle
    need_customer = customer is None and bool(order.customer_id)
    need_vehicle = vehicle is None and bool(order.vehicle_id)
    if not (need_customer or need_vehicle):
        return customer, vehicle
    own_client = client is None
    client = client or connection_client(connection)
    try:
        if need_customer and need_vehicle:
            # Two independent calls: in parallel, one round trip of latency instead of two.
            with ThreadPoolExecutor(max_workers=2) as pool:
                customer_future = pool.submit(client.get_customer, order.customer_id)
                vehicle_future = pool.submit(_vehicle_or_none, client, order.vehicle_id)
                return customer_future.result(), vehicle_future.result()
        if need_customer:
            customer = client.get_customer(order.customer_id)
        if need_vehicle:
            vehicle = _vehicle_or_none(client, order.vehicle_id)
        return customer, vehicle
    finally:
        if own_client:
            client.close()


def _vehicle_or_none(client: ShopMonkeyClient, vehicle_id: str) -> Vehicle | None:
    """The vehicle is a nicety: a lead is not lost because its vehicle record is gone."""
    try:
        return client.get_vehicle(vehicle_id)
    except ShopMonkeyNotFoundError:
        return None


def _contact(customer: Customer | None) -> tuple[str, str]:
    if customer is None:
        return "", ""
    email = customer.email.strip().lower()
    try:
        validate_email(email)
    except ValidationError:
        email = ""
    try:
        phone = normalize_phone(customer.phone)
    except ValidationError:
        phone = ""
    return email, phone


def _ignore(
    connection: CRMConnection, order: Order, reason: str, detail: str, dry_run: bool
) -> IntakeResult:
    if not dry_run:
        now = timezone.now()
        with transaction.atomic():
            ignored, created = IgnoredOrder.objects.select_for_update().get_or_create(
                connection=connection,
                crm_order_id=order.id,
                defaults={
                    "crm_order_number": order.number[:50],
                    "crm_location_id": order.location_id[:100],
                    "reason": reason,
                    "detail": detail[:300],
                },
            )
            if not created:
                ignored.reason, ignored.detail = reason, detail[:300]
                ignored.crm_location_id = order.location_id[:100]
                ignored.last_seen_at = now
                ignored.times_seen += 1
                ignored.save(
                    update_fields=[
                        "reason",
                        "detail",
                        "crm_location_id",
                        "last_seen_at",
                        "times_seen",
                    ]
                )
    return IntakeResult(Outcome.IGNORED, detail=detail)


def lead_upsert_from_crm(
    *,
    connection: CRMConnection,
    order: Order,
    location: Location,
    customer: Customer | None,
    vehicle: Vehicle | None,
    email: str,
    phone: str,
    source: str,
) -> tuple[Lead, bool]:
    """Create the lead for ``order`` unless one exists; return it and whether it was created.

    Two processes racing on one order both reach the insert; the database's unique
    constraint lets one win and the other finds the winner's row.
    """
    lead = Lead(
        location=location,
        crm_connection=connection,
        crm_order_id=order.id,
        crm_customer_id=customer.id if customer else order.customer_id,
        crm_vehicle_id=vehicle.id if vehicle else order.vehicle_id,
        first_name=(customer.first_name if customer else "")[:100],
        last_name=(customer.last_name if customer else "")[:100],
        email=email,
        phone=phone,
        vehicle_year=vehicle.year if vehicle else None,
        vehicle_make=(vehicle.make if vehicle else "")[:60],
        vehicle_model=(
            " ".join(p for p in (vehicle.model, vehicle.submodel) if p)
            if vehicle
            else ""
        )[:60],
        source=source,
        crm_created_at=order.created_at,
    )
    try:
        with transaction.atomic():
            services.lead_save_new(lead=lead, validate_unique=False)
            IgnoredOrder.objects.filter(
                connection=connection, crm_order_id=order.id
            ).delete()
            lead_hand_off(lead=lead)
    except IntegrityError:
        existing = Lead.objects.filter(
            crm_connection=connection, crm_order_id=order.id
        ).first()
        if existing is None:
            raise
        return existing, False
    return lead, True


def lead_hand_off(*, lead: Lead) -> None:
    """Queue every LEAD_INTAKE_HANDLERS task for a new lead, once the lead is committed.

    This is how intake hands leads to the follow-up cadence without importing it.
    """
    for func_path in settings.LEAD_INTAKE_HANDLERS:
        enqueue_on_commit(func_path, lead_id=lead.pk)


# --- polling ------------------------------------------------------------------------------


@dataclass
class RunCounts:
    pages: int = 0
    orders_seen: int = 0
    leads_created: int = 0
    orders_ignored: int = 0
    errors: int = 0
    error_lines: list[str] = field(default_factory=list)

    def add(self, result: IntakeResult) -> None:
        if result.outcome in {Outcome.CREATED, Outcome.WOULD_CREATE}:
            self.leads_created += 1
        elif result.outcome == Outcome.IGNORED:
            self.orders_ignored += 1

    def fail(self, order_id: str, error: Exception) -> None:
        self.errors += 1
        if len(self.error_lines) < 50:
            self.error_lines.append(f"order {order_id}: {error}")


def connection_poll_claim(*, connection_id: int, now: datetime | None = None) -> bool:
    """Take the connection's poll lock; False when another poll holds it."""
    now = now or timezone.now()
    return bool(
        CRMConnection.objects.filter(pk=connection_id)
        .filter(Q(poll_locked_until__isnull=True) | Q(poll_locked_until__lt=now))
        .update(poll_locked_until=now + POLL_LOCK)
    )


def connection_poll(
    *, connection: CRMConnection, client: ShopMonkeyClient | None = None
) -> JobExecution | None:
    """One poll: every order updated since the cursor, all pages, each processed.

    The cursor moves to the newest update seen only when every order was
    processed; a failure leaves it, so the next poll sees the same orders again
    (processing is idempotent). Returns None when another poll of the same
    connection is running.
    """
    started = timezone.now()
    if not connection_poll_claim(connection_id=connection.pk, now=started):
        return None
    cursor_before = connection.poll_cursor or started - timedelta(
        hours=settings.POLL_INITIAL_LOOKBACK_HOURS
    )
    since = cursor_before - timedelta(seconds=settings.POLL_OVERLAP_SECONDS)
    job = JobExecution.objects.create(
        connection=connection,
        kind=JobKind.POLL,
        cursor_before=cursor_before,
        started_at=started,
    )
    counts = RunCounts()
    newest = cursor_before
    own_client = client is None
    client = client or connection_client(connection)
    fatal = ""
    try:
        pages = client.iter_order_pages(
            where={"updatedDate": {"gte": format_datetime(since)}},
            orderby={"updatedDate": "asc"},
        )
        for _, orders in pages:
            counts.pages += 1
            for order in orders:
                # The API ignores a filter it does not understand: check every row here.
                if order.updated_at is not None and order.updated_at < since:
                    continue
                counts.orders_seen += 1
                _process_counted(connection, order, LeadSource.POLL, client, counts)
                if order.updated_at and order.updated_at > newest:
                    newest = order.updated_at
    except ShopMonkeyError as error:
        fatal = str(error)
    finally:
        if own_client:
            client.close()

    succeeded = not fatal and counts.errors == 0
    finished = timezone.now()
    fields = {
        "last_polled_at": finished,
        "last_poll_error": fatal or "\n".join(counts.error_lines)[:2000],
        "poll_locked_until": None,
    }
    if succeeded:
        fields["poll_cursor"] = newest
    CRMConnection.objects.filter(pk=connection.pk).update(**fields)
    for name, value in fields.items():
        setattr(connection, name, value)
    _finish_job(
        job,
        counts,
        fatal=fatal,
        cursor_after=newest if succeeded else cursor_before,
        finished=finished,
    )
    return job


def _process_counted(
    connection: CRMConnection,
    order: Order,
    source: str,
    client: ShopMonkeyClient,
    counts: RunCounts,
    *,
    dry_run: bool = False,
) -> IntakeResult | None:
    try:
        result = intake_process_order(
            connection=connection,
            order=order,
            source=source,
            client=client,
            dry_run=dry_run,
        )
    except (ShopMonkeyError, ValidationError) as error:
        logger.warning("Intake of order %s failed: %s", order.id, error)
        counts.fail(order.id, error)
        return None
    counts.add(result)
    return result


def _finish_job(
    job: JobExecution,
    counts: RunCounts,
    *,
    fatal: str,
    cursor_after: datetime | None,
    finished: datetime,
) -> None:
    job.pages = counts.pages
    job.orders_seen = counts.orders_seen
    job.leads_created = counts.leads_created
    job.orders_ignored = counts.orders_ignored
    job.errors = counts.errors + (1 if fatal else 0)
    job.error_detail = "\n".join(([fatal] if fatal else []) + counts.error_lines)[
        :10_000
    ]
    job.status = JobStatus.SUCCEEDED if job.errors == 0 else JobStatus.FAILED
    job.finished_at = finished
    job.cursor_after = cursor_after
    job.save()


def connections_due_for_poll(*, now: datetime | None = None) -> Iterator[int]:
    """Claim every connection of the current schema that is due a poll; yield their ids.

    Each claim moves the connection's next poll a full interval ahead with a
    conditional UPDATE, so concurrent dispatchers never queue the same poll twice.
    """
    now = now or timezone.now()
    due = (
        CRMConnection.objects.filter(is_active=True, poll_enabled=True)
        .exclude(api_key="")
        .filter(Q(next_poll_at__isnull=True) | Q(next_poll_at__lte=now))
    )
    interval = timedelta(seconds=settings.POLL_INTERVAL_SECONDS)
    for connection_id in due.values_list("pk", flat=True):
        claimed = (
            CRMConnection.objects.filter(pk=connection_id)
            .filter(Q(next_poll_at__isnull=True) | Q(next_poll_at__lte=now))
            .update(next_poll_at=now + interval)
        )
        if claimed:
            yield connection_id


# --- backfill ----------------------------------------------------------------------------


def backfill_start(
    *, connection: CRMConnection, since: datetime, until: datetime, dry_run: bool
) -> tuple[JobExecution, bool]:
    """The backfill run for these bounds: an unfinished one to resume, or a new one. Returns (job, resumed)."""
    params = {"since": since.isoformat(), "until": until.isoformat()}
    unfinished = (
        JobExecution.objects.filter(
            connection=connection,
            kind=JobKind.BACKFILL,
            is_dry_run=dry_run,
            status__in=[JobStatus.RUNNING, JobStatus.INTERRUPTED, JobStatus.FAILED],
            params=params,
        )
        .order_by("-started_at")
        .first()
    )
    if unfinished is not None:
        unfinished.status = JobStatus.RUNNING
        unfinished.save(update_fields=["status"])
        return unfinished, True
    job = JobExecution.objects.create(
        connection=connection, kind=JobKind.BACKFILL, is_dry_run=dry_run, params=params
    )
    return job, False


def backfill_run(
    *,
    connection: CRMConnection,
    job: JobExecution,
    client: ShopMonkeyClient | None = None,
    on_page: Callable[[int], None] | None = None,
) -> JobExecution:
    """Ingest every order created in the job's window, oldest first, recording progress per page.

    After each page the job stores the creation time it reached; a resumed run
    starts there (re-processing that instant's orders is harmless). ``on_page``
    receives the number of orders on each page, for a progress bar.
    A KeyboardInterrupt marks the job interrupted and propagates.
    """
    since = datetime.fromisoformat(job.params["since"])
    until = datetime.fromisoformat(job.params["until"])
    resume_from = (
        datetime.fromisoformat(job.progress["cursor"])
        if job.progress.get("cursor")
        else since
    )
    counts = RunCounts(
        pages=job.pages,
        orders_seen=job.orders_seen,
        leads_created=job.leads_created,
        orders_ignored=job.orders_ignored,
    )
    own_client = client is None
    client = client or connection_client(connection)
    fatal = ""
    try:
        where = {
            "createdDate": {
                "gte": format_datetime(resume_from),
                "lt": format_datetime(until),
            }
        }
        for _, orders in client.iter_order_pages(
            where=where, orderby={"createdDate": "asc"}
        ):
            counts.pages += 1
            reached = resume_from
            for order in orders:
                created = order.created_at
                if created is None or not (resume_from <= created < until):
                    continue  # outside the window: the filter was ignored or the row moved
                counts.orders_seen += 1
                _process_counted(
                    connection,
                    order,
                    LeadSource.BACKFILL,
                    client,
                    counts,
                    dry_run=job.is_dry_run,
                )
                reached = max(reached, created)
            job.progress = {"cursor": reached.isoformat()}
            _save_progress(job, counts)
            if on_page:
                on_page(len(orders))
    except ShopMonkeyError as error:
        fatal = str(error)
    except KeyboardInterrupt:
        _save_progress(job, counts)
        JobExecution.objects.filter(pk=job.pk).update(status=JobStatus.INTERRUPTED)
        job.status = JobStatus.INTERRUPTED
        raise
    finally:
        if own_client:
            client.close()
    _finish_job(job, counts, fatal=fatal, cursor_after=None, finished=timezone.now())
    return job


def _save_progress(job: JobExecution, counts: RunCounts) -> None:
    job.pages, job.orders_seen = counts.pages, counts.orders_seen
    job.leads_created, job.orders_ignored = counts.leads_created, counts.orders_ignored
    job.errors = counts.errors
    job.save(
        update_fields=[
            "progress",
            "pages",
            "orders_seen",
            "leads_created",
            "orders_ignored",
            "errors",
        ]
    )
