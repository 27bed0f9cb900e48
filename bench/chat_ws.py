"""Chat over WebSockets under load: 200 sessions on one daphne process, 5 messages each.

The issue: 200 concurrent chat sessions on ONE server process (daphne serving
leadorch.asgi) with the offline assistant (AI_PROVIDER=scripted), each sending 5
messages, the next as soon as the previous answer's final message arrives.
Report p50/p99 from sending a message to its first reply token (the first
``delta`` frame answering it) and the errors (failed connects, error frames,
timeouts, missing answers). Target: p99 <= 100 ms, 0 errors. Then the same load
with the Anthropic provider against a mock API that answers at once
(bench/_ai_mock.py): p50/p99 message -> first token, and our code's overhead per
turn = that latency minus the mock's own service time for the turn's request.
Target: overhead p99 <= 20 ms; every answer stored with provider "anthropic" and
its tokens and cost. The overhead's p99 is also given apart for each session's
first message (which moves the lead to engaged and stops its follow-up) and for
the later ones. Then, for reference, the floor: the same load and the same
mock against bench/_bare_chat.py, which sends the same frames and the app's own
Anthropic request through the official SDK on the same server, with no Django,
Channels or database; and how far the app's overhead is above the floor's in
the same run (the part of the overhead that is the app's own).

How it runs:

1. Its own embedded PostgreSQL (.var/bench), migrated; the brand "benchchat"
   emptied (leads, chat sessions and messages of earlier runs go), then one
   location with weekly hours and a catalog, and per phase 200 leads, each with
   its own chat link (``chat.services.chat_links_create``), plus a few for the
   warm-up and for one session alone. The floor has no database behind it: its
   tokens are the customers' first names.
2. Per phase, daphne as a subprocess with the phase's AI settings, or serving
   bench/_bare_chat.py for the floor (and, for the Anthropic phase and the
   floor, the mock API as another subprocess); the load starts once
   GET /api/ping answers.
3. Warm-up (not measured): 2 sessions x 5 messages. Then one session alone, 5
   messages (the latency without load, for reference).
4. The load: 200 WebSockets to ws://benchchat.localhost:<port>/ws/chat/<token>/
   (Host and Origin of the brand), opened 25 at a time; once every session has
   its ``history`` frame they start, each sending its 5 questions (prices, open
   times, the service list) one after the other as a customer would: the first
   after a random pause of up to twice the think time (customers do not all
   press send in the same millisecond), each next one a think time (uniform
   between half and one and a half times --think, default 3 s: reading the
   answer and typing) after the previous answer arrived. The pauses are drawn
   per session from ``--seed`` (default 1), so every run and every phase offer
   the same schedule, and a change to the server is compared on the same load.
   ``--think 0`` is a
   closed loop without pauses: a capacity test, where latency is queueing.
   A turn is timed from just before the message is written to the socket to the
   arrival of the first ``delta`` frame whose ``reply_to`` is the echoed
   customer message, and to the final assistant ``message``.
5. The stored answers are counted from the database (provider, tokens, cost).

The WebSocket client is bench/_ws_client.py, a minimal RFC 6455 client over
asyncio (``websockets`` is not installed, and autobahn's asyncio flavour cannot
load in a process that loaded Django: daphne pins txaio to Twisted). Clients,
server, database and mock share the machine's cores; the load average and each
process's CPU are reported.

Run: .venv/bin/python bench/chat_ws.py [--sessions N] [--messages N]
     [--phase scripted|anthropic|floor|all]
Logs of the server and the mock: .var/bench/logs/.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import sys
import time
import urllib.request
import uuid
from collections import Counter
from collections.abc import Callable, Sequence
from contextlib import ExitStack
from dataclasses import dataclass, field
from datetime import time as clock
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

import _benchlib as bench
import _ws_client as ws_client

BENCHMARK = "chat_ws"
SESSIONS = 200
# A customer reads the answer and types the next question: seconds, on average.
THINK_SECONDS = 3.0
think_seconds = THINK_SECONDS
SEED = 1
seed = SEED
QUESTIONS = (
    "How much is ceramic tint for my sedan?",
    "When can I bring my sedan in for the ceramic tint?",
    "How much is a ceramic coating?",
    "What services do you offer?",
    "Do you have anything open tomorrow for the sedan ceramic tint?",
)
WARMUP_SESSIONS = 2

TENANT_SLUG = "benchchat"
TENANT_NAME = "Bench Chat"
FIRST_TOKEN_P99_TARGET_MS = 100.0
OVERHEAD_P99_TARGET_MS = 20.0

CONNECT_CONCURRENCY = 25
CONNECT_TIMEOUT_SECONDS = 30.0
TURN_TIMEOUT_SECONDS = 60.0
SERVER_START_TIMEOUT_SECONDS = 90.0

# (code, category, name, price in dollars, minutes)
CATALOG = (
    ("tint-sedan-carbon", "Window tint", "Window tint - full sedan, carbon film", 299, 150),
    ("tint-sedan-ceramic", "Window tint", "Window tint - full sedan, ceramic film", 449, 180),
    ("tint-suv-ceramic", "Window tint", "Window tint - SUV or truck, ceramic IR film", 549, 210),
    ("windshield-sun-strip", "Windshield", "Windshield sun strip", 69, 30),
    ("windshield-chip-repair", "Windshield", "Windshield chip repair", 79, 45),
    ("ppf-partial-front", "Paint protection film", "Paint protection film - partial front", 895, 300),
    ("ceramic-coating-1yr", "Ceramic coating", "Ceramic coating - 1-year", 399, 180),
    ("tint-removal-full", "Tint removal", "Tint removal - full vehicle", 199, 120),
)  # fmt: skip

PHASES = ("scripted", "anthropic", "floor")


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--sessions",
        type=int,
        default=SESSIONS,
        help=f"concurrent WebSocket sessions (default {SESSIONS})",
    )
    parser.add_argument(
        "--messages",
        type=int,
        default=len(QUESTIONS),
        help=f"messages per session, at most {len(QUESTIONS)} (default {len(QUESTIONS)})",
    )
    parser.add_argument(
        "--think",
        type=float,
        default=THINK_SECONDS,
        help=f"mean seconds between an answer and the next message (default {THINK_SECONDS:g})",
    )
    parser.add_argument(
        "--seed",
        type=int,
        default=SEED,
        help=f"seed of the customers' pauses (default {SEED})",
    )
    parser.add_argument(
        "--phase",
        choices=(*PHASES, "all"),
        default="all",
        help="which phase to run (default all, in this order)",
    )
    args = parser.parse_args(argv)
    if args.sessions < 1 or not 1 <= args.messages <= len(QUESTIONS):
        parser.error(f"--sessions >= 1 and 1 <= --messages <= {len(QUESTIONS)}")
    return args


# --- Setup -------------------------------------------------------------------------------


@dataclass(frozen=True)
class Chat:
    """A lead's chat: the token of its link and the customer's first name (the key the
    mock API files its service times under)."""

    lead_id: int
    first_name: str
    token: str


def prepare_brand(tenant: Any) -> int:
    """The bench brand emptied of earlier runs, with one location, its weekly hours and
    catalog. Returns the location's primary key."""
    from django_tenants.utils import tenant_context

    from appointments.models import Appointment
    from chat.models import ChatMessage, ChatSession
    from leads.models import Lead
    from locations.models import Location, LocationHours, ServiceCatalogItem

    with tenant_context(tenant):
        # The brand holds bench data only; CASCADE reaches sessions, links, messages
        # and whatever else hangs off the leads and the location.
        bench.truncate_tenant_tables(
            tenant,
            [
                ChatMessage,
                ChatSession,
                Appointment,
                Lead,
                ServiceCatalogItem,
                LocationHours,
                Location,
            ],
        )
        location = Location.objects.create(
            name="Bench Chat Store",
            time_zone="America/Los_Angeles",
            address_line1="100 Bench Street",
            city="San Diego",
            region="CA",
            postal_code="92111",
            phone="+16195550100",
            bays=4,
        )
        LocationHours.objects.bulk_create(
            [
                LocationHours(
                    location=location, weekday=d, opens_at=clock(8), closes_at=clock(18)
                )
                for d in range(5)
            ]
            + [
                LocationHours(
                    location=location, weekday=5, opens_at=clock(9), closes_at=clock(15)
                ),
                LocationHours(location=location, weekday=6, is_closed=True),
            ]
        )
        ServiceCatalogItem.objects.bulk_create(
            ServiceCatalogItem(
                code=code,
                category=category,
                name=name,
                price_cents=dollars * 100,
                duration_minutes=minutes,
            )
            for code, category, name, dollars, minutes in CATALOG
        )
        return location.pk


