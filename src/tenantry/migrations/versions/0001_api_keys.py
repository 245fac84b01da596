"""API keys.

Revision ID: 0001
Revises:
Create Date: 2026-11-29
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0001"
down_revision: str | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "tenantry_api_keys",
        sa.Column("id", sa.String(16), primary_key=True),
        sa.Column("company_id", sa.String(64), nullable=False),
        sa.Column("name", sa.String(100), nullable=False, server_default=""),
        sa.Column("secret_hash", sa.String(64), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("revoked_at", sa.DateTime(timezone=True), nullable=True),
    )
    op.create_index("ix_tenantry_api_keys_company_id", "tenantry_api_keys", ["company_id"])


def downgrade() -> None:
    op.drop_index("ix_tenantry_api_keys_company_id", "tenantry_api_keys")
    op.drop_table("tenantry_api_keys")
