"""collector: the gateways' certificates obtained through ACME with DNS-01 (issue #15, item 4)

Revision ID: c0007
Revises: c0006
Create Date: 2026-11-30
"""

import sqlalchemy as sa
from alembic import op

revision = "c0007"
down_revision = "c0006"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "gateway_certificate",
        sa.Column("gateway_id", sa.String(length=63), nullable=False),
        sa.Column("name", sa.String(length=253), nullable=False),
        sa.Column("csr", sa.Text(), nullable=False),
        sa.Column("key_fingerprint", sa.String(length=64), nullable=False),
        sa.Column("state", sa.String(length=16), nullable=False),
        sa.Column("requested_at", sa.DateTime(), nullable=False),
        sa.Column("claimed_at", sa.DateTime(), nullable=True),
        sa.Column("attempts", sa.Integer(), server_default=sa.text("0"), nullable=False),
        sa.Column("next_attempt_at", sa.DateTime(), nullable=False),
        sa.Column("error", sa.String(length=300), nullable=True),
        sa.Column("chain", sa.Text(), nullable=True),
        sa.Column("chain_fingerprint", sa.String(length=64), nullable=True),
        sa.Column("etag", sa.String(length=64), nullable=True),
        sa.Column("issued_at", sa.DateTime(), nullable=True),
        sa.Column("not_after", sa.DateTime(), nullable=True),
        sa.ForeignKeyConstraint(["gateway_id"], ["gateway.id"]),
        sa.PrimaryKeyConstraint("gateway_id"),
    )


def downgrade() -> None:
    op.drop_table("gateway_certificate")