def create_chats(tenant: Any, location_id: int, prefix: str, count: int) -> list[Chat]:
    """``count`` new leads at the location, each with a chat link of its own."""
    from django_tenants.utils import tenant_context

    from chat import services as chat_services
    from leads.models import Lead, LeadSource

    with tenant_context(tenant):
        leads = Lead.objects.bulk_create(
            Lead(
                location_id=location_id,
                first_name=f"{prefix}{n:04d}",
                last_name="Bench",
                email=f"{prefix.lower()}{n:04d}@example.com",
                vehicle_year=2021,
                vehicle_make="Toyota",
                vehicle_model="Camry",
                source=LeadSource.STAFF,
            )
            for n in range(1, count + 1)
        )
        paths = chat_services.chat_links_create(leads=leads)
        return [
            Chat(lead.pk, lead.first_name, paths[lead.pk].removeprefix("/c/"))
            for lead in leads
        ]


# --- The WebSocket client ----------------------------------------------------------------


class ChatClient:
    """One chat page: a WebSocket (bench/_ws_client.py) whose frames are JSON."""

    def __init__(self, *, host: str, port: int, token: str) -> None:
        self.host, self.port, self.token = host, port, token
        self.socket: ws_client.WebSocket | None = None

    async def connect(self, timeout: float) -> None:
        self.socket = await ws_client.connect(
            bench.LOOPBACK,
            self.port,
            f"/ws/chat/{self.token}/",
            host=f"{self.host}:{self.port}",
            origin=f"http://{self.host}:{self.port}",
            timeout=timeout,
        )

    @property
    def close_code(self) -> int | None:
        return self.socket.close_code if self.socket else None

    def send(self, frame: dict[str, Any]) -> None:
        assert self.socket is not None
        self.socket.send_text(json.dumps(frame))

    async def receive(self, timeout: float) -> tuple[float, dict[str, Any] | None]:
        """The next frame and when its bytes arrived; None once the socket closed."""
        assert self.socket is not None
        async with asyncio.timeout(timeout):
            arrived, message = await self.socket.receive()
        if message is None:
            return arrived, None
        try:
            frame = json.loads(message)
        except ValueError:
            frame = None
        return arrived, frame if isinstance(frame, dict) else {"type": "unparsable"}

    async def close(self) -> None:
        if self.socket is not None:
            await self.socket.close()


