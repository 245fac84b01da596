"""Tenants: companies with their plan, overrides and storage counters; plans; the
storage reservations of uploads under way; usage per company per hour.

Revision ID: tenants_0001
Revises: storage_0001
Create Date: 2026-12-02
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "tenants_0001"
down_revision: str | None = "storage_0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "tenantry_companies",
        sa.Column("id", sa.String(64), primary_key=True),
        sa.Column("plan", sa.String(64), nullable=True),
        sa.Column("limits", sa.Text, nullable=False, server_default="{}"),
        sa.Column("storage_bytes", sa.BigInteger, nullable=False, server_default="0"),
        sa.Column("storage_files", sa.BigInteger, nullable=False, server_default="0"),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
    )
    op.create_index("ix_tenantry_companies_storage_bytes", "tenantry_companies", ["storage_bytes"])
    op.create_table(
        "tenantry_plans",
        sa.Column("name", sa.String(64), primary_key=True),
        sa.Column("limits", sa.Text, nullable=False, server_default="{}"),
        sa.Column("queue_weight", sa.Integer, nullable=False, server_default="1"),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
    )
    op.create_table(
        "tenantry_storage_reservations",
        sa.Column("id", sa.String(32), primary_key=True),
        sa.Column("company_id", sa.String(64), nullable=False),
        sa.Column("bytes", sa.BigInteger, nullable=False, server_default="0"),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=False),
    )
    op.create_index(
        "ix_tenantry_storage_reservations_company_id",
        "tenantry_storage_reservations",
        ["company_id"],
    )
    op.create_index(
        "ix_tenantry_storage_reservations_expires_at",
        "tenantry_storage_reservations",
        ["expires_at"],
    )
    op.create_table(
        "tenantry_usage_hourly",
        sa.Column("company_id", sa.String(64), primary_key=True),
        sa.Column("hour", sa.DateTime(timezone=True), primary_key=True),
        sa.Column("api_requests", sa.BigInteger, nullable=False, server_default="0"),
        sa.Column("jobs_run", sa.BigInteger, nullable=False, server_default="0"),
        sa.Column("job_ms", sa.Float, nullable=False, server_default="0"),
        sa.Column("query_calls", sa.BigInteger, nullable=False, server_default="0"),
        sa.Column("query_ms", sa.Float, nullable=False, server_default="0"),
    )
    op.create_index("ix_tenantry_usage_hourly_hour", "tenantry_usage_hourly", ["hour"])
    # Companies that already have files start with their real usage.
    op.execute(
        "INSERT INTO tenantry_companies (id, limits, storage_bytes, storage_files, created_at) "
        "SELECT company_id, '{}', COALESCE(SUM(size), 0), COUNT(*), MIN(created_at) "
        "FROM tenantry_storage_files GROUP BY company_id"
    )
    op.execute(
        "INSERT INTO tenantry_companies (id, limits, storage_bytes, storage_files, created_at) "
        "SELECT company_id, '{}', 0, 0, MIN(created_at) FROM tenantry_api_keys "
        "WHERE company_id NOT IN (SELECT id FROM tenantry_companies) GROUP BY company_id"
    )


def downgrade() -> None:
    op.drop_index("ix_tenantry_usage_hourly_hour", "tenantry_usage_hourly")
    op.drop_table("tenantry_usage_hourly")
    op.drop_table("tenantry_storage_reservations")
    op.drop_table("tenantry_plans")
    op.drop_index("ix_tenantry_companies_storage_bytes", "tenantry_companies")
    op.drop_table("tenantry_companies")
