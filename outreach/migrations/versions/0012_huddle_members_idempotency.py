"""The huddles that hold each member (consent or not), API idempotency keys, name search.

Revision ID: 0012
Revises: 0011
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0012"
down_revision = "0011"
branch_labels = None
depends_on = None

NAME_COLUMNS = ("first_name", "last_name")


def upgrade() -> None:
    op.create_table(
        "huddle_members",
        sa.Column("huddle_id", sa.Integer(), nullable=False),
        sa.Column("member_id", sa.Integer(), nullable=False),
        sa.Column("source", sa.String(length=20), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["huddle_id"],
            ["huddles.id"],
            name=op.f("fk_huddle_members_huddle_id_huddles"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["member_id"],
            ["members.id"],
            name=op.f("fk_huddle_members_member_id_members"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("huddle_id", "member_id", name=op.f("pk_huddle_members")),
    )
    op.create_index(op.f("ix_huddle_members_member_id"), "huddle_members", ["member_id"])
    # Everyone a huddle already holds: a subscription, a tag or a field there.
    op.execute(
        """INSERT INTO huddle_members (huddle_id, member_id, source, created_at)
        SELECT huddle_id, member_id, 'migrated', min(created_at) FROM (
            SELECT huddle_id, member_id, created_at FROM subscriptions
            UNION ALL SELECT t.huddle_id, t.member_id, m.created_at FROM member_tags t
                JOIN members m ON m.id = t.member_id
            UNION ALL SELECT f.huddle_id, f.member_id, m.created_at FROM member_fields f
                JOIN members m ON m.id = f.member_id
        ) held GROUP BY huddle_id, member_id"""
    )
    if op.get_bind().dialect.name == "postgresql":
        # A name search is a prefix of either name, any case (outreach.people.members). The
        # pattern operator class lets LIKE 'ann%' use them whatever the database's collation.
        for column in NAME_COLUMNS:
            op.execute(
                f"CREATE INDEX ix_members_{column}_prefix ON members "
                f"(lower({column}) text_pattern_ops)"
            )
    op.create_table(
        "idempotency_keys",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("organizer_id", sa.Integer(), nullable=False),
        sa.Column("key", sa.String(length=255), nullable=False),
        sa.Column("fingerprint", sa.String(length=64), nullable=False),
        sa.Column("status_code", sa.Integer(), nullable=True),
        sa.Column("response_body", sa.Text(), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["organizer_id"],
            ["organizers.id"],
            name=op.f("fk_idempotency_keys_organizer_id_organizers"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_idempotency_keys")),
        sa.UniqueConstraint(
            "organizer_id", "key", name=op.f("uq_idempotency_keys_organizer_id_key")
        ),
    )
    op.create_index(op.f("ix_idempotency_keys_created_at"), "idempotency_keys", ["created_at"])


def downgrade() -> None:
    op.drop_index(op.f("ix_idempotency_keys_created_at"), table_name="idempotency_keys")
    op.drop_table("idempotency_keys")
    if op.get_bind().dialect.name == "postgresql":
        for column in NAME_COLUMNS:
            op.execute(f"DROP INDEX ix_members_{column}_prefix")
    op.drop_index(op.f("ix_huddle_members_member_id"), table_name="huddle_members")
    op.drop_table("huddle_members")