# --- Sessions and turns -----------------------------------------------------------------


@dataclass
class Turn:
    key: str  # the customer's first name
    number: int  # 1-based, in the session
    first_token: float | None = None  # seconds after sending
    answered: float | None = None  # seconds after sending: the final message
    error: str | None = None
    answer: str = ""


@dataclass
class Run:
    sessions: int
    messages: int
    turns: list[Turn] = field(default_factory=list)
    connect_times: list[float] = field(default_factory=list)
    connect_errors: Counter[str] = field(default_factory=Counter)
    stray_frames: Counter[str] = field(default_factory=Counter)
    resets: int = 0
    elapsed: float = 0.0

    @property
    def first_tokens(self) -> list[float]:
        return [t.first_token for t in self.turns if t.first_token is not None]

    @property
    def answers(self) -> list[float]:
        return [t.answered for t in self.turns if t.answered is not None]

    @property
    def turn_errors(self) -> Counter[str]:
        return Counter(t.error.split(":")[0] for t in self.turns if t.error)

    @property
    def errors(self) -> int:
        """Failed connects and turns without a complete answer (each counted once)."""
        return sum(self.connect_errors.values()) + sum(self.turn_errors.values())

    def ms(self, values: list[float], p: float) -> float:
        return bench.percentile(values, p) * 1000


async def converse(
    client: ChatClient | None,
    chat: Chat,
    questions: Sequence[str],
    pauses: Sequence[float],
    start: asyncio.Event,
    run: Run,
) -> None:
    """One session: every question in turn, each as soon as the previous answer is in."""
    turns = [Turn(chat.first_name, n) for n in range(1, len(questions) + 1)]
    run.turns.extend(turns)
    if client is None:
        for turn in turns:
            turn.error = "not sent: the socket did not open"
        return
    seen: set[int] = set()  # message ids: pages drop the group's duplicate copies
    await start.wait()
    for position, (turn, text, pause) in enumerate(
        zip(turns, questions, pauses, strict=True)
    ):
        if pause > 0:
            await asyncio.sleep(pause)
        client_id = uuid.uuid4().hex
        customer_id: int | None = None
        sent = time.perf_counter()
        try:
            client.send({"type": "message", "text": text, "client_id": client_id})
        except ConnectionError:
            turn.error = (
                f"closed: the socket closed before sending ({client.close_code})"
            )
        deadline = sent + TURN_TIMEOUT_SECONDS
        while turn.error is None and turn.answered is None:
            try:
                arrived, frame = await client.receive(deadline - time.perf_counter())
            except TimeoutError:
                turn.error = "timeout: no final answer in time"
                break
            if frame is None:
                turn.error = (
                    f"closed: the server closed the socket ({client.close_code})"
                )
                break
            kind = frame.get("type")
            if kind == "message":
                message = frame.get("message") or {}
                if message.get("id") in seen:
                    continue
                seen.add(message.get("id"))
                role = message.get("role")
                if role == "customer" and message.get("client_id") == client_id:
                    customer_id = message["id"]
                elif role == "assistant":
                    turn.answered = arrived - sent
                    turn.answer = message.get("text") or ""
                    if turn.first_token is None:
                        turn.error = "missing answer: final message without a delta"
                    elif not turn.answer:
                        turn.error = "missing answer: empty final message"
                else:
                    run.stray_frames[f"message ({role})"] += 1
            elif kind == "delta":
                if customer_id is not None and frame.get("reply_to") == customer_id:
                    if turn.first_token is None:
                        turn.first_token = arrived - sent
                else:
                    run.stray_frames["delta for another message"] += 1
            elif kind == "error":
                turn.error = f"error frame: {frame.get('code')}"
            elif kind == "reset":
                run.resets += 1
            elif kind != "typing":
                run.stray_frames[str(kind)] += 1
        if turn.error and turn.error.startswith(("timeout", "closed")):
            for rest in turns[position + 1 :]:
                rest.error = f"not sent: {turn.error.split(':')[0]} before it"
            return


