"""Segments: a huddle's saved filters, and a builder that counts and samples as you type.

The filter language is ``outreach.campaigns.segments`` (docs/segments.md). Every count here runs on
a read session (on SQLite it takes no lock, so inbound texts never wait for it) and is given up
after ``LIVE_COUNT_SECONDS`` (the database stops the query); the page then says so instead of
hanging. ``audience`` is the campaign composer's fragment: how many members a campaign with this
filter would actually message on a channel, as the launch snapshot counts them.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from flask import Blueprint, abort, flash, redirect, render_template, request, url_for
from flask.typing import ResponseReturnValue
from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from outreach.accounts.access import SEGMENTS
from outreach.app.clock import utcnow
from outreach.campaigns import CampaignError, resolve_segment, segments
from outreach.models import Huddle, Segment
from outreach.models import members as m
from web.dashboard.core import HuddleRef, current_huddle, huddle_page
from web.extensions import services

bp = Blueprint("segments", __name__, url_prefix="/h/<slug>/segments")

SAMPLE_SIZE = 5
MAX_NAME = 100
MAX_ID = 2**31 - 1  # larger ids exist nowhere, and PostgreSQL refuses to compare them
VOCABULARY_SECONDS = 0.2  # the cheat sheet's tag list is a nicety: skipped if slow
CHANNEL_LABELS = {m.SMS: "SMS", m.EMAIL: "email"}


@dataclass(frozen=True)
class FilterProblem:
    """A filter's error as the page shows it: the message, and its line with a marker under
    the offending character (``culprit``; a space when the error is at the end)."""

    message: str
    position: int
    line_number: int
    before: str
    culprit: str
    after: str

    @property
    def caret(self) -> str:
        return " " * len(self.before) + "^"


def problem_at(definition: str, error: segments.SegmentError) -> FilterProblem:
    """Where ``error`` points in ``definition``, in words and as a marked line."""
    position = max(0, min(error.position, len(definition)))
    start = definition.rfind("\n", 0, position) + 1
    end = definition.find("\n", position)
    line = definition[start : len(definition) if end < 0 else end].replace("\t", " ")
    column = position - start
    message = re.sub(
        rf"\bat {error.position}\b", f"at character {position + 1}", error.message, count=1
    )
    return FilterProblem(
        message=message[:1].upper() + message[1:],
        position=position,
        line_number=definition.count("\n", 0, position) + 1,
        before=line[:column],
        culprit=line[column : column + 1] or " ",
        after=line[column + 1 :],
    )


# ---------------------------------------------------------------------------------------------
# Pages


@bp.get("/")
@huddle_page(SEGMENTS)
def index(slug: str) -> ResponseReturnValue:  # noqa: ARG001 (@huddle_page read it)
    """The saved segments (one counted on demand) and the builder for a new one."""
    huddle = current_huddle()
    counted = request.args.get("count", type=int)
    with services().read_sessions() as session:
        saved = _saved_segments(session, huddle.id)
        counts = None
        if counted is not None and any(s.id == counted for s in saved):
            filter_text = next(s.filter for s in saved if s.id == counted)
            counts = {
                channel: _bounded_count(session, huddle, channel, filter_text)
                for channel in m.CHANNELS
            }
        return render_template(
            "segments/index.html",
            saved=saved,
            counted=counted,
            counts=counts,
            form={"name": "", "definition": "", "channel": m.SMS},
            errors={},
            **_builder_help(session, huddle),
        )


@bp.post("/")
@huddle_page(SEGMENTS)
def create(slug: str) -> ResponseReturnValue:  # noqa: ARG001 (@huddle_page read it)
    """Save a new segment, or show the builder again with what is wrong."""
    huddle = current_huddle()
    form, errors = _read_form(huddle)
    if not errors:
        try:
            with services().sessions.begin() as session:
                segments.save_segment(
                    session, huddle_id=huddle.id, name=form["name"], filter_text=form["definition"]
                )
        except segments.SegmentNameError as exc:
            errors["name"] = _sentence(str(exc))
        except segments.SegmentError as exc:
            errors["definition"] = problem_at(form["definition"], exc)
        except IntegrityError:
            errors["name"] = f"There is already a segment named “{form['name']}”."
    if errors:
        with services().read_sessions() as session:
            return render_template(
                "segments/index.html",
                saved=_saved_segments(session, huddle.id),
                counted=None,
                counts=None,
                form=form,
                errors=errors,
                **_builder_help(session, huddle),
            ), 422
    flash(f"Saved segment “{form['name']}”.", "message")
    return redirect(url_for("segments.index", slug=huddle.slug))


@bp.get("/<int:segment_id>")
@huddle_page(SEGMENTS)
def edit(slug: str, segment_id: int) -> ResponseReturnValue:  # noqa: ARG001 (@huddle_page read it)
    """One saved segment in the builder, counted live as it is changed."""
    huddle = current_huddle()
    with services().read_sessions() as session:
        segment = _own_segment(session, huddle.id, segment_id)
        form = {"name": segment.name, "definition": segment.filter, "channel": m.SMS}
        return render_template(
            "segments/edit.html",
            segment=segment,
            form=form,
            errors={},
            **_builder_help(session, huddle),
        )


@bp.post("/<int:segment_id>")
@huddle_page(SEGMENTS)
def update(slug: str, segment_id: int) -> ResponseReturnValue:  # noqa: ARG001 (@huddle_page read it)
    huddle = current_huddle()
    with services().read_sessions() as session:
        _own_segment(session, huddle.id, segment_id)
    form, errors = _read_form(huddle)
    if not errors:
        try:
            with services().sessions.begin() as session:
                segments.update_segment(
                    session,
                    huddle_id=huddle.id,
                    segment_id=segment_id,
                    name=form["name"],
                    filter_text=form["definition"],
                )
        except LookupError:
            abort(404)
        except segments.SegmentNameError as exc:
            errors["name"] = _sentence(str(exc))
        except segments.SegmentError as exc:
            errors["definition"] = problem_at(form["definition"], exc)
        except IntegrityError:
            errors["name"] = f"There is already a segment named “{form['name']}”."
    if errors:
        with services().read_sessions() as session:
            segment = _own_segment(session, huddle.id, segment_id)
            return render_template(
                "segments/edit.html",
                segment=segment,
                form=form,
                errors=errors,
                **_builder_help(session, huddle),
            ), 422
    flash(f"Saved segment “{form['name']}”.", "message")
    return redirect(url_for("segments.index", slug=huddle.slug))


@bp.post("/<int:segment_id>/delete")
@huddle_page(SEGMENTS)
def delete(slug: str, segment_id: int) -> ResponseReturnValue:  # noqa: ARG001 (@huddle_page read it)
    """Delete a saved segment. Campaigns copied its filter when drafted: none of them changes."""
    huddle = current_huddle()
    if segment_id > MAX_ID:
        abort(404)
    try:
        with services().sessions.begin() as session:
            name = segments.delete_segment(session, huddle_id=huddle.id, segment_id=segment_id)
    except LookupError:
        abort(404)
    flash(
        f"Deleted segment “{name}”. Campaigns keep the filter they were created with, "
        "so no campaign changed.",
        "message",
    )
    return redirect(url_for("segments.index", slug=huddle.slug))


# ---------------------------------------------------------------------------------------------
# Live fragments (GET, rendered into a data-live target)


@bp.get("/preview")
@huddle_page(SEGMENTS)
def preview(slug: str) -> ResponseReturnValue:  # noqa: ARG001 (@huddle_page read it)
    """The builder's live part: how many match and a few of them, or where the filter is wrong."""
    huddle = current_huddle()
    definition = request.args.get("definition", "")
    channel = request.args.get("channel", m.SMS)
    context: dict[str, Any] = {"channel_label": CHANNEL_LABELS.get(channel, channel)}
    problem = _unusable(definition, channel)
    if problem is not None:
        return render_template("segments/_preview.html", notice=problem, **context)
    try:
        segments.check_huddle(segments.parse(definition), huddle.slug)
    except segments.SegmentError as exc:
        return render_template(
            "segments/_preview.html", error=problem_at(definition, exc), **context
        )
    with services().read_sessions() as session:
        total = _bounded_count(session, huddle, channel, definition)
        people = segments.give_up_after(
            session,
            segments.LIVE_COUNT_SECONDS / 2,
            lambda: segments.sample(
                session,
                huddle_id=huddle.id,
                channel=channel,
                filter_text=definition,
                now=utcnow(),
                limit=SAMPLE_SIZE,
            ),
        )
        sample = [(p.display_name, p.zip) for p in people or []]
    return render_template(
        "segments/_preview.html",
        count=total,
        sample=sample,
        everyone=not definition.strip(),
        **context,
    )


