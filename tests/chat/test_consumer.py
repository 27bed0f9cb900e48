"""The chat socket through the full ASGI application: tenancy, protocol, limits."""

from __future__ import annotations

import asyncio
import threading
from datetime import time

import pytest
import time_machine
from asgiref.sync import async_to_sync, sync_to_async
from channels.testing import WebsocketCommunicator
from django.contrib.auth import get_user_model
from django_tenants.utils import tenant_context

from chat import pacing
from chat import services as chat_services
from chat.db import in_schema
from chat.models import ChatMessage, ChatSession, MessageRole
from leadorch.asgi import application
from locations.models import LocationHours
from tests.appointments.conftest import NOW
from tests.chat.ai_transport import anthropic_text_stream
from tests.conftest import ensure_test_tenants, host_of
from tests.factories import LeadFactory, LocationFactory, ServiceCatalogItemFactory

pytestmark = pytest.mark.usefixtures("clock")

ALPHA, BRAVO = "alpha.localhost", "bravo.localhost"


@pytest.fixture
def clock():
    with time_machine.travel(NOW, tick=True):
        yield


def make_chat(tenant, *, first_name: str, price_cents: int) -> tuple[str, ChatSession]:
    """A lead with a location, hours and a catalog in ``tenant``; its chat token."""
    with tenant_context(tenant):
        location = LocationFactory(time_zone="America/Los_Angeles", region="CA")
        for weekday in range(7):
            LocationHours.objects.create(
                location=location, weekday=weekday, opens_at=time(9), closes_at=time(18)
            )
        ServiceCatalogItemFactory(
            code="tint-sedan-ceramic",
            name="Ceramic tint, sedan",
            price_cents=price_cents,
            duration_minutes=120,
        )
        lead = LeadFactory(location=location, first_name=first_name)
        path = chat_services.chat_links_create(leads=[lead])[lead.pk]
        return path.removeprefix("/c/"), ChatSession.objects.get(lead=lead)


@pytest.fixture
def alpha_chat(tenant_tx):
    assert host_of(tenant_tx) == ALPHA
    return make_chat(tenant_tx, first_name="Alma", price_cents=44900)


@pytest.fixture
def bravo(tenant_tx):
    return ensure_test_tenants()["bravo"]


def communicator(host: str, token: str, *, origin: str | None = None, query: str = ""):
    headers = [(b"host", host.encode())]
    headers.append((b"origin", (origin or f"http://{host}").encode()))
    path = f"/ws/chat/{token}/" + (f"?{query}" if query else "")
    return WebsocketCommunicator(application, path, headers=headers)


async def receive_until(socket, kind: str, timeout: float = 5.0) -> list[dict]:
    """Events up to and including the first of type ``kind``."""
    events = []
    while True:
        event = await socket.receive_json_from(timeout=timeout)
        events.append(event)
        if event["type"] == kind and (
            kind != "message" or event["message"]["role"] != "customer"
        ):
            return events


async def drain(socket, quiet: float = 0.5) -> list[dict]:
    """Every event until the socket has been quiet for ``quiet`` seconds."""
    events = []
    while not await socket.receive_nothing(timeout=quiet):
        events.append(await socket.receive_json_from())
    return events


def run(coroutine_function):
    return async_to_sync(coroutine_function)()


def test_history_then_a_streamed_answer(tenant_tx, alpha_chat):
    token, _session = alpha_chat

    async def scenario():
        socket = communicator(ALPHA, token)
        connected, _ = await socket.connect()
        assert connected
        history = await socket.receive_json_from()
        assert history == {"type": "history", "messages": [], "mode": "assistant"}
        await socket.send_json_to(
            {"type": "message", "text": "How much is ceramic tint?", "client_id": "c1"}
        )
        events = await receive_until(socket, "message")
        await socket.disconnect()
        return events

    events = run(scenario)
    kinds = [e["type"] for e in events]
    assert kinds[0] == "message"
    assert events[0]["message"]["client_id"] == "c1"
    assert "typing" in kinds
    deltas = "".join(e["text"] for e in events if e["type"] == "delta")
    final = events[-1]["message"]
    assert final["role"] == "assistant"
    assert "$449.00" in final["text"]
    assert deltas.strip() == final["text"]
    assert {e["reply_to"] for e in events if e["type"] == "delta"} == {
        events[0]["message"]["id"]
    }


