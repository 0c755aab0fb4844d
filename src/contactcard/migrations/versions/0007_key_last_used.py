"""key last used: when a request last used each API key; its flush leaves the GET memo be

Revision ID: 0007_key_last_used
Revises: 0006_dashboard_sessions
"""

import sqlalchemy as sa
from alembic import op

revision = "0007_key_last_used"
down_revision = "0006_dashboard_sessions"
branch_labels = None
depends_on = None

# The SQLite change count's trigger on key updates, before and after: from this revision on
# it ignores `last_used_at` (schema.COUNTED_KEY_COLUMNS), which no GET answer reads.
_OLD_TRIGGER = (
    "CREATE TRIGGER change_count_api_keys_update AFTER UPDATE ON api_keys "
    "BEGIN UPDATE change_count SET n = n + 1 WHERE id = 1; END"
)
_NEW_TRIGGER = (
    "CREATE TRIGGER change_count_api_keys_update AFTER UPDATE OF "
    "id, partner_id, key_hash, prefix, created_at, revoked_at, label ON api_keys "
    "BEGIN UPDATE change_count SET n = n + 1 WHERE id = 1; END"
)


def upgrade() -> None:
    # A plain ADD COLUMN on both databases: no table copy, so SQLite's triggers stay.
    op.add_column("api_keys", sa.Column("last_used_at", sa.DateTime(timezone=True), nullable=True))
    if op.get_bind().dialect.name == "sqlite":
        op.execute("DROP TRIGGER IF EXISTS change_count_api_keys_update")
        op.execute(_NEW_TRIGGER)


def downgrade() -> None:
    with op.batch_alter_table("api_keys") as batch:
        batch.drop_column("last_used_at")
    if op.get_bind().dialect.name == "sqlite":
        # SQLite's batch mode copies the table, which drops its triggers: all three again.
        for operation in ("INSERT", "UPDATE", "DELETE"):
            op.execute(f"DROP TRIGGER IF EXISTS change_count_api_keys_{operation.lower()}")
            op.execute(_OLD_TRIGGER.replace("_update AFTER UPDATE", f"_{operation.lower()} AFTER {operation}"))
