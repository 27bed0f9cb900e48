"""The HTTP clients the provider SDKs use.

The Anthropic and OpenAI SDKs run on httpx2. Each event loop gets its own
async client (an async client bound to a closed loop fails), with the
timeouts of AI_TIMEOUT_SECONDS. ``transport`` is the seam for tests: set it to
an ``httpx2.MockTransport`` and every provider call goes there instead of the
network.
"""

from __future__ import annotations

import asyncio
import weakref
from collections.abc import Callable, Hashable
from typing import Any, TypeVar

import httpx2
from django.conf import settings

transport: httpx2.AsyncBaseTransport | None = None

T = TypeVar("T")

_clients: weakref.WeakKeyDictionary[
    asyncio.AbstractEventLoop, dict[int, httpx2.AsyncClient]
] = weakref.WeakKeyDictionary()


def async_http_client() -> httpx2.AsyncClient:
    """The running loop's client for the current transport."""
    loop = asyncio.get_running_loop()
    per_loop = _clients.setdefault(loop, {})
    key = id(transport)
    client = per_loop.get(key)
    if client is None:
        timeout = settings.AI_TIMEOUT_SECONDS
        client = httpx2.AsyncClient(
            transport=transport,
            timeout=httpx2.Timeout(timeout, connect=min(5.0, timeout)),
        )
        per_loop[key] = client
    return client


_sdk_clients: weakref.WeakKeyDictionary[
    asyncio.AbstractEventLoop, dict[Hashable, Any]
] = weakref.WeakKeyDictionary()


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
