"""Classify an inbound SMS body: opt-out, help, join a huddle, confirm, or a reply for the inbox.

Why this matters: consent may be revoked "by any reasonable means" and we honor it in the same
request (FCC 47 CFR 64.1200(a)(10)-(12); see PROVIDERS-AND-RULES.md, "Keywords"). Missing a
"please stop texting me" is a compliance failure; missing a "yes" is an inconvenience. So the
opt-out check runs first, nothing can outrank it, and anything that merely *looks* like an
opt-out is flagged for a human (MAYBE_OPT_OUT) instead of being filed as chatter.

How a body is read, in plain words:

1. ``normalize`` folds it: compatibility forms (NFKC), lower case (casefold), no accents
   ("Sí" == "si"), no invisible characters, whitespace collapsed, punctuation/emoji trimmed from
   both ends. Only the first MAX_CLASSIFIED_CHARS characters are looked at.
2. The text is cut into words (apostrophes dropped: "don't" -> "dont"; "opt-out" -> "opt out").
3. A *command* is a short run of words made only of phrases from one family in phrases.py plus
   FILLER_WORDS ("please", "now", "thanks" ...), with at least one phrase. Phrases may repeat
   ("STOP STOP"). An opt-out may also start with one of OPT_OUT_LEAD_INS ("I want to", "can you").
4. The opt-out phrases are written as patterns: ``{name}`` means "any entry of OPT_OUT_SLOTS[name]",
   ``{name?}`` means the same but may be left out. "{stop} {texting} {me?}" therefore covers
   "stop texting me", "quit messaging us", "stop texting" and so on.
5. A certain opt-out is the whole body, or one sentence/clause of it (split on . , ! ; : and line
   breaks) that is not a question: "Who is this? Stop texting me." is an opt-out.
6. Not certain, but containing one of OPT_OUT_WORDS / MAYBE_OPT_OUT_PHRASES as whole words, or a
   single word one typo away from TYPO_CHECKED_OPT_OUT_WORDS ("unsubcribe"): MAYBE_OPT_OUT.
7. Huddle keywords match the whole body, optionally after JOIN_PREFIXES; keywords of
   FUZZY_KEYWORD_MIN_LENGTH+ letters forgive one typo. Reserved words are never keywords.

Pure: no I/O, no dependencies beyond the standard library, never raises on any ``str``.
"""

from __future__ import annotations

import enum
import functools
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Final

from outreach.sms.inbound.normalize import CLAUSES_TABLE, fold, normalize, split_words, trim
from outreach.sms.inbound.phrases import (
    CONFIRM_PHRASES,
    DECLINE_PHRASES,
    FILLER_WORDS,
    FUZZY_KEYWORD_MIN_LENGTH,
    HELP_PHRASES,
    JOIN_PREFIXES,
    MAX_COMMAND_WORDS,
    MAYBE_OPT_OUT_PHRASES,
    OPT_IN_PHRASES,
    OPT_OUT_ALL_PATTERNS,
    OPT_OUT_LEAD_INS,
    OPT_OUT_PATTERNS,
    OPT_OUT_SLOTS,
    OPT_OUT_WORDS,
    SKIP_PHRASES,
    TYPO_CHECKED_OPT_OUT_WORDS,
)


class Intent(enum.StrEnum):
    """What the sender wants; the webhook maps each to an action."""

    OPT_OUT = "opt_out"
    OPT_OUT_ALL = "opt_out_all"
    MAYBE_OPT_OUT = "maybe_opt_out"
    OPT_IN = "opt_in"
    CONFIRM = "confirm"
    HELP = "help"
    SKIP = "skip"
    JOIN = "join"
    OTHER = "other"


@dataclass(frozen=True)
class Classification:
    """The verdict plus what it was based on, so a human reviewing the inbox can see why."""

    intent: Intent
    keyword: str | None = None
    normalized: str = ""


# --------------------------------------------------------------------------------------------
# Phrase grammars, compiled once from the data in phrases.py
# --------------------------------------------------------------------------------------------

_Phrase = tuple[str, ...]
_SLOT: Final = re.compile(r"\{([^{}?]+)(\??)\}")


@dataclass(frozen=True)
class _Element:
    """One position of a pattern: its alternatives as word tuples (``()`` if it may be left out)."""

    choices: frozenset[_Phrase]
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


