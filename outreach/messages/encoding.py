"""SMS segment arithmetic: which encoding a body needs and how many segments it costs.

Pure functions, no I/O. Used by the composer preview ("this text is 3 segments because of ’") and by
cost estimates.

Rules (GSM 03.38 / 3GPP TS 23.038, as carriers and Twilio apply them):

* A body is sent as GSM-7 if every character is in the GSM 7-bit default alphabet or its extension
  table; otherwise the whole body is sent as UCS-2 (UTF-16 code units).
* GSM-7: 160 septets in a single segment, 153 per segment once concatenated (the UDH takes the
  rest). Extension characters (``^{}\\[~]|€`` and form feed) are sent as ESC + char: 2 septets
  each, and the pair is never split across segments.
* UCS-2: 70 code units in a single segment, 67 per segment once concatenated. Characters outside the
  BMP (most emoji) are a surrogate pair: 2 units, never split across segments.

Because pairs are never split, multi-part segment counts come from greedy packing, not from
``ceil(units / per_segment)``: a segment may end one unit short.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Literal

__all__ = [
    "GSM7_BASIC",
    "GSM7_EXTENSION",
    "SegmentInfo",
    "analyze",
    "gsm_suggestion",
    "is_gsm7",
]

# GSM 03.38 default alphabet, in table order (0x00-0x7F). 0x1B is ESC (the escape to the extension
# table), which is not a character a user can type, so it is left out: 127 characters.
GSM7_BASIC: frozenset[str] = frozenset(
    "@\u00a3$\u00a5\u00e8\u00e9\u00f9\u00ec\u00f2\u00c7\n\u00d8\u00f8\r\u00c5\u00e5"  # 0x00-0x0F
    # 0x10-0x1F (Greek capitals Δ Φ Γ Λ Ω Π Ψ Σ Θ Ξ; ESC at 0x1B left out)
    "\u0394_\u03a6\u0393\u039b\u03a9\u03a0\u03a8\u03a3\u0398\u039e\u00c6\u00e6\u00df\u00c9"
    " !\"#\u00a4%&'()*+,-./"  # 0x20-0x2F
    "0123456789:;<=>?"  # 0x30-0x3F
    "\u00a1ABCDEFGHIJKLMNO"  # 0x40-0x4F
    "PQRSTUVWXYZ\u00c4\u00d6\u00d1\u00dc\u00a7"  # 0x50-0x5F
    "\u00bfabcdefghijklmno"  # 0x60-0x6F
    "pqrstuvwxyz\u00e4\u00f6\u00f1\u00fc\u00e0"  # 0x70-0x7F
)

# Extension table (each costs ESC + char = 2 septets): form feed ^ { } \ [ ~ ] | €
GSM7_EXTENSION: frozenset[str] = frozenset("\f^{}\\[~]|\u20ac")

GSM7_SINGLE = 160
GSM7_MULTI = 153
UCS2_SINGLE = 70
UCS2_MULTI = 67


@dataclass(frozen=True)
class SegmentInfo:
    encoding: Literal["GSM-7", "UCS-2"]
    characters: int  # user-visible characters (len of str)
    units: int  # septets for GSM-7 (extension chars count 2), UTF-16 code units for UCS-2
    segments: int  # 1 for an empty body
    per_segment: int  # 160/153 or 70/67 as applicable
    non_gsm_chars: tuple[str, ...]  # distinct characters that forced UCS-2, first appearance order


def is_gsm7(char: str) -> bool:
    """True if ``char`` (one code point) can be sent in GSM-7 (basic or extension table)."""
    return char in GSM7_BASIC or char in GSM7_EXTENSION


def _gsm_atoms(body: str) -> Iterator[int]:
    for char in body:
        yield 2 if char in GSM7_EXTENSION else 1


def _is_high_surrogate(char: str) -> bool:
    return 0xD800 <= ord(char) <= 0xDBFF


def _is_low_surrogate(char: str) -> bool:
    return 0xDC00 <= ord(char) <= 0xDFFF


def _ucs2_atoms(body: str) -> Iterator[int]:
    """UTF-16 units per indivisible piece.

    A code point above U+FFFF is a surrogate pair (2). A str may also hold surrogates as separate
    code points (e.g. JSON decoded with surrogatepass): a high one directly followed by a low one
    still becomes one pair on the wire, so it is packed as one 2-unit atom; any other lone
    surrogate is 1.
    """
    i, n = 0, len(body)
    while i < n:
        char = body[i]
        if ord(char) > 0xFFFF:
            yield 2
        elif _is_high_surrogate(char) and i + 1 < n and _is_low_surrogate(body[i + 1]):
            i += 1
            yield 2
        else:
            yield 1
        i += 1


def _pack(atoms: list[int], single: int, multi: int) -> tuple[int, int]:
    """(segments, per_segment) by greedy packing of indivisible atoms."""
    total = sum(atoms)
    if total <= single:
        return 1, single
    segments, used = 1, 0
    for width in atoms:
        if used + width > multi:
            segments += 1
            used = 0
        used += width
    return segments, multi


def analyze(body: str) -> SegmentInfo:
    """Encoding, size and segment count of an SMS body. Never raises on any ``str``."""
    non_gsm = tuple(dict.fromkeys(char for char in body if not is_gsm7(char)))
    if not non_gsm:
        atoms = list(_gsm_atoms(body))
        segments, per_segment = _pack(atoms, GSM7_SINGLE, GSM7_MULTI)
        return SegmentInfo("GSM-7", len(body), sum(atoms), segments, per_segment, ())
    atoms = list(_ucs2_atoms(body))
    segments, per_segment = _pack(atoms, UCS2_SINGLE, UCS2_MULTI)
    return SegmentInfo("UCS-2", len(body), sum(atoms), segments, per_segment, non_gsm)


_SINGLE_QUOTE = "'"
_DOUBLE_QUOTE = '"'
_DASH = "-"
_SPACE = " "

_SUGGESTIONS: dict[int, str] = {
    # single quotes, apostrophes, primes
    **dict.fromkeys(map(ord, "\u2018\u2019\u201a\u201b\u2032\u2039\u203a\u00b4`"), _SINGLE_QUOTE),
    # double quotes, guillemets, double prime
    **dict.fromkeys(map(ord, "\u201c\u201d\u201e\u201f\u2033\u00ab\u00bb"), _DOUBLE_QUOTE),
    # hyphens and dashes, minus sign
    **dict.fromkeys(map(ord, "\u2010\u2011\u2012\u2013\u2014\u2015\u2212"), _DASH),
    # no-break and typographic spaces, tab
    **dict.fromkeys(map(ord, "\u00a0\u2002\u2003\u2004\u2005\u2006\u2007\u2008\u2009"), _SPACE),
    **dict.fromkeys(map(ord, "\u200a\u202f\u205f\u3000\t"), _SPACE),
    # invisible characters that only cost money: zero-width space, word joiner, BOM, soft hyphen
    **dict.fromkeys(map(ord, "\u200b\u2060\ufeff\u00ad"), ""),
    ord("\u2026"): "...",
    ord("\u2022"): _DASH,
}


def gsm_suggestion(body: str) -> str:
    """``body`` with the usual invisible culprits replaced by GSM-7 look-alikes.

    Curly quotes -> straight quotes, en/em dashes -> "-", ellipsis -> "...", no-break and other
    typographic spaces -> " ", zero-width characters removed. Letters are never changed (no ``ç`` ->
    ``c``) and emoji are kept: the result may still need UCS-2; run :func:`analyze` on it to tell.
    """
    return body.translate(_SUGGESTIONS)
