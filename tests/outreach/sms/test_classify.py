"""Tests for outreach.sms.inbound.classify: the inbound SMS classifier.

The stakes are lopsided: a missed opt-out is a compliance failure (FCC 47 CFR 64.1200(a)(10)),
a missed "yes" is an inconvenience. So besides the tables, properties check that every phrase
in the module's own opt-out data is recognised however it is dressed up, and that ordinary
chatter is never mistaken for one.
"""

from __future__ import annotations

import random
import re
import time
import unicodedata
from collections.abc import Iterator

import pytest
from hypothesis import assume, example, given, settings
from hypothesis import strategies as st

from outreach.sms.inbound import classify as c
from outreach.sms.inbound.classify import Classification, Intent, classify, match_keyword, normalize
from outreach.sms.inbound.phrases import MAX_CLASSIFIED_CHARS

KEYWORDS = ["LOGAN", "BOSTON", "BOST", "END HUNGER"]

OPT_OUT_INTENTS = {Intent.OPT_OUT, Intent.OPT_OUT_ALL}
ANY_OPT_OUT = OPT_OUT_INTENTS | {Intent.MAYBE_OPT_OUT}


def damerau_levenshtein(first: str, second: str) -> int:
    """Reference (optimal string alignment) distance, written independently of the module."""
    rows = [[0] * (len(second) + 1) for _ in range(len(first) + 1)]
    for i in range(len(first) + 1):
        rows[i][0] = i
    for j in range(len(second) + 1):
        rows[0][j] = j
    for i in range(1, len(first) + 1):
        for j in range(1, len(second) + 1):
            cost = 0 if first[i - 1] == second[j - 1] else 1
            rows[i][j] = min(rows[i - 1][j] + 1, rows[i][j - 1] + 1, rows[i - 1][j - 1] + cost)
            if i > 1 and j > 1 and first[i - 1] == second[j - 2] and first[i - 2] == second[j - 1]:
                rows[i][j] = min(rows[i][j], rows[i - 2][j - 2] + 1)
    return rows[-1][-1]


# ------------------------------------------------------------------------------------------
# Table: body -> intent (and keyword for JOIN)
# ------------------------------------------------------------------------------------------

