"""The template language: which names and filters exist, and the checker that enforces it.

Every parsed template is walked node by node (:class:`_Checker`) before any code is generated;
node types not on the allow-list are refused with an organizer-facing message (:func:`_refusal`).
"""

from __future__ import annotations

import difflib
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal, cast

from jinja2 import nodes

from outreach.messages.templating.errors import TemplateError
from outreach.models.members import FIELD_NAME

Channel = Literal["sms", "email"]

# Merge-field references per template: with the per-value caps (compiled._MAX_VALUE) this
# bounds the memory a render can take before the output cap is checked (no loops, so each
# reference renders once).
MAX_REFERENCES = 500

ALLOWED_FILTERS = (
    "default",
    "upper",
    "lower",
    "title",
    "capitalize",
    "trim",
    "truncate",
    "replace",
)

_PERSON_NAMES = ("first_name", "last_name", "zip", "huddle_name")
_NAMES: dict[str, tuple[str, ...]] = {
    "sms": (*_PERSON_NAMES, "field"),
    "email": (*_PERSON_NAMES, "field", "unsubscribe_url"),
}
_FIELD_NAME = FIELD_NAME  # custom field names, as imports name them
_ALLOWED_COMPARISONS = frozenset({"eq", "ne", "in", "notin"})  # ==, !=, in, not in


def merge_names(channel: Channel) -> tuple[str, ...]:
    """The top-level names a template on ``channel`` may use (``field`` is the custom fields)."""
    return _NAMES[channel]


# --- the draft-time check -------------------------------------------------------------------------


@dataclass(frozen=True)
class _Param:
    name: str
    kind: type
    literal: bool  # must be a literal (numbers, flags, replace's search text)


_FILTER_PARAMS: dict[str, tuple[_Param, ...]] = {
    "default": (_Param("default_value", str, False), _Param("boolean", bool, True)),
    "upper": (),
    "lower": (),
    "title": (),
    "capitalize": (),
    "trim": (_Param("chars", str, True),),
    "truncate": (
        _Param("length", int, True),
        _Param("killwords", bool, True),
        _Param("end", str, True),
        _Param("leeway", int, True),
    ),
    "replace": (_Param("old", str, True), _Param("new", str, False), _Param("count", int, True)),
}

_STATEMENT_NAMES: dict[type[nodes.Node], str] = {
    nodes.For: "{% for %} loop",
    nodes.Macro: "{% macro %}",
    nodes.CallBlock: "{% call %}",
    nodes.Include: "{% include %}",
    nodes.Import: "{% import %}",
    nodes.FromImport: "{% from ... import %}",
    nodes.Extends: "{% extends %}",
    nodes.Block: "{% block %}",
    nodes.Assign: "{% set %}",
    nodes.AssignBlock: "{% set %}",
    nodes.FilterBlock: "{% filter %} block",
    nodes.With: "{% with %}",
    nodes.ScopedEvalContextModifier: "{% autoescape %}",
    nodes.EvalContextModifier: "{% autoescape %}",
    nodes.ExprStmt: "{% do %}",
    nodes.Continue: "{% continue %}",
    nodes.Break: "{% break %}",
}
_ARITHMETIC = (
    nodes.Add,
    nodes.Sub,
    nodes.Mul,
    nodes.Div,
    nodes.FloorDiv,
    nodes.Mod,
    nodes.Pow,
    nodes.Neg,
    nodes.Pos,
)
_ONLY = "templates may use merge fields, filters and {% if %}, nothing else"


def _fail(message: str, node: nodes.Node) -> TemplateError:
    return TemplateError(message, getattr(node, "lineno", None))


_STATEMENT_NODES = frozenset({nodes.Template, nodes.Output, nodes.If})
_EXPRESSION_NODES = frozenset(
    {
        nodes.Const,
        nodes.Name,
        nodes.Getattr,
        nodes.Getitem,
        nodes.Filter,
        nodes.Compare,
        nodes.And,
        nodes.Or,
        nodes.Not,
        nodes.CondExpr,
        nodes.Concat,
    }
)


