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
filter_text=) -> Segment``. ``now`` is injected (an aware datetime) so relative ages are testable.

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
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta, tzinfo
from typing import Any, Literal, TypeAlias, cast
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from sqlalchemy import (
    ColumnElement,
    Select,
    Table,
    and_,
    exists,
    false,
    func,
    not_,
    or_,
    select,
    true,
    union,
)
from sqlalchemy.orm import Session

from outreach.models import Huddle, Member, MemberField, MemberTag, Segment, Subscription
from outreach.models import members as m

# Core tables: ORM aliases cost milliseconds of Python per attribute, and a count is interactive.
MEMBERS = cast(Table, Member.__table__)
SUBSCRIPTIONS = cast(Table, Subscription.__table__)
TAGS = cast(Table, MemberTag.__table__)
FIELDS = cast(Table, MemberField.__table__)
HUDDLES = cast(Table, Huddle.__table__)
_S = SUBSCRIPTIONS.alias("s")
_M = MEMBERS.alias("m")

__all__ = [
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
    "Zip",
    "audience_query",
    "check_huddle",
    "compile_filter",
    "count",
    "count_statement",
    "format_filter",
    "parse",
    "sample",
    "save_segment",
    "validate",
]

# ---------------------------------------------------------------------------------------------
# Errors


class SegmentError(ValueError):
    """A filter that cannot be used; ``position`` is the 0-based offset of the culprit."""

    def __init__(self, message: str, position: int) -> None:
        super().__init__(message)
        self.message = message
        self.position = position

    def __reduce__(self) -> tuple[Any, ...]:
        return (type(self), (self.message, self.position))


class SegmentSyntaxError(SegmentError):
    """The text is not a well-formed filter."""


class ForeignHuddleError(SegmentError):
    """The filter names a huddle other than the one it is applied to."""


class SegmentNameError(ValueError):
    """A saved segment's name is empty, too long, or already used in the huddle."""


# ---------------------------------------------------------------------------------------------
# The tree


@dataclass(frozen=True, kw_only=True)
class _Node:
    #: Where the node starts in the filter text (not part of equality).
    pos: int = field(default=0, compare=False, repr=False)


@dataclass(frozen=True)
class Everyone(_Node):
    """The empty filter."""


@dataclass(frozen=True)
class Tag(_Node):
    name: str


@dataclass(frozen=True)
class Zip(_Node):
    value: str
    prefix: bool = False


@dataclass(frozen=True)
class Age:
    """A duration back from now: ``30d``, ``12w``, ``6m`` (calendar months), ``1y``."""

    amount: int
    unit: Literal["d", "w", "m", "y"]

    def before(self, now: datetime) -> datetime:
        if self.unit == "d":
            return now - timedelta(days=self.amount)
        if self.unit == "w":
            return now - timedelta(weeks=self.amount)
        months = self.amount * (12 if self.unit == "y" else 1)
        total = now.year * 12 + (now.month - 1) - months
        year, month = divmod(total, 12)
        month += 1
        day = min(now.day, _days_in_month(year, month))
        return now.replace(year=year, month=month, day=day)

    def __str__(self) -> str:
        return f"{self.amount}{self.unit}"


Op: TypeAlias = Literal[">", "<", ">=", "<=", "="]
When: TypeAlias = date | Age


@dataclass(frozen=True)
class Joined(_Node):
    """The subscription's ``created_at`` (this huddle, the campaign's channel)."""

    op: Op
    when: When


@dataclass(frozen=True)
class Replied(_Node):
    """``members.last_replied_at``."""

    op: Op
    when: When


@dataclass(frozen=True)
class CustomField(_Node):
    name: str
    value: str | None = None  # None: has any value


@dataclass(frozen=True)
class FirstName(_Node):
    value: str


@dataclass(frozen=True)
class Has(_Node):
    what: Literal["email", "phone", "zip", "name"]


@dataclass(frozen=True)
class Status(_Node):
    state: str


@dataclass(frozen=True)
class HuddleIs(_Node):
    slug: str


@dataclass(frozen=True)
class Not(_Node):
    operand: Node


@dataclass(frozen=True)
class And(_Node):
    operands: tuple[Node, ...]


@dataclass(frozen=True)
class Or(_Node):
    operands: tuple[Node, ...]


Atom: TypeAlias = Tag | Zip | Joined | Replied | CustomField | FirstName | Has | Status | HuddleIs
Node: TypeAlias = Everyone | Atom | Not | And | Or

# ---------------------------------------------------------------------------------------------
# Parsing

