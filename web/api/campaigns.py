"""``/api/v1/huddles/<slug>/campaigns``: draft, list and read, preview, test, launch, pause,
resume, cancel, and the delivery report.

A campaign is reached through its huddle, so another huddle's campaign is not found. Launching
moves the draft in this request's transaction and enqueues the launch job (the audience
snapshot and the send jobs) only once that transaction is committed: a job never sees a launch
that is not there. If enqueueing fails (Redis away, the process killed), the launch stays
committed and the sweep (``reconcile.lost_launches``) launches it a few seconds later. The
transitions and the test send are ``outreach.campaigns.launches``, shared with the dashboard.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import UTC
from typing import Any, TypeVar

import marshmallow as ma
from flask import request
from flask_smorest import Blueprint
from sqlalchemy import select
from sqlalchemy.orm import Session

from outreach import campaigns
from outreach.accounts import audit
from outreach.accounts.access import CAMPAIGNS
from outreach.app.clock import utcnow
from outreach.campaigns import CampaignError, launches, previews
from outreach.messages import templating
from outreach.models import Campaign, Huddle
from outreach.models import campaigns as k
from outreach.models import members as m
from outreach.people.huddles import HuddleError
from outreach.providers.sms import SendError, UncertainSendError
from web.api.core import (
    Page,
    PageArgs,
    access,
    actor,
    decode_cursor,
    encode_cursor,
    fail,
    not_found,
    reading,
    token,
    writing,
)
from web.api.huddles import huddle_for
from web.api.idempotency import sends, writes
from web.extensions import services
from workers import jobs

log = logging.getLogger(__name__)

View = TypeVar("View", bound=Callable[..., Any])

bp = Blueprint("api_campaigns", __name__, url_prefix="/api/v1", description="Campaigns")

_CHANNEL = ma.validate.OneOf(m.CHANNELS)
_STATE = ma.validate.OneOf((k.DRAFT, k.SCHEDULED, k.SENDING, k.PAUSED, k.COMPLETED, k.CANCELLED))
_HHMM = r"([01]\d|2[0-3]):[0-5]\d"
_ONE = "/huddles/<slug>/campaigns/<int:campaign_id>"


class CampaignSchema(ma.Schema):
    id = ma.fields.Integer(required=True)
    name = ma.fields.String(required=True)
    channel = ma.fields.String(required=True, validate=_CHANNEL)
    state = ma.fields.String(required=True, validate=_STATE)
    segment = ma.fields.String(
        required=True,
        attribute="segment_filter",
        metadata={"description": "The filter; a saved segment (@name) is resolved when drafted"},
    )
    body = ma.fields.String(required=True)
    subject = ma.fields.String(required=True, allow_none=True)
    send_at = ma.fields.DateTime(required=True, allow_none=True)
    rate = ma.fields.Float(required=True, allow_none=True, metadata={"description": "Segments/s"})
    window = ma.fields.Method(
        "_window",
        required=True,
        allow_none=True,
        metadata={"type": "string", "description": "Local sending window, HH:MM-HH:MM"},
    )
    quiet_hours = ma.fields.Boolean(
        required=True,
        attribute="respect_quiet_hours",
        metadata={"description": "Keeps recipients' quiet hours (always, for texts)"},
    )
    flag = ma.fields.String(required=True, allow_none=True)
    audience_size = ma.fields.Integer(required=True)
    created_by = ma.fields.String(required=True, allow_none=True)
    created_at = ma.fields.DateTime(required=True)
    launched_at = ma.fields.DateTime(required=True, allow_none=True)
    finished_at = ma.fields.DateTime(required=True, allow_none=True)

    def _window(self, campaign: Campaign) -> str | None:
        if campaign.quiet_start is None or campaign.quiet_end is None:
            return None
        return f"{campaign.quiet_start}-{campaign.quiet_end}"


class CampaignPage(Page):
    data = ma.fields.List(ma.fields.Nested(CampaignSchema), required=True)


class CampaignCreate(ma.Schema):
    channel = ma.fields.String(load_default=m.SMS, validate=_CHANNEL)
    segment = ma.fields.String(
        load_default="",
        validate=ma.validate.Length(max=2000),
        metadata={"description": 'A filter ("tag:volunteer zip:021*") or a saved segment (@name)'},
    )
    body = ma.fields.String(
        required=True,
        validate=ma.validate.Length(min=1, max=templating.EMAIL_MAX_SOURCE),
        metadata={"description": "Merge fields like {{ first_name }}; Markdown or HTML in email"},
    )
    subject = ma.fields.String(
        load_default=None, allow_none=True, validate=ma.validate.Length(max=998)
    )
    name = ma.fields.String(
        load_default=None, allow_none=True, validate=ma.validate.Length(max=200)
    )
    send_at = ma.fields.AwareDateTime(
        load_default=None, allow_none=True, metadata={"description": "With a UTC offset"}
    )
    rate = ma.fields.Float(
        load_default=None,
        allow_none=True,
        validate=ma.validate.Range(min=0, min_inclusive=False, max=campaigns.MAX_RATE),
    )
    window = ma.fields.String(
        load_default=None,
        allow_none=True,
        validate=ma.validate.Regexp(f"^{_HHMM}-{_HHMM}$", error="Give the window as HH:MM-HH:MM."),
    )
    quiet_hours = ma.fields.Boolean(
        load_default=False, metadata={"description": "Email only: keep recipients' quiet hours"}
    )


class CampaignSampleSchema(ma.Schema):
    member_id = ma.fields.Integer(
        required=True, allow_none=True, metadata={"description": "Null: sample values"}
    )
    text = ma.fields.String(required=True, metadata={"description": "SMS body; email text part"})
    subject = ma.fields.String(required=True, allow_none=True)
    html = ma.fields.String(required=True, allow_none=True)
    encoding = ma.fields.String(
        required=True, allow_none=True, validate=ma.validate.OneOf(("GSM-7", "UCS-2"))
    )
    characters = ma.fields.Integer(required=True, allow_none=True)
    segments = ma.fields.Integer(required=True, allow_none=True)
    warnings = ma.fields.List(ma.fields.String(), required=True)


class CampaignPreviewSchema(ma.Schema):
    audience = ma.fields.Integer(
        required=True,
        metadata={"description": "Active subscribers who match; suppressions apply at launch"},
    )
    samples = ma.fields.List(ma.fields.Nested(CampaignSampleSchema), required=True)


class CampaignTestSend(ma.Schema):
    to = ma.fields.String(
        required=True,
        validate=ma.validate.Length(min=1, max=254),
        metadata={"description": "A phone number (SMS) or an email address (email)"},
    )


class CampaignTestResult(ma.Schema):
    to = ma.fields.String(required=True)
    channel = ma.fields.String(required=True, validate=_CHANNEL)
    provider_message_id = ma.fields.String(required=True, allow_none=True)
    subject = ma.fields.String(required=True, allow_none=True)
    text = ma.fields.String(required=True)


class CampaignStatusSchema(ma.Schema):
    id = ma.fields.Integer(required=True)
    name = ma.fields.String(required=True)
    huddle = ma.fields.String(required=True)
    channel = ma.fields.String(required=True, validate=_CHANNEL)
    state = ma.fields.String(required=True, validate=_STATE)
    audience = ma.fields.Integer(required=True)
    done = ma.fields.Integer(required=True, metadata={"description": "Neither queued nor claimed"})
    by_state = ma.fields.Dict(keys=ma.fields.String(), values=ma.fields.Integer(), required=True)
    skipped = ma.fields.Dict(
        keys=ma.fields.String(),
        values=ma.fields.Integer(),
        required=True,
        metadata={"description": "By skip reason"},
    )
    errors = ma.fields.Dict(
        keys=ma.fields.String(),
        values=ma.fields.Integer(),
        required=True,
        metadata={"description": "By provider error code"},
    )
    flag = ma.fields.String(required=True, allow_none=True)
    last_progress_at = ma.fields.DateTime(required=True, allow_none=True)


def _campaign(
    session: Session, huddle: Huddle, campaign_id: int, *, lock: bool = False
) -> Campaign:
    """The huddle's campaign ``campaign_id`` (row-locked with ``lock``); 404 otherwise."""
    query = select(Campaign).where(Campaign.id == campaign_id, Campaign.huddle_id == huddle.id)
    found = session.scalars(query.with_for_update() if lock else query).one_or_none()
    if found is None:
        not_found("campaign")
    return found


