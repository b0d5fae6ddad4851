"""The hint index also holds the texts that got the how-to-stop hint.

A member's text that only looks like a STOP (``maybe_opt_out``) gets one reply a day saying how
to stop, as a stranger's text gets one saying how to join. Each kind keeps its own once-a-day
budget: the check filters on the intent, and the partial index (0005) now holds both kinds'
answered texts, still only those.

Revision ID: 0009
Revises: 0008
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None

_HINTED = sa.text("intent IN ('unknown', 'maybe_opt_out') AND reply_text IS NOT NULL")
_JOIN_HINTED = sa.text("intent = 'unknown' AND reply_text IS NOT NULL")


def _create(where: sa.TextClause) -> None:
    op.create_index(
        "ix_inbound_messages_hints",
        "inbound_messages",
        ["from_e164", "received_at"],
        sqlite_where=where,
        postgresql_where=where,
    )


def upgrade() -> None:
    op.drop_index("ix_inbound_messages_hints", table_name="inbound_messages")
    _create(_HINTED)


def downgrade() -> None:
    op.drop_index("ix_inbound_messages_hints", table_name="inbound_messages")
    _create(_JOIN_HINTED)
