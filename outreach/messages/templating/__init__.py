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

Modules: :mod:`.language` (the allow-list and its checker), :mod:`.compiled` (merge data,
environments, :func:`compile_template`, rendering limits), :mod:`.preview` (the opt-out line and
SMS previews) and :mod:`.errors`. Import from the package: the names below are its API.
"""

from __future__ import annotations

from outreach.messages.templating.compiled import (
    EMAIL_MAX_OUTPUT,
    EMAIL_MAX_SOURCE,
    OPT_OUT_LINE,
    SMS_MAX_BODY,
    SMS_MAX_RENDERED,
    SMS_MAX_SOURCE,
    SMS_RECOMMENDED_MAX,
    CompiledTemplate,
    MergeContext,
    compile_template,
    render_email_html,
    sample_context,
)
from outreach.messages.templating.errors import RenderError, TemplateError
from outreach.messages.templating.language import ALLOWED_FILTERS, MAX_REFERENCES, merge_names
from outreach.messages.templating.preview import (
    SmsPreview,
    ensure_opt_out_line,
    has_opt_out_instructions,
    preview_sms,
)

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
