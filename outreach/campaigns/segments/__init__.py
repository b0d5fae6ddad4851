"""Segments: the small filter language organizers use to pick an audience inside their huddle.

    huddle:logan tag:volunteer -tag:donor zip:200* joined>2026-01-01 replied<30d field:language=es

A filter is parsed into a tree of frozen dataclasses (:func:`parse`) and compiled into a SQLAlchemy
expression over :class:`~outreach.models.Member` (:func:`compile_filter`). Values only ever reach
the database as bound parameters: no SQL text is built from what an organizer typed.

Grammar
-------

Keywords (``and``, ``or``, ``not``) and term names are case-insensitive::

    filter   := [ or ]                       the empty filter is everyone in the huddle
    or       := and { "or" and }             "or" binds looser than "and"
    and      := unary { ["and"] unary }      terms side by side mean "and"
    unary    := ("-" | "not") unary | primary
    primary  := "(" or ")" | term
    term     := NAME OP VALUE                no spaces inside a term
    VALUE    := a bare word (no spaces, quotes or parentheses)
              | "a double-quoted string"     \\" and \\\\ escape a quote and a backslash

Terms
-----

=============================  ================================================================
``tag:volunteer``              has this tag in this huddle (tags are lower-cased, as on import)
``zip:021*``                   zip code starts with 021 (digits, then ``*``)
``zip:02128``                  zip code is exactly 02128
``field:language=es``          custom field ``language`` of this huddle is exactly ``es``
                               (case-sensitive; quote values with spaces: ``field:city="East
                               Boston"``)
``field:language``             has any value for the custom field ``language``
``joined>2026-01-01``          subscribed (this huddle, this channel) after that day
``joined<2026-01-01``          ... before that day; ``>=``/``<=`` include the day, ``=`` (or
                               ``:``) is that day. Days are calendar days in the huddle's zone.
``joined<30d``                 subscribed less than 30 days ago (``d`` days, ``w`` weeks,
                               ``m`` calendar months, ``y`` years)
``joined>6m``                  subscribed more than 6 months ago
``replied<30d``                last reply less than 30 days ago; ``replied>2026-01-01`` after
                               that day. Members who never replied match no ``replied`` term
                               (so ``-replied<30d`` includes them).
``first_name:maria``           first name, case-insensitive (ASCII only on SQLite)
``has:email``                  has an email address (also ``has:phone``, ``has:zip``,
                               ``has:name``)
``status:pending``             subscription state on the campaign's channel: ``active``,
                               ``pending`` or ``opted_out``
``huddle:logan``               must name the huddle being filtered: naming another huddle is an
                               error (organizers never reach other huddles' members)
=============================  ================================================================

With a date, ``<`` reads "before" and ``>`` "after"; with an age, ``<`` reads "less than … ago"
(more recent) and ``>`` "more than … ago" (older).

The audience of a filter is the members with a subscription in the huddle on the channel, in state
``active``. When the filter has a ``status:`` term anywhere, no state is implied: the filter decides
alone (``status:pending or tag:host`` also counts opted-out hosts; write ``status:pending or
(tag:host status:active)``). Suppressions are applied at launch and send time, not here.

Examples::

    tag:volunteer zip:021*                   volunteers in zips 021xx
    tag:host or (tag:donor -replied<90d)     hosts, and donors who have not replied for 90 days
    not (tag:donor or tag:staff) has:email
    field:language=es joined<30d             Spanish speakers who joined in the last 30 days
    status:pending joined>14d                asked to confirm more than two weeks ago, no answer

API
---

``parse(text) -> Node`` and ``validate(text)``; ``format_filter(node) -> str`` (canonical text);
``compile_filter(node, huddle_id=, channel=, now=) -> ColumnElement[bool]`` over ``Member``;
``audience_query(session, huddle_id=, channel=, filter_text=, now=) -> Select`` (one column,
``member_id``); ``count(...) -> int`` and ``count_statement(...)`` (the SELECT it runs);
``sample(..., limit=20) -> list[Member]``; ``save_segment(session, huddle_id=, name=,
filter_text=) -> Segment``, ``update_segment`` and ``delete_segment``. ``now`` is injected (an
aware datetime) so relative ages are testable. For pages: ``give_up_after(session, seconds, work)``
(a live count cut short on the server, None), ``reachable_count(...)`` (what a launch would queue:
active, with an address, not suppressed), ``cheat_sheet(slug)`` and ``EXAMPLES``.

Errors
------

:class:`SegmentSyntaxError` carries ``position``, the 0-based character offset, and a message that
says what was expected: ``expected a term after 'or' at 12``, ``unknown term 'tagg' at 0 — did you
mean 'tag'?``, ``unclosed '(' opened at 4``, ``bad date '2026-13-01' at 20``.
:class:`ForeignHuddleError` is raised when a filter names another huddle.

Query shape
-----------

:func:`count` and :func:`audience_query` do not simply wrap :func:`compile_filter`: on a large
huddle the way the query is written decides its speed, SQLite's most of all (it keeps no
statistics unless ANALYZE ran, and never reorders an EXISTS). So the filter is put in negation
normal form and the query starts from the smallest index-friendly set the filter requires — a tag,
a custom field value, a zip range, an OR of those (as a UNION), or else the huddle's subscriptions —
and checks everything else per row, the subscription last. On SQLite the candidate sets are sized
with capped index-only counts first; PostgreSQL's planner has its own statistics. A count whose
filter excludes index-friendly sets (``-tag:donor``) is computed as ``count(rest) − count(rest and
tag:donor)`` in one statement instead of probing every row.

Modules
-------

:mod:`.syntax` (the tree, the errors, :func:`format_filter`), :mod:`.parser` (:func:`parse`),
:mod:`.compiler` (:func:`compile_filter`), :mod:`.planner` (the query shape above:
:func:`audience_query`, :func:`count`, :func:`sample`) and :mod:`.storage`
(:func:`save_segment`). Import from the package: the names below are its API.
"""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime
from typing import Any, TypeVar

