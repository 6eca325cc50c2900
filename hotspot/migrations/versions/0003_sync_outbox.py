"""sync agent: outbox, batches in flight, agent state

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-28
"""

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "sync_batch",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("key", sa.String(length=32), nullable=False),
        sa.Column("created_at", sa.DateTime(), nullable=False),
        sa.Column("body", sa.LargeBinary(), nullable=False),
        sa.Column("records", sa.Integer(), nullable=False),
        sa.Column("raw_bytes", sa.Integer(), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("last_attempt_at", sa.DateTime(), nullable=True),
        sa.Column("last_error", sa.String(length=300), nullable=True),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("key"),
    )
    op.create_table(
        "sync_state",
        sa.Column("name", sa.String(length=64), nullable=False),
        sa.Column("value", sa.Text(), nullable=False),
        sa.Column("updated_at", sa.DateTime(), nullable=False),
        sa.PrimaryKeyConstraint("name"),
    )
    op.create_table(
        "sync_outbox",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("kind", sa.String(length=16), nullable=False),
        sa.Column("key", sa.String(length=80), nullable=False),
        sa.Column("payload", sa.Text(), nullable=False),
        sa.Column("rev", sa.BigInteger(), nullable=False),
        sa.Column("sent_rev", sa.BigInteger(), server_default=sa.text("0"), nullable=False),
        sa.Column("inflight_rev", sa.BigInteger(), nullable=True),
        sa.Column("batch_id", sa.Integer(), nullable=True),
        sa.Column("period", sa.DateTime(), nullable=True),
        sa.Column("created_at", sa.DateTime(), nullable=False),
        sa.Column("updated_at", sa.DateTime(), nullable=False),
        sa.ForeignKeyConstraint(
            ["batch_id"],
            ["sync_batch.id"],
        ),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index("ix_sync_outbox_batch_id", "sync_outbox", ["batch_id"], unique=False)
    op.create_index(
        "ix_sync_outbox_pending",
        "sync_outbox",
        ["id"],
        unique=False,
        sqlite_where=sa.text("rev > sent_rev"),
        postgresql_where=sa.text("rev > sent_rev"),
    )
    op.create_index("ix_sync_outbox_period", "sync_outbox", ["period"], unique=False)
    op.create_index("uq_sync_outbox_kind_key", "sync_outbox", ["kind", "key"], unique=True)


def downgrade() -> None:
    op.drop_index("uq_sync_outbox_kind_key", table_name="sync_outbox")
    op.drop_index("ix_sync_outbox_period", table_name="sync_outbox")
    op.drop_index("ix_sync_outbox_pending", table_name="sync_outbox")
    op.drop_index("ix_sync_outbox_batch_id", table_name="sync_outbox")
    op.drop_table("sync_outbox")
    op.drop_table("sync_state")
    op.drop_table("sync_batch")
