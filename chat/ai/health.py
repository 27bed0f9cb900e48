"""How each assistant provider has been doing, for /api/health.

Every answer records its provider's outcome in the cache (shared by all
processes when REDIS_URL is set). Nothing here calls a provider: health checks
must not spend money or wait on the network.
"""

from __future__ import annotations

import time
from typing import Any

from django.conf import settings
from django.core.cache import cache
from django.utils import timezone

from chat.ai.providers import all_providers

KEY = "leadorch:ai-provider:{name}"
# An outcome older than this says nothing about the provider any more.
KEEP_SECONDS = 24 * 3600


# A process writes a success at most this often: every answer records one, and the
# cache read and write (network round trips with Redis) would run on the chat
# socket's event loop each time. A failure is always written, and the next success
# after it too, so a recovery shows within this time whichever process saw it.
OK_REFRESH_SECONDS = 30.0
_clock = time.monotonic
# Provider name -> when this process last wrote a success for it.
_ok_written: dict[str, float] = {}


def record(name: str, *, ok: bool, error: str = "") -> None:
    if ok:
        written = _ok_written.get(name)
        if written is not None and _clock() - written < OK_REFRESH_SECONDS:
            return
        _ok_written[name] = _clock()
    else:
        _ok_written.pop(name, None)
    key = KEY.format(name=name)
    state = cache.get(key, version=0) or {}
    now = timezone.now().isoformat()
    if ok:
        state.update(last_ok_at=now, consecutive_failures=0)
    else:
        state.update(
            last_error_at=now,
            last_error=error[:200],
            consecutive_failures=state.get("consecutive_failures", 0) + 1,
        )
    cache.set(key, state, KEEP_SECONDS, version=0)


def report() -> dict[str, Any]:
    """Each provider: configured or not, its model and its last outcomes."""
    out = {}
    for provider in all_providers():
        state = cache.get(KEY.format(name=provider.name), version=0) or {}
        failing = state.get("consecutive_failures", 0) > 0
        out[provider.name] = {
            "configured": provider.is_configured(),
            "model": provider.model,
            "status": (
                "not_configured"
                if not provider.is_configured()
                else "failing"
                if failing
                else "ok"
            ),
            **state,
        }
    return {"first_choice": settings.AI_PROVIDER, "providers": out}
