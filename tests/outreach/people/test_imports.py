"""Background imports: the stored file, a run stopped part-way and resumed, a run taken over."""

from __future__ import annotations

import io
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import timedelta

import pytest
from rq import Queue
from sqlalchemy import func, select, update

from outreach.app.clock import utcnow
from outreach.app.services import Services
from outreach.models import (
    ConsentEvent,
    Member,
    MemberImport,
    MemberImportError,
    MemberImportPart,
    Subscription,
)
from outreach.models import imports as states
from outreach.models import members as m
from outreach.people import imports
from outreach.people.huddles import create_huddle
from outreach.people.importer import ImportFileError, import_members

ROWS = 120
CHUNK = 25


def member_csv(rows: int = ROWS) -> bytes:
    """``rows`` lines: every 10th unreadable, every 7th the same person as the line before."""
    lines = ["phone,email,first_name,zip,tags"]
    for i in range(rows):
        n = i - 1 if i % 7 == 0 and i else i
        phone = "not a phone" if i % 10 == 3 else f"(617) 555-{1000 + n:04d}"
        lines.append(f"{phone},member{n}@example.org,Name{n},02128,walk")
    return ("\n".join(lines) + "\n").encode()


@pytest.fixture
def huddle(services: Services) -> str:
    with services.sessions.begin() as session:
        create_huddle(
            session, slug="logan", name="Logan", keywords=["LOGAN"], sender="+16175550100"
        )
    return "logan"


def store(services: Services, data: bytes, **options: object) -> int:
    return imports.store(
        services.sessions,
        huddle_slug="logan",
        upload=io.BytesIO(data),
        source_name="list.csv",
        consent_channels={m.SMS, m.EMAIL},
        actor="organizer@example.org",
        **options,  # type: ignore[arg-type]
    )


def run(services: Services, import_id: int, runner: str = "w1", **options: object) -> str:
    return imports.run(
        services.engine,
        import_id,
        runner=runner,
        live_tokens=set,
        timeout=15,
        chunk_size=CHUNK,
        **options,  # type: ignore[arg-type]
    )


def totals(services: Services) -> tuple[int, int, int]:
    with services.read_sessions() as session:
        return (
            session.scalar(select(func.count()).select_from(Member)) or 0,
            session.scalar(select(func.count()).select_from(Subscription)) or 0,
            session.scalar(select(func.count()).select_from(ConsentEvent)) or 0,
        )


def test_a_stored_import_reports_what_the_importer_does_and_deletes_its_file(
    services: Services, huddle: str
) -> None:
    import_id = store(services, member_csv(), part_bytes=500)  # about 13 parts, one at a time
    with services.read_sessions() as session:
        parts = session.scalar(select(func.count()).select_from(MemberImportPart))
        assert imports.status(session, import_id).state == states.QUEUED
    assert parts is not None
    assert parts > 10

    assert run(services, import_id) == states.DONE

    with services.read_sessions() as session:
        done = imports.status(session, import_id)
        stored_errors = list(imports.errors(session, import_id))
        parts_left = session.scalar(select(func.count()).select_from(MemberImportPart))
    assert parts_left == 0
    assert (done.state, done.percent, done.attempts) == (states.DONE, 100, 1)
    assert done.bytes_read == done.size_bytes == len(member_csv())
    assert [e.line for e in stored_errors] == [i + 2 for i in range(ROWS) if i % 10 == 3]
    members, subscriptions, ledger = totals(services)
    assert done.created == members
    assert done.subscribed == {m.SMS: members, m.EMAIL: members}
    assert subscriptions == ledger == 2 * members
    assert done.rows == ROWS
    assert done.error_count == len(stored_errors)
    assert done.merged == ROWS - done.error_count - done.created


