"""Saved segments: a named filter stored for a huddle, checked before it is written."""

from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.orm import Session

from outreach.campaigns.segments.parser import parse
from outreach.campaigns.segments.syntax import SegmentNameError, check_huddle
from outreach.models import Huddle, Segment


def save_segment(session: Session, *, huddle_id: int, name: str, filter_text: str) -> Segment:
    """Save a named filter for a huddle, after checking it parses and names no other huddle."""
    tree = parse(filter_text)
    huddle = session.get(Huddle, huddle_id)
    if huddle is None:
        raise LookupError(f"no huddle with id {huddle_id}")
    check_huddle(tree, huddle.slug)
    name = (name or "").strip()
    if not name:
        raise SegmentNameError("a segment needs a name")
    if len(name) > 100:
        raise SegmentNameError("a segment name has 100 characters at most")
    taken = session.scalar(
        select(Segment.id).where(Segment.huddle_id == huddle_id, Segment.name == name)
    )
    if taken is not None:
        raise SegmentNameError(f"huddle {huddle.slug} already has a segment named {name!r}")
    segment = Segment(huddle_id=huddle_id, name=name, filter=filter_text.strip())
    session.add(segment)
    session.flush()
    return segment
