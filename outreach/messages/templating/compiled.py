"""Compiled templates: merge data, the sandboxed environments, and rendering with its limits.

:func:`compile_template` is the draft-time check (the syntax, then :mod:`.language`'s allow-list,
then sample renders); :meth:`CompiledTemplate.render` is the per-recipient send path.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from jinja2 import StrictUndefined, Template, TemplateSyntaxError
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

from outreach.messages.templating.errors import RenderError, TemplateError
from outreach.messages.templating.language import _NAMES, Channel, _Checker

OPT_OUT_LINE = "Reply STOP to opt out"
_OPT_OUT_SUFFIX = "\n" + OPT_OUT_LINE

SMS_MAX_SOURCE = 5_000  # characters of template source
SMS_MAX_BODY = 1_600  # Twilio's body limit
# A rendered text leaves room for the opt-out line, so appending it never breaks the 1,600 limit.
SMS_MAX_RENDERED = SMS_MAX_BODY - len(_OPT_OUT_SUFFIX)
SMS_RECOMMENDED_MAX = 320
EMAIL_MAX_SOURCE = 100_000
EMAIL_MAX_OUTPUT = 200_000
_MAX_VALUE = {"sms": 2_000, "email": 20_000}  # characters in one merge value (name, field)


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