def test_a_socket_answers_while_channels_shared_thread_is_busy(tenant_tx, alpha_chat):
    """Frames and answers never queue behind other work on Channels' one sync thread."""
    token, _session = alpha_chat
    release = threading.Event()

    def hold_the_shared_thread():
        release.wait(timeout=30)

    async def scenario():
        socket = communicator(ALPHA, token)
        await socket.connect()
        await socket.receive_json_from()
        holder = asyncio.ensure_future(sync_to_async(hold_the_shared_thread)())
        await asyncio.sleep(0.1)
        try:
            await socket.send_json_to({"type": "ping"})
            pong = await socket.receive_json_from(timeout=3)
            await socket.send_json_to(
                {
                    "type": "message",
                    "text": "How much is ceramic tint?",
                    "client_id": "c1",
                }
            )
            events = await receive_until(socket, "message", timeout=3)
        finally:
            release.set()
            await holder
        await socket.disconnect()
        return pong, events

    pong, events = run(scenario)
    assert pong == {"type": "pong"}
    assert "$449.00" in events[-1]["message"]["text"]


def test_every_open_page_of_a_session_gets_each_message_once(tenant_tx, alpha_chat):
    token, _session = alpha_chat

    async def scenario():
        sender, other = communicator(ALPHA, token), communicator(ALPHA, token)
        for socket in (sender, other):
            await socket.connect()
            await socket.receive_json_from()
        await sender.send_json_to(
            {"type": "message", "text": "How much is ceramic tint?", "client_id": "c1"}
        )
        await receive_until(sender, "message")
        seen = [await drain(sender), await drain(other)]
        for socket in (sender, other):
            await socket.disconnect()
        return seen

    sender_rest, other_events = run(scenario)
    assert [e for e in sender_rest if e["type"] == "message"] == []
    messages = [e["message"] for e in other_events if e["type"] == "message"]
    assert [(m["role"], m["client_id"]) for m in messages] == [
        ("customer", "c1"),
        ("assistant", None),
    ]
    assert "$449.00" in messages[1]["text"]


def test_a_resend_after_reconnect_is_not_stored_or_answered_twice(
    tenant_tx, alpha_chat
):
    token, session = alpha_chat

    async def scenario():
        socket = communicator(ALPHA, token)
        await socket.connect()
        await socket.receive_json_from()
        await socket.send_json_to({"type": "message", "text": "hi", "client_id": "c1"})
        first = await receive_until(socket, "message")
        await socket.disconnect()
        last_id = first[-1]["message"]["id"]

        again = communicator(ALPHA, token, query=f"after={last_id}")
        await again.connect()
        history = await again.receive_json_from()
        await again.send_json_to({"type": "message", "text": "hi", "client_id": "c1"})
        echo = await again.receive_json_from()
        quiet = await again.receive_nothing(timeout=0.5)
        await again.disconnect()
        return history, echo, quiet

    history, echo, quiet = run(scenario)
    assert history["messages"] == []
    assert echo["message"]["client_id"] == "c1"
    assert quiet
    with tenant_context(tenant_tx):
        assert ChatMessage.objects.filter(session=session).count() == 2


def test_a_token_of_one_brand_is_refused_at_another_brands_host(
    tenant_tx, alpha_chat, bravo
):
    token, _ = alpha_chat

    async def scenario():
        socket = communicator(BRAVO, token)
        connected, _ = await socket.connect()
        await socket.disconnect()
        return connected

    assert run(scenario) is False


def test_unknown_token_unknown_host_and_foreign_origin_are_refused(
    tenant_tx, alpha_chat
):
    token, _ = alpha_chat

    async def attempt(socket):
        connected, _ = await socket.connect()
        await socket.disconnect()
        return connected

    async def scenario():
        results = [await attempt(communicator(ALPHA, "not-a-token"))]
        results.append(
            await attempt(communicator(ALPHA, token, origin="http://evil.example.com"))
        )
        stranger = WebsocketCommunicator(
            application,
            f"/ws/chat/{token}/",
            headers=[
                (b"host", b"nobody.localhost"),
                (b"origin", b"http://nobody.localhost"),
            ],
        )
        results.append(await attempt(stranger))
        return results

    assert run(scenario) == [False, False, False]


