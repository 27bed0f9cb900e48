"""Chat sessions and the links that open them."""

from __future__ import annotations

import uuid

from django.db import models
from django.db.models import Q

from leadorch.models import BaseModel


class SessionMode(models.TextChoices):
    ASSISTANT = "assistant", "Assistant"
    HUMAN = "human", "Human"


class ChatSession(BaseModel):
    """One conversation per lead."""

    public_id = models.UUIDField(default=uuid.uuid4, unique=True, editable=False)
    lead = models.OneToOneField(
        "leads.Lead", on_delete=models.CASCADE, related_name="chat_session"
    )
    mode = models.CharField(
        max_length=16, choices=SessionMode, default=SessionMode.ASSISTANT
    )
    revoked_at = models.DateTimeField(
        null=True,
        blank=True,
        help_text="Every link of a revoked session stops working.",
    )

    class Meta:
        constraints = [
            models.CheckConstraint(
                condition=Q(mode__in=SessionMode.values), name="chat_session_mode_valid"
            ),
        ]

    def __str__(self) -> str:
        return f"Chat with {self.lead}"


class ChatLink(models.Model):
    """A link to a session: an unguessable token, kept only as its SHA-256, that expires."""

    session = models.ForeignKey(
        ChatSession, on_delete=models.CASCADE, related_name="links"
    )
    token_hash = models.CharField(max_length=64, unique=True)
    created_at = models.DateTimeField(auto_now_add=True)
    expires_at = models.DateTimeField()
    revoked_at = models.DateTimeField(null=True, blank=True)
    last_used_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ("-created_at",)

    def __str__(self) -> str:
        return f"Link to {self.session} until {self.expires_at:%Y-%m-%d}"
