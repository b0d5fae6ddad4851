"""Campaigns: the list, the composer, preview and test send, launch behind a confirmation, live
progress with pause / resume / cancel, and the report.

Views are thin: drafting is ``outreach.campaigns`` (and ``.drafts`` for edits), launching and the
other transitions ``outreach.campaigns.launches`` (shared with the JSON API), the figures
``outreach.campaigns.reports``, the segment counter ``outreach.campaigns.counter``. Every campaign
is looked up through the URL's huddle, so another huddle's campaign is a 404. A transition locks
the campaign row, so a double click or a back-button resubmission finds the state the first left
and is refused: one launch, ever.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo

from flask import Blueprint, abort, flash, redirect, render_template, request, url_for
from flask.typing import ResponseReturnValue
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from outreach import campaigns
from outreach.accounts import audit
from outreach.accounts.access import CAMPAIGNS
from outreach.app.clock import utcnow
from outreach.campaigns import CampaignError, counter, drafts, launches, previews, reports
from outreach.campaigns import segments as segment_language
from outreach.messages import templating
from outreach.models import Campaign, Delivery, Huddle, Segment
from outreach.models import campaigns as k
from outreach.models import members as m
from outreach.people.huddles import HuddleError
from outreach.providers.sms import RecipientOptedOut, SendError, UncertainSendError
from web.access import signed_in
from web.dashboard.core import current_huddle, huddle_page
from web.extensions import services
from workers import jobs

bp = Blueprint("campaigns", __name__, url_prefix="/h/<slug>/campaigns")

LIST_LIMIT = 100
MAX_ID = 2**31 - 1  # campaigns.id is an INTEGER: a larger one is no campaign, not an error
MAX_NAME = 200
MAX_DEFINITION = 2000
MAX_ADDRESS = 254
CHANNEL_LABELS = {m.SMS: "Text message (SMS)", m.EMAIL: "Email"}
STATE_LABELS = {
    k.DRAFT: "Draft",
    k.SCHEDULED: "Scheduled",
    k.SENDING: "Sending",
    k.PAUSED: "Paused",
    k.COMPLETED: "Completed",
    k.CANCELLED: "Cancelled",
}
_ACCEPTED = (k.SENT, k.DELIVERED, k.UNDELIVERED)


# --- reading -----------------------------------------------------------------------------------


def _campaign(session: Session, campaign_id: int, *, lock: bool = False) -> Campaign:
    """This huddle's campaign ``campaign_id``, or 404 (another huddle's looks the same)."""
    if campaign_id > MAX_ID:
        abort(404)
    query = select(Campaign).where(
        Campaign.id == campaign_id, Campaign.huddle_id == current_huddle().id
    )
    found = session.scalars(query.with_for_update() if lock else query).one_or_none()
    if found is None:
        abort(404)
    return found


def _huddle(session: Session) -> Huddle:
    return session.get_one(Huddle, current_huddle().id)


def _when(moment: datetime | None, zone: str) -> str:
    """A time as the organizer reads it, in the huddle's zone."""
    if moment is None:
        return ""
    local = moment.astimezone(ZoneInfo(zone))
    return f"{local:%a} {local.day} {local:%b %Y}, {local:%H:%M}"


def _page_context(huddle: Huddle) -> dict[str, Any]:
    return {
        "channel_labels": CHANNEL_LABELS,
        "state_labels": STATE_LABELS,
        "zone": huddle.timezone,
        "when": lambda moment: _when(moment, huddle.timezone),
    }


@bp.get("/")
@huddle_page(CAMPAIGNS)
def index(slug: str) -> ResponseReturnValue:  # noqa: ARG001 (@huddle_page read it)
    """The huddle's campaigns, newest first, with how far each got."""
    with services().read_sessions() as session:
        huddle = _huddle(session)
        found = list(
            session.scalars(
                select(Campaign)
                .where(Campaign.huddle_id == huddle.id)
                .order_by(Campaign.id.desc())
                .limit(LIST_LIMIT)
            )
        )
        sent: dict[int, int] = {}
        started = [c.id for c in found if c.launched_at is not None]
        if started:
            sent = {
                int(campaign_id): int(n)
                for campaign_id, n in session.execute(
                    select(Delivery.campaign_id, func.count())
                    .where(Delivery.campaign_id.in_(started), Delivery.state.in_(_ACCEPTED))
                    .group_by(Delivery.campaign_id)
                )
            }
        return render_template(
            "campaigns/index.html",
            campaigns=found,
            sent=sent,
            limit=LIST_LIMIT,
            **_page_context(huddle),
        )