def test_a_run_paused_part_way_resumes_at_the_next_line_and_the_totals_stay_true(
    services: Services, huddle: str
) -> None:
    import_id = store(services, member_csv())
    chunks = iter(range(100))
    assert run(services, import_id, stop_requested=lambda: next(chunks) >= 2) == states.QUEUED
    with services.read_sessions() as session:
        paused = session.get(MemberImport, import_id)
        assert paused is not None
        assert (paused.state, paused.runner) == (states.QUEUED, None)
        assert 0 < paused.next_line < ROWS
        partial_members = totals(services)[0]
    assert 0 < partial_members == paused.created

    assert run(services, import_id, runner="w2") == states.DONE

    with services.read_sessions() as session:
        resumed = imports.status(session, import_id)
    members, subscriptions, ledger = totals(services)
    assert resumed.attempts == 2
    assert resumed.created == members
    assert subscriptions == ledger == 2 * members
    assert resumed.rows == ROWS
    assert resumed.error_count == ROWS // 10

    # Nothing was half-done: the same file in one go finds everyone already in.
    one_go = import_members(
        services.engine,
        huddle_slug="logan",
        source=io.StringIO(member_csv().decode(), newline=""),
        consent_channels=frozenset({m.SMS, m.EMAIL}),
    )
    assert one_go.created == 0
    assert one_go.merged == resumed.imported
    assert totals(services) == (members, subscriptions, ledger)


def test_a_worker_thought_dead_loses_its_import_and_its_chunk_is_rolled_back(
    services: Services, huddle: str
) -> None:
    import_id = store(services, member_csv())
    taken: list[str] = []

    def take_over_after_the_first_chunk() -> bool:
        if not taken:
            with services.sessions.begin() as session:  # as the sweep would find it: stale
                session.execute(
                    update(MemberImport).values(updated_at=utcnow() - timedelta(minutes=5))
                )
            taken.append(run(services, import_id, runner="w2"))
        return False

    outcome = run(services, import_id, runner="w1", stop_requested=take_over_after_the_first_chunk)

    assert taken == [states.DONE]
    assert outcome == "taken over"
    with services.read_sessions() as session:
        final = imports.status(session, import_id)
        error_lines = session.scalars(select(MemberImportError.line)).all()
    members, subscriptions, ledger = totals(services)
    assert final.state == states.DONE
    assert final.created == members
    assert subscriptions == ledger == 2 * members
    assert len(error_lines) == len(set(error_lines)) == ROWS // 10


def test_a_running_import_is_claimed_only_once_its_runner_is_gone_and_quiet(
    services: Services, huddle: str
) -> None:
    import_id = store(services, member_csv())
    now = utcnow()
    with services.sessions.begin() as session:
        session.execute(update(MemberImport).values(state=states.RUNNING, runner="w1:import:1"))

    def waiting(at_minutes: float, live: set[str]) -> list[int]:
        with services.read_sessions() as session:
            return imports.waiting(
                session, now=now + timedelta(minutes=at_minutes), live_tokens=live, timeout=15
            )

    assert waiting(0, set()) == []  # quiet for less than the timeout: maybe an in-process run
    assert waiting(5, {"w1:import:1"}) == []  # its worker is alive
    assert waiting(5, set()) == [import_id]
    held = imports.run(
        services.engine, import_id, runner="w2", live_tokens=lambda: {"w1:import:1"}, timeout=0
    )
    assert held == "not claimed"


def test_an_import_out_of_attempts_fails_with_a_reason(services: Services, huddle: str) -> None:
    import_id = store(services, b"phone,first_name\n(617) 555-0101,Maria\n")
    with services.sessions.begin() as session:
        session.execute(update(MemberImport).values(attempts=imports.MAX_ATTEMPTS))
    assert run(services, import_id) == states.FAILED
    with services.read_sessions() as session:
        failed = imports.status(session, import_id)
    assert failed.state == states.FAILED
    assert failed.reason


def test_a_file_that_is_not_utf8_after_its_header_fails_and_keeps_the_lines_before(
    services: Services, huddle: str
) -> None:
    data = member_csv(1000) + "Zoë,\n".encode("latin-1")  # far past the first 8 KiB read
    import_id = store(services, data)
    assert run(services, import_id) == states.FAILED
    with services.read_sessions() as session:
        failed = imports.status(session, import_id)
    assert failed.reason is not None
    assert "not UTF-8" in failed.reason
    assert failed.created == totals(services)[0] > 0


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (b"", "empty"),
        (b"first_name,zip\nMaria,02128\n", "phone or an email column"),
        ("phone,prénom\n".encode("latin-1"), "not UTF-8"),
        (b"phone,phone\n1,2\n", "repeats"),
    ],
)
def test_a_file_that_cannot_be_imported_is_refused_when_stored(
    services: Services, huddle: str, data: bytes, message: str
) -> None:
    with pytest.raises(ImportFileError, match=message):
        store(services, data)
    with services.read_sessions() as session:
        assert session.scalar(select(func.count()).select_from(MemberImport)) == 0


