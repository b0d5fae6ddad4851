"""A huddle's own sending window (new campaigns start from it); the overview's indexes.

Revision ID: 0013
Revises: 0012
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0013"
down_revision = "0012"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("huddles") as batch_op:
        # "HH:MM" local wall-clock times inside 08:00-21:00; NULL: the federal default window.
        batch_op.add_column(sa.Column("quiet_start", sa.String(length=5), nullable=True))
        batch_op.add_column(sa.Column("quiet_end", sa.String(length=5), nullable=True))
    # The overview's growth chart and opt-out rate read a month of a huddle's joins and opt-outs
    # from these alone, however many members the huddle holds.
    op.create_index(
        "ix_huddle_members_huddle_created", "huddle_members", ["huddle_id", "created_at"]
    )
    op.create_index(
        "ix_consent_events_huddle_action_created",
        "consent_events",
        ["huddle_id", "action", "created_at", "channel"],
    )


def downgrade() -> None:
    op.drop_index("ix_consent_events_huddle_action_created", table_name="consent_events")
    op.drop_index("ix_huddle_members_huddle_created", table_name="huddle_members")
    with op.batch_alter_table("huddles") as batch_op:
        batch_op.drop_column("quiet_end")
        batch_op.drop_column("quiet_start")