def pauses(schedule: random.Random, count: int) -> list[float]:
    """A customer's pause before each message: the first up to twice the think time
    after the start, each next one between half and one and a half think times."""
    if think_seconds <= 0:
        return [0.0] * count
    return [schedule.uniform(0, 2 * think_seconds)] + [
        schedule.uniform(0.5 * think_seconds, 1.5 * think_seconds)
        for _ in range(count - 1)
    ]


async def run_sessions(
    chats: Sequence[Chat],
    questions: Sequence[str],
    *,
    host: str,
    port: int,
    on_start: Callable[[], None] = lambda: None,
    on_end: Callable[[], None] = lambda: None,
) -> Run:
    """Open every session (CONNECT_CONCURRENCY at a time), wait for each one's history,
    then let all of them talk at once; close them once every session is done."""
    run = Run(sessions=len(chats), messages=len(questions))
    limit = asyncio.Semaphore(CONNECT_CONCURRENCY)

    async def open_one(chat: Chat) -> ChatClient | None:
        async with limit:
            client = ChatClient(host=host, port=port, token=chat.token)
            started = time.perf_counter()
            try:
                await client.connect(CONNECT_TIMEOUT_SECONDS)
                _, frame = await client.receive(CONNECT_TIMEOUT_SECONDS)
            except (OSError, TimeoutError, UnicodeDecodeError) as error:
                run.connect_errors[type(error).__name__] += 1
                await client.close()
                return None
            if frame is None or frame.get("type") != "history":
                kind = "closed" if frame is None else frame.get("type")
                run.connect_errors[f"first frame {kind}, not history"] += 1
                await client.close()
                return None
            run.connect_times.append(time.perf_counter() - started)
            return client

    clients = await asyncio.gather(*(open_one(chat) for chat in chats))
    start = asyncio.Event()
    schedule = random.Random(seed)
    talks = [
        asyncio.create_task(
            converse(
                client, chat, questions, pauses(schedule, len(questions)), start, run
            )
        )
        for client, chat in zip(clients, chats, strict=True)
    ]
    await asyncio.sleep(0)
    on_start()
    began = time.perf_counter()
    start.set()
    await asyncio.gather(*talks)
    run.elapsed = time.perf_counter() - began
    on_end()
    await asyncio.gather(*(c.close() for c in clients if c is not None))
    return run


# --- Phases ---------------------------------------------------------------------------------


@dataclass
class Phase:
    name: str
    run: Run
    solo: Run
    cpu: dict[str, float]
    load_average: tuple[float, float, float]
    stored: dict[str, int]
    mock_times: dict[str, list[int]] | None = None
    solo_mock_times: dict[str, list[int]] | None = None


def phase_env(name: str, mock_url: str | None) -> dict[str, str]:
    env = dict(os.environ)
    # Only the provider under test: no other key may slip in from a .env file.
    env.update(
        AI_PROVIDER=name,
        ANTHROPIC_API_KEY="",
        ANTHROPIC_BASE_URL="",
        OPENAI_API_KEY="",
        OPENAI_BASE_URL="",
    )
    if name == "anthropic":
        env.update(ANTHROPIC_API_KEY="bench", ANTHROPIC_BASE_URL=mock_url or "")
    return env


