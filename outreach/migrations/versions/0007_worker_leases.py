"""Worker leases, and claims that name the job holding them.

A claim left by a dead worker is settled seconds after its worker stops renewing its lease,
instead of after a fixed timeout; ``lookups`` bounds how often the provider is asked about it.

Revision ID: 0007
Revises: 0006
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "worker_leases",
        sa.Column("worker_id", sa.String(length=80), nullable=False),
        sa.Column("beat_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("started_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("holding", sa.String(length=100), nullable=True),
        sa.PrimaryKeyConstraint("worker_id", name=op.f("pk_worker_leases")),
    )
    with op.batch_alter_table("deliveries") as batch_op:
        batch_op.add_column(sa.Column("claimed_by", sa.String(length=100), nullable=True))
        batch_op.add_column(sa.Column("lookups", sa.Integer(), nullable=False, server_default="0"))


def downgrade() -> None:
    with op.batch_alter_table("deliveries") as batch_op:
        batch_op.drop_column("lookups")
        batch_op.drop_column("claimed_by")
    op.drop_table("worker_leases")
