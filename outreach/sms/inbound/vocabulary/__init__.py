"""The classifier's words, one data file per language, each list with where it comes from.

``en.toml``, ``es.toml`` and ``fr.toml`` hold every keyword, phrase pattern and slot the
classifier reads, so that a compliance reviewer can check the vocabulary without reading code.
The files are loaded once at import; a misspelt family, slot or source fails loudly here rather
than silently matching nothing.
"""

from __future__ import annotations

import re
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass
from importlib import resources
from typing import Any, Final

LANGUAGES: Final = ("en", "es", "fr")

#: Every family a vocabulary file may contain (see en.toml for what each means).
FAMILIES: Final = (
    "opt_out",
    "opt_out_all",
    "opt_out_lead_ins",
    "opt_out_companions",
    "opt_out_in_context",
    "opt_out_context",
    "open_nouns",
    "coordinable",
    "conjunctions",
    "question_lead_ins",
    "scope_verbs",
    "scope_glue",
    "intensifiers",
    "cheers",
    "narrowing",
    "opt_out_words",
    "maybe_opt_out",
    "not_opt_out",
    "typo_checked",
    "fillers",
    "help",
    "confirm",
    "opt_in",
    "decline",
    "skip",
    "join_prefixes",
)

#: The families whose entries are patterns with {slots} (see en.toml).
PATTERN_FAMILIES: Final = (
    "opt_out",
    "opt_out_lead_ins",
    "opt_out_companions",
    "opt_out_in_context",
    "opt_out_context",
)

#: The families read as sets of single words (a phrase there would become its words).
WORD_FAMILIES: Final = (
    "open_nouns",
    "coordinable",
    "conjunctions",
    "scope_glue",
    "intensifiers",
    "narrowing",
)

_SLOT: Final = re.compile(r"\{([^{}?]+)(\??)\}")


@dataclass(frozen=True)
class Entry:
    """One list of a family: its phrases, the language, and where they come from."""

    family: str
    language: str
    source: str
    phrases: tuple[str, ...]


@dataclass(frozen=True)
class Vocabulary:
    """All languages merged: slot names are qualified by language ("es.mensajes")."""

    entries: tuple[Entry, ...]
    slots: Mapping[str, tuple[str, ...]]

    def family(self, name: str) -> tuple[str, ...]:
        """Every phrase of a family, all languages, first occurrence kept, in file order."""
        if name not in FAMILIES:
            raise KeyError(name)
        phrases = (
            phrase for entry in self.entries if entry.family == name for phrase in entry.phrases
        )
        return tuple(dict.fromkeys(phrases))


class VocabularyError(ValueError):
    """A vocabulary file that does not say what the classifier needs."""


def _qualify(pattern: str, language: str, slots: Mapping[str, Any], where: str) -> str:
    def qualified(match: re.Match[str]) -> str:
        name, optional = match.groups()
        if name not in slots:
            raise VocabularyError(f"{where}: unknown slot {{{name}}} in {pattern!r}")
        return f"{{{language}.{name}{optional}}}"

    return _SLOT.sub(qualified, pattern)


def _strings(value: Any, where: str) -> tuple[str, ...]:
    if not value or not isinstance(value, list):
        raise VocabularyError(f"{where}: expected a list of non-empty strings")
    if not all(isinstance(item, str) and item.strip() for item in value):
        raise VocabularyError(f"{where}: expected a list of non-empty strings")
    return tuple(value)


def parse(language: str, data: Mapping[str, Any]) -> Vocabulary:
    """Check one language's parsed TOML and qualify its slots."""
    sources = data.get("sources", {})
    raw_slots = data.get("slots", {})
    slots: dict[str, tuple[str, ...]] = {}
    entries: list[Entry] = []

    def cited(source: Any, where: str) -> str:
        if source not in sources:
            raise VocabularyError(f"{where}: source {source!r} is not in [sources]")
        return str(sources[source])

    for name, slot in raw_slots.items():
        where = f"{language}.toml [slots.{name}]"
        if not name or name.split() != [name] or "." in name:
            raise VocabularyError(f"{where}: a slot's name is one word without dots")
        cited(slot.get("source"), where)
        words = _strings(slot.get("words"), where)
        if any(_SLOT.search(word) for word in words):
            raise VocabularyError(f"{where}: a slot's words cannot use slots")
        slots[f"{language}.{name}"] = words
    for family, lists in data.items():
        if family in ("language", "sources", "slots"):
            continue
        if family not in FAMILIES:
            raise VocabularyError(f"{language}.toml: unknown family [[{family}]]")
        for number, item in enumerate(lists, start=1):
            where = f"{language}.toml [[{family}]] #{number}"
            phrases = _strings(item.get("phrases"), where)
            if family in WORD_FAMILIES and any(len(phrase.split()) != 1 for phrase in phrases):
                raise VocabularyError(f"{where}: [[{family}]] holds single words only")
            if family not in PATTERN_FAMILIES:
                if any(_SLOT.search(phrase) for phrase in phrases):
                    raise VocabularyError(f"{where}: only {PATTERN_FAMILIES} may use slots")
            else:
                phrases = tuple(_qualify(p, language, raw_slots, where) for p in phrases)
            entries.append(Entry(family, language, cited(item.get("source"), where), phrases))
    return Vocabulary(tuple(entries), slots)


def load(languages: tuple[str, ...] = LANGUAGES) -> Vocabulary:
    """Read and merge the vocabulary files of ``languages``."""
    entries: list[Entry] = []
    slots: dict[str, tuple[str, ...]] = {}
    folder = resources.files(__package__)
    for language in languages:
        data = tomllib.loads(folder.joinpath(f"{language}.toml").read_text(encoding="utf-8"))
        if data.get("language") != language:
            raise VocabularyError(f"{language}.toml: language = {data.get('language')!r}")
        vocabulary = parse(language, data)
        entries.extend(vocabulary.entries)
        slots.update(vocabulary.slots)
    return Vocabulary(tuple(entries), slots)
