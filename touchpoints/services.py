"""The follow-up cadence: starting it for a lead, stopping, pausing and resuming it, and its templates."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from django.core.exceptions import ValidationError
from django.db import transaction
from django.template import Context, Template, TemplateSyntaxError
from django.utils import timezone

from leadorch import sql
from leadorch.errors import ApplicationError
from leadorch.phones import format_phone
from leadorch.tasks import enqueue_on_commit
from leads import services as lead_services
from leads.models import Lead
from messaging.models import Channel, InboundMessage
from touchpoints.models import (
    OPEN_TOUCHPOINT_STATUSES,
    Cadence,
    CadenceEnrollment,
    CadenceStep,
    EnrollmentStatus,
    StopReason,
    TouchPoint,
    TouchPointStatus,
)

# The default cadence: 13 touches over 30 days, the first SMS and email at once.
# (position, channel, minutes after arrival, subject, template)
DEFAULT_STEPS: list[tuple[int, str, int, str, str]] = [
    (1, Channel.SMS, 0, "",
     "Hi {{ first_name|default:'there' }}, thanks for your quote request at {{ location }}! "
     "Ask us anything or pick a time here: {{ chat_link }} {{ opt_out }}"),
    (2, Channel.EMAIL, 0, "Your quote request at {{ location }}",
     "Hi {{ first_name|default:'there' }},\n\nThanks for asking {{ location }} for a quote"
     "{% if vehicle %} for your {{ vehicle }}{% endif %}. You can see prices, ask questions and book a time "
     "that suits you here:\n\n{{ chat_link }}\n\nOr call us at {{ location_phone }}.\n\n{{ location }}"),
    (3, Channel.SMS, 60, "",
     "{{ location }}: still thinking about your quote{% if vehicle %} for the {{ vehicle }}{% endif %}? "
     "Prices and open times: {{ chat_link }} {{ opt_out }}"),
    (4, Channel.EMAIL, 1440, "Questions about your {{ vehicle|default:'vehicle' }}?",
     "Hi {{ first_name|default:'there' }},\n\nMost people ask about film shades, heat rejection and warranty. "
     "Our assistant answers with this location's prices and can book you in:\n\n{{ chat_link }}\n\n{{ location }}"),
    (5, Channel.SMS, 2880, "",
     "Hi {{ first_name|default:'there' }}, {{ location }} has openings this week. Want one? {{ chat_link }} {{ opt_out }}"),
    (6, Channel.EMAIL, 4320, "Openings this week at {{ location }}",
     "Hi {{ first_name|default:'there' }},\n\nWe still have openings this week. Pick a time here:\n\n"
     "{{ chat_link }}\n\nQuestions? Call {{ location_phone }}.\n\n{{ location }}"),
    (7, Channel.SMS, 7200, "",
     "{{ location }}: your quote is still here when you're ready: {{ chat_link }} {{ opt_out }}"),
    (8, Channel.EMAIL, 10080, "Still interested in your quote?",
     "Hi {{ first_name|default:'there' }},\n\nJust checking in on your quote request. If the timing was off, "
     "you can book any day that works:\n\n{{ chat_link }}\n\n{{ location }}"),
    (9, Channel.SMS, 14400, "",
     "Hi {{ first_name|default:'there' }}, any questions about your quote? Reply here or visit {{ chat_link }} {{ opt_out }}"),
    (10, Channel.EMAIL, 20160, "Your {{ location }} quote",
     "Hi {{ first_name|default:'there' }},\n\nYour quote request is still open. Book online or ask a question:\n\n"
     "{{ chat_link }}\n\n{{ location }} - {{ location_phone }}"),
    (11, Channel.SMS, 25920, "",
     "{{ location }}: we'd love to take care of your {{ vehicle|default:'vehicle' }}. {{ chat_link }} {{ opt_out }}"),
    (12, Channel.EMAIL, 33120, "Should we close your quote request?",
     "Hi {{ first_name|default:'there' }},\n\nWe haven't heard back, so we'll close your request soon. "
     "If you'd still like a time, it takes a minute:\n\n{{ chat_link }}\n\n{{ location }}"),
    (13, Channel.SMS, 43200, "",
     "Last note from {{ location }}: your quote is open until you need it. {{ chat_link }} {{ opt_out }}"),
]  # fmt: skip

SMS_OPT_OUT_LINE = "Reply STOP to opt out."


# --- templates ----------------------------------------------------------------------------


@dataclass(frozen=True)
class Rendered:
    subject: str
    body: str


def template_context(
    *, lead: Lead, chat_link: str, channel: str, brand: str
) -> dict[str, Any]:
    location = lead.location
    return {
        "first_name": lead.first_name,
        "vehicle": lead.vehicle,
        "location": location.name,
        "location_phone": format_phone(location.phone),
        "chat_link": chat_link,
        "brand": brand,
        "opt_out": SMS_OPT_OUT_LINE if channel == Channel.SMS else "",
    }


SAMPLE_CONTEXT = {
    "first_name": "Jordan",
    "vehicle": "2018 Honda Civic EX",
    "location": "Tint World - Store094",
    "location_phone": "(619) 555-0194",
    "chat_link": "https://tintworld.example.com/c/sample-token",
    "brand": "Tint World",
    "opt_out": SMS_OPT_OUT_LINE,
}


def template_validate(source: str) -> str:
    """Compile and render ``source`` against a sample lead; raise ValidationError with the template's own error."""
    try:
        rendered = Template(source).render(Context(SAMPLE_CONTEXT, autoescape=False))
    except TemplateSyntaxError as error:
        raise ValidationError(f"The template does not compile: {error}") from error
    except Exception as error:  # a filter or tag failing at render time
        raise ValidationError(
            f"The template fails when rendered: {error.__class__.__name__}: {error}"
        ) from error
    return rendered


