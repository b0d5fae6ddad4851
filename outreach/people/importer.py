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
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TextIO

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, sessionmaker

from outreach import consent
from outreach.addresses.emails import InvalidEmail, normalize_email
from outreach.addresses.phones import InvalidPhoneNumber, normalize_phone
from outreach.addresses.zips import normalize_zip
from outreach.app.clock import utcnow
from outreach.models import Huddle, Member, MemberField, MemberTag, Subscription, Suppression
from outreach.models import consent as c
from outreach.models import members as m
from outreach.people.huddles import get_huddle

KNOWN_COLUMNS = frozenset(
    {"phone", "email", "first_name", "last_name", "zip", "tags", "sms_consent", "email_consent"}
)
_YES = frozenset({"y", "yes", "true", "1", "x"})
_NO = frozenset({"n", "no", "false", "0", ""})
_TAG = re.compile(r"^[a-z0-9][a-z0-9_\-]{0,63}$")
MAX_CELL = 1000
CHUNK_SIZE = 1000


class ImportFileError(ValueError):
    """The file as a whole cannot be imported (no header, no phone/email column, not CSV)."""


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

    def add(self, other: ImportReport) -> None:
        """Fold in the counts (not the row total) of a committed chunk."""
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
    text: TextIO, *, consent_default: frozenset[str], default_region: str
) -> Iterator[ParsedRow | RowError]:
    """Validate rows one by one; yields a ParsedRow or the RowError that explains the line."""
    reader = csv.reader(text)
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
    while True:
        try:
            cells = next(reader)
        except StopIteration:
            return
        except csv.Error as exc:
            yield RowError(reader.line_num, f"unreadable CSV: {exc}")
            continue
        line = reader.line_num
        if not any(cell.strip() for cell in cells):
            continue
        if len(cells) != len(columns):
            yield RowError(line, f"expected {len(columns)} cells, found {len(cells)}")
            continue
        yield _parse_row(
            line, dict(zip(columns, cells, strict=True)), consent_default, default_region
        )


def _parse_row(
    line: int, row: dict[str, str], consent_default: frozenset[str], default_region: str
) -> ParsedRow | RowError:
    values = {k: v.strip() for k, v in row.items()}
    too_long = [k for k, v in values.items() if len(v) > MAX_CELL]
    if too_long:
        return RowError(line, f"{too_long[0]} is longer than {MAX_CELL} characters")
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
    bad_tags = [t for t in tags if not _TAG.match(t)]
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
    factory: sessionmaker[Session],
    *,
    huddle_slug: str,
    source: TextIO | Path,
    source_name: str | None = None,
    consent_channels: frozenset[str] = frozenset(),
    default_region: str = "US",
    actor: str | None = None,
    progress: Callable[[int], None] | None = None,
    chunk_size: int = CHUNK_SIZE,
) -> ImportReport:
    """Import a CSV into a huddle; returns what happened, row errors included."""
    if isinstance(source, Path):
        name = source_name or source.name
        with source.open(encoding="utf-8-sig", newline="") as handle:
            return import_members(
                factory,
                huddle_slug=huddle_slug,
                source=handle,
                source_name=name,
                consent_channels=consent_channels,
                default_region=default_region,
                actor=actor,
                progress=progress,
                chunk_size=chunk_size,
            )
    name = source_name or "upload.csv"
    with factory() as session:
        huddle_id = get_huddle(session, huddle_slug).id
    report = ImportReport()
    chunk: list[ParsedRow] = []
    rows = parse_rows(source, consent_default=consent_channels, default_region=default_region)
    for item in _count(rows, report):
        if isinstance(item, RowError):
            report.errors.append(item)
            continue
        chunk.append(item)
        if len(chunk) >= chunk_size:
            _write_chunk(factory, huddle_id, chunk, source_name=name, actor=actor, report=report)
            chunk = []
            if progress:
                progress(report.rows)
    if chunk:
        _write_chunk(factory, huddle_id, chunk, source_name=name, actor=actor, report=report)
    if progress:
        progress(report.rows)
    report.errors.sort(key=lambda e: e.line)
    return report


def _count(
    rows: Iterable[ParsedRow | RowError], report: ImportReport
) -> Iterator[ParsedRow | RowError]:
    for row in rows:
        report.rows += 1
        yield row


def _write_chunk(
    factory: sessionmaker[Session],
    huddle_id: int,
    chunk: list[ParsedRow],
    *,
    source_name: str,
    actor: str | None,
    report: ImportReport,
) -> None:
    """Write a chunk in one transaction; if the database refuses it, retry row by row.

    Counts go into a scratch report that is added to ``report`` only once its transaction has
    committed, so a retried chunk is not counted twice.
    """
    try:
        with factory() as session, session.begin():
            partial = _apply_rows(session, huddle_id, chunk, source_name=source_name, actor=actor)
        report.add(partial)
    except IntegrityError:
        # A concurrent writer took an address between our lookup and insert. Redo each row in
        # its own transaction, so one conflicting row cannot take the others down with it.
        for row in chunk:
            try:
                with factory() as session, session.begin():
                    partial = _apply_rows(
                        session, huddle_id, [row], source_name=source_name, actor=actor
                    )
                report.add(partial)
            except IntegrityError as exc:
                report.errors.append(
                    RowError(row.line, f"conflicts with a concurrent change: {exc.orig}")
                )


