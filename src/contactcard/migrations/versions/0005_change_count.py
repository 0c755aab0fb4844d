"""change count: what the SQLite GET memo's version counts (keys, lines, cards changed)

Revision ID: 0005_change_count
Revises: 0004_webhook_attempts
"""

import sqlalchemy as sa
from alembic import op

revision = "0005_change_count"
down_revision = "0004_webhook_attempts"
branch_labels = None
depends_on = None

_TABLES = ("api_keys", "lines", "cards")
_OPERATIONS = ("INSERT", "UPDATE", "DELETE")


def upgrade() -> None:
    op.create_table(
        "change_count",
        sa.Column("id", sa.Integer(), autoincrement=False, nullable=False),
        sa.Column("n", sa.Integer(), nullable=False),
        sa.CheckConstraint("id = 1", name="ck_change_count_one_row"),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_change_count")),
    )
    if op.get_bind().dialect.name != "sqlite":
        return  # PostgreSQL's GET memo reads the cluster's snapshot instead
    op.execute("INSERT INTO change_count (id, n) VALUES (1, 0)")
    for table in _TABLES:
        for operation in _OPERATIONS:
            op.execute(
                f"CREATE TRIGGER change_count_{table}_{operation.lower()} AFTER {operation} ON {table} "
                "BEGIN UPDATE change_count SET n = n + 1 WHERE id = 1; END"
            )


def downgrade() -> None:
    if op.get_bind().dialect.name == "sqlite":
        for table in _TABLES:
            for operation in _OPERATIONS:
                op.execute(f"DROP TRIGGER IF EXISTS change_count_{table}_{operation.lower()}")
    op.drop_table("change_count")
