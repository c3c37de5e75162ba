"""`Store`: every read and write the collector makes to its database, one transaction per method,
in SQLAlchemy Core over SQLite (one hospital) or PostgreSQL (a province).

SQLite runs in WAL mode with foreign keys on; write transactions start with `BEGIN IMMEDIATE` so
writers from several threads queue on the busy timeout instead of failing half-way. PostgreSQL
connections are checked before use (`pool_pre_ping`), so a restarted server costs no request.
Database errors that mean "unreachable" become `StoreUnavailable` with one line and no DSN.
"""

from __future__ import annotations

import hashlib
import secrets
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, ClassVar

import msgspec
import sqlalchemy as sa
from sqlalchemy.dialects import postgresql as pg
from sqlalchemy.dialects import sqlite

from checks.envelope import Report, ReportResult
from collector.models import (
    Agent,
    AuditEntry,
    AuditVerdict,
    HostSummary,
    IngestOutcome,
    Page,
    ReportSummary,
    ResultRow,
    Role,
    SignatureAlg,
    User,
)
from collector.store import audit
from collector.store.schema import (
    agents,
    audit_head,
    audit_log,
    enrollment_tokens,
    hosts,
    reports,
    results,
    users,
)

_Row = sa.Row[*tuple[Any, ...]]  # a row of any shape; fields are read by name

MIGRATIONS = Path(__file__).resolve().parent / "migrations"
_UPGRADE_LOCK = 0x6D6564736563  # "medsec": one migrator at a time on a shared PostgreSQL
_SQLITE_BUSY_MS = 30_000
_PG_CONNECT_TIMEOUT_S = 10
_MAX_ROWS = 2**62


class StoreError(Exception):
    """Base of the store's errors; the message is one line, safe to show."""


class StoreUnavailable(StoreError):
    """The database cannot be reached (or is locked past the busy timeout)."""


class NotFound(StoreError):
    pass


class UserExists(StoreError):
    pass


class AgentExists(StoreError):
    pass


class ReplayedReport(StoreError):
    """A report id already stored with other bytes or by another agent."""


class EnrollmentInvalid(StoreError):
    """`reason`: "unknown" | "expired" | "used" | "name_mismatch"."""

    _MESSAGES: ClassVar[dict[str, str]] = {
        "unknown": "the enrolment token is not known",
        "expired": "the enrolment token has expired",
        "used": "the enrolment token has already been used",
        "name_mismatch": "the enrolment token was issued for another agent name",
    }

    def __init__(self, reason: str) -> None:
        super().__init__(self._MESSAGES[reason])
        self.reason = reason


# ----------------------------------------------------------------------------- helpers


def hash_token(token: str) -> str:
    """How every token is stored and looked up: SHA-256 hex of its text."""
    return hashlib.sha256(token.encode("utf-8")).hexdigest()


def _new_token(prefix: str) -> str:
    return prefix + secrets.token_urlsafe(32)


def _utc(moment: datetime) -> datetime:
    """Aware UTC; a naive datetime is taken to be UTC already."""
    if moment.tzinfo is None:
        return moment.replace(tzinfo=UTC)
    return moment.astimezone(UTC)


def _check_page(limit: int, offset: int) -> None:
    if limit < 0 or offset < 0:
        raise ValueError(f"limit and offset must not be negative (got {limit}, {offset})")


def _bounded(n: int) -> int:
    """A LIMIT or OFFSET both databases accept (a BIGINT); no table comes near it."""
    return min(n, _MAX_ROWS)


def _json_dumps(value: Any) -> str:
    return msgspec.json.encode(value).decode("utf-8")


