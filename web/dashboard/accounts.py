"""People: admins invite organizers by email and manage their access; anyone resets a password.

``/people`` (admins) lists every account with its role per huddle, invites by email, changes or
removes a role and disables an account, through ``outreach.accounts.users``. The links the
emails carry (``/invite/<token>``, ``/reset/<token>``) are public: the signed token is the
credential, it expires, and it stops working once a password is set
(``outreach.accounts.invites``). ``/forgot`` answers the same whether or not the address has an
account, and is throttled per address and per client.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

from flask import Blueprint, flash, redirect, render_template, request, url_for
from flask.typing import ResponseReturnValue
from flask_login import login_user
from limits import parse
from sqlalchemy import select
from sqlalchemy.orm import Session

from outreach.accounts import audit, invites, passwords, users
from outreach.accounts.access import USERS, access_of
from outreach.addresses.emails import InvalidEmail, mask_email, normalize_email
from outreach.app.clock import utcnow
from outreach.models import Huddle, Organizer, OrganizerHuddle
from outreach.models import accounts as a
from outreach.providers import SendError
from web.access import SignedIn, public, requires, signed_in
from web.extensions import services, throttle

log = logging.getLogger(__name__)

bp = Blueprint("accounts", __name__)
LinkView = Callable[[Session, Organizer, str], ResponseReturnValue]

MAX_EMAIL = 254
MAX_NAME = 200
MAX_PASSWORD = 1024
# What an invitation may give: a role in one huddle, or admin of everything.
INVITE_ROLES: dict[str, str] = {
    a.RESPONDER: "Responder",
    a.ORGANIZER: "Organizer",
    a.ADMIN: "Admin (every huddle)",
}
HUDDLE_ROLE_LABELS = {a.RESPONDER: "Responder", a.ORGANIZER: "Organizer"}
RESETS_PER_EMAIL = parse("3 per 15 minutes")
RESETS_PER_CLIENT = parse("20 per hour")


# --- the people page (admins) ---------------------------------------------------------------


@bp.get("/people")
@requires(USERS)
def people() -> ResponseReturnValue:
    return _people_page()


@bp.post("/people/invite")
@requires(USERS)
def invite() -> ResponseReturnValue:
    """Make the account (no password yet, its role in place) and email it the link."""
    form = {k: request.form.get(k, "") for k in ("email", "name", "huddle", "role")}
    errors = _invite_errors(form)
    if errors:
        return _people_page(invite_form=form, errors=errors, status=400)
    admin = form["role"] == a.ADMIN
    by = signed_in().access.email
    try:
        with services().sessions.begin() as session:
            organizer = users.invite_user(
                session,
                email=form["email"],
                name=form["name"].strip(),
                admin=admin,
                huddles=[] if admin else [form["huddle"]],
                role=a.ORGANIZER if admin else form["role"],
                by=by,
            )
            token, to, name = _invitation(organizer)
            where = _where(session, organizer)
    except users.AccountError as exc:
        errors = {"form": _sentence(str(exc))}
        return _people_page(invite_form=form, errors=errors, status=400)
    if _email_invitation(token, to=to, name=name, where=where):
        flash(f"Invitation sent to {to}.", "message")
    return redirect(url_for("accounts.people"))


@bp.post("/people/resend")
@requires(USERS)
def resend() -> ResponseReturnValue:
    """A new invitation link for an account whose owner has not set a password yet."""
    email = request.form.get("email", "")[:MAX_EMAIL]
    with services().sessions.begin() as session:
        organizer = _account(session, email)
        if organizer is None:
            return _people_page(errors={"form": "There is no such account."}, status=400)
        if organizer.password_hash is not None or organizer.disabled_at is not None:
            message = f"{organizer.email} has a password already, or is disabled: no invitation."
            return _people_page(errors={"form": message}, status=400)
        token, to, name = _invitation(organizer)
        where = _where(session, organizer)
    if _email_invitation(token, to=to, name=name, where=where):
        flash(f"A new invitation is on its way to {to}.", "message")
    return redirect(url_for("accounts.people"))


@bp.post("/people/access")
@requires(USERS)
def set_access() -> ResponseReturnValue:
    """Give a person a role in a huddle, or change the role they have there."""
    email, slug, role = (request.form.get(k, "")[:MAX_EMAIL] for k in ("email", "huddle", "role"))
    if role not in HUDDLE_ROLE_LABELS:
        return _people_page(errors={"form": "Choose a role: responder or organizer."}, status=400)
    try:
        with services().sessions.begin() as session:
            organizer = _account(session, email)
            if organizer is None:
                return _people_page(errors={"form": "There is no such account."}, status=400)
            if organizer.is_admin:
                message = f"{organizer.email} is an admin: they can use every huddle already."
                return _people_page(errors={"form": message}, status=400)
            users.grant(session, email=organizer.email, huddles=[slug], role=role, by=_actor())
            who = organizer.name
            where = session.scalar(select(Huddle.name).where(Huddle.slug == slug))
    except users.AccountError as exc:
        return _people_page(errors={"form": _sentence(str(exc))}, status=400)
    flash(f"{who} is now {HUDDLE_ROLE_LABELS[role].lower()} of {where}.", "message")
    return redirect(url_for("accounts.people"))


@bp.post("/people/remove")
@requires(USERS)
def remove() -> ResponseReturnValue:
    """Take a person out of one huddle; their account and other huddles stay."""
    email, slug = (request.form.get(k, "")[:MAX_EMAIL] for k in ("email", "huddle"))
    with services().sessions.begin() as session:
        organizer = _account(session, email)
        huddle = session.execute(
            select(Huddle.id, Huddle.name).where(Huddle.slug == slug)
        ).one_or_none()
        member = (
            None
            if organizer is None or huddle is None
            else session.get(OrganizerHuddle, (organizer.id, huddle.id))
        )
        if organizer is None or huddle is None or member is None:
            message = "That person has no access to that huddle: nothing to remove."
            return _people_page(errors={"form": message}, status=400)
        users.revoke(session, email=organizer.email, huddles=[slug], by=_actor())
        who, where = organizer.name, huddle.name
    flash(f"{who} no longer has access to {where}.", "message")
    return redirect(url_for("accounts.people"))


@bp.post("/people/disable")
@requires(USERS)
def disable() -> ResponseReturnValue:
    """No more sign-ins for this account; its sessions and API tokens end now."""
    email = request.form.get("email", "")[:MAX_EMAIL]
    with services().sessions.begin() as session:
        organizer = _account(session, email)
        if organizer is None:
            return _people_page(errors={"form": "There is no such account."}, status=400)
        if organizer.id == signed_in().organizer_id:
            message = "You can't disable your own account: ask another admin."
            return _people_page(errors={"form": message}, status=400)
        if organizer.disabled_at is not None:
            message = f"{organizer.email} is disabled already."
            return _people_page(errors={"form": message}, status=400)
        users.disable(session, email=organizer.email, by=_actor())
        who = organizer.email
    flash(f"{who} is disabled: they are signed out and can't sign in.", "message")
    return redirect(url_for("accounts.people"))


def _people_page(
    *,
    invite_form: dict[str, str] | None = None,
    errors: dict[str, str] | None = None,
    status: int = 200,
) -> ResponseReturnValue:
    with services().read_sessions() as session:
        accounts = users.list_users(session)
        awaiting = invites.awaiting(session)
        huddles = session.execute(select(Huddle.slug, Huddle.name).order_by(Huddle.slug)).all()
    page = render_template(
        "accounts/people.html",
        accounts=accounts,
        awaiting=awaiting,
        huddles=huddles,
        huddle_names=dict(huddles),
        me=signed_in().access.email,
        invite_roles=INVITE_ROLES,
        huddle_roles=HUDDLE_ROLE_LABELS,
        form=invite_form or {"email": "", "name": "", "huddle": "", "role": a.ORGANIZER},
        errors=errors or {},
        max_email=MAX_EMAIL,
        max_name=MAX_NAME,
    )
    return page, status


def _invite_errors(form: dict[str, str]) -> dict[str, str]:
    errors: dict[str, str] = {}
    if not form["email"].strip():
        errors["email"] = "Enter the email address to send the invitation to."
    elif len(form["email"]) > MAX_EMAIL:
        errors["email"] = f"An email address has at most {MAX_EMAIL} characters."
    else:
        try:
            form["email"] = normalize_email(form["email"])
        except InvalidEmail:
            errors["email"] = "That is not an email address: it looks like name@example.org."
    if len(form["name"]) > MAX_NAME:
        errors["name"] = f"A name has at most {MAX_NAME} characters."
    if form["role"] not in INVITE_ROLES:
        errors["role"] = "Choose a role."
    elif form["role"] != a.ADMIN and not form["huddle"]:
        errors["huddle"] = "Choose the huddle they will work in (admins get every huddle)."
    return errors


def _invitation(organizer: Organizer) -> tuple[str, str, str]:
    """(token, address, name), read while the account is still attached to its session."""
    token = invites.make_token(services().settings, invites.INVITE, organizer)
    return token, organizer.email, organizer.name


def _email_invitation(token: str, *, to: str, name: str, where: str) -> bool:
    """Send it after the account's transaction commits; say so on the page if it failed."""
    url = invites.link_url(_base_url(), invites.INVITE, token)
    who = signed_in()
    try:
        invites.send_invitation(
            services().settings,
            services().sessions,
            to=to,
            name=name,
            invited_by=who.name,
            where=where,
            url=url,
        )
    except SendError as exc:
        log.warning("invitation to %s not sent: %s", mask_email(to), exc)
        flash(
            f"The account for {to} is made, but the email could not be sent ({exc.message}). "
            "Try “Send the invitation again” later.",
            "error",
        )
        return False
    with services().sessions.begin() as session:
        audit.record(
            session,
            audit.INVITATION_SENT,
            actor_id=who.organizer_id,
            actor_email=who.access.email,
            subject=to,
            ip=request.remote_addr,
        )
    return True