@bp.get("/huddles/<slug>/campaigns")
@token(CAMPAIGNS)
@bp.arguments(PageArgs, location="query")
@bp.response(200, CampaignPage)
def list_campaigns(args: dict[str, Any], slug: str) -> dict[str, Any]:
    """The huddle's campaigns by id (oldest first), a page at a time."""
    after = decode_cursor(args["cursor"])
    with reading() as session:
        huddle = huddle_for(session, slug, CAMPAIGNS)
        found = list(
            session.scalars(
                select(Campaign)
                .where(Campaign.huddle_id == huddle.id, Campaign.id > after)
                .order_by(Campaign.id)
                .limit(args["limit"] + 1)
            )
        )
    more = len(found) > args["limit"]
    found = found[: args["limit"]]
    return {"data": found, "next_cursor": encode_cursor(found[-1].id) if more else None}


@bp.post("/huddles/<slug>/campaigns")
@token(CAMPAIGNS)
@writes
@bp.arguments(CampaignCreate)
@bp.response(201, CampaignSchema)
def create_campaign(body: dict[str, Any], slug: str) -> Campaign:
    """Draft a campaign: every error you can fix (segment, template, subject, window) is
    reported now, not at send time. Nothing is sent until it is launched."""
    session = writing()
    huddle = huddle_for(session, slug, CAMPAIGNS)
    quiet_start = quiet_end = None
    if body["window"]:
        quiet_start, _, quiet_end = body["window"].partition("-")
    send_at = body["send_at"]
    try:
        created = campaigns.create_campaign(
            session,
            huddle_slug=huddle.slug,
            channel=body["channel"],
            segment_filter=body["segment"],
            body=body["body"],
            subject=body["subject"],
            name=body["name"],
            send_at=send_at.astimezone(UTC) if send_at is not None else None,
            rate=body["rate"],
            quiet_start=quiet_start,
            quiet_end=quiet_end,
            respect_quiet_hours=body["quiet_hours"],
            created_by=actor(),
        )
    except (CampaignError, HuddleError) as exc:
        message = str(exc)
        field, sep, _ = message.partition(": ")
        fail(422, "invalid", message, **({"field": field} if sep and " " not in field else {}))
    audit.record(
        session,
        audit.CAMPAIGN_CREATED,
        actor_id=access().organizer_id,
        actor_email=actor(),
        huddle_id=huddle.id,
        subject=f"campaign {created.id}",
        detail={"channel": created.channel, "segment": created.segment_filter},
        ip=request.remote_addr,
    )
    return created


