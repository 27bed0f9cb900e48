"""Unsubscribe links: signed, long-lived, one per address, honoured in one request."""

from __future__ import annotations

from django.core import signing
from django.db import connection
from django.urls import reverse

SALT = "messaging.unsubscribe"
# CAN-SPAM wants a link that works for at least 30 days after sending; keep it a year.
MAX_AGE_SECONDS = 365 * 24 * 3600


def unsubscribe_token(*, address: str) -> str:
    """A token naming the brand's schema and the address; only we can make one."""
    return signing.dumps(
        {"s": connection.schema_name, "a": address.lower()}, salt=SALT, compress=True
    )


def unsubscribe_address(token: str) -> str | None:
    """The address of a valid token for this brand, or None."""
    try:
        data = signing.loads(token, salt=SALT, max_age=MAX_AGE_SECONDS)
    except signing.BadSignature:
        return None
    if not isinstance(data, dict) or data.get("s") != connection.schema_name:
        return None
    address = data.get("a")
    return address if isinstance(address, str) and address else None


def unsubscribe_url(*, host: str, address: str) -> str:
    from messaging.services import public_url

    path = reverse(
        "messaging:unsubscribe", kwargs={"token": unsubscribe_token(address=address)}
    )
    return public_url(host=host, path=path) if host else path
