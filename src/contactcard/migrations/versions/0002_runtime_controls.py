"""runtime controls and the request journal

Revision ID: 0002_runtime_controls
Revises: 0001
"""

import sqlalchemy as sa
from alembic import op

revision = "0002_runtime_controls"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "runtime_controls",
        sa.Column("id", sa.Integer(), autoincrement=False, nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("profile", sa.String(length=16), nullable=True),
        sa.Column("write_budget", sa.Integer(), nullable=True),
        sa.Column("write_budget_window", sa.Integer(), nullable=True),
        sa.Column("journal_size", sa.Integer(), nullable=True),
        sa.Column("clock_offset", sa.Float(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_runtime_controls")),
    )
    op.create_table(
        "request_journal",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("trace_id", sa.String(length=32), nullable=False),
        sa.Column("at", sa.Float(), nullable=False),
        sa.Column("method", sa.String(length=8), nullable=False),
        sa.Column("path", sa.String(length=200), nullable=False),
        sa.Column("phone_number", sa.String(length=16), nullable=True),
        sa.Column("status", sa.Integer(), nullable=False),
        sa.Column("error_code", sa.Integer(), nullable=True),
        sa.Column("duration_ms", sa.Float(), nullable=False),
        sa.Column("retry_count", sa.Integer(), nullable=True),
        sa.Column("user_agent", sa.String(length=200), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_request_journal")),
    )
    with op.batch_alter_table("request_journal", schema=None) as batch_op:
        batch_op.create_index("ix_request_journal_at", ["at"], unique=False)
        batch_op.create_index("ix_request_journal_trace_id", ["trace_id"], unique=False)
    op.create_table(
        "journal_readers",
        sa.Column("id", sa.Integer(), autoincrement=False, nullable=False),
        sa.Column("wanted_until", sa.Float(), nullable=False),
        sa.Column("cleared_at", sa.Float(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_journal_readers")),
    )


def downgrade() -> None:
    op.drop_table("journal_readers")
    with op.batch_alter_table("request_journal", schema=None) as batch_op:
        batch_op.drop_index("ix_request_journal_trace_id")
        batch_op.drop_index("ix_request_journal_at")
    op.drop_table("request_journal")
    op.drop_table("runtime_controls")
