"""What a campaign will say: rendered samples for a preview, and the message of a test send.

Both channels, rendered as the senders render them: an SMS body with its opt-out line and what
it will cost (encoding, segments, warnings); an email's subject, HTML and plain-text parts in the
layout (``outreach.email.render``). Real members' values where the audience has some (their
names and this huddle's custom fields), the sample values otherwise. A message that cannot be
rendered for a member is a warning here, as it is a skip at send time, never an exception.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field, replace
from datetime import datetime

from sqlalchemy import ColumnElement, select
from sqlalchemy.orm import Session

from outreach.addresses.emails import InvalidEmail, normalize_email
from outreach.addresses.phones import InvalidPhoneNumber, normalize_phone
from outreach.campaigns import CampaignError, segments
from outreach.email import render as email_render
from outreach.messages import templating
from outreach.models import Campaign, Huddle, HuddleMember, Member, MemberField
from outreach.models import members as m
from outreach.providers.email import EmailRecipient, OutboundEmail
from outreach.providers.sms import OutboundSms

SAMPLES = 3  # members shown in a preview
TEST_PREFIX = "[TEST] "
TEST_REFERENCE = "test"  # the outbox's kind for test sends


@dataclass(frozen=True)
class Sample:
    """One recipient's message. SMS: ``text`` is the body; email: the plain-text part."""

    member_id: int | None  # None: the sample values (nobody in the audience yet)
    text: str
    warnings: list[str] = field(default_factory=list)
    subject: str | None = None  # email
    html: str | None = None  # email
    encoding: str | None = None  # SMS: GSM-7 or UCS-2
    characters: int | None = None  # SMS
    segments: int | None = None  # SMS


@dataclass(frozen=True)
class Preview:
    audience: int  # active subscribers on the channel who match (suppressions apply at launch)
    samples: list[Sample]


def preview(
    session: Session, campaign: Campaign, huddle: Huddle, *, now: datetime, limit: int = SAMPLES
) -> Preview:
    """The audience size and the message the first ``limit`` members of it would get."""
    audience = segments.count(
        session,
        huddle_id=huddle.id,
        channel=campaign.channel,
        filter_text=campaign.segment_filter or "",
        now=now,
    )
    people = segments.sample(
        session,
        huddle_id=huddle.id,
        channel=campaign.channel,
        filter_text=campaign.segment_filter or "",
        now=now,
        limit=limit,
    )
    fields = _fields(session, huddle, (p.id for p in people))
    merges: list[tuple[int | None, templating.MergeContext]] = [
        (p.id, _merge(p, huddle, fields.get(p.id, {}))) for p in people
    ] or [(None, templating.sample_context(huddle.name))]
    return Preview(
        audience=audience,
        samples=[_sample(campaign, huddle, merge, member_id) for member_id, merge in merges],
    )


def _sample(
    campaign: Campaign, huddle: Huddle, merge: templating.MergeContext, member_id: int | None
) -> Sample:
    if campaign.channel == m.EMAIL:
        return _email_sample(campaign, huddle, merge, member_id)
    compiled = templating.compile_template(campaign.body, channel="sms")
    try:
        shown = templating.preview_sms(compiled, merge, with_opt_out_line=True)
    except templating.RenderError as exc:
        return Sample(member_id, "", [_skipped(exc)])
    return Sample(
        member_id,
        shown.text,
        list(shown.warnings),
        encoding=shown.info.encoding,
        characters=shown.info.characters,
        segments=shown.info.segments,
    )


def _email_sample(
    campaign: Campaign, huddle: Huddle, merge: templating.MergeContext, member_id: int | None
) -> Sample:
    try:
        subject, html, text, warnings = _render_email(campaign, huddle, merge)
    except templating.RenderError as exc:
        return Sample(member_id, "", [_skipped(exc)])
    return Sample(member_id, text, warnings, subject=subject, html=html)


