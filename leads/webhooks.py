"""ShopMonkey webhook deliveries: verify, store in the inbox, process in a worker."""

from __future__ import annotations

import binascii
import copy
import json
import logging
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any
from uuid import UUID

from django.conf import settings
from django.db import DatabaseError, IntegrityError, transaction
from django.db import connection as db_connection
from django.db.models import F, Q
from django.utils import timezone
from standardwebhooks import Webhook
from standardwebhooks.webhooks import EmptyWebhookSecretError, WebhookVerificationError

from leadorch.errors import ApplicationError
from leadorch.ratelimit import webhook_rate_limited
from leadorch.tasks import enqueue_on_commit
from leads.intake import connection_client, intake_process_order
from leads.models import CRMConnection, DeliveryStatus, LeadSource, WebhookDelivery
from leads.shopmonkey import (
    Order,
    ShopMonkeyError,
    ShopMonkeyResponseError,
    WebhookEvent,
)

logger = logging.getLogger(__name__)

# Redelivery gives up after this many processing attempts; polling remains the backstop.
MAX_PROCESSING_TRIES = 5
# A delivery still "processing" after this long belongs to a worker that died.
PROCESSING_TIMEOUT = timedelta(minutes=10)


# The request headers a delivery is checked and stored with (lower case).
SIGNATURE_HEADERS = (
    "webhook-id",
    "webhook-timestamp",
    "webhook-signature",
    "x-attempt",
)


class SignatureError(ApplicationError):
    """The delivery is not signed with the connection's secret (or is stale)."""


@dataclass(frozen=True)
class WebhookAnswer:
    """What to answer a delivery: an HTTP status, its JSON body and extra headers."""

    status: int
    body: dict[str, Any]
    headers: Mapping[str, str] = field(default_factory=dict)


def _refusal(status: int, code: str, detail: str) -> WebhookAnswer:
    return WebhookAnswer(status, {"error": code, "detail": detail})


def webhook_deliver(
    *,
    connection_id: UUID,
    body: bytes,
    headers: Mapping[str, str],
    declared_length: str = "",
) -> WebhookAnswer:
    """Take one delivery to a connection of the current brand: check it, store it in the
    inbox with its processing queued, and say what to answer.

    The checks run in this order: declared size (413), connection (404), the
    connection's rate limit (429, WEBHOOK_RATE_PER_MINUTE), actual size (413), signature and timestamp (401), body (400). A stored delivery is 202, a
    redelivered record version 200. ``headers`` holds SIGNATURE_HEADERS (missing ones
    empty); ``body`` may be cut at one byte past WEBHOOK_MAX_BODY_BYTES. Database
    errors propagate: the caller answers 503.
    """
    limit = settings.WEBHOOK_MAX_BODY_BYTES
    too_large = _refusal(413, "too_large", f"The body is larger than {limit} bytes.")
    if declared_length.isdigit() and int(declared_length) > limit:
        return too_large
    crm = webhook_connection(public_id=connection_id)
    if crm is None:
        return _refusal(
            404, "unknown_connection", "No active connection has this id at this host."
        )
    limited = webhook_rate_limited(source="shopmonkey", ident=str(crm.public_id))
    if limited is not None:
        return WebhookAnswer(
            429, limited, headers={"Retry-After": str(limited["retry_after"])}
        )
    if len(body) > limit:
        return too_large
    try:
        webhook_verify(connection=crm, body=body, headers=dict(headers))
        event = webhook_parse(body)
    except SignatureError as error:
        return _refusal(401, error.code, error.message)
    except ApplicationError as error:
        return _refusal(400, error.code, error.message)
    received = webhook_receive(
        connection=crm, body=body, headers=dict(headers), event=event
    )
    if received.duplicate:
        return WebhookAnswer(
            200,
            {
                "status": "duplicate",
                "detail": "This record version was received before.",
            },
        )
    return WebhookAnswer(202, {"status": "accepted", "delivery": received.delivery.pk})


_connections: dict[tuple[str, UUID], tuple[float, CRMConnection]] = {}
_connections_lock = threading.Lock()


