"""Covering indexes for segment counts: the member id rides in the index.

Measured on 1M members (bench/segment_count.py): `field:language=es replied<30d` on SQLite
860 -> 191 ms CPU; `tag:volunteer zip:021*` on PostgreSQL 490 -> 160 ms.

Revision ID: 0003
Revises: 0002
"""

from __future__ import annotations

from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_index(
        "ix_subscriptions_huddle_channel_state_member",
        "subscriptions",
        ["huddle_id", "channel", "state", "member_id"],
    )
    op.drop_index("ix_subscriptions_huddle_channel_state", table_name="subscriptions")
    op.create_index(
        "ix_member_fields_huddle_name_value_member",
        "member_fields",
        ["huddle_id", "name", "value", "member_id"],
    )
    op.drop_index("ix_member_fields_huddle_name_value", table_name="member_fields")
    op.create_index("ix_members_zip_id", "members", ["zip", "id"])
    op.drop_index("ix_members_zip", table_name="members")


def downgrade() -> None:
    op.create_index("ix_members_zip", "members", ["zip"])
    op.drop_index("ix_members_zip_id", table_name="members")
    op.create_index(
        "ix_member_fields_huddle_name_value", "member_fields", ["huddle_id", "name", "value"]
    )
    op.drop_index("ix_member_fields_huddle_name_value_member", table_name="member_fields")
    op.create_index(
        "ix_subscriptions_huddle_channel_state", "subscriptions", ["huddle_id", "channel", "state"]
    )
    op.drop_index("ix_subscriptions_huddle_channel_state_member", table_name="subscriptions")