# --- composing ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class FilterProblem:
    """Where a filter's mistake is: its line cut around the offending character."""

    message: str
    position: int
    before: str
    culprit: str
    after: str

    @classmethod
    def at(cls, text: str, exc: segment_language.SegmentError) -> FilterProblem:
        position = max(0, min(exc.position, len(text)))
        start = text.rfind("\n", 0, position) + 1
        end = text.find("\n", position)
        line = text[start : len(text) if end < 0 else end]
        column = position - start
        message = exc.message[:1].upper() + exc.message[1:]
        return cls(
            message, position, line[:column], line[column : column + 1] or " ", line[column + 1 :]
        )


@dataclass
class Composed:
    """What the composer's form holds, and what is wrong with it, field by field."""

    name: str = ""
    channel: str = m.SMS
    segment: str = ""
    definition: str = ""
    body: str = ""
    subject: str = ""
    window_start: str = ""
    window_end: str = ""
    quiet_hours: bool = False
    send_at: str = ""
    errors: dict[str, str] = field(default_factory=dict)
    body_problem: counter.TemplateProblem | None = None
    definition_problem: FilterProblem | None = None

    @classmethod
    def from_campaign(cls, campaign: Campaign, zone: str) -> Composed:
        return cls(
            name=campaign.name,
            channel=campaign.channel,
            definition=campaign.segment_filter or "",
            body=campaign.body,
            subject=campaign.subject or "",
            window_start=campaign.quiet_start or "",
            window_end=campaign.quiet_end or "",
            quiet_hours=campaign.respect_quiet_hours and campaign.channel == m.EMAIL,
            send_at=drafts.local_input(campaign.send_at, zone),
        )

    @classmethod
    def from_form(cls) -> Composed:
        form = request.form
        return cls(
            name=form.get("name", "").strip(),
            channel=form.get("channel", m.SMS),
            segment=form.get("segment", ""),
            definition=form.get("definition", "").strip(),
            body=form.get("body", "").replace("\r\n", "\n"),
            subject=form.get("subject", "").strip(),
            window_start=form.get("window_start", "").strip(),
            window_end=form.get("window_end", "").strip(),
            quiet_hours=form.get("quiet_hours") == "on",
            send_at=form.get("send_at", "").strip(),
        )


def _check(
    session: Session, huddle: Huddle, composed: Composed, now: datetime
) -> dict[str, Any] | None:
    """The arguments to draft with, or None after noting every problem on ``composed``."""
    errors = composed.errors
    if len(composed.name) > MAX_NAME:
        errors["name"] = f"Keep the name under {MAX_NAME} characters."
    if composed.channel not in m.CHANNELS:
        errors["channel"] = "Choose text message or email."
        composed.channel = m.SMS
    definition = composed.definition or composed.segment
    if len(definition) > MAX_DEFINITION:
        errors["definition"] = f"Keep the filter under {MAX_DEFINITION:,} characters."
    else:
        _check_audience(session, huddle, composed, definition)
    if not composed.body.strip():
        errors["body"] = "Write the message."
    else:
        try:
            templating.compile_template(composed.body, channel=composed.channel)  # type: ignore[arg-type]
        except templating.TemplateError as exc:
            composed.body_problem = counter.problem_for(composed.body, exc)
            errors["body"] = str(exc)
    if composed.channel == m.EMAIL and not composed.subject:
        errors["subject"] = "An email needs a subject."
    if bool(composed.window_start) != bool(composed.window_end):
        errors["window"] = "Give both the start and the end of the sending hours, or neither."
    send_at = None
    try:
        send_at = drafts.local_send_at(composed.send_at, huddle.timezone)
    except CampaignError as exc:
        errors["send_at"] = str(exc).removeprefix("send time: ").capitalize()
    if send_at is not None and send_at <= now:
        errors["send_at"] = "That time has passed: leave it empty to send when you launch."
    if errors:
        return None
    return {
        "huddle_slug": huddle.slug,
        "channel": composed.channel,
        "segment_filter": definition,
        "body": composed.body,
        "name": composed.name or None,
        "subject": composed.subject if composed.channel == m.EMAIL else None,
        "send_at": send_at,
        "quiet_start": composed.window_start or None,
        "quiet_end": composed.window_end or None,
        "respect_quiet_hours": composed.quiet_hours,
    }


