from __future__ import annotations

import phonenumbers
import pytest
from hypothesis import given
from hypothesis import strategies as st

from outreach.addresses.emails import mask_email
from outreach.addresses.phones import (
    InvalidPhoneNumber,
    mask_phone,
    normalize_phone,
    parse_phone,
    try_normalize_phone,
    zones_for_number,
)


@pytest.mark.parametrize(
    "raw",
    [
        "(617) 555-0100",
        "617.555.0100",
        "617 555 0100",
        "+1 617 555 0100",
        "1-617-555-0100",
        "+16175550100",
        " 6175550100 ",
        "617-555-0100 ext. 12",
        "tel:+1-617-555-0100",
    ],
)
def test_us_formats_normalize_to_e164(raw: str) -> None:
    assert normalize_phone(raw) == "+16175550100"


def test_default_region_applies_only_without_plus() -> None:
    assert normalize_phone("020 7946 0958", "GB") == "+442079460958"
    assert normalize_phone("+1 617 555 0100", "GB") == "+16175550100"


@pytest.mark.parametrize(
    ("raw", "reason"),
    [
        ("", "empty"),
        ("hello", "no digits"),
        ("12345", "digits"),
        ("555-0100", "digits"),
        ("+1 111 111 1111", "not a valid number"),
        ("+999 1234567", "country code"),
        ("1" * 80, "too long"),
    ],
)
def test_invalid_numbers_are_rejected_with_a_reason(raw: str, reason: str) -> None:
    with pytest.raises(InvalidPhoneNumber) as info:
        normalize_phone(raw)
    assert reason in info.value.reason


def test_short_codes_and_alphanumeric_senders_are_not_numbers() -> None:
    assert try_normalize_phone("262966") is None
    assert try_normalize_phone("TWILIO") is None
    assert try_normalize_phone(None) is None


def test_time_zones_for_geographic_and_toll_free_numbers() -> None:
    assert zones_for_number("+16175550100") == ("America/New_York",)
    assert zones_for_number("+14155550100") == ("America/Los_Angeles",)
    assert zones_for_number("+18005550100") == ()  # toll-free: no useful zone
    assert zones_for_number("garbage") == ()


def test_masking_keeps_logs_free_of_full_addresses() -> None:
    assert mask_phone("+16175550100") == "+1617***00"
    assert "5550" not in mask_phone("+16175550100")
    assert mask_phone(None) == "-"
    assert mask_email("maria@example.org") == "m***@example.org"
    assert mask_email("nonsense") == "-"


us_numbers = st.builds(
    lambda area, exchange, line: f"{area}{exchange}{line:04d}",
    st.sampled_from(["617", "202", "312", "415", "512", "907", "808", "305"]),
    st.integers(200, 999).map(str),
    st.integers(0, 9999),
)


@given(
    us_numbers, st.sampled_from(["({a}) {b}-{c}", "{a}.{b}.{c}", "+1 {a} {b} {c}", "1{a}{b}{c}"])
)
def test_formatting_never_changes_the_normalized_number(digits: str, pattern: str) -> None:
    formatted = pattern.format(a=digits[:3], b=digits[3:6], c=digits[6:])
    plain = try_normalize_phone(digits)
    assert try_normalize_phone(formatted) == plain


@given(st.text(max_size=200))
def test_normalize_never_crashes_and_only_returns_valid_e164(raw: str) -> None:
    result = try_normalize_phone(raw)
    if result is not None:
        assert result.startswith("+")
        assert result[1:].isdigit()
        assert phonenumbers.is_valid_number(phonenumbers.parse(result))
        assert try_normalize_phone(result) == result  # idempotent


@given(
    st.one_of(
        st.text(max_size=40),
        us_numbers,
        st.from_regex(r"\+?[0-9 ()+.-]{3,20}", fullmatch=True),
    ),
    st.sampled_from(["US", "GB", "CA"]),
)
def test_normalize_checks_exactly_what_parse_checks(raw: str, region: str) -> None:
    """normalize_phone skips the type and region lookups, never a check."""
    expected: str | InvalidPhoneNumber
    try:
        expected = parse_phone(raw, region).e164
    except InvalidPhoneNumber as error:
        expected = error
    if isinstance(expected, InvalidPhoneNumber):
        with pytest.raises(InvalidPhoneNumber) as raised:
            normalize_phone(raw, region)
        assert raised.value.reason == expected.reason
    else:
        assert normalize_phone(raw, region) == expected


def _library_reading(raw: str, region: str) -> str | None:
    """What phonenumbers alone makes of ``raw``: E.164 when possible and valid, else None."""
    try:
        number = phonenumbers.parse(raw, region)
    except phonenumbers.NumberParseException:
        return None
    possible = phonenumbers.is_possible_number_with_reason(number)
    if possible != phonenumbers.ValidationResult.IS_POSSIBLE:
        return None
    if not phonenumbers.is_valid_number(number):
        return None
    return phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164)


@given(
    st.one_of(us_numbers, st.integers(0, 9_999_999_999).map(lambda n: f"{n:010d}")),
    st.sampled_from(["{d}", "({a}) {b}-{c}", "{a}.{b}.{c}", "+1 {a} {b} {c}", "1-{a}-{b}-{c}"]),
    st.sampled_from(["US", "CA", "JM", "GB", "FR"]),
)
def test_north_american_shortcut_reads_numbers_as_the_library_does(
    digits: str, pattern: str, region: str
) -> None:
    raw = pattern.format(d=digits, a=digits[:3], b=digits[3:6], c=digits[6:])
    assert try_normalize_phone(raw, region) == _library_reading(raw, region)
