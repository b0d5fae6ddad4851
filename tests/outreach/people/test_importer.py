from __future__ import annotations

import io
from pathlib import Path

import pytest
from sqlalchemy import func, select

from outreach import consent
from outreach.app.services import Services
from outreach.models import ConsentEvent, Member, MemberField, MemberTag, Subscription
from outreach.models import consent as c
from outreach.models import members as m
from outreach.people.huddles import create_huddle, get_huddle
from outreach.people.importer import (
    ImportFileError,
    Progress,
    export_members,
    import_members,
)

GOOD_AND_BAD = """phone,email,first_name,last_name,zip,tags,language
(617) 555-0101,maria@example.org,Maria,Lopez,02128,volunteer;canvasser,es
617-555-0102,,Sam,Lee,02128,,
not a phone,x@example.org,Bad,Phone,02128,,
,not-an-email,Bad,Email,02128,,
,,No,Contact,02128,,
617 555 0103,ok@example.org,Bad,Zip,ABCDE,,
+1 617 555 0101,,Maria,,,donor,
617.555.0104,dup@example.org,Too,Many,02128,,,extra
6175550105,MARIA2@Example.org,Ana,,02129,,
"""


@pytest.fixture
def huddle_slug(services: Services) -> str:
    with services.sessions.begin() as session:
        create_huddle(
            session, slug="logan", name="Logan", keywords=["LOGAN"], sender="+16175550100"
        )
    return "logan"


def run_import(services: Services, text: str, consent_channels: frozenset[str] = frozenset()):  # type: ignore[no-untyped-def]
    return import_members(
        services.engine,
        huddle_slug="logan",
        source=io.StringIO(text, newline=""),
        source_name="members.csv",
        consent_channels=consent_channels,
    )


def test_good_rows_import_and_bad_rows_are_reported_by_line(
    services: Services, huddle_slug: str
) -> None:
    report = run_import(services, GOOD_AND_BAD, frozenset({m.SMS}))
    assert [(e.line, e.reason.split(":")[0]) for e in report.errors] == [
        (4, "phone 'not a phone'"),
        (5, "email 'not-an-email'"),
        (6, "needs a phone or an email"),
        (7, "zip 'ABCDE' must be 5 digits (or ZIP+4)"),
        (9, "expected 7 cells, found 8"),
    ]
    assert report.rows == 9
    assert report.created == 3
    assert report.merged == 1  # line 8 is Maria again
    with services.sessions() as session:
        phones = set(session.scalars(select(Member.phone)))
        assert phones == {"+16175550101", "+16175550102", "+16175550105"}
        # never half-imported: nothing from a rejected row exists
        assert session.scalar(select(Member).where(Member.email == "x@example.org")) is None
        assert session.scalar(select(Member).where(Member.email == "ok@example.org")) is None
        maria = session.scalars(select(Member).where(Member.phone == "+16175550101")).one()
        assert (maria.first_name, maria.last_name, maria.email, maria.zip) == (
            "Maria",
            "Lopez",
            "maria@example.org",
            "02128",
        )
        tags = set(session.scalars(select(MemberTag.tag).where(MemberTag.member_id == maria.id)))
        assert tags == {"volunteer", "canvasser", "donor"}
        assert session.scalars(
            select(MemberField.value).where(MemberField.name == "language")
        ).all() == ["es"]
        ana = session.scalars(select(Member).where(Member.phone == "+16175550105")).one()
        assert ana.email == "maria2@example.org"


def test_subscriptions_only_for_asserted_channels_with_ledger_rows(
    services: Services, huddle_slug: str
) -> None:
    text = (
        "phone,email,sms_consent,email_consent\n"
        "6175550101,a@example.org,yes,\n"
        "6175550102,b@example.org,no,yes\n"
    )
    report = run_import(services, text, frozenset({m.SMS}))
    assert report.errors == []
    assert report.subscribed == {m.SMS: 1, m.EMAIL: 1}
    with services.sessions() as session:
        subs = {
            tuple(row)
            for row in session.execute(
                select(Member.phone, Subscription.channel, Subscription.state).join(
                    Subscription.member
                )
            )
        }
        assert subs == {("+16175550101", "sms", "active"), ("+16175550102", "email", "active")}
        events = session.scalars(select(ConsentEvent).order_by(ConsentEvent.id)).all()
        assert [(e.address, e.action, e.source, e.detail) for e in events] == [
            ("+16175550101", "opt_in", "import", "members.csv line 2"),
            ("b@example.org", "opt_in", "import", "members.csv line 3"),
        ]


def test_no_consent_means_no_subscription(services: Services, huddle_slug: str) -> None:
    report = run_import(services, "phone\n6175550101\n")
    assert report.imported == 1
    with services.sessions() as session:
        assert session.scalar(select(func.count(Subscription.id))) == 0
        assert session.scalar(select(func.count(ConsentEvent.id))) == 0


