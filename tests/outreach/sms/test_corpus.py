"""The public-source corpus: texts that revoke consent, and replies that only sound like it.

Consent to texts may be revoked "by any reasonable means" (47 CFR 64.1200(a)(10), FCC 24-24), so
the classifier is held to two files of clear cases, one text per line with where it comes from:

* ``corpus/revocations.tsv``: carrier and provider keyword lists (English, Spanish, French),
  keywords dressed up or repeated, "take me off your list", and polite revocations with no
  keyword at all, from provider docs, peer tools (Spoke) and TCPA case records. Each must be
  an opt-out (OPT_OUT or OPT_OUT_ALL).
* ``corpus/replies.tsv``: ordinary replies to an organizing group that use stop-like words in
  another sense ("bus stop", "don't stop", "is the meeting cancelled?"). None may be a certain
  opt-out; MAYBE_OPT_OUT is allowed, since it only asks a human to look.

``corpus/blind/`` holds the same two files written by reviewers who had not seen the
classifier (not public texts: a check on how far the rules reach beyond the texts they were
written from). Its source column says which set and what kind of text.

Format: UTF-8, a ``text<TAB>source`` header, then one row per line; blank lines are skipped.
Texts are read as sent to a number whose huddles' keywords are KEYWORDS ("unsubscribe me from
Logan").
"""

from __future__ import annotations

from pathlib import Path
from typing import NamedTuple

import pytest

from outreach.sms.inbound.classify import Intent, classify

CORPUS = Path(__file__).parent / "corpus"
REVOCATIONS_FILE = CORPUS / "revocations.tsv"
REPLIES_FILE = CORPUS / "replies.tsv"
BLIND_REVOCATIONS_FILE = CORPUS / "blind" / "revocations.tsv"
BLIND_REPLIES_FILE = CORPUS / "blind" / "replies.tsv"
FILES = (REVOCATIONS_FILE, REPLIES_FILE, BLIND_REVOCATIONS_FILE, BLIND_REPLIES_FILE)
HEADER = "text\tsource"
KEYWORDS = ("LOGAN", "PROVO", "BOSTON")

OPT_OUT_INTENTS = frozenset({Intent.OPT_OUT, Intent.OPT_OUT_ALL})


class Row(NamedTuple):
    """One corpus line: its 1-based line number, its columns, and how many columns it had."""

    file: str
    line: int
    text: str
    source: str
    columns: int


def load(path: Path) -> list[Row]:
    """The rows of a corpus file, skipping the header line and blank lines."""
    rows = []
    for number, raw in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        if number == 1 or not raw.strip():
            continue
        fields = raw.split("\t")
        source = fields[1] if len(fields) > 1 else ""
        rows.append(Row(str(path.relative_to(CORPUS)), number, fields[0], source, len(fields)))
    return rows


REVOCATIONS = load(REVOCATIONS_FILE)
REPLIES = load(REPLIES_FILE)
BLIND_REVOCATIONS = load(BLIND_REVOCATIONS_FILE)
BLIND_REPLIES = load(BLIND_REPLIES_FILE)


def ids(rows: list[Row]) -> list[str]:
    return [f"{row.file}:{row.line}" for row in rows]


def intent_of(row: Row) -> Intent:
    return classify(row.text, KEYWORDS).intent


@pytest.mark.parametrize(
    "row", REVOCATIONS + BLIND_REVOCATIONS, ids=ids(REVOCATIONS + BLIND_REVOCATIONS)
)
def test_revocation_is_an_opt_out(row: Row) -> None:
    intent = intent_of(row)
    assert intent in OPT_OUT_INTENTS, f"{row.file}:{row.line}: {row.text!r} -> {intent}"


@pytest.mark.parametrize("row", REPLIES + BLIND_REPLIES, ids=ids(REPLIES + BLIND_REPLIES))
def test_reply_is_not_an_opt_out(row: Row) -> None:
    intent = intent_of(row)
    assert intent not in OPT_OUT_INTENTS, f"{row.file}:{row.line}: {row.text!r} -> {intent}"


@pytest.mark.parametrize("path", FILES, ids=lambda path: str(path.relative_to(CORPUS)))
def test_file_starts_with_the_header(path: Path) -> None:
    assert path.read_text(encoding="utf-8").splitlines()[0] == HEADER


def test_every_row_has_a_text_and_a_source() -> None:
    for row in REVOCATIONS + REPLIES + BLIND_REVOCATIONS + BLIND_REPLIES:
        where = f"{row.file}:{row.line}"
        assert row.columns == 2, f"{where}: expected text<TAB>source, got {row.columns} columns"
        assert row.text.strip(), f"{where}: empty text"
        assert row.text == row.text.strip(), f"{where}: text has surrounding whitespace"
        assert row.source.strip(), f"{where}: {row.text!r} has no source"


def test_no_text_appears_twice_in_or_across_the_files() -> None:
    first_seen: dict[str, str] = {}
    duplicates = []
    for row in REVOCATIONS + REPLIES + BLIND_REVOCATIONS + BLIND_REPLIES:
        key = row.text.casefold()
        where = f"{row.file}:{row.line}"
        if key in first_seen:
            duplicates.append(f"{where} repeats {first_seen[key]}: {row.text!r}")
        else:
            first_seen[key] = where
    assert not duplicates, "\n".join(duplicates)


def test_replies_outnumber_revocations() -> None:
    assert REVOCATIONS
    assert len(REPLIES) >= len(REVOCATIONS)


def test_the_readme_reports_the_current_counts() -> None:
    readme = (Path(__file__).parents[3] / "README.md").read_text(encoding="utf-8")
    text = " ".join(readme.split())
    for revocations, replies in ((REVOCATIONS, REPLIES), (BLIND_REVOCATIONS, BLIND_REPLIES)):
        honoured = sum(intent_of(row) in OPT_OUT_INTENTS for row in revocations)
        left_alone = sum(intent_of(row) not in OPT_OUT_INTENTS for row in replies)
        assert (
            f"revocations honoured: {honoured} / {len(revocations)}; "
            f"ordinary replies left alone: {left_alone} / {len(replies)}"
        ) in text
