"""The classifier's phrase data: every word and phrase list, and the limits on what is read.

Kept apart from the matching code (:mod:`outreach.sms.inbound.classify`, which compiles these
once at import) so that the vocabulary can be read and reviewed on its own.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Final

# --------------------------------------------------------------------------------------------
# Phrase data. Write words the way people type them; accents, case and apostrophes are folded
# away when classify.py loads, exactly as they are for incoming texts.
# --------------------------------------------------------------------------------------------

#: Only this many characters of a body are classified. Twilio's own body limit is 1,600; an
#: opt-out command is a few words, and anything longer is a reply for the inbox.
MAX_CLASSIFIED_CHARS: Final = 1600

#: A command (opt-out, help, yes, keyword ...) is never longer than this many words.
MAX_COMMAND_WORDS: Final = 24

#: Words that do not change the meaning of a short command, wherever they stand in it:
#: "please stop", "stop now thanks", "ok stop", "don't text me ever again", "yes please".
FILLER_WORDS: Final = (
    "please", "pls", "plz", "plez", "kindly", "just", "ok", "okay", "k",
    "now", "right now", "immediately", "asap", "already", "seriously",
    "thanks", "thank you", "thank u", "thankyou", "thx", "ty",
    "anymore", "any more", "again", "ever", "ever again", "forever", "for good",
    "hi", "hello", "hey", "sorry",
    "por favor", "porfa", "porfavor", "gracias",
)  # fmt: skip

#: Ways an opt-out may begin: "I want to unsubscribe", "can you stop texting me", "quiero darme
#: de baja". Only at the start of the command.
OPT_OUT_LEAD_INS: Final = (
    "i", "i said", "i said to", "i want to", "i wanna", "i would like to", "i'd like to",
    "i wish to", "i need to", "i want you to", "i need you to", "i asked you to",
    "can you", "could you", "can u", "would you", "will you",
    "quiero", "me quiero", "quiero que",
)  # fmt: skip

#: The building blocks of OPT_OUT_PATTERNS.
OPT_OUT_SLOTS: Final[Mapping[str, tuple[str, ...]]] = {
    # verbs that end something
    "stop": ("stop", "quit", "cease", "end", "halt"),
    # ways of contacting someone, as "-ing" words: "stop texting me", "stop sending me texts"
    "texting": (
        "texting", "txting", "messaging", "msging", "emailing", "contacting", "calling",
        "spamming", "bothering", "bugging", "sending",
    ),
    # the same, plain: "don't text me", "don't send me texts"
    "text": (
        "text", "txt", "message", "msg", "email", "contact", "call", "spam", "bother", "bug",
        "send",
    ),
    # who receives them
    "me": ("me", "us", "my number", "this number", "my phone", "my cell"),
    # which ones
    "the": (
        "the", "these", "those", "this", "your", "ur", "all", "all the", "all these", "all your",
        "any", "any more", "any of these", "all of these", "all of the", "all of your",
    ),
    # what is sent
    "texts": (
        "texts", "text", "text messages", "messages", "message", "msgs", "txts", "sms",
        "emails", "notifications", "alerts", "spam", "updates", "reminders",
    ),
    # what one is removed from
    "list": (
        "list", "mailing list", "text list", "texting list", "contact list", "sms list", "group",
        "program", "texts", "messages", "system", "database",
    ),
    "from": ("from", "off", "off of", "out of", "of"),
    "don't": ("don't", "do not", "never"),
    # Spanish
    "envíen": ("envíen", "envien", "manden", "escriban", "envíes", "mandes", "escribas", "textees"),
    "mensajes": ("mensajes", "mensaje", "textos", "sms", "msjs", "msj"),
    "deja": ("para", "paren", "pare", "deja", "dejen", "deje"),
    "enviarme": ("enviarme", "mandarme", "escribirme", "textearme", "enviar", "mandar", "escribir"),
}  # fmt: skip

#: Certain revocations of consent on this sender.
OPT_OUT_PATTERNS: Final = (
    # The revocation words per se (Twilio's defaults and the FCC's list), plus "remove" and
    # "unsub", which nobody sends alone for any other reason.
    "stop", "unsubscribe", "unsub", "cancel", "end", "quit", "revoke", "optout", "opt out",
    "remove",
    # "stop texting me", "quit messaging us", "stop sending me texts", "stop the texts", "stop it"
    "{stop} {texting} {me?}",
    "{stop} {texting} {me?} {the?} {texts}",
    "{stop} {the?} {texts}",
    "{stop} it", "{stop} this", "{stop} that",
    # "unsubscribe me", "unsubscribe me from this list", "opt me out", "opt out of these texts"
    "unsubscribe {me}",
    "unsubscribe {me?} {from} {the?} {list}",
    "opt {me} out",
    "opt {me?} out {from} {the?} {list}",
    "optout {from} {the?} {list}",
    # "remove me", "remove me from your list", "take me off this list", "I want to be removed"
    "remove {me}", "delete {me}",
    "remove {me} {from} {the?} {list}", "delete {me} {from} {the?} {list}",
    "take {me} off", "take {me} {from} {the?} {list}",
    "be removed", "be removed {from} {the?} {list}", "be taken off {the?} {list}",
    "be unsubscribed",
    # "cancel the texts", "cancel my subscription", "revoke my consent"
    "cancel {the?} {texts}", "cancel {me}", "cancel my subscription", "cancel subscription",
    "revoke consent", "revoke my consent", "withdraw consent", "withdraw my consent",
    # "don't text me", "do not text me", "don't send me any more texts", "I don't want these texts"
    "{don't} {text} {me}",
    "{don't} {text} {me?} {the?} {texts}",
    "{don't} want {the?} {texts}",
    # "no more texts", "no more texting"
    "no more {texts}", "no more {texting}", "no texts", "no text messages", "no sms", "no spam",
    "leave {me} alone",
    # Spanish: "para", "alto", "cancelar", "baja", "darme de baja", "no me envíen más mensajes"
    "para", "alto", "cancelar", "baja",
    "darme de baja", "dame de baja", "denme de baja", "dar de baja", "me doy de baja",
    "no me {envíen} {mensajes?}", "no me {envíen} más {mensajes?}",
    "no más {mensajes}", "ya no más {mensajes}",
    "no quiero {mensajes}", "no quiero más {mensajes}", "ya no quiero {mensajes}",
    "{deja} de {enviarme} {mensajes?}",
    "cancelar mi suscripción", "cancelar suscripción",
)  # fmt: skip

#: Revocations that cover every sender (Twilio's STOPALL).
OPT_OUT_ALL_PATTERNS: Final = ("stopall", "stop all")

#: Words that suggest an opt-out wherever they appear ("did they cancel the meeting?"): a body
#: containing one, as a whole word, that is not a certain opt-out goes to a human.
OPT_OUT_WORDS: Final = (
    "stop", "stopall", "unsubscribe", "unsubscribed", "unsub", "cancel", "end", "quit", "revoke",
    "optout", "opt out", "remove", "para", "alto", "baja", "cancelar",
)  # fmt: skip

#: Phrases without an opt-out word that still deserve a human look.
MAYBE_OPT_OUT_PHRASES: Final = (
    "wrong number", "not interested", "take me off", "leave me alone",
    "don't text", "do not text", "don't message", "do not message", "don't contact",
    "do not contact", "no more texts", "no more messages", "de baja",
)  # fmt: skip

#: A body that is a single word one typo away from one of these ("unsubcribe", "stpo") is
#: flagged for a human, and is never read as a typo of a huddle keyword.
TYPO_CHECKED_OPT_OUT_WORDS: Final = (
    "stop", "stopall", "unsubscribe", "cancel", "cancelar", "revoke", "optout",
)  # fmt: skip

HELP_PHRASES: Final = (
    "help", "help me", "info", "information", "more info", "ayuda", "información",
)  # fmt: skip

#: The caller decides by context whether YES confirms a pending join or is a START.
CONFIRM_PHRASES: Final = ("yes", "y", "yep", "yup", "yeah", "yea", "yes i do", "sí", "si")

#: Kept deliberately short: a re-subscription must be unmistakable.
OPT_IN_PHRASES: Final = ("start", "unstop")
# Answers with no command of their own, still never a join keyword: "NO" to "Reply YES".
DECLINE_PHRASES: Final = ("no", "nope")

SKIP_PHRASES: Final = ("skip", "skip it", "skip this", "skip that", "skip question")

#: Words that may precede a huddle keyword: "JOIN LOGAN", "sign me up for boston".
JOIN_PREFIXES: Final = (
    "join", "join in", "sign up", "sign up for", "sign me up", "sign me up for",
    "unirme", "unirme a", "quiero unirme a",
)  # fmt: skip

#: Huddle keywords of at least this many letters tolerate one typo.
FUZZY_KEYWORD_MIN_LENGTH: Final = 5
