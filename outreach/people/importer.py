"""CSV import of members into a huddle.

Each row is validated whole before anything is written, so a bad row is reported (line number and
reason) and never half-imported. Rows that name a person already known (same phone or same email,
earlier in the file or already in the database) are merged into that person: blanks are filled,
tags are added, nothing is overwritten. Subscriptions are created only for the channels the
organizer asserts consent for, and each assertion is a ledger row naming the file and the line.
An import never resubscribes a person who opted out, and never subscribes a suppressed address.
"""

from __future__ import annotations

import csv
import io
import re
import time
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import TextIO

from sqlalchemy import Connection, Engine, func, select
from sqlalchemy.exc import DBAPIError, IntegrityError
from sqlalchemy.orm import Session

from outreach.addresses.emails import InvalidEmail, normalize_email
from outreach.addresses.phones import InvalidPhoneNumber, normalize_phone
from outreach.addresses.zips import normalize_zip
from outreach.app.clock import utcnow
from outreach.models import Huddle, HuddleMember, Member, MemberTag, Subscription
from outreach.models import members as m
from outreach.people import merge
from outreach.people.huddles import get_huddle

KNOWN_COLUMNS = frozenset(
    {"phone", "email", "first_name", "last_name", "zip", "tags", "sms_consent", "email_consent"}
)
_YES = frozenset({"y", "yes", "true", "1", "x"})
_NO = frozenset({"n", "no", "false", "0", ""})
TAG = re.compile(r"^[a-z0-9][a-z0-9_\-]{0,63}$")
MAX_CELL = 1000
MAX_LENGTHS = {"first_name": 100, "last_name": 100}  # the members table's columns
MAX_FIELD_BYTES = 2000  # a custom field's value is indexed; PostgreSQL's limit is about 2.7 KB
SHORTEST_LIMIT = min(*MAX_LENGTHS.values(), MAX_CELL, MAX_FIELD_BYTES // 4)  # in characters
CHUNK_SIZE = 5000
SQLITE_CACHE_KIB = 32 * 1024
SQLITE_PAUSE = 0.01  # seconds between chunks, longer than a waiting BEGIN's poll (app.db)


class ImportFileError(ValueError):
    """The file as a whole cannot be imported (no header, no phone/email column, not CSV)."""


class ImportStopped(RuntimeError):
    """The database refused a chunk: the lines before ``report.stopped_at`` are imported."""

    def __init__(self, report: ImportReport, reason: str) -> None:
        super().__init__(f"stopped at line {report.stopped_at}: {reason}")
        self.report = report
        self.reason = reason


@dataclass(frozen=True)
class RowError:
    line: int
    reason: str


@dataclass
class ParsedRow:
    line: int
    phone: str | None
    email: str | None
    first_name: str | None
    last_name: str | None
    zip: str | None
    tags: list[str]
    fields: dict[str, str]
    consent: frozenset[str]


@dataclass
class ImportReport:
    rows: int = 0
    created: int = 0
    merged: int = 0  # rows that named a person already known (in the file or the database)
    subscribed: dict[str, int] = field(default_factory=lambda: {m.SMS: 0, m.EMAIL: 0})
    kept_opted_out: int = 0  # consent asserted, but the person had opted out: left alone
    suppressed: int = 0  # consent asserted for a suppressed address: not subscribed
    errors: list[RowError] = field(default_factory=list)
    stopped_at: int | None = None  # the first line not imported, when the database stopped it

    def add(self, other: ImportReport) -> None:
        """Fold in what a committed chunk did."""
        self.rows += other.rows
        self.created += other.created
        self.merged += other.merged
        self.kept_opted_out += other.kept_opted_out
        self.suppressed += other.suppressed
        for channel, count in other.subscribed.items():
            self.subscribed[channel] += count
        self.errors.extend(other.errors)

    @property
    def imported(self) -> int:
        return self.rows - len(self.errors)


def parse_consent_option(text: str | None) -> frozenset[str]:
    if not text:
        return frozenset()
    channels = {part.strip().lower() for part in text.split(",") if part.strip()}
    unknown = channels - set(m.CHANNELS)
    if unknown:
        raise ImportFileError(f"--consent takes sms and/or email, not {', '.join(sorted(unknown))}")
    return frozenset(channels)


def parse_rows(
    text: TextIO, *, consent_default: frozenset[str], default_region: str, start_line: int = 0
) -> Iterator[ParsedRow | RowError]:
    """Validate rows one by one; yields a ParsedRow or the RowError that explains the line.

    Lines before ``start_line`` are skipped unread: an import resumed where it stopped.
    """
    reader = csv.reader(text)
    columns = read_header(reader)
    while True:
        try:
            cells = next(reader)
        except StopIteration:
            return
        except csv.Error as exc:
            if reader.line_num >= start_line:
                yield RowError(reader.line_num, f"unreadable CSV: {exc}")
            continue
        line = reader.line_num
        if line < start_line or not any(cell.strip() for cell in cells):
            continue
        if len(cells) != len(columns):
            yield RowError(line, f"expected {len(columns)} cells, found {len(cells)}")
            continue
        yield _parse_row(
            line, dict(zip(columns, cells, strict=True)), consent_default, default_region
        )


def read_header(reader: Iterator[list[str]]) -> list[str]:
    """The column names, checked; raises ImportFileError for a file that cannot be imported."""
    try:
        header = next(reader)
    except StopIteration:
        raise ImportFileError("the file is empty") from None
    except csv.Error as exc:
        raise ImportFileError(f"not a CSV file: {exc}") from None
    columns = [h.strip().lower().replace(" ", "_").lstrip("\ufeff") for h in header]
    if "phone" not in columns and "email" not in columns:
        raise ImportFileError("the header must have a phone or an email column")
    duplicates = {col for col in columns if columns.count(col) > 1}
    if duplicates:
        raise ImportFileError(f"the header repeats column(s): {', '.join(sorted(duplicates))}")
    for col in columns:
        if col not in KNOWN_COLUMNS and not m.FIELD_NAME.fullmatch(col):
            raise ImportFileError(
                f"column {col!r} is neither a known column nor a valid custom field name"
            )
    return columns


def _over_a_limit(line: int, values: dict[str, str]) -> RowError | None:
    for name, value in values.items():
        limit = MAX_LENGTHS.get(name, MAX_CELL)
        if len(value) > limit:
            return RowError(line, f"{name} is longer than {limit} characters")
        if "\x00" in value:
            return RowError(line, f"{name} contains a NUL character")
        if name not in KNOWN_COLUMNS and len(value.encode()) > MAX_FIELD_BYTES:
            return RowError(line, f"{name} is longer than {MAX_FIELD_BYTES} bytes")
    return None


def _parse_row(
    line: int, row: dict[str, str], consent_default: frozenset[str], default_region: str
) -> ParsedRow | RowError:
    values = {k: v.strip() for k, v in row.items()}
    joined = "".join(values.values())
    if len(joined) > SHORTEST_LIMIT or "\x00" in joined:  # else no cell can be over a limit
        refused = _over_a_limit(line, values)
        if refused is not None:
            return refused
    phone = email = None
    if values.get("phone"):
        try:
            phone = normalize_phone(values["phone"], default_region)
        except InvalidPhoneNumber as exc:
            return RowError(line, f"phone {values['phone']!r}: {exc.reason}")
    if values.get("email"):
        try:
            email = normalize_email(values["email"])
        except InvalidEmail as exc:
            return RowError(line, f"email {values['email']!r}: {exc.reason}")
    if phone is None and email is None:
        return RowError(line, "needs a phone or an email")
    zip_text = values.get("zip") or None
    zip_code = normalize_zip(zip_text) if zip_text else None
    if zip_text and zip_code is None:
        return RowError(line, f"zip {zip_text!r} must be 5 digits (or ZIP+4)")
    tags = [t.strip().lower() for t in re.split(r"[;,|]", values.get("tags", "")) if t.strip()]
    bad_tags = [t for t in tags if not TAG.match(t)]
    if bad_tags:
        return RowError(line, f"tag {bad_tags[0]!r} must be letters, digits, - or _")
    chosen = set(consent_default)
    for channel in m.CHANNELS:
        column = f"{channel}_consent"
        if column in values:
            answer = values[column].lower()
            if answer in _YES:
                chosen.add(channel)
            elif answer in _NO and answer != "":
                chosen.discard(channel)
            elif answer != "":
                return RowError(line, f"{column} must be yes or no, not {values[column]!r}")
    if m.SMS in chosen and phone is None:
        chosen.discard(m.SMS)
    if m.EMAIL in chosen and email is None:
        chosen.discard(m.EMAIL)
    return ParsedRow(
        line=line,
        phone=phone,
        email=email,
        first_name=values.get("first_name") or None,
        last_name=values.get("last_name") or None,
        zip=zip_code,
        tags=list(dict.fromkeys(tags)),
        fields={k: v for k, v in values.items() if k not in KNOWN_COLUMNS and v},
        consent=frozenset(chosen),
    )


def import_members(
    engine: Engine,
    *,
    huddle_slug: str,
    source: TextIO | Path,
    source_name: str | None = None,
    consent_channels: frozenset[str] = frozenset(),
    default_region: str = "US",
    actor: str | None = None,
    progress: Callable[[Progress], None] | None = None,
    on_commit: Callable[[Connection, Checkpoint], None] | None = None,
    start_line: int = 0,
    chunk_size: int = CHUNK_SIZE,
) -> ImportReport:
    """Import a CSV into a huddle; returns what happened, row errors included.

    Each chunk of rows commits on its own, so inbound texts never wait long for the database
    while a big file goes in. If the database fails mid-file, the report says which lines went in
    (``stopped_at``); running the same file again finishes it and changes nothing already done.
    ``on_commit`` runs inside each chunk's transaction, so what it writes (where a background
    import stands) commits with the chunk or not at all; ``start_line`` resumes from there.
    """
    if isinstance(source, Path):
        name = source_name or source.name
        with source.open(encoding="utf-8-sig", newline="") as handle:
            return import_members(
                engine,
                huddle_slug=huddle_slug,
                source=handle,
                source_name=name,
                consent_channels=consent_channels,
                default_region=default_region,
                actor=actor,
                progress=progress,
                on_commit=on_commit,
                start_line=start_line,
                chunk_size=chunk_size,
            )
    with Session(engine) as session:
        huddle = get_huddle(session, huddle_slug)
        target = _Target(huddle.id, huddle.sender_key, source_name or "upload.csv", actor)
    report = ImportReport()
    parsed = parse_rows(
        source,
        consent_default=consent_channels,
        default_region=default_region,
        start_line=start_line,
    )
    with engine.connect() as conn:
        with conn.begin():
            _tune(conn)
            merge.create_staging(conn)
        statistics = _Statistics(conn)
        pause = SQLITE_PAUSE if conn.dialect.name == "sqlite" else 0.0
        try:
            for batch in _read_ahead(_batches(parsed, chunk_size)):
                bytes_read = _bytes_read(source)
                _write_batch(conn, batch, target, report, on_commit, bytes_read)
                time.sleep(pause)  # the write lock is free: a waiting STOP takes it now
                statistics.follow(report.created)
                if progress:
                    progress(Progress(report.rows, bytes_read))
        finally:
            with conn.begin():
                merge.drop_staging(conn)
    report.errors.sort(key=lambda e: e.line)
    return report


@dataclass(frozen=True)
class Progress:
    rows: int
    bytes_read: int | None  # of the file, when it is a file: for a progress bar


@dataclass(frozen=True)
class Checkpoint:
    """What one committed chunk adds: its counts and row errors, and where the next one starts."""

    next_line: int
    bytes_read: int | None
    added: ImportReport


@dataclass(frozen=True)
class _Target:
    huddle_id: int
    scope: str
    source_name: str
    actor: str | None


def _bytes_read(source: TextIO) -> int | None:
    buffer = getattr(source, "buffer", None)
    try:
        return buffer.tell() if buffer is not None else None
    except (OSError, ValueError):
        return None


@dataclass
class _Batch:
    rows: list[ParsedRow]  # valid ones
    read: int  # lines read, valid or not
    errors: list[RowError]
    first_line: int = 0
    last_line: int = 0


def _batches(parsed: Iterable[ParsedRow | RowError], size: int) -> Iterator[_Batch]:
    batch = _Batch([], 0, [])
    for row in parsed:
        if not batch.read:
            batch.first_line = row.line
        batch.read += 1
        batch.last_line = row.line
        if isinstance(row, RowError):
            batch.errors.append(row)
        else:
            batch.rows.append(row)
            if len(batch.rows) >= size:
                yield batch
                batch = _Batch([], 0, [])
    if batch.read:
        yield batch


def _read_ahead(batches: Iterator[_Batch]) -> Iterator[_Batch]:
    """Yield each batch while the next is read in a thread, so reading and writing overlap.

    The database drivers let go of the interpreter while a statement runs; reading the file is
    Python. One thread at a time advances the file, one batch ahead.
    """
    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="import-read") as pool:
        pending = pool.submit(next, batches, None)
        while (batch := pending.result()) is not None:
            pending = pool.submit(next, batches, None)
            yield batch