TERMS = ("tag", "zip", "field", "joined", "replied", "first_name", "has", "status", "huddle")
KEYWORDS = ("and", "or", "not")
HAS_VALUES = ("email", "phone", "zip", "name")
STATUS_VALUES = (m.ACTIVE, m.PENDING, m.OPTED_OUT)
_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_OP = re.compile(r">=|<=|[<>:=]")
_DATE = re.compile(r"[0-9]{4}-[0-9]{1,2}-[0-9]{1,2}")
_DATEISH = re.compile(r"[0-9]+[-/.][0-9]+")
_AGE = re.compile(r"([0-9]{1,5})([dwmyDWMY])")
_ZIP = re.compile(r"([0-9]{1,10})(\*?)")
_FIELD_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,63}")
_MAX_AGE_DAYS = 100 * 366
_UNIT_DAYS = {"d": 1, "w": 7, "m": 31, "y": 366}
_MAX_DEPTH = 50
_SEPARATORS = frozenset(' \t\r\n\f\v()"')


def parse(text: str) -> Node:
    """Parse a filter into its tree; raises :class:`SegmentSyntaxError`."""
    if not isinstance(text, str):
        raise TypeError("a filter is a str")
    return _Parser(text).parse()


def validate(text: str) -> None:
    """Raise :class:`SegmentSyntaxError` unless ``text`` is a well-formed filter."""
    parse(text)