def _where(session: Session, organizer: Organizer) -> str:
    """What the invitation lets them do, in words for the email."""
    if organizer.is_admin:
        return "run every huddle as an admin"
    rows = session.execute(
        select(Huddle.name, OrganizerHuddle.role)
        .join(OrganizerHuddle, OrganizerHuddle.huddle_id == Huddle.id)
        .where(OrganizerHuddle.organizer_id == organizer.id)
        .order_by(Huddle.name)
    ).all()
    if not rows:
        return "help your huddle"
    parts = [
        f"read and answer texts to {name}"
        if role == a.RESPONDER
        else f"reach the members of {name} (campaigns, segments and the inbox)"
        for name, role in rows
    ]
    return " and ".join(parts)


def _account(session: Session, email: str) -> Organizer | None:
    try:
        address = normalize_email(email)
    except InvalidEmail:
        return None
    return session.scalars(select(Organizer).where(Organizer.email == address)).one_or_none()


def _actor() -> str:
    return signed_in().access.email


def _sentence(text: str) -> str:
    """users.AccountError speaks like a command line ("no huddle with slug 'x'"): a sentence."""
    return text[:1].upper() + text[1:] + ("" if text.endswith(".") else ".")


# --- links from the emails, and asking for one (public) ----------------------------------


@bp.get("/invite/<token>")
@public("the invitation link: the signed token is the credential")
def accept(token: str) -> ResponseReturnValue:
    return _with_link(invites.INVITE, token, _accept_form)


