"""Signing in and out of the dashboard (Flask-Login sessions, argon2 passwords, CSRF on every form).

A session names the organizer and their ``session_version``; signing out bumps the version, so
every session of that person ends, on every device. Failed sign-ins are counted per email and
per client: the tenth wrong password for an address within a minute is refused before the
password is checked, so guessing costs the guesser a minute per nine tries.
"""

from __future__ import annotations

import logging
from urllib.parse import urlsplit

from flask import Blueprint, Flask, redirect, render_template, request, url_for
from flask.typing import ResponseReturnValue
from flask_login import LoginManager, current_user, login_user, logout_user
from limits import parse
from sqlalchemy.orm import Session

from outreach.accounts import audit, users
from outreach.accounts.access import access_of
from outreach.addresses.emails import mask_email
from outreach.models import Organizer
from web.access import SIGNED_IN, SignedIn, public, requires, signed_in
from web.extensions import services, throttle

log = logging.getLogger(__name__)

bp = Blueprint("auth", __name__)
login_manager = LoginManager()
login_manager.login_view = "auth.login"
login_manager.login_message = "Sign in to see that page."
login_manager.session_protection = "basic"

FAILURES_PER_EMAIL = parse("9 per minute")
FAILURES_PER_CLIENT = parse("30 per minute")


def init_app(app: Flask) -> None:
    login_manager.init_app(app)
    app.register_blueprint(bp)


@login_manager.user_loader
def _load(user_id: str) -> SignedIn | None:
    head, _, version = user_id.partition(".")
    if not head.isdigit() or not version.isdigit():
        return None
    with services().read_sessions() as session:
        organizer = session.get(Organizer, int(head))
        if (
            organizer is None
            or organizer.disabled_at is not None
            or organizer.session_version != int(version)
        ):
            return None
        return _signed_in(session, organizer)


def _signed_in(session: Session, organizer: Organizer) -> SignedIn:
    return SignedIn(
        organizer.id,
        organizer.session_version,
        organizer.name,
        access_of(session, organizer),
    )


@bp.get("/login")
@public("the sign-in form")
def login() -> ResponseReturnValue:
    if current_user.is_authenticated:
        return redirect(url_for("pages.home"))
    return render_template("auth/login.html", email="", error=None, next=_next_url())


@bp.post("/login")
@public("signing in")
def login_submit() -> ResponseReturnValue:
    email = request.form.get("email", "").strip()[:254]
    password = request.form.get("password", "")[:1024]
    client = request.remote_addr or "unknown"
    keys = (("login-email", email.lower()), ("login-client", client))
    limits = (FAILURES_PER_EMAIL, FAILURES_PER_CLIENT)
    if not all(throttle().allows(limit, *key) for limit, key in zip(limits, keys, strict=True)):
        log.warning("sign-in refused unchecked: too many failures for %s", mask_email(email))
        page = render_template(
            "auth/login.html",
            email=email,
            error="Too many failed sign-ins. Wait a minute, then try again.",
            next=_next_url(),
        )
        return page, 429, {"Retry-After": "60"}
    with services().sessions.begin() as session:
        organizer = users.authenticate(session, email, password)
        if organizer is None:
            audit.record(
                session, audit.SIGN_IN_REFUSED, actor_id=None, actor_email=email.lower(), ip=client
            )
        else:
            audit.record(
                session,
                audit.SIGNED_IN,
                actor_id=organizer.id,
                actor_email=organizer.email,
                ip=client,
            )
            who = _signed_in(session, organizer)
    if organizer is None:
        for limit, key in zip(limits, keys, strict=True):
            throttle().hit(limit, *key)
        page = render_template(
            "auth/login.html", email=email, error="Wrong email or password.", next=_next_url()
        )
        return page, 401
    login_user(who)
    return redirect(_next_url() or url_for("pages.home"))


@bp.post("/logout")
@requires(SIGNED_IN)
def logout() -> ResponseReturnValue:
    who = signed_in()
    with services().sessions.begin() as session:
        users.end_sessions(session, who.organizer_id)
        audit.record(
            session,
            audit.SIGNED_OUT,
            actor_id=who.organizer_id,
            actor_email=who.access.email,
            ip=request.remote_addr,
        )
    logout_user()
    return redirect(url_for("auth.login"))


def _next_url() -> str | None:
    """Where to go after signing in: a path on this site only, never another host."""
    target = request.values.get("next", "")
    parts = urlsplit(target)
    if not target.startswith("/") or target.startswith("//") or parts.scheme or parts.netloc:
        return None
    return target
