"""collector: the province's signed policy (issue #15, item 1); a gateway's kecamatan (its
policy scope) is the column c0003_alerts added for the dashboard's groups.

Revision ID: c0005
Revises: c0004
Create Date: 2026-11-30
"""

import sqlalchemy as sa
from alembic import op

revision = "c0005"
down_revision = "c0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "policy_scope",
        sa.Column("scope", sa.String(length=80), nullable=False),
        sa.Column("fields", sa.Text(), nullable=False),
        sa.Column("version", sa.BigInteger(), nullable=False),
        sa.Column("published_at", sa.DateTime(), nullable=False),
        sa.PrimaryKeyConstraint("scope"),
    )
    op.create_table(
        "policy_document",
        sa.Column("gateway_id", sa.String(length=63), nullable=False),
        sa.Column("version", sa.BigInteger(), nullable=False),
        sa.Column("envelope", sa.Text(), nullable=False),
        sa.Column("etag", sa.String(length=64), nullable=False),
        sa.Column("published_at", sa.DateTime(), nullable=False),
        sa.ForeignKeyConstraint(["gateway_id"], ["gateway.id"]),
        sa.PrimaryKeyConstraint("gateway_id"),
    )
    with op.batch_alter_table("gateway") as batch:
        batch.add_column(sa.Column("policy_version", sa.BigInteger(), nullable=True))
    with op.batch_alter_table("health_sample") as batch:
        batch.add_column(sa.Column("policy_version", sa.BigInteger(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("health_sample") as batch:
        batch.drop_column("policy_version")
    with op.batch_alter_table("gateway") as batch:
        batch.drop_column("policy_version")
    op.drop_table("policy_document")
    op.drop_table("policy_scope")
