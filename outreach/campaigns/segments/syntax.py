"""The filter tree: node dataclasses, the errors, and the canonical text of a tree.

Everything else in the package works on these values: :mod:`.parser` builds them from text,
:mod:`.compiler` turns them into SQL, :mod:`.planner` rewrites them before it does. They are kept
here, with no SQLAlchemy in sight, so that each of those can import the tree without the others.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from typing import Any, Literal, TypeAlias

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
# Walking the tree


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


# ---------------------------------------------------------------------------------------------
# Constants: never parsed; planner.py folds filters into them and compiler.py compiles them


@dataclass(frozen=True)
class _Const(_Node):
    value: bool


_TRUE = _Const(True)
_FALSE = _Const(False)
_N: TypeAlias = Node | _Const