CASES: list[tuple[str, Intent, str | None]] = [
    # --- Twilio's default keywords, whole body, any dress ---
    ("STOP", Intent.OPT_OUT, None),
    ("stop", Intent.OPT_OUT, None),
    ("Stop", Intent.OPT_OUT, None),
    ("STOP!", Intent.OPT_OUT, None),
    (" stop. ", Intent.OPT_OUT, None),
    ("Stop 🙏", Intent.OPT_OUT, None),
    ("“STOP”", Intent.OPT_OUT, None),
    ('"stop"', Intent.OPT_OUT, None),
    ("¡STOP!", Intent.OPT_OUT, None),
    ("STOP?", Intent.OPT_OUT, None),
    ("\tSTOP\n", Intent.OPT_OUT, None),
    ("ＳＴＯＰ", Intent.OPT_OUT, None),  # fullwidth
    ("Ⓢⓣⓞⓟ", Intent.OPT_OUT, None),  # circled letters, folded by NFKC
    ("S\u200bTOP", Intent.OPT_OUT, None),  # zero-width space
    ("\u200fSTOP\u200f", Intent.OPT_OUT, None),  # RTL marks
    ("\ufeffstop", Intent.OPT_OUT, None),  # BOM
    ("\x00STOP\x07", Intent.OPT_OUT, None),  # control characters
    ("stop\u00a0", Intent.OPT_OUT, None),  # no-break space
    ("STOPALL", Intent.OPT_OUT_ALL, None),
    ("StopAll!", Intent.OPT_OUT_ALL, None),
    ("stop all", Intent.OPT_OUT_ALL, None),
    ("UNSUBSCRIBE", Intent.OPT_OUT, None),
    ("Cancel", Intent.OPT_OUT, None),
    ("END", Intent.OPT_OUT, None),
    ("quit.", Intent.OPT_OUT, None),
    ("REVOKE", Intent.OPT_OUT, None),
    ("OPTOUT", Intent.OPT_OUT, None),
    ("opt out", Intent.OPT_OUT, None),
    ("Opt-Out", Intent.OPT_OUT, None),
    ("opt‐out", Intent.OPT_OUT, None),  # U+2010 hyphen
    ("remove", Intent.OPT_OUT, None),
    # --- plain-language revocations (FCC: any reasonable means) ---
    ("stop texting me", Intent.OPT_OUT, None),
    ("Stop messaging me!", Intent.OPT_OUT, None),
    ("stop sending me texts", Intent.OPT_OUT, None),
    ("Stop sending me all of these text messages please", Intent.OPT_OUT, None),
    ("stop the texts", Intent.OPT_OUT, None),
    ("stop it", Intent.OPT_OUT, None),
    ("stop please", Intent.OPT_OUT, None),
    ("please stop", Intent.OPT_OUT, None),
    ("PLEASE STOP!!!", Intent.OPT_OUT, None),
    ("pls stop now", Intent.OPT_OUT, None),
    ("ok stop", Intent.OPT_OUT, None),
    ("stop, thank you", Intent.OPT_OUT, None),
    ("STOP STOP", Intent.OPT_OUT, None),
    ("stop stop stop", Intent.OPT_OUT, None),
    ("quit texting me", Intent.OPT_OUT, None),
    ("remove me", Intent.OPT_OUT, None),
    ("please remove me", Intent.OPT_OUT, None),
    ("remove me from this list", Intent.OPT_OUT, None),
    ("Please remove my number from your list.", Intent.OPT_OUT, None),
    ("take me off your list", Intent.OPT_OUT, None),
    ("take me off", Intent.OPT_OUT, None),
    ("unsubscribe me", Intent.OPT_OUT, None),
    ("unsubscribe me from this list please", Intent.OPT_OUT, None),
    ("don't text me", Intent.OPT_OUT, None),
    ("don’t text me", Intent.OPT_OUT, None),  # curly apostrophe
    ("dont text me", Intent.OPT_OUT, None),
    ("do not text me", Intent.OPT_OUT, None),
    ("dont text me anymore", Intent.OPT_OUT, None),
    ("Never text me again!!", Intent.OPT_OUT, None),
    ("don't send me any more texts", Intent.OPT_OUT, None),
    ("I don't want these texts", Intent.OPT_OUT, None),
    ("no more texts", Intent.OPT_OUT, None),
    ("No more messages please", Intent.OPT_OUT, None),
    ("leave me alone", Intent.OPT_OUT, None),
    ("I want to unsubscribe", Intent.OPT_OUT, None),
    ("i would like to be removed from your mailing list", Intent.OPT_OUT, None),
    ("Can you stop texting me?", Intent.OPT_OUT, None),
    ("hi, can you please stop texting me", Intent.OPT_OUT, None),
    ("I said STOP", Intent.OPT_OUT, None),
    ("opt me out", Intent.OPT_OUT, None),
    ("cancel my subscription", Intent.OPT_OUT, None),
    ("revoke my consent", Intent.OPT_OUT, None),
    # --- an opt-out clause inside a longer text ---
    ("Who is this? Stop texting me.", Intent.OPT_OUT, None),
    ("Stop. I never signed up for this", Intent.OPT_OUT, None),
    ("No, stop", Intent.OPT_OUT, None),
    ("Yes. Stop", Intent.OPT_OUT, None),
    ("Hey, please remove me from your list, I'm not interested", Intent.OPT_OUT, None),
    ("Great rally!\nSTOPALL", Intent.OPT_OUT_ALL, None),
    # --- Spanish, with and without accents ---
    ("PARA", Intent.OPT_OUT, None),
    ("Pará", Intent.OPT_OUT, None),
    ("PARÁ!", Intent.OPT_OUT, None),
    ("alto", Intent.OPT_OUT, None),
    ("ALTO.", Intent.OPT_OUT, None),
    ("cancelar", Intent.OPT_OUT, None),
    ("baja", Intent.OPT_OUT, None),
    ("darme de baja", Intent.OPT_OUT, None),
    ("Quiero darme de baja", Intent.OPT_OUT, None),
    ("No me envíen más mensajes", Intent.OPT_OUT, None),
    ("no me envien mas mensajes", Intent.OPT_OUT, None),
    ("No más mensajes, por favor", Intent.OPT_OUT, None),
    ("no mas mensajes", Intent.OPT_OUT, None),
    ("Deja de enviarme mensajes", Intent.OPT_OUT, None),
    ("para por favor", Intent.OPT_OUT, None),
    # --- looks like an opt-out, is not certain: a human decides ---
    ("stop by the meeting tonight?", Intent.OTHER, None),
    ("can't stop thinking about the rally", Intent.OTHER, None),
    ("the end of the march was great", Intent.OTHER, None),
    ("did they cancel the meeting?", Intent.MAYBE_OPT_OUT, None),
    ("The end.", Intent.MAYBE_OPT_OUT, None),
    ("wrong number", Intent.MAYBE_OPT_OUT, None),
    ("Wrong number!", Intent.MAYBE_OPT_OUT, None),
    ("not interested", Intent.MAYBE_OPT_OUT, None),
    ("don't stop", Intent.OTHER, None),
    ("please don't stop texting me", Intent.OTHER, None),
    ("Stop? No way, keep them coming", Intent.MAYBE_OPT_OUT, None),
    ("I unsubscribed but I still get texts", Intent.MAYBE_OPT_OUT, None),
    ("how do I opt out of the canvass shift", Intent.MAYBE_OPT_OUT, None),
    ("can you remove the chairs after", Intent.OTHER, None),
    ("I quit my job to volunteer full time", Intent.OTHER, None),
    ("unsubcribe", Intent.OPT_OUT, None),  # a misspelling people send
    ("stpo", Intent.OPT_OUT, None),  # two letters swapped
    ("stopp", Intent.OPT_OUT, None),  # a doubled last letter
    ("Gracias para la información", Intent.OTHER, None),  # "para" is also "for"
    ("Help! How do I stop these?", Intent.OPT_OUT, None),  # asks for the opt-out
    # --- help ---
    ("help", Intent.HELP, None),
    ("HELP", Intent.HELP, None),
    ("help!", Intent.HELP, None),
    ("Help me", Intent.HELP, None),
    ("help please", Intent.HELP, None),
    ("INFO", Intent.HELP, None),
    ("info?", Intent.HELP, None),
    ("ayuda", Intent.HELP, None),
    ("Ayuda por favor", Intent.HELP, None),
    # --- confirm ---
    ("yes", Intent.CONFIRM, None),
    ("YES", Intent.CONFIRM, None),
    ("y", Intent.CONFIRM, None),
    ("Y", Intent.CONFIRM, None),
    ("yes!", Intent.CONFIRM, None),
    ("Yes please", Intent.CONFIRM, None),
    ("yep", Intent.CONFIRM, None),
    ("Yeah!", Intent.CONFIRM, None),
    ("ok yes", Intent.CONFIRM, None),
    ("yes yes", Intent.CONFIRM, None),
    ("si", Intent.CONFIRM, None),
    ("Sí", Intent.CONFIRM, None),
    ("SÍ!", Intent.CONFIRM, None),
    ("yes 👍", Intent.CONFIRM, None),
    # --- opt-in and skip ---
    ("START", Intent.OPT_IN, None),
    ("start", Intent.OPT_IN, None),
    ("unstop", Intent.OPT_IN, None),
    ("start please", Intent.OPT_IN, None),
    ("Start again", Intent.OPT_IN, None),
    ("skip", Intent.SKIP, None),
    ("SKIP!", Intent.SKIP, None),
    ("skip this", Intent.SKIP, None),
    # --- huddle keywords ---
    ("LOGAN", Intent.JOIN, "LOGAN"),
    ("join logan", Intent.JOIN, "LOGAN"),
    ("Logan!", Intent.JOIN, "LOGAN"),
    (" logan ", Intent.JOIN, "LOGAN"),
    ("JOIN: Logan", Intent.JOIN, "LOGAN"),
    ("#logan", Intent.JOIN, "LOGAN"),
    ("join #Logan please", Intent.JOIN, "LOGAN"),
    ("hi, logan", Intent.JOIN, "LOGAN"),
    ("LOGNA", Intent.JOIN, "LOGAN"),  # transposition
    ("LOGANN", Intent.JOIN, "LOGAN"),  # insertion
    ("logn", Intent.JOIN, "LOGAN"),  # deletion
    ("lohan", Intent.JOIN, "LOGAN"),  # substitution
    ("Bostn", Intent.JOIN, "BOSTON"),
    ("bost", Intent.JOIN, "BOST"),  # exact wins over a typo of BOSTON
    ("unirme a Logan", Intent.JOIN, "LOGAN"),
    ("End Hunger", Intent.JOIN, "END HUNGER"),  # joins: a keyword outranks MAYBE_OPT_OUT
    ("join endhunger", Intent.JOIN, "END HUNGER"),
    ("LOG", Intent.OTHER, None),  # two edits away
    ("BOSS", Intent.OTHER, None),  # BOST has 4 letters: no typo tolerance
    ("join", Intent.OTHER, None),
    # --- ordinary replies for the inbox ---
    ("See you at the rally tonight!", Intent.OTHER, None),
    ("What time is the meeting?", Intent.OTHER, None),
    ("ok", Intent.OTHER, None),
    ("thanks!", Intent.OTHER, None),
    ("no", Intent.OTHER, None),
    ("Who is this?", Intent.OTHER, None),
    ("🙏🙏🙏", Intent.OTHER, None),
    ("", Intent.OTHER, None),
    ("   ", Intent.OTHER, None),
    ("\ud800", Intent.OTHER, None),
    ("توقف عن إرسال الرسائل", Intent.OTHER, None),  # Arabic: no rules for it, goes to a human
    ("אני אגיע מחר", Intent.OTHER, None),
    ("I stopped by the office", Intent.OTHER, None),  # only whole words count
]