from sqlalchemy import exists, func, select, text
from sqlalchemy.exc import OperationalError
from sqlalchemy.orm import Session

from outreach.campaigns.segments.compiler import MEMBERS, SUBSCRIPTIONS, compile_filter
from outreach.campaigns.segments.parser import (
    HAS_VALUES,
    KEYWORDS,
    STATUS_VALUES,
    TERMS,
    parse,
    validate,
)
from outreach.campaigns.segments.planner import (
    audience_query,
    count,
    count_statement,
    huddle_zone,
    sample,
)
from outreach.campaigns.segments.storage import save_segment
from outreach.campaigns.segments.syntax import (
    Age,
    And,
    CustomField,
    Everyone,
    FirstName,
    ForeignHuddleError,
    Has,
    HuddleIs,
    Joined,
    Node,
    Not,
    Or,
    Replied,
    SegmentError,
    SegmentNameError,
    SegmentSyntaxError,
    Status,
    Tag,
    Zip,
    check_huddle,
    format_filter,
)
from outreach.models import Huddle, MemberField, MemberTag, Segment, Suppression
from outreach.models import consent as c
from outreach.models import members as m

__all__ = [
    "EXAMPLES",
    "HAS_VALUES",
    "KEYWORDS",
    "LIVE_COUNT_SECONDS",
    "MAX_FILTER_LENGTH",
    "STATUS_VALUES",
    "TERMS",
    "Age",
    "And",
    "CustomField",
    "Everyone",
    "FirstName",
    "ForeignHuddleError",
    "Has",
    "HuddleIs",
    "Joined",
    "Node",
    "Not",
    "Or",
    "Replied",
    "SegmentError",
    "SegmentNameError",
    "SegmentSyntaxError",
    "Status",
    "Tag",
    "TermHelp",
    "Vocabulary",
    "Zip",
    "audience_query",
    "cheat_sheet",
    "check_huddle",
    "compile_filter",
    "count",
    "count_statement",
    "delete_segment",
    "format_filter",
    "give_up_after",
    "huddle_vocabulary",
    "huddle_zone",
    "parse",
    "reachable_count",
    "sample",
    "save_segment",
    "update_segment",
    "validate",
]

# ---------------------------------------------------------------------------------------------
# Helping organizers write filters: the cheat sheet is built from the parser's own vocabulary,
# so a term added to the language without a line here fails (KeyError) rather than going unlisted.

#: The longest filter a form or the API takes.
MAX_FILTER_LENGTH = 2000


