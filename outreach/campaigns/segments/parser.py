"""Parsing: filter text into the tree of :mod:`.syntax`, with errors that say what was expected.

The grammar is documented in the package docstring (:mod:`outreach.campaigns.segments`).
"""

from __future__ import annotations

import difflib
import re
from datetime import date

from outreach.campaigns.segments.syntax import (
    Age,
    And,
    Atom,
    CustomField,
    Everyone,
    FirstName,
    Has,
    HuddleIs,
    Joined,
    Node,
    Not,
    Op,
    Or,
    Replied,
    SegmentSyntaxError,
    Status,
    Tag,
    When,
    Zip,
)
from outreach.models import members as m

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
_FIELD_NAME = re.compile(m.FIELD_NAME.pattern, re.IGNORECASE)  # matched, then lower-cased
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