def webhook_connection(*, public_id: UUID) -> CRMConnection | None:
    """The active connection of the current brand that a delivery URL names, or None.

    Kept in the process for WEBHOOK_CONNECTION_CACHE_SECONDS with its secret already
    decrypted, so a burst of deliveries costs neither a query nor a decryption each.
    Saving or deleting a connection forgets it in this process at once; other
    processes see the change within that time. Returns a copy, free to change.
    """
    cached = webhook_connection_cached(
        schema_name=db_connection.schema_name, public_id=public_id
    )
    if cached is not None:
        return cached
    expires = time.monotonic() + settings.WEBHOOK_CONNECTION_CACHE_SECONDS
    crm = CRMConnection.objects.filter(public_id=public_id, is_active=True).first()
    if crm is None or settings.WEBHOOK_CONNECTION_CACHE_SECONDS <= 0:
        return crm
    with _connections_lock:
        if len(_connections) > 10_000:
            _connections.clear()
        _connections[(db_connection.schema_name, public_id)] = (expires, crm)
    return copy.copy(crm)


def webhook_connection_cached(
    *, schema_name: str, public_id: UUID
) -> CRMConnection | None:
    """The connection when this process read it within WEBHOOK_CONNECTION_CACHE_SECONDS,
    else None. Never touches the database."""
    cached = _connections.get((schema_name, public_id))
    if cached is not None and cached[0] > time.monotonic():
        return copy.copy(cached[1])
    return None


def webhook_connection_forget(*, public_id: UUID) -> None:
    """Drop a connection from this process's cache (it was saved or deleted)."""
    with _connections_lock:
        for key in [key for key in _connections if key[1] == public_id]:
            del _connections[key]


def webhook_verify(
    *, connection: CRMConnection, body: bytes, headers: dict[str, str]
) -> None:
    """Check the Standard Webhooks signature over the raw body; the timestamp must be within 5 minutes.

    Raises SignatureError with the reason. Never raises anything else for bad input.
    """
    secret = connection.webhook_secret
    if not secret:
        raise SignatureError(
            "This connection has no webhook secret configured.", code="no_secret"
        )
    try:
        Webhook(secret).verify(body, headers, json_parse=False)
    except EmptyWebhookSecretError as error:
        raise SignatureError(
            "This connection has no webhook secret configured.", code="no_secret"
        ) from error
    except WebhookVerificationError as error:
        reason = str(error)
        code = (
            "stale_timestamp" if "timestamp" in reason.lower() else "invalid_signature"
        )
        raise SignatureError(f"Signature check failed: {reason}.", code=code) from error
    except (ValueError, binascii.Error, UnicodeDecodeError) as error:
        raise SignatureError(
            "Signature check failed: malformed signature headers or body.",
            code="invalid_signature",
        ) from error


def webhook_parse(body: bytes) -> WebhookEvent:
    """The event in a verified body. Raises ApplicationError (code invalid_json / invalid_body)."""
    try:
        payload = json.loads(body)
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        raise ApplicationError(
            f"The body is not valid JSON: {error}.", code="invalid_json"
        ) from error
    except RecursionError as error:  # nested deeper than the decoder goes
        raise ApplicationError(
            "The body is not valid JSON: nested too deeply.", code="invalid_json"
        ) from error
    try:
        return WebhookEvent.from_body(payload)
    except ShopMonkeyResponseError as error:
        raise ApplicationError(error.message, code="invalid_body") from error


@dataclass(frozen=True)
class Received:
    delivery: WebhookDelivery | None
    duplicate: bool


def webhook_receive(
    *,
    connection: CRMConnection,
    body: bytes,
    headers: dict[str, str],
    event: WebhookEvent,
) -> Received:
    """Store a verified delivery in the inbox and queue its processing.

    A second delivery of the same record version (ShopMonkey retries with a new
    webhook-id each attempt) is recognised by the inbox's unique constraint and
    not stored or processed again.
    """
    delivery = WebhookDelivery(
        connection=connection,
        webhook_id=headers.get("webhook-id", "")[:200],
        attempt=_int_or_none(headers.get("x-attempt")),
        operation=event.operation[:16],
        table=event.table[:64],
        record_id=event.record_id[:100],
        record_version=event.record_version[:100],
        body=body.decode(),
    )
    try:
        with transaction.atomic():
            delivery.save()
            enqueue_on_commit(
                "leads.tasks.webhook_delivery_process", delivery_id=delivery.pk
            )
    except IntegrityError:
        return Received(delivery=None, duplicate=True)
    return Received(delivery=delivery, duplicate=False)


def _int_or_none(value: Any) -> int | None:
    try:
        return int(value)
    except (TypeError, ValueError):
        return None