class _Parser:
    def __init__(self, text: str) -> None:
        self.text = text
        self.i = 0
        self.depth = 0

    # -- helpers

    def error(self, message: str, position: int) -> SegmentSyntaxError:
        return SegmentSyntaxError(message, position)

    def skip_space(self) -> None:
        while self.i < len(self.text) and self.text[self.i].isspace():
            self.i += 1

    def peek(self) -> str:
        return self.text[self.i] if self.i < len(self.text) else ""

    def peek_keyword(self) -> str | None:
        """The keyword at the cursor (and/or/not as a whole word), without consuming it."""
        match = _NAME.match(self.text, self.i)
        if not match:
            return None
        word = match.group().lower()
        if word not in KEYWORDS:
            return None
        end = match.end()
        if end < len(self.text) and not (self.text[end].isspace() or self.text[end] in '()-"'):
            return None  # "or:x", "notes…": not the keyword
        return word

    def found(self, position: int) -> str:
        """The word at ``position``, to quote in a message."""
        end = position
        while end < len(self.text) and not self.text[end].isspace() and end - position < 30:
            end += 1
        return self.text[position:end] or "the end"

    # -- grammar

    def parse(self) -> Node:
        self.skip_space()
        if self.i >= len(self.text):
            return Everyone(pos=0)
        node = self.parse_or(after=None)
        self.skip_space()
        if self.i < len(self.text):
            raise self.error(f"unexpected ')' at {self.i}", self.i)  # only ')' stops parse_or
        return node

    def parse_or(self, after: str | None) -> Node:
        start = self.i
        operands = [self.parse_and(after)]
        while True:
            self.skip_space()
            if self.peek_keyword() != "or":
                break
            self.i += 2
            operands.append(self.parse_and("or"))
        return operands[0] if len(operands) == 1 else Or(tuple(operands), pos=start)

    def parse_and(self, after: str | None) -> Node:
        self.skip_space()
        start = self.i
        operands = [self.parse_unary(after)]
        while True:
            self.skip_space()
            char = self.peek()
            if not char or char == ")":
                break
            keyword = self.peek_keyword()
            if keyword == "or":
                break
            if keyword == "and":
                self.i += 3
                operands.append(self.parse_unary("and"))
            else:
                operands.append(self.parse_unary(None))
        return operands[0] if len(operands) == 1 else And(tuple(operands), pos=start)

    def parse_unary(self, after: str | None) -> Node:
        self.skip_space()
        start = self.i
        char = self.peek()
        if not char or char == ")" or self.peek_keyword() in ("and", "or"):
            if after is not None:
                raise self.error(f"expected a term after '{after}' at {self.i}", self.i)
            raise self.error(f"expected a term at {self.i}, found {self.found(self.i)!r}", self.i)
        if char == "-" or self.peek_keyword() == "not":
            word = "-" if char == "-" else self.text[self.i : self.i + 3]
            self.i += len(word)
            self.enter(start)
            operand = self.parse_unary(word)
            self.depth -= 1
            return Not(operand, pos=start)
        if char == "(":
            self.i += 1
            self.enter(start)
            inner = self.parse_or("(")
            self.depth -= 1
            self.skip_space()
            if self.peek() != ")":
                raise self.error(f"unclosed '(' opened at {start}", start)
            self.i += 1
            return inner
        return self.parse_term()

    def enter(self, start: int) -> None:
        self.depth += 1
        if self.depth > _MAX_DEPTH:
            raise self.error(f"too deeply nested at {start}", start)

    def parse_term(self) -> Atom:
        start = self.i
        match = _NAME.match(self.text, self.i)
        if not match:
            raise self.error(f"expected a term at {start}, found {self.found(start)!r}", start)
        name = match.group().lower()
        self.i = match.end()
        op_match = _OP.match(self.text, self.i)
        if name not in TERMS:
            hint = difflib.get_close_matches(name, TERMS, n=1, cutoff=0.6)
            if hint:
                message = f"unknown term {match.group()!r} at {start} — did you mean '{hint[0]}'?"
            elif op_match is None:
                message = (
                    f"unknown term {match.group()!r} at {start} — terms look like tag:NAME, "
                    "zip:021*, field:NAME=VALUE, joined>2026-01-01, replied<30d, has:email"
                )
            else:
                message = f"unknown term {match.group()!r} at {start} — terms are " + ", ".join(
                    TERMS
                )
            raise self.error(message, start)
        if op_match is None:
            sep = ">' or '<" if name in ("joined", "replied") else ":"
            raise self.error(f"expected '{sep}' after '{name}' at {self.i}", self.i)
        op = op_match.group()
        op_pos = self.i
        self.i = op_match.end()
        if name in ("joined", "replied"):
            return self.parse_when(name, op, start)
        if op not in (":", "="):
            raise self.error(f"'{name}' takes ':' ({name}:…), not '{op}' at {op_pos}", op_pos)
        if name == "field":
            return self.parse_field(start)
        value, value_pos = self.value(f"{name}:")
        if name == "tag":
            tag = value.strip().lower()
            if not tag:
                raise self.error(f"expected a tag name at {value_pos}", value_pos)
            return Tag(tag, pos=start)
        if name == "zip":
            zip_match = _ZIP.fullmatch(value)
            if not zip_match:
                raise self.error(
                    f"bad zip {value!r} at {value_pos} — expected digits, optionally ending "
                    "in * (zip:021*)",
                    value_pos,
                )
            return Zip(zip_match.group(1), prefix=bool(zip_match.group(2)), pos=start)
        if name == "first_name":
            if not value.strip():
                raise self.error(f"expected a first name at {value_pos}", value_pos)
            return FirstName(value.strip(), pos=start)
        if name == "has":
            what = value.lower()
            if what not in HAS_VALUES:
                raise self.error(
                    f"has: takes {', '.join(HAS_VALUES)}, not {value!r} at {value_pos}",
                    value_pos,
                )
            return Has(what, pos=start)  # type: ignore[arg-type]
        if name == "status":
            state = value.lower().replace("-", "_")
            if state == "optedout":
                state = m.OPTED_OUT
            if state not in STATUS_VALUES:
                raise self.error(
                    f"status: takes {', '.join(STATUS_VALUES)}, not {value!r} at {value_pos}",
                    value_pos,
                )
            return Status(state, pos=start)
        # huddle
        return HuddleIs(value.strip().lower(), pos=start)

    def parse_field(self, start: int) -> CustomField:
        name_pos = self.i
        match = _FIELD_NAME.match(self.text, self.i)
        if not match:
            raise self.error(f"expected a field name after 'field:' at {name_pos}", name_pos)
        self.i = match.end()
        name = match.group().lower()
        char = self.peek()
        if not char or char.isspace() or char == ")":
            return CustomField(name, None, pos=start)
        if char not in "=:":
            raise self.error(
                f"expected '=' after 'field:{name}' at {self.i} (field:{name}=VALUE)", self.i
            )
        self.i += 1
        value, _ = self.value(f"field:{name}=")
        return CustomField(name, value, pos=start)

    def parse_when(self, name: str, op: str, start: int) -> Joined | Replied:
        op_norm: Op = "=" if op == ":" else op  # type: ignore[assignment]
        value, value_pos = self.value(f"{name}{op}")
        when: When
        age = _AGE.fullmatch(value)
        if age:
            if op_norm == "=":
                raise self.error(
                    f"an age needs '<' or '>' ({name}<{value} = less than {value} ago) "
                    f"at {value_pos}",
                    value_pos,
                )
            when = Age(int(age.group(1)), age.group(2).lower())  # type: ignore[arg-type]
            if when.amount * _UNIT_DAYS[when.unit] > _MAX_AGE_DAYS:
                raise self.error(
                    f"age {value!r} at {value_pos} is too long (100 years at most)", value_pos
                )
        elif _DATE.fullmatch(value) or _DATEISH.match(value):
            try:
                year, month, day = (int(p) for p in value.split("-"))
                when = date(year, month, day)
            except (ValueError, OverflowError):
                raise self.error(f"bad date {value!r} at {value_pos}", value_pos) from None
            if not 1900 <= when.year <= 2999:
                raise self.error(f"bad date {value!r} at {value_pos}", value_pos)
        else:
            raise self.error(
                f"expected a date (YYYY-MM-DD) or an age (30d, 12w, 6m, 1y) after "
                f"'{name}{op}' at {value_pos}",
                value_pos,
            )
        cls = Joined if name == "joined" else Replied
        return cls(op_norm, when, pos=start)

    def value(self, after: str) -> tuple[str, int]:
        """A bare word or a double-quoted string; returns the value and where it started."""
        start = self.i
        if self.peek() == '"':
            self.i += 1
            chars: list[str] = []
            while True:
                if self.i >= len(self.text):
                    raise self.error(f"unclosed quote opened at {start}", start)
                char = self.text[self.i]
                if char == "\\" and self.i + 1 < len(self.text):
                    chars.append(self.text[self.i + 1])
                    self.i += 2
                elif char == '"':
                    self.i += 1
                    break
                else:
                    chars.append(char)
                    self.i += 1
            value = "".join(chars)
            if not value.strip():
                raise self.error(f"expected a value after '{after}' at {start}", start)
            return value, start
        while self.i < len(self.text) and self.text[self.i] not in _SEPARATORS:
            if self.text[self.i].isspace():
                break
            self.i += 1
        if self.i == start:
            raise self.error(f"expected a value after '{after}' at {start}", start)
        return self.text[start : self.i], start


