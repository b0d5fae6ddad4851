"""Organizer message templates: merge fields in SMS and email copy, checked when drafted.

Organizers write ``Hi {{ first_name | default("friend") }}, rally at {{ field.location }}!``.
A template is compiled once per campaign (:func:`compile_template`, the draft-time check) and
rendered once per recipient in the send hot path (:meth:`CompiledTemplate.render`).

The language is a deliberately small subset of Jinja, enforced on the parsed AST (an allow-list of
node types) before any code is generated, on top of Jinja's ``ImmutableSandboxedEnvironment``:

* text, ``{{ expression }}``, ``{% if %}`` / ``{% elif %}`` / ``{% else %}``, comments and
  ``{% raw %}``;
* names: ``first_name``, ``last_name``, ``zip``, ``huddle_name``, ``field.<name>`` (or
  ``field["name"]``) and, in email only, ``unsubscribe_url``;
* filters: ``default upper lower title capitalize trim truncate replace``, with literal arguments
  where a number or a flag is expected;
* ``==``, ``!=``, ``in``, ``not in``, ``and``, ``or``, ``not``, ``~`` (join), inline
  ``a if cond else b``.

Everything else is refused with a message and a line number: loops, macros, ``set``, includes,
imports, ``extends``, blocks, ``{% autoescape %}``, calls (``first_name.upper()``), attribute access
on anything but ``field``, indexing, arithmetic (``"a" * 10**9``), literals lists/dicts, tests
(``is defined``) and every other filter. No loop and no call means rendering time is linear in the
template, and output is further capped (values, references, ``replace`` growth, total length).

Exceptions::

    ValueError
     ├── TemplateError  draft time: the organizer must fix the template (``message``, ``line``)
     └── RenderError    send time: this recipient's message cannot be rendered; the sender records
                        ``reason`` as the delivery's skip reason (never truncates, never sends)
"""

from __future__ import annotations

import difflib
import functools
import re
import unicodedata
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal, cast

from jinja2 import StrictUndefined, Template, TemplateSyntaxError, nodes
from jinja2 import TemplateError as JinjaTemplateError
from jinja2.filters import (
    do_capitalize,
    do_lower,
    do_replace,
    do_title,
    do_trim,
    do_truncate,
    do_upper,
)
from jinja2.runtime import Undefined
from jinja2.sandbox import ImmutableSandboxedEnvironment
from jinja2.utils import pass_environment, pass_eval_context

from outreach.messages.encoding import SegmentInfo, analyze, gsm_suggestion, is_gsm7

__all__ = [
    "ALLOWED_FILTERS",
    "EMAIL_MAX_OUTPUT",
    "EMAIL_MAX_SOURCE",
    "MAX_REFERENCES",
    "OPT_OUT_LINE",
    "SMS_MAX_BODY",
    "SMS_MAX_RENDERED",
    "SMS_MAX_SOURCE",
    "SMS_RECOMMENDED_MAX",
    "CompiledTemplate",
    "MergeContext",
    "RenderError",
    "SmsPreview",
    "TemplateError",
    "compile_template",
    "ensure_opt_out_line",
    "has_opt_out_instructions",
    "merge_names",
    "preview_sms",
    "render_email_html",
    "sample_context",
]

Channel = Literal["sms", "email"]

OPT_OUT_LINE = "Reply STOP to opt out"
_OPT_OUT_SUFFIX = "\n" + OPT_OUT_LINE

SMS_MAX_SOURCE = 5_000  # characters of template source
SMS_MAX_BODY = 1_600  # Twilio's body limit
# A rendered text leaves room for the opt-out line, so appending it never breaks the 1,600 limit.
SMS_MAX_RENDERED = SMS_MAX_BODY - len(_OPT_OUT_SUFFIX)
SMS_RECOMMENDED_MAX = 320
EMAIL_MAX_SOURCE = 100_000
EMAIL_MAX_OUTPUT = 200_000
# Merge-field references per template: with the per-value caps below this bounds the memory a
# render can take before the output cap is checked (no loops, so each reference renders once).
MAX_REFERENCES = 500
_MAX_VALUE = {"sms": 2_000, "email": 20_000}  # characters in one merge value (name, field)

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
# Custom field names as the importer accepts them (outreach.people.importer._FIELD_NAME).
_FIELD_NAME = re.compile(r"[a-z][a-z0-9_]{0,63}")
_ALLOWED_COMPARISONS = frozenset({"eq", "ne", "in", "notin"})  # ==, !=, in, not in


