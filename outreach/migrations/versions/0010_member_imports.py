"""Member imports a worker runs: the uploaded file in parts, the import's state, its row errors.

Revision ID: 0010
Revises: 0009
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0010"
down_revision = "0009"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "member_imports",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("huddle_id", sa.Integer(), nullable=False),
        sa.Column("source_name", sa.String(length=255), nullable=False),
        sa.Column("consent_channels", sa.JSON(), nullable=False),
        sa.Column("default_region", sa.String(length=2), nullable=False),
        sa.Column("actor", sa.String(length=254), nullable=True),
        sa.Column("state", sa.String(length=10), nullable=False),
        sa.Column("size_bytes", sa.BigInteger(), nullable=False),
        sa.Column("bytes_read", sa.BigInteger(), nullable=False),
        sa.Column("next_line", sa.Integer(), nullable=False),
        sa.Column("rows", sa.Integer(), nullable=False),
        sa.Column("created", sa.Integer(), nullable=False),
        sa.Column("merged", sa.Integer(), nullable=False),
        sa.Column("subscribed_sms", sa.Integer(), nullable=False),
        sa.Column("subscribed_email", sa.Integer(), nullable=False),
        sa.Column("kept_opted_out", sa.Integer(), nullable=False),
        sa.Column("suppressed", sa.Integer(), nullable=False),
        sa.Column("error_count", sa.Integer(), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("runner", sa.String(length=100), nullable=True),
        sa.Column("reason", sa.Text(), nullable=True),
        sa.Column("not_before", sa.DateTime(timezone=True), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("finished_at", sa.DateTime(timezone=True), nullable=True),
        sa.ForeignKeyConstraint(
            ["huddle_id"],
            ["huddles.id"],
            name=op.f("fk_member_imports_huddle_id_huddles"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_member_imports")),
    )
    op.create_index(op.f("ix_member_imports_huddle_id"), "member_imports", ["huddle_id"])
    op.create_index(op.f("ix_member_imports_state"), "member_imports", ["state"])
    op.create_table(
        "member_import_parts",
        sa.Column("import_id", sa.Integer(), nullable=False),
        sa.Column("seq", sa.Integer(), autoincrement=False, nullable=False),
        sa.Column("data", sa.LargeBinary(), nullable=False),
        sa.ForeignKeyConstraint(
            ["import_id"],
            ["member_imports.id"],
            name=op.f("fk_member_import_parts_import_id_member_imports"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("import_id", "seq", name=op.f("pk_member_import_parts")),
    )
    op.create_table(
        "member_import_errors",
        sa.Column("import_id", sa.Integer(), nullable=False),
        sa.Column("line", sa.Integer(), autoincrement=False, nullable=False),
        sa.Column("reason", sa.Text(), nullable=False),
        sa.ForeignKeyConstraint(
            ["import_id"],
            ["member_imports.id"],
            name=op.f("fk_member_import_errors_import_id_member_imports"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("import_id", "line", name=op.f("pk_member_import_errors")),
    )


def downgrade() -> None:
    op.drop_table("member_import_errors")
    op.drop_table("member_import_parts")
    op.drop_index(op.f("ix_member_imports_state"), table_name="member_imports")
    op.drop_index(op.f("ix_member_imports_huddle_id"), table_name="member_imports")
    op.drop_table("member_imports")
