"""device identities (signed device cookie), voucher moves, wrong-code rows for the brakes

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-29
"""

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "device_identity",
        sa.Column("id", sa.String(length=32), nullable=False),
        sa.Column("created_at", sa.DateTime(), nullable=False),
        sa.Column("created_ip", sa.String(length=45), nullable=False),
        sa.Column("created_day", sa.Date(), nullable=False),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index(
        "ix_device_identity_ip_day", "device_identity", ["created_ip", "created_day"], unique=False
    )
    op.create_table(
        "device_identity_mac",
        sa.Column("mac", sa.String(length=17), nullable=False),
        sa.Column("identity_id", sa.String(length=32), nullable=False),
        sa.Column("linked_at", sa.DateTime(), nullable=False),
        sa.ForeignKeyConstraint(["identity_id"], ["device_identity.id"]),
        sa.PrimaryKeyConstraint("mac"),
    )
    op.create_index(
        "ix_device_identity_mac_identity_id",
        "device_identity_mac",
        ["identity_id"],
        unique=False,
    )
    op.create_table(
        "voucher_move",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("voucher_id", sa.Integer(), nullable=False),
        sa.Column("at", sa.DateTime(), nullable=False),
        sa.Column("from_mac", sa.String(length=17), nullable=False),
        sa.Column("from_device", sa.String(length=32), nullable=True),
        sa.Column("to_mac", sa.String(length=17), nullable=False),
        sa.Column("same_device", sa.Boolean(), nullable=False),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index("ix_voucher_move_at", "voucher_move", ["at"], unique=False)
    op.create_index("ix_voucher_move_voucher_id", "voucher_move", ["voucher_id"], unique=False)
    op.create_index("ix_voucher_move_from_mac", "voucher_move", ["from_mac"], unique=False)
    op.create_index("ix_voucher_move_from_device", "voucher_move", ["from_device"], unique=False)
    op.create_table(
        "redeem_failure",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("at", sa.DateTime(), nullable=False),
        sa.Column("ip", sa.String(length=45), nullable=False),
        sa.Column("mac", sa.String(length=17), nullable=False),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index("ix_redeem_failure_at", "redeem_failure", ["at"], unique=False)
    op.create_index("ix_redeem_failure_ip_at", "redeem_failure", ["ip", "at"], unique=False)
    with op.batch_alter_table("voucher_device") as batch:
        batch.add_column(sa.Column("device_id", sa.String(length=32), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("voucher_device") as batch:
        batch.drop_column("device_id")
    op.drop_table("redeem_failure")
    op.drop_table("voucher_move")
    op.drop_table("device_identity_mac")
    op.drop_table("device_identity")
