"""The public join page of each huddle: ``/join/<slug>`` and its email confirmation link.

The logic lives in :mod:`outreach.join`; this module is the HTTP side: CSRF (Flask-WTF, app-wide),
the honeypot, the per-IP limit, and the pages. The honeypot is a text field hidden from people
(``website``); a filled one gets the success page and nothing is stored or sent.
"""

from __future__ import annotations

import logging

from flask import Blueprint, Response, current_app, render_template, request
from flask.typing import ResponseReturnValue
from flask_wtf.csrf import CSRFError
from limits import parse

from outreach import join as wj
from outreach.addresses.emails import mask_email
from outreach.models import Huddle
from outreach.people.huddles import HuddleError, get_huddle
from web.access import public
from web.extensions import csrf, services, throttle

log = logging.getLogger(__name__)

bp = Blueprint("join", __name__)

HONEYPOT_FIELD = "website"


def _huddle(slug: str) -> Huddle | None:
    with services().read_sessions() as db:
        try:
            return get_huddle(db, slug)
        except HuddleError:
            return None


def _not_found() -> ResponseReturnValue:
    return (
        render_template(
            "join/error.html",
            title="Huddle not found",
            message="We couldn't find that huddle. Check the link you were given.",
            huddle=None,
        ),
        404,
    )


def _form_page(
    huddle: Huddle,
    form: wj.JoinForm,
    *,
    errors: dict[str, str] | None = None,
    banner: str | None = None,
    status: int = 200,
) -> ResponseReturnValue:
    page = render_template(
        "join/form.html",
        huddle=huddle,
        form=form,
        errors=errors or {},
        banner=banner,
        sms_disclosure=wj.sms_disclosure(huddle),
        email_disclosure=wj.email_disclosure(huddle),
    )
    # The page carries this visitor's CSRF token: no shared cache may keep it.
    return Response(page, status=status, headers={"Cache-Control": "private, no-store"})


@bp.get("/join/<slug>")
@public("a huddle's join form")
def form(slug: str) -> ResponseReturnValue:
    huddle = _huddle(slug)
    if huddle is None:
        return _not_found()
    return _form_page(huddle, wj.JoinForm())


@bp.post("/join/<slug>")
@public("joining, throttled per client")
def submit(slug: str) -> ResponseReturnValue:
    huddle = _huddle(slug)
    if huddle is None:
        return _not_found()
    svc = services()
    limit = parse(current_app.config["JOIN_RATE_LIMIT"])  # per IP, "5 per 10 minutes"
    if not throttle().hit(limit, "join", request.remote_addr or "unknown"):
        log.info("join %s: rate limit for %s", huddle.slug, request.remote_addr)
        page = render_template(
            "join/error.html",
            title="Too many sign-ups",
            message=(
                "We've had a lot of sign-ups from your connection in the last few minutes. "
                "Please wait ten minutes and try again."
            ),
            huddle=huddle,
        )
        retry = throttle().retry_after(limit, "join", request.remote_addr or "unknown")
        return Response(page, status=429, headers={"Retry-After": str(retry)})
    form_data = wj.JoinForm.from_mapping(request.form)
    if request.form.get(HONEYPOT_FIELD, "").strip():
        log.info(
            "join %s: honeypot filled from %s; nothing stored", huddle.slug, request.remote_addr
        )
        return _done_page(huddle, wj.JoinOutcome(member_id=0, email=wj.EMAIL_SENT), form_data.email)
    valid, errors = wj.validate(form_data, svc.settings.default_region)
    if valid is None:
        return _form_page(
            huddle,
            form_data,
            errors=errors,
            banner="Please fix the highlighted fields.",
            status=400,
        )
    outcome = wj.submit(
        svc.settings,
        svc.sessions,
        huddle,
        valid,
        wj.Visitor(request.remote_addr, request.user_agent.string),
        base_url=svc.settings.public_base_url or request.host_url,
    )
    log.info(
        "join %s: member %s, email %s, sms %s",
        huddle.slug,
        outcome.member_id,
        outcome.email,
        outcome.sms or "-",
    )
    return _done_page(huddle, outcome, valid.email)