@bp.get("/audience")
@huddle_page(SEGMENTS)
def audience(slug: str) -> ResponseReturnValue:  # noqa: ARG001 (@huddle_page read it)
    """For the campaign composer: how many members a campaign with this filter would message
    (active on the channel, with an address, not suppressed). ``@name`` is a saved segment."""
    huddle = current_huddle()
    definition = request.args.get("definition", "")
    channel = request.args.get("channel", m.SMS)
    context: dict[str, Any] = {"channel_label": CHANNEL_LABELS.get(channel, channel)}
    problem = _unusable(definition, channel)
    if problem is not None:
        return render_template("segments/_audience.html", notice=problem, **context)
    with services().read_sessions() as session:
        filter_text = definition.strip()
        if filter_text.startswith("@"):
            try:
                filter_text = resolve_segment(
                    session, session.get_one(Huddle, huddle.id), filter_text
                )
            except CampaignError:
                notice = f"There is no saved segment named “{filter_text[1:]}”."
                return render_template("segments/_audience.html", notice=notice, **context)
        try:
            segments.check_huddle(segments.parse(filter_text), huddle.slug)
        except segments.SegmentError as exc:
            return render_template(
                "segments/_audience.html", error=problem_at(filter_text, exc), **context
            )
        reachable = segments.give_up_after(
            session,
            segments.LIVE_COUNT_SECONDS,
            lambda: segments.reachable_count(
                session,
                huddle_id=huddle.id,
                channel=channel,
                filter_text=filter_text,
                now=utcnow(),
            ),
        )
    return render_template("segments/_audience.html", count=reachable, channel=channel, **context)


