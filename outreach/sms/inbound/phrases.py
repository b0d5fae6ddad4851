"""The classifier's phrase families, from the per-language data files, and the limits on reading.

The words themselves live in :mod:`outreach.sms.inbound.vocabulary` (``en.toml``, ``es.toml``,
``fr.toml``), each list with its source; :mod:`outreach.sms.inbound.classify` compiles these once
at import.
"""

from __future__ import annotations

from typing import Final

from outreach.sms.inbound.vocabulary import load

#: Only this many characters of a body are classified. Twilio's own body limit is 1,600; an
#: opt-out command is a few words, and anything longer is a reply for the inbox.
MAX_CLASSIFIED_CHARS: Final = 1600

#: A command (opt-out, help, yes, keyword ...) is never longer than this many words.
MAX_COMMAND_WORDS: Final = 40

#: Huddle keywords of at least this many letters tolerate one typo.
FUZZY_KEYWORD_MIN_LENGTH: Final = 5

VOCABULARY: Final = load()

OPT_OUT_SLOTS: Final = VOCABULARY.slots
OPT_OUT_PATTERNS: Final = VOCABULARY.family("opt_out")
OPT_OUT_ALL_PATTERNS: Final = VOCABULARY.family("opt_out_all")
OPT_OUT_LEAD_INS: Final = VOCABULARY.family("opt_out_lead_ins")
OPT_OUT_COMPANIONS: Final = VOCABULARY.family("opt_out_companions")
OPT_OUT_IN_CONTEXT: Final = VOCABULARY.family("opt_out_in_context")
OPT_OUT_CONTEXT: Final = VOCABULARY.family("opt_out_context")
OPEN_NOUNS: Final = VOCABULARY.family("open_nouns")
COORDINABLE: Final = VOCABULARY.family("coordinable")
CONJUNCTIONS: Final = VOCABULARY.family("conjunctions")
QUESTION_LEAD_INS: Final = VOCABULARY.family("question_lead_ins")
SCOPE_VERBS: Final = VOCABULARY.family("scope_verbs")
SCOPE_GLUE: Final = VOCABULARY.family("scope_glue")
INTENSIFIERS: Final = VOCABULARY.family("intensifiers")
CHEERS: Final = VOCABULARY.family("cheers")
NARROWING: Final = VOCABULARY.family("narrowing")
OPT_OUT_WORDS: Final = VOCABULARY.family("opt_out_words")
MAYBE_OPT_OUT_PHRASES: Final = VOCABULARY.family("maybe_opt_out")
NOT_OPT_OUT_PHRASES: Final = VOCABULARY.family("not_opt_out")
TYPO_CHECKED_OPT_OUT_WORDS: Final = VOCABULARY.family("typo_checked")
FILLER_WORDS: Final = VOCABULARY.family("fillers")
HELP_PHRASES: Final = VOCABULARY.family("help")
CONFIRM_PHRASES: Final = VOCABULARY.family("confirm")
OPT_IN_PHRASES: Final = VOCABULARY.family("opt_in")
DECLINE_PHRASES: Final = VOCABULARY.family("decline")
SKIP_PHRASES: Final = VOCABULARY.family("skip")
JOIN_PREFIXES: Final = VOCABULARY.family("join_prefixes")
