"""webhook line order: the index a claim asks "is an earlier event of this line pending?"

Revision ID: 0008_webhook_line_order
Revises: 0007_key_last_used
"""

import sqlalchemy as sa
from alembic import op

revision = "0008_webhook_line_order"
down_revision = "0007_key_last_used"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # Partial: only the pending rows, so it stays as small as the outbox's backlog while
    # delivered rows pile up beside it.
    op.create_index(
        "ix_webhook_deliveries_line_order",
        "webhook_deliveries",
        ["subscription_id", "phone_number", "created_at", "event_id"],
        sqlite_where=sa.text("status = 'pending'"),
        postgresql_where=sa.text("status = 'pending'"),
    )


def downgrade() -> None:
    op.drop_index("ix_webhook_deliveries_line_order", table_name="webhook_deliveries")
