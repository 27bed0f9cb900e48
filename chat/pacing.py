"""Which chat work goes first when many customers write at once.

A customer waits on the start of an answer: their message stored, the model
asked, its first words on the page. Storing an answer whose whole text is
already on the page can wait a little. One server process shares one
interpreter between all its sockets and the chat's database threads, so when
customers write in the same few milliseconds, every finished answer's store
delays the starts queued behind it.

So a socket whose answer is complete waits, before storing it, until no other
answer of its event loop is starting, for at most STORE_WAIT_SECONDS. The page
already shows the text; only the stored copy of the message and the end of the
typing indicator come that much later, and only while other answers start.

In 5 alternating pairs of bench/chat_ws.py runs (the mock provider, 200
sessions), message to first token at p99 was 16.2-18.6 ms in 4 runs with this
and 25.6 ms in the fifth (median 18.4 ms), against 16.5-22.1 ms without (median
21.6 ms, 2 runs of 5 at most 20 ms). The price is at the stored answer's
arrival: its p99 was 30.8-48.6 ms against 20.8-26.9 ms, its p50 7.7-9.3 ms
against 7.3-9.0 ms.
"""

from __future__ import annotations

import asyncio
import threading
import weakref

# The longest a finished answer's store waits for the answers that are starting.
STORE_WAIT_SECONDS = 0.05


class _Starts:
    """The answers of one event loop that are starting."""

    def __init__(self) -> None:
        self.open: set[Start] = set()
        self.idle = asyncio.Event()
        self.idle.set()


_by_loop: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, _Starts] = (
    weakref.WeakKeyDictionary()
)
# Guards _by_loop's additions against ``any_starting``'s reads from other threads.
_by_loop_lock = threading.Lock()


def _starts() -> _Starts:
    loop = asyncio.get_running_loop()
    starts = _by_loop.get(loop)
    if starts is None:
        with _by_loop_lock:
            starts = _by_loop[loop] = _Starts()
    return starts


class Start:
    """One answer from the customer's message to its first words (or its failure).

    ``end`` may be called any number of times; the first ends the start.
    """

    def __init__(self, starts: _Starts) -> None:
        self._starts = starts
        starts.open.add(self)
        starts.idle.clear()

    def end(self) -> None:
        starts = self._starts
        starts.open.discard(self)
        if not starts.open:
            starts.idle.set()


def answer_start() -> Start:
    """Count an answer as starting on the running event loop until ``end``."""
    return Start(_starts())


def starting() -> int:
    """How many answers of the running event loop are starting."""
    return len(_starts().open)


def any_starting() -> bool:
    """Whether an answer is starting on an event loop of the process that is not
    closed; from any thread (leadorch.collector)."""
    with _by_loop_lock:
        loops = list(_by_loop.items())
    return any(starts.open for loop, starts in loops if not loop.is_closed())


async def starts_settled(most: float | None = None) -> None:
    """Return once no answer of the running event loop is starting, or after
    ``most`` seconds (STORE_WAIT_SECONDS by default), whichever comes first."""
    starts = _starts()
    if not starts.open:
        return
    try:
        async with asyncio.timeout(STORE_WAIT_SECONDS if most is None else most):
            await starts.idle.wait()
    except TimeoutError:
        pass
