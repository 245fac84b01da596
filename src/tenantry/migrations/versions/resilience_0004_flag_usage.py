"""Flag usage: evaluations per flag per hour, and when each flag was first and last evaluated.

Revision ID: resilience_0004
Revises: resilience_0003
Create Date: 2026-12-05
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "resilience_0004"
down_revision: str | None = "resilience_0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "tenantry_flag_usage_hourly",
        sa.Column("flag_key", sa.String(100), primary_key=True),
        sa.Column("hour", sa.DateTime(timezone=True), primary_key=True),
        sa.Column("yes", sa.BigInteger(), nullable=False, server_default="0"),
        sa.Column("no", sa.BigInteger(), nullable=False, server_default="0"),
    )
    op.create_index("ix_tenantry_flag_usage_hourly_hour", "tenantry_flag_usage_hourly", ["hour"])
    op.create_table(
        "tenantry_flag_usage_last",
        sa.Column("flag_key", sa.String(100), primary_key=True),
        sa.Column("first_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("last_at", sa.DateTime(timezone=True), nullable=False),
    )


def downgrade() -> None:
    op.drop_table("tenantry_flag_usage_last")
    op.drop_index("ix_tenantry_flag_usage_hourly_hour", "tenantry_flag_usage_hourly")
    op.drop_table("tenantry_flag_usage_hourly")