@pytest.mark.parametrize(
    ("body", "intent", "keyword"), CASES, ids=[repr(case[0])[:40] for case in CASES]
)
def test_classify_table(body: str, intent: Intent, keyword: str | None) -> None:
    result = classify(body, KEYWORDS)
    assert (result.intent, result.keyword) == (intent, keyword)
    assert result.normalized == normalize(body)


@pytest.mark.parametrize(
    "word", ["STOP", "STOPALL", "UNSUBSCRIBE", "CANCEL", "END", "QUIT", "REVOKE", "OPTOUT"]
)
def test_twilio_opt_out_keywords_are_certain(word: str) -> None:
    assert classify(word).intent in OPT_OUT_INTENTS
    assert classify(word.lower() + "!", KEYWORDS).intent in OPT_OUT_INTENTS


def test_twilio_other_keywords() -> None:
    assert classify("START").intent is Intent.OPT_IN
    assert classify("UNSTOP").intent is Intent.OPT_IN
    assert classify("YES").intent is Intent.CONFIRM
    assert classify("HELP").intent is Intent.HELP
    assert classify("INFO").intent is Intent.HELP


def test_classification_is_a_frozen_value() -> None:
    result = classify("join logan", ["LOGAN"])
    assert result == Classification(Intent.JOIN, keyword="LOGAN", normalized="join logan")
    with pytest.raises(AttributeError):
        result.intent = Intent.OTHER  # type: ignore[misc]
    assert Intent.OPT_OUT == "opt_out"  # StrEnum: stores and logs as plain text