def merge_names(channel: Channel) -> tuple[str, ...]:
    """The top-level names a template on ``channel`` may use (``field`` is the custom fields)."""
    return _NAMES[channel]


# --- errors ---------------------------------------------------------------------------------------


class TemplateError(ValueError):
    """The template cannot be used: syntax, an unknown name, a forbidden construct, too long.

    Raised by :func:`compile_template` (draft time). ``message`` is meant for the organizer;
    ``line`` is the 1-based template line when known.
    """

    def __init__(self, message: str, line: int | None = None) -> None:
        super().__init__(message if line is None else f"line {line}: {message}")
        self.message = message
        self.line = line


class RenderError(ValueError):
    """One recipient's message cannot be rendered (send time). Never truncated, never sent.

    ``reason`` is a short code for the delivery's skip reason: ``message-too-long``,
    ``merge-value-too-long``, ``render-failed``.
    """

    def __init__(self, message: str, *, reason: str) -> None:
        super().__init__(message)
        self.message = message
        self.reason = reason


# --- merge data -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class MergeContext:
    """What one recipient's message may say about them. ``None`` renders as nothing."""

    first_name: str | None
    last_name: str | None
    zip: str | None
    huddle_name: str
    fields: Mapping[str, str]
    unsubscribe_url: str | None = None


_SAMPLE_FIELDS: dict[str, str] = {
    "location": "Lincoln Park fieldhouse",
    "address": "2045 N Lincoln Ave",
    "event_date": "Saturday, May 17",
    "event_time": "10am",
    "shift": "morning",
    "language": "en",
    "ward": "43",
    "team": "canvass",
    "role": "volunteer",
    "neighborhood": "Lincoln Park",
}


def sample_context(huddle_name: str) -> MergeContext:
    """Realistic values for previews (GSM-7 only, so they never change the segment count)."""
    return MergeContext(
        first_name="Maria",
        last_name="Hernandez",
        zip="60614",
        huddle_name=huddle_name,
        fields=dict(_SAMPLE_FIELDS),
        unsubscribe_url="https://outreach.example.org/u/3f9a2c7e51d04b6b",
    )


class _Fields:
    """The ``field`` object a template sees: missing keys are ``""``, values are length-capped.

    Templates reach it only through :meth:`_MergeEnvironment.getattr` / ``getitem``, which look
    keys up in the mapping and never touch Python attributes.
    """

    __slots__ = ("_cap", "_values")

    def __init__(self, values: Mapping[str, str], cap: int) -> None:
        self._values = values
        self._cap = cap

    def lookup(self, name: str) -> str:
        value = self._values.get(name)
        if value is None:
            return ""
        if not isinstance(value, str):
            value = str(value)
        if len(value) > self._cap:
            raise RenderError(
                f"field.{name} is {len(value):,} characters (limit {self._cap:,})",
                reason="merge-value-too-long",
            )
        return value


# --- environments ---------------------------------------------------------------------------------


class _MergeEnvironment(ImmutableSandboxedEnvironment):
    """Sandboxed Jinja whose only attribute/item access is a custom-field lookup.

    The AST check allows ``x.y`` and ``x["y"]`` only when ``x`` is ``field``; anything else that
    got here anyway would be an undefined value, which is an error (StrictUndefined).
    """

    def getattr(self, obj: Any, attribute: str) -> Any:
        if type(obj) is _Fields:
            return obj.lookup(attribute)
        return self.undefined(obj=obj, name=attribute)

    def getitem(self, obj: Any, argument: Any) -> Any:
        if type(obj) is _Fields and isinstance(argument, str):
            return obj.lookup(argument)
        return self.undefined(obj=obj, name=argument)


def _default(value: Any, default_value: Any = "", boolean: bool = True) -> Any:  # noqa: ARG001
    """Like Jinja's ``default(..., true)``: also replaces empty and blank values.

    A member without a first name has ``""`` (not an undefined name), and "Hi  ," is what an
    organizer writing ``default("friend")`` wants to avoid. ``boolean`` is accepted for Jinja
    familiarity and ignored.
    """
    if value is None or isinstance(value, Undefined):
        return default_value
    if isinstance(value, str) and not value.strip():
        return default_value
    return value


