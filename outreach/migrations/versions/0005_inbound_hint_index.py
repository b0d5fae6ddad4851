"""Inbound texts indexed by number only where they got the how-to-join hint.

The once-a-day hint check was the one reader of an index on every inbound text's number: each
text paid a B-tree page read and written for it (bench/inbound_webhook.py). A partial index holds
only the texts that got the hint.

Revision ID: 0005
Revises: 0004
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None

_HINTED = sa.text("intent = 'unknown' AND reply_text IS NOT NULL")


def upgrade() -> None:
    op.create_index(
        "ix_inbound_messages_hints",
        "inbound_messages",
        ["from_e164", "received_at"],
        sqlite_where=_HINTED,
        postgresql_where=_HINTED,
    )
    op.drop_index("ix_inbound_messages_from_received", table_name="inbound_messages")


def downgrade() -> None:
    op.create_index(
        "ix_inbound_messages_from_received", "inbound_messages", ["from_e164", "received_at"]
    )
    op.drop_index("ix_inbound_messages_hints", table_name="inbound_messages")