# ------------------------------------------------------------------------------------------
# Priority: nothing outranks an opt-out; a keyword never outranks a reserved word
# ------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("body", "keywords", "intent", "keyword"),
    [
        ("STOP", ["STOP"], Intent.OPT_OUT, None),
        ("stop", ["STOPS"], Intent.OPT_OUT, None),  # exact reserved beats a typo of a keyword
        ("stopp", ["STOPS"], Intent.OPT_OUT, None),  # STOP stretched: never a typo of STOPS
        ("END", ["END HUNGER", "END"], Intent.OPT_OUT, None),
        ("help", ["HELP"], Intent.HELP, None),
        ("help", ["HELPS"], Intent.HELP, None),
        ("yes", ["YES"], Intent.CONFIRM, None),
        ("start", ["STARS"], Intent.OPT_IN, None),  # START is one edit from STARS
        ("skip", ["SKIPS"], Intent.SKIP, None),
        ("thanks", ["THANKS"], Intent.OTHER, None),  # fillers are reserved too
        ("join yes", ["YESS"], Intent.OTHER, None),
        ("Stop. Logan", ["LOGAN"], Intent.OPT_OUT, None),
        ("logan stop", ["LOGAN"], Intent.OPT_OUT, "LOGAN"),  # a scoped STOP
        ("join stop", ["LOGAN"], Intent.MAYBE_OPT_OUT, None),
        ("STOP THE WAR", ["STOP THE WAR"], Intent.JOIN, "STOP THE WAR"),
    ],
)
def test_priority(body: str, keywords: list[str], intent: Intent, keyword: str | None) -> None:
    result = classify(body, keywords)
    assert (result.intent, result.keyword) == (intent, keyword)


# ------------------------------------------------------------------------------------------
# Keywords
# ------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "keywords", "expected"),
    [
        ("LOGAN", ["LOGAN", "BOSTON"], "LOGAN"),
        ("join boston", ["LOGAN", "BOSTON"], "BOSTON"),
        ("bsoton", ["BOSTON"], "BOSTON"),  # transposition
        ("bostom", ["BOSTON"], "BOSTON"),  # substitution
        ("bbostonn", ["BOSTON"], None),  # two edits
        ("LOG", ["LOGAN"], None),
        ("BOSS", ["BOST"], None),
        ("bost", ["BOST"], "BOST"),
        ("BAKER", ["BAKER", "BAKES"], "BAKER"),  # exact wins over a typo of another
        ("BAKEX", ["BAKER", "BAKES"], None),  # one typo from both: ambiguous
        ("BAKEX", ["BAKER", "baker"], "BAKER"),  # the same keyword twice is not ambiguous
        ("logan", ["  Logan!! "], "  Logan!! "),  # returned as given
        ("LOGAN", ["logan"], "logan"),
        ("new york", ["NEWYORK"], "NEWYORK"),
        ("join new-york", ["New York"], "New York"),
        ("STOP", ["STOP"], None),  # reserved keywords never match
        ("info", ["INFO"], None),
        ("", ["LOGAN"], None),
        ("logan", [], None),
        ("logan", ["", "!!!"], None),
    ],
)
def test_match_keyword(text: str, keywords: list[str], expected: str | None) -> None:
    assert match_keyword(text, keywords) == expected


def test_match_keyword_accepts_any_iterable() -> None:
    def generate() -> Iterator[str]:
        yield "BOSTON"
        yield "LOGAN"

    assert match_keyword("logna", generate()) == "LOGAN"
    assert classify("logna", generate()).keyword == "LOGAN"
    assert match_keyword("logan", ("LOGAN",)) == "LOGAN"


@pytest.mark.parametrize(
    ("keyword", "reserved"),
    [
        ("STOP", True),
        ("stop!", True),
        ("Stop All", True),
        ("HELP", True),
        ("YES", True),
        ("Sí", True),
        ("START", True),
        ("SKIP", True),
        ("NO", True),  # the answer to "Reply YES"
        ("JOIN", True),
        ("PLEASE", True),
        ("remove me", True),
        ("stop texting me", True),
        ("PARA", True),
        ("", True),
        ("LOGAN", False),
        ("BOSTON", False),
        ("END HUNGER", False),
        ("STOP THE WAR", False),
    ],
)
def test_is_reserved_keyword(keyword: str, reserved: bool) -> None:
    assert c.is_reserved_keyword(keyword) is reserved


# ------------------------------------------------------------------------------------------
# Normalization
# ------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        ("  STOP!! ", "stop"),
        ("“Sí”", "si"),
        ("PARÁ 🙏", "para"),
        ("ＨＥＬＰ", "help"),
        ("don’t  text\n\tme", "don't text me"),
        ("S\u200bT\u200dOP", "stop"),
        ("\u202eSTOP\u202c", "stop"),
        ("Straße", "strasse"),
        ("\x00stop\x07", "stop"),
        ("\ud800stop\udfff", "stop"),
        ("e\u0301 ", "e"),  # decomposed accent
        ("JOIN: Logan", "join: logan"),  # inner punctuation stays
        ("#logan", "logan"),
        ("عصور", "عصور"),
        ("עצור!", "עצור"),
        ("한국어", "한국어"),  # Hangul is not decomposed
        ("", ""),
        ("🙏🙏", ""),
    ],
)
def test_normalize(body: str, expected: str) -> None:
    assert normalize(body) == expected


