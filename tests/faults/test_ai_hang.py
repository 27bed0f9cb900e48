"""An AI provider that hangs: the offline assistant answers within AI_TIMEOUT_SECONDS.

daphne runs with AI_PROVIDER=anthropic, ANTHROPIC_BASE_URL pointing at a loopback
server that hangs and AI_TIMEOUT_SECONDS=2. Customers chat through the real
WebSocket (/ws/chat/<token>/): after one warm-up turn (not counted), 5
conversations at once against a server that accepts the connection and never
answers, then 5 against one that answers the headers and the first words of a
stream and then stalls.

Holds when every turn gets its answer, from the offline (scripted) assistant,
within 2 s + 1.5 s of margin; the stored answer records provider "scripted" and
the failed provider (anthropic, "no answer within 2 s"); a stalled stream's
partial words are withdrawn (a "reset" frame) before the offline answer.
"""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from dataclasses import dataclass, field
from typing import Any

import pytest

from tests.faults import harness
from tests.faults.conftest import Scenario
from tests.faults.mocks import HangingServer, bench_module

pytestmark = [pytest.mark.faults, pytest.mark.timeout(240)]

AI_TIMEOUT = 2.0
MARGIN = 1.5
SESSIONS_PER_MODE = 5
QUESTION = "How much is ceramic tint for my sedan?"


@dataclass
class Turn:
    mode: str
    lead_id: int
    seconds: float | None = None
    error: str = ""
    frames: list[str] = field(default_factory=list)
    answer: str = ""


async def _turn(port: int, host: str, token: str, turn: Turn) -> None:
    socket = await bench_module("_ws_client").connect(
        harness.LOOPBACK,
        port,
        f"/ws/chat/{token}/",
        host=f"{host}:{port}",
        origin=f"http://{host}:{port}",
        timeout=20,
    )
    try:
        async with asyncio.timeout(20):
            _, first = await socket.receive()
        if first is None or json.loads(first).get("type") != "history":
            turn.error = f"first frame: {first!r:.80}"
            return
        client_id = uuid.uuid4().hex
        sent = time.monotonic()
        socket.send_text(
            json.dumps({"type": "message", "text": QUESTION, "client_id": client_id})
        )
        async with asyncio.timeout(AI_TIMEOUT * 5 + 10):
            while True:
                _, raw = await socket.receive()
                if raw is None:
                    turn.error = "socket closed"
                    return
                frame = json.loads(raw)
                turn.frames.append(frame.get("type", "?"))
                message = frame.get("message") or {}
                if (
                    frame.get("type") == "message"
                    and message.get("role") == "assistant"
                ):
                    turn.seconds = time.monotonic() - sent
                    turn.answer = message.get("text") or ""
                    return
                if frame.get("type") == "error":
                    turn.error = f"error frame {frame.get('code')}"
                    return
    except TimeoutError:
        turn.error = "no answer"
    finally:
        await socket.close()


def _converse(
    port: int, host: str, chats: list[dict[str, Any]], mode: str
) -> list[Turn]:
    turns = [Turn(mode, chat["lead_id"]) for chat in chats]

    async def run() -> None:
        await asyncio.gather(
            *(
                _turn(port, host, chat["token"], t)
                for chat, t in zip(chats, turns, strict=True)
            )
        )

    asyncio.run(run())
    return turns


