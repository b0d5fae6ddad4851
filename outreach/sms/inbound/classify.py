"""Classify an inbound SMS body: opt-out, help, join a huddle, confirm, or a reply for the inbox.

Why this matters: consent may be revoked "by any reasonable means" and we honor it in the same
request (FCC 47 CFR 64.1200(a)(10)-(12); see PROVIDERS-AND-RULES.md, "Keywords"). Missing a
"please stop texting me" is a compliance failure; missing a "yes" is an inconvenience. So the
opt-out check runs first, nothing can outrank it, and anything that merely *looks* like an
opt-out is flagged for a human (MAYBE_OPT_OUT) instead of being filed as chatter.

How a body is read, in plain words (the words themselves are in vocabulary/*.toml, per
language, each list with its source):

1. ``normalize`` folds it: compatibility forms (NFKC), lower case (casefold), no accents
   ("Sí" == "si"), no invisible characters, whitespace collapsed, punctuation/emoji trimmed from
   both ends. Only the first MAX_CLASSIFIED_CHARS characters are looked at.
2. The text is cut into words (apostrophes dropped: "don't" -> "dont"; "opt-out" -> "opt out").
3. A *command* is a short run of words made only of phrases from one family plus fillers
   ("please", "now", "thanks" ...), with at least one phrase. Phrases may repeat ("STOP STOP").
   An opt-out may also start with a lead-in ("I would like to", "can you") and have companions
   anywhere ("wrong number", "not interested", "from this group"), which alone are nothing.
4. Opt-out phrases are patterns: ``{name}`` means "any word of the slot ``name``", ``{name?}``
   the same or nothing. "{stop} {texting} {me?}" covers "stop texting me", "quit messaging us"...
   Before matching, words the grammar does not know are dropped before a noun ("the Logan
   carpool list", "political texts"), and "calling and texting" reads as "calling".
5. A certain opt-out is the whole body, or a clause of it (split on . , ! ; : ? and line
   breaks), or a piece of a clause between conjunctions ("I can't volunteer anymore and would
   like to stop receiving these"). A question counts only as a request ("Could you take me off
   your list?"); a few phrases ("delete it") only next to a statement about the number.
6. One word glued or stretched out of opt-out words is read as them: "STOPPP", "stop2",
   "S T O P", "stopit", "STOPSTOP", "stpo" (two letters swapped). In a longer text, a word the
   grammar does not know is read as the one grammar word it is a typo of ("remvoe me from your
   mailng list").
7. STOP with a huddle keyword ("STOP LOGAN", "logan stop", "STOPLOGAN"), or a request that
   names one huddle ("take me off the Logan list": the keyword and the words attaching it taken
   out, a certain opt-out is left) opts out of that huddle only: the result carries the keyword.
   Words that only add force ("stop fucking texting me") are left out; a bare "Stop!" next to a
   cheer ("that's amazing news") is surprise, left for step 8.
8. Not certain, but containing an opt-out word or phrase outside its ordinary uses ("bus stop",
   "don't stop" are cut out first), or a single word one typo from one: MAYBE_OPT_OUT.
9. Huddle keywords match the whole body, optionally after a join prefix; keywords of
   FUZZY_KEYWORD_MIN_LENGTH+ letters forgive one typo. Reserved words are never keywords.

Pure: no I/O, no dependencies beyond the standard library, never raises on any ``str``.
Longer than most modules because the reading order above is one piece a reviewer checks end to
end; the words are in vocabulary/, the pattern engine in grammar.py.
"""

from __future__ import annotations

import enum
import functools
import re
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Final

