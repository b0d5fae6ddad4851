"""The inbox's canned replies and conversation assignments.

Revision ID: 0014
Revises: 0013
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0014"
down_revision = "0013"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "canned_replies",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("huddle_id", sa.Integer(), nullable=False),
        sa.Column("title", sa.String(length=80), nullable=False),
        sa.Column("body", sa.Text(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["huddle_id"],
            ["huddles.id"],
            name=op.f("fk_canned_replies_huddle_id_huddles"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_canned_replies")),
        sa.UniqueConstraint("huddle_id", "title", name=op.f("uq_canned_replies_huddle_id_title")),
    )
    op.create_table(
        "inbox_assignments",
        sa.Column("huddle_id", sa.Integer(), nullable=False),
        sa.Column("member_id", sa.Integer(), nullable=False),
        sa.Column("organizer_id", sa.Integer(), nullable=False),
        sa.Column("assigned_by_id", sa.Integer(), nullable=True),
        sa.Column("assigned_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["huddle_id"],
            ["huddles.id"],
            name=op.f("fk_inbox_assignments_huddle_id_huddles"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["member_id"],
            ["members.id"],
            name=op.f("fk_inbox_assignments_member_id_members"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["organizer_id"],
            ["organizers.id"],
            name=op.f("fk_inbox_assignments_organizer_id_organizers"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["assigned_by_id"],
            ["organizers.id"],
            name=op.f("fk_inbox_assignments_assigned_by_id_organizers"),
            ondelete="SET NULL",
        ),
        sa.PrimaryKeyConstraint("huddle_id", "member_id", name=op.f("pk_inbox_assignments")),
    )
    op.create_index(
        "ix_inbox_assignments_huddle_organizer",
        "inbox_assignments",
        ["huddle_id", "organizer_id"],
    )


def downgrade() -> None:
    op.drop_index("ix_inbox_assignments_huddle_organizer", table_name="inbox_assignments")
    op.drop_table("inbox_assignments")
    op.drop_table("canned_replies")