@dataclass(frozen=True)
class TermHelp:
    """One term of the language, as a cheat sheet shows it."""

    term: str
    example: str
    meaning: str


_TERM_HELP: dict[str, tuple[str, str]] = {
    "tag": ("tag:volunteer", "has this tag"),
    "zip": ("zip:021*", "zip code is 021… (digits, * at the end for 'starts with')"),
    "field": ("field:language=es", 'custom field is exactly this (quote spaces: "East Boston")'),
    "joined": (
        "joined<30d",
        "subscribed less than 30 days ago (or >, >=, <=, = a YYYY-MM-DD date)",
    ),
    "replied": ("replied>90d", "last replied more than 90 days ago (never replied: no match)"),
    "first_name": ("first_name:maria", "first name, any case"),
    "has": ("has:email", "has it: {has}"),
    "status": ("status:pending", "are {status} on the channel (without it: active only)"),
    "huddle": ("huddle:{slug}", "this huddle (any other huddle is an error)"),
}

#: Filters worth starting from, with what they mean; each one parses (a test checks).
EXAMPLES: tuple[tuple[str, str], ...] = (
    ("tag:volunteer zip:021*", "volunteers in zips 021…"),
    ("tag:host or (tag:donor -replied<90d)", "hosts, and donors silent for 90 days"),
    ("not (tag:donor or tag:staff) has:email", "neither donors nor staff, with an email"),
    ("field:language=es joined<30d", "Spanish speakers who joined this month"),
    ("status:pending joined>14d", "asked to confirm over two weeks ago, no answer"),
)


def cheat_sheet(huddle_slug: str) -> list[TermHelp]:
    """Every term the parser knows, with an example and its meaning, in the parser's order."""
    values = {"has": ", ".join(HAS_VALUES), "status": _either(STATUS_VALUES)}
    sheet = []
    for term in TERMS:
        example, meaning = _TERM_HELP[term]
        sheet.append(TermHelp(term, example.format(slug=huddle_slug), meaning.format(**values)))
    return sheet


def _either(words: tuple[str, ...]) -> str:
    return ", ".join(words[:-1]) + " or " + words[-1] if len(words) > 1 else "".join(words)


# ---------------------------------------------------------------------------------------------
# Counting live: a count an organizer waits for is given up after a bound, never left running.

#: How long a live count may run before the page says "too broad to count live".
LIVE_COUNT_SECONDS = 2.0
_SQLITE_PROGRESS_STEPS = 1000  # SQLite VM instructions between deadline checks
_PG_QUERY_CANCELED = "57014"

T = TypeVar("T")


def give_up_after(session: Session, seconds: float, work: Callable[[], T]) -> T | None:
    """``work()`` run on ``session``, or None if it took longer than ``seconds``.

    PostgreSQL: ``statement_timeout`` local to the session's transaction, so the server stops
    the query (and nothing else is affected). SQLite: a progress handler interrupts the
    statement at the deadline, so the web process is not held by one broad filter. A read
    session is expected: the transaction is rolled back when the work is cut short.
    """
    dialect = session.get_bind().dialect.name
    try:
        with _deadline(session, dialect, seconds):
            return work()
    except OperationalError as exc:
        if not _was_cut_short(exc):
            raise
        session.rollback()
        return None


@contextmanager
def _deadline(session: Session, dialect: str, seconds: float) -> Iterator[None]:
    if dialect == "postgresql":
        milliseconds = max(1, int(seconds * 1000))
        session.execute(
            text("SELECT set_config('statement_timeout', :ms, true)"), {"ms": str(milliseconds)}
        )
        yield
        return
    if dialect != "sqlite":
        yield
        return
    raw: Any = session.connection().connection.driver_connection
    ends = time.monotonic() + seconds
    raw.set_progress_handler(lambda: int(time.monotonic() >= ends), _SQLITE_PROGRESS_STEPS)
    try:
        yield
    finally:
        raw.set_progress_handler(None, 0)


def _was_cut_short(exc: OperationalError) -> bool:
    original = exc.orig
    if getattr(original, "sqlstate", None) == _PG_QUERY_CANCELED:
        return True
    return isinstance(original, sqlite3.OperationalError) and "interrupted" in str(original)


