"""Compiling: a filter tree into a SQLAlchemy boolean over members (correlated EXISTS).

:func:`compile_filter` is the plain, unplanned translation; :mod:`.planner` builds its faster
queries from the same :func:`_compile` with the rows it already has at hand (:class:`_Ctx`).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, time, timedelta, tzinfo
from typing import Any, cast

from sqlalchemy import ColumnElement, Table, and_, exists, false, func, not_, or_, true

from outreach.campaigns.segments.syntax import (
    _N,
    Age,
    And,
    Atom,
    CustomField,
    Everyone,
    FirstName,
    Has,
    Joined,
    Node,
    Not,
    Op,
    Or,
    Replied,
    Status,
    Tag,
    When,
    Zip,
    _Const,
    check_huddle,
)
from outreach.models import Huddle, Member, MemberField, MemberTag, Subscription
from outreach.models import members as m

# Core tables: ORM aliases cost milliseconds of Python per attribute, and a count is interactive.
MEMBERS = cast(Table, Member.__table__)
SUBSCRIPTIONS = cast(Table, Subscription.__table__)
TAGS = cast(Table, MemberTag.__table__)
FIELDS = cast(Table, MemberField.__table__)
HUDDLES = cast(Table, Huddle.__table__)
_S = SUBSCRIPTIONS.alias("s")
_M = MEMBERS.alias("m")


# ---------------------------------------------------------------------------------------------
# Compiling


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
