"""Dashboard: one row per live login session, so logging out ends it everywhere.

Revision ID: dashboard_0001
Revises: 0001
Create Date: 2026-12-02
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "dashboard_0001"
down_revision: str | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "tenantry_dashboard_sessions",
        sa.Column("id_digest", sa.String(64), primary_key=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=False),
    )
    op.create_index(
        "ix_tenantry_dashboard_sessions_expires_at", "tenantry_dashboard_sessions", ["expires_at"]
    )


def downgrade() -> None:
    op.drop_index("ix_tenantry_dashboard_sessions_expires_at", "tenantry_dashboard_sessions")
    op.drop_table("tenantry_dashboard_sessions")
