import phonenumbers
import pytest
from django.core.exceptions import ValidationError
from hypothesis import given
from hypothesis import strategies as st

from leadorch.phones import format_phone, normalize_phone


@pytest.mark.parametrize(
    "raw",
    [
        "(619) 555-0134",
        "619.555.0134",
        "619-555-0134",
        "+1 619 555 0134",
        "1-619-555-0134",
        " 6195550134 ",
        "+16195550134",
    ],
)
def test_us_forms_normalise_to_e164(raw):
    assert normalize_phone(raw) == "+16195550134"


def test_other_countries_keep_their_code():
    assert normalize_phone("+44 20 7946 0958") == "+442079460958"
    assert normalize_phone("020 7946 0958", region="GB") == "+442079460958"


def test_blank_stays_blank():
    assert normalize_phone("   ") == ""


def test_test_numbers_in_the_555_range_are_kept():
    assert normalize_phone("+1 555 555 0142") == "+15555550142"


@pytest.mark.parametrize(
    "raw",
    [
        "hello",
        "555",
        "+1 000 000 0000",
        "(119) 555-0134",
        "(619) 155-0134",
        "12345678901234567890",
        "(619) 555-01",
    ],
)
def test_rejects_what_is_not_a_number(raw):
    with pytest.raises(ValidationError):
        normalize_phone(raw)


def test_formats_for_people():
    assert format_phone("+16195550134") == "(619) 555-0134"
    assert format_phone("+442079460958") == "+44 20 7946 0958"


@given(st.text(max_size=40))
def test_any_text_normalises_or_is_refused_cleanly(text):
    """Property: arbitrary input either becomes a valid E.164 number or raises ValidationError, nothing else."""
    try:
        result = normalize_phone(text)
    except ValidationError:
        return
    if result:
        assert result.startswith("+")
        assert phonenumbers.is_possible_number(phonenumbers.parse(result, None))
        assert normalize_phone(result) == result  # idempotent