def test_import_never_resubscribes_an_opt_out_or_a_suppressed_number(
    services: Services, huddle_slug: str
) -> None:
    run_import(services, "phone\n6175550101\n", frozenset({m.SMS}))
    with services.sessions.begin() as session:
        maria = session.scalars(select(Member)).one()
        h = get_huddle(session, "logan")
        consent.set_subscription_state(
            session,
            member=maria,
            huddle=h,
            channel=m.SMS,
            state=m.OPTED_OUT,
            provenance=consent.Provenance(source="keyword", detail="STOP"),
        )
        consent.suppress(session, channel=m.SMS, address="+16175550102", reason="landline")
    report = run_import(services, "phone\n6175550101\n6175550102\n", frozenset({m.SMS}))
    assert report.kept_opted_out == 1
    assert report.suppressed == 1
    assert report.subscribed[m.SMS] == 0
    with services.sessions() as session:
        states = set(session.scalars(select(Subscription.state)))
        assert states == {m.OPTED_OUT}
        actions = session.scalars(select(ConsentEvent.action).order_by(ConsentEvent.id)).all()
        assert actions == [c.OPT_IN, c.OPT_OUT]


def test_conflicting_row_is_rejected(services: Services, huddle_slug: str) -> None:
    run_import(services, "phone,email\n6175550101,a@example.org\n6175550102,b@example.org\n")
    report = run_import(services, "phone,email\n6175550101,b@example.org\n")
    assert [e.reason for e in report.errors] == ["phone and email belong to two different members"]


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("", "empty"),
        ("name,zip\nA,02128\n", "phone or an email"),
        ("phone,phone\n", "repeats"),
        ("phone,Bad Column!\n", "custom field"),
    ],
)
def test_bad_files_are_refused_whole(
    services: Services, huddle_slug: str, text: str, message: str
) -> None:
    with pytest.raises(ImportFileError, match=message):
        run_import(services, text)


def test_large_import_reports_progress_and_chunks(
    services: Services, huddle_slug: str, tmp_path: Path
) -> None:
    path = tmp_path / "big.csv"
    path.write_text("phone\n" + "".join(f"+1617555{i:04d}\n" for i in range(2500)))
    seen: list[Progress] = []
    report = import_members(
        services.engine,
        huddle_slug="logan",
        source=path,
        consent_channels=frozenset({m.SMS}),
        progress=seen.append,
        chunk_size=1000,
    )
    assert report.imported == 2500
    assert [p.rows for p in seen] == [1000, 2000, 2500]
    assert seen[-1].bytes_read == path.stat().st_size
    with services.sessions() as session:
        assert session.scalar(select(func.count(Subscription.id))) == 2500
        detail = session.scalars(
            select(ConsentEvent.detail).order_by(ConsentEvent.id.desc())
        ).first()
        assert detail == "big.csv line 2501"


def test_export_round_trips_and_defuses_formulas(services: Services, huddle_slug: str) -> None:
    run_import(
        services, "phone,first_name,tags\n6175550101,=HYPERLINK(1),b;a\n", frozenset({m.SMS})
    )
    out = io.StringIO()
    with services.sessions() as session:
        from outreach.people.huddles import get_huddle

        assert export_members(session, get_huddle(session, "logan"), out) == 1
    lines = out.getvalue().splitlines()
    assert lines[0] == "phone,email,first_name,last_name,zip,tags,sms_status,email_status"
    assert lines[1] == "+16175550101,,'=HYPERLINK(1),,,a;b,active,none"


def test_people_imported_without_consent_are_the_huddles_members_with_state_none(
    services: Services, huddle_slug: str
) -> None:
    rows = "phone,email\n6175550101,\n6175550102,\n,a@example.org\n6175550104,b@example.org\n"
    assert run_import(services, rows, frozenset()).imported == 4
    out = io.StringIO()
    with services.sessions() as session:
        from outreach.people.huddles import get_huddle

        assert export_members(session, get_huddle(session, "logan"), out) == 4
        assert session.scalar(select(func.count(Subscription.id))) == 0
    states = [line.split(",")[-2:] for line in out.getvalue().splitlines()[1:]]
    assert states == [["none", "none"]] * 4


def test_cells_postgresql_would_refuse_are_row_errors_and_the_rest_go_in(
    services: Services, huddle_slug: str
) -> None:
    long_name = "A" * 101
    text = (
        "phone,first_name,last_name,note\n"
        "6175550101,Maria,Lopez,ok\n"
        f"6175550102,{long_name},Lee,ok\n"
        "6175550103,Sam,Le\x00e,ok\n"
        f"6175550104,Ana,Ng,{'€' * 700}\n"  # 700 characters, 2,100 bytes
        f"6175550105,{'B' * 100},Kim,{'x' * 1000}\n"  # at the limits: fine
    )
    report = run_import(services, text)
    assert [(e.line, e.reason) for e in report.errors] == [
        (3, "first_name is longer than 100 characters"),
        (4, "last_name contains a NUL character"),
        (5, "note is longer than 2000 bytes"),
    ]
    assert report.created == 2
    with services.read_sessions() as session:
        names = set(session.scalars(select(Member.first_name)))
    assert names == {"Maria", "B" * 100}
