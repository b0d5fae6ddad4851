"""One import chunk, written set-based: people resolved in Python, staged, merged with SQL.

A chunk is one transaction. Its rows are matched against the members already known (one query),
then walked in file order, so a person named twice (in the file or already known) becomes one
person, as a reader of the file would expect. The people are copied into temporary tables
(``COPY`` on PostgreSQL, one ``executemany`` on SQLite) and a few ``INSERT … SELECT`` statements
merge them: new members, blanks filled, tags and fields added (nothing overwritten), and a
subscription with its ledger row for each asserted channel that is neither opted out nor
suppressed. A chunk that names nothing new writes nothing.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Any, cast

from sqlalchemy import Connection, bindparam, text
from sqlalchemy.sql.elements import TextClause

from outreach.models import consent as c
from outreach.models import members as m
from outreach.models.base import UTCDateTime

if TYPE_CHECKING:  # the importer imports this module
    from outreach.people.importer import ImportReport, ParsedRow


@dataclass(slots=True, eq=False)
class Person:
    """A member as this chunk leaves them: ``member_id`` None until the merge inserts them."""

    key: int
    member_id: int | None
    phone: str | None
    email: str | None
    first_name: str | None
    last_name: str | None
    zip: str | None
    fills_blanks: bool = False  # a known member this file gives a missing value
    tags: dict[str, None] = field(default_factory=dict)  # ordered set
    fields: dict[str, str] = field(default_factory=dict)
    consent_lines: dict[str, int] = field(default_factory=dict)  # channel → first line asserting


@dataclass
class Resolved:
    people: list[Person]
    created: int
    merged: int
    conflicts: list[tuple[int, str]]  # (line, reason)


def resolve(conn: Connection, rows: Sequence[ParsedRow]) -> Resolved:
    """Match the chunk's rows to known members and to each other, in file order."""
    phones = {r.phone for r in rows if r.phone}
    emails = {r.email for r in rows if r.email}
    by_phone: dict[str, Person] = {}
    by_email: dict[str, Person] = {}
    people: list[Person] = []
    postgres = conn.dialect.name == "postgresql"
    known = _KNOWN_POSTGRES if postgres else _KNOWN_SQLITE
    lists: dict[str, Any] = {"phones": sorted(phones), "emails": sorted(emails)}
    if not postgres:
        lists = {name: json.dumps(values) for name, values in lists.items()}
    for member_id, phone, email, first_name, last_name, zip_code in conn.execute(known, lists):
        person = Person(len(people), member_id, phone, email, first_name, last_name, zip_code)
        people.append(person)
        if phone:
            by_phone[phone] = person
        if email:
            by_email[email] = person
    touched: dict[int, Person] = {}
    created = merged = 0
    conflicts: list[tuple[int, str]] = []
    for row in rows:
        a = by_phone.get(row.phone) if row.phone else None
        b = by_email.get(row.email) if row.email else None
        if a is not None and b is not None and a is not b:
            conflicts.append((row.line, "phone and email belong to two different members"))
            continue
        found = a or b
        if found is None:
            person = Person(
                len(people), None, row.phone, row.email, row.first_name, row.last_name, row.zip
            )
            people.append(person)
            created += 1
        else:
            person = found
            merged += 1
            _fill(person, row)
        if person.phone:
            by_phone[person.phone] = person
        if person.email:
            by_email[person.email] = person
        person.tags.update(dict.fromkeys(row.tags))
        for name, value in row.fields.items():
            person.fields.setdefault(name, value)
        for channel in row.consent:
            if (person.phone if channel == m.SMS else person.email) is not None:
                person.consent_lines.setdefault(channel, row.line)
        touched[person.key] = person
    return Resolved(list(touched.values()), created, merged, conflicts)


# The chunk's addresses go as two array parameters, not 10,000 placeholders: compiling and
# binding that many cost more than the lookup itself.
_KNOWN_COLUMNS = "SELECT id, phone, email, first_name, last_name, zip FROM members"
_KNOWN_POSTGRES = text(
    f"""{_KNOWN_COLUMNS} WHERE phone = ANY(CAST(:phones AS VARCHAR[]))
    OR email = ANY(CAST(:emails AS VARCHAR[]))"""
)
_KNOWN_SQLITE = text(
    f"""{_KNOWN_COLUMNS} WHERE phone IN (SELECT value FROM json_each(:phones))
    OR email IN (SELECT value FROM json_each(:emails))"""
)


def _fill(person: Person, row: ParsedRow) -> None:
    for name in ("phone", "email", "first_name", "last_name", "zip"):
        value = getattr(row, name)
        if value is not None and getattr(person, name) is None:
            setattr(person, name, value)
            person.fills_blanks = person.member_id is not None


