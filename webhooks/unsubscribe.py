"""``/unsubscribe/<token>``: the email unsubscribe page and the RFC 8058 one-click endpoint.

``GET`` only shows what would stop and two choices (this huddle / all email from this network):
link scanners and mail previews fetch links, so a GET never changes anything. ``POST`` acts at
once. The POST takes no cookie, no login and no CSRF token: the signed token in the URL is the
credential, and a mailbox provider's one-click POST (body ``List-Unsubscribe=One-Click``) carries
nothing else. The client's address is ``request.remote_addr``, already fixed by ProxyFix.
"""

from __future__ import annotations

import logging

from flask import Blueprint, Response, render_template, request
from flask.typing import ResponseReturnValue
from sqlalchemy.exc import IntegrityError

from outreach import consent
from outreach.addresses.emails import mask_email
from outreach.consent import unsubscribe as u
from outreach.messages.copy import NETWORK_NAME
from outreach.models import Huddle
from outreach.models import consent as c
from outreach.models import members as m
from webhooks import services

log = logging.getLogger(__name__)

bp = Blueprint("unsubscribe", __name__)

ONE_CLICK_DETAIL = "List-Unsubscribe one-click (RFC 8058)"
PAGE_DETAIL = {
    u.SCOPE_HUDDLE: "unsubscribe page: this huddle",
    u.SCOPE_ALL: "unsubscribe page: all email from this network",
}
MAX_USER_AGENT = 500


@bp.after_request
def _private(response: Response) -> Response:
    # The token is a credential in the URL: keep it out of caches, referrers and search engines.
    response.headers["Cache-Control"] = "no-store"
    response.headers["Referrer-Policy"] = "no-referrer"
    response.headers["X-Robots-Tag"] = "noindex"
    return response


@bp.get("/unsubscribe/<token>")
def page(token: str) -> ResponseReturnValue:
    svc = services()
    try:
        target = u.read_token(svc.settings, token)
    except u.TokenError as exc:
        return _token_error(exc, one_click=False)
    with svc.sessions() as session:
        subject = u.load(session, target)
        if subject is None:
            return _gone(one_click=False)
        current = consent.get_subscription(session, subject.member, subject.huddle, target.channel)
        address = consent.address_for(subject.member, target.channel)
        return render_template(
            "unsubscribe/page.html",
            huddle=subject.huddle,
            what=_what(target.channel),
            everything="email" if target.channel == m.EMAIL else "texts",
            address=_mask(address, target.channel),
            already=current is not None and current.state == m.OPTED_OUT,
            contact=_contact(subject.huddle),
        )


@bp.post("/unsubscribe/<token>")
def act(token: str) -> ResponseReturnValue:
    form = request.form
    one_click = form.get("List-Unsubscribe", "").strip().lower() == "one-click"
    svc = services()
    try:
        target = u.read_token(svc.settings, token)
    except u.TokenError as exc:
        return _token_error(exc, one_click=one_click)
    # One-click is scoped to the huddle that sent the email; any other POST is the page's form,
    # and anything but an explicit "all" is the narrower choice.
    scope = u.SCOPE_ALL if not one_click and form.get("scope") == u.SCOPE_ALL else u.SCOPE_HUDDLE
    provenance = consent.Provenance(
        source=c.SOURCE_FORM,
        detail=ONE_CLICK_DETAIL if one_click else PAGE_DETAIL[scope],
        ip=request.remote_addr,
        user_agent=request.user_agent.string[:MAX_USER_AGENT] or None,
        actor="member",
    )
    for attempt in (1, 2):
        try:
            with svc.sessions() as session, session.begin():
                subject = u.load(session, target)
                if subject is None:
                    return _gone(one_click=one_click)
                result = u.unsubscribe(session, subject, scope, provenance)
                huddle = subject.huddle
            break
        except IntegrityError:
            # Two POSTs for the same member raced (a double click, a client retrying): the other
            # one created the row; the second pass finds it and changes nothing.
            if attempt == 2:
                raise
    log.info(
        "unsubscribe member %s huddle %s %s scope=%s%s: %s change(s)",
        target.member_id,
        target.huddle_id,
        target.channel,
        scope,
        " (one-click)" if one_click else "",
        len(result.huddle_names) + int(result.suppressed),
    )
    what = _what(target.channel)
    if one_click:
        text = f"Unsubscribed: no more {what} from {huddle.name}.\n"
        return Response(text, status=200, mimetype="text/plain")
    return render_template(
        "unsubscribe/done.html",
        huddle=huddle,
        what=what,
        scope=scope,
        network=NETWORK_NAME,
        contact=_contact(huddle),
    )


def _what(channel: str) -> str:
    return "texts" if channel == m.SMS else "emails"


def _mask(address: str | None, channel: str) -> str | None:
    if address is None:
        return None
    return mask_email(address) if channel == m.EMAIL else address[:-4] + "****"


def _contact(huddle: Huddle | None) -> str | None:
    if huddle is None:
        return None
    return huddle.support_contact or huddle.email_from_address


def _token_error(exc: u.TokenError, *, one_click: bool) -> ResponseReturnValue:
    expired = isinstance(exc, u.ExpiredToken)
    status = 410 if expired else 400
    huddle = None
    if isinstance(exc, u.ExpiredToken) and exc.target is not None:
        with services().sessions() as session:
            huddle = session.get(Huddle, exc.target.huddle_id)
    if one_click:
        text = (
            "This unsubscribe link has expired."
            if expired
            else "This unsubscribe link is not valid."
        ) + " Reply to the email to ask the organizers to remove you.\n"
        return Response(text, status=status, mimetype="text/plain")
    return (
        render_template(
            "unsubscribe/error.html",
            expired=expired,
            huddle=huddle,
            contact=_contact(huddle),
            network=NETWORK_NAME,
        ),
        status,
    )


def _gone(*, one_click: bool) -> ResponseReturnValue:
    if one_click:
        return Response("Nothing to unsubscribe: this address is no longer on our lists.\n")
    return (
        render_template("unsubscribe/error.html", gone=True, network=NETWORK_NAME, huddle=None),
        404,
    )