def _refusal(node: nodes.Node) -> TemplateError:
    """The organizer-facing reason a node type is not on the allow-list."""
    if isinstance(node, nodes.Scope) and node.body:  # {% autoescape %} parses as Scope(...)
        node = node.body[0]
    kind = type(node)
    if kind in _STATEMENT_NAMES:
        return _fail(f"{_STATEMENT_NAMES[kind]} is not allowed: {_ONLY}", node)
    if isinstance(node, nodes.Call):
        return _fail(
            "calls are not allowed; use a filter instead, e.g. {{ first_name | upper }}", node
        )
    if isinstance(node, nodes.Test):
        return _fail(
            f'tests such as "is {node.name}" are not allowed; merge fields are always '
            "defined (empty when missing): write {% if first_name %}",
            node,
        )
    if kind in _ARITHMETIC:
        return _fail("arithmetic is not allowed in templates", node)
    if kind in (nodes.List, nodes.Tuple, nodes.Dict, nodes.Pair):
        return _fail("lists, tuples and dicts are not allowed in templates", node)
    if kind is nodes.Slice:
        return _fail("slicing is not allowed; use the truncate filter", node)
    return _fail(f"{kind.__name__} is not allowed: {_ONLY}", node)


class _Checker:
    """Walks the parsed template, refusing every node type not on the allow-list."""

    def __init__(self, channel: Channel) -> None:
        self.channel = channel
        self.allowed_names = _NAMES[channel]
        self.names_used: set[str] = set()
        self.fields_used: set[str] = set()
        self.references = 0

    def statement(self, node: nodes.Node) -> None:
        if type(node) not in _STATEMENT_NODES:
            raise _refusal(node)
        if isinstance(node, nodes.Template):
            self.statements(node.body)
        elif isinstance(node, nodes.Output):
            for child in node.nodes:
                if type(child) is not nodes.TemplateData:
                    self.expression(child)
        elif isinstance(node, nodes.If):
            self.expression(node.test)
            self.statements(node.body)
            self.statements(node.elif_)
            self.statements(node.else_)

    def statements(self, body: Sequence[nodes.Node]) -> None:
        for node in body:
            self.statement(node)

    def expression(self, node: nodes.Node) -> None:
        if type(node) not in _EXPRESSION_NODES:
            raise _refusal(node)
        if isinstance(node, nodes.Const):
            if node.value is not None and type(node.value) not in (str, int, float, bool):
                raise _fail("only text, number and true/false literals are allowed", node)
        elif isinstance(node, nodes.Name):
            self.name(node)
        elif isinstance(node, nodes.Getattr):
            self.field_access(node, node.node, node.attr)
        elif isinstance(node, nodes.Getitem):
            key = node.arg.value if isinstance(node.arg, nodes.Const) else None
            if not isinstance(key, str):
                raise _fail(
                    'indexing is not allowed; custom fields are field.name or field["name"]', node
                )
            self.field_access(node, node.node, key)
        elif isinstance(node, nodes.Filter):
            self.filter(node)
        elif isinstance(node, nodes.Compare):
            self.expression(node.expr)
            for operand in node.ops:
                if operand.op not in _ALLOWED_COMPARISONS:
                    raise _fail("only ==, !=, in and not in comparisons are allowed", node)
                self.expression(operand.expr)
        elif isinstance(node, nodes.BinExpr):  # and, or (arithmetic was refused above)
            self.expression(node.left)
            self.expression(node.right)
        elif isinstance(node, nodes.Not):
            self.expression(node.node)
        elif isinstance(node, nodes.CondExpr):
            if node.expr2 is None:
                raise _fail('an inline "if" needs an "else": {{ a if b else c }}', node)
            self.expression(node.test)
            self.expression(node.expr1)
            self.expression(node.expr2)
        elif isinstance(node, nodes.Concat):
            for child in node.nodes:
                self.expression(child)

    def count_reference(self, node: nodes.Node) -> None:
        self.references += 1
        if self.references > MAX_REFERENCES:
            raise _fail(f"more than {MAX_REFERENCES} merge-field references", node)

    def name(self, node: nodes.Name) -> None:
        if node.ctx != "load":  # pragma: no cover - only assignments store, and they are refused
            raise _fail("assignments are not allowed", node)
        name = node.name
        if name == "field":
            raise _fail(
                'use a custom field by name: {{ field.location }} or field["location"]', node
            )
        if name not in self.allowed_names:
            raise _fail(self.unknown_name_message(name), node)
        self.names_used.add(name)
        self.count_reference(node)

    def unknown_name_message(self, name: str) -> str:
        if name == "unsubscribe_url":
            return "unsubscribe_url is only available in email templates"
        message = f"unknown merge field {name!r}"
        close = difflib.get_close_matches(name, self.allowed_names, n=1)
        if close and close[0] != "field":
            message += f" (did you mean {close[0]!r}?)"
        elif _FIELD_NAME.fullmatch(name):
            message += f" (custom fields are written field.{name})"
        shown = ", ".join(n if n != "field" else "field.<name>" for n in self.allowed_names)
        return f"{message}; available: {shown}"

    def field_access(self, node: nodes.Node, target: nodes.Node, key: str) -> None:
        if not isinstance(target, nodes.Name) or target.name != "field":
            raise _fail(
                "attribute access and indexing are only allowed on field "
                "(field.location); use filters for everything else",
                node,
            )
        if not _FIELD_NAME.fullmatch(key):
            raise _fail(
                f"{key!r} is not a custom field name (lower-case letters, digits and _, "
                "starting with a letter)",
                node,
            )
        self.names_used.add("field")
        self.fields_used.add(key)
        self.count_reference(node)

    def filter(self, node: nodes.Filter) -> None:
        if node.name not in _FILTER_PARAMS:
            raise _fail(
                f"filter {node.name!r} is not allowed; allowed filters: "
                + ", ".join(ALLOWED_FILTERS),
                node,
            )
        if node.node is None:  # pragma: no cover - only {% filter %} blocks, refused earlier
            raise _fail("{% filter %} blocks are not allowed", node)
        if node.dyn_args is not None or node.dyn_kwargs is not None:
            raise _fail(f"{node.name}: *args and **kwargs are not allowed", node)
        self.expression(node.node)
        params = _FILTER_PARAMS[node.name]
        if len(node.args) > len(params):
            raise _fail(
                f"filter {node.name!r} takes at most {len(params)} argument(s), "
                f"got {len(node.args)}",
                node,
            )
        given: dict[str, nodes.Expr] = {p.name: a for p, a in zip(params, node.args, strict=False)}
        by_name = {p.name: p for p in params}
        # Jinja annotates Filter.kwargs as Pair nodes; the parser builds Keyword nodes.
        for keyword in cast(list[nodes.Keyword], node.kwargs):
            if keyword.key not in by_name:
                raise _fail(f"filter {node.name!r} has no argument {keyword.key!r}", node)
            if keyword.key in given:
                raise _fail(f"filter {node.name!r} got {keyword.key!r} twice", node)
            given[keyword.key] = keyword.value
        for param_name, arg in given.items():
            self.argument(node, by_name[param_name], arg)
        self.filter_constraints(node, given)

    def argument(self, node: nodes.Filter, param: _Param, arg: nodes.Expr) -> None:
        if isinstance(arg, nodes.Const):
            value = arg.value
            ok = type(value) is param.kind or (param.name == "leeway" and value is None)
            if not ok:
                wanted = {str: "a text", int: "a whole number", bool: "true or false"}[param.kind]
                raise _fail(f"{node.name}: {param.name} must be {wanted}, got {value!r}", node)
            return
        if isinstance(arg, nodes.Neg) and param.kind is int:  # -1 parses as Neg(Const(1))
            raise _fail(f"{node.name}: {param.name} must not be negative", node)
        if param.literal or param.kind is not str:
            raise _fail(f"{node.name}: {param.name} must be a literal value", node)
        self.expression(arg)

    @staticmethod
    def filter_constraints(node: nodes.Filter, given: dict[str, nodes.Expr]) -> None:
        def literal(name: str, default: Any) -> Any:
            arg = given.get(name)
            return arg.value if isinstance(arg, nodes.Const) else default

        if node.name == "truncate":
            length, end = literal("length", 255), literal("end", "...")
            if length < len(end):
                raise _fail(f"truncate: length {length} is shorter than the ending {end!r}", node)
        if node.name == "replace" and literal("old", None) == "":
            raise _fail("replace: the text to find must not be empty", node)
