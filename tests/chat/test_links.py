"""Chat links: unguessable, stored only as a hash, expiring and revocable."""

from __future__ import annotations

from datetime import timedelta

import time_machine
from django.utils import timezone

from chat import services
from chat.models import ChatLink, ChatSession
from tests.factories import LeadFactory


def test_a_link_opens_its_leads_session_and_only_its_hash_is_stored(tenant):
    lead, other = LeadFactory(), LeadFactory()

    links = services.chat_links_create(leads=[lead, other])

    token = links[lead.pk].removeprefix("/c/")
    assert len(token) >= 32
    assert services.chat_link_resolve(token=token) == ChatSession.objects.get(lead=lead)
    stored = ChatLink.objects.get(session__lead=lead)
    assert stored.token_hash == services.token_hash(token)
    assert token not in stored.token_hash
    assert stored.last_used_at is not None
    # a second link for the same lead joins the same session
    again = services.chat_links_create(leads=[lead])[lead.pk].removeprefix("/c/")
    assert again != token
    assert ChatSession.objects.filter(lead=lead).count() == 1


def test_unknown_expired_and_revoked_links_open_nothing(tenant):
    lead = LeadFactory()
    token = services.chat_links_create(leads=[lead], ttl=timedelta(days=1))[
        lead.pk
    ].removeprefix("/c/")

    assert services.chat_link_resolve(token="not-a-token") is None
    assert services.chat_link_resolve(token="") is None
    assert services.chat_link_resolve(token="x" * 500) is None
    with time_machine.travel(timezone.now() + timedelta(days=2)):
        assert services.chat_link_resolve(token=token) is None

    session = ChatSession.objects.get(lead=lead)
    assert services.chat_links_revoke(session=session) == 1
    assert services.chat_link_resolve(token=token) is None


def test_revoking_the_session_closes_every_link(tenant):
    lead = LeadFactory()
    token = services.chat_links_create(leads=[lead])[lead.pk].removeprefix("/c/")
    ChatSession.objects.filter(lead=lead).update(revoked_at=timezone.now())

    assert services.chat_link_resolve(token=token) is None