def mock_call(base_url: str, path: str, *, method: str = "GET") -> Any:
    request = urllib.request.Request(  # noqa: S310 - the loopback mock we started
        base_url + path, method=method, data=b"" if method == "POST" else None
    )
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    with opener.open(request, timeout=10) as response:
        return json.loads(response.read())


def stored_answers(
    tenant: Any, lead_ids: Sequence[int], provider: str
) -> dict[str, int]:
    """What the database holds for these leads' conversations."""
    from django.db.models import Count, Q
    from django_tenants.utils import tenant_context

    from chat.models import ChatMessage, MessageRole

    with tenant_context(tenant):
        messages = ChatMessage.objects.filter(session__lead_id__in=lead_ids)
        answers = messages.filter(role=MessageRole.ASSISTANT)
        counts = answers.aggregate(
            total=Count("pk"),
            by_provider=Count("pk", filter=Q(provider=provider)),
            recorded=Count(
                "pk",
                filter=Q(
                    provider=provider,
                    input_tokens__gt=0,
                    output_tokens__gt=0,
                    cost__gt=0,
                    latency_ms__isnull=False,
                ),
            ),
            fallbacks=Count("pk", filter=~Q(fallbacks=[])),
        )
        counts["customer"] = messages.filter(role=MessageRole.CUSTOMER).count()
        tools = Counter(
            (rounds[0]["calls"][0]["name"] if rounds and rounds[0]["calls"] else "-")
            for rounds in answers.values_list("tool_calls", flat=True)
        )
        for name, n in tools.items():
            counts[f"tool {name}"] = n
        return counts


def run_phase(
    name: str,
    *,
    tenant: Any,
    location_id: int,
    host: str,
    sessions: int,
    questions: Sequence[str],
) -> Phase:
    if name == "floor":
        # No database behind the floor's socket: the token is the first name.
        chats, warm, solo = (
            [Chat(0, f"{prefix}{n:04d}", f"{prefix}{n:04d}") for n in range(1, count + 1)]
            for prefix, count in (("Floor", sessions), ("WarmF", WARMUP_SESSIONS), ("SoloF", 1))
        )  # fmt: skip
        print(
            f"\nfloor phase: {sessions} sessions x {len(questions)} messages "
            "(bench/_bare_chat.py: no app, the official SDK against the mock)"
        )
    else:
        prefix = "Guest" if name == "scripted" else "Client"
        chats = create_chats(tenant, location_id, prefix, sessions)
        warm = create_chats(
            tenant, location_id, f"Warm{name[:1].upper()}", WARMUP_SESSIONS
        )
        solo = create_chats(tenant, location_id, f"Solo{name[:1].upper()}", 1)
        print(
            f"\n{name} phase: {sessions} sessions x {len(questions)} messages "
            f"(AI_PROVIDER={name})"
        )
    with ExitStack() as stack:
        services = stack.enter_context(bench.Services())
        mock_url = None
        mock = None
        if name in ("anthropic", "floor"):
            mock_port = bench.free_port()
            mock = services.start(
                "ai_mock",
                [bench.PYTHON, str(Path(__file__).with_name("_ai_mock.py")),
                 "--port", str(mock_port)],
                stop_grace=5.0,
            )  # fmt: skip
            mock_url = f"http://{bench.LOOPBACK}:{mock_port}"
            bench.wait_until_ok(f"{mock_url}/health", timeout=30, services=[mock])
        port = bench.free_port()
        if name == "floor":
            services.env = dict(os.environ)
            services.env["BARE_CHAT_REQUEST"] = str(
                floor_request(tenant, location_id, mock_url or "")
            )
            web = services.start(
                "web_floor",
                [bench.PYTHON, "-m", "leadorch.web", "-b", bench.LOOPBACK,
                 "-p", str(port), "bench._bare_chat:application"],
                stop_grace=10.0,
            )  # fmt: skip
        else:
            services.env = phase_env(name, mock_url)
            web = services.start_web(port, name=f"web_{name}")
        waited = bench.wait_until_ok(
            f"http://{bench.LOOPBACK}:{port}/api/ping",
            host=host,
            timeout=SERVER_START_TIMEOUT_SECONDS,
            services=[web],
        )
        print(f"  daphne (pid {web.pid}) answered /api/ping after {waited:.1f} s")

        groups: dict[str, Callable[[], list[Any]]] = {"daphne": web.processes}
        if name != "floor":
            groups["postgres"] = bench.database_processes
        if mock is not None:
            groups["mock"] = mock.processes
        meter = bench.CpuMeter(groups)

        solo_mock_times = None

        async def drive() -> tuple[Run, Run, Run]:
            nonlocal solo_mock_times
            warm_run = await run_sessions(warm, questions, host=host, port=port)
            solo_run = await run_sessions(solo, questions, host=host, port=port)
            if mock_url:
                solo_mock_times = mock_call(mock_url, "/stats")["by_key"]
                mock_call(mock_url, "/reset", method="POST")
            main_run = await run_sessions(
                chats,
                questions,
                host=host,
                port=port,
                on_start=meter.start,
                on_end=meter.stop,
            )
            return warm_run, solo_run, main_run

        warm_run, solo_run, main_run = asyncio.run(drive())
        load_average = os.getloadavg()
        if warm_run.errors:
            print(f"  warm-up: {warm_run.errors} errors {dict(warm_run.turn_errors)}")
        mock_times = mock_call(mock_url, "/stats")["by_key"] if mock_url else None
        if not web.alive():
            print(f"  daphne exited; last lines of {web.log_path}:\n{web.log_tail()}")
    stored = (
        {}
        if name == "floor"
        else stored_answers(tenant, [c.lead_id for c in chats], name)
    )
    return Phase(
        name,
        main_run,
        solo_run,
        meter.percent,
        load_average,
        stored,
        mock_times,
        solo_mock_times,
    )


