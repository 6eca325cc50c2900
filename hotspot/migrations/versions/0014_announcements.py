"""Announcements from the BUMDes on the splash and status pages (issue #15, item 3)

Revision ID: 0014
Revises: 0013 (uplink outage)
Create Date: 2026-11-30
"""

import sqlalchemy as sa
from alembic import op

revision = "0014"
down_revision = "0013"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "announcement",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("text_id", sa.String(length=280), nullable=False),
        sa.Column("text_en", sa.String(length=280), nullable=True),
        sa.Column("starts_at", sa.DateTime(), nullable=False),
        sa.Column("ends_at", sa.DateTime(), nullable=False),
        sa.Column("created_at", sa.DateTime(), nullable=False),
        sa.Column("created_by", sa.String(length=64), nullable=True),
        sa.Column("updated_at", sa.DateTime(), nullable=False),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index("ix_announcement_ends_at", "announcement", ["ends_at"])


def downgrade() -> None:
    op.drop_index("ix_announcement_ends_at", table_name="announcement")
    op.drop_table("announcement")