def _strip_nul(value: Any) -> Any:
    """PostgreSQL text and jsonb cannot hold U+0000; replace it (SQLite gets the same data)."""
    if isinstance(value, str):
        return value.replace("\x00", "\ufffd")
    if isinstance(value, dict):
        return {_strip_nul(k): _strip_nul(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_strip_nul(v) for v in value]
    return value


def _text(value: str) -> str:
    return value.replace("\x00", "\ufffd") if "\x00" in value else value


def _storable(*values: str | None) -> bool:
    """No U+0000 in any value: PostgreSQL refuses it even in a WHERE clause. Such a key cannot
    name anything stored, so lookups answer "not found" on both backends instead of failing."""
    return not any(value is not None and "\x00" in value for value in values)


def _refuse_nul(what: str, value: str) -> None:
    if "\x00" in value:
        raise ValueError(f"{what} must not contain NUL characters")


def _first_line(exc: BaseException, secret: str | None) -> str:
    orig = getattr(exc, "orig", None) or exc
    lines = [line.strip() for line in str(orig).splitlines() if line.strip()]
    text = lines[0] if lines else type(orig).__name__
    if secret:
        text = text.replace(secret, "***")
    return text


def _agent(row: _Row) -> Agent:
    return Agent(
        id=row.id,
        name=row.name,
        alg=SignatureAlg(row.alg) if row.alg else None,
        public_key_pem=row.public_key_pem,
        enrolled_at=row.enrolled_at,
        revoked_at=row.revoked_at,
        last_seen_at=row.last_seen_at,
    )


def _user(row: _Row) -> User:
    return User(id=row.id, name=row.name, role=Role(row.role), created_at=row.created_at)


def _audit_entry(row: _Row) -> AuditEntry:
    return AuditEntry(
        seq=row.seq,
        at=row.at,
        actor=row.actor,
        role=row.role,
        action=row.action,
        source=row.source,
        outcome=row.outcome,
        prev_hash=row.prev_hash,
        hash=row.hash,
    )


_AGENT_COLUMNS = (
    agents.c.id,
    agents.c.name,
    agents.c.alg,
    agents.c.public_key_pem,
    agents.c.enrolled_at,
    agents.c.revoked_at,
    agents.c.last_seen_at,
)
_USER_COLUMNS = (users.c.id, users.c.name, users.c.role, users.c.created_at)
_HOST_SUMMARY = sa.select(
    hosts.c.id,
    hosts.c.hostname,
    agents.c.name.label("agent"),
    reports.c.report_id,
    hosts.c.last_report_at,
    reports.c.counts,
).select_from(
    hosts.join(agents, agents.c.id == hosts.c.agent_id).join(
        reports, reports.c.pk == hosts.c.last_report_pk
    )
)
_RESULT_ROWS = sa.select(
    reports.c.report_id,
    hosts.c.id.label("host_id"),
    hosts.c.hostname,
    results.c.check_id,
    results.c.status,
    results.c.target,
    results.c.message,
    reports.c.generated_at,
    results.c.clauses,
    results.c.evidence,
).select_from(
    hosts.join(results, results.c.report_pk == hosts.c.last_report_pk).join(
        reports, reports.c.pk == hosts.c.last_report_pk
    )
)


def _host_summary(row: _Row) -> HostSummary:
    return HostSummary(
        id=row.id,
        hostname=row.hostname,
        agent=row.agent,
        last_report_id=row.report_id,
        last_report_at=row.last_report_at,
        counts=dict(row.counts),
    )


def _result_row(row: _Row) -> ResultRow:
    return ResultRow(
        report_id=row.report_id,
        host_id=row.host_id,
        hostname=row.hostname,
        check_id=row.check_id,
        status=row.status,
        target=row.target,
        message=row.message,
        generated_at=row.generated_at,
        clauses=tuple(row.clauses),
        evidence=dict(row.evidence),
    )


def _result_params(
    report_pk: int, host_id: str, result: ReportResult, clean: Any
) -> dict[str, Any]:
    return {
        "report_pk": report_pk,
        "host_id": host_id,
        "check_id": result.check_id,
        "status": result.status,
        "severity": result.severity,
        "target": clean(result.target),
        "message": clean(result.message),
        "evidence": clean(result.evidence),
        "clauses": clean(result.clauses),
    }


_TOUCH_AGENT = (
    sa.update(agents)
    .where(agents.c.id == sa.bindparam("agent_pk"))
    .values(last_seen_at=sa.bindparam("seen", type_=agents.c.last_seen_at.type))
)

_LOCK_HEAD = (
    sa.select(audit_head.c.seq, audit_head.c.hash).where(audit_head.c.id == 1).with_for_update()
)
_INSERT_ENTRY = sa.insert(audit_log)
_MOVE_HEAD = (
    sa.update(audit_head)
    .where(audit_head.c.id == 1)
    .values(seq=sa.bindparam("new_seq"), hash=sa.bindparam("new_hash"))
)

# PostgreSQL unpacks the results from the report body it has just stored, in report order: one
# statement and no per-result work in Python. jsonb keeps the last of duplicate keys, as msgspec
# did when it validated the report; SQLite's JSON functions keep the first, so SQLite gets the
# parsed results instead. Only the store's own text reaches this SQL (the body is a parameter).
_RESULTS_FROM_BODY = """
INSERT INTO results
    (report_pk, host_id, check_id, status, severity, target, message, evidence, clauses)
SELECT r.pk, r.host_id, e.value ->> 'check_id', e.value ->> 'status', e.value ->> 'severity',
       e.value ->> 'target', e.value ->> 'message',
       COALESCE(e.value -> 'evidence', '{}'::jsonb), COALESCE(e.value -> 'clauses', '[]'::jsonb)
FROM reports AS r
CROSS JOIN LATERAL jsonb_array_elements(CAST(r.body AS jsonb) -> 'results')
    WITH ORDINALITY AS e(value, n)
WHERE r.pk = :report_pk
ORDER BY e.n
"""


class _Statements:
    """The hot path's statements, built once per store: SQLAlchemy then only looks up its
    compiled form instead of building and hashing a new statement on every report."""

    def __init__(self, dialect: str) -> None:
        insert = pg.insert if dialect == "postgresql" else sqlite.insert
        self.insert_report = (
            insert(reports)
            .on_conflict_do_nothing(index_elements=[reports.c.report_id])
            .returning(reports.c.pk)
        )
        self.results_from_body = sa.text(_RESULTS_FROM_BODY) if dialect == "postgresql" else None
        host = insert(hosts)
        self.upsert_host = host.on_conflict_do_update(
            index_elements=[hosts.c.id],
            set_={
                "hostname": host.excluded.hostname,
                "agent_id": host.excluded.agent_id,
                "last_report_pk": host.excluded.last_report_pk,
                "last_report_at": host.excluded.last_report_at,
                "inventory": host.excluded.inventory,
            },
            # Keep the newest report: an old one replayed from an agent's spool arrives late.
            where=hosts.c.last_report_at <= host.excluded.last_report_at,
        )


# ----------------------------------------------------------------------------- the store


class Store:
    """The collector's database. Thread-safe: one engine, a pool of connections."""

    def __init__(self, engine: sa.Engine, password: str | None = None) -> None:
        self._engine = engine
        self._password = password
        self._dialect = engine.dialect.name
        self._sql = _Statements(self._dialect)
        self._audit = audit.GroupCommit(self._write_audit)

    # -- lifecycle ---------------------------------------------------------------------------

    @classmethod
    def open(cls, url: str) -> Store:
        """An engine for `url` (`sqlite:///PATH` or `postgresql+psycopg://...`); no I/O yet and
        no migration (see `upgrade`)."""
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
        return cls(engine, parsed.password)

    def upgrade(self) -> None:
        """Apply the Alembic migrations up to head, in one transaction (a no-op when current).
        Several collectors starting at once on PostgreSQL migrate one after the other."""
        from alembic import command
        from alembic.config import Config

        config = Config()
        config.set_main_option("script_location", str(MIGRATIONS).replace("%", "%%"))
        with self._tx(write=True) as conn:
            if self._dialect == "postgresql":
                conn.execute(sa.text("SELECT pg_advisory_xact_lock(:key)"), {"key": _UPGRADE_LOCK})
            config.attributes["connection"] = conn
            command.upgrade(config, "head")

    def close(self) -> None:
        self._engine.dispose()

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

    # -- agents and enrolment ----------------------------------------------------------------

    def create_enrollment(self, name: str, ttl: timedelta, now: datetime) -> str:
        """A one-time `mse_` token for agent `name`, valid for `ttl`. Creates the agent if new;
        an active agent of that name → `AgentExists`; a revoked one may enrol again. Any earlier
        unused token for the agent stops working."""
        if ttl <= timedelta(0):
            raise ValueError("the enrolment token's lifetime must be positive")
        _refuse_nul("an agent name", name)
        now = _utc(now)
        token = _new_token("mse_")
        with self._tx(write=True) as conn:
            conn.execute(
                self._insert(agents)
                .values(name=name, created_at=now)
                .on_conflict_do_nothing(index_elements=[agents.c.name])
            )
            row = conn.execute(
                sa.select(agents.c.id, agents.c.enrolled_at, agents.c.revoked_at)
                .where(agents.c.name == name)
                .with_for_update()
            ).one()
            if row.enrolled_at is not None and row.revoked_at is None:
                raise AgentExists(f"agent {name!r} is enrolled and active; revoke it first")
            conn.execute(
                sa.delete(enrollment_tokens).where(
                    enrollment_tokens.c.agent_id == row.id, enrollment_tokens.c.used_at.is_(None)
                )
            )
            conn.execute(
                sa.insert(enrollment_tokens).values(
                    agent_id=row.id, token_hash=hash_token(token), expires_at=now + ttl
                )
            )
        return token

    def redeem_enrollment(
        self, token: str, name: str, alg: str, public_key_pem: str, now: datetime
    ) -> tuple[Agent, str]:
        """Spend an enrolment token: register the agent's key and alg and issue its `msa_` API
        token (replacing any earlier one). `EnrollmentInvalid` says why a token is refused."""
        signature_alg = SignatureAlg(alg)
        _refuse_nul("a public key", public_key_pem)
        now = _utc(now)
        api_token = _new_token("msa_")
        with self._tx(write=True) as conn:
            found = conn.execute(
                sa.select(
                    enrollment_tokens.c.id,
                    enrollment_tokens.c.agent_id,
                    enrollment_tokens.c.expires_at,
                    enrollment_tokens.c.used_at,
                ).where(enrollment_tokens.c.token_hash == hash_token(token))
            ).first()
            if found is None:
                raise EnrollmentInvalid("unknown")
            # Lock the agent before the token, in the same order as create_enrollment.
            agent = conn.execute(
                sa.select(*_AGENT_COLUMNS).where(agents.c.id == found.agent_id).with_for_update()
            ).one()
            if found.used_at is not None:
                raise EnrollmentInvalid("used")
            if now >= found.expires_at:
                raise EnrollmentInvalid("expired")
            if agent.name != name:
                raise EnrollmentInvalid("name_mismatch")
            spent = conn.execute(
                sa.update(enrollment_tokens)
                .where(enrollment_tokens.c.id == found.id, enrollment_tokens.c.used_at.is_(None))
                .values(used_at=now)
            )
            if spent.rowcount != 1:
                raise EnrollmentInvalid("used")
            conn.execute(
                sa.update(agents)
                .where(agents.c.id == agent.id)
                .values(
                    alg=signature_alg.value,
                    public_key_pem=public_key_pem,
                    api_token_hash=hash_token(api_token),
                    enrolled_at=now,
                    revoked_at=None,
                )
            )
            enrolled = conn.execute(sa.select(*_AGENT_COLUMNS).where(agents.c.id == agent.id)).one()
        return _agent(enrolled), api_token

    def agent_by_token(self, token: str) -> Agent | None:
        """The agent holding API token `token`, revoked or not (the caller decides)."""
        if not token.startswith("msa_"):
            return None
        with self._tx(write=False) as conn:
            row = conn.execute(
                sa.select(*_AGENT_COLUMNS).where(agents.c.api_token_hash == hash_token(token))
            ).first()
        return None if row is None else _agent(row)

    def list_agents(self) -> list[Agent]:
        with self._tx(write=False) as conn:
            rows = conn.execute(sa.select(*_AGENT_COLUMNS).order_by(agents.c.name)).all()
        return [_agent(row) for row in rows]

    def revoke_agent(self, name: str, now: datetime) -> Agent:
        """Revoke `name` (kept as revoked if it already was) and void its unused enrolment
        tokens. Its API token then identifies a revoked agent."""
        now = _utc(now)
        if not _storable(name):
            raise NotFound(f"no agent named {name!r}")
        with self._tx(write=True) as conn:
            row = conn.execute(
                sa.select(agents.c.id, agents.c.revoked_at)
                .where(agents.c.name == name)
                .with_for_update()
            ).first()
            if row is None:
                raise NotFound(f"no agent named {name!r}")
            if row.revoked_at is None:
                conn.execute(sa.update(agents).where(agents.c.id == row.id).values(revoked_at=now))
            conn.execute(
                sa.delete(enrollment_tokens).where(
                    enrollment_tokens.c.agent_id == row.id, enrollment_tokens.c.used_at.is_(None)
                )
            )
            revoked = conn.execute(sa.select(*_AGENT_COLUMNS).where(agents.c.id == row.id)).one()
        return _agent(revoked)

    # -- users -------------------------------------------------------------------------------

    def add_user(self, name: str, role: Role, now: datetime) -> tuple[User, str]:
        """A new user and their `msu_` API token (shown once; only its hash is kept)."""
        role = Role(role)
        _refuse_nul("a user name", name)
        now = _utc(now)
        token = _new_token("msu_")
        with self._tx(write=True) as conn:
            inserted = conn.execute(
                self._insert(users)
                .values(name=name, role=role.value, token_hash=hash_token(token), created_at=now)
                .on_conflict_do_nothing(index_elements=[users.c.name])
                .returning(*_USER_COLUMNS)
            ).first()
            if inserted is None:
                raise UserExists(f"a user named {name!r} already exists")
        return _user(inserted), token

    def user_by_token(self, token: str) -> User | None:
        if not token.startswith("msu_"):
            return None
        with self._tx(write=False) as conn:
            row = conn.execute(
                sa.select(*_USER_COLUMNS).where(users.c.token_hash == hash_token(token))
            ).first()
        return None if row is None else _user(row)

    def list_users(self) -> list[User]:
        with self._tx(write=False) as conn:
            rows = conn.execute(sa.select(*_USER_COLUMNS).order_by(users.c.name)).all()
        return [_user(row) for row in rows]

    def remove_user(self, name: str) -> None:
        with self._tx(write=True) as conn:
            if (
                not _storable(name)
                or conn.execute(sa.delete(users).where(users.c.name == name)).rowcount == 0
            ):
                raise NotFound(f"no user named {name!r}")

    # -- reports -----------------------------------------------------------------------------

    def ingest(
        self, agent: Agent, report: Report, report_bytes: bytes, now: datetime
    ) -> IngestOutcome:
        """Store a verified report in one transaction: the report row (its exact bytes), its
        results, the host's latest inventory (when this report is its newest) and the agent's
        last sighting. `report` must be `report_bytes` parsed (the API parses, then calls this).

        The same report again (same id, bytes and agent) → `duplicate=True`, nothing written;
        the same id with other bytes or from another agent → `ReplayedReport`."""
        now = _utc(now)
        digest = hashlib.sha256(report_bytes).hexdigest()
        generated_at = _utc(report.generated_at)
        host_id = report.host.id
        # Parsed strings hold U+0000 only where the bytes had that escape, which PostgreSQL
        # cannot store: then (rarely) the values are cleaned and the rows built here.
        has_nul = b"\\u0000" in report_bytes
        clean: Any = _strip_nul if has_nul else (lambda value: value)
        from_body = None if has_nul else self._sql.results_from_body
        with self._tx(write=True) as conn:
            report_pk = conn.execute(
                self._sql.insert_report,
                {
                    "report_id": report.report_id,
                    "agent_id": agent.id,
                    "host_id": host_id,
                    "generated_at": generated_at,
                    "received_at": now,
                    "sha256": digest,
                    "body": report_bytes.decode("utf-8"),
                    "counts": dict(Counter(result.status for result in report.results)),
                },
            ).scalar()
            if report_pk is None:
                stored = conn.execute(
                    sa.select(reports.c.agent_id, reports.c.sha256, reports.c.host_id).where(
                        reports.c.report_id == report.report_id
                    )
                ).one()
                if stored.agent_id == agent.id and stored.sha256 == digest:
                    return IngestOutcome(report.report_id, stored.host_id, duplicate=True)
                raise ReplayedReport(f"report {report.report_id} was already received")
            if from_body is not None:
                added = conn.execute(from_body, {"report_pk": report_pk}).rowcount
                if added != len(report.results):
                    raise ValueError("the parsed report does not match its bytes")
            elif report.results:
                conn.execute(
                    sa.insert(results),
                    [_result_params(report_pk, host_id, r, clean) for r in report.results],
                )
            conn.execute(
                self._sql.upsert_host,
                {
                    "id": host_id,
                    "hostname": clean(report.host.hostname),
                    "agent_id": agent.id,
                    "last_report_pk": report_pk,
                    "last_report_at": generated_at,
                    "inventory": clean(report.inventory),
                },
            )
            conn.execute(_TOUCH_AGENT, {"agent_pk": agent.id, "seen": now})
        return IngestOutcome(report.report_id, host_id, duplicate=False)

    def list_hosts(self, limit: int, offset: int) -> Page[HostSummary]:
        """Hosts by hostname, each with its newest report's id, time and counts."""
        _check_page(limit, offset)
        with self._tx(write=False) as conn:
            total = conn.execute(sa.select(sa.func.count()).select_from(hosts)).scalar_one()
            rows = conn.execute(
                _HOST_SUMMARY.order_by(hosts.c.hostname, hosts.c.id)
                .limit(_bounded(limit))
                .offset(_bounded(offset))
            ).all()
        return Page(tuple(_host_summary(row) for row in rows), total, limit, offset)

    def get_host(self, host_id: str) -> tuple[HostSummary, dict[str, Any], list[ResultRow]] | None:
        """The host's summary, latest inventory and the results of its newest report."""
        if not _storable(host_id):
            return None
        with self._tx(write=False) as conn:
            row = conn.execute(
                _HOST_SUMMARY.add_columns(hosts.c.inventory).where(hosts.c.id == host_id)
            ).first()
            if row is None:
                return None
            found = conn.execute(
                _RESULT_ROWS.where(hosts.c.id == host_id).order_by(results.c.pk)
            ).all()
        return _host_summary(row), dict(row.inventory), [_result_row(r) for r in found]

    def host_reports(self, host_id: str, limit: int, offset: int) -> Page[ReportSummary]:
        """The host's reports, newest first (an unknown host has none)."""
        _check_page(limit, offset)
        if not _storable(host_id):
            return Page((), 0, limit, offset)
        with self._tx(write=False) as conn:
            total = conn.execute(
                sa.select(sa.func.count()).select_from(reports).where(reports.c.host_id == host_id)
            ).scalar_one()
            rows = conn.execute(
                sa.select(
                    reports.c.report_id,
                    reports.c.host_id,
                    agents.c.name.label("agent"),
                    reports.c.generated_at,
                    reports.c.received_at,
                    reports.c.counts,
                )
                .select_from(reports.join(agents, agents.c.id == reports.c.agent_id))
                .where(reports.c.host_id == host_id)
                .order_by(reports.c.generated_at.desc(), reports.c.pk.desc())
                .limit(_bounded(limit))
                .offset(_bounded(offset))
            ).all()
        items = tuple(
            ReportSummary(
                report_id=row.report_id,
                host_id=row.host_id,
                agent=row.agent,
                generated_at=row.generated_at,
                received_at=row.received_at,
                counts=dict(row.counts),
            )
            for row in rows
        )
        return Page(items, total, limit, offset)

    def query_results(
        self, check_id: str | None, status: str | None, limit: int, offset: int
    ) -> Page[ResultRow]:
        """Results of each host's newest report, by hostname then report order, filtered."""
        _check_page(limit, offset)
        if not _storable(check_id, status):
            return Page((), 0, limit, offset)
        conditions: list[sa.ColumnElement[bool]] = []
        if check_id is not None:
            conditions.append(results.c.check_id == check_id)
        if status is not None:
            conditions.append(results.c.status == status)
        with self._tx(write=False) as conn:
            total = conn.execute(
                sa.select(sa.func.count())
                .select_from(hosts.join(results, results.c.report_pk == hosts.c.last_report_pk))
                .where(*conditions)
            ).scalar_one()
            rows = conn.execute(
                _RESULT_ROWS.where(*conditions)
                .order_by(hosts.c.hostname, hosts.c.id, results.c.pk)
                .limit(_bounded(limit))
                .offset(_bounded(offset))
            ).all()
        return Page(tuple(_result_row(row) for row in rows), total, limit, offset)

    # -- audit -------------------------------------------------------------------------------

    def append_audit(  # noqa: PLR0917 — the contract's signature; the API calls it positionally
        self, actor: str, role: str, action: str, source: str, outcome: str, now: datetime
    ) -> AuditEntry:
        """Append one entry to the hash chain and return it once committed. Concurrent appends
        in this process share a transaction (`audit.GroupCommit`); across processes the head row
        is locked for each transaction, so the chain never forks."""
        fields = {
            "actor": _text(actor),
            "role": _text(role),
            "action": _text(action),
            "source": _text(source),
            "outcome": _text(outcome),
        }
        # The hash covers the microsecond UTC text; store exactly that instant.
        return self._audit.submit(audit.Pending(_utc(now), fields))

    def _write_audit(self, batch: list[audit.Pending]) -> None:
        rows: list[dict[str, Any]] = []
        with self._tx(write=True) as conn:
            head = conn.execute(_LOCK_HEAD).first()
            if head is None:
                raise StoreError("the audit head row is missing: run `medsec db upgrade`")
            seq, prev = int(head.seq), str(head.hash)
            for pending in batch:
                seq += 1
                digest = audit.entry_hash(prev, seq=seq, at=pending.at, **pending.fields)
                rows.append(
                    {"seq": seq, "at": pending.at, "prev_hash": prev, "hash": digest}
                    | pending.fields
                )
                prev = digest
            conn.execute(_INSERT_ENTRY, rows)
            conn.execute(_MOVE_HEAD, {"new_seq": seq, "new_hash": prev})
        for pending, row in zip(batch, rows, strict=True):
            pending.entry = AuditEntry(**row)

    def audit_entries(self, limit: int, offset: int) -> Page[AuditEntry]:
        """Entries oldest first (seq order), so pages stay put while the log grows."""
        _check_page(limit, offset)
        with self._tx(write=False) as conn:
            total = conn.execute(sa.select(sa.func.count()).select_from(audit_log)).scalar_one()
            rows = conn.execute(
                sa.select(audit_log)
                .order_by(audit_log.c.seq)
                .limit(_bounded(limit))
                .offset(_bounded(offset))
            ).all()
        return Page(tuple(_audit_entry(row) for row in rows), total, limit, offset)

    def verify_audit(self) -> AuditVerdict:
        """Re-walk the whole chain and compare its end with the head, in one snapshot (entries
        appended meanwhile are simply not seen)."""
        with self._tx(write=False, snapshot=True) as conn:
            head_row = conn.execute(
                sa.select(audit_head.c.seq, audit_head.c.hash).where(audit_head.c.id == 1)
            ).first()
            head = None if head_row is None else (int(head_row.seq), str(head_row.hash))
            rows = conn.execute(
                sa.select(audit_log).order_by(audit_log.c.seq).execution_options(yield_per=2000)
            )
            return audit.verify_chain((_audit_entry(row) for row in rows), head)


def _sqlite_transactions(engine: sa.Engine) -> None:
    """WAL, foreign keys and a busy timeout on every connection; SQLAlchemy, not the sqlite3
    module, emits BEGIN, so a write transaction can take the write lock at its start."""

    @sa.event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection: Any, _record: Any) -> None:
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        try:
            cursor.execute(f"PRAGMA busy_timeout = {_SQLITE_BUSY_MS}")
            cursor.execute("PRAGMA journal_mode = WAL")
            cursor.execute("PRAGMA foreign_keys = ON")
        finally:
            cursor.close()

    @sa.event.listens_for(engine, "begin")
    def _on_begin(conn: sa.Connection) -> None:
        write = conn.get_execution_options().get("medsec_write", False)
        conn.exec_driver_sql("BEGIN IMMEDIATE" if write else "BEGIN")
