"""Who may talk to the collector: enrolment tokens and the agents they enrol (with their keys and
API tokens), and the users with their roles. Every token is random, shown once, and stored only
as its SHA-256 hash."""

from __future__ import annotations

import hashlib
import re
import secrets
from datetime import datetime, timedelta

import sqlalchemy as sa

from collector.models import Agent, Role, SignatureAlg, User
from collector.store.engine import Database
from collector.store.errors import AgentExists, EnrollmentInvalid, NotFound, UserExists
from collector.store.evidence import SERVICE_AGENTS
from collector.store.rows import AGENT_COLUMNS, USER_COLUMNS, Row, to_agent, to_user
from collector.store.schema import agents, enrollment_tokens, users
from collector.store.values import refuse_nul, storable, utc

_ZONE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,62}$")
"""A zone's name as zones files allow it (collector.scan.zones)."""


def hash_token(token: str) -> str:
    """How every token is stored and looked up: SHA-256 hex of its text. Any text has a hash
    (a lone surrogate a JSON body escaped too), so a token no one issued is simply not found."""
    return hashlib.sha256(token.encode("utf-8", "surrogatepass")).hexdigest()


def _new_token(prefix: str) -> str:
    return prefix + secrets.token_urlsafe(32)


_ENROLLMENT = sa.select(
    enrollment_tokens.c.id,
    enrollment_tokens.c.agent_id,
    enrollment_tokens.c.expires_at,
    enrollment_tokens.c.used_at,
)


def _check_enrollment(found: Row, agent_name: str, name: str, now: datetime) -> None:
    """Why a known enrolment token (its row, and its agent's name) cannot be spent now by
    `name`, as `EnrollmentInvalid`."""
    if found.used_at is not None:
        raise EnrollmentInvalid("used")
    if now >= found.expires_at:
        raise EnrollmentInvalid("expired")
    if agent_name != name:
        raise EnrollmentInvalid("name_mismatch")


