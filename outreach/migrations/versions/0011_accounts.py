"""Organizer accounts that can sign in: disabling, sessions ended at once, revoked tokens, audit log.

Revision ID: 0011
Revises: 0010
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0011"
down_revision = "0010"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("organizers") as batch_op:
        batch_op.add_column(sa.Column("disabled_at", sa.DateTime(timezone=True), nullable=True))
        batch_op.add_column(
            sa.Column("session_version", sa.Integer(), nullable=False, server_default="0")
        )
        batch_op.add_column(sa.Column("last_sign_in_at", sa.DateTime(timezone=True), nullable=True))
    with op.batch_alter_table("api_tokens") as batch_op:
        batch_op.add_column(sa.Column("revoked_at", sa.DateTime(timezone=True), nullable=True))
    op.create_table(
        "audit_events",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("actor_id", sa.Integer(), nullable=True),
        sa.Column("actor_email", sa.String(length=254), nullable=False),
        sa.Column("action", sa.String(length=40), nullable=False),
        sa.Column("huddle_id", sa.Integer(), nullable=True),
        sa.Column("subject", sa.String(length=200), nullable=True),
        sa.Column("detail", sa.JSON(none_as_null=True), nullable=True),
        sa.Column("ip", sa.String(length=45), nullable=True),
        sa.ForeignKeyConstraint(
            ["actor_id"],
            ["organizers.id"],
            name=op.f("fk_audit_events_actor_id_organizers"),
            ondelete="SET NULL",
        ),
        sa.ForeignKeyConstraint(
            ["huddle_id"],
            ["huddles.id"],
            name=op.f("fk_audit_events_huddle_id_huddles"),
            ondelete="SET NULL",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_audit_events")),
    )
    op.create_index("ix_audit_events_at", "audit_events", ["at"])
    op.create_index(op.f("ix_audit_events_actor_id"), "audit_events", ["actor_id"])


def downgrade() -> None:
    op.drop_index(op.f("ix_audit_events_actor_id"), table_name="audit_events")
    op.drop_index("ix_audit_events_at", table_name="audit_events")
    op.drop_table("audit_events")
    with op.batch_alter_table("api_tokens") as batch_op:
        batch_op.drop_column("revoked_at")
    with op.batch_alter_table("organizers") as batch_op:
        batch_op.drop_column("last_sign_in_at")
        batch_op.drop_column("session_version")
        batch_op.drop_column("disabled_at")
