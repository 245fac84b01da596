"""Queries: the audit log of indexes applied from the advisor and verified afterwards.

Revision ID: queries_0001
Revises: 0001
Create Date: 2026-12-08
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "queries_0001"
down_revision: str | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "tenantry_index_changes",
        sa.Column("id", sa.Integer(), primary_key=True, autoincrement=True),
        sa.Column("statement", sa.Text(), nullable=False),
        sa.Column("index_name", sa.String(63), nullable=False),
        sa.Column("table_name", sa.String(255), nullable=False),
        sa.Column("step", sa.String(32), nullable=False),
        sa.Column("detail", sa.Text(), nullable=False, server_default=""),
        sa.Column("before", sa.Text(), nullable=True),
        sa.Column("after", sa.Text(), nullable=True),
        sa.Column("actor", sa.String(100), nullable=False),
        sa.Column("at", sa.DateTime(timezone=True), nullable=False),
    )
    op.create_index(
        "ix_tenantry_index_changes_index_name", "tenantry_index_changes", ["index_name"]
    )


def downgrade() -> None:
    op.drop_index("ix_tenantry_index_changes_index_name", "tenantry_index_changes")
    op.drop_table("tenantry_index_changes")