@bp.post("/invite/<token>")
@public("accepting an invitation: the signed token is the credential")
def accept_submit(token: str) -> ResponseReturnValue:
    return _with_link(invites.INVITE, token, _accept_submit, lock=True)


@bp.get("/reset/<token>")
@public("the password-reset link: the signed token is the credential")
def reset(token: str) -> ResponseReturnValue:
    return _with_link(invites.RESET, token, _reset_form)


@bp.post("/reset/<token>")
@public("setting a new password: the signed token is the credential")
def reset_submit(token: str) -> ResponseReturnValue:
    return _with_link(invites.RESET, token, _reset_submit, lock=True)


@bp.get("/forgot")
@public("asking for a password-reset link")
def forgot() -> ResponseReturnValue:
    return render_template("accounts/forgot.html", email="", error=None)


@bp.post("/forgot")
@public("asking for a password-reset link")
def forgot_submit() -> ResponseReturnValue:
    """Always the same answer, whether the address has an account or not."""
    raw = request.form.get("email", "")
    if len(raw) > MAX_EMAIL:
        error = f"An email address has at most {MAX_EMAIL} characters."
        return render_template("accounts/forgot.html", email="", error=error), 400
    try:
        email = normalize_email(raw)
    except InvalidEmail:
        error = "That is not an email address: it looks like name@example.org."
        return render_template("accounts/forgot.html", email=raw, error=error), 400
    client = request.remote_addr or "unknown"
    keys = (("reset-email", email), ("reset-client", client))
    limits = (RESETS_PER_EMAIL, RESETS_PER_CLIENT)
    if not all(throttle().allows(limit, *key) for limit, key in zip(limits, keys, strict=True)):
        log.warning("password reset refused: too many asked for %s", mask_email(email))
        error = "Too many links asked for. Wait a quarter of an hour, then try again."
        page = render_template("accounts/forgot.html", email=email, error=error)
        return page, 429, {"Retry-After": "900"}
    for limit, key in zip(limits, keys, strict=True):
        throttle().hit(limit, *key)
    link: tuple[str, str] | None = None  # (token, name) when the address has a live account
    with services().sessions.begin() as session:
        organizer = _account(session, email)
        if organizer is not None and organizer.disabled_at is None:
            link = (
                invites.make_token(services().settings, invites.RESET, organizer),
                organizer.name,
            )
            audit.record(
                session,
                audit.PASSWORD_RESET_SENT,
                actor_id=None,
                actor_email=email,
                subject=email,
                ip=client,
            )
    if link is not None:
        token, name = link
        url = invites.link_url(_base_url(), invites.RESET, token)
        try:
            invites.send_reset(
                services().settings, services().sessions, to=email, name=name, url=url
            )
        except SendError as exc:  # the answer stays the same: it must not tell who has an account
            log.warning("password reset to %s not sent: %s", mask_email(email), exc)
    return render_template("accounts/forgot_sent.html", email=email)


