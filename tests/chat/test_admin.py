"""Conversations in the admin: the waiting queue, replies, take over and hand back, scope."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.contrib.auth.models import Permission
from django.utils import timezone

from chat import services as chat_services
from chat.models import ChatMessage, ChatSession, MessageRole, SessionMode
from leadorch.errors import ApplicationError
from tests.chat.conftest import say
from tests.factories import (
    LeadFactory,
    LocationFactory,
    StaffMembershipFactory,
    SuperUserFactory,
    UserFactory,
)

LIST = "/admin/chat/chatsession/"


@pytest.fixture
def boss_client(tenant_client, clock):
    tenant_client.force_login(SuperUserFactory(username="boss"))
    return tenant_client


@pytest.fixture
def elsewhere(tenant):
    return LocationFactory(name="Elsewhere")


@pytest.fixture
def staff_client(tenant_client, store, clock):
    staff = UserFactory(username="store094", is_staff=True)
    staff.user_permissions.set(
        Permission.objects.filter(
            codename__in=["view_chatsession", "change_chatsession"]
        )
    )
    StaffMembershipFactory(user=staff, location=store)
    tenant_client.force_login(staff)
    return tenant_client


def waiting_session(location, first_name: str, minutes_ago: int) -> ChatSession:
    session = chat_services.session_for_lead(
        lead=LeadFactory(location=location, first_name=first_name)
    )
    chat_services.handoff_request(session=session, reason="asked")
    ChatSession.objects.filter(pk=session.pk).update(
        waiting_since=timezone.now() - timedelta(minutes=minutes_ago)
    )
    return session


def test_the_queue_lists_waiting_customers_first_oldest_first(
    boss_client, store, session
):
    waiting_session(store, "Newer", 5)
    waiting_session(store, "Older", 30)
    say(session, "hello")
    response = boss_client.get(LIST)
    names = [str(s.lead.first_name) for s in response.context["cl"].result_list]
    assert names == ["Older", "Newer", "Maria"]
    assert "30\xa0minutes" in response.content.decode()


def test_a_staff_reply_is_stored_ends_the_wait_and_stops_the_assistant(
    boss_client, store, session
):
    say(session, "Can I talk to a person?")
    response = boss_client.post(
        f"{LIST}{session.pk}/reply/", {"text": "Hi Maria, Sam from the shop here."}
    )
    assert response.status_code == 302
    reply = ChatMessage.objects.get(session=session, role=MessageRole.STAFF)
    assert reply.body == "Hi Maria, Sam from the shop here."
    assert reply.author.username == "boss"
    session.refresh_from_db()
    assert session.mode == SessionMode.HUMAN
    assert session.waiting_since is None
    assert say(session, "thanks!") is None


def test_take_over_and_hand_back(boss_client, session):
    boss_client.post(f"{LIST}{session.pk}/mode/human/")
    session.refresh_from_db()
    assert (session.mode, session.waiting_since) == (SessionMode.HUMAN, None)
    boss_client.post(f"{LIST}{session.pk}/mode/assistant/")
    session.refresh_from_db()
    assert session.mode == SessionMode.ASSISTANT
    assert say(session, "How much is ceramic tint?").provider == "scripted"


def test_the_change_page_shows_the_transcript_escaped(boss_client, session):
    say(session, "<script>alert(1)</script> how much is ceramic tint?")
    page = boss_client.get(f"{LIST}{session.pk}/change/").content.decode()
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in page
    assert "<script>alert(1)</script>" not in page
    assert "$449.00" in page
    assert 'action="/admin/chat/chatsession/' in page


def test_get_on_the_reply_url_changes_nothing(boss_client, session):
    response = boss_client.get(f"{LIST}{session.pk}/reply/")
    assert response.status_code == 405
    assert not ChatMessage.objects.filter(role=MessageRole.STAFF).exists()


def test_location_staff_see_and_answer_only_their_locations(
    staff_client, store, elsewhere
):
    mine = waiting_session(store, "Mine", 5)
    theirs = waiting_session(elsewhere, "Theirs", 50)
    listed = staff_client.get(LIST).context["cl"].result_list
    assert [s.pk for s in listed] == [mine.pk]
    assert staff_client.get(f"{LIST}{theirs.pk}/change/").status_code in (302, 404)
    assert (
        staff_client.post(f"{LIST}{theirs.pk}/reply/", {"text": "hi"}).status_code
        == 404
    )
    assert staff_client.post(f"{LIST}{theirs.pk}/mode/assistant/").status_code == 404
    assert not ChatMessage.objects.filter(
        session=theirs, role=MessageRole.STAFF
    ).exists()
    staff_client.post(f"{LIST}{mine.pk}/reply/", {"text": "On it"})
    assert ChatMessage.objects.filter(session=mine, role=MessageRole.STAFF).exists()


def test_the_reply_service_refuses_staff_of_another_location(store, elsewhere, clock):
    staff = UserFactory(username="other")
    StaffMembershipFactory(user=staff, location=elsewhere)
    session = waiting_session(store, "Mine", 5)
    with pytest.raises(ApplicationError, match="your own locations"):
        chat_services.staff_reply(session=session, user=staff, text="hello")