class Identities(Database):
    """Enrolment, agents and users, each method one transaction."""

    # -- agents and enrolment ----------------------------------------------------------------

    def create_enrollment(
        self, name: str, ttl: timedelta, now: datetime, *, probe_zone: str | None = None
    ) -> str:
        """A one-time `mse_` token for agent `name`, valid for `ttl`. Creates the agent if new;
        an active agent of that name → `AgentExists`; a revoked one may enrol again. Any earlier
        unused token for the agent stops working. `probe_zone` makes the agent a probe of that
        zone (the only zone whose jobs it may claim); None makes it an ordinary agent."""
        if probe_zone is not None:
            refuse_nul("a probe zone", probe_zone)
            if not _ZONE.match(probe_zone):
                raise ValueError(f"probe zone {probe_zone!r} is not a zone name")
        if ttl <= timedelta(0):
            raise ValueError("the enrolment token's lifetime must be positive")
        refuse_nul("an agent name", name)
        if name in SERVICE_AGENTS:
            # An enrolled host named like agentless collection would lose its host to any agent.
            raise AgentExists(f"agent name {name!r} is reserved for the collector's own evidence")
        now = utc(now)
        token = _new_token("mse_")
        with self._tx(write=True) as conn:
            row = self._lock_agent_row(conn, name, now)
            if row.enrolled_at is not None and row.revoked_at is None:
                raise AgentExists(f"agent {name!r} is enrolled and active; revoke it first")
            conn.execute(
                sa.update(agents).where(agents.c.id == row.id).values(probe_zone=probe_zone)
            )
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

    def check_enrollment(self, token: str, name: str, now: datetime) -> None:
        """`EnrollmentInvalid` unless `token` could be spent now by agent `name` — what the API
        asks before it reads anything else an enrolment carries, so that a refused token is
        refused alike whatever came with it. Spending it (`redeem_enrollment`) checks again."""
        now = utc(now)
        with self._tx(write=False) as conn:
            found = conn.execute(
                _ENROLLMENT.where(enrollment_tokens.c.token_hash == hash_token(token))
            ).first()
            if found is None:
                raise EnrollmentInvalid("unknown")
            agent = conn.execute(sa.select(agents.c.name).where(agents.c.id == found.agent_id))
            _check_enrollment(found, agent.scalar_one(), name, now)

    def redeem_enrollment(
        self, token: str, name: str, alg: str, public_key_pem: str, now: datetime
    ) -> tuple[Agent, str]:
        """Spend an enrolment token: register the agent's key and alg and issue its `msa_` API
        token (replacing any earlier one). `EnrollmentInvalid` says why a token is refused."""
        signature_alg = SignatureAlg(alg)
        refuse_nul("a public key", public_key_pem)
        now = utc(now)
        api_token = _new_token("msa_")
        with self._tx(write=True) as conn:
            found = conn.execute(
                _ENROLLMENT.where(enrollment_tokens.c.token_hash == hash_token(token))
            ).first()
            if found is None:
                raise EnrollmentInvalid("unknown")
            # Lock the agent before the token, in the same order as create_enrollment.
            agent = conn.execute(
                sa.select(*AGENT_COLUMNS).where(agents.c.id == found.agent_id).with_for_update()
            ).one()
            _check_enrollment(found, agent.name, name, now)
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
            enrolled = conn.execute(sa.select(*AGENT_COLUMNS).where(agents.c.id == agent.id)).one()
        return to_agent(enrolled), api_token

    def _lock_agent_row(self, conn: sa.Connection, name: str, now: datetime) -> Row:
        """Agent `name`'s row, created (never enrolled) if new, locked until the commit."""
        conn.execute(
            self._insert(agents)
            .values(name=name, created_at=now)
            .on_conflict_do_nothing(index_elements=[agents.c.name])
        )
        return conn.execute(
            sa.select(*AGENT_COLUMNS).where(agents.c.name == name).with_for_update()
        ).one()

    def agent_by_token(self, token: str) -> Agent | None:
        """The agent holding API token `token`, revoked or not (the caller decides)."""
        if not token.startswith("msa_"):
            return None
        with self._tx(write=False) as conn:
            row = conn.execute(
                sa.select(*AGENT_COLUMNS).where(agents.c.api_token_hash == hash_token(token))
            ).first()
        return None if row is None else to_agent(row)

    def service_agent(self, name: str, public_key_pem: str, now: datetime) -> Agent:
        """An agent identity the collector itself uses (its scanner), enrolled with
        `public_key_pem` unless it is active already. One transaction: processes creating it
        at once all get the same agent. Its API token is random and never shown."""
        refuse_nul("an agent name", name)
        now = utc(now)
        with self._tx(write=True) as conn:
            row = self._lock_agent_row(conn, name, now)
            if row.enrolled_at is None or row.revoked_at is not None:
                conn.execute(
                    sa.update(agents)
                    .where(agents.c.id == row.id)
                    .values(
                        alg=SignatureAlg.ED25519.value,
                        public_key_pem=public_key_pem,
                        api_token_hash=hash_token(_new_token("msa_")),
                        enrolled_at=now,
                        revoked_at=None,
                    )
                )
                row = conn.execute(sa.select(*AGENT_COLUMNS).where(agents.c.id == row.id)).one()
        return to_agent(row)

    def list_agents(self) -> list[Agent]:
        with self._tx(write=False) as conn:
            rows = conn.execute(sa.select(*AGENT_COLUMNS).order_by(agents.c.name)).all()
        return [to_agent(row) for row in rows]

    def revoke_agent(self, name: str, now: datetime) -> Agent:
        """Revoke `name` (kept as revoked if it already was) and void its unused enrolment
        tokens. Its API token then identifies a revoked agent."""
        now = utc(now)
        if not storable(name):
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
            revoked = conn.execute(sa.select(*AGENT_COLUMNS).where(agents.c.id == row.id)).one()
        return to_agent(revoked)

    # -- users -------------------------------------------------------------------------------

    def add_user(self, name: str, role: Role, now: datetime) -> tuple[User, str]:
        """A new user and their `msu_` API token (shown once; only its hash is kept)."""
        role = Role(role)
        refuse_nul("a user name", name)
        now = utc(now)
        token = _new_token("msu_")
        with self._tx(write=True) as conn:
            inserted = conn.execute(
                self._insert(users)
                .values(name=name, role=role.value, token_hash=hash_token(token), created_at=now)
                .on_conflict_do_nothing(index_elements=[users.c.name])
                .returning(*USER_COLUMNS)
            ).first()
            if inserted is None:
                raise UserExists(f"a user named {name!r} already exists")
        return to_user(inserted), token

    def user_by_token(self, token: str) -> User | None:
        if not token.startswith("msu_"):
            return None
        with self._tx(write=False) as conn:
            row = conn.execute(
                sa.select(*USER_COLUMNS).where(users.c.token_hash == hash_token(token))
            ).first()
        return None if row is None else to_user(row)

    def list_users(self) -> list[User]:
        with self._tx(write=False) as conn:
            rows = conn.execute(sa.select(*USER_COLUMNS).order_by(users.c.name)).all()
        return [to_user(row) for row in rows]

    def remove_user(self, name: str) -> None:
        with self._tx(write=True) as conn:
            if (
                not storable(name)
                or conn.execute(sa.delete(users).where(users.c.name == name)).rowcount == 0
            ):
                raise NotFound(f"no user named {name!r}")
