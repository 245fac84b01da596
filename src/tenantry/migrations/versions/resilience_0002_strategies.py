"""Flag strategies, dependencies and segments (Unleash's targeting).

Revision ID: resilience_0002
Revises: resilience_0001
Create Date: 2026-12-02
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "resilience_0002"
down_revision: str | None = "resilience_0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("tenantry_feature_flags") as batch:
        batch.add_column(sa.Column("strategies", sa.JSON(), nullable=False, server_default="[]"))
        batch.add_column(sa.Column("dependencies", sa.JSON(), nullable=False, server_default="[]"))
    op.create_table(
        "tenantry_flag_segments",
        sa.Column("id", sa.Integer(), primary_key=True, autoincrement=False),
        sa.Column("name", sa.String(100), nullable=False),
        sa.Column("description", sa.Text(), nullable=False, server_default=""),
        sa.Column("constraints", sa.JSON(), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
    )


def downgrade() -> None:
    op.drop_table("tenantry_flag_segments")
    with op.batch_alter_table("tenantry_feature_flags") as batch:
        batch.drop_column("dependencies")
        batch.drop_column("strategies")
