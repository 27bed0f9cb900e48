"""chat.pacing: finished answers' stores wait for the answers that are starting."""

from __future__ import annotations

import asyncio
import threading
import time

from chat import pacing


def test_settled_at_once_when_nothing_starts():
    async def scenario():
        began = time.monotonic()
        await pacing.starts_settled(most=5)
        return time.monotonic() - began

    assert asyncio.run(scenario()) < 1


def test_settled_when_the_last_start_ends():
    async def scenario():
        first, second = pacing.answer_start(), pacing.answer_start()
        assert pacing.starting() == 2
        waiter = asyncio.create_task(pacing.starts_settled(most=5))
        await asyncio.sleep(0.01)
        first.end()
        await asyncio.sleep(0.01)
        assert not waiter.done(), "one answer is still starting"
        second.end()
        await asyncio.wait_for(waiter, 1)
        return pacing.starting()

    assert asyncio.run(scenario()) == 0


def test_a_start_that_never_ends_holds_a_store_for_at_most_the_limit():
    async def scenario():
        pacing.answer_start()
        began = time.monotonic()
        await pacing.starts_settled(most=0.05)
        return time.monotonic() - began, pacing.starting()

    waited, still_starting = asyncio.run(scenario())
    assert 0.04 <= waited < 1
    assert still_starting == 1


def test_end_is_idempotent():
    async def scenario():
        start = pacing.answer_start()
        pacing.answer_start()  # another answer, still starting
        start.end()
        start.end()
        return pacing.starting()

    assert asyncio.run(scenario()) == 1


def test_each_event_loop_counts_its_own_starts():
    async def open_one():
        pacing.answer_start()
        return pacing.starting()

    async def count():
        return pacing.starting()

    assert asyncio.run(open_one()) == 1
    # A start left open on another loop holds up nothing here.
    assert asyncio.run(count()) == 0


def test_any_starting_sees_the_starts_of_every_live_loop_from_any_thread():
    opened, release = threading.Event(), threading.Event()
    seen = []

    async def serve():
        start = pacing.answer_start()
        opened.set()
        await asyncio.to_thread(release.wait, 5)
        start.end()
        seen.append(pacing.any_starting())

    server = threading.Thread(target=asyncio.run, args=(serve(),))
    server.start()
    assert opened.wait(5)
    try:
        # Read from this thread, which runs no loop of its own.
        assert pacing.any_starting()
    finally:
        release.set()
        server.join(5)
    assert seen == [False]
    assert not pacing.any_starting()


def test_a_start_left_open_on_a_closed_loop_does_not_count():
    async def leave_one_open():
        pacing.answer_start()
        return pacing.any_starting()

    assert asyncio.run(leave_one_open())
    assert not pacing.any_starting()