def _render_email(
    campaign: Campaign, huddle: Huddle, merge: templating.MergeContext
) -> tuple[str, str, str, list[str]]:
    """(subject, HTML, text, warnings) for one recipient; raises RenderError."""
    prepared = email_render.prepare(campaign, huddle)
    # A placeholder link: a real one would unsubscribe the member if the preview were clicked.
    merge = replace(merge, unsubscribe_url=templating.sample_context(huddle.name).unsubscribe_url)
    subject = prepared.subject.render(merge)
    html = prepared.html.render_html(merge)
    text = prepared.text.render(merge)
    used = prepared.subject.fields_used | prepared.html.fields_used | prepared.text.fields_used
    warnings = [
        f"field.{name} is empty for this recipient: it renders as nothing "
        f'unless the template gives a default ({{{{ field.{name} | default("...") }}}})'
        for name in sorted(used)
        if not str(merge.fields.get(name) or "").strip()
    ]
    return subject, html, text, warnings


def sms_test_message(
    session: Session, campaign: Campaign, huddle: Huddle, to: str, *, default_region: str
) -> OutboundSms:
    """The campaign's text for one number, marked as a test: a member of this huddle with that
    number gets their own values, anyone else the sample ones. Raises CampaignError."""
    if campaign.channel != m.SMS:
        raise CampaignError(f"campaign {campaign.id} is an email campaign: test it with an email")
    if not huddle.sender_number and not huddle.messaging_service_sid:
        raise CampaignError(f"huddle {huddle.slug} has no sender number to send from")
    try:
        number = normalize_phone(to, default_region)
    except InvalidPhoneNumber as exc:
        raise CampaignError(f"to: {exc.reason}") from None
    merge = _test_merge(session, huddle, Member.phone == number)
    compiled = templating.compile_template(campaign.body, channel="sms")
    try:
        body = TEST_PREFIX + templating.ensure_opt_out_line(compiled.render(merge))
    except templating.RenderError as exc:
        raise CampaignError(f"body: {exc}") from None
    return OutboundSms(
        to=number,
        body=body,
        from_number=None if huddle.messaging_service_sid else huddle.sender_number,
        messaging_service_sid=huddle.messaging_service_sid,
        reference=TEST_REFERENCE,
    )


def email_test_message(
    session: Session, campaign: Campaign, huddle: Huddle, to: str
) -> OutboundEmail:
    """The campaign's email for one address, its subject marked as a test (see sms_test_message)."""
    if campaign.channel != m.EMAIL:
        raise CampaignError(f"campaign {campaign.id} is an SMS campaign: test it with a number")
    try:
        address = normalize_email(to)
    except InvalidEmail as exc:
        raise CampaignError(f"to: {exc.reason}") from None
    merge = _test_merge(session, huddle, Member.email == address)
    try:
        subject, html, text, _ = _render_email(campaign, huddle, merge)
    except templating.RenderError as exc:
        raise CampaignError(f"body: {exc}") from None
    return OutboundEmail(
        from_email=huddle.email_from_address or "",
        from_name=huddle.email_from_name or huddle.name,
        subject=TEST_PREFIX + subject,
        html=html,
        text=text,
        recipients=[EmailRecipient(to=address, reference=TEST_REFERENCE)],
        categories=[f"campaign-{campaign.id}", TEST_REFERENCE],
    )


def _test_merge(
    session: Session, huddle: Huddle, same_address: ColumnElement[bool]
) -> templating.MergeContext:
    member = session.scalars(
        select(Member)
        .join(HuddleMember, HuddleMember.member_id == Member.id)
        .where(HuddleMember.huddle_id == huddle.id, same_address)
    ).first()
    if member is None:
        return templating.sample_context(huddle.name)
    return _merge(member, huddle, _fields(session, huddle, [member.id]).get(member.id, {}))


def _merge(member: Member, huddle: Huddle, fields: dict[str, str]) -> templating.MergeContext:
    return templating.MergeContext(
        first_name=member.first_name,
        last_name=member.last_name,
        zip=member.zip,
        huddle_name=huddle.name,
        fields=fields,
    )


def _fields(
    session: Session, huddle: Huddle, member_ids: Iterable[int]
) -> dict[int, dict[str, str]]:
    ids = list(member_ids)
    found: dict[int, dict[str, str]] = {}
    if not ids:
        return found
    for member_id, name, value in session.execute(
        select(MemberField.member_id, MemberField.name, MemberField.value).where(
            MemberField.huddle_id == huddle.id, MemberField.member_id.in_(ids)
        )
    ):
        found.setdefault(member_id, {})[name] = value
    return found


def _skipped(exc: templating.RenderError) -> str:
    return f"this member would be skipped ({exc.reason}): {exc}"
