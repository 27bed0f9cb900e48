"""Chat link lookups limited per client address.

A token has 192 random bits, so guessing one is hopeless; the limit keeps
someone who tries from costing a database query per guess. Each lookup that
opens nothing counts against the client's address; past
``CHAT_TOKEN_FAILURES_PER_MINUTE`` in a minute, every lookup from that address
(a valid token's too, so the answer tells nothing) is refused until the minute
ends: the page answers 429, the REST API 429, the socket refuses the handshake.
Counters live in the cache (Redis in production), per brand and address.
"""

from __future__ import annotations

import logging

from django.conf import settings

from chat import services as chat_services
from chat.models import ChatSession
from leadorch.errors import ApplicationError
from leadorch.ratelimit import rate_limit_exceeded, rate_limit_hit

logger = logging.getLogger(__name__)

WINDOW_SECONDS = 60


class TokenLookupsLimitedError(ApplicationError):
    """This address opened too many links that open nothing; it may try again later."""

    def __init__(self, retry_after: int) -> None:
        super().__init__(
            "Too many chat links that open nothing were tried from your network. "
            f"Try again in {retry_after} seconds.",
            code="throttled",
            extra={"retry_after": retry_after},
        )
        self.retry_after = retry_after


def _key(client_ip: str) -> str:
    return f"chat-token-failures:{client_ip}"


def chat_link_resolve_limited(*, token: str, client_ip: str) -> ChatSession | None:
    """:func:`chat.services.chat_link_resolve`, counted against ``client_ip``.

    Raises TokenLookupsLimitedError, without looking the token up, while the
    address is over its limit; a lookup that opens nothing counts one failure.
    """
    limit = settings.CHAT_TOKEN_FAILURES_PER_MINUTE
    over = rate_limit_exceeded(_key(client_ip), limit=limit, window=WINDOW_SECONDS)
    if not over.allowed:
        raise TokenLookupsLimitedError(over.retry_after)
    session = chat_services.chat_link_resolve(token=token)
    if session is None:
        failed = rate_limit_hit(_key(client_ip), limit=limit, window=WINDOW_SECONDS)
        if failed.count == limit:
            logger.warning(
                "Chat link lookups from %s refused for %d s: %d links opened nothing",
                client_ip,
                failed.retry_after,
                failed.count,
            )
    return session
