"""Folding a text before it is read: the same words however they were typed.

Compatibility forms (NFKC), lower case (casefold), no accents ("Sí" == "si"), no invisible or
control characters, whitespace collapsed, punctuation and emoji trimmed from both ends; only the
first MAX_CLASSIFIED_CHARS characters count. Pure, standard library only, never raises.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Callable
from typing import Final

from outreach.sms.inbound.phrases import MAX_CLASSIFIED_CHARS

# NFKC leaves typographic apostrophes alone; fold them before "don't" loses its apostrophe.
_APOSTROPHES: Final = str.maketrans(dict.fromkeys("\u2019\u2018\u02bc\u00b4`\u2032\uff07", "'"))
# Control characters other than whitespace: never meaningful, and NUL breaks databases.
_CONTROL: Final = re.compile(r"[\x00-\x08\x0e-\x1f\x7f-\x9f]")
# Combining marks (accents, emoji variation selectors), invisible format characters
# (zero-width space, bidi marks, BOM, soft hyphen) and lone surrogates.
_DROPPED: Final = frozenset({"Mn", "Me", "Cf", "Cs"})
# Clause boundaries for "Who is this? Stop texting me." ("?" marks a question, not a command).
_QUESTION_MARKS: Final = frozenset("?\u061f")
_CLAUSE_MARKS: Final = frozenset(".,!;:\n\r\u2028\u2029\u3002") | _QUESTION_MARKS
_WORD: Final = re.compile(r"[^\W_]+")  # the same words as _word_char, for non-ASCII text


class _LazyTable(dict[int, str]):
    """A ``str.translate`` table filled in one code point at a time.

    On ASCII text ``translate`` runs in C several times faster than a regex ``findall``; the
    cache is bounded so that bodies full of rare characters cannot grow it forever.
    """

    def __init__(self, rule: Callable[[str], str]) -> None:
        super().__init__()
        self._rule = rule

    def __missing__(self, code: int) -> str:
        value = self._rule(chr(code))
        if len(self) >= 50_000:
            self.clear()
        self[code] = value
        return value


def _strip_accents(char: str) -> str:
    """Drop combining marks, invisible format characters and lone surrogates from a character.

    Done per character, so a Hangul syllable (nothing of it dropped) stays whole.
    """
    decomposed = unicodedata.normalize("NFD", char)
    kept = "".join(part for part in decomposed if unicodedata.category(part) not in _DROPPED)
    return char if kept == decomposed else unicodedata.normalize("NFC", kept)


def _word_char(char: str) -> str:
    """Letters and digits stay, apostrophes vanish ("don't" -> "dont"), the rest separates."""
    if char == "'":
        return ""
    return char if char.isalnum() else " "


def _clause_char(char: str) -> str:
    """Like ``_word_char``, but clause boundaries become tokens of their own."""
    if char in _QUESTION_MARKS:
        return " ? "
    if char in _CLAUSE_MARKS:
        return " . "
    return _word_char(char)


_ACCENTS_TABLE: Final = _LazyTable(_strip_accents)
_WORDS_TABLE: Final = _LazyTable(_word_char)
CLAUSES_TABLE: Final = _LazyTable(_clause_char)
_NFKC_CHUNK: Final = 200


def fold(body: str) -> str:
    """Case-, accent- and width-fold the start of ``body``; line breaks stay (clause ends)."""
    text = _CONTROL.sub(" ", body[:MAX_CLASSIFIED_CHARS].translate(_APOSTROPHES))
    if not text.isascii():
        # NFKC can expand a character 18-fold (U+FDFA) and is slow on such text: normalize in
        # chunks and stop once there is enough. A mark split from its letter at a chunk edge is
        # dropped below anyway.
        chunks: list[str] = []
        size = 0
        for start in range(0, len(text), _NFKC_CHUNK):
            chunk = unicodedata.normalize("NFKC", text[start : start + _NFKC_CHUNK])
            chunks.append(chunk)
            size += len(chunk)
            if size >= MAX_CLASSIFIED_CHARS:
                break
        text = "".join(chunks)
    text = text.casefold()[:MAX_CLASSIFIED_CHARS]
    return text if text.isascii() else text.translate(_ACCENTS_TABLE)


def trim(text: str) -> str:
    """Drop everything that is not a letter or digit from both ends (punctuation, emoji, quotes)."""
    start, end = 0, len(text)
    while start < end and not text[start].isalnum():
        start += 1
    while end > start and not text[end - 1].isalnum():
        end -= 1
    return text[start:end]


def normalize(body: str) -> str:
    """Fold ``body`` into the form every rule matches against, so "¡PARÁ! 🙏" reads as "para"."""
    return trim(" ".join(fold(body).split()))


def split_words(text: str) -> tuple[str, ...]:
    """Cut folded text into words; apostrophes vanish so "don't" and "dont" are the same word."""
    if text.isascii():  # str.translate has a fast path for ASCII
        return tuple(text.translate(_WORDS_TABLE).split())
    return tuple(_WORD.findall(text.replace("'", "")))