def test_normalize_truncates_long_bodies() -> None:
    assert len(normalize("x" * 1_000_000)) == MAX_CLASSIFIED_CHARS
    # U+FDFA expands 18-fold under NFKC: the result is still capped.
    assert len(normalize("\ufdfa" * 10_000)) <= MAX_CLASSIFIED_CHARS


# ------------------------------------------------------------------------------------------
# The phrase data
# ------------------------------------------------------------------------------------------

SLOT = re.compile(r"\{([^{}?]+)(\??)\}")


def test_every_slot_is_defined_and_used() -> None:
    patterns = (
        c.OPT_OUT_PATTERNS
        + c.OPT_OUT_LEAD_INS
        + c.OPT_OUT_COMPANIONS
        + c.OPT_OUT_IN_CONTEXT
        + c.OPT_OUT_CONTEXT
    )
    used = {match.group(1) for pattern in patterns for match in SLOT.finditer(pattern)}
    assert used == set(c.OPT_OUT_SLOTS)


@pytest.mark.parametrize("word", c.OPT_OUT_WORDS)
def test_opt_out_words_in_chatter_are_flagged(word: str) -> None:
    assert classify(f"what about the {word} thing at the rally").intent is Intent.MAYBE_OPT_OUT


@pytest.mark.parametrize("phrase", c.MAYBE_OPT_OUT_PHRASES)
def test_maybe_phrases_are_never_filed_as_chatter(phrase: str) -> None:
    assert classify(phrase).intent in ANY_OPT_OUT
    assert classify(f"hey, {phrase} at the park?").intent in ANY_OPT_OUT


@pytest.mark.parametrize("pattern", [p for p in c.OPT_OUT_PATTERNS if "{" not in p])
def test_opt_out_phrases_quoted_in_a_question_are_not_certain(pattern: str) -> None:
    assert classify(pattern).intent is Intent.OPT_OUT
    assert classify(f"did you say {pattern} at the meeting?").intent not in OPT_OUT_INTENTS


# ------------------------------------------------------------------------------------------
# Property 1: every certain opt-out phrase, however dressed, is an opt-out
# ------------------------------------------------------------------------------------------

WRAPPING = " \t\n\r.,!?;:\"'“”‘’()[]*#-…¡¿🙏👍😡✋🏽\u200b\u00a0"
wrapping = st.text(alphabet=WRAPPING, max_size=6)
spacing = st.sampled_from([" ", "  ", "\t", " \n "])


@st.composite
def spelled_out(draw: st.DrawFn, patterns: tuple[str, ...]) -> list[str]:
    """One sentence a pattern stands for, as words, each slot filled with a random choice."""
    pattern = draw(st.sampled_from(patterns))
    words: list[str] = []
    for part in pattern.split():
        slot = SLOT.fullmatch(part)
        if slot is None:
            words.append(part)
            continue
        choices = list(c.OPT_OUT_SLOTS[slot.group(1)]) + ([""] if slot.group(2) else [])
        words.append(draw(st.sampled_from(choices)))
    return [word for word in words if word]


def random_case(draw: st.DrawFn, text: str) -> str:
    flips = draw(st.lists(st.booleans(), min_size=len(text), max_size=len(text)))
    return "".join(ch.upper() if flip else ch for ch, flip in zip(text, flips, strict=True))


@given(data=st.data())
@settings(max_examples=600)
def test_every_certain_phrase_is_an_opt_out(data: st.DataObject) -> None:
    words = data.draw(spelled_out(c.OPT_OUT_PATTERNS + c.OPT_OUT_ALL_PATTERNS))
    lead = data.draw(st.sampled_from(("", *c.OPT_OUT_LEAD_INS)))
    filler = data.draw(st.sampled_from(("", *c.FILLER_WORDS)))
    sentence = random_case(data.draw, " ".join(part for part in (lead, *words, filler) if part))
    body = data.draw(wrapping) + sentence.replace(" ", data.draw(spacing)) + data.draw(wrapping)
    assert classify(body, KEYWORDS).intent in OPT_OUT_INTENTS, body
    # nor does a sentence before or after it hide it
    other = data.draw(st.sampled_from(["Who is this?", "I never signed up.", "Hi,", "ugh!"]))
    assert classify(f"{other} {sentence}", KEYWORDS).intent in OPT_OUT_INTENTS, sentence
    assert classify(f"{sentence}. {other}", KEYWORDS).intent in OPT_OUT_INTENTS, sentence


@given(data=st.data())
@settings(max_examples=200)
def test_stopall_is_all_senders_and_nothing_else_is(data: st.DataObject) -> None:
    phrase = " ".join(data.draw(spelled_out(c.OPT_OUT_ALL_PATTERNS)))
    assert classify(random_case(data.draw, phrase)).intent is Intent.OPT_OUT_ALL
    phrase = " ".join(data.draw(spelled_out(c.OPT_OUT_PATTERNS)))
    assert classify(phrase).intent is Intent.OPT_OUT