class _Statistics:
    """Keep PostgreSQL's planner statistics up with an import that doubles the tables it grows.

    Autovacuum catches up minutes later; until then the planner believes the members and
    subscriptions tables are as small as they were and plans scans of what is now a million rows.
    """

    TABLES = "members, subscriptions, member_tags, member_fields"

    def __init__(self, conn: Connection) -> None:
        self.conn = conn
        self.enabled = conn.dialect.name == "postgresql"
        self.members = 0
        if self.enabled:
            with conn.begin():
                self.members = conn.execute(select(func.count()).select_from(Member)).scalar_one()
        self.analyzed_at = self.members

    def follow(self, created: int) -> None:
        if self.enabled and self.members + created > 2 * self.analyzed_at:
            with self.conn.begin():
                self.conn.exec_driver_sql(f"ANALYZE {self.TABLES}")
            self.analyzed_at = self.members + created


def _tune(conn: Connection) -> None:
    """A bigger page cache for this connection on SQLite: the members' indexes outgrow 2 MiB."""
    if conn.dialect.name == "sqlite":
        conn.exec_driver_sql(f"PRAGMA cache_size = -{SQLITE_CACHE_KIB}")


def _write_batch(
    conn: Connection,
    batch: _Batch,
    target: _Target,
    report: ImportReport,
    on_commit: Callable[[Connection, Checkpoint], None] | None,
    bytes_read: int | None,
) -> None:
    """Write a batch in one transaction; if a concurrent writer got in the way, read it again.

    Counts go into a scratch report that is added to ``report`` only once its transaction has
    committed, so a retried batch is not counted twice. A batch refused twice is written row by
    row, so one conflicting row cannot take the others down with it. Any other refusal stops the
    import: the lines before the batch are in, and the report says so.
    """
    added = ImportReport(rows=batch.read, errors=list(batch.errors))
    next_line = batch.last_line + 1
    if batch.rows:
        for _attempt in range(2):
            try:
                with conn.begin():
                    partial = _merge(conn, batch.rows, target)
                    partial.rows = batch.read
                    partial.errors[:0] = batch.errors
                    if on_commit:
                        on_commit(conn, Checkpoint(next_line, bytes_read, partial))
            except IntegrityError:
                continue
            except DBAPIError as exc:
                report.stopped_at = batch.first_line
                raise ImportStopped(report, str(exc.orig).strip()) from exc
            report.add(partial)
            return
        for row in batch.rows:
            added.add(_write_row(conn, row, target))
    if on_commit:
        with conn.begin():
            on_commit(conn, Checkpoint(next_line, bytes_read, added))
    report.add(added)


