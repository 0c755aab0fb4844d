"""webhook attempts: every attempt of a delivery, not only the last

Revision ID: 0004_webhook_attempts
Revises: 0003_webhooks
"""

import sqlalchemy as sa
from alembic import op

revision = "0004_webhook_attempts"
down_revision = "0003_webhooks"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "webhook_attempts",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("event_id", sa.String(length=32), nullable=False),
        sa.Column("subscription_id", sa.String(length=32), nullable=False),
        sa.Column("attempt", sa.Integer(), nullable=False),
        sa.Column("at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("outcome", sa.String(length=16), nullable=False),
        sa.Column("answer", sa.Integer(), nullable=True),
        sa.Column("latency_ms", sa.Float(), nullable=True),
        sa.Column("error", sa.String(length=400), nullable=True),
        sa.ForeignKeyConstraint(
            ["event_id", "subscription_id"],
            ["webhook_deliveries.event_id", "webhook_deliveries.subscription_id"],
            name=op.f("fk_webhook_attempts_event_id_webhook_deliveries"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_webhook_attempts")),
    )
    op.create_index("ix_webhook_attempts_delivery", "webhook_attempts", ["event_id", "subscription_id"])


def downgrade() -> None:
    op.drop_index("ix_webhook_attempts_delivery", table_name="webhook_attempts")
    op.drop_table("webhook_attempts")
