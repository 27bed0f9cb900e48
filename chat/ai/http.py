"""The HTTP clients the provider SDKs use.

The Anthropic and OpenAI SDKs run on httpx2. Each sends through the client its
``aiohttp`` extra provides (``DefaultAioHttpClient``): httpx2's interface over
aiohttp's HTTP/1.1, whose parsing is C, where httpx2's own transport parses
in Python. Against a stand-in API on loopback that answers at once, a streamed
Anthropic turn took 0.80 ms of CPU through it against 1.00 ms through httpx2's
transport (median of 40 alternating rounds of 50 turns; lower in all 40).

Each event loop gets its own client (an async client bound to a closed loop
fails), with the timeouts of AI_TIMEOUT_SECONDS. A loop that shuts down the
way ``asyncio.run`` does (``async_to_sync`` from a worker or a command)
closes the clients it made and their connections; the web server's loop keeps
its clients for its life.

``transport`` is the seam for tests: set it to an ``httpx2.MockTransport`` and
every provider call goes there instead of the network.
"""

from __future__ import annotations

import asyncio
import logging
import weakref
from collections.abc import Callable, Hashable
from typing import Any, TypeVar

import httpx2
from django.conf import settings

logger = logging.getLogger(__name__)

transport: httpx2.AsyncBaseTransport | None = None

T = TypeVar("T")

_clients: weakref.WeakKeyDictionary[
    asyncio.AbstractEventLoop, dict[Hashable, httpx2.AsyncClient]
] = weakref.WeakKeyDictionary()
_sdk_clients: weakref.WeakKeyDictionary[
    asyncio.AbstractEventLoop, dict[Hashable, Any]
] = weakref.WeakKeyDictionary()
# Per loop, the task that closes its clients when the loop shuts down.
_closers: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, asyncio.Task[None]] = (
    weakref.WeakKeyDictionary()
)


def async_http_client(kind: type[httpx2.AsyncClient]) -> httpx2.AsyncClient:
    """The running loop's client of class ``kind`` (an SDK's ``DefaultAioHttpClient``)
    for the current transport."""
    loop = asyncio.get_running_loop()
    per_loop = _clients.setdefault(loop, {})
    key = (kind, id(transport))
    client = per_loop.get(key)
    if client is None:
        timeout = settings.AI_TIMEOUT_SECONDS
        client = kind(
            transport=transport,
            timeout=httpx2.Timeout(timeout, connect=min(5.0, timeout)),
        )
        per_loop[key] = client
        if loop not in _closers:
            _closers[loop] = loop.create_task(_close_at_shutdown(loop))
    return client


async def _close_at_shutdown(loop: asyncio.AbstractEventLoop) -> None:
    """Wait for the loop's end: ``asyncio.run`` cancels the tasks still pending
    before it closes the loop, and this one then closes the loop's clients and
    forgets them (they hold the loop, which would otherwise never be freed)."""
    try:
        await loop.create_future()
    finally:
        _sdk_clients.pop(loop, None)
        _closers.pop(loop, None)
        for client in _clients.pop(loop, {}).values():
            try:
                await client.aclose()
            except Exception:
                logger.warning("An AI provider's HTTP client did not close cleanly")


def sdk_client(key: Hashable, build: Callable[[], T]) -> T:
    """The running loop's SDK client for ``key`` (its settings), built once.

    Building a client per call costs more than some answers take; one per loop
    and configuration is reused, and a changed setting or transport gets a new one.
    """
    loop = asyncio.get_running_loop()
    per_loop = _sdk_clients.setdefault(loop, {})
    full_key = (key, id(transport))
    client = per_loop.get(full_key)
    if client is None:
        client = build()
        per_loop[full_key] = client
    return client
