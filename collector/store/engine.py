"""The database underneath the store: a URL made into an engine set up for SQLite or PostgreSQL,
the transactions every store method runs in, and the migrations.

SQLite runs in WAL mode with foreign keys on; write transactions start with `BEGIN IMMEDIATE` so
writers from several threads queue on the busy timeout instead of failing half-way. PostgreSQL
connections are checked before use (`pool_pre_ping`), so a restarted server costs no request.
Database errors that mean "unreachable" become `StoreUnavailable` with one line and no DSN.
"""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import msgspec
import sqlalchemy as sa
from sqlalchemy.dialects import postgresql as pg
from sqlalchemy.dialects import sqlite

from collector.store.errors import StoreError, StoreUnavailable

MIGRATIONS = Path(__file__).resolve().parent / "migrations"
_UPGRADE_LOCK = 0x6D6564736563  # "medsec": one migrator at a time on a shared PostgreSQL
_SQLITE_BUSY_MS = 30_000
_PG_CONNECT_TIMEOUT_S = 10


def _json_dumps(value: Any) -> str:
    return msgspec.json.encode(value).decode("utf-8")


def _first_line(exc: BaseException, secret: str | None) -> str:
    orig = getattr(exc, "orig", None) or exc
    lines = [line.strip() for line in str(orig).splitlines() if line.strip()]
    text = lines[0] if lines else type(orig).__name__
    if secret:
        text = text.replace(secret, "***")
    return text


def connect(url: str) -> tuple[sa.Engine, str | None]:
    """An engine for `url` (`sqlite:///PATH` or `postgresql+psycopg://...`) and the URL's password
    (kept out of error messages); no I/O yet."""
    try:
        parsed = sa.make_url(url)
    except sa.exc.ArgumentError:
        raise StoreError("the database URL is not valid") from None
    if parsed.drivername in ("postgresql", "postgres"):
        parsed = parsed.set(drivername="postgresql+psycopg")
    common: dict[str, Any] = {
        "json_serializer": _json_dumps,
        "json_deserializer": msgspec.json.decode,
        "pool_pre_ping": True,
    }
    if parsed.drivername == "postgresql+psycopg":
        connect_args: dict[str, Any] = {"application_name": "medsec-collector"}
        if "connect_timeout" not in parsed.query:
            connect_args["connect_timeout"] = _PG_CONNECT_TIMEOUT_S
        engine = sa.create_engine(parsed, connect_args=connect_args, **common)
    elif parsed.drivername in ("sqlite", "sqlite+pysqlite"):
        if parsed.database in (None, "", ":memory:"):
            raise StoreError("SQLite needs a file: sqlite:///PATH")
        engine = sa.create_engine(
            parsed, connect_args={"timeout": _SQLITE_BUSY_MS / 1000}, **common
        )
        _sqlite_transactions(engine)
    else:
        raise StoreError(
            f"unsupported database driver {parsed.drivername!r}:"
            " use sqlite:///PATH or postgresql+psycopg://..."
        )
    return engine, parsed.password


class Database:
    """The engine and its transactions, which every part of the `Store` builds on."""

    _engine: sa.Engine
    _password: str | None
    _dialect: str

    def upgrade(self) -> tuple[str | None, str | None]:
        """Apply the Alembic migrations up to head, in one transaction (a no-op when current);
        the schema revisions before and after (None: an empty database). Several collectors
        starting at once on PostgreSQL migrate one after the other."""
        from alembic import command
        from alembic.config import Config
        from alembic.runtime.migration import MigrationContext

        config = Config()
        config.set_main_option("script_location", str(MIGRATIONS).replace("%", "%%"))
        with self._tx(write=True) as conn:
            if self._dialect == "postgresql":
                conn.execute(sa.text("SELECT pg_advisory_xact_lock(:key)"), {"key": _UPGRADE_LOCK})
            config.attributes["connection"] = conn
            before = MigrationContext.configure(conn).get_current_revision()
            command.upgrade(config, "head")
            return before, MigrationContext.configure(conn).get_current_revision()

    def ping(self) -> bool:
        try:
            with self._tx(write=False) as conn:
                conn.execute(sa.text("SELECT 1"))
        except StoreUnavailable:
            return False
        return True

    @contextmanager
    def _tx(self, *, write: bool, snapshot: bool = False) -> Iterator[sa.Connection]:
        """One transaction; `write` takes SQLite's write lock up front, `snapshot` gives every
        statement the same view (REPEATABLE READ on PostgreSQL; any SQLite read in WAL)."""
        try:
            with self._engine.connect() as conn:
                if write:
                    conn.execution_options(medsec_write=True)
                if snapshot and self._dialect == "postgresql":
                    conn.execution_options(isolation_level="REPEATABLE READ")
                with conn.begin():
                    yield conn
        except (sa.exc.OperationalError, sa.exc.InterfaceError) as exc:
            raise StoreUnavailable(
                f"database unavailable: {_first_line(exc, self._password)}"
            ) from exc
        except sa.exc.TimeoutError as exc:
            raise StoreUnavailable("database unavailable: no free connection in the pool") from exc

    def _insert(self, table: sa.Table) -> pg.Insert | sqlite.Insert:
        if self._dialect == "postgresql":
            return pg.insert(table)
        return sqlite.insert(table)


def _sqlite_transactions(engine: sa.Engine) -> None:
    """WAL, foreign keys and a busy timeout on every connection; SQLAlchemy, not the sqlite3
    module, emits BEGIN, so a write transaction can take the write lock at its start."""

    @sa.event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection: Any, _record: Any) -> None:
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        try:
            cursor.execute(f"PRAGMA busy_timeout = {_SQLITE_BUSY_MS}")
            _use_wal(cursor)
            cursor.execute("PRAGMA foreign_keys = ON")
        finally:
            cursor.close()

    @sa.event.listens_for(engine, "begin")
    def _on_begin(conn: sa.Connection) -> None:
        write = conn.get_execution_options().get("medsec_write", False)
        conn.exec_driver_sql("BEGIN IMMEDIATE" if write else "BEGIN")


def _use_wal(cursor: Any) -> None:
    """Switch the database to WAL (a lasting property of the file). SQLite does not wait on its
    busy timeout for that switch: while another process's first connection holds the lock —
    collectors starting together on a new database — it answers "database is locked" at once,
    so wait here as the busy timeout would."""
    deadline = time.monotonic() + _SQLITE_BUSY_MS / 1000
    while cursor.execute("PRAGMA journal_mode").fetchone()[0].lower() != "wal":
        try:
            cursor.execute("PRAGMA journal_mode = WAL")
        except sqlite3.OperationalError as exc:
            if "locked" not in str(exc) or time.monotonic() > deadline:
                raise
            time.sleep(0.01)