def _guarded_replace(cap: int) -> Callable[..., str]:
    @pass_eval_context
    def replace(eval_ctx: Any, s: Any, old: str, new: str, count: int | None = None) -> str:
        text, old, new = str(s), str(old), str(new)
        if len(new) > len(old):
            hits = len(text) + 1 if not old else text.count(old)
            if count is not None:
                hits = min(hits, count)
            grown = len(text) + hits * (len(new) - len(old))
            if grown > cap:
                raise RenderError(
                    f"replace() would produce {grown:,} characters (limit {cap:,})",
                    reason="message-too-long",
                )
        return do_replace(eval_ctx, s, old, new, count)

    return replace


@pass_environment
def _truncate(
    env: Any,
    s: Any,
    length: int = 255,
    killwords: bool = False,
    end: str = "...",
    leeway: int | None = None,
) -> str:
    return do_truncate(env, s, length, killwords, end, leeway)


@functools.cache
def _environment(channel: Channel, *, html: bool) -> _MergeEnvironment:
    env = _MergeEnvironment(
        autoescape=html,
        undefined=StrictUndefined,
        trim_blocks=True,  # a newline after {% if %} / {% endif %} is not part of the message
        lstrip_blocks=True,
        keep_trailing_newline=False,
        cache_size=0,
        auto_reload=False,
    )
    env.globals.clear()  # range, dict, lipsum, cycler, joiner, namespace
    env.tests.clear()
    env.filters = {
        "default": _default,
        "upper": do_upper,
        "lower": do_lower,
        "title": do_title,
        "capitalize": do_capitalize,
        "trim": do_trim,
        "truncate": _truncate,
        "replace": _guarded_replace(_max_output(channel)),
    }
    # truncate(20) means at most 20 characters, not "up to 25" (Jinja's default leeway is 5).
    env.policies["truncate.leeway"] = 0
    return env


def _max_output(channel: Channel) -> int:
    return SMS_MAX_RENDERED if channel == "sms" else EMAIL_MAX_OUTPUT


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


# --- compiled templates ---------------------------------------------------------------------------

_BLANK_LINES = re.compile(r"\n{3,}")


def _tidy_sms(text: str) -> str:
    """No outer whitespace, no trailing whitespace on any line, at most one blank line in a row.

    Invisible whitespace still costs characters (and a tab forces UCS-2). Line ends become
    ``\\n``. Written for the common case: a one-line text costs one ``strip()``.
    """
    text = text.strip()
    if "\r" in text:
        text = text.replace("\r\n", "\n").replace("\r", "\n")
    if "\n" in text:
        text = "\n".join([line.rstrip() for line in text.split("\n")])
        if "\n\n\n" in text:
            text = _BLANK_LINES.sub("\n\n", text)
    return text


@dataclass(frozen=True)
class CompiledTemplate:
    """A checked template. Compile once per campaign; :meth:`render` once per recipient."""

    source: str
    channel: Channel
    names_used: frozenset[str]  # top-level names the template reads ("field" for custom fields)
    fields_used: frozenset[str]  # custom field names (field.<name>)
    _text: Template = field(repr=False, compare=False)
    _html: Template | None = field(repr=False, compare=False)

    def _variables(self, context: MergeContext) -> dict[str, Any]:
        cap = _MAX_VALUE[self.channel]
        variables: dict[str, Any] = {}
        for name in self.names_used:
            if name == "field":
                variables[name] = _Fields(context.fields, cap)
                continue
            value = getattr(context, name) or ""
            if len(value) > cap:
                raise RenderError(
                    f"{name} is {len(value):,} characters (limit {cap:,})",
                    reason="merge-value-too-long",
                )
            variables[name] = value
        return variables

    def _run(self, template: Template, context: MergeContext) -> str:
        try:
            return template.render(self._variables(context))
        except RenderError:
            raise
        except (JinjaTemplateError, TypeError, ValueError, AssertionError) as exc:
            raise RenderError(f"could not render: {exc}", reason="render-failed") from exc

    def render(self, context: MergeContext) -> str:
        """The message for one recipient, as plain text (SMS body, email subject or text part).

        SMS output is tidied (see :func:`_tidy_sms`) and must fit in
        :data:`SMS_MAX_RENDERED` characters; otherwise :class:`RenderError`.
        """
        text = self._run(self._text, context)
        if self.channel == "sms":
            text = _tidy_sms(text)
            limit = SMS_MAX_RENDERED
        else:
            limit = EMAIL_MAX_OUTPUT
        if len(text) > limit:
            raise RenderError(
                f"the message is {len(text):,} characters (limit {limit:,})",
                reason="message-too-long",
            )
        return text

    def render_html(self, context: MergeContext) -> str:
        """The email body as HTML: every merge value is HTML-escaped. Email templates only."""
        if self._html is None:
            raise ValueError("render_html() needs an email template; this one is for SMS")
        html = self._run(self._html, context)
        if len(html) > EMAIL_MAX_OUTPUT:
            raise RenderError(
                f"the email is {len(html):,} characters (limit {EMAIL_MAX_OUTPUT:,})",
                reason="message-too-long",
            )
        return html


