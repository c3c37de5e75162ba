"""The collector's storage fixtures (`store` on SQLite and PostgreSQL, `store_url`, `pg_url`)
for the compliance tests, which read what the store holds."""

from tests.collector.conftest import pg_upgraded, pg_url, store, store_url

__all__ = ["pg_upgraded", "pg_url", "store", "store_url"]
