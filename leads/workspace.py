"""What a lead's page in the admin shows, read in a fixed number of queries.

The page gathers rows of several apps (touch points, messages, the chat,
appointments); each list is one query with its joins, whatever its length.
"""

from __future__ import annotations

from dataclasses import dataclass

from appointments.models import Appointment
from chat.models import ChatMessage, ChatSession
from leads.models import Lead, LeadEvent
from messaging.models import OutboundMessage
from touchpoints.models import CadenceEnrollment, TouchPoint

# Longest lists on the page; older rows stay in their own admin lists.
PAGE_ROWS = 200


@dataclass(frozen=True)
class LeadPage:
    lead: Lead
    events: list[LeadEvent]
    enrollment: CadenceEnrollment | None
    touchpoints: list[TouchPoint]
    messages: list[OutboundMessage]
    chat_session: ChatSession | None
    transcript: list[ChatMessage]
    appointments: list[Appointment]

    @property
    def follow_up(self) -> str:
        if self.enrollment is None:
            return "not started"
        label = self.enrollment.get_status_display().lower()
        if self.enrollment.stop_reason:
            label += f" ({self.enrollment.get_stop_reason_display().lower()})"
        return label

    @property
    def can_pause(self) -> bool:
        return self.enrollment is not None and self.enrollment.status == "active"

    @property
    def can_resume(self) -> bool:
        return self.enrollment is not None and self.enrollment.status == "paused"


def lead_page(*, lead: Lead) -> LeadPage:
    """Everything the lead's page lists: eight queries, however long the history."""
    events = list(
        LeadEvent.objects.filter(lead=lead)
        .select_related("actor")
        .order_by("-created_at", "-pk")[:PAGE_ROWS]
    )
    enrollment = (
        CadenceEnrollment.objects.filter(lead=lead).select_related("cadence").first()
    )
    touchpoints = list(
        TouchPoint.objects.filter(lead=lead)
        .select_related("step", "outbound_message")
        .order_by("due_at", "pk")[:PAGE_ROWS]
    )
    messages = list(
        OutboundMessage.objects.filter(lead=lead).order_by("-created_at", "-pk")[
            :PAGE_ROWS
        ]
    )
    chat_session = ChatSession.objects.filter(lead=lead).first()
    transcript = (
        list(
            ChatMessage.objects.filter(session=chat_session)
            .select_related("author")
            .order_by("pk")[:PAGE_ROWS]
        )
        if chat_session
        else []
    )
    appointments = list(
        Appointment.objects.filter(lead=lead)
        .select_related("service", "location")
        .order_by("-starts_at")
    )
    return LeadPage(
        lead=lead,
        events=events,
        enrollment=enrollment,
        touchpoints=touchpoints,
        messages=messages,
        chat_session=chat_session,
        transcript=transcript,
        appointments=appointments,
    )
