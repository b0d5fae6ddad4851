"""A stamp that changes with every write to the huddles or their keywords.

Each inbound text read the huddles on the number texted, with their keywords: 6% of a text's
instructions, for configuration that changes a few times a day. A web worker now keeps them in
memory and, inside the text's transaction, reads this one-row table instead; a different stamp
means it reads them again. Triggers set the stamp, so every writer (the ORM, the CLI, plain SQL,
a migration) invalidates the workers' copies without knowing about them.

Revision ID: 0006
Revises: 0005
"""

from __future__ import annotations

import secrets

import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None

_TABLES = ("huddles", "join_keywords")
_VERBS = ("INSERT", "UPDATE", "DELETE")


def upgrade() -> None:
    table = op.create_table(
        "huddle_directory_stamp",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("stamp", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_huddle_directory_stamp")),
    )
    op.bulk_insert(table, [{"id": 1, "stamp": secrets.randbits(62)}])
    if op.get_bind().dialect.name == "sqlite":
        for name in _TABLES:
            for verb in _VERBS:
                op.execute(
                    f"CREATE TRIGGER {name}_{verb.lower()}_restamps AFTER {verb} ON {name} "  # noqa: S608
                    "BEGIN UPDATE huddle_directory_stamp SET stamp = random(); END"
                )
        return
    op.execute(
        "CREATE FUNCTION huddle_directory_restamp() RETURNS trigger LANGUAGE plpgsql AS "
        "$$ BEGIN UPDATE huddle_directory_stamp SET stamp = (random() * 4e18)::bigint; "
        "RETURN NULL; END $$"
    )
    for name in _TABLES:
        op.execute(
            f"CREATE TRIGGER {name}_restamps AFTER INSERT OR UPDATE OR DELETE OR TRUNCATE "
            f"ON {name} FOR EACH STATEMENT EXECUTE FUNCTION huddle_directory_restamp()"
        )


def downgrade() -> None:
    if op.get_bind().dialect.name == "sqlite":
        for name in _TABLES:
            for verb in _VERBS:
                op.execute(f"DROP TRIGGER IF EXISTS {name}_{verb.lower()}_restamps")
    else:
        for name in _TABLES:
            op.execute(f"DROP TRIGGER IF EXISTS {name}_restamps ON {name}")
        op.execute("DROP FUNCTION IF EXISTS huddle_directory_restamp()")
    op.drop_table("huddle_directory_stamp")
