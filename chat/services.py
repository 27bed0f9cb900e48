"""Chat sessions and their links."""

from __future__ import annotations

import hashlib
import secrets
from datetime import timedelta

from django.conf import settings
from django.utils import timezone

from chat.models import ChatLink, ChatSession
from leads.models import Lead

TOKEN_BYTES = 24  # 192 bits


def token_hash(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def chat_link_resolve(*, token: str) -> ChatSession | None:
    """The session a token opens, or None: unknown, expired, revoked, or of a revoked session."""
    if not token or len(token) > 100:
        return None
    link = (
        ChatLink.objects.select_related("session__lead")
        .filter(
            token_hash=token_hash(token),
            revoked_at__isnull=True,
            expires_at__gt=timezone.now(),
        )
        .first()
    )
    if link is None or link.session.revoked_at is not None:
        return None
    ChatLink.objects.filter(pk=link.pk).update(last_used_at=timezone.now())
    return link.session


def chat_links_revoke(*, session: ChatSession) -> int:
    """Revoke every link of ``session``; returns how many were live."""
    return ChatLink.objects.filter(session=session, revoked_at__isnull=True).update(
        revoked_at=timezone.now()
    )


def chat_links_create(
    *, leads: list[Lead], ttl: timedelta | None = None
) -> dict[int, str]:
    """A new link for each of ``leads`` in a few queries; returns ``{lead id: "/c/<token>"}``."""
    if not leads:
        return {}
    sessions = {
        session.lead_id: session
        for session in ChatSession.objects.filter(lead__in=leads)
    }
    missing = [ChatSession(lead=lead) for lead in leads if lead.pk not in sessions]
    if missing:
        ChatSession.objects.bulk_create(missing, ignore_conflicts=True)
        sessions = {
            session.lead_id: session
            for session in ChatSession.objects.filter(lead__in=leads)
        }
    expires_at = timezone.now() + (ttl or timedelta(days=settings.CHAT_LINK_TTL_DAYS))
    tokens = {lead.pk: secrets.token_urlsafe(TOKEN_BYTES) for lead in leads}
    ChatLink.objects.bulk_create(
        ChatLink(
            session=sessions[lead_id],
            token_hash=token_hash(token),
            expires_at=expires_at,
        )
        for lead_id, token in tokens.items()
    )
    return {lead_id: f"/c/{token}" for lead_id, token in tokens.items()}
