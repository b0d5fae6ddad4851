from __future__ import annotations

import math

import pytest
from hypothesis import given
from hypothesis import strategies as st

from outreach.messages.encoding import (
    GSM7_BASIC,
    GSM7_EXTENSION,
    SegmentInfo,
    analyze,
    gsm_suggestion,
)

GSM_ALPHABET = sorted(GSM7_BASIC | GSM7_EXTENSION)
EMOJI = "\U0001f600"  # 😀, outside the BMP: a surrogate pair in UTF-16

gsm_text = st.text(alphabet=st.sampled_from(GSM_ALPHABET), max_size=700)
gsm_char = st.sampled_from(GSM_ALPHABET)
# any code point, surrogates (category Cs) included
any_char = st.characters(exclude_categories=())
any_text = st.text(alphabet=any_char, max_size=400)


# --- tables -------------------------------------------------------------------------------------


def test_gsm_tables_have_the_03_38_sizes() -> None:
    assert len(GSM7_BASIC) == 127  # 128 positions minus ESC
    assert frozenset("\f^{}\\[~]|€") == GSM7_EXTENSION
    assert not GSM7_BASIC & GSM7_EXTENSION
    assert "\x1b" not in GSM7_BASIC


@pytest.mark.parametrize("char", list("@£$¥èéùìòÇ\nØø\rÅåΔ_ΦΓΛΩΠΨΣΘΞÆæßÉ¤¡ÄÖÑÜ§¿äöñüà"))
def test_special_basic_chars_are_gsm(char: str) -> None:
    info = analyze(char)
    assert info.encoding == "GSM-7"
    assert info.units == 1


@pytest.mark.parametrize(
    "char", ["ç", "`", "á", "ó", "\t", "’", "–", "…", "\u00a0", "\u2126", "\x1b"]
)
def test_chars_outside_gsm_force_ucs2(char: str) -> None:
    # U+2126 OHM SIGN looks like the GSM Greek capital omega U+03A9 but is not it
    info = analyze(char)
    assert info.encoding == "UCS-2"
    assert info.non_gsm_chars == (char,)


# --- known examples -----------------------------------------------------------------------------


def test_empty_body_is_one_gsm_segment() -> None:
    assert analyze("") == SegmentInfo("GSM-7", 0, 0, 1, 160, ())


@pytest.mark.parametrize(
    ("length", "segments", "per_segment"),
    [(1, 1, 160), (160, 1, 160), (161, 2, 153), (306, 2, 153), (307, 3, 153), (459, 3, 153)],
)
def test_gsm_segment_boundaries(length: int, segments: int, per_segment: int) -> None:
    info = analyze("a" * length)
    assert info.encoding == "GSM-7"
    assert (info.characters, info.units) == (length, length)
    assert (info.segments, info.per_segment) == (segments, per_segment)


@pytest.mark.parametrize(
    ("length", "segments", "per_segment"),
    [(1, 1, 70), (70, 1, 70), (71, 2, 67), (134, 2, 67), (135, 3, 67)],
)
def test_ucs2_segment_boundaries(length: int, segments: int, per_segment: int) -> None:
    info = analyze("ç" * length)
    assert info.encoding == "UCS-2"
    assert (info.units, info.segments, info.per_segment) == (length, segments, per_segment)


def test_euro_counts_two_septets() -> None:
    info = analyze("€")
    assert (info.encoding, info.characters, info.units, info.segments) == ("GSM-7", 1, 2, 1)
    assert analyze("€" * 80).segments == 1  # 160 septets
    assert analyze("€" * 81).segments == 2  # 162 septets


@pytest.mark.parametrize("char", list("^{}\\[~]|€\f"))
def test_every_extension_char_counts_two(char: str) -> None:
    assert analyze("a" + char).units == 3


def test_escape_pair_is_not_split_across_segments() -> None:
    body = "a" * 152 + "€" + "a" * 152  # 306 septets: division says 2 segments
    info = analyze(body)
    assert info.units == 306
    assert info.segments == 3  # 152 | €+151 | 1


def test_emoji_switches_to_ucs2_and_is_reported() -> None:
    info = analyze(f"See you there {EMOJI}")
    assert info.encoding == "UCS-2"
    assert info.non_gsm_chars == (EMOJI,)
    assert info.characters == 15
    assert info.units == 16  # the emoji is 2 UTF-16 units


def test_surrogate_pair_is_not_split_across_segments() -> None:
    body = "a" * 66 + EMOJI + "a" * 66  # 134 units: division says 2 segments
    info = analyze(body)
    assert info.units == 134
    assert info.segments == 3


