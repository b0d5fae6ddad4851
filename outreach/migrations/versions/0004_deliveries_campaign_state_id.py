"""Deliveries indexed by (campaign, state, id): claims and batch planning are range scans.

SQLite's old index already ended with the rowid; on PostgreSQL this keeps batch planning and
claims index range scans whatever the statistics say (bench/campaign_send.py).

Revision ID: 0004
Revises: 0003
"""

from __future__ import annotations

from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_index("ix_deliveries_campaign_state_id", "deliveries", ["campaign_id", "state", "id"])
    op.drop_index("ix_deliveries_campaign_state", table_name="deliveries")


def downgrade() -> None:
    op.create_index("ix_deliveries_campaign_state", "deliveries", ["campaign_id", "state"])
    op.drop_index("ix_deliveries_campaign_state_id", table_name="deliveries")