def _check_audience(session: Session, huddle: Huddle, composed: Composed, definition: str) -> None:
    if definition.startswith("@"):
        try:
            definition = campaigns.resolve_segment(session, huddle, definition)
        except CampaignError:
            composed.errors["definition"] = f"There is no saved segment named “{definition[1:]}”."
            return
    try:
        segment_language.check_huddle(segment_language.parse(definition), huddle.slug)
    except segment_language.SegmentError as exc:
        composed.definition_problem = FilterProblem.at(definition, exc)
        composed.errors["definition"] = composed.definition_problem.message


_FIELD_OF_ERROR = {
    "segment": "definition",
    "body": "body",
    "subject": "subject",
    "quiet start": "window",
    "quiet end": "window",
}


def _error_field(message: str) -> str:
    prefix = message.partition(":")[0]
    if prefix in _FIELD_OF_ERROR:
        return _FIELD_OF_ERROR[prefix]
    if "window" in message:
        return "window"
    if "subject" in message:
        return "subject"
    return "form"


def _composer(huddle: Huddle, composed: Composed, campaign: Campaign | None = None) -> str:
    with services().read_sessions() as session:
        saved = list(
            session.scalars(
                select(Segment).where(Segment.huddle_id == huddle.id).order_by(Segment.name)
            )
        )
    if not composed.segment and composed.definition.startswith("@"):
        composed.segment = composed.definition
    return render_template(
        "campaigns/compose.html",
        composed=composed,
        campaign=campaign,
        channel=composed.channel,
        saved_segments=saved,
        count=counter.count(composed.body, huddle_name=huddle.name)
        if composed.channel == m.SMS
        else None,
        **_page_context(huddle),
    )


def _replaced(composed: Composed) -> Composed:
    """Apply a one-click suggestion of the counter (not saved: the form is shown again)."""
    which = request.form.get("replace", "")
    before = composed.body
    composed.body = (
        counter.replace_all(before) if which == "*" else counter.replace_one(before, which)
    )
    if composed.body == before:
        flash("Nothing to replace.", "message")
    else:
        flash("Replaced. Check the message, then save the draft.", "message")
    return composed


@bp.route("/new", methods=["GET", "POST"])
@huddle_page(CAMPAIGNS)
def new(slug: str) -> ResponseReturnValue:  # noqa: ARG001 (@huddle_page read it)
    """Compose a campaign and save it as a draft (nothing is sent until it is launched)."""
    with services().read_sessions() as session:
        huddle = _huddle(session)
        session.expunge(huddle)
    if request.method == "GET":
        return _composer(huddle, Composed())
    composed = Composed.from_form()
    if "replace" in request.form:
        return _composer(huddle, _replaced(composed))
    me = signed_in().access
    made_id = 0
    with services().sessions.begin() as session:
        arguments = _check(session, huddle, composed, utcnow())
        if arguments is not None:
            try:
                made = campaigns.create_campaign(session, created_by=me.email, **arguments)
            except (CampaignError, HuddleError) as exc:
                composed.errors[_error_field(str(exc))] = _sentence(str(exc))
            else:
                audit.record(
                    session,
                    audit.CAMPAIGN_CREATED,
                    actor_id=me.organizer_id,
                    actor_email=me.email,
                    huddle_id=huddle.id,
                    subject=f"campaign {made.id}",
                    detail={"channel": made.channel, "segment": made.segment_filter},
                    ip=request.remote_addr,
                )
                session.flush()
                made_id = made.id
    if composed.errors:
        return _composer(huddle, composed), 422
    flash("Draft saved. Preview it, send yourself a test, then launch it.", "message")
    return redirect(url_for(".show", slug=huddle.slug, campaign_id=made_id))


@bp.route("/<int:campaign_id>/edit", methods=["GET", "POST"])
@huddle_page(CAMPAIGNS)
def edit(slug: str, campaign_id: int) -> ResponseReturnValue:  # noqa: ARG001
    """Change a draft; a launched campaign is not edited."""
    with services().read_sessions() as session:
        huddle = _huddle(session)
        found = _campaign(session, campaign_id)
        session.expunge_all()
    if found.state != k.DRAFT:
        flash(
            f"This campaign is {STATE_LABELS[found.state].lower()}: only a draft is edited.",
            "error",
        )
        return redirect(url_for(".show", slug=huddle.slug, campaign_id=campaign_id))
    if request.method == "GET":
        return _composer(huddle, Composed.from_campaign(found, huddle.timezone), found)
    composed = Composed.from_form()
    if "replace" in request.form:
        return _composer(huddle, _replaced(composed), found)
    with services().sessions.begin() as session:
        arguments = _check(session, huddle, composed, utcnow())
        if arguments is not None:
            locked = _campaign(session, campaign_id, lock=True)
            try:
                drafts.update_draft(session, locked, **arguments)
            except (CampaignError, HuddleError) as exc:
                composed.errors[_error_field(str(exc))] = _sentence(str(exc))
    if composed.errors:
        return _composer(huddle, composed, found), 422
    flash("Draft saved.", "message")
    return redirect(url_for(".show", slug=huddle.slug, campaign_id=campaign_id))