def test_lowercase_c_cedilla_forces_ucs2_but_capital_does_not() -> None:
    assert analyze("Ça va").encoding == "GSM-7"
    info = analyze("garçon")
    assert info.encoding == "UCS-2"
    assert info.non_gsm_chars == ("ç",)


def test_non_gsm_chars_distinct_in_order_of_first_appearance() -> None:
    info = analyze(f"‘Hi’ {EMOJI} ‘there’ {EMOJI} ç")
    assert info.non_gsm_chars == ("‘", "’", EMOJI, "ç")


def test_extension_chars_count_one_unit_in_ucs2() -> None:
    info = analyze("€ç")
    assert (info.encoding, info.units) == ("UCS-2", 2)


def test_lone_surrogates_count_one_unit_each() -> None:
    info = analyze("a\ud800b\udfff")
    assert info.encoding == "UCS-2"
    assert (info.characters, info.units) == (4, 4)
    assert info.non_gsm_chars == ("\ud800", "\udfff")


def test_surrogate_code_points_forming_a_pair_are_packed_together() -> None:
    pair = "\ud83d\ude00"  # the 😀 pair, held as two code points
    info = analyze("a" * 66 + pair + "a" * 66)
    assert (info.characters, info.units, info.segments) == (134, 134, 3)


def test_twilio_body_limit_sized_message() -> None:
    info = analyze("a" * 1600)
    assert info.segments == math.ceil(1600 / 153)


# --- gsm_suggestion -----------------------------------------------------------------------------


def test_suggestion_fixes_typographic_culprits() -> None:
    body = "We’re meeting “downtown” 6–8pm\u00a0— bring snacks…"
    fixed = gsm_suggestion(body)
    assert fixed == 'We\'re meeting "downtown" 6-8pm - bring snacks...'
    assert analyze(fixed).encoding == "GSM-7"
    assert analyze(body).segments >= analyze(fixed).segments


def test_suggestion_keeps_letters_and_emoji() -> None:
    body = f"garçon {EMOJI} ’"
    fixed = gsm_suggestion(body)
    assert fixed == f"garçon {EMOJI} '"
    assert analyze(fixed).non_gsm_chars == ("ç", EMOJI)


def test_suggestion_removes_zero_width_characters() -> None:
    assert gsm_suggestion("a\u200bb\ufeffc") == "abc"


def test_suggestion_leaves_gsm_text_alone() -> None:
    body = "Plain text with {braces} and €5 [ok]"
    assert gsm_suggestion(body) == body


# --- properties ---------------------------------------------------------------------------------


@given(any_text)
def test_analyze_never_raises_and_is_consistent(body: str) -> None:
    info = analyze(body)
    assert info.characters == len(body)
    assert info.segments >= 1
    assert info.units >= info.characters or info.encoding == "GSM-7"
    if info.encoding == "GSM-7":
        assert info.non_gsm_chars == ()
        assert info.per_segment in (160, 153)
    else:
        assert info.non_gsm_chars
        assert len(set(info.non_gsm_chars)) == len(info.non_gsm_chars)
        assert all(c not in GSM7_BASIC and c not in GSM7_EXTENSION for c in info.non_gsm_chars)
        assert info.per_segment in (70, 67)
        assert info.units == len(body.encode("utf-16-le", "surrogatepass")) // 2
    if info.segments > 1:
        # packing wastes at most one unit per segment
        assert math.ceil(info.units / info.per_segment) <= info.segments
        assert info.segments <= math.ceil(info.units / (info.per_segment - 1))
    else:
        assert info.units <= info.per_segment


@given(gsm_text, gsm_char)
def test_gsm_segments_monotonic_in_appending(body: str, char: str) -> None:
    before, after = analyze(body), analyze(body + char)
    assert before.encoding == after.encoding == "GSM-7"
    assert after.segments >= before.segments
    assert after.units == before.units + (2 if char in GSM7_EXTENSION else 1)


@given(any_text, any_char)
def test_ucs2_segments_monotonic_in_appending(tail: str, char: str) -> None:
    body = "ç" + tail  # forces UCS-2; appending anything keeps it UCS-2
    before, after = analyze(body), analyze(body + char)
    assert before.encoding == after.encoding == "UCS-2"
    assert after.segments >= before.segments


@given(any_text)
def test_suggestion_is_idempotent_and_only_removes_culprits(body: str) -> None:
    fixed = gsm_suggestion(body)
    assert gsm_suggestion(fixed) == fixed
    assert set(analyze(fixed).non_gsm_chars) <= set(analyze(body).non_gsm_chars)
