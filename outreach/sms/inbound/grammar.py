"""The pattern engine the classifier reads words with: a family of phrase patterns, matched
word by word.

A pattern is words and ``{slot}`` / ``{slot?}`` elements (see vocabulary/en.toml); a slot is any
of its words, ``?`` also nothing. Pure and standard library only, like the classifier.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Final

from outreach.sms.inbound.normalize import normalize, split_words

Phrase = tuple[str, ...]
_SLOT: Final = re.compile(r"\{([^{}?]+)(\??)\}")


@dataclass(frozen=True)
class _Element:
    """One position of a pattern: its alternatives as word tuples (``()`` if it may be left out)."""

    choices: frozenset[Phrase]
    sizes: tuple[int, ...]


_Pattern = tuple[_Element, ...]


def _compile(pattern: str, slots: Mapping[str, tuple[str, ...]]) -> _Pattern:
    elements = []
    for part in pattern.split():
        slot = _SLOT.fullmatch(part)
        texts = (part,) if slot is None else slots[slot.group(1)]
        choices = {split_words(normalize(text)) for text in texts}
        if slot is not None and slot.group(2):
            choices.add(())
        elements.append(_Element(frozenset(choices), tuple(sorted({len(c) for c in choices}))))
    return tuple(elements)


def _firstwords(pattern: _Pattern) -> set[str]:
    """Words a pattern can begin with, looking past elements that may be left out."""
    firsts: set[str] = set()
    for element in pattern:
        firsts |= {choice[0] for choice in element.choices if choice}
        if () not in element.choices:
            return firsts
    raise ValueError(f"a phrase pattern must not be entirely optional: {pattern}")


#: A pattern that spells out to at most this many phrases is matched as a word trie.
_MAX_SPELLED_OUT: Final = 64
_END: Final = ""  # the trie key that marks "a phrase ends here" (no word is empty)

_Trie = dict[str, "_Trie"]


def _spelled_out(pattern: _Pattern) -> list[Phrase] | None:
    """Every phrase a pattern stands for, or None if there are more than _MAX_SPELLED_OUT."""
    count = 1
    for element in pattern:
        count *= len(element.choices)
        if count > _MAX_SPELLED_OUT:
            return None
    phrases: list[Phrase] = [()]
    for element in pattern:
        phrases = [phrase + choice for phrase in phrases for choice in element.choices]
    return [phrase for phrase in phrases if phrase]


class Grammar:
    """A family of phrase patterns, matched word by word without spelling out every sentence.

    Small patterns are spelled out into a trie of words (one dictionary step per word); the big
    ones (spelled out, the opt-out patterns are well over 100,000 sentences) are matched in place,
    element by element, for a few set look-ups per word.
    """

    def __init__(self, patterns: Iterable[str], slots: Mapping[str, tuple[str, ...]]) -> None:
        compiled = [_compile(pattern, slots) for pattern in patterns]
        index: dict[str, list[_Pattern]] = {}
        self._trie: _Trie = {}
        for pattern in compiled:
            phrases = _spelled_out(pattern)
            if phrases is not None:
                for phrase in phrases:
                    node = self._trie
                    for word in phrase:
                        node = node.setdefault(word, {})
                    node[_END] = {}
                continue
            for word in _firstwords(pattern):
                index.setdefault(word, []).append(pattern)
        self._index = {word: tuple(patterns) for word, patterns in index.items()}
        self.first_words = frozenset(self._index) | frozenset(self._trie)
        self.vocabulary = frozenset(
            word
            for pattern in compiled
            for element in pattern
            for choice in element.choices
            for word in choice
        )

    def ends(self, words: Phrase, start: int) -> set[int]:
        """Every position where a phrase of this family starting at ``start`` can end."""
        found: set[int] = set()
        node = self._trie
        for position in range(start, len(words)):
            child = node.get(words[position])
            if child is None:
                break
            node = child
            if _END in node:
                found.add(position + 1)
        for pattern in self._index.get(words[start], ()):
            positions = {start}
            for element in pattern:
                positions = {
                    position + size
                    for position in positions
                    for size in element.sizes
                    if position + size <= len(words)
                    and words[position : position + size] in element.choices
                }
                if not positions:
                    break
            found |= positions
        found.discard(start)
        return found

    def occurs_in(self, words: Phrase) -> bool:
        """True if a phrase of this family appears anywhere in ``words``."""
        return any(
            word in self.first_words and self.ends(words, start) for start, word in enumerate(words)
        )