def _done_page(huddle: Huddle, outcome: wj.JoinOutcome, email: str) -> ResponseReturnValue:
    keyword = huddle.keywords[0].keyword if huddle.keywords else None
    return render_template(
        "join/done.html",
        huddle=huddle,
        email=outcome.email,
        sms=outcome.sms,
        address=mask_email(email) if "@" in email else email,
        sender=_display_number(outcome.sender_number or huddle.sender_number),
        keyword=keyword,
        contact=huddle.support_contact or huddle.email_from_address,
    )


def _display_number(e164: str | None) -> str | None:
    if not e164:
        return None
    if e164.startswith("+1") and len(e164) == 12:
        return f"({e164[2:5]}) {e164[5:8]}-{e164[8:]}"
    return e164


@bp.errorhandler(CSRFError)
def _expired(error: CSRFError) -> ResponseReturnValue:
    """A POST without this visitor's CSRF token: the form again, with what they typed."""
    log.info("join: %s", error.description)
    huddle = _huddle(request.view_args.get("slug", "") if request.view_args else "")
    if huddle is None or request.endpoint != "join.submit":
        return _not_found() if huddle is None else _link_problem(huddle, expired=False)
    return _form_page(
        huddle,
        wj.JoinForm.from_mapping(request.form),
        banner="This form had expired. Please check your details and send it again.",
        status=400,
    )


@bp.get("/join/<slug>/confirm/<token>")
@public("an emailed confirmation link, signed")
def confirm_page(slug: str, token: str) -> ResponseReturnValue:
    """The link in the email: a page with one button, and nothing changed yet.

    Mail scanners and link previews (Safe Links, corporate proxies, chat unfurls) fetch every
    link in a message: a link that confirmed on GET would record consent nobody gave. Only the
    person's own press of the button (a POST to the same URL) confirms.
    """
    try:
        huddle, _target = _confirm_link(slug, token)
    except _BadLink as bad:
        return bad.page
    return _private(render_template("join/confirm.html", huddle=huddle))


@bp.post("/join/<slug>/confirm/<token>")
@public("confirming, with the signed link")
@csrf.exempt  # the signed token in the URL is the credential (as for unsubscribe links)
def confirm(slug: str, token: str) -> ResponseReturnValue:
    try:
        huddle, target = _confirm_link(slug, token)
    except _BadLink as bad:
        return bad.page
    svc = services()
    result = wj.confirm(
        svc.sessions, huddle, target, wj.Visitor(request.remote_addr, request.user_agent.string)
    )
    log.info("join %s: confirm member %s: %s", huddle.slug, target.member_id, result.status)
    return _private(render_template("join/confirmed.html", huddle=huddle, status=result.status))


class _BadLink(Exception):
    def __init__(self, page: ResponseReturnValue) -> None:
        super().__init__()
        self.page = page


def _confirm_link(slug: str, token: str) -> tuple[Huddle, wj.ConfirmTarget]:
    """The huddle and member a confirmation link names; else ``_BadLink`` with the page to show."""
    huddle = _huddle(slug)
    if huddle is None:
        raise _BadLink(_not_found())
    try:
        target = wj.read_confirm_token(services().settings, token)
    except wj.ExpiredConfirmLink:
        raise _BadLink(_link_problem(huddle, expired=True)) from None
    except wj.ConfirmLinkError:
        raise _BadLink(_link_problem(huddle, expired=False)) from None
    if target.huddle_id != huddle.id:
        raise _BadLink(_link_problem(huddle, expired=False))
    return huddle, target


def _private(page: str) -> Response:
    """The link's token is a credential in the URL: keep it out of caches and referrers."""
    return Response(page, headers={"Referrer-Policy": "no-referrer", "Cache-Control": "no-store"})


def _link_problem(huddle: Huddle, *, expired: bool) -> ResponseReturnValue:
    if expired:
        title = "This confirmation link has expired"
        message = (
            f"Confirmation links work for {wj.CONFIRM_MAX_AGE // 86400} days. Fill in the form "
            "again and we'll send you a fresh one."
        )
    else:
        title = "This confirmation link doesn't work"
        message = (
            "It may have been cut short when it was copied. Try clicking the link in the email "
            "itself, or fill in the form again for a fresh one. Nothing has been changed."
        )
    page = render_template("join/error.html", title=title, message=message, huddle=huddle)
    return Response(
        page, status=410 if expired else 400, headers={"Referrer-Policy": "no-referrer"}
    )
