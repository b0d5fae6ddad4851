"""Phone numbers: anything a person typed → E.164, or a reason why not.

``phonenumbers.parse("12345", "US")`` succeeds, so validity is always checked before a number is
stored. E.164 drops extensions. NANP numbers are never known to be mobile (see PROVIDERS-AND-RULES).
"""

from __future__ import annotations

from dataclasses import dataclass

import phonenumbers
from phonenumbers import NumberParseException, PhoneNumberType, timezone

MAX_INPUT_LENGTH = 64  # longer than any number written with punctuation and an extension
MAX_PHONE_ZONES = 6  # toll-free numbers map to dozens of zones: ignore them


class InvalidPhoneNumber(ValueError):
    """The text is not a valid phone number; ``reason`` says why, for a person to read."""

    def __init__(self, raw: str, reason: str) -> None:
        super().__init__(f"{raw!r}: {reason}")
        self.raw = raw
        self.reason = reason


@dataclass(frozen=True)
class PhoneNumber:
    e164: str
    region: str | None
    number_type: int

    @property
    def can_text(self) -> bool:
        """False for kinds that can never take an SMS (landline known as such, premium, pager)."""
        return self.number_type not in (
            PhoneNumberType.FIXED_LINE,
            PhoneNumberType.PREMIUM_RATE,
            PhoneNumberType.PAGER,
            PhoneNumberType.SHARED_COST,
        )


def parse_phone(raw: str, default_region: str = "US") -> PhoneNumber:
    """Parse ``raw`` (as typed by a person) into a valid number, or raise InvalidPhoneNumber."""
    number = _valid_number(raw, default_region)
    return PhoneNumber(
        e164=phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164),
        region=phonenumbers.region_code_for_number(number),
        number_type=phonenumbers.number_type(number),
    )


def normalize_phone(raw: str, default_region: str = "US") -> str:
    """E.164 for ``raw``, or InvalidPhoneNumber.

    Checks exactly what :func:`parse_phone` checks, without working out the number's type and
    region, which cost as much again (every inbound text's From and To comes through here).
    """
    number = _valid_number(raw, default_region)
    return phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164)


_NANP_REGIONS = frozenset(phonenumbers.COUNTRY_CODE_TO_REGION_CODE[1])
_NANP_PUNCTUATION = str.maketrans("", "", " ()-.")


def _nanp_number(text: str, default_region: str) -> phonenumbers.PhoneNumber | None:
    """The number, when ``text`` is plainly a North American one; None: let ``parse`` decide.

    ``phonenumbers.parse`` is most of the cost of reading a number (a member list is a million of
    them), and North American numbers written as ten digits, with punctuation, a leading ``1`` or
    ``+1``, need none of its generality. Validity is still the library's; tests compare the two
    readings.
    """
    if text.startswith("+1"):
        digits = text[2:].translate(_NANP_PUNCTUATION)
    elif default_region in _NANP_REGIONS:
        digits = text.translate(_NANP_PUNCTUATION)
        if len(digits) == 11 and digits[0] == "1":
            digits = digits[1:]
    else:
        return None
    if len(digits) != 10 or not digits.isascii() or not digits.isdigit() or digits[0] in "01":
        return None
    return phonenumbers.PhoneNumber(country_code=1, national_number=int(digits))


def _valid_number(raw: str, default_region: str) -> phonenumbers.PhoneNumber:
    text = (raw or "").strip()
    fast = _nanp_number(text, default_region)
    if fast is not None and (
        phonenumbers.is_valid_number_for_region(fast, default_region)
        or phonenumbers.is_valid_number(fast)
    ):
        return fast
    if not text:
        raise InvalidPhoneNumber(raw, "empty")
    if len(text) > MAX_INPUT_LENGTH:
        raise InvalidPhoneNumber(raw[:MAX_INPUT_LENGTH], "too long to be a phone number")
    if not any(ch.isdigit() for ch in text):
        raise InvalidPhoneNumber(raw, "has no digits")
    try:
        number = phonenumbers.parse(text, default_region)
    except NumberParseException as exc:
        raise InvalidPhoneNumber(raw, _parse_error_reason(exc)) from None
    possible = phonenumbers.is_possible_number_with_reason(number)
    if possible == phonenumbers.ValidationResult.IS_POSSIBLE_LOCAL_ONLY:
        raise InvalidPhoneNumber(raw, "missing the area code (wrong number of digits)")
    if possible != phonenumbers.ValidationResult.IS_POSSIBLE:
        raise InvalidPhoneNumber(raw, "wrong number of digits")
    if not phonenumbers.is_valid_number(number):
        raise InvalidPhoneNumber(raw, "not a valid number in any numbering plan")
    return number


def try_normalize_phone(raw: str | None, default_region: str = "US") -> str | None:
    """E.164, or None for anything that is not a valid number (short codes, names, garbage)."""
    if not raw:
        return None
    try:
        return normalize_phone(raw, default_region)
    except InvalidPhoneNumber:
        return None


def zones_for_number(e164: str) -> tuple[str, ...]:
    """IANA zones for a number; empty when unknown or non-geographic (toll-free and the like)."""
    try:
        number = phonenumbers.parse(e164, None)
    except NumberParseException:
        return ()
    if not phonenumbers.is_valid_number(number):
        return ()
    zones = tuple(z for z in timezone.time_zones_for_number(number) if z != "Etc/Unknown")
    if len(zones) > MAX_PHONE_ZONES:
        return ()
    return zones


def mask_phone(e164: str | None) -> str:
    """For logs: ``+1617***67``. Operators can correlate; logs don't leak the list."""
    if not e164:
        return "-"
    if len(e164) <= 6:
        return "***"
    return e164[:5] + "***" + e164[-2:]


def _parse_error_reason(exc: NumberParseException) -> str:
    return {
        NumberParseException.INVALID_COUNTRY_CODE: "unknown country code",
        NumberParseException.NOT_A_NUMBER: "not a phone number",
        NumberParseException.TOO_SHORT_AFTER_IDD: "too short",
        NumberParseException.TOO_SHORT_NSN: "too short",
        NumberParseException.TOO_LONG: "too long",
    }.get(exc.error_type, "not a phone number")
