"""Request rate limits kept in Django's cache, so they hold across processes with Redis.

A limit is a fixed window: at most ``limit`` hits per ``window`` seconds for one
key. Keys go through the cache's key function (django-tenants prefixes the
current schema), so the same key in two brands counts separately.

- :func:`rate_limit_hit` counts one hit and says whether it is allowed.
- :func:`rate_limit_exceeded` looks without counting (for limits on failures).
- :func:`webhook_rate_limited` / :func:`webhook_rate_limit_response`: the webhooks'
  limit, ``WEBHOOK_RATE_PER_MINUTE`` requests per minute for each source and
  identity (a CRM connection, a brand), answered with a 429 JSON body.
- :func:`client_ip`: the address limits per client are keyed on, safe against a
  forged ``X-Forwarded-For``.

The cache being unreachable never refuses a request: a limit is a guard against
floods, not an authorisation, so it fails open (and says so in the log).
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from django.conf import settings
from django.core.cache import cache
from django.http import HttpRequest, JsonResponse

logger = logging.getLogger(__name__)

KEY_PREFIX = "ratelimit"


@dataclass(frozen=True)
class RateDecision:
    """``allowed``: the hit is within the limit; ``count``: hits in this window so far;
    ``retry_after``: whole seconds until the window ends."""

    allowed: bool
    count: int
    retry_after: int


def _window(window: int, now: float | None) -> tuple[int, int]:
    """The current window's number and the seconds left in it (at least 1)."""
    moment = time.time() if now is None else now
    number = int(moment // window)
    left = max(1, math.ceil((number + 1) * window - moment))
    return number, left


def _cache_key(key: str, window: int, number: int) -> str:
    return f"{KEY_PREFIX}:{key}:{window}:{number}"


def rate_limit_hit(
    key: str, *, limit: int, window: int, now: float | None = None
) -> RateDecision:
    """Count one hit for ``key`` and decide it: allowed while at most ``limit`` hits fell
    in the current ``window`` seconds. ``limit`` <= 0 switches the limit off."""
    if limit <= 0 or window <= 0:
        return RateDecision(allowed=True, count=0, retry_after=0)
    number, left = _window(window, now)
    cache_key = _cache_key(key, window, number)
    try:
        count = _increment(cache_key, timeout=left + 1)
    except Exception:  # the cache is down: fail open
        logger.warning("Rate limit %s not checked: the cache is unavailable", key)
        return RateDecision(allowed=True, count=0, retry_after=0)
    return RateDecision(allowed=count <= limit, count=count, retry_after=left)


def rate_limit_exceeded(
    key: str, *, limit: int, window: int, now: float | None = None
) -> RateDecision:
    """Whether ``key`` already used up ``limit`` hits in this window, without counting one."""
    if limit <= 0 or window <= 0:
        return RateDecision(allowed=True, count=0, retry_after=0)
    number, left = _window(window, now)
    try:
        count = int(cache.get(_cache_key(key, window, number)) or 0)
    except Exception:
        logger.warning("Rate limit %s not checked: the cache is unavailable", key)
        return RateDecision(allowed=True, count=0, retry_after=0)
    return RateDecision(allowed=count < limit, count=count, retry_after=left)


def _increment(cache_key: str, *, timeout: int) -> int:
    """Add one to the counter, creating it (with its expiry) on the window's first hit."""
    try:
        return cache.incr(cache_key)
    except ValueError:  # no counter yet (or it just expired)
        if cache.add(cache_key, 1, timeout=timeout):
            return 1
        try:
            return cache.incr(cache_key)  # another process created it meanwhile
        except ValueError:
            return 1


# --- webhooks ---------------------------------------------------------------------


def webhook_rate_limited(*, source: str, ident: str) -> dict[str, Any] | None:
    """Count one webhook request of ``source`` (``shopmonkey``, ``twilio``, ``sendgrid``)
    for ``ident`` (a connection id, a brand's schema). None while within
    ``WEBHOOK_RATE_PER_MINUTE`` (0: no limit), else the JSON body of a 429 answer."""
    decision = rate_limit_hit(
        f"webhook:{source}:{ident}",
        limit=settings.WEBHOOK_RATE_PER_MINUTE,
        window=60,
    )
    if decision.allowed:
        return None
    logger.warning(
        "Webhook rate limit reached for %s %s (%d requests this minute)",
        source,
        ident,
        decision.count,
    )
    return {
        "error": "rate_limited",
        "detail": "Too many requests; try again later.",
        "retry_after": decision.retry_after,
    }


def webhook_rate_limit_response(*, source: str, ident: str) -> JsonResponse | None:
    """:func:`webhook_rate_limited` as a view's answer: None, or a 429 with Retry-After."""
    body = webhook_rate_limited(source=source, ident=ident)
    if body is None:
        return None
    response = JsonResponse(body, status=429)
    response["Retry-After"] = str(body["retry_after"])
    return response


# --- client addresses -----------------------------------------------------------------


def client_ip_from(*, remote_addr: str | None, forwarded_for: str | None) -> str:
    """The client's address: the peer's, or behind ``TRUSTED_PROXY_HOPS`` proxies
    (``BEHIND_PROXY``) the entry of ``X-Forwarded-For`` the outermost trusted proxy
    appended. Entries to its left are whatever the client sent and are never used."""
    remote = (remote_addr or "").strip()
    hops = settings.TRUSTED_PROXY_HOPS if settings.BEHIND_PROXY else 0
    if hops <= 0 or not forwarded_for:
        return remote or "unknown"
    entries = [entry.strip() for entry in forwarded_for.split(",") if entry.strip()]
    if not entries:
        return remote or "unknown"
    return entries[-min(hops, len(entries))][:64]


def client_ip(request: HttpRequest) -> str:
    """The address of the client that sent ``request`` (see :func:`client_ip_from`)."""
    return client_ip_from(
        remote_addr=request.META.get("REMOTE_ADDR"),
        forwarded_for=request.META.get("HTTP_X_FORWARDED_FOR"),
    )


def client_ip_of_scope(scope: Mapping[str, Any]) -> str:
    """The client's address of an ASGI connection (a WebSocket handshake)."""
    client = scope.get("client") or ("", 0)
    forwarded = [
        value.decode("latin1")
        for name, value in _headers(scope.get("headers") or ())
        if name.lower() == b"x-forwarded-for"
    ]
    return client_ip_from(
        remote_addr=str(client[0]) if client else "",
        forwarded_for=",".join(forwarded) or None,
    )


def _headers(headers: Iterable[Any]) -> Iterable[tuple[bytes, bytes]]:
    for pair in headers:
        if len(pair) == 2:
            yield pair[0], pair[1]
