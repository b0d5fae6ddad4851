"""MMS attachments on inbound texts.

One JSON column on ``inbound_messages`` (a list of ``{"url", "content_type"}``, NULL for the
texts without any): written by the text's own insert, read only with its row, so no table and
no second statement on the inbound path.

Revision ID: 0008
Revises: 0007
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("inbound_messages") as batch_op:
        batch_op.add_column(sa.Column("media", sa.JSON(none_as_null=True), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("inbound_messages") as batch_op:
        batch_op.drop_column("media")