def _days_in_month(year: int, month: int) -> int:
    if month == 12:
        return 31
    return (date(year, month + 1, 1) - date(year, month, 1)).days


# ---------------------------------------------------------------------------------------------
# Writing a tree back as text (a canonical form: parse(format_filter(n)) == n)


def format_filter(node: Node) -> str:
    """The canonical text of a tree; ``parse(format_filter(node)) == node``."""
    return _format(node, 0)


def _quote(value: str) -> str:
    if value and not any(c.isspace() or c in '()"\\' for c in value):
        return value
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'


def _format(node: Node, parent: int) -> str:
    """``parent``: 0 at the top, 1 as an operand of "or", 2 of "and", 3 of a negation."""
    if isinstance(node, Everyone):
        return ""
    if isinstance(node, Or):
        text = " or ".join(_format(o, 1) for o in node.operands)
        return f"({text})" if parent > 0 else text
    if isinstance(node, And):
        text = " ".join(_format(o, 2) for o in node.operands)
        return f"({text})" if parent > 1 else text
    if isinstance(node, Not):
        return "-" + _format(node.operand, 3)
    return _format_atom(node)


def _format_atom(node: Atom) -> str:
    if isinstance(node, Tag):
        return f"tag:{_quote(node.name)}"
    if isinstance(node, Zip):
        return f"zip:{node.value}{'*' if node.prefix else ''}"
    if isinstance(node, Joined | Replied):
        name = "joined" if isinstance(node, Joined) else "replied"
        when = node.when.isoformat() if isinstance(node.when, date) else str(node.when)
        return f"{name}{node.op}{when}"
    if isinstance(node, CustomField):
        if node.value is None:
            return f"field:{node.name}"
        return f"field:{node.name}={_quote(node.value)}"
    if isinstance(node, FirstName):
        return f"first_name:{_quote(node.value)}"
    if isinstance(node, Has):
        return f"has:{node.what}"
    if isinstance(node, Status):
        return f"status:{node.state}"
    return f"huddle:{_quote(node.slug)}"


# ---------------------------------------------------------------------------------------------
# Compiling


def _walk(node: Node) -> Iterator[Node]:
    yield node
    if isinstance(node, Not):
        yield from _walk(node.operand)
    elif isinstance(node, And | Or):
        for operand in node.operands:
            yield from _walk(operand)


def _mentions_status(node: Node) -> bool:
    return any(isinstance(n, Status) for n in _walk(node))


def check_huddle(node: Node, slug: str) -> None:
    """Raise :class:`ForeignHuddleError` if the filter names a huddle other than ``slug``."""
    for n in _walk(node):
        if isinstance(n, HuddleIs) and n.slug != slug:
            raise ForeignHuddleError(
                f"huddle:{n.slug} at {n.pos} — this filter applies to huddle {slug} only", n.pos
            )


@dataclass(frozen=True)
class _Ctx:
    """What atoms compile against: who the member is, and which rows are already at hand."""

    huddle_id: int
    channel: str
    now: datetime
    tz: tzinfo
    member_id: Any  # the member's id: members.id, or a column of the query's driving set
    member: Any  # the members table (or an alias joined in the query): the member's columns
    sub: Any | None  # the subscriptions alias at hand in the query, or None: use EXISTS
    huddle_slug: str | None


def compile_filter(
    node: Node,
    *,
    huddle_id: int,
    channel: str,
    now: datetime,
    huddle_slug: str | None = None,
    tz: tzinfo = UTC,
) -> ColumnElement[bool]:
    """A boolean SQLAlchemy expression over :class:`Member` that is true when the member matches.

    Tags, custom fields and the subscription (``joined``, ``status``) are correlated EXISTS
    subqueries scoped to ``huddle_id`` (and ``channel``). This does not restrict to subscribers in
    state ``active``: :func:`audience_query` does. ``huddle:SLUG`` is checked against
    ``huddle_slug`` when given (raising :class:`ForeignHuddleError`), else compiled as a test on
    the huddle's slug. ``tz`` is the zone whose calendar days dates mean (the huddle's).
    """
    _check_channel(channel)
    _check_now(now)
    if huddle_slug is not None:
        check_huddle(node, huddle_slug)
    ctx = _Ctx(huddle_id, channel, now, tz, MEMBERS.c.id, MEMBERS, None, huddle_slug)
    return _compile(node, ctx)