def test_two_brands_sockets_at_once_never_see_each_others_data(
    tenant_tx, alpha_chat, bravo
):
    alpha_token, alpha_session = alpha_chat
    bravo_token, bravo_session = make_chat(bravo, first_name="Bruno", price_cents=12300)
    staff = {}
    with tenant_context(tenant_tx):
        staff["alpha"] = get_user_model().objects.create_superuser("alpha-boss")
    with tenant_context(bravo):
        staff["bravo"] = get_user_model().objects.create_superuser("bravo-boss")

    async def converse(socket, text, client_id):
        await socket.send_json_to(
            {"type": "message", "text": text, "client_id": client_id}
        )
        return await receive_until(socket, "message")

    async def scenario():
        a = communicator(ALPHA, alpha_token)
        b = communicator(BRAVO, bravo_token)
        await a.connect()
        await b.connect()
        await a.receive_json_from()
        await b.receive_json_from()
        a_events, b_events = await asyncio.gather(
            converse(a, "How much is ceramic tint?", "a1"),
            converse(b, "How much is ceramic tint?", "b1"),
        )
        # Staff of each brand answer their own customer at the same moment.
        await asyncio.gather(
            in_schema(
                tenant_tx.schema_name,
                lambda: chat_services.staff_reply(
                    session=ChatSession.objects.get(pk=alpha_session.pk),
                    user=staff["alpha"],
                    text="Alpha staff here",
                ),
            ),
            in_schema(
                bravo.schema_name,
                lambda: chat_services.staff_reply(
                    session=ChatSession.objects.get(pk=bravo_session.pk),
                    user=staff["bravo"],
                    text="Bravo staff here",
                ),
            ),
        )
        a_more, b_more = await asyncio.gather(drain(a), drain(b))
        await a.disconnect()
        await b.disconnect()
        return a_events + a_more, b_events + b_more

    a_events, b_events = run(scenario)
    a_text, b_text = str(a_events), str(b_events)
    assert "$449.00" in a_text
    assert "Alpha staff here" in a_text
    assert "$123.00" in b_text
    assert "Bravo staff here" in b_text
    assert "$123.00" not in a_text
    assert "Bravo staff here" not in a_text
    assert "$449.00" not in b_text
    assert "Alpha staff here" not in b_text


def test_the_model_reads_what_staff_wrote_between_a_sockets_turns(
    tenant_tx, alpha_chat, providers, script
):
    """A socket keeps its transcript from turn to turn; what others wrote meanwhile
    (a staff reply, the customer's message while staff had the conversation) is in
    the next request to the model all the same, in order."""
    token, session = alpha_chat
    transport = script(
        [
            anthropic_text_stream("Ceramic tint is $449.00.", 900, 12),
            anthropic_text_stream("Saturday at 10 works.", 950, 9),
        ]
    )
    with tenant_context(tenant_tx):
        boss = get_user_model().objects.create_superuser("alpha-boss")

    async def staff(action, **kwargs):
        await in_schema(
            tenant_tx.schema_name,
            lambda: action(
                session=ChatSession.objects.get(pk=session.pk), user=boss, **kwargs
            ),
        )

    async def say(socket, text, client_id):
        await socket.send_json_to(
            {"type": "message", "text": text, "client_id": client_id}
        )

    async def scenario():
        socket = communicator(ALPHA, token)
        await socket.connect()
        await socket.receive_json_from()
        await say(socket, "How much is ceramic tint?", "c1")
        await receive_until(socket, "message")
        await staff(chat_services.staff_reply, text="We also open on Saturdays.")
        await say(socket, "Is Saturday at 10 free?", "c2")
        # With staff, the message is stored and the assistant stays silent.
        while_human = await drain(socket)
        await staff(chat_services.handback)
        await drain(socket)
        await say(socket, "Then book Saturday please.", "c3")
        answered = await receive_until(socket, "message")
        await socket.disconnect()
        return while_human, answered

    while_human, answered = run(scenario)
    assert "delta" not in [e["type"] for e in while_human]
    assert answered[-1]["message"]["text"] == "Saturday at 10 works."
    assert len(transport.requests) == 2
    transport.assert_done()
    # The API takes turns that alternate: consecutive messages of one side are
    # blocks of one turn.
    sent = [
        (m["role"], [block["text"] for block in m["content"]])
        for m in transport.last.json["messages"]
    ]
    assert sent == [
        ("user", ["How much is ceramic tint?"]),
        (
            "assistant",
            [
                "Ceramic tint is $449.00.",
                "(A staff member of the shop wrote:) We also open on Saturdays.",
            ],
        ),
        ("user", ["Is Saturday at 10 free?", "Then book Saturday please."]),
    ]


