"""Storage of the collector: agents, enrolment tokens, users, reports and their results, the
audit log. One SQLAlchemy Core schema serves SQLite (one hospital) and PostgreSQL (a province):
the database URL chooses. Schema changes are Alembic migrations (`collector/store/migrations`).

Contract (the API and the CLI depend on it; every method is one transaction):
- tokens (enrolment, user API, agent API) are random, shown once, stored only as SHA-256 hashes;
- `ingest` stores the report, its results and the host's latest inventory atomically: a crash
  mid-write leaves nothing; the same report twice is stored once (`duplicate=True`); the same
  report id with other bytes or from another agent raises `ReplayedReport`; a host belongs to
  the agent that reported it first, and another agent's report for it raises `HostClaimed`
  until that agent is revoked; reports and audit
  entries that arrive together share one transaction and one commit (`batch.GroupWriter`), and
  each caller hears of its own outcome only after that commit;
- the audit log is append-only and hash-chained (each entry's hash covers the previous hash);
  `verify_audit` finds an edited, inserted or deleted entry; appends from several collector
  processes on one PostgreSQL are serialised so the chain never forks.
"""

from __future__ import annotations

# The facade lists its public names once, in its `__all__`.
from collector.store.store import *  # noqa: F403
from collector.store.store import __all__ as __all__
