"""The chat page in a real browser, against a live server with the offline assistant."""

from __future__ import annotations

import re
from datetime import datetime, time
from typing import Any

import pytest
from django.contrib.auth.hashers import PBKDF2PasswordHasher
from playwright.sync_api import expect

from appointments.models import Appointment, AppointmentStatus
from chat import services as chat_services
from chat.models import ChatMessage, ChatSession, MessageRole
from chat.views import CONTENT_SECURITY_POLICY
from leads.models import Lead
from locations.models import LocationHours
from tests.browser.conftest import Guard, LiveServer
from tests.factories import (
    LeadFactory,
    LocationFactory,
    ServiceCatalogItemFactory,
    SuperUserFactory,
)

pytestmark = pytest.mark.browser

PRICE = "$399.00"
STAFF_PASSWORD = "staff-pass"
HOSTILE = [
    '<img src=x onerror="window.__xss=1">',
    "<script>window.__xss=1</script>",
    '<a href="javascript:window.__xss=1">tap</a> [tap](javascript:window.__xss=1)',
    "![logo](https://evil.example/pixel.png) <img src=https://evil.example/p.png>",
]
# Every socket the page opens goes to a token that does not exist: the server
# refuses the handshake, as a proxy without WebSockets would, and the page has to
# fall back to the REST API.
BREAK_WEBSOCKETS = """
(() => {
  const Native = window.WebSocket;
  window.WebSocket = class extends Native {
    constructor(url, protocols) {
      super(String(url).replace("/ws/chat/", "/ws/chat/broken-"), protocols);
    }
  };
})();
"""

TRACK_WEBSOCKETS = """
(() => {
  const Native = window.WebSocket;
  window.__sockets = [];
  window.WebSocket = class extends Native {
    constructor(url, protocols) {
      super(url, protocols);
      window.__sockets.push(this);
    }
  };
})();
"""


def make_chat() -> tuple[Lead, str]:
    """A lead of a shop open every day 08:00-18:00 that sells ceramic tint; its link."""
    location = LocationFactory(name="Mission Valley", time_zone="America/Los_Angeles")
    for weekday in range(7):
        LocationHours.objects.create(
            location=location, weekday=weekday, opens_at=time(8), closes_at=time(18)
        )
    ServiceCatalogItemFactory(
        code="ceramic-tint",
        name="Ceramic tint",
        category="Window tint",
        price_cents=39900,
        duration_minutes=120,
    )
    lead = LeadFactory(location=location, first_name="Dana")
    return lead, chat_services.chat_links_create(leads=[lead])[lead.pk]


def staff_user(username: str, first_name: str) -> Any:
    """A superuser whose password the server can check: the test settings hash with
    MD5, which the server's settings do not know; a cheap PBKDF2 hash both read."""
    user = SuperUserFactory(username=username, first_name=first_name)
    user.password = PBKDF2PasswordHasher().encode(
        STAFF_PASSWORD, "browsertests", iterations=1000
    )
    user.save(update_fields=["password"])
    return user


def send(page: Any, text: str) -> None:
    box = page.get_by_label("Your message")
    box.fill(text)
    box.press("Enter")


def offered_start(lead: Lead, slot_id: str) -> datetime:
    """When the offered slot ``slot_id`` of the latest offer starts."""
    offers = [
        message.data["slots"]
        for message in ChatMessage.objects.filter(
            session__lead=lead, role=MessageRole.ASSISTANT
        ).order_by("pk")
        if message.data.get("slots")
    ]
    slot = next(s for s in offers[-1] if s["id"] == slot_id)
    return datetime.fromisoformat(slot["start"])


def assert_clean(guard: Guard) -> None:
    assert guard.outside_requests == []
    assert guard.page_errors == []
    assert [e for e in guard.console_errors if "Content Security Policy" in e] == []