def webhook_delivery_process(*, delivery_id: int) -> str:
    """Process one inbox row: an order event goes through the intake; others are noted and skipped.

    Claims the row with a conditional update so a redelivered task cannot process
    it twice at once. An API failure marks it failed for a later retry.
    """
    now = timezone.now()
    claimable = Q(status__in=[DeliveryStatus.RECEIVED, DeliveryStatus.FAILED]) | Q(
        status=DeliveryStatus.PROCESSING, processed_at__lt=now - PROCESSING_TIMEOUT
    )
    claimed = WebhookDelivery.objects.filter(
        claimable, pk=delivery_id, tries__lt=MAX_PROCESSING_TRIES
    ).update(status=DeliveryStatus.PROCESSING, tries=F("tries") + 1, processed_at=now)
    if not claimed:
        return "already processed"
    delivery = WebhookDelivery.objects.select_related("connection").get(pk=delivery_id)
    connection = delivery.connection
    try:
        result = _process(delivery, connection)
    except ShopMonkeyError as error:
        WebhookDelivery.objects.filter(pk=delivery_id).update(
            status=DeliveryStatus.FAILED, error=str(error)[:5000]
        )
        logger.warning("Webhook delivery %s failed: %s", delivery_id, error)
        return f"failed: {error}"
    except DatabaseError as error:
        # The database went away mid-way (a restart, a failover) and took this run's
        # writes with it. Left "processing", the row would wait PROCESSING_TIMEOUT;
        # marked failed, the next retry pass takes it after the usual backoff.
        logger.warning(
            "Webhook delivery %s hit a database error: %s", delivery_id, error
        )
        _mark_failed_after_database_error(delivery_id, error)
        return f"failed: database error: {error}"
    WebhookDelivery.objects.filter(pk=delivery_id).update(
        status=DeliveryStatus.PROCESSED,
        result=result[:200],
        error="",
        processed_at=timezone.now(),
    )
    return result


def _mark_failed_after_database_error(delivery_id: int, error: DatabaseError) -> None:
    """Mark the row failed if the database answers again; else PROCESSING_TIMEOUT covers it."""
    if not db_connection.in_atomic_block:
        db_connection.close_if_unusable_or_obsolete()  # a dead connection reconnects
    try:
        WebhookDelivery.objects.filter(
            pk=delivery_id, status=DeliveryStatus.PROCESSING
        ).update(
            status=DeliveryStatus.FAILED,
            error=f"Database error while processing: {error}"[:5000],
        )
    except DatabaseError:
        logger.warning(
            "Webhook delivery %s stays processing until its timeout: the database is "
            "still unavailable",
            delivery_id,
        )


def _process(delivery: WebhookDelivery, connection: CRMConnection) -> str:
    event = WebhookEvent.from_body(json.loads(delivery.body))
    if event.table != "order":
        return f"skipped: {event.table} events are not used"
    if event.operation == "DELETE":
        return "skipped: order deleted"
    order = Order.from_api(event.data)
    client = None
    try:
        if not order.is_complete:
            client = connection_client(connection)
            order = client.get_order(order.id)
        result = intake_process_order(
            connection=connection, order=order, source=LeadSource.WEBHOOK, client=client
        )
    finally:
        if client is not None:
            client.close()
    return f"{result.outcome}" + (f": {result.detail}" if result.detail else "")


def deliveries_needing_retry(*, now: Any = None) -> list[int]:
    """Deliveries a crash left unprocessed, or that failed, and are due another try (backoff by tries)."""
    now = now or timezone.now()
    ids = []
    candidates = (
        WebhookDelivery.objects.filter(
            Q(status__in=[DeliveryStatus.RECEIVED, DeliveryStatus.FAILED])
            | Q(
                status=DeliveryStatus.PROCESSING,
                processed_at__lt=now - PROCESSING_TIMEOUT,
            ),
            tries__lt=MAX_PROCESSING_TRIES,
            received_at__lte=now - timedelta(seconds=60),
        )
        .order_by("received_at")
        .values_list("pk", "tries", "processed_at")[:500]
    )
    for pk, tries, last_try in candidates:
        wait = timedelta(seconds=60 * 2**tries)
        if last_try is None or last_try <= now - wait:
            ids.append(pk)
    return ids


def webhook_deliveries_requeue(*, delivery_ids: list[int]) -> int:
    """Queue deliveries for processing again (staff's "process again"); processed ones are left alone."""
    ids = list(
        WebhookDelivery.objects.filter(pk__in=delivery_ids)
        .exclude(status=DeliveryStatus.PROCESSED)
        .values_list("pk", flat=True)
    )
    WebhookDelivery.objects.filter(pk__in=ids).update(
        tries=0, status=DeliveryStatus.FAILED
    )
    for delivery_id in ids:
        enqueue_on_commit(
            "leads.tasks.webhook_delivery_process", delivery_id=delivery_id
        )
    return len(ids)
