"""The composer's segment counter: what a text will cost, and which characters make it cost more.

The template is checked as a draft is (:func:`outreach.messages.templating.compile_template`),
rendered with the sample values plus the opt-out line the sender adds, and measured
(:func:`outreach.messages.encoding.analyze`). Characters outside GSM-7 are named one by one with
the GSM-7 text to type instead, so an organizer can see why a 150-character text costs three
segments (a curly quote from a word processor) and fix it in one click.
"""

from __future__ import annotations

import unicodedata
from dataclasses import dataclass, field

from outreach.messages import encoding, templating

_LABELS: dict[str, str] = {
    **dict.fromkeys("\u2018\u2019\u201a\u201b\u201c\u201d\u201e\u201f", "curly quote"),
    **dict.fromkeys("\u2032\u2033\u00b4`", "prime or accent mark"),
    **dict.fromkeys("\u2039\u203a\u00ab\u00bb", "guillemet"),
    **dict.fromkeys("\u2010\u2011\u2012\u2013\u2014\u2015\u2212", "long dash"),
    "\u2026": "ellipsis",
    "\u2022": "bullet",
    "\t": "tab",
    **dict.fromkeys("\u200b\u2060\ufeff\u00ad", "invisible character"),
}
MAX_CULPRITS = 12  # characters named; a body in another script would list hundreds


@dataclass(frozen=True)
class Culprit:
    """A character that forced UCS-2, and what to type instead (None: no GSM-7 look-alike)."""

    char: str
    shown: str  # the character, or U+XXXX for an invisible one
    label: str
    count: int
    replacement: str | None

    @property
    def replacement_shown(self) -> str:
        if self.replacement is None:
            return ""
        return self.replacement or "nothing (remove it)"


@dataclass(frozen=True)
class TemplateProblem:
    message: str
    line: int | None
    excerpt: str | None  # the line it is on, when known


@dataclass(frozen=True)
class Count:
    """The counter's verdict on a body. ``info`` is None when the template has an error."""

    body: str
    problem: TemplateProblem | None = None
    info: encoding.SegmentInfo | None = None
    sample: str | None = None
    culprits: list[Culprit] = field(default_factory=list)
    more_culprits: int = 0
    gsm_segments: int | None = None  # what it would cost with every suggestion applied

    @property
    def fixable(self) -> bool:
        return any(c.replacement is not None for c in self.culprits)


def count(body: str, *, huddle_name: str) -> Count:
    """Check, render and measure an SMS template as the composer shows it."""
    if not body.strip():
        return Count(body, TemplateProblem("Write the message.", None, None))
    try:
        compiled = templating.compile_template(body, channel="sms")
    except templating.TemplateError as exc:
        return Count(body, problem_for(body, exc))
    try:
        sample = templating.ensure_opt_out_line(
            compiled.render(templating.sample_context(huddle_name))
        )
    except templating.RenderError as exc:
        return Count(body, TemplateProblem(exc.message, None, None))
    info = encoding.analyze(sample)
    culprits = [_culprit(char, body.count(char)) for char in _non_gsm(body)]
    fixed = encoding.analyze(replace_all(sample)).segments if info.encoding == "UCS-2" else None
    return Count(
        body,
        info=info,
        sample=sample,
        culprits=culprits[:MAX_CULPRITS],
        more_culprits=max(0, len(culprits) - MAX_CULPRITS),
        gsm_segments=fixed,
    )


def problem_for(source: str, exc: templating.TemplateError) -> TemplateProblem:
    """The error with the line it points at, for showing under the field."""
    lines = source.splitlines()
    excerpt = None
    if exc.line is not None and 1 <= exc.line <= len(lines):
        excerpt = lines[exc.line - 1]
    return TemplateProblem(exc.message, exc.line, excerpt)


def replacement_for(char: str) -> str | None:
    """The GSM-7 text to type instead of ``char`` ("" = remove it); None if there is none."""
    suggested = encoding.gsm_suggestion(char)
    if suggested != char:
        return suggested
    base = unicodedata.normalize("NFKD", char)[:1]
    if base and base != char and encoding.is_gsm7(base):
        return base  # é is GSM-7 already; ç, ō, ą are not: c, o, a
    return None


def replace_one(body: str, char: str) -> str:
    """``body`` with every ``char`` replaced by its suggestion (unchanged if it has none)."""
    if len(char) != 1:
        return body
    replacement = replacement_for(char)
    return body if replacement is None else body.replace(char, replacement)


def replace_all(body: str) -> str:
    """``body`` with every character that has a suggestion replaced; emoji stay."""
    return "".join(
        char if encoding.is_gsm7(char) else (replacement_for(char) or char) for char in body
    )


def _non_gsm(text: str) -> list[str]:
    return list(dict.fromkeys(char for char in text if not encoding.is_gsm7(char)))


def _culprit(char: str, times: int) -> Culprit:
    category = unicodedata.category(char)
    shown = char if category[0] not in "ZC" else f"U+{ord(char):04X}"
    if char in _LABELS:
        label = _LABELS[char]
    elif category == "Zs":
        label = "special space"
    elif category == "So" or ord(char) > 0xFFFF:
        label = "emoji"
    elif category.startswith("L") and replacement_for(char) is not None:
        label = "accented letter"
    else:
        label = unicodedata.name(char, "character").lower()
    return Culprit(char, shown, label, times, replacement_for(char))
