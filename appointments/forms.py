"""Forms of the staff admin's appointment pages: booking for a lead, moving, cancelling.

The forms only read what staff chose. Whether a time is free, whether a lead may
book and whether an appointment may move is decided by appointments.services.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo

from django import forms
from django.db.models import QuerySet

from appointments.availability import Slot
from leads.models import Lead
from locations.models import ServiceCatalogItem

DATE_FORMAT = "%Y-%m-%d"


def price_display(cents: int) -> str:
    return f"${cents / 100:,.2f}"


def slot_choices(slots: Sequence[Slot], zone: ZoneInfo) -> list[tuple[str, str]]:
    """Radio choices for free slots: the UTC start as the value, the local time and free bays as the label."""
    choices = []
    for slot in slots:
        bays = len(slot.free_bays)
        label = f"{slot.start.astimezone(zone):%I:%M %p} ({bays} bay{'s' if bays != 1 else ''} free)"
        choices.append((slot.start.isoformat(), label))
    return choices


class SlotField(forms.Field):
    """A slot's start, chosen from radio buttons of free times.

    Any exact, time-zone-aware time is accepted here, not only the times shown: a
    time taken since the page was drawn must reach the booking service, which
    refuses it with the nearest free times instead of a bare "invalid choice".
    """

    widget = forms.RadioSelect
    default_error_messages = {
        "invalid": "Choose one of the free times.",
        "required": "Choose one of the free times.",
    }

    def to_python(self, value: Any) -> datetime | None:
        if value in self.empty_values:
            return None
        try:
            parsed = datetime.fromisoformat(str(value))
        except ValueError as error:
            raise forms.ValidationError(
                self.error_messages["invalid"], code="invalid"
            ) from error
        if parsed.tzinfo is None:
            raise forms.ValidationError(self.error_messages["invalid"], code="invalid")
        return parsed


class LeadChoiceField(forms.ModelChoiceField):
    def label_from_instance(self, obj: Lead) -> str:
        parts = [str(obj)]
        contact = obj.phone or obj.email
        if contact and contact != parts[0]:
            parts.append(contact)
        parts.append(obj.get_status_display())
        return " · ".join(parts)


class ServiceChoiceField(forms.ModelChoiceField):
    """The location's offered services, with the location's own price and duration."""

    def label_from_instance(self, obj: ServiceCatalogItem) -> str:
        price = getattr(obj, "effective_price_cents", obj.price_cents)
        minutes = getattr(obj, "effective_duration_minutes", obj.duration_minutes)
        return f"{obj.name} ({price_display(price)}, {minutes} min)"


class _SlotPickingForm(forms.Form):
    """A date to look at and, when booking or moving, one of its free times."""

    date = forms.DateField(
        input_formats=[DATE_FORMAT],
        widget=forms.DateInput(attrs={"type": "date"}, format=DATE_FORMAT),
    )
    slot = SlotField(label="Time", required=False)

    def __init__(self, *args: Any, require_slot: bool = False, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.fields["slot"].required = require_slot

    def show_slots(self, slots: Sequence[Slot], zone: ZoneInfo) -> None:
        self.fields["slot"].widget.choices = slot_choices(slots, zone)


class BookForm(_SlotPickingForm):
    """Book a service for a lead: lead, service and day first, then one of the day's free times."""

    lead = LeadChoiceField(
        queryset=Lead.objects.none(),
        empty_label="Choose a lead",
        help_text="Open leads of this location.",
    )
    service = ServiceChoiceField(
        queryset=ServiceCatalogItem.objects.none(), empty_label="Choose a service"
    )
    additional = forms.BooleanField(
        required=False,
        label="Book in addition to the customer's current appointment",
        help_text="Leave unticked to refuse a second booking for a customer who already has one.",
    )

    field_order = ("lead", "service", "date", "slot", "additional")

    def __init__(
        self,
        *args: Any,
        leads: QuerySet[Lead],
        services: QuerySet[ServiceCatalogItem],
        lead_fixed: bool = False,
        **kwargs: Any,
    ) -> None:
        super().__init__(*args, **kwargs)
        self.fields["lead"].queryset = leads
        self.fields["service"].queryset = services
        if lead_fixed:
            self.fields["lead"].widget = forms.HiddenInput()


class MoveForm(_SlotPickingForm):
    """Move an appointment: a day, then one of its free times for the same service and length."""


class CancelForm(forms.Form):
    reason = forms.CharField(
        max_length=200,
        help_text="Why, e.g. 'customer asked to cancel'. Kept on the appointment.",
    )
