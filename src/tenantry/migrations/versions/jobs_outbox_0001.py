"""Jobs: the outbox that keeps jobs enqueued while Redis is unreachable.

Revision ID: jobs_outbox_0001
Revises: 0001
Create Date: 2026-11-29
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "jobs_outbox_0001"
down_revision: str | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "tenantry_job_outbox",
        sa.Column("job_id", sa.String(200), primary_key=True),
        sa.Column("queue", sa.String(64), nullable=False),
        sa.Column("name", sa.String(200), nullable=False),
        sa.Column("data", sa.Text(), nullable=False),
        sa.Column("options", sa.Text(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("relay_attempts", sa.Integer(), nullable=False, server_default="0"),
        sa.Column("last_error", sa.Text(), nullable=True),
    )
    op.create_index("ix_tenantry_job_outbox_created_at", "tenantry_job_outbox", ["created_at"])


def downgrade() -> None:
    op.drop_index("ix_tenantry_job_outbox_created_at", "tenantry_job_outbox")
    op.drop_table("tenantry_job_outbox")
