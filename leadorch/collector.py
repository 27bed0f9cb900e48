"""The web server's garbage collection, at moments no customer is waiting on.

CPython collects cyclic garbage when enough objects have been made: in the
middle of whatever runs then, every thread of the process stopped until it is
done. In the web server that moment falls mostly inside a chat turn, since turns
are what makes objects. Under chat load (bench/chat_ws.py, the mock provider,
200 sessions) there were about two full collections a run, of 16 to 48 ms, and
ten middle ones, of up to 16 ms; in two runs on a slow day of the machine the 4
slowest turns were each inside a full collection.

So once the application is loaded (and frozen, leadorch.web), the web server
turns automatic collection off and a thread of its own collects instead, on
CPython's schedule (the same thresholds and choice of generation) but only when
no chat answer is starting (``chat.pacing.any_starting``), which it checks every
CHECK_SECONDS. Finished answers, stores, pages and webhooks do not hold it back.
Answers that keep starting cannot put it off for long either: once MOST_DEFERRED
times the first threshold's objects are waiting, it collects regardless.

In 10 alternating pairs of runs against automatic collection, our overhead per
turn at p99 was lower with this in 7: median 20.3 against 25.5 ms, at most 20 ms
in 5 runs against 3. The gain was in the first 6 pairs, while the machine was
slow (median 23.2 against 38.4 ms); in the last 4, on a faster machine, it was
lower in 3 by 1.8 to 2.1 ms and higher in 1 by 1.3 ms. The stored answer's
arrival at p99: median 42.4 against 57.2 ms.
"""

from __future__ import annotations

import gc
import logging
import threading
import time
from collections.abc import Callable

logger = logging.getLogger(__name__)

CHECK_SECONDS = 0.05
MOST_DEFERRED = 20


def generation_due(
    counts: tuple[int, int, int],
    thresholds: tuple[int, int, int],
    *,
    full_due: Callable[[], bool],
) -> int | None:
    """The generation to collect now (None: none yet), from ``gc.get_count()`` and
    ``gc.get_threshold()``, as CPython chooses: the youngest once enough objects
    were made; the middle one every so many young collections; and in place of a
    middle one, once enough of those were made, a full collection if ``full_due()``
    (the oldest generation grew by a quarter since the last). ``full_due`` is
    asked only then, as it counts the oldest generation's objects."""
    if thresholds[0] == 0 or counts[0] <= thresholds[0]:
        return None
    if counts[1] <= thresholds[1]:
        return 0
    if counts[2] >= thresholds[2] and full_due():
        return 2
    return 1


class IdleCollector:
    """Collects garbage, as CPython would, when ``busy()`` says nothing waits on the
    process; a thread checks every ``check_seconds``."""

    def __init__(
        self,
        *,
        busy: Callable[[], bool],
        check_seconds: float = CHECK_SECONDS,
        most_deferred: int = MOST_DEFERRED,
    ) -> None:
        self.busy = busy
        self.check_seconds = check_seconds
        self.most_deferred = most_deferred
        # Objects in the oldest generation after the last full collection.
        self._long_lived = len(gc.get_objects(2))

    def _full_due(self) -> bool:
        # CPython's own rule: a full collection once the oldest generation has grown
        # by a quarter, so that full collections keep pace with what the heap gains
        # rather than with its size.
        return len(gc.get_objects(2)) - self._long_lived > self._long_lived / 4

    def collect_if_due(self) -> int | None:
        """Collect the generation due, unless something waits and the garbage can
        still wait; returns the generation collected, or None."""
        counts, thresholds = gc.get_count(), gc.get_threshold()
        if counts[0] <= thresholds[0] * self.most_deferred and self.busy():
            return None
        generation = generation_due(counts, thresholds, full_due=self._full_due)
        if generation is None:
            return None
        gc.collect(generation)
        if generation == 2:
            self._long_lived = len(gc.get_objects(2))
        return generation

    def start(self) -> None:
        """Turn automatic collection off and collect from a thread of its own."""
        gc.disable()
        threading.Thread(target=self._run, name="idle-collector", daemon=True).start()

    def _run(self) -> None:
        while True:
            time.sleep(self.check_seconds)
            try:
                self.collect_if_due()
            except Exception:
                # The thread must outlive any one failure: nothing else collects.
                logger.exception("Garbage collection failed")