@bp.get(_ONE)
@token(CAMPAIGNS)
@bp.response(200, CampaignSchema)
def get_campaign(slug: str, campaign_id: int) -> Campaign:
    with reading() as session:
        return _campaign(session, huddle_for(session, slug, CAMPAIGNS), campaign_id)


@bp.get(f"{_ONE}/preview")
@token(CAMPAIGNS)
@bp.response(200, CampaignPreviewSchema)
def preview(slug: str, campaign_id: int) -> previews.Preview:
    """The audience size and the message the first few members would get: for texts, the
    encoding and segment count (what it costs) and warnings about characters that raise it."""
    with reading() as session:
        huddle = huddle_for(session, slug, CAMPAIGNS)
        found = _campaign(session, huddle, campaign_id)
        return previews.preview(session, found, huddle, now=utcnow())


@bp.post(f"{_ONE}/test")
@token(CAMPAIGNS)
@sends
@bp.arguments(CampaignTestSend)
@bp.response(200, CampaignTestResult)
def test_send(body: dict[str, Any], slug: str, campaign_id: int) -> dict[str, Any]:
    """Send the campaign's message once, now, to your own number or address, marked [TEST].
    With an Idempotency-Key a retry does not send it again."""
    svc = services()
    with reading() as session:  # closed before sending: the sandbox writes its outbox row
        huddle = huddle_for(session, slug, CAMPAIGNS)
        found = _campaign(session, huddle, campaign_id)
        try:
            message = launches.test_message(
                session, found, huddle, body["to"], default_region=svc.settings.default_region
            )
        except CampaignError as exc:
            fail(422, "invalid", str(exc), field="to" if str(exc).startswith("to:") else "body")
    try:
        sent = launches.send_test(message, svc.settings, svc.sessions)
    except UncertainSendError as exc:  # a 5xx or a timeout after sending: it may have gone out
        fail(502, "provider_uncertain", f"Maybe sent: {exc}", provider_code=exc.code)
    except SendError as exc:
        fail(502, "provider_error", f"Not sent: {exc}", provider_code=exc.code)
    return {
        "to": sent.to,
        "channel": sent.channel,
        "provider_message_id": sent.provider_message_id,
        "subject": sent.subject,
        "text": sent.text,
    }