def _compile(node: _N, ctx: _Ctx) -> ColumnElement[bool]:
    if isinstance(node, Everyone):
        return true()
    if isinstance(node, _Const):
        return true() if node.value else false()
    if isinstance(node, Not):
        return not_(_compile(node.operand, ctx))
    if isinstance(node, And):
        return and_(*(_compile(o, ctx) for o in node.operands))
    if isinstance(node, Or):
        return or_(*(_compile(o, ctx) for o in node.operands))
    return _compile_atom(node, ctx)


def _compile_atom(node: Atom, ctx: _Ctx) -> ColumnElement[bool]:
    member = ctx.member
    if isinstance(node, Tag):
        tag = TAGS
        return _exists(
            tag,
            tag.c.huddle_id == ctx.huddle_id,
            tag.c.tag == node.name,
            tag.c.member_id == ctx.member_id,
        )
    if isinstance(node, CustomField):
        cf = FIELDS
        conditions = [cf.c.huddle_id == ctx.huddle_id, cf.c.name == node.name]
        if node.value is not None:
            conditions.append(cf.c.value == node.value)
        return _exists(cf, *conditions, cf.c.member_id == ctx.member_id)
    if isinstance(node, Zip):
        column = member.c.zip
        if node.prefix:
            low, high = _prefix_range(node.value)
            return and_(column.is_not(None), column >= low, column < high)
        return and_(column.is_not(None), column == node.value)
    if isinstance(node, Replied):
        return _when(member.c.last_replied_at, node.op, node.when, ctx, nullable=True)
    if isinstance(node, FirstName):
        column = member.c.first_name
        return and_(column.is_not(None), func.lower(column) == func.lower(node.value))
    if isinstance(node, Has):
        column = {
            "email": member.c.email,
            "phone": member.c.phone,
            "zip": member.c.zip,
            "name": member.c.first_name,
        }[node.what]
        return column.is_not(None)
    if isinstance(node, Joined | Status):
        if ctx.sub is not None:
            return _sub_condition(node, ctx.sub, ctx)
        sub = SUBSCRIPTIONS
        return _exists(
            sub,
            sub.c.member_id == ctx.member_id,
            sub.c.huddle_id == ctx.huddle_id,
            sub.c.channel == ctx.channel,
            _sub_condition(node, sub, ctx),
        )
    # HuddleIs: resolved before planning; compile_filter without a slug tests the huddle row.
    if ctx.huddle_slug is not None:
        return true() if node.slug == ctx.huddle_slug else false()
    huddle = HUDDLES
    return _exists(huddle, huddle.c.id == ctx.huddle_id, huddle.c.slug == node.slug)


def _exists(local: Any, *conditions: ColumnElement[bool]) -> ColumnElement[bool]:
    """EXISTS over ``local``, correlated to whatever else it names at any enclosing level.

    (SQLAlchemy's implicit correlation only looks one SELECT up: a tag test inside the
    subscription's EXISTS would otherwise get its own copy of the driving set. And ``local`` is
    never correlated, so it needs no alias even when an enclosing query reads the same table.)
    """
    return exists().where(*conditions).correlate_except(local)


def _sub_condition(node: Joined | Status, sub: Any, ctx: _Ctx) -> ColumnElement[bool]:
    if isinstance(node, Status):
        return sub.c.state == node.state
    return _when(sub.c.created_at, node.op, node.when, ctx, nullable=False)


def _when(column: Any, op: Op, when: When, ctx: _Ctx, *, nullable: bool) -> ColumnElement[bool]:
    """``column`` compared with a day (in ctx.tz) or an age back from ctx.now."""
    condition: ColumnElement[bool]
    if isinstance(when, Age):
        cutoff = when.before(ctx.now)
        # An age reads "less than 30 days ago" (<) or "more than 30 days ago" (>).
        if op == "<":
            condition = column > cutoff
        elif op == "<=":
            condition = column >= cutoff
        elif op == ">":
            condition = column < cutoff
        else:
            condition = column <= cutoff
    else:
        day_start = datetime.combine(when, time(0), tzinfo=ctx.tz)
        next_day = datetime.combine(when + timedelta(days=1), time(0), tzinfo=ctx.tz)
        if op == ">":
            condition = column >= next_day
        elif op == ">=":
            condition = column >= day_start
        elif op == "<":
            condition = column < day_start
        elif op == "<=":
            condition = column < next_day
        else:
            condition = and_(column >= day_start, column < next_day)
    if nullable:
        return and_(column.is_not(None), condition)
    return condition


def _prefix_range(prefix: str) -> tuple[str, str]:
    """``021`` → (``021``, ``022``): an index range, not LIKE (digits only, so any collation)."""
    return prefix, prefix[:-1] + chr(ord(prefix[-1]) + 1)


def _check_channel(channel: str) -> None:
    if channel not in m.CHANNELS:
        raise ValueError(f"channel must be one of {', '.join(m.CHANNELS)}, not {channel!r}")


def _check_now(now: datetime) -> None:
    if now.tzinfo is None:
        raise ValueError("now must be an aware datetime (outreach.app.clock.utcnow())")


# ---------------------------------------------------------------------------------------------
# Planning: negation normal form, the driving set, count by difference


@dataclass(frozen=True)
class _Const(_Node):
    value: bool


