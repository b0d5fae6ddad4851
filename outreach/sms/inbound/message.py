"""An inbound text as Twilio posted it, and what we answer."""

from __future__ import annotations

from dataclasses import dataclass, replace

MAX_STORED_BODY = 5000  # Twilio caps at 1,600; anything longer is stored truncated, not refused
MAX_MEDIA = 10  # Twilio's most attachments on one MMS
MAX_MEDIA_URL = 1024
MAX_MEDIA_TYPE = 128


@dataclass(frozen=True)
class Media:
    """An MMS attachment: where Twilio keeps it, and its MIME type ("" when none was given)."""

    url: str
    content_type: str


@dataclass(frozen=True)
class InboundSms:
    message_sid: str
    from_raw: str
    to: str
    body: str
    messaging_service_sid: str | None = None
    opt_out_type: str | None = None  # Twilio Advanced Opt-Out: STOP / START / HELP
    media: tuple[Media, ...] = ()  # MMS attachments, in Twilio's order

    @property
    def media_only(self) -> bool:
        """A picture (or other attachment) with no words: an ordinary reply, never a keyword."""
        return bool(self.media) and not self.body.strip()

    def storable(self) -> InboundSms:
        """The text with every field cut to what its column takes, in text any database stores."""
        return replace(
            self,
            message_sid=storable(self.message_sid, 64),
            from_raw=storable(self.from_raw, 64),
            to=storable(self.to, 64),
            body=storable(self.body, MAX_STORED_BODY),
            media=tuple(
                Media(storable(m.url, MAX_MEDIA_URL), storable(m.content_type, MAX_MEDIA_TYPE))
                for m in self.media[:MAX_MEDIA]
            ),
        )


@dataclass(frozen=True)
class InboundResult:
    intent: str
    reply: str | None
    duplicate: bool = False


def storable(text: str, limit: int) -> str:
    """Text any database stores: no NUL (PostgreSQL refuses it), no lone surrogates (not UTF-8)."""
    text = text[:limit].replace("\x00", "\ufffd")
    return text.encode("utf-8", "replace").decode("utf-8")
