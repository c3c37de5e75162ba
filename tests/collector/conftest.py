"""Storage fixtures: a fresh database on the shared PostgreSQL (127.0.0.1:5432, trust auth) for
the session, dropped at the end; and `store`, an upgraded `Store` that starts empty in every
test, on a new SQLite file or on that PostgreSQL database with its tables truncated. And `lab`,
the one hospital-in-a-box lab the lab and scanner tests share, built once for the session.
"""

from __future__ import annotations

import secrets
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest
import sqlalchemy as sa

from collector.store import Store
from collector.store.schema import GENESIS_HASH, metadata

PG_SERVER = "postgresql+psycopg://postgres@127.0.0.1:5432"
_ADMIN = "host=127.0.0.1 port=5432 user=postgres dbname=postgres connect_timeout=5"


def _admin() -> psycopg.Connection[tuple[object, ...]]:
    return psycopg.connect(_ADMIN, autocommit=True)


@pytest.fixture(scope="session")
def pg_url() -> Iterator[str]:
    """URL of a database `medsec_test_<random>` created for this test run on the shared server."""
    name = f"medsec_test_{secrets.token_hex(6)}"
    try:
        with _admin() as conn:
            conn.execute(f'CREATE DATABASE "{name}"')
    except psycopg.OperationalError as exc:
        pytest.skip(f"the PostgreSQL server at 127.0.0.1:5432 is not reachable: {exc}")
    try:
        yield f"{PG_SERVER}/{name}"
    finally:
        with _admin() as conn:
            conn.execute(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity"
                " WHERE datname = %s AND pid <> pg_backend_pid()",
                (name,),
            )
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture(scope="session")
def pg_upgraded(pg_url: str) -> str:
    """`pg_url` with the schema at head (migrated once per session)."""
    store = Store.open(pg_url)
    try:
        store.upgrade()
    finally:
        store.close()
    return pg_url


_TABLES = ", ".join(t.name for t in metadata.sorted_tables if t.name != "audit_head")


@pytest.fixture(params=["sqlite", "postgresql"])
def store_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """URL of an upgraded, empty database; `store` opens it (tests use the URL for raw SQL)."""
    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path / 'collector.db'}"
        store = Store.open(url)
        try:
            store.upgrade()
        finally:
            store.close()
        return url
    url = str(request.getfixturevalue("pg_upgraded"))
    engine = sa.create_engine(url)
    try:
        with engine.begin() as conn:
            conn.exec_driver_sql(f"TRUNCATE {_TABLES} RESTART IDENTITY CASCADE")
            conn.execute(
                sa.text(
                    "UPDATE audit_head SET seq = 0, hash = :genesis, base_seq = 0,"
                    " base_hash = :genesis, keyed_from = NULL, mac = NULL WHERE id = 1"
                ),
                {"genesis": GENESIS_HASH},
            )
    finally:
        engine.dispose()
    return url


@pytest.fixture
def store(store_url: str) -> Iterator[Store]:
    opened = Store.open(store_url)
    try:
        yield opened
    finally:
        opened.close()


@pytest.fixture(params=["sqlite", "postgresql"])
def empty_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """URL of a database with no tables at all: a new SQLite file, or a new PostgreSQL schema
    (selected through the connection's search_path) in the session's database."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'empty.db'}"
        return
    base = str(request.getfixturevalue("pg_url"))
    schema = f"empty_{secrets.token_hex(4)}"
    engine = sa.create_engine(base)
    try:
        with engine.begin() as conn:
            conn.exec_driver_sql(f"CREATE SCHEMA {schema}")
        yield f"{base}?options=-csearch_path%3D{schema}"
        with engine.begin() as conn:
            conn.exec_driver_sql(f"DROP SCHEMA {schema} CASCADE")
    finally:
        engine.dispose()
