"""Pooled database calls leave work for the event loop that made them (chat.db.on_loop)."""

from __future__ import annotations

import asyncio
import threading

import pytest
from django.conf import settings

from chat import db as chat_db


def _run(coroutine):
    return asyncio.run(asyncio.wait_for(coroutine, 10))


def test_work_left_by_a_pooled_call_runs_on_the_loop_once_the_call_is_back():
    events: list[tuple[str, int]] = []

    def call() -> str:
        assert chat_db.on_loop(lambda: events.append(("work", threading.get_ident())))
        events.append(("call ends", threading.get_ident()))
        return "stored"

    async def scenario() -> int:
        result = await chat_db.in_schema("public", call, parallel=True)
        events.append((f"caller gets {result}", threading.get_ident()))
        return threading.get_ident()

    loop_thread = _run(scenario())
    assert [name for name, _ in events] == ["call ends", "work", "caller gets stored"]
    pool_thread = events[0][1]
    assert pool_thread != loop_thread
    assert events[1][1] == events[2][1] == loop_thread


def test_work_left_by_a_failing_call_still_runs():
    ran: list[str] = []

    def call() -> None:
        chat_db.on_loop(lambda: ran.append("work"))
        raise ValueError("the database said no")

    async def scenario() -> None:
        await chat_db.in_schema("public", call, parallel=True)

    with pytest.raises(ValueError, match="the database said no"):
        _run(scenario())
    assert ran == ["work"]


def test_a_failing_piece_of_work_neither_stops_the_rest_nor_loses_the_result(caplog):
    ran: list[str] = []

    def broken() -> None:
        raise RuntimeError("the channel layer is gone")

    def call() -> str:
        chat_db.on_loop(broken)
        chat_db.on_loop(lambda: ran.append("second"))
        return "stored"

    async def scenario() -> str:
        return await chat_db.in_schema("public", call, parallel=True)

    assert _run(scenario()) == "stored"
    assert ran == ["second"]
    assert "the channel layer is gone" in caplog.text


def test_work_left_after_the_caller_stopped_waiting_is_handed_to_the_loop():
    release, left = threading.Event(), threading.Event()
    ran: list[int] = []

    def call() -> None:
        release.wait(5)
        chat_db.on_loop(lambda: ran.append(threading.get_ident()))
        left.set()

    async def scenario() -> int:
        waiting = asyncio.ensure_future(
            chat_db.in_schema("public", call, parallel=True)
        )
        await asyncio.sleep(0.05)
        waiting.cancel()  # the socket went away while its call was running
        with pytest.raises(asyncio.CancelledError):
            await waiting
        release.set()
        await asyncio.to_thread(left.wait, 5)
        for _ in range(100):
            if ran:
                break
            await asyncio.sleep(0.01)
        return threading.get_ident()

    loop_thread = _run(scenario())
    assert ran == [loop_thread]


def test_off_the_pool_nothing_is_left_for_a_loop():
    ran: list[str] = []
    assert chat_db.on_loop(lambda: ran.append("work")) is False
    assert ran == []


# --- Short work: a turn's short statements on one thread, in arrival order -----------


def test_short_work_runs_on_one_thread_one_piece_after_the_other_in_arrival_order():
    ran: list[tuple[int, str]] = []
    running = [0]
    most = [0]
    guard = threading.Lock()

    def call(number: int) -> int:
        with guard:
            running[0] += 1
            most[0] = max(most[0], running[0])
        threading.Event().wait(0.002)
        with guard:
            running[0] -= 1
            ran.append((number, threading.current_thread().name))
        return number

    async def scenario() -> list[int]:
        return await asyncio.gather(
            *(
                chat_db.in_schema("public", call, n, parallel=True, short=True)
                for n in range(8)
            )
        )

    assert _run(scenario()) == list(range(8))
    assert [number for number, _ in ran] == list(range(8))
    assert most[0] == 1
    assert {name for _, name in ran} == {"chat-db-short_0"}


def test_short_work_goes_to_the_pool_while_the_short_thread_is_held_up():
    release, entered = threading.Event(), threading.Event()

    def slow() -> str:
        entered.set()
        release.wait(5)  # a lock wait, say
        return threading.current_thread().name

    def quick() -> str:
        return threading.current_thread().name

    async def scenario() -> tuple[str, str]:
        held = asyncio.ensure_future(
            chat_db.in_schema("public", slow, parallel=True, short=True)
        )
        assert await asyncio.to_thread(entered.wait, 5)
        # Past the slow-work time, the next short piece does not queue behind it.
        await asyncio.sleep(settings.CHAT_DB_SHORT_WORK_MS / 1000 + 0.05)
        quick_thread = await asyncio.wait_for(
            chat_db.in_schema("public", quick, parallel=True, short=True), 2
        )
        assert not held.done()
        release.set()
        return await held, quick_thread

    slow_thread, quick_thread = _run(scenario())
    assert slow_thread == "chat-db-short_0"
    assert quick_thread.startswith("chat-db_")


def test_other_chat_work_runs_on_the_pool():
    def call() -> str:
        return threading.current_thread().name

    async def scenario() -> str:
        return await chat_db.in_schema("public", call, parallel=True)

    assert _run(scenario()).startswith("chat-db_")
