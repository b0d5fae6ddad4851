"""The huddles on each number we are texted on, kept by each process between texts.

Huddles and their join keywords are configuration an organizer changes a few times a day, not
consent, and every text needs them (its keywords, its replies' copy). So each process keeps them
per number texted and checks one value per text instead of reading them again: the stamp of
``huddle_directory_stamp``, which database triggers change on every write to ``huddles`` or
``join_keywords``, whoever writes (migration 0006). A missing stamp row means "never reuse".
"""

from __future__ import annotations

import weakref
from collections.abc import Mapping
from typing import cast

from sqlalchemy import Connection, Engine, Table, bindparam, or_, select

from outreach.models import Huddle, HuddleDirectoryStamp, JoinKeyword

Number = tuple[str, str | None]  # the number texted (E.164), its Messaging Service SID if any

_HUDDLES = cast(Table, Huddle.__table__)
_KEYWORDS = cast(Table, JoinKeyword.__table__)
_STAMP = select(cast(Table, HuddleDirectoryStamp.__table__).c.stamp)
_ON_NUMBER = (
    select(_HUDDLES, _KEYWORDS.c.keyword)
    .outerjoin(_KEYWORDS, _KEYWORDS.c.huddle_id == _HUDDLES.c.id)
    .order_by(_HUDDLES.c.id, _KEYWORDS.c.keyword)
)
_BY_NUMBER = _ON_NUMBER.where(_HUDDLES.c.sender_number == bindparam("number"))
_BY_NUMBER_OR_SERVICE = _ON_NUMBER.where(
    or_(
        _HUDDLES.c.sender_number == bindparam("number"),
        _HUDDLES.c.messaging_service_sid == bindparam("service"),
    )
)
LIMIT = 1024  # numbers kept per process; Twilio only posts ours (signed), so a few


class NumberHuddles:
    """The huddles on one number texted (or its Messaging Service), as read at one stamp.

    Shared by a process's threads: nothing here changes after it is built. The huddles are
    ``Huddle`` objects in no session, which is what their copy (``outreach.messages.copy``) reads.
    """

    def __init__(self, stamp: int | None, huddles: Mapping[int, tuple[Huddle, list[str]]]) -> None:
        self.stamp = stamp
        self.huddles = {huddle_id: huddle for huddle_id, (huddle, _) in huddles.items()}
        self.keywords_by_huddle = {huddle_id: words for huddle_id, (_, words) in huddles.items()}
        self.huddle_by_keyword = {k: hid for hid, (_, words) in huddles.items() for k in words}
        self.keywords = tuple(self.huddle_by_keyword)


def read_stamp(db: Connection) -> int | None:
    """The huddles' stamp; None if its row is missing."""
    stamp = db.execute(_STAMP).scalar()
    return None if stamp is None else int(stamp)


def read_huddles(db: Connection, number: Number) -> dict[int, tuple[Huddle, list[str]]]:
    """The huddles on the number texted (or its Messaging Service), by id, with their keywords."""
    to_e164, service = number
    if service:
        rows = db.execute(_BY_NUMBER_OR_SERVICE, {"number": to_e164, "service": service})
    else:
        rows = db.execute(_BY_NUMBER, {"number": to_e164})
    huddles: dict[int, tuple[Huddle, list[str]]] = {}
    for row in rows:  # ordered by huddle id, then keyword
        values = row._mapping
        found = huddles.get(values["id"])
        if found is None:
            columns = {key: values[key] for key in _HUDDLES.c.keys()}  # noqa: SIM118 (a column collection)
            found = huddles[values["id"]] = (Huddle(**columns), [])
        if values["keyword"] is not None:
            found[1].append(values["keyword"])
    return huddles


class Directory:
    """This process's huddles by number texted, for one database."""

    def __init__(self) -> None:
        self._known: dict[Number, NumberHuddles] = {}

    def get(self, number: Number) -> NumberHuddles | None:
        return self._known.get(number)

    def current(self, db: Connection, number: Number) -> tuple[NumberHuddles, bool]:
        """The huddles on ``number`` as of ``db``'s transaction; True if they were read again."""
        stamp = read_stamp(db)
        known = self._known.get(number)
        if known is not None and known.stamp is not None and known.stamp == stamp:
            return known, False
        known = NumberHuddles(stamp, read_huddles(db, number))
        if stamp is not None:
            if len(self._known) >= LIMIT:
                self._known.clear()
            self._known[number] = known
        return known, True


_DIRECTORIES: weakref.WeakKeyDictionary[Engine, Directory] = weakref.WeakKeyDictionary()


def directory_for(engine: Engine) -> Directory:
    found = _DIRECTORIES.get(engine)
    if found is None:
        found = _DIRECTORIES.setdefault(engine, Directory())
    return found
