"""Accounts: passwords, roles per huddle, tokens, disabling, and the audit trail of each."""

from __future__ import annotations

import pytest
from argon2 import PasswordHasher
from sqlalchemy import select

from outreach.accounts import access, passwords, tokens, users
from outreach.app.services import Services
from outreach.models import AuditEvent, Huddle
from outreach.models import accounts as a
from outreach.people.huddles import create_huddle

PASSWORD = "correct horse battery"


class CountingHasher(PasswordHasher):
    """argon2-cffi's own hasher, counting how often it is asked to verify."""

    calls = 0

    def verify(self, hash: str | bytes, password: str | bytes) -> bool:
        self.calls += 1
        return super().verify(hash, password)


@pytest.fixture
def huddles(services: Services) -> dict[str, int]:
    with services.sessions.begin() as session:
        for slug in ("logan", "provo"):
            create_huddle(session, slug=slug, name=slug.title(), keywords=[slug.upper()])
        return {h.slug: h.id for h in session.scalars(select(Huddle))}


def test_an_unknown_email_costs_one_argon2_check_like_a_wrong_password() -> None:
    hasher = CountingHasher()
    stored = hasher.hash(PASSWORD)
    assert passwords.verify(stored, "wrong password", hasher) is False
    assert passwords.verify(None, PASSWORD, hasher) is False
    assert passwords.verify(stored, PASSWORD, hasher) is True
    assert hasher.calls == 3


def test_roles_give_exactly_their_capabilities_in_exactly_their_huddles(
    services: Services, huddles: dict[str, int]
) -> None:
    with services.sessions.begin() as session:
        lee = users.create_user(
            session, email="Lee@Example.org", password=PASSWORD, huddles=["logan"]
        )
        rae = users.create_user(
            session,
            email="rae@example.org",
            password=PASSWORD,
            huddles=["provo"],
            role=a.RESPONDER,
        )
        boss = users.create_user(session, email="boss@example.org", password=PASSWORD, admin=True)
        lee_access, rae_access = access.access_of(session, lee), access.access_of(session, rae)
        boss_access = access.access_of(session, boss)
    logan, provo = huddles["logan"], huddles["provo"]
    assert lee.email == "lee@example.org"
    assert lee_access.huddle_ids(access.CAMPAIGNS) == {logan}
    assert lee_access.can(access.MEMBERS, logan)
    assert not lee_access.can(access.MEMBERS, provo)
    assert not lee_access.can(access.USERS)
    assert rae_access.huddle_ids(access.INBOX) == {provo}
    assert rae_access.huddle_ids(access.MEMBERS) == set()
    assert not rae_access.can(access.CAMPAIGNS, provo)
    assert boss_access.huddle_ids(access.MEMBERS, every_huddle={logan, provo}) == {logan, provo}
    assert boss_access.can(access.USERS)


def test_grant_changes_a_role_revoke_takes_it_and_both_are_on_record(
    services: Services, huddles: dict[str, int]
) -> None:
    with services.sessions.begin() as session:
        users.create_user(session, email="lee@example.org", password=PASSWORD, huddles=["logan"])
        users.grant(session, email="lee@example.org", huddles=["logan", "provo"], role=a.RESPONDER)
        users.revoke(session, email="lee@example.org", huddles=["logan"])
    with services.read_sessions() as session:
        (summary,) = users.list_users(session)
        trail = [(e.action, e.subject) for e in session.scalars(select(AuditEvent))]
    assert summary.roles == {"provo": a.RESPONDER}
    assert [act for act, _ in trail] == [
        "user_created",
        "access_granted",
        "access_granted",
        "access_granted",
        "access_revoked",
    ]


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"email": "not an address"}, "not an email address"),
        ({"password": "short"}, "at least 10 characters"),
        ({"huddles": ["nowhere"]}, "no huddle with slug 'nowhere'"),
        ({"role": "owner", "huddles": ["logan"]}, "a role is organizer or responder"),
    ],
)
def test_bad_requests_are_refused_in_plain_words(
    services: Services, huddles: dict[str, int], change: dict[str, object], message: str
) -> None:
    request: dict[str, object] = {"email": "lee@example.org", "password": PASSWORD, **change}
    with pytest.raises(users.AccountError, match=message), services.sessions.begin() as session:
        users.create_user(session, **request)  # type: ignore[arg-type]


def test_a_token_is_shown_once_stored_hashed_and_dies_with_revocation_or_disabling(
    services: Services, huddles: dict[str, int]
) -> None:
    with services.sessions.begin() as session:
        lee = users.create_user(session, email="lee@example.org", password=PASSWORD, admin=True)
        first = tokens.issue(session, lee, label="crm sync")
        second = tokens.issue(session, lee, label="sheet")
        stored = [t.token_hash for t in tokens.list_tokens(session, lee)]
    assert first.startswith(tokens.PREFIX)
    assert first not in stored
    assert second not in stored
    with services.sessions.begin() as session:
        assert tokens.user_of(session, first) is not None
        assert tokens.user_of(session, first[:-1] + "x") is None
        lee = users.get_user(session, "lee@example.org")
        assert tokens.revoke(session, lee, tokens.list_tokens(session, lee)[0].id)
        assert tokens.user_of(session, first) is None
        assert tokens.user_of(session, second) is not None
        users.disable(session, email="lee@example.org")
        assert tokens.user_of(session, second) is None
        assert users.authenticate(session, "lee@example.org", PASSWORD) is None


def test_authenticate_takes_any_spelling_of_the_email(
    services: Services, huddles: dict[str, int]
) -> None:
    with services.sessions.begin() as session:
        users.create_user(session, email="lee@example.org", password=PASSWORD, admin=True)
        assert users.authenticate(session, " LEE@example.ORG ", PASSWORD) is not None
        assert users.authenticate(session, "lee@example.org", PASSWORD + "x") is None
        assert users.authenticate(session, "not an email", PASSWORD) is None
