"""A huddle's settings (admins): join keywords, sender, opt-in mode, the automatic answers with a
live segment counter, the sending window, the email identity and postal address.

Every change goes through :func:`outreach.people.huddles.update_settings`, which checks all
fields first: a refused save changes nothing and shows each error at its field.
"""

from __future__ import annotations

import unicodedata
from collections.abc import Mapping
from dataclasses import dataclass

from flask import Blueprint, flash, redirect, render_template, request, url_for
from flask.typing import ResponseReturnValue
from sqlalchemy import select
from sqlalchemy.orm import Session, selectinload

from outreach.accounts import audit
from outreach.accounts.access import SETTINGS
from outreach.messages import copy, encoding
from outreach.models import Huddle, Organizer
from outreach.models import huddles as h
from outreach.people.huddles import (
    EARLIEST_SEND,
    LATEST_SEND,
    MAX_COPY_CHARS,
    HuddleSettings,
    SettingsError,
    current_settings,
    update_settings,
)
from web.access import signed_in
from web.dashboard.core import current_huddle, huddle_page
from web.extensions import services

bp = Blueprint("huddle_settings", __name__, url_prefix="/h/<slug>/settings")

#: The automatic answers: (form field, label, the standard text's name in copy).
TEXTS = (
    ("help_text", "HELP answer", "help"),
    ("confirmation_text", "Confirmation request (double opt-in)", "confirm_ask"),
    ("welcome_text", "Welcome text", "welcome"),
)
MAX_FIELD_CHARS = 5000  # read no more of any field: a huge value is refused, not processed
MAX_NAMED = 10  # characters named by the counter


@dataclass(frozen=True)
class Culprit:
    char: str
    name: str


@dataclass(frozen=True)
class TextCount:
    """One automatic answer as the counter shows it."""

    field: str
    label: str
    standard: bool  # empty field: the standard text is measured, as it will be sent
    info: encoding.SegmentInfo
    culprits: list[Culprit]
    more: int
    plain_segments: int | None  # segments with curly quotes, dashes… made plain, if fewer
    too_long: bool


def _standard_texts(huddle: Huddle) -> dict[str, str]:
    """What the huddle sends when a text is left empty."""
    return {name: copy.message(standard, huddle) for name, _, standard in TEXTS}


def _name(char: str) -> str:
    name = unicodedata.name(char, "")
    code = f"U+{ord(char):04X}"
    return f"{name.lower()}, {code}" if name else code


def count_texts(texts: Mapping[str, str], standard: Mapping[str, str]) -> list[TextCount]:
    """What each automatic answer costs, and the characters that forced UCS-2."""
    counts = []
    for field_name, label, _ in TEXTS:
        own = texts.get(field_name, "")[:MAX_FIELD_CHARS].strip().replace("\r\n", "\n")
        body = own or standard[field_name]
        info = encoding.analyze(body)
        plain = encoding.analyze(encoding.gsm_suggestion(body)).segments
        counts.append(
            TextCount(
                field=field_name,
                label=label,
                standard=not own,
                info=info,
                culprits=[Culprit(c, _name(c)) for c in info.non_gsm_chars[:MAX_NAMED]],
                more=max(len(info.non_gsm_chars) - MAX_NAMED, 0),
                plain_segments=plain if plain < info.segments else None,
                too_long=len(body) > MAX_COPY_CHARS,
            )
        )
    return counts


def _load(session: Session, huddle_id: int) -> Huddle:
    return session.scalars(
        select(Huddle).options(selectinload(Huddle.keywords)).where(Huddle.id == huddle_id)
    ).one()


def _render(
    huddle: Huddle,
    form: HuddleSettings,
    *,
    errors: Mapping[str, str] | None = None,
    new_keyword: str = "",
    status: int = 200,
) -> ResponseReturnValue:
    standard = _standard_texts(huddle)
    texts = {name: getattr(form, name) or "" for name, _, _ in TEXTS}
    page = render_template(
        "settings/edit.html",
        form=form,
        keywords=[k.keyword for k in huddle.keywords],
        errors=errors or {},
        new_keyword=new_keyword,
        texts=TEXTS,
        standard=standard,
        counts=count_texts(texts, standard),
        earliest=EARLIEST_SEND.strftime("%H:%M"),
        latest=LATEST_SEND.strftime("%H:%M"),
        max_copy=MAX_COPY_CHARS,
        double=h.OPT_IN_DOUBLE,
        single=h.OPT_IN_SINGLE,
    )
    return page, status


