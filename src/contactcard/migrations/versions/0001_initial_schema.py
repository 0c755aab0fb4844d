"""initial schema

Revision ID: 0001
Revises:
"""

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "device_displays",
        sa.Column("phone_number", sa.String(length=16), nullable=False),
        sa.Column("first_name", sa.String(length=400), nullable=False),
        sa.Column("last_name", sa.String(length=400), nullable=True),
        sa.Column("image_url", sa.String(length=2048), nullable=True),
        sa.Column("applies", sa.Integer(), nullable=False),
        sa.Column("applied_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("phone_number", name=op.f("pk_device_displays")),
    )
    op.create_table(
        "device_scripts",
        sa.Column("phone_number", sa.String(length=16), nullable=False),
        sa.Column("fail_next", sa.Integer(), nullable=False),
        sa.Column("rate_limit_next", sa.Integer(), nullable=False),
        sa.Column("rcs_unavailable", sa.Boolean(), nullable=False),
        sa.Column("apply_delay", sa.Float(), nullable=False),
        sa.PrimaryKeyConstraint("phone_number", name=op.f("pk_device_scripts")),
    )
    op.create_table(
        "partners",
        sa.Column("id", sa.String(length=32), nullable=False),
        sa.Column("name", sa.String(length=200), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_partners")),
    )
    op.create_table(
        "write_attempts",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("phone_number", sa.String(length=16), nullable=False),
        sa.Column("at", sa.Float(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_write_attempts")),
    )
    with op.batch_alter_table("write_attempts", schema=None) as batch_op:
        batch_op.create_index("ix_write_attempts_phone_at", ["phone_number", "at"], unique=False)

    op.create_table(
        "api_keys",
        sa.Column("id", sa.String(length=32), nullable=False),
        sa.Column("partner_id", sa.String(length=32), nullable=False),
        sa.Column("key_hash", sa.String(length=64), nullable=False),
        sa.Column("prefix", sa.String(length=16), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("revoked_at", sa.DateTime(timezone=True), nullable=True),
        sa.ForeignKeyConstraint(
            ["partner_id"], ["partners.id"], name=op.f("fk_api_keys_partner_id_partners"), ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_api_keys")),
        sa.UniqueConstraint("key_hash", name=op.f("uq_api_keys_key_hash")),
    )
    op.create_table(
        "lines",
        sa.Column("phone_number", sa.String(length=16), nullable=False),
        sa.Column("partner_id", sa.String(length=32), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["partner_id"], ["partners.id"], name=op.f("fk_lines_partner_id_partners"), ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("phone_number", name=op.f("pk_lines")),
        sqlite_with_rowid=False,
    )
    with op.batch_alter_table("lines", schema=None) as batch_op:
        batch_op.create_index("ix_lines_partner_phone", ["partner_id", "phone_number"], unique=False)

    op.create_table(
        "cards",
        sa.Column("phone_number", sa.String(length=16), nullable=False),
        sa.Column("id", sa.String(length=32), nullable=False),
        sa.Column("first_name", sa.String(length=400), nullable=False),
        sa.Column("last_name", sa.String(length=400), nullable=True),
        sa.Column("image_blob", sa.String(length=80), nullable=True),
        sa.Column("image_source_url", sa.String(length=2048), nullable=True),
        sa.Column("is_active", sa.Boolean(), nullable=False),
        sa.Column("ever_active", sa.Boolean(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["phone_number"], ["lines.phone_number"], name=op.f("fk_cards_phone_number_lines"), ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("phone_number", name=op.f("pk_cards")),
        sa.UniqueConstraint("id", name=op.f("uq_cards_id")),
        sqlite_with_rowid=False,
    )


def downgrade() -> None:
    op.drop_table("cards")
    with op.batch_alter_table("lines", schema=None) as batch_op:
        batch_op.drop_index("ix_lines_partner_phone")

    op.drop_table("lines")
    op.drop_table("api_keys")
    with op.batch_alter_table("write_attempts", schema=None) as batch_op:
        batch_op.drop_index("ix_write_attempts_phone_at")

    op.drop_table("write_attempts")
    op.drop_table("partners")
    op.drop_table("device_scripts")
    op.drop_table("device_displays")