# ------------------------------------------------------------------------------------------
# Property 2: ordinary chatter is never an opt-out of any kind
# ------------------------------------------------------------------------------------------

CHATTER = [
    "see", "you", "at", "the", "rally", "tonight", "tomorrow", "bring", "signs", "we", "can",
    "meet", "by", "park", "what", "time", "is", "it", "great", "sounds", "good", "i", "will",
    "be", "there", "how", "many", "people", "are", "coming", "lets", "march", "together", "for",
    "our", "city", "council", "vote", "on", "tuesday", "saturday", "morning", "coffee", "after",
    "canvass", "door", "knocking", "phone", "bank", "training", "was", "fun", "love", "this",
    "group", "count", "me", "in", "neighbors", "school", "board", "library", "bus", "ride",
    "carpool", "need", "a", "lift", "where", "parking", "lot", "sign", "here", "share", "with",
    "friends", "hello", "good", "amazing", "water", "snacks", "who", "has", "extra", "flyers",
    "yes", "maybe", "later", "running", "late", "sorry", "almost", "be", "proud", "of",
    "everyone",
]  # fmt: skip


def test_chatter_vocabulary_is_free_of_opt_out_words() -> None:
    opt_out_words = {word for text in c.OPT_OUT_WORDS for word in normalize(text).split()}
    assert not opt_out_words & set(CHATTER)
    for word in CHATTER:
        for checked in c.TYPO_CHECKED_OPT_OUT_WORDS:
            assert damerau_levenshtein(word, checked) > 1, (word, checked)


@given(
    words=st.lists(st.sampled_from(CHATTER), min_size=1, max_size=40),
    marks=st.lists(st.sampled_from(["", "", "", ",", ".", "!", "?", "\n", " 🙏"]), max_size=40),
)
@settings(max_examples=500)
def test_chatter_is_never_an_opt_out(words: list[str], marks: list[str]) -> None:
    body = " ".join(word + (marks[i] if i < len(marks) else "") for i, word in enumerate(words))
    assert classify(body, KEYWORDS).intent not in ANY_OPT_OUT, body


# ------------------------------------------------------------------------------------------
# Property 3: never raises, always quick
# ------------------------------------------------------------------------------------------

any_text = st.text(alphabet=st.characters(exclude_categories=()))  # surrogates included


@given(body=any_text, keywords=st.lists(any_text, max_size=3))
@settings(max_examples=500)
@example(body="\ud800", keywords=["\udfff"])
@example(body="\x00" * 10, keywords=[])
@example(body="\u202e\u0627\u200f", keywords=[])
def test_classify_never_raises(body: str, keywords: list[str]) -> None:
    result = classify(body, keywords)
    assert isinstance(result.intent, Intent)
    assert result.normalized == normalize(body)
    assert len(result.normalized) <= MAX_CLASSIFIED_CHARS
    assert result.normalized == result.normalized.strip()
    result.normalized.encode("utf-8")  # no lone surrogates: safe to log and store
    assert "\x00" not in result.normalized
    assert (result.keyword is not None) == (result.intent is Intent.JOIN)
    assert result.keyword is None or result.keyword in keywords
    assert match_keyword(body, keywords) is None or match_keyword(body, keywords) in keywords


@given(body=any_text)
@settings(max_examples=300)
def test_normalize_is_idempotent(body: str) -> None:
    once = normalize(body)
    assert normalize(once) == once


def _slowest(body: str, runs: int = 3) -> float:
    best = float("inf")
    for _ in range(runs):
        start = time.perf_counter()
        classify(body, KEYWORDS)
        best = min(best, time.perf_counter() - start)
    return best


@pytest.mark.parametrize(
    "body",
    [
        "a" * 1_000_000,
        "stop " * 200_000,
        "stop 1, " * 125_000,
        "\ufdfa" * 1_000_000,  # 18-fold NFKC expansion
        "é," * 500_000,
        "한" * 1_000_000,
        "🙏" * 500_000,
        "".join(map(chr, random.Random(7).choices(range(0x110000), k=1_000))) * 1_000,
    ],
    ids=["ascii", "stop-words", "stop-clauses", "fdfa", "accents", "hangul", "emoji", "random"],
)
def test_huge_bodies_are_quick(body: str) -> None:
    # Measured at about 1 ms; the bound only catches a return of work proportional to the
    # body (1 MB) or a quadratic blow-up, without flaking on a busy CI machine.
    assert _slowest(body) < 0.05


def test_a_ten_kilobyte_reply_is_quick() -> None:
    rng = random.Random(3)
    chatter = " ".join(rng.choice(CHATTER) for _ in range(2_000))
    body = ("should we cancel? " + chatter)[:10_000]
    assert classify(body).intent is Intent.MAYBE_OPT_OUT
    assert classify(chatter[:10_000]).intent is Intent.OTHER
    assert _slowest(body, runs=5) < 0.005  # measured at about 0.2 ms