def _posted() -> HuddleSettings:
    """The form's fields as sent; a field the form did not send is left unchanged."""

    def field(name: str) -> str | None:
        return request.form[name][:MAX_FIELD_CHARS] if name in request.form else None

    return HuddleSettings(
        sender=field("sender"),
        opt_in_mode=field("opt_in_mode"),
        help_text=field("help_text"),
        confirmation_text=field("confirmation_text"),
        welcome_text=field("welcome_text"),
        quiet_start=field("quiet_start"),
        quiet_end=field("quiet_end"),
        email_from_address=field("email_from_address"),
        email_from_name=field("email_from_name"),
        postal_address=field("postal_address"),
    )


def _actor_email(session: Session) -> str:
    email = session.scalar(select(Organizer.email).where(Organizer.id == signed_in().organizer_id))
    return email or ""


def _save(wanted: HuddleSettings) -> tuple[Huddle | None, Mapping[str, str], tuple[str, ...]]:
    """Apply ``wanted`` and audit it, in one transaction: (None, {}, changed) when saved,
    (the huddle as it is, errors, ()) when refused."""
    huddle_id = current_huddle().id
    try:
        with services().sessions.begin() as session:
            huddle = _load(session, huddle_id)
            change = update_settings(session, huddle, wanted)
            if change.changed:
                audit.record(
                    session,
                    audit.HUDDLE_SETTINGS_CHANGED,
                    actor_id=signed_in().organizer_id,
                    actor_email=_actor_email(session),
                    huddle_id=huddle_id,
                    subject=huddle.slug,
                    detail=change.as_detail(),
                    ip=request.remote_addr,
                )
    except SettingsError as exc:
        with services().read_sessions() as session:
            huddle = _load(session, huddle_id)
            session.expunge_all()
        return huddle, exc.errors, ()
    return None, {}, change.changed


@bp.route("/", methods=["GET", "POST"])
@huddle_page(SETTINGS)
def edit(slug: str) -> ResponseReturnValue:
    if request.method == "GET":
        with services().read_sessions() as session:
            huddle = _load(session, current_huddle().id)
            return _render(huddle, current_settings(huddle))
    wanted = _posted()
    refused, errors, changed = _save(wanted)
    if refused is not None:
        flash("Some settings need fixing (see below). Nothing was saved.", "error")
        return _render(refused, wanted, errors=errors, status=400)
    flash("Settings saved." if changed else "Nothing changed.", "message")
    return redirect(url_for("huddle_settings.edit", slug=slug))


def _keyword_change(slug: str, keywords: list[str], new_keyword: str = "") -> ResponseReturnValue:
    refused, errors, changed = _save(HuddleSettings(keywords=tuple(keywords)))
    if refused is not None:
        flash("That keyword change was not saved.", "error")
        return _render(
            refused, current_settings(refused), errors=errors, new_keyword=new_keyword, status=400
        )
    if changed:
        flash("Keywords saved.", "message")
    return redirect(url_for("huddle_settings.edit", slug=slug))


def _keywords_now() -> list[str]:
    with services().read_sessions() as session:
        return [k.keyword for k in _load(session, current_huddle().id).keywords]


@bp.post("/keywords")
@huddle_page(SETTINGS)
def add_keyword(slug: str) -> ResponseReturnValue:
    word = request.form.get("keyword", "")[:100]
    if not word.strip():
        with services().read_sessions() as session:
            huddle = _load(session, current_huddle().id)
            flash("That keyword change was not saved.", "error")
            return _render(
                huddle,
                current_settings(huddle),
                errors={"keywords": "Type the keyword to add."},
                status=400,
            )
    return _keyword_change(slug, [*_keywords_now(), word], new_keyword=word)


@bp.post("/keywords/remove")
@huddle_page(SETTINGS)
def remove_keyword(slug: str) -> ResponseReturnValue:
    word = request.form.get("keyword", "")[:100].strip().upper()
    keywords = _keywords_now()
    if word not in keywords:
        return redirect(url_for("huddle_settings.edit", slug=slug))
    return _keyword_change(slug, [k for k in keywords if k != word])


@bp.get("/counter")
@huddle_page(SETTINGS)
def counter(slug: str) -> ResponseReturnValue:  # noqa: ARG001 - the huddle is current_huddle()
    """The live segment counter of the automatic answers (a fragment, as the admin types)."""
    with services().read_sessions() as session:
        standard = _standard_texts(_load(session, current_huddle().id))
    texts = {name: request.args.get(name, "") for name, _, _ in TEXTS}
    return render_template(
        "settings/_counter.html", counts=count_texts(texts, standard), max_copy=MAX_COPY_CHARS
    )
