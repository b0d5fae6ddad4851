"""Member imports in the background: the file is kept in the database, a worker imports it.

``store`` checks the header, keeps the file in parts and returns the import's id, so the web
process (or the CLI) never holds a big import. ``run`` is what the worker does: it claims the
import, feeds the stored file to the importer, and writes where it stands (next line, counts,
row errors) in each chunk's own transaction. A worker that dies mid-file leaves the import
``running`` under a token no live worker holds; the sweep hands it to another worker, which
starts at the first line not yet in. A database that refuses a chunk is tried again later, a few
times, then the import is ``failed`` with the reason.
"""

from __future__ import annotations

import codecs
import csv
import io
import logging
import re
from collections.abc import Callable, Collection, Iterator
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import IO, Any, cast

from sqlalchemy import CursorResult, Engine, delete, insert, or_, select, update
from sqlalchemy.orm import Session, sessionmaker

from outreach.app.clock import utcnow
from outreach.app.db import READ_ONLY
from outreach.models import Huddle, MemberImport, MemberImportError, MemberImportPart
from outreach.models import imports as states
from outreach.models import members as m
from outreach.people.huddles import get_huddle
from outreach.people.importer import (
    CHUNK_SIZE,
    Checkpoint,
    ImportFileError,
    ImportReport,
    ImportStopped,
    Progress,
    RowError,
    import_members,
    read_header,
)

log = logging.getLogger(__name__)

PART_BYTES = 1024 * 1024
MAX_UPLOAD_BYTES = 512 * 1024 * 1024
MAX_ATTEMPTS = 5
RETRY_AFTER = timedelta(seconds=10)  # doubled after each refused attempt
ERROR_PAGE = 1000


class ImportTakenOver(RuntimeError):
    """Another worker claimed this import (this one was thought dead): stop writing."""


class ImportPaused(RuntimeError):
    """The worker is stopping: the import goes back to the queue where it stands."""