class _Grammar:
    """A family of phrase patterns, matched word by word without spelling out every sentence.

    (Spelled out, OPT_OUT_PATTERNS is well over 100,000 sentences; matched in place it costs a
    few set look-ups per word.)
    """

    def __init__(self, patterns: Iterable[str]) -> None:
        compiled = [_compile(pattern, OPT_OUT_SLOTS) for pattern in patterns]
        index: dict[str, list[_Pattern]] = {}
        for pattern in compiled:
            for word in _firstwords(pattern):
                index.setdefault(word, []).append(pattern)
        self._index = {word: tuple(patterns) for word, patterns in index.items()}
        self.first_words = frozenset(self._index)
        self.vocabulary = frozenset(
            word
            for pattern in compiled
            for element in pattern
            for choice in element.choices
            for word in choice
        )

    def ends(self, words: _Phrase, start: int) -> set[int]:
        """Every position where a phrase of this family starting at ``start`` can end."""
        found: set[int] = set()
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

    def occurs_in(self, words: _Phrase) -> bool:
        """True if a phrase of this family appears anywhere in ``words``."""
        return any(
            word in self.first_words and self.ends(words, start) for start, word in enumerate(words)
        )


_FILLERS: Final = _Grammar(FILLER_WORDS)
_LEAD_INS: Final = _Grammar(OPT_OUT_LEAD_INS)
_OPT_OUT: Final = _Grammar(OPT_OUT_PATTERNS)
_OPT_OUT_ALL: Final = _Grammar(OPT_OUT_ALL_PATTERNS)
_MAYBE: Final = _Grammar(OPT_OUT_WORDS + MAYBE_OPT_OUT_PHRASES)
_HELP: Final = _Grammar(HELP_PHRASES)
_CONFIRM: Final = _Grammar(CONFIRM_PHRASES)
_OPT_IN: Final = _Grammar(OPT_IN_PHRASES)
_SKIP: Final = _Grammar(SKIP_PHRASES)
_JOIN_PREFIXES: Final = sorted(
    {split_words(normalize(prefix)) for prefix in JOIN_PREFIXES}, key=len, reverse=True
)
_MAX_FILLER_WORDS: Final = max(len(split_words(normalize(filler))) for filler in FILLER_WORDS)
_TYPO_CHECKED: Final = tuple(normalize(word) for word in TYPO_CHECKED_OPT_OUT_WORDS)

# Everything without slots that the classifier gives a meaning to, glued together ("optout",
# "helpme"): a huddle keyword spelled like one of these would be shadowed, so it never matches.
_RESERVED_COMPACT: Final = frozenset(
    "".join(split_words(normalize(text)))
    for texts in (
        FILLER_WORDS, OPT_OUT_LEAD_INS, OPT_OUT_ALL_PATTERNS, OPT_OUT_WORDS, MAYBE_OPT_OUT_PHRASES,
        HELP_PHRASES, CONFIRM_PHRASES, DECLINE_PHRASES, OPT_IN_PHRASES, SKIP_PHRASES, JOIN_PREFIXES,
        tuple(pattern for pattern in OPT_OUT_PATTERNS if "{" not in pattern),
        tuple(TYPO_CHECKED_OPT_OUT_WORDS),
    )
    for text in texts
)  # fmt: skip

# Parse results, ordered so that a parse using a STOPALL phrase outranks one that does not.
_NO_PARSE, _ONLY_FILLERS, _PHRASE, _ALL_SENDERS = -1, 0, 1, 2


@dataclass(frozen=True)
class _Family:
    """The grammars one kind of command is read with, each with the rank its phrases give."""

    grammars: tuple[tuple[_Grammar, int], ...]
    leads: bool = False  # may start with OPT_OUT_LEAD_INS

    @functools.cached_property
    def vocabulary(self) -> frozenset[str]:
        """Every word a command of this family can contain."""
        words = _FILLERS.vocabulary | (_LEAD_INS.vocabulary if self.leads else frozenset())
        return words.union(*(grammar.vocabulary for grammar, _ in self.grammars))

    @functools.cached_property
    def anchors(self) -> frozenset[str]:
        """Words a command of this family must contain (its phrases start with them)."""
        return frozenset().union(*(grammar.first_words for grammar, _ in self.grammars))

    def could_match(self, words: _Phrase) -> bool:
        """Two set tests that reject almost all ordinary chatter before any parsing."""
        return (
            0 < len(words) <= MAX_COMMAND_WORDS
            and not self.anchors.isdisjoint(words)
            and self.vocabulary.issuperset(words)
        )