_STAGING = (
    """CREATE TEMPORARY TABLE IF NOT EXISTS import_people (
        k INTEGER PRIMARY KEY, member_id BIGINT, phone VARCHAR(20), email VARCHAR(254),
        first_name VARCHAR(100), last_name VARCHAR(100), zip VARCHAR(10), fills_blanks BOOLEAN,
        sms_line INTEGER, email_line INTEGER)""",
    "CREATE TEMPORARY TABLE IF NOT EXISTS import_tags (k INTEGER, tag VARCHAR(64))",
    "CREATE TEMPORARY TABLE IF NOT EXISTS import_fields (k INTEGER, name VARCHAR(64), value TEXT)",
)
_STAGING_TABLES = ("import_people", "import_tags", "import_fields")


def create_staging(conn: Connection) -> None:
    """The temporary tables live as long as ``conn``: one connection serves the whole import."""
    for statement in _STAGING:
        conn.exec_driver_sql(statement)


def drop_staging(conn: Connection) -> None:
    for table in _STAGING_TABLES:
        conn.exec_driver_sql(f"DROP TABLE IF EXISTS {table}")


def _stage(conn: Connection, people: list[Person]) -> None:
    postgres = conn.dialect.name == "postgresql"
    for table in _STAGING_TABLES:
        conn.exec_driver_sql(f"TRUNCATE {table}" if postgres else f"DELETE FROM {table}")
    people_rows = [
        (
            p.key,
            p.member_id,
            p.phone,
            p.email,
            p.first_name,
            p.last_name,
            p.zip,
            p.fills_blanks,
            p.consent_lines.get(m.SMS),
            p.consent_lines.get(m.EMAIL),
        )
        for p in people
    ]
    tag_rows = [(p.key, tag) for p in people for tag in p.tags]
    field_rows = [(p.key, name, value) for p in people for name, value in p.fields.items()]
    staged: list[tuple[str, str, Sequence[tuple[Any, ...]]]] = [
        (
            "import_people",
            "k, member_id, phone, email, first_name, last_name, zip, "
            "fills_blanks, sms_line, email_line",
            people_rows,
        ),
        ("import_tags", "k, tag", tag_rows),
        ("import_fields", "k, name, value", field_rows),
    ]
    if postgres:
        driver = cast(Any, conn.connection.driver_connection)
        with driver.cursor() as cursor:
            for table, columns, rows in staged:
                if rows:
                    with cursor.copy(f"COPY {table} ({columns}) FROM STDIN") as copy:
                        for row in rows:
                            copy.write_row(row)
        return
    cursor = cast(Any, conn.connection.driver_connection).cursor()
    try:
        for table, columns, rows in staged:
            if rows:
                marks = ", ".join("?" * (columns.count(",") + 1))
                cursor.executemany(f"INSERT INTO {table} ({columns}) VALUES ({marks})", rows)
    finally:
        cursor.close()


def _typed(sql: str) -> TextClause:
    return text(sql).bindparams(bindparam("now", type_=UTCDateTime()))


_INSERT_NEW = _typed(
    """INSERT INTO members (phone, email, first_name, last_name, zip, created_at)
    SELECT phone, email, first_name, last_name, zip, :now FROM import_people
    WHERE member_id IS NULL ORDER BY k"""
)
_NEW_IDS = tuple(
    text(
        f"""UPDATE import_people SET member_id =
            (SELECT id FROM members WHERE members.{column} = import_people.{column})
        WHERE member_id IS NULL AND {column} IS NOT NULL"""
    )
    for column in ("phone", "email")
)
_FILL_BLANKS = text(
    "UPDATE members SET "
    + ", ".join(
        f"{column} = coalesce({column}, (SELECT p.{column} FROM import_people p "
        "WHERE p.member_id = members.id))"
        for column in ("phone", "email", "first_name", "last_name", "zip")
    )
    + " WHERE id IN (SELECT member_id FROM import_people WHERE fills_blanks)"
)
_HOLD = _typed(
    """INSERT INTO huddle_members (huddle_id, member_id, source, created_at)
    SELECT :huddle_id, member_id, 'import', :now FROM import_people
    WHERE true ON CONFLICT (huddle_id, member_id) DO NOTHING"""
)
_ADD_TAGS = text(
    """INSERT INTO member_tags (huddle_id, member_id, tag)
    SELECT :huddle_id, p.member_id, t.tag FROM import_tags t JOIN import_people p ON p.k = t.k
    WHERE true ON CONFLICT (huddle_id, member_id, tag) DO NOTHING"""
)
_ADD_FIELDS = text(
    """INSERT INTO member_fields (huddle_id, member_id, name, value)
    SELECT :huddle_id, p.member_id, f.name, f.value FROM import_fields f
    JOIN import_people p ON p.k = f.k
    WHERE true ON CONFLICT (huddle_id, member_id, name) DO NOTHING"""
)


def _asserted(channel: str) -> str:
    """People asserting ``channel``, their address, and their subscription's state in the huddle.

    The staged address is the member's: a known member's as read, with the blanks this file
    filled. The state is a subquery, not a join: one probe of the subscriptions' unique index per
    person, whatever the planner guesses of a temporary table it has no statistics for, or of
    tables this very import is growing faster than their statistics follow.
    """
    address = "phone" if channel == m.SMS else "email"
    return f"""FROM (SELECT p.k, p.member_id, p.{channel}_line AS line, p.{address} AS address,
            (SELECT s.state FROM subscriptions s WHERE s.member_id = p.member_id
                AND s.huddle_id = :huddle_id AND s.channel = '{channel}') AS state
        FROM import_people p WHERE p.{channel}_line IS NOT NULL AND p.{address} IS NOT NULL) a"""


