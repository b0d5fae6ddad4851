"""``/api/v1/huddles/<slug>/conversations``: the inbox. Read what members texted, answer one of
them now, mark their texts done. Responders may do all of it; the logic is
``outreach.sms.conversations``."""

from __future__ import annotations

from typing import Any, NoReturn

import marshmallow as ma
from flask_smorest import Blueprint

from outreach.accounts.access import INBOX
from outreach.models import Huddle
from outreach.providers import UncertainSendError, sms_transport
from outreach.sms import conversations as talk
from web.api.core import (
    Page,
    PageArgs,
    decode_cursor,
    encode_cursor,
    fail,
    not_found,
    reading,
    token,
    writing,
)
from web.api.huddles import huddle_for
from web.api.idempotency import PROVIDER_UNCERTAIN, sends, writes
from web.extensions import services

bp = Blueprint("api_inbox", __name__, url_prefix="/api/v1", description="Inbox")


class Attachment(ma.Schema):
    url = ma.fields.String(required=True)
    content_type = ma.fields.String(required=True)


class ConversationSchema(ma.Schema):
    member_id = ma.fields.Integer(
        required=True, allow_none=True, metadata={"description": "null: a number we do not know"}
    )
    phone = ma.fields.String(required=True, allow_none=True)
    name = ma.fields.String(required=True, allow_none=True)
    last_body = ma.fields.String(
        required=True, allow_none=True, metadata={"description": "Their latest text (null: none)"}
    )
    last_media = ma.fields.List(ma.fields.Nested(Attachment), required=True)
    last_received_at = ma.fields.DateTime(required=True, allow_none=True)
    unhandled = ma.fields.Integer(
        required=True, metadata={"description": "Their texts nobody marked done"}
    )
    flagged = ma.fields.Boolean(
        required=True, metadata={"description": "Holds a possible opt-out nobody marked done"}
    )


class ConversationPage(Page):
    data = ma.fields.List(ma.fields.Nested(ConversationSchema), required=True)


class ConversationArgs(PageArgs):
    open = ma.fields.Boolean(
        load_default=False, metadata={"description": "Only those with texts not marked done"}
    )


class ConversationMessage(ma.Schema):
    id = ma.fields.Integer(required=True, metadata={"description": "Unique with direction, kind"})
    direction = ma.fields.String(required=True, validate=ma.validate.OneOf([talk.IN, talk.OUT]))
    kind = ma.fields.String(
        required=True,
        metadata={"description": "text (theirs), auto (the webhook's answer), reply (ours)"},
    )
    body = ma.fields.String(required=True)
    media = ma.fields.List(ma.fields.Nested(Attachment), required=True)
    at = ma.fields.DateTime(required=True)
    intent = ma.fields.String(
        required=True, allow_none=True, metadata={"description": "Their texts: what we made of it"}
    )
    flagged = ma.fields.Boolean(required=True)
    handled = ma.fields.Boolean(
        required=True, allow_none=True, metadata={"description": "Their texts: marked done"}
    )


class ConversationMessages(ma.Schema):
    data = ma.fields.List(ma.fields.Nested(ConversationMessage), required=True)
    truncated = ma.fields.Boolean(
        required=True, metadata={"description": "Older messages than these were left out"}
    )


class ConversationMessagesArgs(ma.Schema):
    limit = ma.fields.Integer(load_default=200, validate=ma.validate.Range(min=1, max=500))


class Reply(ma.Schema):
    body = ma.fields.String(
        required=True, validate=ma.validate.Length(min=1, max=talk.MAX_REPLY_CHARS)
    )


@bp.get("/huddles/<slug>/conversations")
@token(INBOX)
@bp.arguments(ConversationArgs, location="query")
@bp.response(200, ConversationPage)
def list_conversations(args: dict[str, Any], slug: str) -> dict[str, Any]:
    """Conversations with a possible opt-out nobody handled first, then the newest (by latest
    text). The cursor is a keyset on (flagged, latest text id): paging is stable, and one that
    gets a new text meanwhile moves to the first page instead of showing twice."""
    with reading() as session:
        huddle = huddle_for(session, slug, INBOX)
        found = talk.list_conversations(
            session,
            huddle.id,
            after=decode_cursor(args["cursor"]),
            limit=args["limit"] + 1,
            open_only=args["open"],
        )
    more = len(found) > args["limit"]
    found = found[: args["limit"]]
    return {"data": found, "next_cursor": encode_cursor(found[-1].sort_key) if more else None}