@bp.post(f"{_ONE}/launch")
@token(CAMPAIGNS)
@sends
@bp.response(202, CampaignSchema)
def launch(slug: str, campaign_id: int) -> Campaign:
    """Launch a draft: it starts sending (the audience is snapshotted by a worker job), or is
    scheduled when its send_at is ahead. A campaign launches once: again is 409, unless the
    retry carries the first request's Idempotency-Key (then it gets the first answer)."""
    session = writing()
    huddle = huddle_for(session, slug, CAMPAIGNS)
    found = _campaign(session, huddle, campaign_id, lock=True)
    try:
        state = launches.launch(session, found, now=utcnow(), enqueue=jobs.enqueue_launch)
    except launches.TransitionRefused as exc:
        fail(409, "conflict", str(exc), state=exc.state)
    audit.record(
        session,
        audit.CAMPAIGN_LAUNCHED,
        actor_id=access().organizer_id,
        actor_email=actor(),
        huddle_id=huddle.id,
        subject=f"campaign {found.id}",
        detail={"state": state},
        ip=request.remote_addr,
    )
    return found


def _transition(slug: str, campaign_id: int, action: str) -> Campaign:
    session = writing()
    found = _campaign(session, huddle_for(session, slug, CAMPAIGNS), campaign_id, lock=True)
    try:
        launches.transition(
            session,
            found,
            action,
            enqueue_launch=jobs.enqueue_launch,
            enqueue_resume=jobs.resume_campaign,
        )
    except launches.TransitionRefused as exc:
        fail(409, "conflict", str(exc), state=exc.state)
    return found


@bp.post(f"{_ONE}/pause")
@token(CAMPAIGNS)
@writes
@bp.response(200, CampaignSchema)
def pause(slug: str, campaign_id: int) -> Campaign:
    """Stop sending after the current group; resume picks up where it stopped."""
    return _transition(slug, campaign_id, "pause")


@bp.post(f"{_ONE}/resume")
@token(CAMPAIGNS)
@writes
@bp.response(200, CampaignSchema)
def resume(slug: str, campaign_id: int) -> Campaign:
    """Continue a paused campaign."""
    return _transition(slug, campaign_id, "resume")


@bp.post(f"{_ONE}/cancel")
@token(CAMPAIGNS)
@writes
@bp.response(200, CampaignSchema)
def cancel(slug: str, campaign_id: int) -> Campaign:
    """Stop for good: what was not sent is skipped as cancelled."""
    return _transition(slug, campaign_id, "cancel")


@bp.get(f"{_ONE}/status")
@token(CAMPAIGNS)
@bp.response(200, CampaignStatusSchema)
def status(slug: str, campaign_id: int) -> campaigns.CampaignStatus:
    """Counts by delivery state, skip reason and error code, and when it last moved."""
    with reading() as session:
        found = _campaign(session, huddle_for(session, slug, CAMPAIGNS), campaign_id)
        return campaigns.status(session, found.id)
