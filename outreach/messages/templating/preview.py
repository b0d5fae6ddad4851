"""SMS compliance and preview: the opt-out line, and what a rendered text will cost.

Used by the SMS sender (:func:`ensure_opt_out_line`) and by organizers' previews
(:func:`preview_sms`), on top of :mod:`.compiled`'s rendering.
"""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass

from outreach.messages.encoding import SegmentInfo, analyze, gsm_suggestion, is_gsm7
from outreach.messages.templating.compiled import (
    OPT_OUT_LINE,
    SMS_RECOMMENDED_MAX,
    CompiledTemplate,
    MergeContext,
)

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