# ---------------------------------------------------------------------------------------------
# Helpers


def _unusable(definition: str, channel: str) -> str | None:
    """Why a fragment cannot count this at all (before parsing), or None."""
    if channel not in m.CHANNELS:
        return "Choose SMS or email."
    if len(definition) > segments.MAX_FILTER_LENGTH:
        return f"A filter has {segments.MAX_FILTER_LENGTH:,} characters at most."
    return None


def _bounded_count(
    session: Session, huddle: HuddleRef, channel: str, filter_text: str
) -> int | None:
    return segments.give_up_after(
        session,
        segments.LIVE_COUNT_SECONDS,
        lambda: segments.count(
            session, huddle_id=huddle.id, channel=channel, filter_text=filter_text, now=utcnow()
        ),
    )


def _read_form(huddle: HuddleRef) -> tuple[dict[str, str], dict[str, Any]]:
    """The builder's fields, and what is wrong with them (checked again by the domain)."""
    form = {
        "name": request.form.get("name", "").strip(),
        "definition": request.form.get("definition", ""),
        "channel": request.form.get("channel", m.SMS),
    }
    if form["channel"] not in m.CHANNELS:
        form["channel"] = m.SMS
    errors: dict[str, Any] = {}
    if not form["name"]:
        errors["name"] = "Give the segment a name."
    elif len(form["name"]) > MAX_NAME:
        errors["name"] = (
            f"A name has {MAX_NAME} characters at most (this one has {len(form['name'])})."
        )
    if len(form["definition"]) > segments.MAX_FILTER_LENGTH:
        errors["definition_length"] = (
            f"A filter has {segments.MAX_FILTER_LENGTH:,} characters at most."
        )
    else:
        try:
            segments.check_huddle(segments.parse(form["definition"]), huddle.slug)
        except segments.SegmentError as exc:
            errors["definition"] = problem_at(form["definition"], exc)
    return form, errors


def _saved_segments(session: Session, huddle_id: int) -> list[Segment]:
    return list(
        session.scalars(
            select(Segment).where(Segment.huddle_id == huddle_id).order_by(Segment.name)
        )
    )


def _own_segment(session: Session, huddle_id: int, segment_id: int) -> Segment:
    """This huddle's segment, or 404 (another huddle's looks like one that does not exist)."""
    if segment_id > MAX_ID:
        abort(404)
    segment = session.scalars(
        select(Segment).where(Segment.id == segment_id, Segment.huddle_id == huddle_id)
    ).one_or_none()
    if segment is None:
        abort(404)
    return segment


def _builder_help(session: Session, huddle: HuddleRef) -> dict[str, Any]:
    """What the builder's cheat sheet shows, from the language's own vocabulary."""
    vocabulary = segments.give_up_after(
        session, VOCABULARY_SECONDS, lambda: segments.huddle_vocabulary(session, huddle.id)
    )
    return {
        "sheet": segments.cheat_sheet(huddle.slug),
        "examples": segments.EXAMPLES,
        "keywords": segments.KEYWORDS,
        "vocabulary": vocabulary,
        "channels": CHANNEL_LABELS,
        "max_filter": segments.MAX_FILTER_LENGTH,
    }


def _sentence(message: str) -> str:
    text = message[:1].upper() + message[1:]
    return text if text.endswith((".", "?", "!")) else text + "."