def step_render(
    *,
    step: CadenceStep,
    context: dict[str, Any],
    cache: dict[int, tuple[Template, Template]] | None = None,
) -> Rendered:
    """Render a step for one lead; compiled templates are reused through ``cache``."""
    compiled = cache.get(step.pk) if cache is not None else None
    if compiled is None:
        compiled = (Template(step.subject), Template(step.template))
        if cache is not None:
            cache[step.pk] = compiled
    subject_template, body_template = compiled
    context_object = Context(context, autoescape=False)
    return Rendered(
        subject=" ".join(subject_template.render(context_object).split()),
        body=body_template.render(context_object).strip(),
    )


# --- cadences -------------------------------------------------------------------------------


@transaction.atomic
def cadence_default_ensure() -> Cadence:
    """The brand's default cadence; the 13-step one is created when the brand has none."""
    default = Cadence.objects.filter(is_default=True).first()
    if default is not None:
        return default
    cadence = Cadence.objects.create(name="Website quote follow-up", is_default=True)
    CadenceStep.objects.bulk_create(
        CadenceStep(
            cadence=cadence,
            position=p,
            channel=c,
            delay_minutes=d,
            subject=s,
            template=t,
        )
        for p, c, d, s, t in DEFAULT_STEPS
    )
    return cadence


def cadence_start(
    *, lead: Lead, cadence: Cadence | None = None, now: datetime | None = None
) -> CadenceEnrollment | None:
    """Enroll ``lead`` and schedule one touch point per step from its arrival time.

    Idempotent: a lead already enrolled keeps its enrollment. Does nothing for a
    closed lead. Queues the processing of the steps due at once, after commit.
    """
    if not lead.is_open:
        return None
    now = now or timezone.now()
    with transaction.atomic():
        cadence = cadence or cadence_default_ensure()
        enrollment, created = CadenceEnrollment.objects.get_or_create(
            lead=lead, defaults={"cadence": cadence, "started_at": now}
        )
        if not created:
            return enrollment
        # Delays count from the start, so a lead that waited for a worker does not get several touches at once.
        TouchPoint.objects.bulk_create(
            [
                TouchPoint(
                    lead=lead,
                    step=step,
                    channel=step.channel,
                    due_at=now + timedelta(minutes=step.delay_minutes),
                )
                for step in cadence.steps.order_by("position")
            ],
            ignore_conflicts=True,
        )
        enqueue_on_commit("touchpoints.tasks.touchpoints_process_lead", lead_id=lead.pk)
    return enrollment


def cadence_stop(*, lead: Lead, reason: str, now: datetime | None = None) -> int:
    """Stop the lead's cadence: cancel every touch point not yet sent, with ``reason``.
    Returns how many. One statement (``cadence_stop_steps``)."""
    (cancelled,) = sql.fetch_one(
        sql.with_steps(
            cadence_stop_steps(lead_id=lead.pk, reason=reason, now=now),
            f"SELECT count(*) FROM {CADENCE_CANCELLED}",  # noqa: S608 - a step's name
        )
    )
    return cancelled


# The step of cadence_stop_steps that returns the cancelled touch points' ids.
CADENCE_CANCELLED = "cadence_cancelled"