def test_an_oversized_frame_closes_the_socket(tenant_tx, alpha_chat, settings):
    token, _ = alpha_chat

    async def scenario():
        socket = communicator(ALPHA, token)
        await socket.connect()
        await socket.receive_json_from()
        await socket.send_to(
            text_data="x" * (settings.CHAT_MESSAGE_MAX_CHARS * 6 + 2000)
        )
        closed = await socket.receive_output(timeout=2)
        await socket.wait()
        return closed

    assert run(scenario) == {"type": "websocket.close", "code": 4009}


def test_too_many_messages_are_refused_with_a_reason(tenant_tx, alpha_chat, settings):
    settings.CHAT_RATE_MESSAGES = 2
    settings.AI_PROVIDER = "scripted"
    token, session = alpha_chat

    async def scenario():
        socket = communicator(ALPHA, token)
        await socket.connect()
        await socket.receive_json_from()
        for index in range(2):
            await socket.send_json_to(
                {"type": "message", "text": "hello", "client_id": f"c{index}"}
            )
            await receive_until(socket, "message")
        await socket.send_json_to(
            {"type": "message", "text": "hello", "client_id": "c9"}
        )
        refused = await receive_until(socket, "error")
        await socket.disconnect()
        return refused[-1]

    refused = run(scenario)
    assert refused["code"] == "rate_limited"
    with tenant_context(tenant_tx):
        assert (
            ChatMessage.objects.filter(
                session=session, role=MessageRole.CUSTOMER
            ).count()
            == 2
        )


def test_a_finished_answer_is_stored_after_the_answers_that_are_starting(
    tenant_tx, alpha_chat, monkeypatch
):
    """The text streams at once; the stored answer waits for another answer's start."""
    monkeypatch.setattr(pacing, "STORE_WAIT_SECONDS", 30)
    token, session = alpha_chat

    def answers_stored():
        with tenant_context(tenant_tx):
            return ChatMessage.objects.filter(
                session=session, role=MessageRole.ASSISTANT
            ).count()

    async def scenario():
        socket = communicator(ALPHA, token)
        await socket.connect()
        await socket.receive_json_from()
        # Another socket's answer, starting.
        other = pacing.answer_start()
        await socket.send_json_to(
            {"type": "message", "text": "How much is ceramic tint?", "client_id": "c1"}
        )
        before = await receive_until(socket, "delta")
        waiting = await drain(socket, quiet=0.5)
        stored_while_waiting = await sync_to_async(answers_stored)()
        other.end()
        after = await receive_until(socket, "message")
        await socket.disconnect()
        return before + waiting, stored_while_waiting, after

    before, stored_while_waiting, after = run(scenario)
    streamed = "".join(e["text"] for e in before if e["type"] == "delta")
    assert "$449.00" in streamed, "the whole text is on the page before the store"
    assert not any(
        e["type"] == "message" and e["message"]["role"] == "assistant" for e in before
    )
    assert stored_while_waiting == 0
    assert after[-1]["message"]["role"] == "assistant"
    assert after[-1]["message"]["text"] == streamed.strip()
    assert answers_stored() == 1


def test_no_answer_is_left_starting(tenant_tx, alpha_chat, settings):
    """Answered, refused or failed, every message's start ends."""
    settings.CHAT_RATE_MESSAGES = 2
    token, _session = alpha_chat

    async def scenario():
        socket = communicator(ALPHA, token)
        await socket.connect()
        await socket.receive_json_from()
        counts = []
        for index in range(2):
            await socket.send_json_to(
                {"type": "message", "text": "hello", "client_id": f"c{index}"}
            )
            await receive_until(socket, "message")
            counts.append(pacing.starting())
        # Empty, then over the rate: refused before any answer.
        await socket.send_json_to({"type": "message", "text": " ", "client_id": "e"})
        await receive_until(socket, "error")
        counts.append(pacing.starting())
        await socket.send_json_to({"type": "message", "text": "hi", "client_id": "r"})
        await receive_until(socket, "error")
        counts.append(pacing.starting())
        await socket.disconnect()
        return counts

    assert run(scenario) == [0, 0, 0, 0]