@bp.get("/huddles/<slug>/conversations/<int:member_id>")
@token(INBOX)
@bp.response(200, ConversationSchema)
def get_conversation(slug: str, member_id: int) -> talk.Conversation:
    """One conversation; empty (no text yet) for a member the huddle holds who never texted."""
    with reading() as session:
        found = talk.get_conversation(session, huddle_for(session, slug, INBOX).id, member_id)
    if found is None:
        not_found("conversation")
    return found


@bp.get("/huddles/<slug>/conversations/<int:member_id>/messages")
@token(INBOX)
@bp.arguments(ConversationMessagesArgs, location="query")
@bp.response(200, ConversationMessages)
def list_messages(args: dict[str, Any], slug: str, member_id: int) -> dict[str, Any]:
    """What the member texted the huddle and what we answered, oldest first (the latest
    ``limit``), pictures included."""
    with reading() as session:
        huddle = huddle_for(session, slug, INBOX)
        if not talk.has_conversation(session, huddle.id, member_id):
            not_found("conversation")
        found, truncated = talk.messages(session, huddle.id, member_id, limit=args["limit"])
    return {"data": found, "truncated": truncated}


@bp.post("/huddles/<slug>/conversations/<int:member_id>/reply")
@token(INBOX)
@sends
@bp.arguments(Reply)
@bp.response(201, ConversationMessage)
def reply(body: dict[str, Any], slug: str, member_id: int) -> talk.Message:
    """Text the member now from the huddle's number. Refused (409 ``opted_out``) if they opted
    out here or the number is suppressed, checked right before the provider call; a provider
    refusal is a 502 and records nothing. Send an ``Idempotency-Key``: a retry (the answer
    lost) gets the first answer, and a duplicate sent meanwhile gets a 409, texting nobody."""
    with reading() as session:
        huddle = huddle_for(session, slug, INBOX)
        try:
            message = talk.prepare_reply(session, huddle, member_id, body["body"])
        except talk.ReplyRefused as exc:
            fail(422 if exc.code == "invalid" else 409, exc.code, exc.message)
    if message is None:
        not_found("conversation")
    transport = sms_transport(services().settings, sessions=services().sessions)
    try:
        result = talk.send(transport, message)
    except talk.ReplyFailed as exc:
        _refused_by_provider(huddle.id, member_id, exc)
    finally:
        transport.close()
    return talk.record_reply(writing(), transport.name, huddle, member_id, message, result)


def _refused_by_provider(huddle_id: int, member_id: int, exc: talk.ReplyFailed) -> NoReturn:
    """Apply what the refusal means for the number (21610: they stopped at the carrier) and
    answer 502."""
    with services().sessions.begin() as session:
        huddle = session.get_one(Huddle, huddle_id)
        talk.record_refusal(session, services().settings, huddle, member_id, exc)
    if isinstance(exc.error, UncertainSendError):
        fail(
            502,
            PROVIDER_UNCERTAIN,
            "The provider's answer was lost: the text may have gone out. Check before resending.",
            provider_code=exc.error.code,
        )
    fail(
        502,
        "provider_error",
        f"The provider did not send the text: {exc.error.message}",
        provider_code=exc.error.code,
    )


@bp.post("/huddles/<slug>/conversations/<int:member_id>/done")
@token(INBOX)
@writes
@bp.response(200, ConversationSchema)
def mark_done(slug: str, member_id: int) -> talk.Conversation:
    """Mark the member's texts in this huddle handled (a possible opt-out looked at, a question
    answered): the conversation is no longer flagged nor counted as open."""
    session = writing()
    huddle = huddle_for(session, slug, INBOX)
    talk.mark_handled(session, huddle.id, member_id)
    found = talk.get_conversation(session, huddle.id, member_id)
    if found is None:
        not_found("conversation")
    return found