def test_a_customer_gets_the_catalog_price_and_books_an_offered_time(
    tenant_tx, server: LiveServer, open_page, guard
):
    lead, path = make_chat()
    page = open_page()

    response = page.goto(server.url(path))

    assert response.status == 200
    expect(page.get_by_role("heading", name="Hi Dana")).to_be_visible()
    expect(page.locator(".chat-location-name")).to_have_text("Mission Valley")
    expect(page.locator("#chat")).to_have_attribute("data-connection", "live")

    send(page, "How much is ceramic tint?")
    expect(page.locator(".msg-customer[data-id] .msg-text")).to_have_text(
        ["How much is ceramic tint?"]
    )
    answer = page.locator(".msg-assistant[data-id]").last
    expect(answer).to_contain_text(f"Ceramic tint is {PRICE}")
    expect(page.locator(".msg-streaming")).to_have_count(0)
    expect(page.locator("#typing")).to_be_hidden()

    send(page, "Can I book ceramic tint tomorrow?")
    slot = page.locator(".slots button.slot:enabled").first
    expect(slot).to_be_visible()
    label, slot_id = slot.text_content(), slot.get_attribute("data-slot")
    slot.click()

    card = page.locator(".appt-booked")
    expect(card).to_be_visible()
    expect(card.locator(".appt-title")).to_have_text("You're booked")
    expect(card.locator(".appt-service")).to_have_text("Ceramic tint")
    expect(card.locator(".appt-when")).to_have_text(label)
    expect(card.locator(".appt-price")).to_have_text(PRICE)
    expect(page.locator("button.slot:enabled")).to_have_count(0)
    expect(page.locator("#chat-upcoming")).to_contain_text(label)
    expect(page.locator(".msg-pending")).to_have_count(0)
    booked = Appointment.objects.filter(lead=lead, status=AppointmentStatus.BOOKED)
    assert booked.count() == 1
    assert booked.get().starts_at == offered_start(lead, slot_id)
    assert Appointment.objects.filter(lead=lead).count() == 1
    assert_clean(guard)


def test_a_staff_reply_from_the_admin_appears_live(
    tenant_tx, server: LiveServer, open_page, guard
):
    lead, path = make_chat()
    staff_user("sam", "Sam")
    page = open_page()
    page.goto(server.url(path))
    expect(page.locator("#chat")).to_have_attribute("data-connection", "live")

    # Shift+Enter is a new line, Enter sends.
    box = page.get_by_label("Your message")
    box.press_sequentially("Can I talk to a person?")
    box.press("Shift+Enter")
    box.press_sequentially("It's about my warranty.")
    box.press("Enter")
    expect(page.locator(".msg-customer[data-id] .msg-text")).to_have_text(
        ["Can I talk to a person?\nIt's about my warranty."]
    )
    expect(page.locator(".msg-system")).to_contain_text("will reply here")
    expect(page.locator("#mode-note")).to_be_visible()
    session = ChatSession.objects.get(lead=lead)
    assert session.mode == "human"

    admin = open_page(viewport={"width": 1280, "height": 900})
    change = f"/admin/chat/chatsession/{session.pk}/change/"
    admin.goto(server.url(f"/admin/login/?next={change}"))
    admin.locator("#id_username").fill("sam")
    admin.locator("#id_password").fill(STAFF_PASSWORD)
    admin.locator("input[type=submit]").click()
    expect(admin).to_have_url(re.compile(re.escape(change) + "$"))
    admin.locator("#chat-reply-form textarea[name=text]").fill(
        "Hi Dana, Sam here.\nBring the receipt <b>please</b>."
    )
    admin.locator("#chat-reply-form input[type=submit]").click()
    expect(admin.locator(".messagelist")).to_contain_text("Reply sent.")

    reply = page.locator(".msg-staff")
    expect(reply.locator(".msg-author")).to_have_text("Sam from Mission Valley")
    expect(reply.locator(".msg-text")).to_have_text(
        "Hi Dana, Sam here.\nBring the receipt <b>please</b>."
    )
    expect(page.locator("#mode-note")).to_be_visible()
    assert_clean(guard)


def store_hostile(lead: Lead) -> None:
    """Assistant and staff messages, and a slot and a card, made of markup."""
    session = chat_services.session_for_lead(lead=lead)
    staff = SuperUserFactory(username="eve", first_name=HOSTILE[0])
    for text in HOSTILE:
        ChatMessage.objects.create(
            session=session, role=MessageRole.ASSISTANT, body=text
        )
    ChatMessage.objects.create(
        session=session,
        role=MessageRole.ASSISTANT,
        body="Times:",
        data={
            "slots": [{"id": "S1", "label": HOSTILE[0], "service": "x", "start": "x"}],
            "appointment": {"service": HOSTILE[1], "label": HOSTILE[3]},
        },
    )
    ChatMessage.objects.create(
        session=session, role=MessageRole.STAFF, body="\n".join(HOSTILE), author=staff
    )


def assert_literal(page: Any, copies: int = 1) -> None:
    """Each stored set of ``store_hostile`` reads as text, ``copies`` times."""
    expect(page.locator(".msg-assistant .msg-text")).to_have_text(
        [*HOSTILE, "Times:"] * copies
    )
    expect(page.locator(".msg-staff .msg-text")).to_have_text(
        ["\n".join(HOSTILE)] * copies
    )
    expect(page.locator(".msg-staff .msg-author")).to_have_text(
        [f"{HOSTILE[0]} from Mission Valley"] * copies
    )
    expect(page.locator("button.slot")).to_have_text([HOSTILE[0]] * copies)
    expect(page.locator(".appt-service")).to_have_text([HOSTILE[1]] * copies)
    expect(page.locator(".appt-when")).to_have_text([HOSTILE[3]] * copies)
    expect(page.locator("#messages :is(img, script, a, b)")).to_have_count(0)
    assert page.evaluate("typeof window.__xss") == "undefined"