def test_a_file_over_the_limit_is_refused_and_nothing_is_kept(
    services: Services, huddle: str
) -> None:
    with pytest.raises(ImportFileError, match="larger than"):
        store(services, member_csv(), max_bytes=1000, part_bytes=300)
    with services.read_sessions() as session:
        assert session.scalar(select(func.count()).select_from(MemberImportPart)) == 0
        assert session.scalar(select(func.count()).select_from(MemberImport)) == 0


def test_the_sweep_gives_a_job_to_an_import_that_has_none_and_only_one(
    services: Services, huddle: str
) -> None:
    from workers import jobs
    from workers.queues import IMPORT_QUEUE

    queue = Queue(IMPORT_QUEUE, connection=services.redis)
    stored = store(services, member_csv())  # stored, but the enqueue never happened
    assert jobs.sweep()["imports"] == 1
    assert jobs.sweep()["imports"] == 0  # its job is on the queue now
    assert len(queue.get_job_ids()) == 1
    queue.empty()
    with services.sessions.begin() as session:  # a worker died running it, long ago
        session.execute(
            update(MemberImport).values(
                state=states.RUNNING,
                runner="gone:import-1:1",
                updated_at=utcnow() - timedelta(minutes=5),
            )
        )
    assert jobs.sweep()["imports"] == 1
    (job_id,) = queue.get_job_ids()
    assert job_id.startswith(f"import-{stored}-")


@contextmanager
def members_refused(services: Services) -> Iterator[None]:
    """A trigger makes the database refuse every new member, as a full disk or a bad migration
    would: an error that is not a conflict, so the import stops instead of going row by row."""
    with services.engine.begin() as conn:
        if conn.dialect.name == "postgresql":
            conn.exec_driver_sql(
                "CREATE FUNCTION refuse() RETURNS trigger AS $$ BEGIN RAISE EXCEPTION "
                "'refused by a test' USING ERRCODE = 'XX000'; END $$ LANGUAGE plpgsql"
            )
            conn.exec_driver_sql(
                "CREATE TRIGGER refuse BEFORE INSERT ON members FOR EACH ROW "
                "EXECUTE FUNCTION refuse()"
            )
        else:
            conn.exec_driver_sql(
                "CREATE TRIGGER refuse BEFORE INSERT ON members "
                "BEGIN SELECT refused_by_a_test(); END"
            )
    try:
        yield
    finally:
        with services.engine.begin() as conn:
            conn.exec_driver_sql(
                "DROP TRIGGER refuse" + (" ON members" if conn.dialect.name == "postgresql" else "")
            )
            if conn.dialect.name == "postgresql":
                conn.exec_driver_sql("DROP FUNCTION refuse()")


def test_a_chunk_the_database_refuses_is_tried_again_later_then_the_import_fails(
    services: Services, huddle: str
) -> None:
    import_id = store(services, member_csv())
    outcomes = []
    with members_refused(services):
        for attempt in range(1, imports.MAX_ATTEMPTS + 1):
            outcomes.append(
                imports.run(
                    services.engine,
                    import_id,
                    runner=f"w{attempt}",
                    live_tokens=set,
                    timeout=15,
                    chunk_size=CHUNK,
                )
            )
            with services.read_sessions() as session:
                row = session.get(MemberImport, import_id)
            assert row is not None
            assert row.attempts == attempt
            assert row.reason is not None
            assert "refused_by_a_test" in row.reason or "refused by a test" in row.reason
            if attempt < imports.MAX_ATTEMPTS:
                wait = imports.RETRY_AFTER * 2 ** (attempt - 1)
                assert row.not_before is not None
                assert row.not_before > utcnow() + wait - timedelta(seconds=5)
                with services.sessions.begin() as session:  # its time has come
                    session.execute(update(MemberImport).values(not_before=None))
    assert outcomes == [states.QUEUED] * (imports.MAX_ATTEMPTS - 1) + [states.FAILED]
    assert row.state == states.FAILED
    assert totals(services) == (0, 0, 0)
