"""Feature flags and their audit log.

Revision ID: resilience_0001
Revises: 0001
Create Date: 2026-11-29
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "resilience_0001"
down_revision: str | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "tenantry_feature_flags",
        sa.Column("key", sa.String(100), primary_key=True),
        sa.Column("description", sa.Text(), nullable=False, server_default=""),
        sa.Column("enabled", sa.Boolean(), nullable=False, server_default=sa.false()),
        sa.Column("target", sa.String(16), nullable=False, server_default="global"),
        sa.Column("rollout", sa.Integer(), nullable=False, server_default="100"),
        sa.Column("allow", sa.JSON(), nullable=False),
        sa.Column("block", sa.JSON(), nullable=False),
        sa.Column("variants", sa.JSON(), nullable=False),
        sa.Column("version", sa.Integer(), nullable=False, server_default="1"),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
    )
    op.create_table(
        "tenantry_feature_flag_audit",
        sa.Column("id", sa.Integer(), primary_key=True, autoincrement=True),
        sa.Column("flag_key", sa.String(100), nullable=False),
        sa.Column("action", sa.String(32), nullable=False),
        sa.Column("actor", sa.String(64), nullable=False),
        sa.Column("at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("before", sa.JSON(), nullable=True),
        sa.Column("after", sa.JSON(), nullable=True),
    )
    op.create_index(
        "ix_tenantry_feature_flag_audit_flag_key", "tenantry_feature_flag_audit", ["flag_key"]
    )


def downgrade() -> None:
    op.drop_index("ix_tenantry_feature_flag_audit_flag_key", "tenantry_feature_flag_audit")
    op.drop_table("tenantry_feature_flag_audit")
    op.drop_table("tenantry_feature_flags")