_TRUE = _Const(True)
_FALSE = _Const(False)
_N: TypeAlias = Node | _Const


def _nnf(node: _N, negate: bool = False) -> _N:
    """Push negations down to atoms, flatten and/or, fold constants."""
    if isinstance(node, Everyone):
        return _FALSE if negate else _TRUE
    if isinstance(node, _Const):
        return _Const(node.value != negate)
    if isinstance(node, Not):
        return _nnf(node.operand, not negate)
    if isinstance(node, And | Or):
        conjunction = isinstance(node, And) != negate
        children = [_nnf(o, negate) for o in node.operands]
        return _combine(children, conjunction=conjunction)
    return Not(node) if negate else node


def _combine(children: Sequence[_N], *, conjunction: bool) -> _N:
    flat: list[Node] = []
    seen: set[Node] = set()
    for child in children:
        if isinstance(child, _Const):
            if child.value != conjunction:  # FALSE in an and, TRUE in an or
                return child
            continue
        parts = child.operands if isinstance(child, And if conjunction else Or) else (child,)
        for part in parts:
            if part not in seen:
                seen.add(part)
                flat.append(part)
    if not flat:
        return _TRUE if conjunction else _FALSE
    if len(flat) == 1:
        return flat[0]
    return And(tuple(flat)) if conjunction else Or(tuple(flat))


def _conjuncts(node: _N) -> list[_N]:
    if isinstance(node, And):
        return list(node.operands)
    if node == _TRUE:
        return []
    return [node]


def _resolve_huddle(node: Node, slug: str) -> _N:
    """Replace ``huddle:SLUG`` (already checked to be this huddle) by TRUE."""
    if isinstance(node, HuddleIs):
        return _TRUE
    if isinstance(node, Not):
        return Not(_resolve_huddle(node.operand, slug))  # type: ignore[arg-type]
    if isinstance(node, And | Or):
        operands = tuple(_resolve_huddle(o, slug) for o in node.operands)
        return type(node)(operands)  # type: ignore[arg-type]
    return node


_DRIVERS = (Tag, CustomField, Zip)


def _drivable(node: _N) -> bool:
    """Can the members matching ``node`` be listed from an index (as a superset)?"""
    if isinstance(node, _DRIVERS):
        return True
    if isinstance(node, Or):
        return all(_drivable(o) for o in node.operands)
    if isinstance(node, And):
        return any(_drivable(o) for o in node.operands)
    return False


def _uses_sub(node: _N) -> bool:
    return any(isinstance(n, Joined | Status) for n in _walk(node))  # type: ignore[arg-type]


def _uses_member(node: _N) -> bool:
    return any(
        isinstance(n, Zip | Replied | FirstName | Has)
        for n in _walk(node)  # type: ignore[arg-type]
    )