def _apply_rows(
    session: Session,
    huddle_id: int,
    rows: list[ParsedRow],
    *,
    source_name: str,
    actor: str | None,
) -> ImportReport:
    report = ImportReport()
    huddle = session.get_one(Huddle, huddle_id)
    phones = {r.phone for r in rows if r.phone}
    emails = {r.email for r in rows if r.email}
    by_phone: dict[str, Member] = {}
    by_email: dict[str, Member] = {}
    if phones or emails:
        for member in session.scalars(
            select(Member).where(Member.phone.in_(phones) | Member.email.in_(emails))
        ):
            if member.phone:
                by_phone[member.phone] = member
            if member.email:
                by_email[member.email] = member
    suppressed = _suppressed_addresses(session, phones | emails, huddle.sender_key)

    touched: list[tuple[ParsedRow, Member]] = []
    for row in rows:
        a = by_phone.get(row.phone) if row.phone else None
        b = by_email.get(row.email) if row.email else None
        if a is not None and b is not None and a is not b:
            report.errors.append(
                RowError(row.line, "phone and email belong to two different members")
            )
            continue
        found = a or b
        if found is None:
            member = Member(created_at=utcnow())
            session.add(member)
            report.created += 1
        else:
            member = found
            report.merged += 1
        if row.phone and member.phone is None:
            member.phone = row.phone
        if row.email and member.email is None:
            member.email = row.email
        member.first_name = member.first_name or row.first_name
        member.last_name = member.last_name or row.last_name
        member.zip = member.zip or row.zip
        if member.phone:
            by_phone[member.phone] = member
        if member.email:
            by_email[member.email] = member
        touched.append((row, member))
    session.flush()

    member_ids = {member.id for _, member in touched}
    subscriptions = {
        (row.member_id, row.channel): consent.SubscriptionState(*row)
        for row in session.execute(
            select(
                Subscription.id,
                Subscription.member_id,
                Subscription.huddle_id,
                Subscription.channel,
                Subscription.state,
                Subscription.conversation_step,
            ).where(Subscription.huddle_id == huddle_id, Subscription.member_id.in_(member_ids))
        )
    }
    tags: set[tuple[int, str]] = {
        (member_id, tag)
        for member_id, tag in session.execute(
            select(MemberTag.member_id, MemberTag.tag).where(
                MemberTag.huddle_id == huddle_id, MemberTag.member_id.in_(member_ids)
            )
        )
    }
    fields: set[tuple[int, str]] = {
        (member_id, name)
        for member_id, name in session.execute(
            select(MemberField.member_id, MemberField.name).where(
                MemberField.huddle_id == huddle_id, MemberField.member_id.in_(member_ids)
            )
        )
    }
    for row, member in touched:
        for tag in row.tags:
            if (member.id, tag) not in tags:
                session.add(MemberTag(huddle_id=huddle_id, member_id=member.id, tag=tag))
                tags.add((member.id, tag))
        for name, value in row.fields.items():
            if (member.id, name) not in fields:
                session.add(
                    MemberField(huddle_id=huddle_id, member_id=member.id, name=name, value=value)
                )
                fields.add((member.id, name))
        for channel in sorted(row.consent):
            address = consent.address_for(member, channel)
            if address is None:
                continue
            existing = subscriptions.get((member.id, channel))
            if existing is not None and existing.state == m.OPTED_OUT:
                report.kept_opted_out += 1
                continue
            if existing is not None and existing.state == m.ACTIVE:
                continue
            if address in suppressed:
                report.suppressed += 1
                continue
            consent.move_subscription(
                session,
                existing,
                member_id=member.id,
                huddle_id=huddle_id,
                channel=channel,
                address=address,
                state=m.ACTIVE,
                provenance=consent.Provenance(
                    source=c.SOURCE_IMPORT, detail=f"{source_name} line {row.line}", actor=actor
                ),
            )
            subscriptions[(member.id, channel)] = consent.SubscriptionState(
                0, member.id, huddle_id, channel, m.ACTIVE, None
            )  # a later row for the same person finds them subscribed
            report.subscribed[channel] += 1
    return report


def _suppressed_addresses(session: Session, addresses: set[str], scope: str) -> set[str]:
    if not addresses:
        return set()
    return set(
        session.scalars(
            select(Suppression.address).where(
                Suppression.address.in_(addresses),
                Suppression.scope.in_([c.ALL_SENDERS, scope]),
                Suppression.lifted_at.is_(None),
            )
        )
    )


def export_members(session: Session, huddle: Huddle, out: TextIO) -> int:
    """Write the huddle's members (anyone with a subscription in it) as CSV; returns the count."""
    writer = csv.writer(out)
    writer.writerow(
        ["phone", "email", "first_name", "last_name", "zip", "tags", "sms_status", "email_status"]
    )
    member_ids = select(Subscription.member_id).where(Subscription.huddle_id == huddle.id)
    count = 0
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
                    member.email or "",
                    _csv_safe(member.first_name),
                    _csv_safe(member.last_name),
                    member.zip or "",
                    ";".join(tag_map.get(member.id, [])),
                    states.get((member.id, m.SMS), ""),
                    states.get((member.id, m.EMAIL), ""),
                ]
            )
            count += 1
    return count


def _csv_safe(value: str | None) -> str:
    """Defuse spreadsheet formulas in names people typed (CSV injection)."""
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
