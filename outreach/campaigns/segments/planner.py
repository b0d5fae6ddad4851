"""Query planning: the audience queries behind :func:`count`, :func:`audience_query` and friends.

The filter is put in negation normal form, the query starts from the smallest index-friendly set
the filter requires, and counts subtract excluded sets (see "Query shape" in the package
docstring). The per-row checks are :mod:`.compiler`'s.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, tzinfo
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from sqlalchemy import ColumnElement, Select, func, select, union
from sqlalchemy.orm import Session

from outreach.campaigns.segments.compiler import (
    _M,
    _S,
    FIELDS,
    MEMBERS,
    SUBSCRIPTIONS,
    TAGS,
    _check_channel,
    _check_now,
    _compile,
    _Ctx,
    _exists,
    _prefix_range,
)
from outreach.campaigns.segments.parser import parse
from outreach.campaigns.segments.syntax import (
    _FALSE,
    _N,
    _TRUE,
    And,
    CustomField,
    Everyone,
    FirstName,
    Has,
    HuddleIs,
    Joined,
    Node,
    Not,
    Or,
    Replied,
    Status,
    Tag,
    Zip,
    _Const,
    _mentions_status,
    _walk,
    check_huddle,
)
from outreach.models import Huddle, Member
from outreach.models import members as m

# ---------------------------------------------------------------------------------------------
# Planning: negation normal form, the driving set, count by difference


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


def huddle_zone(name: str) -> tzinfo:
    """The zone whose calendar days a filter's dates mean: the huddle's (UTC if unknown)."""
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        return UTC


def _audience(session: Session, huddle_id: int, channel: str, now: datetime, tree: Node) -> Any:
    _check_channel(channel)
    _check_now(now)
    huddle = session.get(Huddle, huddle_id)
    if huddle is None:
        raise LookupError(f"no huddle with id {huddle_id}")
    check_huddle(tree, huddle.slug)
    zone = huddle_zone(huddle.timezone)
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