def render_email_html(compiled: CompiledTemplate, context: MergeContext) -> str:
    """The HTML email body for one recipient (same rules, HTML-autoescaping environment)."""
    return compiled.render_html(context)


def compile_template(source: str, *, channel: Channel) -> CompiledTemplate:
    """Check and compile an organizer's template: the draft-time check.

    Raises :class:`TemplateError` for a syntax error, an unknown name, a forbidden construct, a
    template over the size limit, or one whose sample render is over the length limit.
    """
    if channel not in _NAMES:
        raise ValueError(f"channel must be 'sms' or 'email', not {channel!r}")
    if not isinstance(source, str):
        raise TypeError("a template is a str")
    max_source = SMS_MAX_SOURCE if channel == "sms" else EMAIL_MAX_SOURCE
    if len(source) > max_source:
        raise TemplateError(
            f"the template is {len(source):,} characters; the limit is {max_source:,}"
        )
    text_env = _environment(channel, html=False)
    try:
        tree = text_env.parse(source)
    except TemplateSyntaxError as exc:
        raise TemplateError(exc.message or "syntax error", exc.lineno) from None
    checker = _Checker(channel)
    checker.statement(tree)
    try:
        text_template = text_env.from_string(source)
        html_template = (
            _environment(channel, html=True).from_string(source) if channel == "email" else None
        )
    except JinjaTemplateError as exc:  # pragma: no cover - the checker refuses what Jinja would
        raise TemplateError(str(exc)) from None
    compiled = CompiledTemplate(
        source=source,
        channel=channel,
        names_used=frozenset(checker.names_used),
        fields_used=frozenset(checker.fields_used),
        _text=text_template,
        _html=html_template,
    )
    _check_sample_renders(compiled)
    return compiled


def _check_sample_renders(compiled: CompiledTemplate) -> None:
    """Render with sample values and with an empty member: both must fit the limits."""
    sample = sample_context("Lincoln Park Neighbors")
    fields = dict(sample.fields)
    for name in compiled.fields_used:
        fields.setdefault(name, name.replace("_", " "))
    contexts = (
        MergeContext(
            first_name=sample.first_name,
            last_name=sample.last_name,
            zip=sample.zip,
            huddle_name=sample.huddle_name,
            fields=fields,
            unsubscribe_url=sample.unsubscribe_url,
        ),
        MergeContext(None, None, None, sample.huddle_name, {}, sample.unsubscribe_url),
    )
    for context in contexts:
        try:
            compiled.render(context)
            if compiled.channel == "email":
                compiled.render_html(context)
        except RenderError as exc:
            raise TemplateError(f"with sample values: {exc.message}") from None


# --- SMS compliance and preview -------------------------------------------------------------------

_OPT_OUT_INSTRUCTIONS = re.compile(
    r"\b(?:reply|text)\s+stop\b|\bstop\s+to\s+(?:opt[\s-]?out|end|unsubscribe)\b",
    re.IGNORECASE,
)


def has_opt_out_instructions(text: str) -> bool:
    """True if ``text`` already tells how to stop ("Reply STOP", "text stop", "STOP to end"…)."""
    return _OPT_OUT_INSTRUCTIONS.search(text) is not None


def ensure_opt_out_line(text: str) -> str:
    """``text`` ending with the opt-out line, unless it already says how to stop."""
    if has_opt_out_instructions(text):
        return text
    body = text.rstrip()
    return f"{body}\n{OPT_OUT_LINE}" if body else OPT_OUT_LINE


