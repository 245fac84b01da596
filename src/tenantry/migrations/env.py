"""Alembic environment: runs Tenantry's migrations on a synchronous connection."""

from alembic import context
from sqlalchemy import create_engine, pool, text

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
        if connection.dialect.name == "postgresql":
            # Processes started together on one database migrate one at a time: the
            # others wait here, then find it at head (else all but one fail on the DDL).
            # Released when the migration's transaction ends.
            connection.execute(text("SELECT pg_advisory_xact_lock(hashtext('tenantry_migrate'))"))
        context.run_migrations()
connectable.dispose()