def test_ai_hang(scenario: Scenario) -> None:
    started = time.monotonic()
    base = scenario.base
    checks = harness.Checks()
    chats = harness.ctl(
        scenario.env(), "chats-create", count=2 * SESSIONS_PER_MODE + 1
    )["chats"]
    warmup = chats.pop()
    turns: list[Turn] = []
    accepted: dict[str, int] = {}
    with HangingServer(mode="silent") as provider:
        env = scenario.env(
            AI_PROVIDER="anthropic",
            ANTHROPIC_API_KEY="fault-key",
            ANTHROPIC_BASE_URL=provider.base_url,
            AI_TIMEOUT_SECONDS=str(AI_TIMEOUT),
        )
        with harness.Processes(scenario.name, env) as procs:
            port = harness.free_port()
            web = procs.web(port)
            harness.wait_until_ok(
                f"http://{harness.LOOPBACK}:{port}/api/ping",
                host=base["host"],
                timeout=90,
                services=[web],
            )
            # One turn first, not measured: the first answers of a fresh process
            # also pay for its warm-up (connections, imports, caches).
            warm = _converse(port, base["host"], [warmup], "warm-up")
            for position, mode in enumerate(("silent", "stall")):
                provider.mode = mode
                before = provider.accepted
                group = chats[
                    position * SESSIONS_PER_MODE : (position + 1) * SESSIONS_PER_MODE
                ]
                turns += _converse(port, base["host"], group, mode)
                accepted[mode] = provider.accepted - before
            alive = web.alive()

    stored = {
        lead_id: (provider_name, fallbacks, latency)
        for lead_id, provider_name, fallbacks, latency in scenario.sql(
            "SELECT s.lead_id, m.provider, m.fallbacks, m.latency_ms FROM chat_chatmessage m"
            " JOIN chat_chatsession s ON s.id = m.session_id WHERE m.role = 'assistant'"
            " AND s.lead_id <> %s",
            [warmup["lead_id"]],
        )
    }
    answered = [t for t in turns if t.seconds is not None]
    late = [t for t in answered if t.seconds > AI_TIMEOUT + MARGIN]
    not_scripted = [
        t.lead_id for t in turns if stored.get(t.lead_id, ("",))[0] != "scripted"
    ]
    no_fallback_record = [
        t.lead_id
        for t in turns
        if not any(
            f.get("provider") == "anthropic"
            and "no answer within" in f.get("error", "")
            for f in (stored.get(t.lead_id, ("", [], 0))[1] or [])
        )
    ]
    stall_without_reset = [
        t.lead_id for t in turns if t.mode == "stall" and "reset" not in t.frames
    ]

    checks.check(
        "every turn answered",
        len(answered) == len(turns),
        [t.error for t in turns if t.seconds is None],
    )
    checks.check(
        f"every answer within {AI_TIMEOUT:g} s + {MARGIN:g} s",
        not late,
        [round(t.seconds, 2) for t in late],
    )
    checks.check(
        "the hanging provider was asked each time",
        all(n >= SESSIONS_PER_MODE for n in accepted.values()),
        accepted,
    )
    checks.check(
        "answers stored from the offline assistant", not not_scripted, not_scripted
    )
    checks.check(
        "each answer records the provider that failed",
        not no_fallback_record,
        no_fallback_record,
    )
    checks.check(
        "a stalled stream's words are withdrawn (reset)",
        not stall_without_reset,
        stall_without_reset,
    )
    checks.check("daphne survived", alive, alive)

    harness.finish(
        "ai_hang",
        {
            "title": "AI provider that hangs",
            "setup": f"daphne, AI_PROVIDER=anthropic at a loopback server that never answers "
            f"({SESSIONS_PER_MODE} chats at once) or stalls mid-stream ({SESSIONS_PER_MODE}); "
            f"AI_TIMEOUT_SECONDS={AI_TIMEOUT:g}; WebSocket turns",
            "counts": {
                "attempted": len(turns),
                "acknowledged": len(answered),
                "processed": sum(
                    1 for t in turns if stored.get(t.lead_id, ("",))[0] == "scripted"
                ),
                "duplicates": None,
                "lost": len(turns) - len(answered),
            },
            "latency_ms": harness.latency_ms([t.seconds for t in answered]),
            "latency_of": "customer message sent to the offline answer received",
            "details": {
                "by mode (s)": {
                    mode: [
                        round(t.seconds, 2)
                        for t in turns
                        if t.mode == mode and t.seconds
                    ]
                    for mode in ("silent", "stall")
                },
                "connections the hanging provider accepted": accepted,
                "warm-up turn (s, not counted)": round(warm[0].seconds or 0, 2),
                "stored latency_ms": sorted(
                    v[2] for v in stored.values() if v[2] is not None
                ),
                "fallback record (one answer)": next(
                    iter(stored.values()), ("", [], 0)
                )[1],
                "frames of a stalled turn": next(
                    (t.frames for t in turns if t.mode == "stall"), []
                ),
            },
        },
        checks,
        started=started,
    )