@dataclass
class _Audience:
    """One huddle × channel audience, with what planning needs at hand."""

    session: Session
    huddle_id: int
    channel: str
    now: datetime
    tz: tzinfo
    slug: str
    default_state: str | None  # "active" unless the filter has a status: term
    sqlite: bool
    _estimates: dict[Any, int] = field(default_factory=dict)

    # -- sets of member ids

    def _rows(self, node: _N | None) -> tuple[Any, list[ColumnElement[bool]], Any]:
        """(table, conditions, member id column) of a tag, field or zip set; None: subscribers."""
        if node is None:
            table = SUBSCRIPTIONS
            conditions = [table.c.huddle_id == self.huddle_id, table.c.channel == self.channel]
            if self.default_state is not None:
                conditions.append(table.c.state == self.default_state)
            return table, conditions, table.c.member_id
        if isinstance(node, Tag):
            table = TAGS
            conditions = [table.c.huddle_id == self.huddle_id, table.c.tag == node.name]
            return table, conditions, table.c.member_id
        if isinstance(node, CustomField):
            table = FIELDS
            conditions = [table.c.huddle_id == self.huddle_id, table.c.name == node.name]
            if node.value is not None:
                conditions.append(table.c.value == node.value)
            return table, conditions, table.c.member_id
        if isinstance(node, Zip):
            zip_code = MEMBERS.c.zip
            if node.prefix:
                low, high = _prefix_range(node.value)
                return MEMBERS, [zip_code >= low, zip_code < high], MEMBERS.c.id
            return MEMBERS, [zip_code == node.value], MEMBERS.c.id
        raise AssertionError(f"not a driving set: {node!r}")

    def source(self, node: _N) -> Select[Any]:
        """SELECT member_id of exactly the members matching a drivable node (subscribed or not)."""
        if isinstance(node, Or):
            parts = union(*(self.source(o) for o in node.operands)).subquery()
            return select(parts.c.member_id)
        if isinstance(node, And):
            first, _ = self.smallest([o for o in node.operands if _drivable(o)])
            inner = self.source(first).subquery()
            rest = _combine([o for o in node.operands if o != first], conjunction=True)
            member_id: Any = inner.c.member_id
            query = select(member_id.label("member_id")).select_from(inner)
            member = MEMBERS.alias()
            if _uses_member(rest):
                query = query.join(member, member.c.id == member_id)
                member_id = member.c.id
            return query.where(_compile(rest, self._ctx(member_id, member, None)))
        _, conditions, member_id = self._rows(node)
        return select(member_id.label("member_id")).where(*conditions)

    # -- sizes (SQLite only: PostgreSQL plans with its own statistics)

    def estimate(self, node: _N | None, cap: int) -> int:
        """How many rows a set has, counted up to ``cap`` (index-only on SQLite)."""
        if cap <= 0:
            return 0
        if isinstance(node, Or):
            total = 0
            for operand in node.operands:
                total += self.estimate(operand, cap - total)
                if total >= cap:
                    return cap
            return total
        if isinstance(node, And):
            return min(self.estimate(o, cap) for o in node.operands if _drivable(o))
        key = (node, cap)
        if key not in self._estimates:
            table, conditions, _ = self._rows(node)
            # The row id, not member_id: every index holds it, so the count reads the index only.
            limited = select(table.c.id).where(*conditions).limit(cap).subquery()
            rows = self.session.scalar(select(func.count()).select_from(limited))
            self._estimates[key] = int(rows or 0)
        return self._estimates[key]

    def smallest(self, candidates: list[_N]) -> tuple[_N, int | None]:
        """The candidate with the fewest rows (probing in order, each capped at the best yet)."""
        ordered = sorted(candidates, key=_static_rank)
        if not self.sqlite:
            return ordered[0], None
        best, best_rows = ordered[0], self.estimate(ordered[0], ESTIMATE_CAP)
        for candidate in ordered[1:]:
            if best_rows == 0:
                break
            rows = self.estimate(candidate, best_rows)
            if rows < best_rows:
                best, best_rows = candidate, rows
        return best, best_rows

    def choose_driver(self, conjuncts: list[_N]) -> _N | None:
        """The drivable conjunct to start from, or None to start from the subscriptions."""
        candidates = [c for c in conjuncts if _drivable(c)]
        if not candidates:
            return None
        best, rows = self.smallest(candidates)
        if rows and self.estimate(None, rows) < rows:
            return None  # the huddle's audience on this channel is smaller than the set
        return best

    # -- queries

    def select_ids(self, node: _N, columns: str = "ids") -> Select[Any]:
        """SELECT member_id (or count(*)) of the audience members matching ``node`` (NNF)."""
        conjuncts = _conjuncts(node)
        driver = self.choose_driver(conjuncts) if node != _FALSE else None
        if driver is None:
            return self._from_subscriptions(node, columns)
        rest = _combine([c for c in conjuncts if c != driver], conjunction=True)
        return self._from_set(rest, driver, columns)

    def _ctx(self, member_id: Any, member: Any, sub: Any | None) -> _Ctx:
        return _Ctx(
            self.huddle_id, self.channel, self.now, self.tz, member_id, member, sub, self.slug
        )

    def _from_subscriptions(self, node: _N, columns: str) -> Select[Any]:
        sub, member = _S, _M
        what: Any = func.count() if columns == "count" else sub.c.member_id.label("member_id")
        query = select(what).select_from(sub)
        if _uses_member(node):
            query = query.join(member, member.c.id == sub.c.member_id)
        query = query.where(sub.c.huddle_id == self.huddle_id, sub.c.channel == self.channel)
        if self.default_state is not None:
            query = query.where(sub.c.state == self.default_state)
        if node != _TRUE:
            query = query.where(_compile(node, self._ctx(sub.c.member_id, member, sub)))
        return query

    def _from_set(self, rest: _N, driver: _N, columns: str) -> Select[Any]:
        candidates = self.source(driver).subquery("c")
        member_id: Any = candidates.c.member_id
        what: Any = func.count() if columns == "count" else member_id.label("member_id")
        query = select(what).select_from(candidates)
        member = _M
        if _uses_member(rest):
            query = query.join(member, member.c.id == member_id)
            # Correlating on the joined member makes SQLite check the member's own columns
            # before it looks the subscription up.
            member_id = member.c.id
        sub = _S
        sub_conditions: list[ColumnElement[bool]] = [
            sub.c.member_id == member_id,
            sub.c.huddle_id == self.huddle_id,
            sub.c.channel == self.channel,
        ]
        if self.default_state is not None:
            sub_conditions.append(sub.c.state == self.default_state)
        if rest == _TRUE:
            return query.where(_exists(sub, *sub_conditions))
        if _uses_sub(rest):
            # joined:/status: need the subscription row: the whole filter goes inside its EXISTS.
            inner = _compile(rest, self._ctx(member_id, member, sub))
            return query.where(_exists(sub, *sub_conditions, inner))
        outer = _compile(rest, self._ctx(member_id, member, None))
        return query.where(outer, _exists(sub, *sub_conditions))

    def count_expression(self, node: _N) -> ColumnElement[int]:
        """count(node) as a scalar expression; excluded index-friendly sets are subtracted."""
        conjuncts = _conjuncts(node)
        if node == _FALSE:
            return self.select_ids(node, "count").scalar_subquery()
        if not any(_drivable(c) for c in conjuncts):
            excluded = [c for c in conjuncts if _drivable(_nnf(c, negate=True))]
            rest = _combine([c for c in conjuncts if c not in excluded], conjunction=True)
            # PostgreSQL anti-joins well by itself once it scans the audience anyway: subtract
            # only from a bare audience count (an index-only count). SQLite probes row by row.
            if excluded and (self.sqlite or rest == _TRUE):
                removed = _combine([_nnf(c, negate=True) for c in excluded], conjunction=False)
                both = _combine([rest, removed], conjunction=True)
                return self.count_expression(rest) - self.count_expression(both)
        return self.select_ids(node, "count").scalar_subquery()