def floor_request(tenant: Any, location_id: int, mock_url: str) -> Path:
    """The app's own Anthropic request for a chat's first turn, less its messages, for
    the floor's server (bench/_bare_chat.py): the system prompt of a bench lead, the
    tools and the settings. Written to .var/bench/floor_request.json."""
    from django.conf import settings
    from django_tenants.utils import tenant_context

    from chat.ai.anthropic_provider import request_params
    from chat.ai.base import TurnRequest
    from chat.ai.context import context_load, system_prompt
    from chat.ai.tools import TOOL_SPECS
    from chat.models import ChatSession

    (chat,) = create_chats(tenant, location_id, "FloorKey", 1)
    with tenant_context(tenant):
        session = ChatSession.objects.select_related("lead__location").get(
            lead_id=chat.lead_id
        )
        system = system_prompt(context_load(session=session), channel="web")
    params = request_params(
        TurnRequest(
            system=system,
            transcript=(),
            tools=TOOL_SPECS,
            max_tokens=settings.AI_MAX_TOKENS,
        ),
        model=settings.ANTHROPIC_MODEL,
    )
    del params["messages"]
    path = bench.VAR_DIR / "floor_request.json"
    path.write_text(
        json.dumps(
            {
                "params": params,
                "first_name": chat.first_name,
                "api_key": "bench",
                "base_url": mock_url,
                "timeout": settings.AI_TIMEOUT_SECONDS,
            }
        ),
        encoding="utf-8",
    )
    return path


def overheads(
    run: Run, by_key: dict[str, list[int]] | None, *, which: str = "all"
) -> tuple[list[float], list[float], int]:
    """Per turn: first-token latency minus the mock's service time for that turn's
    request (seconds), the service times, and how many turns could not be matched.
    ``which`` messages: "all", "first" (each session's first) or "later".

    Each session has one request in flight at most and the mock answers with text
    only (one request per turn), so a session's k-th request is its k-th turn's."""
    overhead, service, unmatched = [], [], 0
    for turn in run.turns:
        if (which == "first" and turn.number != 1) or (
            which == "later" and turn.number == 1
        ):
            continue
        times = (by_key or {}).get(turn.key, [])
        if turn.first_token is None:
            continue
        if len(times) < turn.number:
            unmatched += 1
            continue
        mock_seconds = times[turn.number - 1] / 1_000_000
        service.append(mock_seconds)
        overhead.append(turn.first_token - mock_seconds)
    return overhead, service, unmatched


# --- Reporting -------------------------------------------------------------------------------


