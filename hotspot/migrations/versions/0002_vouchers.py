"""vouchers: packages, batches, vouchers, their devices and redemption attempts

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-28
"""

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "package",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("name", sa.String(length=32), nullable=False),
        sa.Column("title", sa.String(length=40), nullable=False),
        sa.Column("price", sa.Integer(), nullable=False),
        sa.Column("tier", sa.String(length=32), nullable=False),
        sa.Column("hours", sa.Integer(), nullable=False),
        sa.Column("data_mb", sa.Integer(), nullable=True),
        sa.Column("devices", sa.Integer(), server_default=sa.text("1"), nullable=False),
        sa.Column("shelf_days", sa.Integer(), nullable=True),
        sa.Column("active", sa.Boolean(), server_default=sa.text("1"), nullable=False),
        sa.Column("source", sa.String(length=16), nullable=False),
        sa.Column("created_at", sa.DateTime(), nullable=False),
        sa.Column("updated_at", sa.DateTime(), nullable=False),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("name"),
    )
    op.create_table(
        "redeem_attempt",
        sa.Column("client", sa.String(length=17), nullable=False),
        sa.Column("window_start", sa.DateTime(), nullable=False),
        sa.Column("failures", sa.Integer(), nullable=False),
        sa.Column("blocked_until", sa.DateTime(), nullable=True),
        sa.PrimaryKeyConstraint("client"),
    )
    op.create_table(
        "voucher_batch",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("package_id", sa.Integer(), nullable=False),
        sa.Column("package_name", sa.String(length=32), nullable=False),
        sa.Column("price", sa.Integer(), nullable=False),
        sa.Column("tier", sa.String(length=32), nullable=False),
        sa.Column("hours", sa.Integer(), nullable=False),
        sa.Column("data_mb", sa.Integer(), nullable=True),
        sa.Column("devices", sa.Integer(), nullable=False),
        sa.Column("count", sa.Integer(), nullable=False),
        sa.Column("salt", sa.String(length=32), nullable=False),
        sa.Column("created_at", sa.DateTime(), nullable=False),
        sa.Column("valid_until", sa.DateTime(), nullable=True),
        sa.Column("note", sa.String(length=200), nullable=True),
        sa.Column("created_by", sa.String(length=64), nullable=True),
        sa.ForeignKeyConstraint(
            ["package_id"],
            ["package.id"],
        ),
        sa.PrimaryKeyConstraint("id"),
    )
    with op.batch_alter_table("voucher_batch", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_voucher_batch_package_id"), ["package_id"], unique=False
        )

    op.create_table(
        "voucher",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("batch_id", sa.Integer(), nullable=False),
        sa.Column("serial", sa.Integer(), nullable=False),
        sa.Column("code_hash", sa.String(length=64), nullable=False),
        sa.Column("state", sa.String(length=8), nullable=False),
        sa.Column("created_at", sa.DateTime(), nullable=False),
        sa.Column("valid_until", sa.DateTime(), nullable=True),
        sa.Column("sold_at", sa.DateTime(), nullable=True),
        sa.Column("first_used_at", sa.DateTime(), nullable=True),
        sa.Column("expires_at", sa.DateTime(), nullable=True),
        sa.Column("bytes_total", sa.BigInteger(), nullable=True),
        sa.Column("topup_of", sa.Integer(), nullable=True),
        sa.Column("merged_into", sa.Integer(), nullable=True),
        sa.Column("voided_at", sa.DateTime(), nullable=True),
        sa.Column("void_reason", sa.String(length=200), nullable=True),
        sa.ForeignKeyConstraint(
            ["batch_id"],
            ["voucher_batch.id"],
        ),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("code_hash"),
    )
    with op.batch_alter_table("voucher", schema=None) as batch_op:
        batch_op.create_index("ix_voucher_state", ["state"], unique=False)
        batch_op.create_index("uq_voucher_batch_serial", ["batch_id", "serial"], unique=True)

    op.create_table(
        "voucher_device",
        sa.Column("voucher_id", sa.Integer(), nullable=False),
        sa.Column("mac", sa.String(length=17), nullable=False),
        sa.Column("bound_at", sa.DateTime(), nullable=False),
        sa.Column("last_seen_at", sa.DateTime(), nullable=False),
        sa.ForeignKeyConstraint(
            ["voucher_id"],
            ["voucher.id"],
        ),
        sa.PrimaryKeyConstraint("voucher_id", "mac"),
    )
    with op.batch_alter_table("voucher_device", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_voucher_device_mac"), ["mac"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("voucher_device", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_voucher_device_mac"))
    op.drop_table("voucher_device")
    with op.batch_alter_table("voucher", schema=None) as batch_op:
        batch_op.drop_index("uq_voucher_batch_serial")
        batch_op.drop_index("ix_voucher_state")
    op.drop_table("voucher")
    with op.batch_alter_table("voucher_batch", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_voucher_batch_package_id"))
    op.drop_table("voucher_batch")
    op.drop_table("redeem_attempt")
    op.drop_table("package")
