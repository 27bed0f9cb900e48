"""Phone numbers: parsed leniently, stored strictly in E.164."""

from __future__ import annotations

import re
from typing import Any

import phonenumbers
from django.conf import settings
from django.core.exceptions import ValidationError
from django.db import models

# What the database accepts; see PhoneNumberField.
E164_REGEX = r"^\+[1-9][0-9]{6,14}$"
NANP_NATIONAL = re.compile(r"^[2-9][0-9]{2}[2-9][0-9]{6}$")


def normalize_phone(raw: str, *, region: str | None = None) -> str:
    """Return ``raw`` in E.164 (``+16195550134``), or "" for a blank value.

    Accepts the forms people type and CRMs export: ``(619) 555-0134``,
    ``619.555.0134``, ``+1 619 555 0134``, ``1-619-555-0134 ext. 2``.
    Raises ValidationError for anything that is not a possible number.
    """
    text = (raw or "").strip()
    if not text:
        return ""
    try:
        number = phonenumbers.parse(text, region or settings.DEFAULT_PHONE_REGION)
    except phonenumbers.NumberParseException as error:
        raise ValidationError(
            f"{text!r} is not a phone number.", code="invalid_phone"
        ) from error
    if not _plausible(number):
        raise ValidationError(
            f"{text!r} is not a valid phone number.", code="invalid_phone"
        )
    return phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164)


def _plausible(number: phonenumbers.PhoneNumber) -> bool:
    """Valid by the numbering plan. North American numbers are checked by structure
    only (area code and exchange start with 2-9), so that the 555 numbers used for
    tests and demos pass; the SMS provider is the judge of whether one is reachable."""
    if not phonenumbers.is_possible_number(number):
        return False
    if number.country_code == 1:
        return bool(NANP_NATIONAL.match(str(number.national_number)))
    return phonenumbers.is_valid_number(number)


def format_phone(e164: str) -> str:
    """A number for people to read: national format at home, international otherwise."""
    if not e164:
        return ""
    number = phonenumbers.parse(e164, None)
    region = phonenumbers.region_code_for_number(number)
    if region == settings.DEFAULT_PHONE_REGION:
        return phonenumbers.format_number(
            number, phonenumbers.PhoneNumberFormat.NATIONAL
        )
    return phonenumbers.format_number(
        number, phonenumbers.PhoneNumberFormat.INTERNATIONAL
    )


class PhoneNumberField(models.CharField):
    """A CharField that normalises to E.164 when cleaned (forms, full_clean)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        kwargs.setdefault("max_length", 16)
        kwargs.setdefault("blank", True)
        super().__init__(*args, **kwargs)

    def to_python(self, value: Any) -> str:
        return normalize_phone(super().to_python(value) or "")

    def get_prep_value(self, value: Any) -> Any:
        # Normalising belongs to cleaning (forms, full_clean). Queries and raw saves
        # pass values through untouched: a lookup by a malformed number finds
        # nothing instead of raising, and the database constraint refuses a
        # malformed save.
        return None if value is None else str(value)
