"""Storage: files and bytes per company and category, kept with the file records.

Revision ID: storage_0002
Revises: storage_0001
Create Date: 2026-12-02
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "storage_0002"
down_revision: str | None = "storage_0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "tenantry_storage_usage",
        sa.Column("company_id", sa.String(64), primary_key=True),
        sa.Column("category", sa.String(64), primary_key=True),
        sa.Column("files", sa.BigInteger, nullable=False, server_default="0"),
        sa.Column("bytes", sa.BigInteger, nullable=False, server_default="0"),
    )
    op.execute(
        "INSERT INTO tenantry_storage_usage (company_id, category, files, bytes) "
        "SELECT company_id, category, COUNT(*), COALESCE(SUM(size), 0) "
        "FROM tenantry_storage_files GROUP BY company_id, category"
    )


def downgrade() -> None:
    op.drop_table("tenantry_storage_usage")
