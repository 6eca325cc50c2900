"""Agents (warung resellers): batches assigned to an agent at the agent's price, and the
agent's payments to the BUMDes (issue #13, item 4)

The new role ``agen`` needs no change: ``operator.role`` is a plain VARCHAR(8) without a
CHECK constraint (hotspot/dbtypes.py).

Revision ID: 0010
Revises: 0009 (daily summary)
Create Date: 2026-11-30
"""

import sqlalchemy as sa
from alembic import op

revision = "0010"
down_revision = "0009"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "agent_batch",
        sa.Column("batch_id", sa.Integer(), nullable=False),
        sa.Column("agent_id", sa.Integer(), nullable=False),
        sa.Column("price", sa.Integer(), nullable=False),
        sa.Column("assigned_at", sa.DateTime(), nullable=False),
        sa.Column("assigned_by", sa.String(length=32), nullable=False),
        sa.ForeignKeyConstraint(["batch_id"], ["voucher_batch.id"]),
        sa.ForeignKeyConstraint(["agent_id"], ["operator.id"]),
        sa.PrimaryKeyConstraint("batch_id"),
    )
    op.create_index("ix_agent_batch_agent_id", "agent_batch", ["agent_id"])
    op.create_table(
        "agent_settlement",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("agent_id", sa.Integer(), nullable=False),
        sa.Column("amount", sa.Integer(), nullable=False),
        sa.Column("note", sa.String(length=200), nullable=True),
        sa.Column("token", sa.String(length=64), nullable=False),
        sa.Column("recorded_at", sa.DateTime(), nullable=False),
        sa.Column("recorded_by", sa.String(length=32), nullable=False),
        sa.ForeignKeyConstraint(["agent_id"], ["operator.id"]),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("token"),
    )
    op.create_index("ix_agent_settlement_agent_id", "agent_settlement", ["agent_id"])


def downgrade() -> None:
    op.drop_index("ix_agent_settlement_agent_id", table_name="agent_settlement")
    op.drop_table("agent_settlement")
    op.drop_index("ix_agent_batch_agent_id", table_name="agent_batch")
    op.drop_table("agent_batch")