@bp.get("/counter")
@huddle_page(CAMPAIGNS)
def counter_fragment(slug: str) -> ResponseReturnValue:  # noqa: ARG001
    """The composer's segment counter for ``body`` (a fragment, refreshed as you type)."""
    body = request.args.get("body", "")[: templating.SMS_MAX_SOURCE + 1]
    channel = request.args.get("channel", m.SMS)
    huddle = current_huddle()
    shown = counter.count(body, huddle_name=huddle.name) if channel == m.SMS else None
    return render_template("campaigns/_counter.html", count=shown, channel=channel)


def _sentence(message: str) -> str:
    """An engine message as a sentence for the page ("segment: …" loses its prefix)."""
    head, sep, rest = message.partition(": ")
    if sep and head in _FIELD_OF_ERROR:
        message = rest
    message = message.strip()
    return message[:1].upper() + message[1:] + ("" if message.endswith(".") else ".")


# --- one campaign ------------------------------------------------------------------------------


@bp.get("/<int:campaign_id>")
@huddle_page(CAMPAIGNS)
def show(slug: str, campaign_id: int) -> ResponseReturnValue:  # noqa: ARG001
    """A draft: its preview and test send. Launched: live progress, then the report."""
    now = utcnow()
    with services().read_sessions() as session:
        huddle = _huddle(session)
        found = _campaign(session, campaign_id)
        shown = (
            previews.preview(session, found, huddle, now=now) if found.state == k.DRAFT else None
        )
        report = reports.report(session, found, now=now) if found.state != k.DRAFT else None
        return render_template(
            "campaigns/show.html",
            campaign=found,
            preview=shown,
            report=report,
            progress=report.progress if report else None,
            attribution_days=reports.ATTRIBUTION.days,
            **_page_context(huddle),
        )


@bp.get("/<int:campaign_id>/progress")
@huddle_page(CAMPAIGNS)
def progress(slug: str, campaign_id: int) -> ResponseReturnValue:  # noqa: ARG001
    """The live part of a launched campaign's page (polled every 2 s until it is final)."""
    with services().read_sessions() as session:
        huddle = _huddle(session)
        found = _campaign(session, campaign_id)
        report = reports.report(session, found, now=utcnow())
        return render_template(
            "campaigns/_progress.html",
            campaign=found,
            report=report,
            progress=report.progress,
            attribution_days=reports.ATTRIBUTION.days,
            **_page_context(huddle),
        )


@bp.post("/<int:campaign_id>/test")
@huddle_page(CAMPAIGNS)
def test_send(slug: str, campaign_id: int) -> ResponseReturnValue:  # noqa: ARG001
    """Send the message once to your own number or address, marked [TEST]."""
    svc = services()
    to = request.form.get("to", "").strip()
    back = redirect(url_for(".show", slug=current_huddle().slug, campaign_id=campaign_id) + "#test")
    with svc.read_sessions() as session:  # closed before sending: the sandbox writes its outbox
        huddle = _huddle(session)
        found = _campaign(session, campaign_id)
        if not to:
            flash("Test not sent: give your phone number or email address.", "error")
            return back
        if len(to) > MAX_ADDRESS:
            flash(
                "Test not sent: that is too long for a phone number or an email address.", "error"
            )
            return back
        try:
            message = launches.test_message(
                session, found, huddle, to, default_region=svc.settings.default_region
            )
        except CampaignError as exc:
            flash(f"Test not sent: {_sentence(str(exc).removeprefix('to: '))}", "error")
            return back
    try:
        sent = launches.send_test(message, svc.settings, svc.sessions)
    except RecipientOptedOut as exc:
        flash(
            f"Test not sent: the provider refused {to} because it replied STOP to this sender "
            f"(error {exc.code}). Text START to it from that phone to receive tests again.",
            "error",
        )
        return back
    except UncertainSendError as exc:
        flash(f"The provider did not answer clearly; the test may have gone out ({exc}).", "error")
        return back
    except SendError as exc:
        words = reports.ERROR_WORDS.get(exc.code or "", "")
        detail = f"{words} (error {exc.code})" if words else str(exc)
        flash(f"Test not sent: the provider refused {to}: {detail}.", "error")
        return back
    flash(f"Test sent to {sent.to}.", "message")
    return back


