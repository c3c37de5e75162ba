"""Fixtures of the fault tests: a private PostgreSQL cluster (initdb/pg_ctl in a temporary folder,
its own loopback port, run as the `postgres` user; never the shared server on 5432) with a new
database per test, collectors that are stopped whatever the test did, and a report as the real
agent renders it."""

from __future__ import annotations

import secrets
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest

from tests.faults.rig import Collector, report_template
from tests.pg import PgUnavailable, TempPostgres


@pytest.fixture(scope="package")
def private_pg() -> Iterator[TempPostgres]:
    try:
        server = TempPostgres()
    except PgUnavailable as exc:
        pytest.skip(str(exc))
    # As in production: a commit the collector answered 201 for is on disk. (tests/pg.py turns
    # synchronous commit off for speed; an immediate shutdown would then drop committed
    # transactions still in the WAL buffers, which no collector could prevent.)
    with (server.data / "postgresql.conf").open("a") as conf:
        conf.write("synchronous_commit = on\n")
    try:
        server.start()
        yield server
    finally:
        server.destroy()


@pytest.fixture
def new_pg_database(private_pg: TempPostgres) -> Callable[[], str]:
    """Makes an empty database on the private cluster; its SQLAlchemy URL."""

    def make() -> str:
        name = f"medsec_fault_{secrets.token_hex(4)}"
        with psycopg.connect(
            f"host=127.0.0.1 port={private_pg.port} user=postgres dbname=postgres",
            autocommit=True,
        ) as conn:
            conn.execute(f'CREATE DATABASE "{name}"')
        return f"postgresql+psycopg://postgres@127.0.0.1:{private_pg.port}/{name}"

    return make


@pytest.fixture(params=["sqlite", "postgresql"])
def database(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """A new, empty database: a SQLite file, or a database on the private PostgreSQL."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'medsec.db'}"
    make: Callable[[], str] = request.getfixturevalue("new_pg_database")
    return make()


@pytest.fixture(scope="package")
def template(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    return report_template(tmp_path_factory.mktemp("template"))


@pytest.fixture
def new_collector(tmp_path: Path) -> Iterator[Callable[[str], Collector]]:
    """Makes a collector's folder over a database URL; every collector made is stopped at the
    end, however the test ended."""
    made: list[Collector] = []

    def make(database: str) -> Collector:
        made.append(Collector(tmp_path / f"collector{len(made) or ''}", database))
        return made[-1]

    yield make
    for collector in made:
        collector.stop()