def _parse(words: _Phrase, family: _Family) -> int:
    """Read ``words`` as filler* [lead-in] (phrase | filler)+ with at least one phrase.

    Returns _NO_PARSE, _PHRASE, or _ALL_SENDERS if a STOPALL phrase was used. Dynamic
    programming over word positions, once ``could_match`` has let the words through.
    """
    if not family.could_match(words):
        return _NO_PARSE
    count = len(words)
    best = [_NO_PARSE] * (count + 1)
    best[0] = _ONLY_FILLERS
    for start in range(count):
        here = best[start]
        if here == _NO_PARSE:
            continue
        for end in _FILLERS.ends(words, start):
            best[end] = max(best[end], here)
        if family.leads and here == _ONLY_FILLERS:  # a lead-in comes before the first phrase
            for end in _LEAD_INS.ends(words, start):
                best[end] = max(best[end], here)
        for grammar, rank in family.grammars:
            for end in grammar.ends(words, start):
                best[end] = max(best[end], here, rank)
    return best[count] if best[count] != _ONLY_FILLERS else _NO_PARSE


_OPT_OUT_FAMILY: Final = _Family(((_OPT_OUT, _PHRASE), (_OPT_OUT_ALL, _ALL_SENDERS)), leads=True)
_HELP_FAMILY: Final = _Family(((_HELP, _PHRASE),))
_COMMANDS: Final = (
    (_HELP_FAMILY, Intent.HELP),
    (_Family(((_CONFIRM, _PHRASE),)), Intent.CONFIRM),
    (_Family(((_OPT_IN, _PHRASE),)), Intent.OPT_IN),
    (_Family(((_SKIP, _PHRASE),)), Intent.SKIP),
)


def _opt_out_rank(words: _Phrase) -> int:
    return _parse(words, _OPT_OUT_FAMILY)


#: At most this many distinct clauses of one body are parsed. Only a wall of text built to be
#: slow gets this far; its opt-out words still make it MAYBE_OPT_OUT for a human.
MAX_CLAUSES_PARSED: Final = 16


def _clauses(folded: str) -> list[_Phrase]:
    """The words of each clause that is not a question ("Stop? No way" yields only "no way")."""
    clauses: list[_Phrase] = []
    current: list[str] = []
    for word in folded.translate(CLAUSES_TABLE).split():
        if word not in (".", "?"):
            current.append(word)
            continue
        if current and word == ".":
            clauses.append(tuple(current))
        current = []
    if current:
        clauses.append(tuple(current))
    return clauses


def _certain_opt_out(folded: str, words: _Phrase) -> Intent | None:
    """OPT_OUT/OPT_OUT_ALL if the whole body, or one clause of it that is not a question, is one."""
    if _OPT_OUT_FAMILY.anchors.isdisjoint(words):
        return None
    best = _opt_out_rank(words)
    parsed: set[_Phrase] = {words}
    for clause in _clauses(folded) if best < _ALL_SENDERS else ():
        if clause in parsed or not _OPT_OUT_FAMILY.could_match(clause):
            continue
        parsed.add(clause)
        best = max(best, _opt_out_rank(clause))
        if best == _ALL_SENDERS or len(parsed) > MAX_CLAUSES_PARSED:
            break
    if best == _ALL_SENDERS:
        return Intent.OPT_OUT_ALL
    if best == _PHRASE:
        return Intent.OPT_OUT
    return None


def _within_one_edit(first: str, second: str) -> bool:
    """Damerau-Levenshtein (adjacent transposition) distance <= 1, in linear time."""
    if first == second:
        return True
    if abs(len(first) - len(second)) > 1:
        return False
    shorter = min(len(first), len(second))
    index = 0
    while index < shorter and first[index] == second[index]:
        index += 1
    if len(first) == len(second):
        if first[index + 1 :] == second[index + 1 :]:
            return True  # one substitution
        return (
            first[index : index + 2] == second[index : index + 2][::-1]
            and first[index + 2 :] == second[index + 2 :]
        )
    if len(first) > len(second):
        return first[index + 1 :] == second[index:]
    return first[index:] == second[index + 1 :]


def _looks_like_opt_out_typo(compact: str) -> bool:
    return any(_within_one_edit(compact, word) for word in _TYPO_CHECKED)


def _maybe_opt_out(words: _Phrase) -> bool:
    """True if an opt-out word or phrase appears anywhere, or the body is a typo of one."""
    if _MAYBE.occurs_in(words):
        return True
    return len(words) == 1 and _looks_like_opt_out_typo(words[0])


