"""Storage: one record per stored file.

Revision ID: storage_0001
Revises: 0001
Create Date: 2026-11-29
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "storage_0001"
down_revision: str | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "tenantry_storage_files",
        sa.Column(
            "id",
            sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
            primary_key=True,
            autoincrement=True,
        ),
        sa.Column("key", sa.String(1024), nullable=False, unique=True),
        sa.Column("company_id", sa.String(64), nullable=False),
        sa.Column("category", sa.String(64), nullable=False),
        sa.Column("filename", sa.String(255), nullable=False),
        sa.Column("size", sa.BigInteger(), nullable=False),
        sa.Column("content_type", sa.String(255), nullable=False),
        sa.Column("checksum", sa.String(64), nullable=False),
        sa.Column("is_public", sa.Boolean(), nullable=False),
        sa.Column("provider", sa.String(32), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("migrated_to", sa.String(32), nullable=True),
        sa.Column("migrated_at", sa.DateTime(timezone=True), nullable=True),
    )
    op.create_index(
        "ix_tenantry_storage_files_company_category",
        "tenantry_storage_files",
        ["company_id", "category"],
    )


def downgrade() -> None:
    op.drop_index("ix_tenantry_storage_files_company_category", "tenantry_storage_files")
    op.drop_table("tenantry_storage_files")
