"""Alembic environment of the collector store, for programmatic use only: `Store.upgrade` passes
an open connection (inside its transaction) as `config.attributes["connection"]`, so the whole
upgrade commits or rolls back as one, on SQLite and PostgreSQL alike. There is no alembic.ini.
"""

from __future__ import annotations

from alembic import context

from collector.store.schema import metadata


def _run() -> None:
    connection = context.config.attributes.get("connection")
    if connection is None:
        raise RuntimeError("run migrations through collector.store.Store.upgrade()")
    context.configure(
        connection=connection,
        target_metadata=metadata,
        render_as_batch=connection.dialect.name == "sqlite",  # SQLite cannot ALTER most things
        transactional_ddl=True,
    )
    with context.begin_transaction():
        context.run_migrations()


_run()