def describe(phase: Phase) -> None:
    run = phase.run
    print(
        f"  load: {len(run.first_tokens):,}/{len(run.turns):,} turns with a first token "
        f"in {run.elapsed:.1f} s ({len(run.answers) / run.elapsed:,.1f} answers/s); "
        f"first token p50 {run.ms(run.first_tokens, 50):.1f} ms, "
        f"p90 {run.ms(run.first_tokens, 90):.1f} ms, "
        f"p99 {run.ms(run.first_tokens, 99):.1f} ms, "
        f"max {run.ms(run.first_tokens, 100):.1f} ms; "
        f"final answer p50 {run.ms(run.answers, 50):.1f} ms, "
        f"p99 {run.ms(run.answers, 99):.1f} ms"
    )
    print(
        f"  connects: {len(run.connect_times)}/{run.sessions} opened, "
        f"p50 {run.ms(run.connect_times, 50):.1f} ms, "
        f"p99 {run.ms(run.connect_times, 99):.1f} ms"
        + (f"; failed {dict(run.connect_errors)}" if run.connect_errors else "")
    )
    if run.turn_errors:
        print(f"  turn errors: {dict(run.turn_errors)}")
    if run.stray_frames or run.resets:
        print(f"  other frames: {dict(run.stray_frames)}, resets {run.resets}")
    solo = phase.solo
    print(
        "  one session alone: first token "
        + ", ".join(f"{t * 1000:.1f}" for t in solo.first_tokens)
        + " ms"
    )
    print(f"  stored: {phase.stored}")
    names = {
        "_self": "load generator",
        "_other": "other processes",
        "_stolen": bench.STOLEN_LABEL,
    }
    print(
        "  CPU during the load (100% = one core): "
        + ", ".join(f"{names.get(k, k)} {v:.0f}%" for k, v in phase.cpu.items())
    )
    print(
        "  load average (1, 5, 15 min) at the end: "
        + ", ".join(f"{v:.2f}" for v in phase.load_average)
    )
    samples = {}
    for turn in run.turns:
        if turn.answer and turn.number not in samples:
            samples[turn.number] = turn.answer
    for number in sorted(samples):
        answer = " ".join(samples[number].split())
        print(f"  answer {number}: {answer[:110]}{'...' if len(answer) > 110 else ''}")


def cpu_ms_per_turn(phase: Phase, group: str) -> float | None:
    answered = len(phase.run.answers)
    if group not in phase.cpu or not answered:
        return None
    return phase.cpu[group] / 100 * phase.run.elapsed / answered * 1000


def phase_rows(phase: Phase) -> list[bench.Row]:
    run, label = phase.run, phase.name
    turns = run.sessions * run.messages
    rows = []
    if label == "scripted":
        rows.append(
            bench.row_at_most(
                f"{label}: message -> first token p99",
                run.ms(run.first_tokens, 99),
                "ms",
                FIRST_TOKEN_P99_TARGET_MS,
            )
        )
    else:
        rows.append(
            bench.Row(
                f"{label}: message -> first token p99",
                run.ms(run.first_tokens, 99),
                "ms",
            )
        )
    rows += [
        bench.Row(f"{label}: message -> first token p50", run.ms(run.first_tokens, 50), "ms"),
        bench.Row(f"{label}: message -> final answer p50", run.ms(run.answers, 50), "ms"),
        bench.Row(f"{label}: message -> final answer p99", run.ms(run.answers, 99), "ms"),
        bench.row_equal(f"{label}: errors", run.errors, "errors", 0, target_unit=""),
        bench.Row(f"{label}: failed connects", sum(run.connect_errors.values()), "sessions"),
        bench.Row(f"{label}: error frames", run.turn_errors.get("error frame", 0), "turns"),
        bench.Row(f"{label}: timeouts", run.turn_errors.get("timeout", 0), "turns"),
        bench.Row(
            f"{label}: missing answers (incl. not sent, socket closed)",
            sum(run.turn_errors.get(k, 0) for k in ("missing answer", "not sent", "closed")),
            "turns",
        ),
    ]  # fmt: skip
    if label in ("anthropic", "floor"):
        overhead, service, unmatched = overheads(run, phase.mock_times)
        solo_overhead, _, _ = overheads(phase.solo, phase.solo_mock_times)
        p99 = bench.percentile(overhead, 99) * 1000
        ours = "our overhead" if label == "anthropic" else "overhead"
        rows += [
            bench.Row(f"{label}: mock service time p50", bench.percentile(service, 50) * 1000, "ms"),
            bench.Row(f"{label}: mock service time p99", bench.percentile(service, 99) * 1000, "ms"),
            bench.Row(f"{label}: {ours} per turn p50", bench.percentile(overhead, 50) * 1000, "ms"),
            bench.row_at_most(f"{label}: our overhead per turn p99", p99, "ms", OVERHEAD_P99_TARGET_MS)
            if label == "anthropic"
            else bench.Row(f"{label}: overhead per turn p99 (daphne and the SDK alone)", p99, "ms"),
            *(
                bench.Row(
                    f"{label}: {ours} per turn p99, {which} messages",
                    bench.percentile(overheads(run, phase.mock_times, which=which)[0], 99) * 1000,
                    "ms",
                )
                for which in ("first", "later")
            ),
            bench.row_equal(f"{label}: turns matched to a mock request", len(overhead), "turns", turns, target_unit=""),
            bench.Row(f"{label}: one session alone, {ours} per turn p50", bench.percentile(solo_overhead, 50) * 1000, "ms"),
        ]  # fmt: skip
        if unmatched:
            print(f"  {unmatched} turns had no matching mock request")
    if label == "anthropic":
        stored = phase.stored
        rows += [
            bench.row_equal(f"{label}: answers stored by anthropic", stored["by_provider"], "answers", turns, target_unit=""),
            bench.row_equal(f"{label}: answers with tokens and cost recorded", stored["recorded"], "answers", turns, target_unit=""),
            bench.Row(f"{label}: answers after a provider fallback", stored["fallbacks"], "answers"),
        ]  # fmt: skip
    elif label == "scripted":
        rows.append(
            bench.row_equal(
                f"{label}: answers stored by the scripted assistant",
                phase.stored["by_provider"],
                "answers",
                turns,
                target_unit="",
            )
        )
    rows += [
        bench.Row(f"{label}: answers/s during the load", len(run.answers) / run.elapsed if run.elapsed else None, "answers/s"),
        bench.Row(f"{label}: one session alone, first token p50", phase.solo.ms(phase.solo.first_tokens, 50), "ms"),
        bench.Row(f"{label}: connect to history p99", run.ms(run.connect_times, 99), "ms"),
        bench.Row(f"{label}: daphne CPU per answer", cpu_ms_per_turn(phase, "daphne"), "ms"),
        bench.Row(f"{label}: postgres CPU per answer", cpu_ms_per_turn(phase, "postgres"), "ms"),
    ]  # fmt: skip
    names = {
        "daphne": "daphne",
        "postgres": "postgres",
        "mock": "mock API",
        "_self": "load generator",
        "_other": "other processes on the machine",
        "_stolen": bench.STOLEN_LABEL,
    }
    for group, name in names.items():
        if group in phase.cpu:
            rows.append(
                bench.Row(f"{label}: CPU {name}", phase.cpu[group], "% of a core")
            )
    rows.append(
        bench.Row(
            f"{label}: load average (1 min) at the end", phase.load_average[0], ""
        )
    )
    return rows


