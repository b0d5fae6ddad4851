"""The inbox's domain: the dashboard's order and its cursor, replies once per form key, and
assignments only to people who may answer the huddle's inbox."""

from __future__ import annotations

import itertools

import pytest
from argon2 import PasswordHasher, profiles
from sqlalchemy import func, select, update

from outreach.accounts import passwords, users
from outreach.app.clock import utcnow
from outreach.app.services import Services
from outreach.models import Huddle, IdempotencyKey, InboundMessage, Member, Organizer, OutboxMessage
from outreach.models import accounts as a
from outreach.people.huddles import create_huddle
from outreach.providers import SmsTransport, sms_transport
from outreach.sms import conversations as talk
from outreach.sms import inbox
from outreach.sms.inbound import InboundSms, handle_inbound

LOGAN_SENDER = "+16175550100"
PASSWORD = "correct horse battery"
_sids = itertools.count(1)


@pytest.fixture(autouse=True)
def cheap_passwords(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(passwords, "_hasher", PasswordHasher.from_parameters(profiles.CHEAPEST))


@pytest.fixture
def logan(services: Services) -> int:
    with services.sessions.begin() as session:
        huddle = create_huddle(
            session, slug="logan", name="Logan", keywords=["LOGAN"], sender=LOGAN_SENDER
        )
        create_huddle(session, slug="moab", name="Moab", keywords=["MOAB"], sender="+14355550100")
        return huddle.id


def text(services: Services, phone: str, body: str) -> int | None:
    handle_inbound(services.engine, InboundSms(f"SM{next(_sids):032x}", phone, LOGAN_SENDER, body))
    with services.read_sessions() as session:
        return session.scalar(select(Member.id).where(Member.phone == phone))


def page_keys(services: Services, huddle_id: int, **options: object) -> list[list[int | None]]:
    """Every page of two, as member ids, following the cursor."""
    pages, after = [], 0
    while True:
        with services.read_sessions() as session:
            found = talk.list_inbox(session, huddle_id, after=after, limit=2, **options)  # type: ignore[arg-type]
        if not found:
            return pages
        pages.append([c.member_id for c in found])
        after = talk.inbox_key(found[-1])


def test_flagged_then_unread_then_done_and_the_cursor_walks_it(
    services: Services, logan: int
) -> None:
    ids = [text(services, f"+161755501{n}", "LOGAN") for n in range(11, 16)]
    text(services, "+16175550111", "STOP KAVANAUGH")  # the first one's text: flagged
    with services.sessions.begin() as session:
        talk.mark_handled(session, logan, ids[4])  # the newest, done
    assert page_keys(services, logan) == [[ids[0], ids[3]], [ids[2], ids[1]], [ids[4]]]
    assert page_keys(services, logan, unread_only=True) == [[ids[0], ids[3]], [ids[2], ids[1]]]
    with services.read_sessions() as session:
        assert talk.open_count(session, logan) == (4, 1)


def _transport(services: Services) -> SmsTransport:
    return sms_transport(services.settings, sessions=services.sessions)


def _lee(services: Services) -> int:
    with services.sessions.begin() as session:
        return users.create_user(
            session, email="lee@example.org", password=PASSWORD, huddles=["logan"]
        ).id


def test_a_form_key_sends_once_and_a_refusal_frees_it(services: Services, logan: int) -> None:
    member = text(services, "+16175550111", "LOGAN")
    assert member is not None
    lee = _lee(services)
    key = inbox.new_form_key()

    def send(body: str) -> talk.Message:
        return inbox.send_reply_once(
            services.sessions,
            services.settings,
            _transport(services),
            huddle_id=logan,
            member_id=member,
            body=body,
            organizer_id=lee,
            form_key=key,
        )

    with pytest.raises(talk.ReplyRefused):
        send("   ")
    sent = send("Hello")  # the refusal released the key: the corrected form goes
    with pytest.raises(inbox.DuplicateReply):
        send("Hello")
    with services.read_sessions() as session:
        assert session.scalars(select(OutboxMessage.body)).all() == ["Hello"]
        stored = session.scalars(select(IdempotencyKey)).one()
        assert (stored.status_code, stored.response_body) == (inbox.SENT, str(sent.id))
    with pytest.raises(inbox.NoConversation):
        inbox.send_reply_once(
            services.sessions,
            services.settings,
            _transport(services),
            huddle_id=logan,
            member_id=member + 1000,
            body="x",
            organizer_id=lee,
            form_key=inbox.new_form_key(),
        )
    with services.read_sessions() as session:
        assert session.scalar(select(func.count()).select_from(IdempotencyKey)) == 1


def test_assignments_go_only_to_people_who_answer_the_huddles_inbox(
    services: Services, logan: int
) -> None:
    member = text(services, "+16175550111", "LOGAN")
    assert member is not None
    with services.sessions.begin() as session:
        rae = users.create_user(
            session, email="rae@example.org", password=PASSWORD, huddles=["logan"], role=a.RESPONDER
        ).id
        mo = users.create_user(
            session, email="mo@example.org", password=PASSWORD, huddles=["moab"]
        ).id
        gone = users.create_user(
            session, email="gone@example.org", password=PASSWORD, huddles=["logan"]
        ).id
        session.execute(update(Organizer).where(Organizer.id == gone).values(disabled_at=utcnow()))
    with services.sessions.begin() as session:
        assert [p.organizer_id for p in inbox.assignees(session, logan)] == [rae]
        assert inbox.assign(session, logan, member, rae, by=None) is not None
    for outsider in (mo, gone):
        with (
            pytest.raises(ValueError, match="does not answer"),
            services.sessions.begin() as session,
        ):
            inbox.assign(session, logan, member, outsider, by=None)
    with services.read_sessions() as session:
        assert inbox.assignees_of(session, logan, [member])[member].organizer_id == rae
        moab = session.scalars(select(Huddle.id).where(Huddle.slug == "moab")).one()
        assert inbox.assignees_of(session, moab, [member]) == {}
        assert session.scalar(select(func.count()).select_from(InboundMessage)) == 1