def _with_link(
    purpose: invites.Purpose, token: str, then: LinkView, *, lock: bool = False
) -> ResponseReturnValue:
    """Open the URL's link and go on with its account, or explain why it can't be used."""
    with services().sessions.begin() as session:
        try:
            organizer = invites.open_link(session, services().settings, purpose, token, lock=lock)
        except invites.LinkError as exc:
            status = 400 if isinstance(exc, invites.InvalidLink) else 410
            page = render_template(
                "accounts/link_error.html",
                purpose=purpose.name,
                problem=type(exc).__name__,
                days=invites.INVITE.max_age // 86400,
                minutes=invites.RESET.max_age // 60,
            )
            return page, status
        result: ResponseReturnValue = then(session, organizer, token)
        return result


def _accept_form(_session: Session, organizer: Organizer, token: str) -> ResponseReturnValue:
    return _accept_page(organizer, token, name=organizer.name, errors={})


def _accept_page(
    organizer: Organizer, token: str, *, name: str, errors: dict[str, str], status: int = 200
) -> ResponseReturnValue:
    page = render_template(
        "accounts/accept.html",
        token=token,
        email=organizer.email,
        name=name,
        errors=errors,
        min_length=passwords.MIN_LENGTH,
        max_name=MAX_NAME,
    )
    return page, status


def _accept_submit(session: Session, organizer: Organizer, token: str) -> ResponseReturnValue:
    name = request.form.get("name", "").strip()
    errors = _password_errors()
    if not name:
        errors["name"] = "Enter your name, as your huddle knows you."
    elif len(name) > MAX_NAME:
        errors["name"] = f"A name has at most {MAX_NAME} characters."
    if errors:
        return _accept_page(organizer, token, name=name[:MAX_NAME], errors=errors, status=400)
    organizer.name = name
    users.set_password(
        session,
        organizer.id,
        request.form["password"],
        by=organizer.email,
        action=audit.INVITATION_ACCEPTED,
    )
    _sign_in(session, organizer)
    flash(f"Welcome, {name}. Your password is set and you are signed in.", "message")
    return redirect(url_for("pages.home"))


def _reset_form(_session: Session, organizer: Organizer, token: str) -> ResponseReturnValue:
    return _reset_page(organizer, token, errors={})


def _reset_page(
    organizer: Organizer, token: str, *, errors: dict[str, str], status: int = 200
) -> ResponseReturnValue:
    page = render_template(
        "accounts/reset.html",
        token=token,
        email=organizer.email,
        errors=errors,
        min_length=passwords.MIN_LENGTH,
    )
    return page, status


def _reset_submit(session: Session, organizer: Organizer, token: str) -> ResponseReturnValue:
    """The new password ends every other session (the version goes up) and signs this one in."""
    errors = _password_errors()
    if errors:
        return _reset_page(organizer, token, errors=errors, status=400)
    users.set_password(
        session,
        organizer.id,
        request.form["password"],
        by=organizer.email,
        action=audit.PASSWORD_RESET,
    )
    _sign_in(session, organizer)
    flash("Your new password is set. You are signed in, and signed out everywhere else.", "message")
    return redirect(url_for("pages.home"))


def _password_errors() -> dict[str, str]:
    password = request.form.get("password", "")
    again = request.form.get("password_again", "")
    if len(password) > MAX_PASSWORD:
        return {"password": f"A password has at most {MAX_PASSWORD:,} characters."}
    if len(password) < passwords.MIN_LENGTH:
        return {"password": f"A password needs at least {passwords.MIN_LENGTH} characters."}
    if password != again:
        return {"password_again": "The two passwords are not the same. Type it again."}
    return {}


def _sign_in(session: Session, organizer: Organizer) -> None:
    organizer.last_sign_in_at = utcnow()
    session.flush()
    who = SignedIn(
        organizer.id, organizer.session_version, organizer.name, access_of(session, organizer)
    )
    login_user(who)


def _base_url() -> str:
    """PUBLIC_BASE_URL for the emails' links; the address this request came to if unset."""
    return services().settings.public_base_url or request.host_url.rstrip("/")