@dataclass(frozen=True)
class ImportStatus:
    id: int
    huddle_slug: str
    source_name: str
    state: str
    size_bytes: int
    bytes_read: int
    rows: int
    created: int
    merged: int
    subscribed: dict[str, int]
    kept_opted_out: int
    suppressed: int
    error_count: int
    attempts: int
    reason: str | None
    created_at: datetime
    finished_at: datetime | None

    @property
    def imported(self) -> int:
        return self.rows - self.error_count

    @property
    def percent(self) -> int:
        if self.state == states.DONE or not self.size_bytes:
            return 100 if self.state == states.DONE else 0
        return min(99, self.bytes_read * 100 // self.size_bytes)


def store(
    sessions: sessionmaker[Session],
    *,
    huddle_slug: str,
    upload: IO[bytes],
    source_name: str,
    consent_channels: Collection[str] = (),
    default_region: str = "US",
    actor: str | None = None,
    max_bytes: int = MAX_UPLOAD_BYTES,
    part_bytes: int = PART_BYTES,
) -> int:
    """Keep an uploaded CSV for a worker to import; returns the import's id.

    The header is checked now, so a file that cannot be imported at all is refused at once;
    every row is checked by the worker and reported by line. The import is ``storing`` until the
    last part is in; a failed upload deletes what it stored.
    """
    unknown = set(consent_channels) - set(m.CHANNELS)
    if unknown:
        raise ImportFileError(f"consent is for sms and/or email, not {', '.join(sorted(unknown))}")
    first = upload.read(part_bytes)
    _check_header(first.partition(b"\n")[0])
    with sessions.begin() as session:
        huddle = get_huddle(session, huddle_slug)
        now = utcnow()
        record = MemberImport(
            huddle_id=huddle.id,
            source_name=source_name[:255],
            consent_channels=sorted(consent_channels),
            default_region=default_region,
            actor=actor,
            state=states.STORING,
            size_bytes=0,  # the counters start at their columns' default, 0
            created_at=now,
            updated_at=now,
        )
        session.add(record)
        session.flush()
        import_id = record.id
    size, seq, part = 0, 0, first
    try:
        while part:  # a part per transaction: on SQLite, a STOP waits for one part at most
            size += len(part)
            if size > max_bytes:
                raise ImportFileError(f"the file is larger than {max_bytes:,} bytes")
            with sessions.begin() as session:
                session.execute(
                    insert(MemberImportPart).values(import_id=import_id, seq=seq, data=part)
                )
            seq += 1
            part = upload.read(part_bytes)
    except BaseException:
        with sessions.begin() as session:
            session.execute(delete(MemberImport).where(MemberImport.id == import_id))
        raise
    with sessions.begin() as session:
        session.execute(
            update(MemberImport)
            .where(MemberImport.id == import_id)
            .values(state=states.QUEUED, size_bytes=size, updated_at=utcnow())
        )
    log.info("import %s stored: %s bytes for huddle %s", import_id, size, huddle_slug)
    return import_id


def _check_header(header: bytes) -> None:
    """The first line only: the rows are the worker's to check, line by line."""
    if not header.strip():
        raise ImportFileError("the file is empty")
    try:
        text = codecs.getincrementaldecoder("utf-8-sig")().decode(header, final=False)
    except UnicodeDecodeError:
        raise ImportFileError("the file is not UTF-8 text") from None
    read_header(csv.reader(io.StringIO(text, newline="")))


def status(
    session: Session, import_id: int, huddle_ids: Collection[int] | None = None
) -> ImportStatus:
    """Where an import stands; ``huddle_ids`` limits it to those huddles (LookupError otherwise)."""
    row = session.get(MemberImport, import_id)
    if row is None or (huddle_ids is not None and row.huddle_id not in huddle_ids):
        raise LookupError(f"no import {import_id}")
    slug = session.scalars(select(Huddle.slug).where(Huddle.id == row.huddle_id)).one()
    return _status(row, slug)


def recent(session: Session, limit: int = 20) -> list[ImportStatus]:
    rows = session.execute(
        select(MemberImport, Huddle.slug)
        .join(Huddle, Huddle.id == MemberImport.huddle_id)
        .order_by(MemberImport.id.desc())
        .limit(limit)
    )
    return [_status(row, slug) for row, slug in rows]


def error_page(session: Session, import_id: int, *, after: int, limit: int) -> list[RowError]:
    """Up to ``limit`` row errors after line ``after``, by line."""
    rows = session.execute(
        select(MemberImportError.line, MemberImportError.reason)
        .where(MemberImportError.import_id == import_id, MemberImportError.line > after)
        .order_by(MemberImportError.line)
        .limit(limit)
    )
    return [RowError(line, reason) for line, reason in rows]


def errors(session: Session, import_id: int) -> Iterator[RowError]:
    """The row-error report, by line, read a page at a time."""
    after = -1
    while page := error_page(session, import_id, after=after, limit=ERROR_PAGE):
        yield from page
        after = page[-1].line


def _status(row: MemberImport, slug: str) -> ImportStatus:
    return ImportStatus(
        id=row.id,
        huddle_slug=slug,
        source_name=row.source_name,
        state=row.state,
        size_bytes=row.size_bytes,
        bytes_read=row.bytes_read,
        rows=row.rows,
        created=row.created,
        merged=row.merged,
        subscribed={m.SMS: row.subscribed_sms, m.EMAIL: row.subscribed_email},
        kept_opted_out=row.kept_opted_out,
        suppressed=row.suppressed,
        error_count=row.error_count,
        attempts=row.attempts,
        reason=row.reason,
        created_at=row.created_at,
        finished_at=row.finished_at,
    )


def waiting(
    session: Session, *, now: datetime, live_tokens: Collection[str], timeout: float
) -> list[int]:
    """Imports that need a worker: queued and due, or running under a token nobody holds.

    A running import whose runner holds no lease (an in-process run) is left alone while it
    keeps writing checkpoints: it looks dead only once it has been quiet for ``timeout``.
    """
    quiet = now - timedelta(seconds=timeout)
    rows = session.execute(
        select(MemberImport.id, MemberImport.state, MemberImport.runner).where(
            or_(
                (MemberImport.state == states.QUEUED)
                & (MemberImport.not_before.is_(None) | (MemberImport.not_before <= now)),
                (MemberImport.state == states.RUNNING) & (MemberImport.updated_at < quiet),
            )
        )
    )
    return [
        import_id
        for import_id, state, runner in rows
        if state == states.QUEUED or runner not in live_tokens
    ]


def run(
    engine: Engine,
    import_id: int,
    *,
    runner: str,
    live_tokens: Callable[[], Collection[str]],
    timeout: float,
    stop_requested: Callable[[], bool] = lambda: False,
    chunk_size: int = CHUNK_SIZE,
) -> str:
    """Import a stored file (the worker's job); returns the import's state when this run ended."""
    sessions = sessionmaker(engine)
    claimed = _claim(sessions, import_id, runner, live_tokens, timeout)
    if claimed is None:
        return "not claimed"
    record, slug = claimed
    if record.attempts > MAX_ATTEMPTS:
        _finish(sessions, import_id, runner, states.FAILED, record.reason or "too many attempts")
        return states.FAILED
    source = io.TextIOWrapper(
        io.BufferedReader(_StoredFile(engine, import_id), PART_BYTES),
        encoding="utf-8-sig",
        newline="",
    )

    def checkpoint(conn: Any, point: Checkpoint) -> None:
        _write_checkpoint(conn, import_id, runner, point)

    def progress(_: Progress) -> None:
        if stop_requested():
            raise ImportPaused

    log.info("import %s: attempt %s from line %s", import_id, record.attempts, record.next_line)
    try:
        import_members(
            engine,
            huddle_slug=slug,
            source=source,
            source_name=record.source_name,
            consent_channels=frozenset(record.consent_channels),
            default_region=record.default_region,
            actor=record.actor,
            progress=progress,
            on_commit=checkpoint,
            start_line=record.next_line,
            chunk_size=chunk_size,
        )
    except ImportTakenOver:
        log.warning("import %s: another worker took it over; this run stops", import_id)
        return "taken over"
    except ImportPaused:
        _requeue(sessions, import_id, runner, None, not_before=None)
        log.info("import %s paused: the worker is stopping", import_id)
        return states.QUEUED
    except ImportStopped as stopped:
        if record.attempts >= MAX_ATTEMPTS:
            _finish(sessions, import_id, runner, states.FAILED, stopped.reason)
            return states.FAILED
        wait = RETRY_AFTER * 2 ** (record.attempts - 1)
        _requeue(sessions, import_id, runner, stopped.reason, not_before=utcnow() + wait)
        # The reason is on the import's row, not in the log: the database may quote a row's values.
        log.warning("import %s stopped by the database; tried again in %s", import_id, wait)
        return states.QUEUED
    except ImportFileError as exc:
        _finish(sessions, import_id, runner, states.FAILED, str(exc))
        return states.FAILED
    except UnicodeDecodeError:
        reason = "the file is not UTF-8 text after the lines already imported"
        _finish(sessions, import_id, runner, states.FAILED, reason)
        return states.FAILED
    _finish(sessions, import_id, runner, states.DONE, None)
    return states.DONE


def _claim(
    sessions: sessionmaker[Session],
    import_id: int,
    runner: str,
    live_tokens: Callable[[], Collection[str]],
    timeout: float,
) -> tuple[MemberImport, str] | None:
    """Take the import if nobody is running it; compare-and-set on the attempt it was at."""
    live = live_tokens()  # before the transaction: on SQLite it holds the write lock
    with sessions.begin() as session:
        row = session.get(MemberImport, import_id)
        if row is None or row.state not in (states.QUEUED, states.RUNNING):
            return None
        now = utcnow()
        if row.state == states.RUNNING and (
            row.runner in live or row.updated_at >= now - timedelta(seconds=timeout)
        ):
            return None
        taken = session.execute(
            update(MemberImport)
            .where(
                MemberImport.id == import_id,
                MemberImport.state == row.state,
                MemberImport.attempts == row.attempts,
            )
            .values(
                state=states.RUNNING,
                runner=runner,
                attempts=MemberImport.attempts + 1,
                not_before=None,
                updated_at=now,
            )
        )
        if not cast(CursorResult[Any], taken).rowcount:
            return None
        session.refresh(row)
        slug = session.scalars(select(Huddle.slug).where(Huddle.id == row.huddle_id)).one()
        session.expunge(row)
        return row, slug


def _write_checkpoint(conn: Any, import_id: int, runner: str, point: Checkpoint) -> None:
    """Inside the chunk's transaction: the counts, the next line, the chunk's row errors."""
    added: ImportReport = point.added
    values: dict[str, Any] = {
        "next_line": point.next_line,
        "rows": MemberImport.rows + added.rows,
        "created": MemberImport.created + added.created,
        "merged": MemberImport.merged + added.merged,
        "subscribed_sms": MemberImport.subscribed_sms + added.subscribed[m.SMS],
        "subscribed_email": MemberImport.subscribed_email + added.subscribed[m.EMAIL],
        "kept_opted_out": MemberImport.kept_opted_out + added.kept_opted_out,
        "suppressed": MemberImport.suppressed + added.suppressed,
        "error_count": MemberImport.error_count + len(added.errors),
        "updated_at": utcnow(),
    }
    if point.bytes_read is not None:
        values["bytes_read"] = point.bytes_read
    moved = conn.execute(
        update(MemberImport)
        .where(MemberImport.id == import_id, MemberImport.runner == runner)
        .values(values)
    )
    if not moved.rowcount:
        raise ImportTakenOver(f"import {import_id} is no longer run by {runner}")
    if added.errors:
        conn.execute(
            insert(MemberImportError),
            [
                {"import_id": import_id, "line": error.line, "reason": error.reason[:2000]}
                for error in added.errors
            ],
        )


def _requeue(
    sessions: sessionmaker[Session],
    import_id: int,
    runner: str,
    reason: str | None,
    *,
    not_before: datetime | None,
) -> None:
    with sessions.begin() as session:
        session.execute(
            update(MemberImport)
            .where(MemberImport.id == import_id, MemberImport.runner == runner)
            .values(
                state=states.QUEUED,
                runner=None,
                reason=reason,
                not_before=not_before,
                updated_at=utcnow(),
            )
        )


def _finish(
    sessions: sessionmaker[Session], import_id: int, runner: str, state: str, reason: str | None
) -> None:
    """Done or failed for good; the stored file is deleted when done."""
    with sessions.begin() as session:
        now = utcnow()
        ended = session.execute(
            update(MemberImport)
            .where(MemberImport.id == import_id, MemberImport.runner == runner)
            .values(state=state, runner=None, reason=reason, updated_at=now, finished_at=now)
        )
        if not cast(CursorResult[Any], ended).rowcount:
            return
        if state == states.DONE:
            session.execute(delete(MemberImportPart).where(MemberImportPart.import_id == import_id))
    log.info("import %s %s", import_id, state)


class _StoredFile(io.RawIOBase):
    """The stored parts of an upload as a file, read one part per short query."""

    def __init__(self, engine: Engine, import_id: int) -> None:
        self._engine = engine.execution_options(**{READ_ONLY: True})  # no SQLite write lock
        self._import_id = import_id
        self._seq = 0
        self._part = b""
        self._offset = 0
        self._position = 0

    def readable(self) -> bool:
        return True

    def tell(self) -> int:
        return self._position

    def readinto(self, buffer: Any) -> int:
        if self._offset >= len(self._part):
            with self._engine.connect() as conn:
                data = conn.execute(
                    select(MemberImportPart.data).where(
                        MemberImportPart.import_id == self._import_id,
                        MemberImportPart.seq == self._seq,
                    )
                ).scalar_one_or_none()
            if data is None:
                return 0
            self._part, self._offset = bytes(data), 0
            self._seq += 1
        view = memoryview(buffer).cast("B")
        size = min(len(view), len(self._part) - self._offset)
        view[:size] = self._part[self._offset : self._offset + size]
        self._offset += size
        self._position += size
        return size


def recent_for_huddle(session: Session, huddle_id: int, limit: int = 10) -> list[ImportStatus]:
    """The huddle's latest imports, newest first (the dashboard's import page lists them)."""
    rows = session.execute(
        select(MemberImport, Huddle.slug)
        .join(Huddle, Huddle.id == MemberImport.huddle_id)
        .where(MemberImport.huddle_id == huddle_id)
        .order_by(MemberImport.id.desc())
        .limit(limit)
    )
    return [_status(row, slug) for row, slug in rows]


# The column a row error is about, read from the importer's reasons ("phone '555': too short",
# "zip '1' must be 5 digits", "tag 'a b' must be…", "first_name is longer than 100 characters").
_REASON_COLUMN = re.compile(r"^(?P<column>[a-z][a-z0-9_]*) (?:'|\"|is longer|contains|must)")
_REASON_COLUMNS = {"tag": "tags"}
_WHOLE_ROW = ("needs a phone or an email", "phone and email belong")

ERROR_REPORT_COLUMNS = ("line", "column", "error")


def error_column(reason: str) -> str:
    """The column a row error names, or "" when it is about the whole row."""
    if reason.startswith(_WHOLE_ROW):
        return "phone, email"
    found = _REASON_COLUMN.match(reason)
    if found is None:
        return ""
    return _REASON_COLUMNS.get(found["column"], found["column"])


def error_report_lines(session: Session, import_id: int) -> Iterator[str]:
    """The row-error report as CSV text, a page at a time: line, column, error.

    The reasons quote what the file said, so every cell is made safe for a spreadsheet (one
    starting with ``= + - @``, a tab or a carriage return is prefixed with ``'``).
    """
    out = io.StringIO(newline="")
    writer = csv.writer(out)
    writer.writerow(ERROR_REPORT_COLUMNS)
    for count, error in enumerate(errors(session, import_id), start=1):
        writer.writerow(
            [error.line, formula_safe(error_column(error.reason)), formula_safe(error.reason)]
        )
        if count % ERROR_PAGE == 0:
            yield out.getvalue()
            out.seek(0)
            out.truncate()
    if out.tell():
        yield out.getvalue()


def formula_safe(value: str) -> str:
    """A cell a spreadsheet will show as text, never run as a formula (CSV injection)."""
    return "'" + value if value[:1] in ("=", "+", "-", "@", "\t", "\r") else value