from outreach.sms.inbound.grammar import Grammar, Phrase
from outreach.sms.inbound.normalize import CLAUSES_TABLE, fold, normalize, split_words, trim
from outreach.sms.inbound.phrases import (
    CHEERS,
    CONFIRM_PHRASES,
    CONJUNCTIONS,
    COORDINABLE,
    DECLINE_PHRASES,
    FILLER_WORDS,
    FUZZY_KEYWORD_MIN_LENGTH,
    HELP_PHRASES,
    INTENSIFIERS,
    JOIN_PREFIXES,
    MAX_COMMAND_WORDS,
    MAYBE_OPT_OUT_PHRASES,
    NARROWING,
    NOT_OPT_OUT_PHRASES,
    OPEN_NOUNS,
    OPT_IN_PHRASES,
    OPT_OUT_ALL_PATTERNS,
    OPT_OUT_COMPANIONS,
    OPT_OUT_CONTEXT,
    OPT_OUT_IN_CONTEXT,
    OPT_OUT_LEAD_INS,
    OPT_OUT_PATTERNS,
    OPT_OUT_SLOTS,
    OPT_OUT_WORDS,
    QUESTION_LEAD_INS,
    SCOPE_GLUE,
    SCOPE_VERBS,
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


_Phrase = Phrase


def _grammar(patterns: Iterable[str]) -> Grammar:
    return Grammar(patterns, OPT_OUT_SLOTS)


_FILLERS: Final = _grammar(FILLER_WORDS)
_LEAD_INS: Final = _grammar(OPT_OUT_LEAD_INS)
_COMPANIONS: Final = _grammar(OPT_OUT_COMPANIONS)
_QUESTION_LEAD_INS: Final = _grammar(QUESTION_LEAD_INS)
_NOT_OPT_OUT: Final = _grammar(NOT_OPT_OUT_PHRASES)
_IN_CONTEXT: Final = _grammar(OPT_OUT_IN_CONTEXT)
_CONTEXT: Final = _grammar(OPT_OUT_CONTEXT)
_OPT_OUT: Final = _grammar(OPT_OUT_PATTERNS)
_OPT_OUT_ALL: Final = _grammar(OPT_OUT_ALL_PATTERNS)
_MAYBE: Final = _grammar(OPT_OUT_WORDS + MAYBE_OPT_OUT_PHRASES)
_SCOPE_VERBS: Final = _grammar(SCOPE_VERBS)
_GLUED_SCOPE_VERBS: Final = sorted(
    {"".join(split_words(normalize(verb))) for verb in SCOPE_VERBS}, key=len, reverse=True
)
_HELP: Final = _grammar(HELP_PHRASES)
_CONFIRM: Final = _grammar(CONFIRM_PHRASES)
_OPT_IN: Final = _grammar(OPT_IN_PHRASES)
_SKIP: Final = _grammar(SKIP_PHRASES)
_CHEERS: Final = _grammar(CHEERS)
_GENERIC_OBJECTS: Final = frozenset(
    {"this", "it", "that", "these", "those", "thing", "everything", "service", "services", "all"}
    | {"to", "of", "from", "off", "on", "my", "your", "the", "text", "txt", "message", "msg"}
    | {"email", "mensaje", "texto", "de", "la", "el", "mi", "su", "contact", "contacts"}
)
#: Words that say whom or what a request stops: only such a request may have words after it.
_STRONG_OBJECTS: Final = (
    frozenset(
        word
        for name, texts in OPT_OUT_SLOTS.items()
        if name.split(".")[1]
        in ("me", "texts", "list", "texting", "mensajes", "lista", "messages", "liste")
        for text in texts
        for word in split_words(normalize(text))
    )
    - frozenset(split_words(normalize(" ".join(FILLER_WORDS))))
    - _GENERIC_OBJECTS
)
#: Words after such a request that narrow it to some texts: "stop texting me so early".
_NARROWING: Final = frozenset(split_words(normalize(" ".join(NARROWING))))
#: Words that only add force ("stop fucking texting me"): left out when an opt-out is read.
_INTENSIFIERS: Final = frozenset(split_words(normalize(" ".join(INTENSIFIERS))))
#: Words that attach a huddle keyword to a request: "from the Logan group", "del grupo de".
_SCOPE_GLUE: Final = frozenset(split_words(normalize(" ".join(SCOPE_GLUE))))
#: What a named huddle stands in for when it is taken out of a request ("take me off the
#: Logan list" reads as "take me off the list").
_SCOPE_STAND_INS: Final = (
    (),
    ("the", "list"),
    ("the", "texts"),
    ("la", "lista"),
    ("los", "mensajes"),
    ("la", "liste"),
    ("les", "messages"),
)
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

    grammars: tuple[tuple[Grammar, int], ...]
    leads: bool = False  # may start with OPT_OUT_LEAD_INS, and have OPT_OUT_COMPANIONS anywhere

    @functools.cached_property
    def fillers(self) -> tuple[Grammar, ...]:
        """What may stand anywhere without being a phrase of the family."""
        return (_FILLERS, _COMPANIONS) if self.leads else (_FILLERS,)

    @functools.cached_property
    def vocabulary(self) -> frozenset[str]:
        """Every word a command of this family can contain."""
        words = frozenset().union(*(filler.vocabulary for filler in self.fillers))
        if self.leads:
            words |= _LEAD_INS.vocabulary
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
        for filler in family.fillers:
            for end in filler.ends(words, start):
                best[end] = max(best[end], here)
        if family.leads and here == _ONLY_FILLERS:  # a lead-in comes before the first phrase
            for end in _LEAD_INS.ends(words, start):
                best[end] = max(best[end], here)
        for grammar, rank in family.grammars:
            for end in grammar.ends(words, start):
                best[end] = max(best[end], here, rank)
    return best[count] if best[count] != _ONLY_FILLERS else _NO_PARSE


_OPT_OUT_FAMILY: Final = _Family(((_OPT_OUT, _PHRASE), (_OPT_OUT_ALL, _ALL_SENDERS)), leads=True)
_IN_CONTEXT_FAMILY: Final = _Family(((_OPT_OUT, _PHRASE), (_IN_CONTEXT, _PHRASE)), leads=True)
_HELP_FAMILY: Final = _Family(((_HELP, _PHRASE),))
_COMMANDS: Final = (
    (_HELP_FAMILY, Intent.HELP),
    (_Family(((_CONFIRM, _PHRASE),)), Intent.CONFIRM),
    (_Family(((_OPT_IN, _PHRASE),)), Intent.OPT_IN),
    (_Family(((_SKIP, _PHRASE),)), Intent.SKIP),
)


#: Words before which up to _MAX_QUALIFIERS words the grammar does not know are dropped:
#: "take me off the Logan carpool list" reads as "take me off the list", "stop sending me
#: political texts" as "stop sending me texts".
_OPEN_NOUNS: Final = frozenset(split_words(normalize(" ".join(OPEN_NOUNS))))
_MAX_QUALIFIERS: Final = 3
#: ... but never these, which the grammar reads: "take me off {the} list", "{from} {me}".
_QUALIFIER_STOPS: Final = frozenset(
    word
    for name, texts in OPT_OUT_SLOTS.items()
    if name.split(".")[1] in ("the", "from", "me", "texting", "text", "don't", "want", "receive")
    for text in texts
    for word in split_words(normalize(text))
)
#: "calling and texting", "texts or emails": two of these joined read as the first.
_COORDINABLE: Final = frozenset(split_words(normalize(" ".join(COORDINABLE))))
_AND_OR: Final = frozenset({"and", "or", "nor", "y", "o", "et", "ou", "n"})
#: A clause is also read in pieces cut at these ("I can't volunteer anymore and would like to
#: stop receiving these texts").
_CONJUNCTIONS: Final = frozenset(split_words(normalize(" ".join(CONJUNCTIONS))))


def _simplified(words: _Phrase) -> _Phrase:
    """Drop the qualifiers before open nouns and the second of two coordinated words."""
    if _OPEN_NOUNS.isdisjoint(words) and _COORDINABLE.isdisjoint(words):
        return words
    known = _QUALIFIER_STOPS
    kept: list[str] = []
    for word in words:
        if word in _OPEN_NOUNS:
            dropped = 0
            while kept and dropped < _MAX_QUALIFIERS and kept[-1] not in known:
                kept.pop()
                dropped += 1
        if (
            word in _COORDINABLE
            and len(kept) >= 2
            and kept[-1] in _AND_OR
            and kept[-2] in _COORDINABLE
        ):
            kept.pop()
            continue
        kept.append(word)
    return tuple(kept)


def _joins_verbs(before: list[str], word: str, following: str) -> bool:
    """ "don't text and drive", "can I cancel and rebook": an "and" / "or" before a word the
    grammar does not know joins it to what came before, so it is not cut at."""
    return bool(before) and word in _AND_OR and following not in _OPT_OUT_FAMILY.vocabulary


def _pieces(clause: _Phrase) -> list[_Phrase]:
    """The stretches of a clause between conjunctions ("thanks but remove me": "remove me")."""
    pieces: list[_Phrase] = []
    current: list[str] = []
    for at, word in enumerate(clause):
        following = clause[at + 1] if at + 1 < len(clause) else ""
        if word in _CONJUNCTIONS and not _joins_verbs(current, word, following):
            if current:
                pieces.append(tuple(current))
            current = []
        else:
            current.append(word)
    if current:
        pieces.append(tuple(current))
    return pieces if len(pieces) > 1 else []


def _opt_out_rank(words: _Phrase) -> int:
    if not _INTENSIFIERS.isdisjoint(words):
        words = tuple(word for word in words if word not in _INTENSIFIERS)
    simplified = _simplified(words)
    rank = _parse(words, _OPT_OUT_FAMILY)
    if simplified != words and rank == _NO_PARSE:
        rank = _parse(simplified, _OPT_OUT_FAMILY)
    return rank


#: At most this many distinct clauses of one body are parsed. Only a wall of text built to be
#: slow gets this far; its opt-out words still make it MAYBE_OPT_OUT for a human.
MAX_CLAUSES_PARSED: Final = 16


def _clauses(folded: str) -> list[tuple[_Phrase, bool]]:
    """The words of each clause, and whether it is a question ("Stop? No way")."""
    clauses: list[tuple[_Phrase, bool]] = []
    current: list[str] = []
    for word in folded.translate(CLAUSES_TABLE).split():
        if word not in (".", "?"):
            current.append(word)
            continue
        if current:
            clauses.append((tuple(current), word == "?"))
        current = []
    if current:
        clauses.append((tuple(current), False))
    return clauses


def _skip_fillers(words: _Phrase) -> int:
    """Where the words start once leading fillers ("hi", "ok so") are passed."""
    start = 0
    while start < len(words):
        ends = _FILLERS.ends(words, start)
        if not ends:
            break
        start = max(ends)
    return start


def _request_rank(question: _Phrase) -> int:
    """A question is an opt-out only as a request: "Could you please take me off your list?"."""
    start = _skip_fillers(question)
    if start >= len(question) or question[start] not in _QUESTION_LEAD_INS.first_words:
        return _NO_PARSE
    return max(
        (
            _opt_out_rank(question[end:])
            for end in _QUESTION_LEAD_INS.ends(question, start)
            if end < len(question)
        ),
        default=_NO_PARSE,
    )


def _clause_rank(clause: _Phrase, question: bool, tails: bool = True) -> int:
    """A clause as a command, or as a request ("could you remove me"), or one of its pieces,
    or a request with a few words after it ("stop texting me you clowns")."""
    rank = _request_rank(clause)
    if not question:
        rank = max(rank, _opt_out_rank(clause))
    for piece in _pieces(clause) if rank == _NO_PARSE else ():
        rank = max(rank, _request_rank(piece), _NO_PARSE if question else _opt_out_rank(piece))
    if rank == _NO_PARSE and not question and tails:
        rank = _tailed_rank(clause)
    return rank


#: At most this many words may follow a request that names what it stops.
_MAX_TAIL_WORDS: Final = 4


def _tailed_rank(clause: _Phrase) -> int:
    """ "Stop texting me you liberal snowflakes", "stop texting me about rallies": a request
    ending in who or what it stops ("me", "texts", "your list"), then a few words that do not
    narrow it ("so much", "at night", "until Friday" do: see [[narrowing]])."""
    for end in range(len(clause) - 1, max(len(clause) - _MAX_TAIL_WORDS, 1) - 1, -1):
        head, tail = clause[:end], clause[end:]
        if head[-1] not in _STRONG_OBJECTS or not _NARROWING.isdisjoint(tail):
            continue
        rank = _opt_out_rank(head)
        if rank != _NO_PARSE:
            return rank
    return _NO_PARSE


def _certain_opt_out(folded: str, words: _Phrase) -> Intent | None:
    """OPT_OUT/OPT_OUT_ALL if the whole body, or one clause of it, is one.

    A clause that is a question counts only when it asks for the opt-out ("can you ...?").
    Some phrases ("delete it") count only next to a statement that names the number ("who gave
    you my number?").
    """
    best = _glued_rank(words)
    if best == _NO_PARSE and not _OPT_OUT_FAMILY.anchors.isdisjoint(words):
        best = _clause_rank(words, question=False)
    clauses = _clauses(folded) if best < _ALL_SENDERS else []
    parsed: set[tuple[_Phrase, bool]] = {(words, False)}
    cheered = len(clauses) > 1 and _CHEERS.occurs_in(words)
    for clause, question in clauses:
        if (clause, question) in parsed or _OPT_OUT_FAMILY.anchors.isdisjoint(clause):
            continue
        if cheered and len(_strip_fillers(clause)) == 1:
            continue  # "Stop!! That's amazing news": surprise, for a human to read
        parsed.add((clause, question))
        best = max(best, _clause_rank(clause, question))
        if best == _ALL_SENDERS or len(parsed) > MAX_CLAUSES_PARSED:
            break
    if best == _NO_PARSE and _CONTEXT.occurs_in(words):
        best = max(
            (
                _parse(_simplified(clause), _IN_CONTEXT_FAMILY)
                for clause, question in clauses[:MAX_CLAUSES_PARSED]
                if not question
            ),
            default=_NO_PARSE,
        )
    if best == _ALL_SENDERS:
        return Intent.OPT_OUT_ALL
    if best == _PHRASE:
        return Intent.OPT_OUT
    return None


# --------------------------------------------------------------------------------------------
# Glued and stretched keywords: "STOPPP", "stop2", "S T O P", "stopit", "STOPSTOP"
# --------------------------------------------------------------------------------------------

_MAX_GLUED_CHARS: Final = 40
_DIGITS: Final = "0123456789"
_RUNS: Final = re.compile(r"(.)\1{2,}")  # three or more of a letter: "stoppp"
_KEYWORD_WORDS: Final = {
    "".join(words): words
    for pattern in OPT_OUT_PATTERNS + OPT_OUT_ALL_PATTERNS
    if "{" not in pattern and (words := split_words(normalize(pattern)))
}


def _destretched(word: str) -> str:
    """ "stoppp" -> "stop", "stopp" -> "stop" (a doubled last letter), digits off the ends."""
    word = _RUNS.sub(r"\1", word.strip(_DIGITS))
    if len(word) > 2 and word[-1] == word[-2]:
        word = word[:-1]
    return word


def _repeats(word: str) -> bool:
    """ "stopstop", "stopstopstop": a keyword written several times without spaces."""
    for size in range(2, len(word) // 2 + 1):
        if (
            len(word) % size == 0
            and word[:size] in _KEYWORD_WORDS
            and word == word[:size] * (len(word) // size)
        ):
            return True
    return False


def _splits(word: str) -> list[_Phrase]:
    """Every way to cut ``word`` into two or three words the opt-out grammar knows."""
    known = _OPT_OUT_FAMILY.vocabulary
    found: list[_Phrase] = []
    for first in range(1, len(word)):
        head, tail = word[:first], word[first:]
        if head not in known:
            continue
        if tail in known:
            found.append((head, tail))
        for second in range(1, len(tail)):
            if tail[:second] in known and tail[second:] in known:
                found.append((head, tail[:second], tail[second:]))
    return found


def _transposed(word: str, keyword: str) -> bool:
    """ "stpo" for "stop", "cancle" for "cancel": two neighbouring letters swapped, nothing else."""
    if len(word) != len(keyword) or word == keyword:
        return False
    differ = [index for index, (a, b) in enumerate(zip(word, keyword, strict=True)) if a != b]
    return (
        len(differ) == 2
        and differ[1] == differ[0] + 1
        and word[differ[0]] == keyword[differ[1]]
        and word[differ[1]] == keyword[differ[0]]
    )


def _glued_rank(words: _Phrase) -> int:
    """The rank of a body that is one word glued or stretched out of opt-out words.

    Spaced letters ("S T O P", "s.t.o.p") are read as one word first.
    """
    if len(words) >= 3 and all(len(word) == 1 for word in words):
        words = ("".join(words),)
    if len(words) != 1 or len(words[0]) > _MAX_GLUED_CHARS:
        return _NO_PARSE
    word = words[0]
    if word in _KEYWORD_WORDS:
        return _opt_out_rank(_KEYWORD_WORDS[word])
    plain = _destretched(word)
    if plain in _KEYWORD_WORDS:
        return _opt_out_rank(_KEYWORD_WORDS[plain])
    if _repeats(word) or _repeats(plain) or any(_transposed(plain, typo) for typo in _TYPO_CHECKED):
        return _PHRASE
    return max((_opt_out_rank(split) for split in _splits(word)), default=_NO_PARSE)


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


#: A word the opt-out grammar does not know is read as the one grammar word of at least this
#: many letters it is a typo of ("mesages", "remvoe", "mailng"), if there is one.
_MIN_TYPO_LETTERS: Final = 5
_LETTERS: Final = re.compile(r"[a-z]+")


def _deletions(word: str) -> set[str]:
    return {word} | {word[:at] + word[at + 1 :] for at in range(len(word))}


@functools.cache
def _typo_index() -> dict[str, frozenset[str]]:
    """Each grammar word under itself and every one-letter deletion of it (symmetric delete)."""
    index: dict[str, set[str]] = {}
    # Not into companions or lead-ins: "bajan" must not become "baja" next to a companion "no".
    for word in _OPT_OUT.vocabulary | _OPT_OUT_ALL.vocabulary | _FILLERS.vocabulary:
        if len(word) >= _MIN_TYPO_LETTERS and word.isalpha():
            for key in _deletions(word):
                index.setdefault(key, set()).add(word)
    return {key: frozenset(words) for key, words in index.items()}


def _corrected(word: str) -> str:
    if len(word) < _MIN_TYPO_LETTERS - 1 or word in _OPT_OUT_FAMILY.vocabulary:
        return word
    if _destretched(word) in _OPT_OUT.vocabulary:  # "stopp", "pleaseee"
        return _destretched(word)
    index = _typo_index()
    near = {
        known
        for key in _deletions(word)
        for known in index.get(key, ())
        if _within_one_edit(word, known)
    }
    if len(near) > 1:  # several: only one of the same length and first letter will do
        near = {known for known in near if len(known) == len(word) and known[0] == word[0]}
    return next(iter(near)) if len(near) == 1 else word


def _typo_corrected(folded: str) -> str:
    return _LETTERS.sub(lambda match: _corrected(match.group()), folded)


def _looks_like_opt_out_typo(compact: str) -> bool:
    return any(_within_one_edit(compact, word) for word in _TYPO_CHECKED)


def _without_other_uses(words: _Phrase) -> list[_Phrase]:
    """The stretches of ``words`` left once ordinary uses ("bus stop", "don't stop") are cut out."""
    stretches: list[_Phrase] = []
    current: list[str] = []
    position = 0
    while position < len(words):
        word = words[position]
        ends = _NOT_OPT_OUT.ends(words, position) if word in _NOT_OPT_OUT.first_words else ()
        if ends:
            stretches.append(tuple(current))
            current = []
            position = max(ends)
            continue
        current.append(word)
        position += 1
    stretches.append(tuple(current))
    return [stretch for stretch in stretches if stretch]


def _maybe_opt_out(words: _Phrase) -> bool:
    """True if an opt-out word or phrase appears outside an ordinary use, or the body is a typo."""
    if any(_MAYBE.occurs_in(stretch) for stretch in _without_other_uses(words)):
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
        or _glued_rank(words) != _NO_PARSE
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


def _scoped_keyword(words: _Phrase, keywords: Iterable[str]) -> str | None:
    """The huddle keyword a STOP names: "STOP LOGAN", "logan stop", "unsubscribe me from logan",
    "STOPLOGAN". None: no keyword of this number (then "STOP <word>" is for a human to read)."""
    core = _strip_fillers(words)
    if not core or len(core) > MAX_COMMAND_WORDS:
        return None
    keywords = tuple(keywords)
    if not keywords:
        return None
    for end in _SCOPE_VERBS.ends(core, 0) if core[0] in _SCOPE_VERBS.first_words else ():
        keyword = _match_keywordwords(core[end:], keywords)
        if keyword is not None:
            return keyword
    for start in range(1, len(core)):
        if core[start] in _SCOPE_VERBS.first_words and len(core) in _SCOPE_VERBS.ends(core, start):
            keyword = _match_keywordwords(core[:start], keywords)
            if keyword is not None:
                return keyword
    if len(core) == 1:
        for verb in _GLUED_SCOPE_VERBS:
            if core[0].startswith(verb) and len(core[0]) > len(verb):
                keyword = _match_keywordwords((core[0][len(verb) :],), keywords)
                if keyword is not None:
                    return keyword
    return None


def _named_in_opt_out(words: _Phrase, keywords: tuple[str, ...]) -> frozenset[str]:
    """The keywords of "unsubscribe me from the Logan group", "baja de logan y provo": huddle
    keywords that, taken out with the words attaching them, leave a certain opt-out."""
    if _OPT_OUT_FAMILY.anchors.isdisjoint(words):
        return frozenset()
    by_key = {key: keyword for keyword in keywords if (key := _keyword_key(keyword)) is not None}
    named = {at: by_key[word] for at, word in enumerate(words) if word in by_key}
    if not named:
        return frozenset()
    cut = set(named)
    for at in named:
        before, after = at - 1, at + 1
        while before >= 0 and (words[before] in _SCOPE_GLUE or words[before] in _AND_OR):
            cut.add(before)
            before -= 1
        while after < len(words) and (words[after] in _SCOPE_GLUE or words[after] in _AND_OR):
            cut.add(after)
            after += 1
    first, last = min(cut), max(cut) + 1
    if any(at not in cut for at in range(first, last)):
        return frozenset()  # the keywords stand apart: "stop the Logan rally, Provo"
    # Cut as much or as little of the glue as the request needs: "plus de messages de Logan"
    # keeps "plus de messages", "baja de logan" keeps "baja".
    inner_first, inner_last = min(named), max(named) + 1
    for start in range(first, inner_first + 1):
        for end in range(inner_last, last + 1):
            for stand_in in _SCOPE_STAND_INS:
                rest = words[:start] + stand_in + words[end:]
                if rest and _clause_rank(rest, question=False, tails=False) != _NO_PARSE:
                    return frozenset(named.values())
    return frozenset()


def _one_sentence(folded: str) -> bool:
    """One sentence, with perhaps a "Thanks." after it: not "Stop. Logan"."""
    return sum(1 for clause, _ in _clauses(folded) if _strip_fillers(clause)) == 1


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

    Priority: certain opt-out (incl. STOPALL) > STOP <huddle keyword> (``keyword`` set: that
    huddle only) > help > huddle keyword > confirm / opt-in / skip > maybe-opt-out > other. A
    keyword never outranks a reserved word (see ``match_keyword``).
    """
    keywords = tuple(keywords)
    folded = fold(body)
    normalized = trim(" ".join(folded.split()))
    words = split_words(normalized)

    opt_out = _certain_opt_out(folded, words)
    if opt_out is None and 1 < len(words) <= MAX_COMMAND_WORDS:  # one word: see step 8
        corrected = _typo_corrected(folded)
        if corrected != folded:
            opt_out = _certain_opt_out(corrected, split_words(trim(" ".join(corrected.split()))))
    if opt_out is Intent.OPT_OUT and keywords and _one_sentence(folded):
        named = _named_in_opt_out(words, keywords)  # "take me off the Logan list"
        if len(named) == 1:
            return Classification(opt_out, keyword=next(iter(named)), normalized=normalized)
    if opt_out is not None:
        return Classification(opt_out, normalized=normalized)
    scoped = _scoped_keyword(words, keywords)
    if scoped is not None:
        return Classification(Intent.OPT_OUT, keyword=scoped, normalized=normalized)
    named = _named_in_opt_out(words, keywords) if len(words) <= MAX_COMMAND_WORDS else frozenset()
    if named:  # "unsubscribe me from Logan"; two or more named: all of them
        keyword = next(iter(named)) if len(named) == 1 else None
        return Classification(Intent.OPT_OUT, keyword=keyword, normalized=normalized)
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