def test_a_huge_body_still_opts_out_when_it_starts_with_stop() -> None:
    assert classify("STOP" + " " * 1_000_000).intent is Intent.OPT_OUT
    assert classify("Stop texting me." + " blah" * 200_000).intent is Intent.OPT_OUT


# ------------------------------------------------------------------------------------------
# Property 4: one typo in a long keyword still finds it
# ------------------------------------------------------------------------------------------

keywords_5_plus = st.text(alphabet="abcdefghijklmnopqrstuvwxyz", min_size=5, max_size=12)


def _typo_is_meaningless(keyword: str, typo: str) -> bool:
    """A typo that is itself a command or an opt-out lookalike is (rightly) not a keyword."""
    return (
        not c.is_reserved_keyword(keyword)
        and not c.is_reserved_keyword(typo)
        and classify(typo).intent is Intent.OTHER
    )


@given(keyword=keywords_5_plus, data=st.data())
@settings(max_examples=400)
def test_one_deleted_letter_still_matches(keyword: str, data: st.DataObject) -> None:
    index = data.draw(st.integers(0, len(keyword) - 1))
    typo = keyword[:index] + keyword[index + 1 :]
    assume(_typo_is_meaningless(keyword, typo))
    assert match_keyword(typo, [keyword.upper()]) == keyword.upper()
    assert classify(f"join {typo}!", [keyword]).keyword == keyword


@given(keyword=keywords_5_plus, data=st.data())
@settings(max_examples=300)
def test_any_single_edit_still_matches(keyword: str, data: st.DataObject) -> None:
    index = data.draw(st.integers(0, len(keyword) - 1))
    letter = data.draw(st.sampled_from("abcdefghijklmnopqrstuvwxyz"))
    edits = [
        keyword[:index] + letter + keyword[index:],  # insertion
        keyword[:index] + letter + keyword[index + 1 :],  # substitution
        keyword[:index] + keyword[index + 1 : index + 2] + keyword[index] + keyword[index + 2 :],
    ]
    for typo in edits:
        assert damerau_levenshtein(typo, keyword) <= 1
        if _typo_is_meaningless(keyword, typo):
            assert match_keyword(typo, [keyword]) == keyword, typo


@given(keyword=st.text(alphabet="abcdefghijklmnopqrstuvwxyz", min_size=2, max_size=4))
def test_short_keywords_need_an_exact_match(keyword: str) -> None:
    assume(not c.is_reserved_keyword(keyword))
    assert match_keyword(keyword[:-1], [keyword]) is None
    assert match_keyword(keyword + "x", [keyword]) is None
    assert match_keyword(keyword, [keyword]) == keyword


@given(first=st.text(alphabet="abcde", max_size=7), second=st.text(alphabet="abcde", max_size=7))
@settings(max_examples=500)
def test_edit_check_agrees_with_reference_distance(first: str, second: str) -> None:
    assert c._within_one_edit(first, second) == (damerau_levenshtein(first, second) <= 1)


def test_fold_agrees_with_unicode_for_accented_latin() -> None:
    for char in "áéíóúüñçàèìòùâêîôûãõåäëïöÿ":
        base = unicodedata.normalize("NFD", char)[0]
        assert normalize(char.upper()) == base


# ------------------------------------------------------------------------------------------
# STOP <huddle keyword>: the opt-out names its huddle
# ------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("body", "keyword"),
    [
        ("STOP LOGAN", "LOGAN"),
        ("stop logan please", "LOGAN"),
        ("Logan stop", "LOGAN"),
        ("STOPLOGAN", "LOGAN"),
        ("stop #logan", "LOGAN"),
        ("unsubscribe me from Boston", "BOSTON"),
        ("STOP END HUNGER", "END HUNGER"),
        ("stop logna", "LOGAN"),  # one typo in a long keyword, as for a join
        ("ARRET BOSTON", "BOSTON"),
        ("cancelar logan", "LOGAN"),
        # a request that names the huddle, with the words that attach it
        ("unsubscribe me from the Logan group", "LOGAN"),
        ("take me off the Logan list", "LOGAN"),
        ("I'd like to be removed from the Boston Huddle text list, thanks.", "BOSTON"),
        ("no more Boston texts", "BOSTON"),
        ("baja de logan", "LOGAN"),
        ("Quiero darme de baja de los mensajes del grupo de Logan", "LOGAN"),
        ("Désabonnez-moi du groupe de Logan", "LOGAN"),
        ("plus de messages de Logan svp", "LOGAN"),
    ],
)
def test_stop_with_a_keyword_is_scoped_to_that_huddle(body: str, keyword: str) -> None:
    assert classify(body, KEYWORDS) == Classification(
        Intent.OPT_OUT, keyword=keyword, normalized=normalize(body)
    )


@pytest.mark.parametrize(
    ("body", "intent"),
    [
        ("STOP", Intent.OPT_OUT),  # no scope: every huddle on the number
        ("stop texting me", Intent.OPT_OUT),
        ("STOP ALL", Intent.OPT_OUT_ALL),
        ("STOP KAVANAUGH", Intent.MAYBE_OPT_OUT),  # not a keyword here: a human reads it
        ("stop provo", Intent.MAYBE_OPT_OUT),  # a huddle on another number
    ],
)
def test_stop_without_a_keyword_of_this_number_is_not_scoped(body: str, intent: Intent) -> None:
    result = classify(body, KEYWORDS)
    assert result.intent is intent
    assert result.keyword is None