#: SQLite: candidate sets are counted up to this many rows when choosing where to start.
ESTIMATE_CAP = 20_000


def _static_rank(node: _N) -> int:
    """Probe order, and the pick on ties and on PostgreSQL: per-huddle sets first (the tag index
    holds member_id), zip ranges (global, not per huddle) after, unions and ands last."""
    if isinstance(node, Tag):
        return 0
    if isinstance(node, CustomField):
        return 1
    if isinstance(node, Zip):
        return 2
    return 3


def _audience(session: Session, huddle_id: int, channel: str, now: datetime, tree: Node) -> Any:
    _check_channel(channel)
    _check_now(now)
    huddle = session.get(Huddle, huddle_id)
    if huddle is None:
        raise LookupError(f"no huddle with id {huddle_id}")
    check_huddle(tree, huddle.slug)
    try:
        zone: tzinfo = ZoneInfo(huddle.timezone)
    except (ZoneInfoNotFoundError, ValueError):
        zone = UTC
    bind = session.get_bind()
    audience = _Audience(
        session=session,
        huddle_id=huddle_id,
        channel=channel,
        now=now,
        tz=zone,
        slug=huddle.slug,
        default_state=None if _mentions_status(tree) else m.ACTIVE,
        sqlite=bind.dialect.name == "sqlite",
    )
    return audience, _nnf(_resolve_huddle(tree, huddle.slug))


# ---------------------------------------------------------------------------------------------
# The API the rest of the app uses


def audience_query(
    session: Session, *, huddle_id: int, channel: str, filter_text: str, now: datetime
) -> Select[Any]:
    """SELECT member_id: members subscribed in the huddle on the channel who match the filter.

    Subscribers in state ``active`` only, unless the filter has a ``status:`` term. One column,
    ``member_id``, each member once. Raises :class:`SegmentError` for a bad filter.
    """
    audience, node = _audience(session, huddle_id, channel, now, parse(filter_text))
    return audience.select_ids(node)


def count_statement(
    session: Session, *, huddle_id: int, channel: str, filter_text: str, now: datetime
) -> Select[Any]:
    """The SELECT that :func:`count` runs (one statement, one snapshot), e.g. to EXPLAIN it."""
    audience, node = _audience(session, huddle_id, channel, now, parse(filter_text))
    return select(audience.count_expression(node))


def count(
    session: Session, *, huddle_id: int, channel: str, filter_text: str, now: datetime
) -> int:
    """How many members :func:`audience_query` would return."""
    statement = count_statement(
        session, huddle_id=huddle_id, channel=channel, filter_text=filter_text, now=now
    )
    return int(session.scalar(statement) or 0)


def sample(
    session: Session,
    *,
    huddle_id: int,
    channel: str,
    filter_text: str,
    now: datetime,
    limit: int = 20,
) -> list[Member]:
    """Up to ``limit`` matching members (the first found, not a random draw), ordered by id."""
    ids = audience_query(
        session, huddle_id=huddle_id, channel=channel, filter_text=filter_text, now=now
    ).limit(max(0, limit))
    member_ids = list(session.scalars(ids))
    if not member_ids:
        return []
    return list(
        session.scalars(select(Member).where(Member.id.in_(member_ids)).order_by(Member.id))
    )


def save_segment(session: Session, *, huddle_id: int, name: str, filter_text: str) -> Segment:
    """Save a named filter for a huddle, after checking it parses and names no other huddle."""
    tree = parse(filter_text)
    huddle = session.get(Huddle, huddle_id)
    if huddle is None:
        raise LookupError(f"no huddle with id {huddle_id}")
    check_huddle(tree, huddle.slug)
    name = (name or "").strip()
    if not name:
        raise SegmentNameError("a segment needs a name")
    if len(name) > 100:
        raise SegmentNameError("a segment name has 100 characters at most")
    taken = session.scalar(
        select(Segment.id).where(Segment.huddle_id == huddle_id, Segment.name == name)
    )
    if taken is not None:
        raise SegmentNameError(f"huddle {huddle.slug} already has a segment named {name!r}")
    segment = Segment(huddle_id=huddle_id, name=name, filter=filter_text.strip())
    session.add(segment)
    session.flush()
    return segment