@bp.get("/<int:campaign_id>/launch")
@huddle_page(CAMPAIGNS)
def confirm(slug: str, campaign_id: int) -> ResponseReturnValue:  # noqa: ARG001
    """The confirmation: who gets it and about how long it takes, before anything is sent."""
    now = utcnow()
    with services().read_sessions() as session:
        huddle = _huddle(session)
        found = _campaign(session, campaign_id)
        if found.state != k.DRAFT:
            flash(
                f"This campaign is {STATE_LABELS[found.state].lower()}: it was launched already.",
                "message",
            )
            return redirect(url_for(".show", slug=huddle.slug, campaign_id=campaign_id))
        figures = launches.estimate(
            session, found, huddle, now=now, default_sms_rate=services().settings.default_sms_rate
        )
        return render_template(
            "campaigns/confirm.html",
            campaign=found,
            estimate=figures,
            duration=launches.duration_words(figures.seconds),
            scheduled=found.send_at is not None and found.send_at > now,
            **_page_context(huddle),
        )


@bp.post("/<int:campaign_id>/launch")
@huddle_page(CAMPAIGNS)
def launch(slug: str, campaign_id: int) -> ResponseReturnValue:  # noqa: ARG001
    """Launch (or schedule) a draft, once: the row lock and its state refuse a second time."""
    me = signed_in().access
    slug_now = current_huddle().slug
    with services().sessions.begin() as session:
        found = _campaign(session, campaign_id, lock=True)
        try:
            state = launches.launch(session, found, now=utcnow(), enqueue=jobs.enqueue_launch)
        except launches.TransitionRefused as exc:
            label = STATE_LABELS.get(exc.state, exc.state).lower()
            flash(
                f"This campaign is {label}: it was launched once already, and is not sent twice.",
                "error",
            )
            state = None
        else:
            audit.record(
                session,
                audit.CAMPAIGN_LAUNCHED,
                actor_id=me.organizer_id,
                actor_email=me.email,
                huddle_id=current_huddle().id,
                subject=f"campaign {found.id}",
                detail={"state": state},
                ip=request.remote_addr,
            )
    if state == k.SCHEDULED:
        flash("Scheduled: it starts sending at the time you chose.", "message")
    elif state == k.SENDING:
        flash("Launched: it is sending now.", "message")
    return redirect(url_for(".show", slug=slug_now, campaign_id=campaign_id))


def _transition(campaign_id: int, action: str) -> ResponseReturnValue:
    slug = current_huddle().slug
    with services().sessions.begin() as session:
        found = _campaign(session, campaign_id, lock=True)
        try:
            launches.transition(
                session,
                found,
                action,
                enqueue_launch=jobs.enqueue_launch,
                enqueue_resume=jobs.resume_campaign,
            )
        except launches.TransitionRefused as exc:
            label = STATE_LABELS.get(exc.state, exc.state).lower()
            flash(f"Cannot {action} it: this campaign is {label}.", "error")
        else:
            done = {"pause": "Paused", "resume": "Resumed", "cancel": "Cancelled"}[action]
            flash(f"{done}.", "message")
    return redirect(url_for(".show", slug=slug, campaign_id=campaign_id))


@bp.post("/<int:campaign_id>/pause")
@huddle_page(CAMPAIGNS)
def pause(slug: str, campaign_id: int) -> ResponseReturnValue:  # noqa: ARG001
    return _transition(campaign_id, "pause")


@bp.post("/<int:campaign_id>/resume")
@huddle_page(CAMPAIGNS)
def resume(slug: str, campaign_id: int) -> ResponseReturnValue:  # noqa: ARG001
    return _transition(campaign_id, "resume")


@bp.post("/<int:campaign_id>/cancel")
@huddle_page(CAMPAIGNS)
def cancel(slug: str, campaign_id: int) -> ResponseReturnValue:  # noqa: ARG001
    return _transition(campaign_id, "cancel")