def _suppressed() -> str:
    return f"""EXISTS (SELECT 1 FROM suppressions x WHERE x.address = a.address
        AND x.scope IN ('{c.ALL_SENDERS}', :scope) AND x.lifted_at IS NULL)"""


def _statements(channel: str, postgres: bool) -> tuple[TextClause, list[TextClause]]:
    """The counts (opted out, suppressed, to subscribe), and the statements that subscribe and
    write the ledger rows.

    The ledger rows are exactly the subscriptions that moved. PostgreSQL writes them from what the
    upsert returns, in one statement, so a STOP committed meanwhile is never overwritten nor
    recorded as consent; SQLite holds its write lock for the whole transaction, so what is read
    before the upsert is what the upsert sees.
    """
    address = "phone" if channel == m.SMS else "email"
    asserted = _asserted(channel)
    suppressed = _suppressed()
    movable = f"(a.state IS NULL OR a.state = '{m.PENDING}')"
    counts = text(
        f"""SELECT
            coalesce(sum(CASE WHEN a.state = '{m.OPTED_OUT}' THEN 1 ELSE 0 END), 0),
            coalesce(sum(CASE WHEN {movable} AND {suppressed} THEN 1 ELSE 0 END), 0),
            coalesce(sum(CASE WHEN {movable} AND NOT {suppressed} THEN 1 ELSE 0 END), 0)
        {asserted}"""
    )
    upsert = f"""INSERT INTO subscriptions (member_id, huddle_id, channel, state, created_at,
            updated_at)
        SELECT a.member_id, :huddle_id, '{channel}', '{m.ACTIVE}', :now, :now
        {asserted} WHERE {movable} AND NOT {suppressed}
        ON CONFLICT (member_id, huddle_id, channel) DO UPDATE
        SET state = '{m.ACTIVE}', updated_at = excluded.updated_at
        WHERE subscriptions.state = '{m.PENDING}'"""
    ledger_columns = (
        "consent_events (member_id, huddle_id, channel, address, action, source, detail, actor, "
        "created_at)"
    )
    ledger_values = f"""a.member_id, :huddle_id, '{channel}', a.address, '{c.OPT_IN}',
        '{c.SOURCE_IMPORT}', CAST(:source AS TEXT) || ' line ' || a.line, CAST(:actor AS TEXT),
        :now"""
    if postgres:
        write = f"""WITH moved AS ({upsert} RETURNING member_id)
            INSERT INTO {ledger_columns}
            SELECT {ledger_values} FROM moved
            JOIN (SELECT p.k, p.member_id, p.{channel}_line AS line, p.{address} AS address
                FROM import_people p) a ON a.member_id = moved.member_id
            ORDER BY a.k"""
        return counts, [_typed(write)]
    ledger = f"""INSERT INTO {ledger_columns} SELECT {ledger_values}
        {asserted} WHERE {movable} AND NOT {suppressed} ORDER BY a.k"""
    return counts, [_typed(ledger), _typed(upsert)]


def write(
    conn: Connection,
    resolved: Resolved,
    *,
    huddle_id: int,
    scope: str,
    source_name: str,
    actor: str | None,
    now: datetime,
    report: ImportReport,
) -> None:
    """Merge the resolved people into the database (inside the caller's transaction)."""
    if not resolved.people:
        return
    postgres = conn.dialect.name == "postgresql"
    _stage(conn, resolved.people)
    if resolved.created:
        conn.execute(_INSERT_NEW, {"now": now})
        for statement in _NEW_IDS:
            conn.execute(statement)
    if any(p.fills_blanks for p in resolved.people):
        conn.execute(_FILL_BLANKS)
    conn.execute(_HOLD, {"huddle_id": huddle_id, "now": now})
    if any(p.tags for p in resolved.people):
        conn.execute(_ADD_TAGS, {"huddle_id": huddle_id})
    if any(p.fields for p in resolved.people):
        conn.execute(_ADD_FIELDS, {"huddle_id": huddle_id})
    params = {
        "huddle_id": huddle_id,
        "scope": scope,
        "source": source_name,
        "actor": actor,
        "now": now,
    }
    for channel in m.CHANNELS:
        if not any(channel in p.consent_lines for p in resolved.people):
            continue
        counts, statements = _statements(channel, postgres)
        opted_out, suppressed, movable = conn.execute(counts, params).one()
        report.kept_opted_out += int(opted_out)
        report.suppressed += int(suppressed)
        if not movable:  # a re-import: everyone asserted is subscribed already
            continue
        moved = [conn.execute(statement, params).rowcount for statement in statements]
        report.subscribed[channel] += moved[0]