@pytest.mark.parametrize(
    ("body", "intent"),
    [
        ("unsubscribe me from logan and boston", Intent.OPT_OUT),  # two: every huddle here
        ("don't unsubscribe me from Logan", Intent.OTHER),
        ("Stop. Logan", Intent.OPT_OUT),  # a sentence of its own: unscoped
        ("stop the Logan rally", Intent.MAYBE_OPT_OUT),
        ("see you at Logan", Intent.OTHER),
    ],
)
def test_a_request_naming_no_single_huddle_is_not_scoped(body: str, intent: Intent) -> None:
    result = classify(body, KEYWORDS)
    assert (result.intent, result.keyword) == (intent, None)


def test_a_scoped_stop_needs_the_keyword_list() -> None:
    assert classify("STOP LOGAN").intent is Intent.MAYBE_OPT_OUT
    assert classify("STOP LOGAN", iter(KEYWORDS)).keyword == "LOGAN"  # any iterable, read once


# ------------------------------------------------------------------------------------------
# Glued, stretched, spaced, swapped; requests; context; ordinary uses
# ------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "body",
    ["STOPPPP", "stopp", "stop2", "2STOP", "S T O P", "s.t.o.p", "STOPSTOP", "stopit",
     "pleasestop", "unsubscribeme", "stpo", "cancle", "UNSUBSCRIBEEEE"],
)  # fmt: skip
def test_one_word_glued_or_stretched_from_opt_out_words_is_an_opt_out(body: str) -> None:
    assert classify(body, KEYWORDS).intent is Intent.OPT_OUT


@pytest.mark.parametrize(
    "body", ["stoop", "stopover", "nonstop", "endless", "stopwatch", "Parra", "backstop"]
)
def test_words_that_only_contain_an_opt_out_word_are_not_opt_outs(body: str) -> None:
    assert classify(body, KEYWORDS).intent not in OPT_OUT_INTENTS


@pytest.mark.parametrize("keyword", ["STOPIT", "pleasestop", "S T O P", "UNSUBSCRIBEME"])
def test_glued_opt_outs_are_reserved_keywords(keyword: str) -> None:
    assert c.is_reserved_keyword(keyword)


@pytest.mark.parametrize(
    ("body", "intent"),
    [
        ("Who is this? Can you stop texting me?", Intent.OPT_OUT),
        ("How do I stop these texts?", Intent.OPT_OUT),
        ("¿Me pueden quitar de la lista?", Intent.OPT_OUT),
        ("Did you stop texting me?", Intent.MAYBE_OPT_OUT),  # a question, not a request
        ("Can you stop by the office?", Intent.OTHER),
        ("Who gave you my number? Delete it.", Intent.OPT_OUT),
        ("Can you delete it? The photo is blurry.", Intent.OTHER),  # "it" is not the number
        ("I stopped getting the Tuesday texts, did the schedule change?", Intent.OTHER),
    ],
)
def test_questions_count_as_requests_and_context_decides_it(body: str, intent: Intent) -> None:
    assert classify(body, KEYWORDS).intent is intent


@pytest.mark.parametrize(
    "body",
    ["don't stop!", "I can't stop thinking about the rally", "meet at the bus stop",
     "Stop by the office", "the end of the march was great", "No paren, vamos a ganar"],
)  # fmt: skip
def test_ordinary_uses_of_opt_out_words_are_not_flagged(body: str) -> None:
    assert classify(body, KEYWORDS).intent is Intent.OTHER


@pytest.mark.parametrize(
    "body",
    [
        "Stop fucking texting me",
        "quit freaking messaging me",
        "dejen de mandar sus pinches mensajes",
    ],
)
def test_words_that_only_add_force_do_not_hide_an_opt_out(body: str) -> None:
    assert classify(body).intent is Intent.OPT_OUT


@pytest.mark.parametrize(
    "body",
    [
        "stop!! that's amazing news",
        "¡Alto! ¿En serio? Qué buena noticia",
        "Arrête! C'est génial 😍",
    ],
)
def test_a_bare_stop_next_to_a_cheer_is_for_a_human(body: str) -> None:
    assert classify(body).intent is Intent.MAYBE_OPT_OUT


def test_a_cheer_does_not_soften_a_stop_that_says_more() -> None:
    assert classify("Amazing work. But stop texting me.").intent is Intent.OPT_OUT
    assert classify("Stop. Seriously, stop.").intent is Intent.OPT_OUT


@pytest.mark.parametrize(
    ("body", "intent"),
    [
        ("Don't text and drive on the way to the rally!", Intent.MAYBE_OPT_OUT),
        ("stop texting and remove my number", Intent.OPT_OUT),
        ("I moved away so you can take me off the list", Intent.OPT_OUT),
    ],
)
def test_a_body_is_read_in_pieces_between_conjunctions(body: str, intent: Intent) -> None:
    assert classify(body).intent is intent
