"""Writes of leads: creation and every status move, each recorded as a LeadEvent."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, ClassVar

from django.db import connection, transaction
from django.utils import timezone

from leadorch import sql
from leadorch.errors import ApplicationError
from leads.models import Lead, LeadEvent, LeadEventKind, LeadSource, LeadStatus
from locations.models import Location

S = LeadStatus

# The funnel, in order. A lead moves forward (skipping steps is allowed: staff can
# book a lead nobody contacted yet), to lost from any open state, and back in two
# cases only: a cancelled or missed booking returns the lead to engaged for
# rebooking, and a lost lead who writes again is engaged again.
FUNNEL = (S.NEW, S.CONTACTED, S.ENGAGED, S.QUALIFIED, S.APPOINTMENT_SET, S.COMPLETED)
TRANSITIONS: dict[str, frozenset[str]] = {
    S.NEW: frozenset({S.CONTACTED, S.ENGAGED, S.QUALIFIED, S.APPOINTMENT_SET, S.LOST}),
    S.CONTACTED: frozenset({S.ENGAGED, S.QUALIFIED, S.APPOINTMENT_SET, S.LOST}),
    S.ENGAGED: frozenset({S.QUALIFIED, S.APPOINTMENT_SET, S.LOST}),
    S.QUALIFIED: frozenset({S.APPOINTMENT_SET, S.LOST}),
    S.APPOINTMENT_SET: frozenset({S.COMPLETED, S.ENGAGED, S.LOST}),
    S.COMPLETED: frozenset(),
    S.LOST: frozenset({S.ENGAGED}),
}
# The first time a lead reaches a status, this field records when.
STATUS_TIMESTAMP_FIELD = {
    S.CONTACTED: "first_contacted_at",
    S.ENGAGED: "engaged_at",
    S.QUALIFIED: "qualified_at",
    S.APPOINTMENT_SET: "booked_at",
    S.COMPLETED: "completed_at",
    S.LOST: "lost_at",
}


class LeadTransitionError(ApplicationError):
    """A status move the lifecycle does not allow."""

    def __init__(self, *, from_status: str, to_status: str) -> None:
        allowed = (
            ", ".join(
                S(status).label
                for status in sorted(TRANSITIONS[from_status], key=_rank)
            )
            or "nothing"
        )
        super().__init__(
            f"A lead cannot move from {S(from_status).label} to {S(to_status).label} "
            f"(from {S(from_status).label} it can move to: {allowed}).",
            code="invalid_transition",
            extra={"from_status": from_status, "to_status": to_status},
        )


def _rank(status: str) -> int:
    return FUNNEL.index(status) if status in FUNNEL else len(FUNNEL)


def lead_create(
    *,
    location: Location,
    first_name: str = "",
    last_name: str = "",
    email: str = "",
    phone: str = "",
    vehicle_year: int | None = None,
    vehicle_make: str = "",
    vehicle_model: str = "",
    source: str = LeadSource.STAFF,
    crm_order_id: str = "",
    crm_customer_id: str = "",
    crm_vehicle_id: str = "",
    crm_created_at: datetime | None = None,
    actor: Any = None,
) -> Lead:
    """Create a lead in status new and record its creation. Validates every field (phone to E.164)."""
    lead = Lead(
        location=location,
        first_name=first_name.strip(),
        last_name=last_name.strip(),
        email=email.strip().lower(),
        phone=phone,
        vehicle_year=vehicle_year,
        vehicle_make=vehicle_make.strip(),
        vehicle_model=vehicle_model.strip(),
        source=source,
        crm_order_id=crm_order_id,
        crm_customer_id=crm_customer_id,
        crm_vehicle_id=crm_vehicle_id,
        crm_created_at=crm_created_at,
    )
    return lead_save_new(lead=lead, actor=actor)


@transaction.atomic
def lead_save_new(
    *, lead: Lead, actor: Any = None, validate_unique: bool = True
) -> Lead:
    """Validate and save an unsaved lead (status new) and record its creation.

    With ``validate_unique=False`` uniqueness and constraints are left to the
    database, for callers that race on purpose and handle the IntegrityError.
    """
    now = timezone.now()
    lead.status = S.NEW
    lead.email = lead.email.strip().lower()
    if lead.ingested_at is None:
        lead.ingested_at = now
    lead.full_clean(
        validate_unique=validate_unique, validate_constraints=validate_unique
    )
    lead.save()
    LeadEvent.objects.create(
        lead=lead,
        kind=LeadEventKind.CREATED,
        to_status=lead.status,
        actor=actor,
        message=f"Lead created ({lead.get_source_display()})",
        created_at=now,
    )
    return lead


def lead_transition(
    *,
    lead: Lead,
    to_status: str,
    actor: Any = None,
    reason: str = "",
    at: datetime | None = None,
    data: dict[str, Any] | None = None,
) -> Lead:
    """Move ``lead`` to ``to_status`` and record the move.

    Locks the lead row so concurrent moves serialise. Raises LeadTransitionError for
    a move the lifecycle does not allow, including a move to the current status.
    One statement (``LeadMove``), which changes nothing when it raises.
    """
    move = _move_steps(
        lead_id=lead.pk,
        to_status=to_status,
        allowed_from=[
            status for status, targets in TRANSITIONS.items() if to_status in targets
        ],
        actor=actor,
        reason=reason,
        at=at,
        data=data,
    )
    from_status = move.run(lead)
    if from_status is not None:
        raise LeadTransitionError(from_status=from_status, to_status=to_status)
    return lead


def lead_advance(
    *,
    lead: Lead,
    to_status: str,
    actor: Any = None,
    reason: str = "",
    at: datetime | None = None,
) -> bool:
    """Move ``lead`` forward to ``to_status`` if that is ahead of where it stands.

    For events that may arrive more than once or out of order (a second reply, a
    late delivery receipt): returns False and changes nothing when the lead is
    already there or further along, or closed. One statement (``LeadMove``).
    """
    move = lead_advance_steps(
        lead_id=lead.pk, to_status=to_status, actor=actor, reason=reason, at=at
    )
    return move.run(lead) is None


@dataclass(frozen=True)
class LeadMove:
    """A status move as steps of one statement (``leadorch.sql.with_steps``):
    ``lead_transition`` and ``lead_advance`` run it alone (``run``); a caller may
    run it with writes of its own in the same round trip.

    The steps lock the lead's row, move it if the move is allowed from the status
    found under the lock (a lead moved meanwhile by another transaction is judged
    as it is now), and record the move's LeadEvent. ``returning`` is the select
    list (over the step ``MOVED``) of the moved lead's changed fields: NULLs or no
    row when it did not move; ``apply`` copies them to the caller's instance.
    """

    BEFORE: ClassVar[str] = "lead_before"
    MOVED: ClassVar[str] = "lead_moved"

    steps: tuple[sql.Step, ...]
    fields: tuple[str, ...]

    @property
    def returning(self) -> str:
        return self._columns.select(self.MOVED)

    @property
    def width(self) -> int:
        """How many columns ``returning`` selects."""
        return len(self._columns)

    @property
    def _columns(self) -> sql.ModelColumns:
        return sql.model_columns(Lead, ("id", *self.fields))

    def apply(self, lead: Lead, values: Sequence[Any] | None) -> bool:
        """Copy the moved fields from ``values`` (read through ``returning``) to
        ``lead``; returns whether the lead moved."""
        if values is None or values[0] is None:
            return False
        moved = self._columns.instance(values)
        _refresh(lead, moved, list(self.fields))
        return True

    def run(self, lead: Lead) -> str | None:
        """Run the steps alone and copy the move to ``lead``. Returns None when the
        lead moved, else the status it stands at. Raises Lead.DoesNotExist."""
        row = sql.fetch_one(
            sql.with_steps(
                self.steps,
                f"SELECT {self.BEFORE}.{sql.column(Lead, 'status')}, {self.returning} "  # noqa: S608 - quoted identifiers
                f"FROM {self.BEFORE} LEFT JOIN {self.MOVED} ON TRUE",
            )
        )
        if row is None:
            raise Lead.DoesNotExist(f"No lead {lead.pk}")
        return None if self.apply(lead, row[1:]) else row[0]


def lead_advance_steps(
    *,
    lead_id: int | sql.Ref,
    to_status: str,
    actor: Any = None,
    reason: str = "",
    at: datetime | None = None,
) -> LeadMove:
    """The steps of ``lead_advance``: the lead moves only from a status of the funnel
    behind ``to_status`` from which TRANSITIONS allow it. ``lead_id`` may be a
    ``sql.Ref`` to earlier steps of the caller's statement; when it is NULL,
    nothing moves."""
    return _move_steps(
        lead_id=lead_id,
        to_status=to_status,
        allowed_from=[
            status
            for status in FUNNEL
            if _rank(to_status) > _rank(status) and to_status in TRANSITIONS[status]
        ],
        actor=actor,
        reason=reason,
        at=at,
    )


def _move_steps(
    *,
    lead_id: int | sql.Ref,
    to_status: str,
    allowed_from: list[str],
    actor: Any,
    reason: str,
    at: datetime | None,
    data: dict[str, Any] | None = None,
) -> LeadMove:
    """Lock the lead, move it to ``to_status`` if it stands at one of
    ``allowed_from``, and record the move as a LeadEvent."""
    when = at or timezone.now()
    # updated_at is the time of the write, as auto_now would set it; ``at`` is the
    # time of the event that moved the lead.
    changes: dict[str, Any] = {"status": to_status, "updated_at": timezone.now()}
    if to_status == S.LOST:
        changes["lost_reason"] = reason[:200]
    assignments, params = sql.update_assignments(Lead, changes)
    stamp = STATUS_TIMESTAMP_FIELD.get(to_status)
    if stamp:
        # The first time the lead reached the status is kept.
        column = sql.column(Lead, stamp)
        assignments += f", {column} = COALESCE(lead.{column}, %s)"
        params.append(Lead._meta.get_field(stamp).get_db_prep_save(when, connection))
    before = LeadMove.BEFORE
    lead, lead_params = sql.placeholder(lead_id)
    table, pk, status = (
        sql.quote(Lead._meta.db_table),
        sql.column(Lead, "id"),
        sql.column(Lead, "status"),
    )
    fields = (*changes, *([stamp] if stamp else []))
    returned = ", ".join(f"lead.{sql.column(Lead, name)}" for name in fields)
    event = sql.insert_select(
        LeadEvent(
            # The moved lead's id is read from the move (``expressions``).
            kind=LeadEventKind.STATUS_CHANGED,
            to_status=to_status,
            actor=actor,
            message=reason[:500],
            data=data or {},
            created_at=when,
        ),
        source=LeadMove.MOVED,
        expressions={"lead": f"{LeadMove.MOVED}.{pk}", "from_status": "from_status"},
    )
    return LeadMove(
        steps=(
            sql.Step(
                before,
                f"SELECT {pk}, {status} FROM {table} WHERE {pk} = {lead} FOR UPDATE",  # noqa: S608 - quoted identifiers, the id is a parameter or the caller's SQL
                lead_params,
            ),
            sql.Step(
                LeadMove.MOVED,
                f"UPDATE {table} AS lead SET {assignments} FROM {before} "  # noqa: S608 - quoted identifiers
                f"WHERE lead.{pk} = {before}.{pk} AND {before}.{status} = ANY(%s) "
                f"RETURNING lead.{pk}, {returned}, {before}.{status} AS from_status",
                [*params, [str(status) for status in allowed_from]],
            ),
            sql.Step("lead_event", event.sql, event.params),
        ),
        fields=fields,
    )


def lead_mark_lost(*, lead: Lead, reason: str, actor: Any = None) -> Lead:
    """Close an open lead as lost, with the reason staff gave."""
    if not reason.strip():
        raise ApplicationError("Say why the lead is lost.", code="reason_required")
    return lead_transition(
        lead=lead, to_status=S.LOST, actor=actor, reason=reason.strip()
    )


def lead_add_note(*, lead: Lead, message: str, actor: Any = None) -> LeadEvent:
    """Add a staff note to the lead's history."""
    if not message.strip():
        raise ApplicationError("A note cannot be empty.", code="empty_note")
    return LeadEvent.objects.create(
        lead=lead,
        kind=LeadEventKind.NOTE,
        actor=actor,
        message=message.strip()[:500],
        created_at=timezone.now(),
    )


def _refresh(target: Lead, source: Lead, fields: list[str]) -> None:
    for field in fields:
        setattr(target, field, getattr(source, field))