def _write_row(conn: Connection, row: ParsedRow, target: _Target) -> ImportReport:
    """One row of a batch that kept meeting concurrent writers, in its own transaction."""
    refusal: IntegrityError | None = None
    for _attempt in range(2):
        try:
            with conn.begin():
                return _merge(conn, [row], target)
        except IntegrityError as exc:
            refusal = exc
    reason = str(refusal.orig if refusal else "").strip()
    return ImportReport(
        errors=[RowError(row.line, f"conflicts with a concurrent change: {reason}")]
    )


def _merge(conn: Connection, rows: list[ParsedRow], target: _Target) -> ImportReport:
    partial = ImportReport()
    resolved = merge.resolve(conn, rows)
    partial.errors.extend(RowError(line, reason) for line, reason in resolved.conflicts)
    partial.created = resolved.created
    partial.merged = resolved.merged
    merge.write(
        conn,
        resolved,
        huddle_id=target.huddle_id,
        scope=target.scope,
        source_name=target.source_name,
        actor=target.actor,
        now=utcnow(),
        report=partial,
    )
    return partial


EXPORT_COLUMNS = (
    "phone",
    "email",
    "first_name",
    "last_name",
    "zip",
    "tags",
    "sms_status",
    "email_status",
)


def export_members(session: Session, huddle: Huddle, out: TextIO) -> int:
    """Write the huddle's members as CSV, consent state ``none`` where there is none; returns the
    count."""
    count = -1  # the header
    for text in export_lines(session, huddle):
        out.write(text)
        count += text.count("\n")
    return count