@dataclass(frozen=True)
class SmsPreview:
    text: str
    info: SegmentInfo
    warnings: list[str]


_CHAR_LABELS: dict[str, str] = {
    **dict.fromkeys("\u2018\u2019\u201a\u201b\u201c\u201d\u201e\u201f", "curly quote"),
    **dict.fromkeys("\u2032\u2033\u00b4`", "prime or accent mark"),
    **dict.fromkeys("\u2039\u203a\u00ab\u00bb", "guillemet"),
    **dict.fromkeys("\u2010\u2011\u2012\u2013\u2014\u2015\u2212", "long dash"),
    "\u2026": "ellipsis",
    "\u2022": "bullet",
    "\t": "tab",
    **dict.fromkeys("\u200b\u2060\ufeff\u00ad", "invisible character"),
}
_MAX_CHAR_WARNINGS = 8


def _describe(char: str) -> tuple[str, str]:
    """(how to show the character, what it is)."""
    category = unicodedata.category(char)
    shown = char if category[0] not in "ZC" else f"U+{ord(char):04X}"
    if char in _CHAR_LABELS:
        return shown, _CHAR_LABELS[char]
    if category == "Zs":
        return shown, "special space"
    if category == "Cs":
        return shown, "lone surrogate"
    if category == "So" or ord(char) > 0xFFFF:
        return shown, "emoji"
    if category.startswith("L") and _plain_letter(char) != char:
        return shown, "accented letter"
    return shown, unicodedata.name(char, "character").lower()


def _plain_letter(char: str) -> str:
    base = unicodedata.normalize("NFKD", char)[:1]
    return base if base and base != char and is_gsm7(base) else char


def _gsm_replacement(char: str) -> str | None:
    """What to type instead of ``char`` to stay in GSM-7 ("" = remove it), None if nothing."""
    suggested = gsm_suggestion(char)
    if suggested != char:
        return suggested
    plain = _plain_letter(char)
    return plain if plain != char else None


def _gsm_alternative(text: str) -> str:
    return "".join(
        char if is_gsm7(char) else (_gsm_replacement(char) or "") for char in gsm_suggestion(text)
    )


def _plural(count: int, word: str) -> str:
    return f"{count} {word}" if count == 1 else f"{count} {word}s"


def preview_sms(
    compiled: CompiledTemplate, context: MergeContext, *, with_opt_out_line: bool
) -> SmsPreview:
    """Render for one (sample or real) recipient and explain what the text will cost."""
    if compiled.channel != "sms":
        raise ValueError("preview_sms() needs an SMS template")
    text = compiled.render(context)
    if with_opt_out_line:
        text = ensure_opt_out_line(text)
    info = analyze(text)
    warnings: list[str] = []
    if info.encoding == "UCS-2":
        gsm_segments = analyze(_gsm_alternative(text)).segments
        if gsm_segments != info.segments:
            cost = f"{_plural(info.segments, 'segment')} instead of {gsm_segments}"
        else:
            cost = f"still {_plural(info.segments, 'segment')} at this length"
        for char in info.non_gsm_chars[:_MAX_CHAR_WARNINGS]:
            shown, label = _describe(char)
            replacement = _gsm_replacement(char)
            if replacement is None:
                advice = "remove it to stay in GSM-7"
            elif replacement == "":
                advice = "remove it"
            else:
                advice = f"replace with {replacement}"
            warnings.append(f"contains {shown} ({label}): switches to UCS-2, {cost}; {advice}")
        hidden = len(info.non_gsm_chars) - _MAX_CHAR_WARNINGS
        if hidden > 0:
            warnings.append(f"and {_plural(hidden, 'more character')} outside GSM-7")
    if info.characters > SMS_RECOMMENDED_MAX:
        warnings.append(
            f"longer than {SMS_RECOMMENDED_MAX} characters ({info.characters:,}, "
            f"{_plural(info.segments, 'segment')}): long texts cost more and may arrive split"
        )
    for name in sorted(compiled.fields_used):
        value = context.fields.get(name)
        if not value or not str(value).strip():
            warnings.append(
                f"field.{name} is empty for this recipient: it renders as nothing "
                f'unless the template gives a default ({{{{ field.{name} | default("...") }}}})'
            )
    return SmsPreview(text=text, info=info, warnings=warnings)
