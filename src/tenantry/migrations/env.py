"""Alembic environment: runs Tenantry's migrations on a synchronous connection."""

from alembic import context
from sqlalchemy import create_engine, pool

from tenantry.db import Base

config = context.config
url = config.get_main_option("sqlalchemy.url")
assert url, "sqlalchemy.url is set by tenantry.db.alembic_config"

connectable = create_engine(url, poolclass=pool.NullPool)
with connectable.connect() as connection:
    context.configure(
        connection=connection,
        target_metadata=Base.metadata,
        version_table="tenantry_alembic_version",
        render_as_batch=connection.dialect.name == "sqlite",
    )
    with context.begin_transaction():
        context.run_migrations()
connectable.dispose()