def export_lines(session: Session, huddle: Huddle) -> Iterator[str]:
    """The export's CSV text, a thousand members at a time (a response streams it)."""
    out = io.StringIO(newline="")
    writer = csv.writer(out)
    writer.writerow(EXPORT_COLUMNS)
    member_ids = select(HuddleMember.member_id).where(HuddleMember.huddle_id == huddle.id)
    query = (
        select(Member)
        .where(Member.id.in_(member_ids))
        .order_by(Member.id)
        .execution_options(yield_per=1000)
    )
    for partition in session.scalars(query).partitions():
        ids = [member.id for member in partition]
        states: dict[tuple[int, str], str] = {
            (mid, ch): st
            for mid, ch, st in session.execute(
                select(Subscription.member_id, Subscription.channel, Subscription.state).where(
                    Subscription.huddle_id == huddle.id, Subscription.member_id.in_(ids)
                )
            )
        }
        tag_map: dict[int, list[str]] = {}
        for mid, tag in session.execute(
            select(MemberTag.member_id, MemberTag.tag)
            .where(MemberTag.huddle_id == huddle.id, MemberTag.member_id.in_(ids))
            .order_by(MemberTag.tag)
        ):
            tag_map.setdefault(mid, []).append(tag)
        for member in partition:
            writer.writerow(
                [
                    member.phone or "",
                    _csv_safe(member.email),
                    _csv_safe(member.first_name),
                    _csv_safe(member.last_name),
                    member.zip or "",
                    _csv_safe(";".join(tag_map.get(member.id, []))),
                    states.get((member.id, m.SMS), m.NO_CONSENT),
                    states.get((member.id, m.EMAIL), m.NO_CONSENT),
                ]
            )
        yield out.getvalue()
        out.seek(0)
        out.truncate()
    if out.tell():
        yield out.getvalue()


def _csv_safe(value: str | None) -> str:
    """Defuse spreadsheet formulas in what people typed: names, emails, tags (CSV injection)."""
    if not value:
        return ""
    return "'" + value if value[0] in "=+-@\t\r" else value


def read_text(data: bytes) -> io.StringIO:
    """Decode an uploaded file (UTF-8, with or without BOM; Latin-1 as a fallback)."""
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError:
        text = data.decode("latin-1")
    return io.StringIO(text, newline="")
