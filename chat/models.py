"""Chat sessions and the links that open them."""

from __future__ import annotations

import uuid
from decimal import Decimal

from django.conf import settings
from django.db import models
from django.db.models import Q
from django.utils import timezone

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
    # Set while the customer waits for a person: the queue's order and waiting time.
    waiting_since = models.DateTimeField(null=True, blank=True, db_index=True)
    handoff_reason = models.CharField(max_length=200, blank=True)
    # The channel the customer last wrote on: staff replies go back the same way.
    channel = models.CharField(max_length=8, default="web")
    # Slots the assistant offered last (see chat.ai.tools): only these can be booked.
    offered_slots = models.JSONField(default=list, blank=True)
    # The customer message the offer answered; a booking needs a later message (the "yes").
    offered_for_message_id = models.BigIntegerField(null=True, blank=True)
    # The customer message after which the assistant asked to confirm a cancellation.
    cancel_offered_for_message_id = models.BigIntegerField(null=True, blank=True)
    last_message_at = models.DateTimeField(null=True, blank=True)
    # Running totals for the budgets and the rate limit, kept with each message so
    # that no answer has to count the conversation.
    customer_messages = models.PositiveIntegerField(default=0, editable=False)
    assistant_tokens = models.PositiveBigIntegerField(default=0, editable=False)
    rate_window_start = models.DateTimeField(null=True, blank=True, editable=False)
    rate_window_messages = models.PositiveSmallIntegerField(default=0, editable=False)

    class Meta:
        verbose_name = "conversation"
        constraints = [
            models.CheckConstraint(
                condition=Q(mode__in=SessionMode.values), name="chat_session_mode_valid"
            ),
            models.CheckConstraint(
                condition=Q(mode="human") | Q(waiting_since__isnull=True),
                name="chat_session_waiting_only_when_human",
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


class MessageRole(models.TextChoices):
    CUSTOMER = "customer", "Customer"
    ASSISTANT = "assistant", "Assistant"
    STAFF = "staff", "Staff"
    SYSTEM = "system", "System"


class MessageChannel(models.TextChoices):
    WEB = "web", "Chat page"
    SMS = "sms", "SMS"


# A page's id for a message it sent: a resend is the same message.
CLIENT_ID_CONSTRAINT = "chat_message_unique_client_id"


class ChatMessage(models.Model):
    """One message of a conversation, in order.

    Assistant messages record which provider and model answered, the tokens
    they used, what they cost and how long the answer took; ``tool_calls`` keeps
    every tool the assistant ran for this answer, with its result, and
    ``fallbacks`` the providers that failed before one answered.
    """

    session = models.ForeignKey(
        ChatSession, on_delete=models.CASCADE, related_name="messages"
    )
    role = models.CharField(max_length=16, choices=MessageRole)
    channel = models.CharField(
        max_length=8, choices=MessageChannel, default=MessageChannel.WEB
    )
    body = models.TextField()
    # The sender's own id for the message: a resend after a reconnect is not stored twice.
    client_id = models.CharField(max_length=64, blank=True)
    author = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="+",
    )
    # What the page shows with the text: offered slots, a booking confirmation.
    data = models.JSONField(default=dict, blank=True)
    provider = models.CharField(max_length=32, blank=True)
    model = models.CharField(max_length=100, blank=True)
    input_tokens = models.PositiveIntegerField(default=0)
    output_tokens = models.PositiveIntegerField(default=0)
    cost = models.DecimalField(max_digits=12, decimal_places=6, default=Decimal(0))
    latency_ms = models.PositiveIntegerField(null=True, blank=True)
    tool_calls = models.JSONField(default=list, blank=True)
    fallbacks = models.JSONField(default=list, blank=True)
    created_at = models.DateTimeField(default=timezone.now, db_index=True)

    class Meta:
        ordering = ("session", "id")
        constraints = [
            models.CheckConstraint(
                condition=Q(role__in=MessageRole.values), name="chat_message_role_valid"
            ),
            models.CheckConstraint(
                condition=Q(channel__in=MessageChannel.values),
                name="chat_message_channel_valid",
            ),
            models.UniqueConstraint(
                fields=["session", "client_id"],
                condition=~Q(client_id=""),
                name=CLIENT_ID_CONSTRAINT,
            ),
        ]
        indexes = [
            # The daily spend cap sums today's assistant costs.
            models.Index(
                fields=["created_at"],
                condition=Q(role="assistant"),
                name="chat_message_assistant_day",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.get_role_display()}: {self.body[:40]}"
