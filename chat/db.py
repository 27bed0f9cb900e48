"""Database work from async code, always inside the brand's schema.

django-tenants keeps the schema on the thread's connection, and async code runs
its sync work on threads other brands' work shares. Every call therefore sets
the schema it needs before it runs, never trusting what an earlier call left on
the connection.

Three ways to run:

- On the caller's thread (the default): for a sync view or a worker that calls
  async code through ``async_to_sync``, the work runs back on its own thread and
  connection (inside its transaction, if any), and the previous schema is
  restored afterwards.
- ``parallel=True``, for the chat socket: the work runs on a pool of threads,
  each with its own connection, so one conversation's database wait does not
  hold up the others (Channels' default is one thread for every consumer of the
  process). Those threads do nothing else, so their schema is left set, which
  saves a ``SET search_path`` on the next call for the same brand. Work that such
  a call leaves for the event loop (``on_loop``: chat.realtime's pushes of the
  messages it stored) runs on the loop once the call is back, without waking the
  loop once more for each. In 6 alternating pairs of bench/chat_ws.py runs (the
  mock provider, 200 sessions) the web process's CPU per answer was lower with
  this than with a wake-up per push in all 6, median 6.1 against 7.1 ms.
- ``parallel=True, short=True``: a turn's few short statements (the customer's
  message read in and stored, the answer stored) run on one thread of their own,
  in the order they came (``ShortWork``), unless its current piece has run longer
  than ``CHAT_DB_SHORT_WORK_MS``: then they go to the pool, so a slow statement or
  a lock wait holds up nothing else. Several messages sent within a few
  milliseconds are then read in one after the other and the first is answered
  first; on the pool they would share the interpreter and all finish together,
  and each hand-over between its threads costs interpreter time of its own.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
import weakref
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TypeVar

from asgiref.sync import sync_to_async
from django.conf import settings
from django.db import DEFAULT_DB_ALIAS, connection, connections
from django_tenants.utils import schema_context

T = TypeVar("T")
logger = logging.getLogger(__name__)

_executor: ThreadPoolExecutor | None = None
# On a pool thread: the LoopWork of the call it runs (see on_loop).
caller = threading.local()
_executor_lock = threading.Lock()
# The connections the pool's threads opened, to close them on shutdown.
_pooled_connections: weakref.WeakSet[Any] = weakref.WeakSet()


class ShortWork:
    """The one thread for short work, and when its current piece started."""

    def __init__(self, slow_after: float) -> None:
        self.slow_after = slow_after
        self.executor = ThreadPoolExecutor(
            max_workers=1, thread_name_prefix="chat-db-short"
        )
        # Written only by its thread: the running piece's start, None between pieces.
        self.started: float | None = None

    def held_up(self) -> bool:
        """Whether its current piece has run longer than short work takes."""
        started = self.started
        return started is not None and time.monotonic() - started > self.slow_after


_short_work: ShortWork | None = None


def _short() -> ShortWork | None:
    """The short-work thread, or None when CHAT_DB_SHORT_WORK_MS is 0."""
    global _short_work
    if _short_work is not None:
        return _short_work
    with _executor_lock:
        if _short_work is None and settings.CHAT_DB_SHORT_WORK_MS > 0:
            _short_work = ShortWork(settings.CHAT_DB_SHORT_WORK_MS / 1000)
        return _short_work


def _pool() -> ThreadPoolExecutor:
    global _executor
    with _executor_lock:
        if _executor is None:
            _executor = ThreadPoolExecutor(
                max_workers=settings.CHAT_DB_THREADS, thread_name_prefix="chat-db"
            )
        return _executor


def close_pooled_connections() -> None:
    """Close the connections the pool's threads hold (at shutdown, after tests).
    Precondition: no pooled work is running."""
    for wrapper in list(_pooled_connections):
        wrapper.inc_thread_sharing()
        try:
            wrapper.close()
        finally:
            wrapper.dec_thread_sharing()


def _drop_broken_connection() -> None:
    """A connection the database dropped (a restart) is replaced, not reused."""
    if (
        connection.connection is not None
        and connection.errors_occurred
        and not connection.in_atomic_block
        and not connection.is_usable()
    ):
        connection.close()
    connection.errors_occurred = False


def _run_here(schema_name: str, fn: Callable[..., T], args: Any, kwargs: Any) -> T:
    _drop_broken_connection()
    with schema_context(schema_name):
        return fn(*args, **kwargs)


class LoopWork:
    """What a pooled call leaves for the event loop that made it.

    The thread adds callbacks; the loop runs them when the call returns or fails.
    If the loop stopped waiting first (the socket went away), a callback added
    later is handed to the loop at once instead, so none is lost.
    """

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.loop = loop
        self._callbacks: list[Callable[[], None]] = []
        self._lock = threading.Lock()
        self._done = False

    def add(self, callback: Callable[[], None]) -> None:
        with self._lock:
            if not self._done:
                self._callbacks.append(callback)
                return
        try:
            self.loop.call_soon_threadsafe(callback)
        except RuntimeError:
            logger.warning(
                "The event loop closed before a pooled call's work could run"
            )

    def run(self) -> None:
        with self._lock:
            self._done = True
            callbacks, self._callbacks = self._callbacks, []
        for callback in callbacks:
            try:
                callback()
            except Exception:
                # What the call stored is stored: its result still goes back.
                logger.exception("Work a pooled call left for the event loop failed")


def on_loop(callback: Callable[[], None]) -> bool:
    """On a pool thread: run ``callback`` on the calling event loop once the call is
    back. Returns False (and does nothing) on any other thread."""
    work = getattr(caller, "work", None)
    if work is None:
        return False
    work.add(callback)
    return True


def _run_pooled(
    work: LoopWork,
    schema_name: str,
    fn: Callable[..., T],
    args: Any,
    kwargs: Any,
    short: ShortWork | None,
) -> T:
    caller.work = work
    if short is not None:
        short.started = time.monotonic()
    try:
        _pooled_connections.add(connections[DEFAULT_DB_ALIAS])
        _drop_broken_connection()
        if connection.schema_name != schema_name:
            connection.set_schema(schema_name)
        return fn(*args, **kwargs)
    finally:
        if short is not None:
            short.started = None


async def in_schema(
    schema_name: str,
    fn: Callable[..., T],
    *args: Any,
    parallel: bool = False,
    short: bool = False,
    **kwargs: Any,
) -> T:
    """Run ``fn(*args, **kwargs)`` in ``schema_name`` on a thread for sync work.
    ``parallel``: on the chat's threads; ``short``: a turn's short statements."""
    if parallel:
        work = LoopWork(asyncio.get_running_loop())
        thread = _short() if short else None
        if thread is not None and thread.held_up():
            thread = None
        executor = thread.executor if thread is not None else _pool()
        try:
            return await work.loop.run_in_executor(
                executor, _run_pooled, work, schema_name, fn, args, kwargs, thread
            )
        finally:
            work.run()
    return await sync_to_async(_run_here, thread_sensitive=True)(
        schema_name, fn, args, kwargs
    )