def floor_rows(results: Sequence[Phase]) -> list[bench.Row]:
    """The app's overhead against the floor's, measured in the same run."""
    by_name = {phase.name: phase for phase in results}
    if "anthropic" not in by_name or "floor" not in by_name:
        return []
    rows = []
    for p in (50, 99):
        app, floor = (
            bench.percentile(overheads(by_name[n].run, by_name[n].mock_times)[0], p)
            * 1000
            for n in ("anthropic", "floor")
        )
        rows.append(
            bench.Row(
                f"anthropic overhead p{p} above the floor's (the app's own share)",
                app - floor,
                "ms",
            )
        )
    return rows


# --- Main ----------------------------------------------------------------------------------


def main(argv: Sequence[str] | None = None) -> int:
    global think_seconds, seed
    args = parse_args(argv)
    think_seconds = args.think
    seed = args.seed
    bench.install_signal_handlers()
    run_started = time.monotonic()
    questions = QUESTIONS[: args.messages]
    phases = PHASES if args.phase == "all" else (args.phase,)
    print(
        f"chat over WebSockets: {args.sessions} sessions x {len(questions)} messages, "
        f"think time {think_seconds:g} s (seed {seed}), "
        f"phases {', '.join(phases)}; load average before: "
        + ", ".join(f"{v:.2f}" for v in os.getloadavg())
    )
    print("preparing the bench database (.var/bench) ...")
    bench.django_setup()
    bench.migrate()
    tenant = bench.ensure_tenant(slug=TENANT_SLUG, name=TENANT_NAME)
    host = bench.tenant_host(TENANT_SLUG)
    location_id = prepare_brand(tenant)
    bench.clear_job_queue()
    results = []
    try:
        for name in phases:
            phase = run_phase(
                name,
                tenant=tenant,
                location_id=location_id,
                host=host,
                sessions=args.sessions,
                questions=questions,
            )
            describe(phase)
            results.append(phase)
    finally:
        # Follow-up jobs the first messages queued: no worker of a later run may get them.
        bench.clear_job_queue()

    rows = [
        bench.Row("concurrent sessions", args.sessions, "sessions"),
        bench.Row("messages per session", len(questions), "messages"),
        bench.Row(
            "mean think time between an answer and the next message", think_seconds, "s"
        ),
        bench.Row("seed of the pauses", seed, ""),
    ]
    for phase in results:
        rows += phase_rows(phase)
    rows += floor_rows(results)
    print()
    bench.write_results(BENCHMARK, rows)
    print(f"whole run: {time.monotonic() - run_started:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