def test_markup_in_messages_is_shown_as_text_and_loads_nothing(
    tenant_tx, server: LiveServer, open_page, guard
):
    lead, path = make_chat()
    store_hostile(lead)
    url = server.url(path)

    # Stored before the page opened: rendered by the server.
    page = open_page(init_script=TRACK_WEBSOCKETS)
    response = page.goto(url)
    assert response.headers["content-security-policy"] == CONTENT_SECURITY_POLICY
    assert response.headers["referrer-policy"] == "no-referrer"
    expect(page.locator("#chat")).to_have_attribute("data-connection", "live")
    assert_literal(page)

    # Stored while it is open, fetched on reconnecting: rendered by the script.
    seen = ChatMessage.objects.filter(session__lead=lead).latest("pk").pk
    store_hostile(lead)
    page.evaluate("window.__sockets.at(-1).close()")
    assert_literal(page, copies=2)
    assert page.evaluate("window.__sockets.length") == 2
    assert page.evaluate("window.__sockets.at(-1).url").endswith(f"?after={seen}")

    # Stored while a page without a socket polls: rendered by the script.
    polling = open_page(init_script=BREAK_WEBSOCKETS)
    polling.goto(url)
    expect(polling.locator("#chat")).to_have_attribute("data-connection", "polling")
    store_hostile(lead)
    assert_literal(polling, copies=3)

    # And all of it again from the server.
    page.reload()
    assert_literal(page, copies=3)
    assert_clean(guard)


def test_without_websockets_the_page_quotes_and_books_over_rest(
    tenant_tx, server: LiveServer, open_page, guard
):
    lead, path = make_chat()
    page = open_page(init_script=BREAK_WEBSOCKETS)
    page.goto(server.url(path))
    expect(page.locator("#chat")).to_have_attribute("data-connection", "polling")

    send(page, "How much is ceramic tint?")
    expect(page.locator(".msg-assistant[data-id]").last).to_contain_text(
        f"Ceramic tint is {PRICE}"
    )
    send(page, "Can I book ceramic tint tomorrow?")
    slot = page.locator(".slots button.slot:enabled").first
    expect(slot).to_be_visible()
    slot_id = slot.get_attribute("data-slot")
    slot.click()

    expect(page.locator(".appt-booked .appt-price")).to_have_text(PRICE)
    # The next poll brings nothing twice.
    with page.expect_response(
        lambda response: (
            "/messages?after=" in response.url and response.request.method == "GET"
        )
    ):
        pass
    expect(page.locator(".msg-customer[data-id]")).to_have_count(3)
    expect(page.locator(".appt-booked")).to_have_count(1)
    expect(page.locator("#typing")).to_be_hidden()
    booked = Appointment.objects.get(lead=lead, status=AppointmentStatus.BOOKED)
    assert booked.starts_at == offered_start(lead, slot_id)
    assert_clean(guard)


def test_a_refused_message_says_why_and_gives_the_words_back(
    tenant_tx, server: LiveServer, open_page, guard
):
    lead, path = make_chat()
    page = open_page()
    page.goto(server.url(path))
    expect(page.locator("#chat")).to_have_attribute("data-connection", "live")
    box = page.get_by_label("Your message")
    error = page.locator("#chat-error")

    # The composer holds at most CHAT_MESSAGE_MAX_CHARS characters.
    box.fill("x" * 1001)
    expect(box).to_have_value("x" * 1000)
    # Longer text from a page without the limit (an old page, another client) is
    # refused by the service, and by the socket past its frame limit.
    box.evaluate("element => element.removeAttribute('maxlength')")
    send(page, "x" * 1001)
    expect(error).to_contain_text("too long; keep it under 1000 characters")
    expect(box).to_have_value("x" * 1001)

    # Over the socket's frame limit the server drops the socket: the page stops
    # resending, says why, keeps the words, and reconnects.
    send(page, "y" * 8000)
    expect(error).to_contain_text("shorten it")
    expect(box).to_have_value("y" * 8000)
    expect(page.locator("#chat")).to_have_attribute("data-connection", "live")

    send(page, "How much is ceramic tint?")
    expect(error).to_be_hidden()
    expect(page.locator(".msg-assistant[data-id]").last).to_contain_text(PRICE)
    expect(page.locator(".msg-customer")).to_have_count(1)
    assert (
        ChatMessage.objects.filter(session__lead=lead, role=MessageRole.CUSTOMER)
        .values_list("body", flat=True)
        .get()
        == "How much is ceramic tint?"
    )
    assert_clean(guard)