def reachable_count(
    session: Session, *, huddle_id: int, channel: str, filter_text: str, now: datetime
) -> int:
    """How many members a campaign with this filter would queue a message for.

    As the launch snapshot decides (``outreach.campaigns.fanout``): matching members whose
    subscription on the channel is ``active``, who have an address on it, and whom no live
    suppression (all senders, or this huddle's sender) covers. Opted-out and pending members
    are left out whatever the filter says.
    """
    huddle = session.get(Huddle, huddle_id)
    if huddle is None:
        raise LookupError(f"no huddle with id {huddle_id}")
    matching = audience_query(
        session, huddle_id=huddle_id, channel=channel, filter_text=filter_text, now=now
    ).subquery("matching")
    address = MEMBERS.c.phone if channel == m.SMS else MEMBERS.c.email
    active = exists().where(
        SUBSCRIPTIONS.c.member_id == MEMBERS.c.id,
        SUBSCRIPTIONS.c.huddle_id == huddle_id,
        SUBSCRIPTIONS.c.channel == channel,
        SUBSCRIPTIONS.c.state == m.ACTIVE,
    )
    suppressed = exists().where(
        Suppression.channel == channel,
        Suppression.address == address,
        Suppression.scope.in_([c.ALL_SENDERS, huddle.sender_key]),
        Suppression.lifted_at.is_(None),
    )
    statement = (
        select(func.count())
        .select_from(matching)
        .join(MEMBERS, MEMBERS.c.id == matching.c.member_id)
        .where(address.is_not(None), active, ~suppressed)
    )
    return int(session.scalar(statement) or 0)


# ---------------------------------------------------------------------------------------------
# Editing saved segments. Campaigns copy a segment's filter when they are drafted
# (``outreach.campaigns.resolve_segment``), so editing or deleting one never changes a campaign.


def update_segment(
    session: Session, *, huddle_id: int, segment_id: int, name: str, filter_text: str
) -> Segment:
    """Rename a saved segment or change its filter, checked as :func:`save_segment` checks."""
    segment = _own_segment(session, huddle_id, segment_id)
    tree = parse(filter_text)
    huddle = session.get_one(Huddle, huddle_id)
    check_huddle(tree, huddle.slug)
    name = (name or "").strip()
    if not name:
        raise SegmentNameError("a segment needs a name")
    if len(name) > 100:
        raise SegmentNameError("a segment name has 100 characters at most")
    taken = session.scalar(
        select(Segment.id).where(
            Segment.huddle_id == huddle_id, Segment.name == name, Segment.id != segment_id
        )
    )
    if taken is not None:
        raise SegmentNameError(f"huddle {huddle.slug} already has a segment named {name!r}")
    segment.name = name
    segment.filter = filter_text.strip()
    session.flush()
    return segment


def delete_segment(session: Session, *, huddle_id: int, segment_id: int) -> str:
    """Delete a saved segment of this huddle; returns its name."""
    segment = _own_segment(session, huddle_id, segment_id)
    name = segment.name
    session.delete(segment)
    session.flush()
    return name


def _own_segment(session: Session, huddle_id: int, segment_id: int) -> Segment:
    segment = session.scalars(
        select(Segment).where(Segment.id == segment_id, Segment.huddle_id == huddle_id)
    ).one_or_none()
    if segment is None:
        raise LookupError(f"huddle {huddle_id} has no segment {segment_id}")
    return segment


@dataclass(frozen=True)
class Vocabulary:
    """Some of the tags and custom field names a huddle's members have, for a cheat sheet."""

    tags: list[str]
    fields: list[str]


def huddle_vocabulary(session: Session, huddle_id: int, *, limit: int = 30) -> Vocabulary:
    """The first ``limit`` tags and custom field names (alphabetically) used in the huddle."""
    tags = session.scalars(
        select(MemberTag.tag)
        .where(MemberTag.huddle_id == huddle_id)
        .distinct()
        .order_by(MemberTag.tag)
        .limit(limit)
    ).all()
    fields = session.scalars(
        select(MemberField.name)
        .where(MemberField.huddle_id == huddle_id)
        .distinct()
        .order_by(MemberField.name)
        .limit(limit)
    ).all()
    return Vocabulary(list(tags), list(fields))
