"""The join form: what the page says (recorded verbatim as consent evidence), what it accepts."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from outreach.addresses.emails import InvalidEmail, normalize_email
from outreach.addresses.phones import InvalidPhoneNumber, normalize_phone
from outreach.addresses.zips import normalize_zip
from outreach.models import Huddle

MAX_FIRST_NAME = 100


def _frequency(huddle: Huddle) -> str:
    text = (huddle.message_frequency or "Msg frequency varies").strip().rstrip(".")
    return text[:1].upper() + text[1:]


def sms_disclosure(huddle: Huddle) -> str:
    """The SMS consent text beside the checkbox; recorded verbatim in the ledger."""
    return (
        f"Text me at the number above. By checking this box I agree to receive recurring "
        f"automated text messages from {huddle.name} about local organizing. "
        f"{_frequency(huddle)}. Msg & data rates may apply. Reply HELP for help, STOP to cancel. "
        f"Consent is not a condition of joining, donating or any purchase."
    )


def email_disclosure(huddle: Huddle) -> str:
    """The email consent text by the button; recorded verbatim in the ledger."""
    return (
        f"We'll email you a link to confirm. Once you confirm, {huddle.name} will email you "
        f"about local organizing. Every email has a link to unsubscribe."
    )


FIELDS = ("first_name", "email", "phone", "zip")


@dataclass(frozen=True)
class JoinForm:
    """What the person typed, as typed (re-shown on errors)."""

    first_name: str = ""
    email: str = ""
    phone: str = ""
    zip: str = ""
    sms_consent: bool = False

    @classmethod
    def from_mapping(cls, form: Mapping[str, str]) -> JoinForm:
        def text(name: str) -> str:
            return str(form.get(name, ""))[:300]  # nothing legitimate is longer

        return cls(
            first_name=text("first_name"),
            email=text("email"),
            phone=text("phone"),
            zip=text("zip"),
            sms_consent=form.get("sms_consent") in ("yes", "on", "1", "true"),
        )


@dataclass(frozen=True)
class ValidJoin:
    first_name: str
    email: str
    phone: str | None
    zip: str
    sms_consent: bool


def validate(form: JoinForm, default_region: str = "US") -> tuple[ValidJoin | None, dict[str, str]]:
    """The cleaned values, or per-field error messages a person can act on."""
    errors: dict[str, str] = {}
    first_name = " ".join(form.first_name.split())
    if not first_name:
        errors["first_name"] = "Please tell us your first name."
    elif len(first_name) > MAX_FIRST_NAME:
        errors["first_name"] = f"Please keep your first name under {MAX_FIRST_NAME} characters."
    elif any(ord(ch) < 32 for ch in first_name):
        errors["first_name"] = "Please use only letters, spaces and punctuation."
    email = ""
    if not form.email.strip():
        errors["email"] = "Please enter your email address."
    else:
        try:
            email = normalize_email(form.email)
        except InvalidEmail:
            errors["email"] = "That doesn't look like an email address (like name@example.org)."
    phone: str | None = None
    if form.phone.strip():
        try:
            phone = normalize_phone(form.phone, default_region)
        except InvalidPhoneNumber as exc:
            errors["phone"] = f"That phone number doesn't work: {exc.reason}."
    elif form.sms_consent:
        errors["phone"] = "Add your mobile number to get texts, or untick the box."
    zip_code = normalize_zip(form.zip)
    if zip_code is None:
        errors["zip"] = "Please enter your 5-digit ZIP code."
    if errors or zip_code is None:
        return None, errors
    return ValidJoin(first_name, email, phone, zip_code, form.sms_consent and bool(phone)), {}
