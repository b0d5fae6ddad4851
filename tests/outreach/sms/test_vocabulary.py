"""The vocabulary files: every list cites a source, and a mistake in one fails at load."""

from __future__ import annotations

import tomllib
from importlib import resources
from typing import Any

import pytest

from outreach.sms.inbound import vocabulary
from outreach.sms.inbound.vocabulary import FAMILIES, LANGUAGES, VocabularyError, load, parse


def _file(language: str) -> dict[str, Any]:
    text = resources.files(vocabulary).joinpath(f"{language}.toml").read_text(encoding="utf-8")
    return tomllib.loads(text)


def test_every_language_loads_and_every_list_cites_a_source() -> None:
    loaded = load()
    assert {entry.language for entry in loaded.entries} == set(LANGUAGES)
    for entry in loaded.entries:
        assert entry.source.strip(), entry
        assert entry.phrases, entry
    # Each language has its own opt-out keywords, not only English ones.
    for language in LANGUAGES:
        assert any(e.family == "opt_out" and e.language == language for e in loaded.entries)


def test_a_family_merges_languages_without_repeats() -> None:
    loaded = load()
    opt_out = loaded.family("opt_out")
    assert len(opt_out) == len(set(opt_out))
    assert {"stop", "cancelar", "arret"} <= set(opt_out)
    with pytest.raises(KeyError):
        loaded.family("opt_outs")


def test_slots_are_qualified_by_language() -> None:
    loaded = load()
    assert "en.stop" in loaded.slots
    assert "es.mensajes" in loaded.slots
    assert any("{es.deja}" in pattern for pattern in loaded.family("opt_out"))


def _broken(**changes: Any) -> dict[str, Any]:
    data = _file("en")
    data.update(changes)
    return data


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (_broken(stopp=[{"source": "fcc", "phrases": ["stop"]}]), "unknown family"),
        (_broken(conjunctions=[{"source": "fcc", "phrases": ["or else"]}]), "single words only"),
        (_broken(opt_out=[{"source": "nowhere", "phrases": ["stop"]}]), "not in [sources]"),
        (_broken(opt_out=[{"source": "fcc", "phrases": ["{nope} me"]}]), "unknown slot {nope}"),
        (_broken(opt_out=[{"source": "fcc", "phrases": []}]), "non-empty strings"),
        (_broken(opt_out=[{"source": "fcc", "phrases": ["stop", ""]}]), "non-empty strings"),
        (_broken(help=[{"source": "usage", "phrases": ["{stop}"]}]), "may use slots"),
        (
            _broken(slots={"two words": {"source": "usage", "words": ["a"]}}),
            "one word without dots",
        ),
        (_broken(slots={"me": {"source": "usage", "words": ["{me}"]}}), "cannot use slots"),
    ],
)
def test_a_broken_file_fails_loudly(data: dict[str, Any], message: str) -> None:
    with pytest.raises(VocabularyError, match=message.replace("[", r"\[").replace("{", r"\{")):
        parse("en", data)


def test_every_family_is_known() -> None:
    for language in LANGUAGES:
        families = set(_file(language)) - {"language", "sources", "slots"}
        assert families <= set(FAMILIES), language
