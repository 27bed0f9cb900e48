"""The channel layer of a single web process (no REDIS_URL).

Channels' in-memory layer sweeps every queued message and every group membership
for expiry on each ``receive`` and ``group_send``. Each chat page waits on its own
channel and each stored message is sent to its session's group, so with a few
hundred open pages the sweep ran several times per chat turn over all of them and
cost more than the message it was for. Here the sweep runs at most once every
``sweep_interval`` seconds: a message may outlive its expiry (60 s by default) by
up to that long, and everything else is Channels' own layer.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from channels.layers import InMemoryChannelLayer as ChannelsInMemoryChannelLayer


class InMemoryChannelLayer(ChannelsInMemoryChannelLayer):
    def __init__(
        self,
        *,
        sweep_interval: float = 1.0,
        clock: Callable[[], float] = time.monotonic,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.sweep_interval = sweep_interval
        self.clock = clock
        self.swept_at: float | None = None

    def _clean_expired(self) -> None:
        now = self.clock()
        if self.swept_at is not None and now - self.swept_at < self.sweep_interval:
            return
        self.swept_at = now
        super()._clean_expired()
