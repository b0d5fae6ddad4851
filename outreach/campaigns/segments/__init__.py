"""Segments: the small filter language organizers use to pick an audience inside their huddle.

    huddle:logan tag:volunteer -tag:donor zip:200* joined>2026-01-01 replied<30d field:language=es

A filter is parsed into a tree of frozen dataclasses (:func:`parse`) and compiled into a SQLAlchemy
expression over :class:`~outreach.models.Member` (:func:`compile_filter`). Values only ever reach
the database as bound parameters: no SQL text is built from what an organizer typed.

Grammar
-------

Keywords (``and``, ``or``, ``not``) and term names are case-insensitive::

    filter   := [ or ]                       the empty filter is everyone in the huddle
    or       := and { "or" and }             "or" binds looser than "and"
    and      := unary { ["and"] unary }      terms side by side mean "and"
    unary    := ("-" | "not") unary | primary
    primary  := "(" or ")" | term
    term     := NAME OP VALUE                no spaces inside a term
    VALUE    := a bare word (no spaces, quotes or parentheses)
              | "a double-quoted string"     \\" and \\\\ escape a quote and a backslash

Terms
-----

=============================  ================================================================
``tag:volunteer``              has this tag in this huddle (tags are lower-cased, as on import)
``zip:021*``                   zip code starts with 021 (digits, then ``*``)
``zip:02128``                  zip code is exactly 02128
``field:language=es``          custom field ``language`` of this huddle is exactly ``es``
                               (case-sensitive; quote values with spaces: ``field:city="East
                               Boston"``)
``field:language``             has any value for the custom field ``language``
``joined>2026-01-01``          subscribed (this huddle, this channel) after that day
``joined<2026-01-01``          ... before that day; ``>=``/``<=`` include the day, ``=`` (or
                               ``:``) is that day. Days are calendar days in the huddle's zone.
``joined<30d``                 subscribed less than 30 days ago (``d`` days, ``w`` weeks,
                               ``m`` calendar months, ``y`` years)
``joined>6m``                  subscribed more than 6 months ago
``replied<30d``                last reply less than 30 days ago; ``replied>2026-01-01`` after
                               that day. Members who never replied match no ``replied`` term
                               (so ``-replied<30d`` includes them).
``first_name:maria``           first name, case-insensitive (ASCII only on SQLite)
``has:email``                  has an email address (also ``has:phone``, ``has:zip``,
                               ``has:name``)
``status:pending``             subscription state on the campaign's channel: ``active``,
                               ``pending`` or ``opted_out``
``huddle:logan``               must name the huddle being filtered: naming another huddle is an
                               error (organizers never reach other huddles' members)
=============================  ================================================================

With a date, ``<`` reads "before" and ``>`` "after"; with an age, ``<`` reads "less than … ago"
(more recent) and ``>`` "more than … ago" (older).

The audience of a filter is the members with a subscription in the huddle on the channel, in state
``active``. When the filter has a ``status:`` term anywhere, no state is implied: the filter decides
alone (``status:pending or tag:host`` also counts opted-out hosts; write ``status:pending or
(tag:host status:active)``). Suppressions are applied at launch and send time, not here.

Examples::

    tag:volunteer zip:021*                   volunteers in zips 021xx
    tag:host or (tag:donor -replied<90d)     hosts, and donors who have not replied for 90 days
    not (tag:donor or tag:staff) has:email
    field:language=es joined<30d             Spanish speakers who joined in the last 30 days
    status:pending joined>14d                asked to confirm more than two weeks ago, no answer

API
---

``parse(text) -> Node`` and ``validate(text)``; ``format_filter(node) -> str`` (canonical text);
``compile_filter(node, huddle_id=, channel=, now=) -> ColumnElement[bool]`` over ``Member``;
``audience_query(session, huddle_id=, channel=, filter_text=, now=) -> Select`` (one column,
``member_id``); ``count(...) -> int`` and ``count_statement(...)`` (the SELECT it runs);
``sample(..., limit=20) -> list[Member]``; ``save_segment(session, huddle_id=, name=,
filter_text=) -> Segment``. ``now`` is injected (an aware datetime) so relative ages are testable.

Errors
------

:class:`SegmentSyntaxError` carries ``position``, the 0-based character offset, and a message that
says what was expected: ``expected a term after 'or' at 12``, ``unknown term 'tagg' at 0 — did you
mean 'tag'?``, ``unclosed '(' opened at 4``, ``bad date '2026-13-01' at 20``.
:class:`ForeignHuddleError` is raised when a filter names another huddle.

Query shape
-----------

:func:`count` and :func:`audience_query` do not simply wrap :func:`compile_filter`: on a large
huddle the way the query is written decides its speed, SQLite's most of all (it keeps no
statistics unless ANALYZE ran, and never reorders an EXISTS). So the filter is put in negation
normal form and the query starts from the smallest index-friendly set the filter requires — a tag,
a custom field value, a zip range, an OR of those (as a UNION), or else the huddle's subscriptions —
and checks everything else per row, the subscription last. On SQLite the candidate sets are sized
with capped index-only counts first; PostgreSQL's planner has its own statistics. A count whose
filter excludes index-friendly sets (``-tag:donor``) is computed as ``count(rest) − count(rest and
tag:donor)`` in one statement instead of probing every row.

Modules
-------

:mod:`.syntax` (the tree, the errors, :func:`format_filter`), :mod:`.parser` (:func:`parse`),
:mod:`.compiler` (:func:`compile_filter`), :mod:`.planner` (the query shape above:
:func:`audience_query`, :func:`count`, :func:`sample`) and :mod:`.storage`
(:func:`save_segment`). Import from the package: the names below are its API.
"""

from __future__ import annotations

from outreach.campaigns.segments.compiler import compile_filter
from outreach.campaigns.segments.parser import parse, validate
from outreach.campaigns.segments.planner import (
    audience_query,
    count,
    count_statement,
    huddle_zone,
    sample,
)
from outreach.campaigns.segments.storage import save_segment
from outreach.campaigns.segments.syntax import (
    Age,
    And,
    CustomField,
    Everyone,
    FirstName,
    ForeignHuddleError,
    Has,
    HuddleIs,
    Joined,
    Node,
    Not,
    Or,
    Replied,
    SegmentError,
    SegmentNameError,
    SegmentSyntaxError,
    Status,
    Tag,
    Zip,
    check_huddle,
    format_filter,
)

__all__ = [
    "Age",
    "And",
    "CustomField",
    "Everyone",
    "FirstName",
    "ForeignHuddleError",
    "Has",
    "HuddleIs",
    "Joined",
    "Node",
    "Not",
    "Or",
    "Replied",
    "SegmentError",
    "SegmentNameError",
    "SegmentSyntaxError",
    "Status",
    "Tag",
    "Zip",
    "audience_query",
    "check_huddle",
    "compile_filter",
    "count",
    "count_statement",
    "format_filter",
    "huddle_zone",
    "parse",
    "sample",
    "save_segment",
    "validate",
]