def cadence_stop_steps(
    *, lead_id: int | sql.Ref, reason: str, now: datetime | None = None
) -> tuple[sql.Step, sql.Step]:
    """``cadence_stop`` as steps of one statement (``leadorch.sql.with_steps``), for
    a caller that runs them with writes of its own in the same round trip.
    ``lead_id`` may be a ``sql.Ref`` to the caller's earlier steps; when it is NULL,
    nothing stops."""
    now = now or timezone.now()
    lead, lead_params = sql.placeholder(lead_id)
    steps = []
    for name, model, statuses, changes in (
        (
            "cadence_stopped",
            CadenceEnrollment,
            [EnrollmentStatus.ACTIVE, EnrollmentStatus.PAUSED],
            {
                "status": EnrollmentStatus.STOPPED,
                "stop_reason": reason,
                "stopped_at": now,
                "updated_at": now,
            },
        ),
        (
            CADENCE_CANCELLED,
            TouchPoint,
            list(OPEN_TOUCHPOINT_STATUSES),
            {
                "status": TouchPointStatus.CANCELLED,
                "reason": StopReason(reason).label,
                "finished_at": now,
                "claimed_until": None,
            },
        ),
    ):
        assignments, params = sql.update_assignments(model, changes)
        pk = sql.column(model, "id")
        steps.append(
            sql.Step(
                name,
                f"UPDATE {sql.quote(model._meta.db_table)} SET {assignments} "  # noqa: S608 - quoted identifiers
                f"WHERE {sql.column(model, 'lead')} = {lead} "
                f"AND {sql.column(model, 'status')} = ANY(%s) RETURNING {pk}",
                [*params, *lead_params, [str(status) for status in statuses]],
            )
        )
    return steps[0], steps[1]


def cadence_pause(*, lead: Lead, actor: Any = None, now: datetime | None = None) -> int:
    """Staff pause: cancel the remaining touch points (reason: paused) until resumed."""
    now = now or timezone.now()
    with transaction.atomic():
        updated = CadenceEnrollment.objects.filter(
            lead=lead, status=EnrollmentStatus.ACTIVE
        ).update(
            status=EnrollmentStatus.PAUSED,
            stop_reason=StopReason.PAUSED,
            updated_at=now,
        )
        if not updated:
            raise ApplicationError(
                "The lead's follow-up is not running, so it cannot be paused.",
                code="not_active",
            )
        cancelled = TouchPoint.objects.filter(
            lead=lead, status__in=OPEN_TOUCHPOINT_STATUSES
        ).update(
            status=TouchPointStatus.CANCELLED,
            reason=StopReason.PAUSED.label,
            finished_at=now,
            claimed_until=None,
        )
        lead_services.lead_add_note(
            lead=lead,
            message=f"Follow-up paused ({cancelled} message(s) held)",
            actor=actor,
        )
    return cancelled


def cadence_resume(
    *, lead: Lead, actor: Any = None, now: datetime | None = None
) -> int:
    """Resume a paused cadence: the touch points cancelled by the pause are scheduled again.

    Steps whose time passed during the pause are due now, one after the other in
    position order (the processor spaces nothing: quiet hours and the daily cap apply).
    """
    now = now or timezone.now()
    if not lead.is_open:
        raise ApplicationError(
            "A closed lead's follow-up cannot be resumed.", code="lead_closed"
        )
    with transaction.atomic():
        updated = CadenceEnrollment.objects.filter(
            lead=lead, status=EnrollmentStatus.PAUSED
        ).update(status=EnrollmentStatus.ACTIVE, stop_reason="", updated_at=now)
        if not updated:
            raise ApplicationError(
                "The lead's follow-up is not paused.", code="not_paused"
            )
        held = list(
            TouchPoint.objects.filter(
                lead=lead,
                status=TouchPointStatus.CANCELLED,
                reason=StopReason.PAUSED.label,
            )
        )
        for touchpoint in held:
            touchpoint.status = TouchPointStatus.SCHEDULED
            touchpoint.due_at = max(touchpoint.due_at, now)
            touchpoint.reason = ""
            touchpoint.finished_at = None
        TouchPoint.objects.bulk_update(
            held, ["status", "due_at", "reason", "finished_at"]
        )
        lead_services.lead_add_note(
            lead=lead,
            message=f"Follow-up resumed ({len(held)} message(s) rescheduled)",
            actor=actor,
        )
        enqueue_on_commit("touchpoints.tasks.touchpoints_process_lead", lead_id=lead.pk)
    return len(held)


# --- stop conditions raised elsewhere ------------------------------------------------------------


def cadence_stop_on_reply(*, lead: Lead, inbound: InboundMessage) -> None:
    """INBOUND_REPLY_HANDLERS: a customer's SMS reply stops their follow-up."""
    cadence_stop(lead=lead, reason=StopReason.REPLIED)


def cadence_stop_on_opt_out(*, channel: str, address: str) -> None:
    """OPT_OUT_HANDLERS: an opt-out stops the follow-up of every lead with that phone or email."""
    field = "phone" if channel == Channel.SMS else "email"
    for lead in Lead.objects.filter(**{field: address}):
        cadence_stop(lead=lead, reason=StopReason.OPTED_OUT)


def lead_mark_lost(*, lead: Lead, reason: str, actor: Any = None) -> Lead:
    """Close the lead as lost and stop its follow-up."""
    lead = lead_services.lead_mark_lost(lead=lead, reason=reason, actor=actor)
    cadence_stop(lead=lead, reason=StopReason.LEAD_LOST)
    return lead