def _command(words: _Phrase) -> Intent | None:
    """The reserved meaning of a whole body other than opt-out (help, yes, start, skip)."""
    for family, intent in _COMMANDS:
        if _parse(words, family) != _NO_PARSE:
            return intent
    return None


# --------------------------------------------------------------------------------------------
# Huddle keywords
# --------------------------------------------------------------------------------------------


@functools.lru_cache(maxsize=16384)
def _keyword_key(keyword: str) -> str | None:
    """A keyword as compared ("New-York" -> "newyork"), or None if it is empty or reserved."""
    words = split_words(normalize(keyword))
    compact = "".join(words)
    if (
        not compact
        or compact in _RESERVED_COMPACT
        or _opt_out_rank(words) != _NO_PARSE
        or _command(words) is not None
    ):
        return None
    return compact


def is_reserved_keyword(keyword: str) -> bool:
    """True if a huddle keyword would collide with STOP, HELP, YES...: use it to reject one."""
    return _keyword_key(keyword) is None


def _strip_fillers(words: _Phrase) -> _Phrase:
    """Drop filler words from both ends ("hi, logan please" -> "logan")."""
    start, end = 0, len(words)
    changed = True
    while changed and start < end:
        changed = False
        for size in range(min(_MAX_FILLER_WORDS, end - start), 0, -1):
            if start + size in _FILLERS.ends(words, start):
                start, changed = start + size, True
                break
            if end in _FILLERS.ends(words, end - size):
                end, changed = end - size, True
                break
    return words[start:end]


def _match_keywordwords(words: _Phrase, keywords: Iterable[str]) -> str | None:
    if not words or len(words) > MAX_COMMAND_WORDS:
        return None
    core = _strip_fillers(words)
    rest = core
    for prefix in _JOIN_PREFIXES:
        if core[: len(prefix)] == prefix and len(core) > len(prefix):
            rest = core[len(prefix) :]
            break
    candidates = {"".join(words), "".join(core), "".join(rest)}
    usable = [(keyword, key) for keyword in keywords if (key := _keyword_key(keyword)) is not None]
    for keyword, key in usable:
        if key in candidates:
            return keyword
    # One typo, only for long keywords, and never for a text that means something by itself
    # (checked only when one keyword is that close: most texts are near none).
    typo = "".join(rest)
    found: dict[str, str] = {}
    for keyword, key in usable:
        if len(key) >= FUZZY_KEYWORD_MIN_LENGTH and _within_one_edit(typo, key):
            found.setdefault(key, keyword)
    if len(found) != 1 or (
        typo in _RESERVED_COMPACT
        or _looks_like_opt_out_typo(typo)
        or _opt_out_rank(rest) != _NO_PARSE
        or _command(rest) is not None
    ):
        return None
    return next(iter(found.values()))


def match_keyword(text: str, keywords: Iterable[str]) -> str | None:
    """The keyword (as given) that ``text`` asks to join: "join logan", "#Logan", "LOGNA".

    Exact beats one-typo; two different one-typo matches are ambiguous (None); keywords that are
    reserved words never match, so a huddle called "STOP" cannot swallow an opt-out.
    """
    return _match_keywordwords(split_words(normalize(text)), keywords)


# --------------------------------------------------------------------------------------------
# Entry point
# --------------------------------------------------------------------------------------------


def classify(body: str, keywords: Iterable[str] = ()) -> Classification:
    """Decide what an inbound SMS wants.

    Priority: certain opt-out (incl. STOPALL) > help > huddle keyword > confirm / opt-in / skip >
    maybe-opt-out > other. A keyword never outranks a reserved word (see ``match_keyword``).
    """
    folded = fold(body)
    normalized = trim(" ".join(folded.split()))
    words = split_words(normalized)

    opt_out = _certain_opt_out(folded, words)
    if opt_out is not None:
        return Classification(opt_out, normalized=normalized)
    if _parse(words, _HELP_FAMILY) != _NO_PARSE:
        return Classification(Intent.HELP, normalized=normalized)
    keyword = _match_keywordwords(words, keywords)
    if keyword is not None:
        return Classification(Intent.JOIN, keyword=keyword, normalized=normalized)
    command = _command(words)
    if command is not None:
        return Classification(command, normalized=normalized)
    if _maybe_opt_out(words):
        return Classification(Intent.MAYBE_OPT_OUT, normalized=normalized)
    return Classification(Intent.OTHER, normalized=normalized)
