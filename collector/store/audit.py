"""The audit log: its hash chain — how an entry's hash is computed, how a sequence of stored
entries is checked against it and against the recorded head — and the store's part of it, which
appends entries in batches through the group commit (`collector.store.batch`), one lock of the
head row per batch, reads them back, verifies the chain and prunes it.

entry.hash = sha256(prev_hash + canonical(seq, at, actor, role, action, source, outcome)), with
`prev_hash` the previous entry's hash (64 zeros for the first); with the collector's audit key
(`audit.key_file`), HMAC-SHA256 with that key instead, from the entry `keyed_from` on, and the
head row carries a MAC over where the chain starts and ends. The key lives beside the settings,
not in the database: someone who can write the database but not read the key cannot rewrite the
chain, move its ends, or turn the keying off, without `verify` saying so. (Rolling the whole
database back to an earlier copy stays possible: that needs a copy kept elsewhere.)

The canonical encoding is a compact JSON array with `at` in UTC to the microsecond, so no field
can bleed into another and the hash of a stored entry can be recomputed exactly from what SQLite
or PostgreSQL gives back.

Every field is stored as asked, but with its control characters escaped (`escape_text`), once,
before it is hashed: a request path carrying a newline cannot forge a second line in a line-based
export of the log, nor a bidi override reorder what a reader sees. An append extends only a chain
whose head still records its last entry as it is (`_ONTO_LAST`); otherwise it fails
(`AuditAltered`), and the API answers nothing it cannot log.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import re
from collections.abc import Callable, Iterable
from concurrent.futures import Future
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import sqlalchemy as sa

from collector.models import AuditEntry, AuditKey, AuditVerdict, Page
from collector.store import batch
from collector.store.engine import Database
from collector.store.errors import AuditAltered, StoreError
from collector.store.rows import Row, to_audit_entry
from collector.store.schema import GENESIS_HASH, audit_head, audit_log
from collector.store.values import MAX_ROWS, bounded, check_page, utc

_ESCAPES: dict[int, str] = {
    **{c: f"\\x{c:02x}" for c in (*range(0x20), 0x7F, *range(0x80, 0xA0))},  # C0, DEL, C1
    # Line and paragraph separators, and the bidi marks, embeddings, overrides and isolates.
    **{c: f"\\u{c:04x}" for c in (0x061C, 0x200E, 0x200F, *range(0x2028, 0x202F))},
    **{c: f"\\u{c:04x}" for c in range(0x2066, 0x206A)},
    ord("\\"): "\\\\",  # so that no escape can be forged by sending one
}
_TO_ESCAPE = re.compile("[" + "".join(re.escape(chr(c)) for c in _ESCAPES) + "]")
_ESCAPED = re.compile(r"\\(\\|x[0-9a-f]{2}|u[0-9a-f]{4})")


def escape_text(value: str) -> str:
    """`value` with its control characters (C0 with NUL, DEL, C1), line and paragraph
    separators and bidi controls written as `\\xNN` / `\\uNNNN`, and a backslash as two: one
    line, shown as it is, and `unescape_text` gives `value` back. Cheap when there is nothing to
    escape (nearly always)."""
    return value.translate(_ESCAPES) if _TO_ESCAPE.search(value) else value


def unescape_text(value: str) -> str:
    """The text `escape_text` was given."""

    def one(match: re.Match[str]) -> str:
        code = match.group(1)
        return "\\" if code == "\\" else chr(int(code[1:], 16))

    return _ESCAPED.sub(one, value)


def canonical(
    *, seq: int, at: datetime, actor: str, role: str, action: str, source: str, outcome: str
) -> str:
    stamp = at.astimezone(UTC).isoformat(timespec="microseconds")
    return json.dumps(
        [seq, stamp, actor, role, action, source, outcome],
        ensure_ascii=False,
        separators=(",", ":"),
    )


def entry_hash(
    prev_hash: str,
    *,
    key: bytes | None = None,
    seq: int,
    at: datetime,
    actor: str,
    role: str,
    action: str,
    source: str,
    outcome: str,
) -> str:
    """SHA-256 of the entry and the previous hash; with the collector's audit `key`, HMAC-SHA256
    (then only a holder of the key can make an entry that verifies)."""
    text = prev_hash + canonical(
        seq=seq, at=at, actor=actor, role=role, action=action, source=source, outcome=outcome
    )
    if key is not None:
        return hmac.new(key, text.encode("utf-8"), hashlib.sha256).hexdigest()
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def head_mac(
    key: bytes, *, seq: int, hash_: str, base_seq: int, base_hash: str, keyed_from: int
) -> str:
    """The head row's MAC: where the chain ends and starts and from which entry it is keyed, so
    none of these can be moved without the key."""
    text = json.dumps([seq, hash_, base_seq, base_hash, keyed_from], separators=(",", ":"))
    return hmac.new(key, ("head" + text).encode("utf-8"), hashlib.sha256).hexdigest()


def recompute(entry: AuditEntry, key: bytes | None = None) -> str:
    """The hash `entry` should carry, from its own fields and its `prev_hash`."""
    return entry_hash(
        entry.prev_hash,
        key=key,
        seq=entry.seq,
        at=entry.at,
        actor=entry.actor,
        role=entry.role,
        action=entry.action,
        source=entry.source,
        outcome=entry.outcome,
    )


def verify_chain(
    entries: Iterable[AuditEntry],
    head: tuple[int, str] | None,
    base: tuple[int, str] = (0, GENESIS_HASH),
    *,
    key: bytes | None = None,
    keyed_from: int | None = None,
) -> AuditVerdict:
    """Check `entries` (in seq order, all of them) against each other and the head row.

    Finds an edited entry (its hash no longer matches its fields), an inserted or re-linked one
    (its prev_hash is not the previous hash), a deleted one (a gap in seq), and a deleted tail
    (the head records a later entry than the last one present). The chain starts after `base`,
    the last entry pruned (seq and hash), or at the genesis when nothing was pruned.
    """
    if head is None:
        return AuditVerdict(False, 0, None, "the audit head row is missing")
    (last_seq, last_hash), count = base, 0
    for entry in entries:
        count += 1
        keyed = key is not None and keyed_from is not None and entry.seq >= keyed_from
        bad = _entry_problem(entry, last_seq + 1, last_hash, key if keyed else None)
        if bad is not None:
            return AuditVerdict(False, count, *bad)
        last_seq, last_hash = entry.seq, entry.hash
    bad = _head_problem(head, last_seq, last_hash)
    if bad is not None:
        return AuditVerdict(False, count, *bad)
    return AuditVerdict(True, count, head=head)


def _entry_problem(
    entry: AuditEntry, expected_seq: int, prev: str, key: bytes | None
) -> tuple[int, str] | None:
    if entry.seq > expected_seq:
        return expected_seq, f"entry {expected_seq} is missing (the next entry is {entry.seq})"
    if entry.seq < expected_seq:
        return entry.seq, f"entry {entry.seq} is out of order (expected {expected_seq})"
    if entry.prev_hash != prev:
        return entry.seq, f"entry {entry.seq} does not link to the entry before it"
    if not hmac.compare_digest(recompute(entry, key), entry.hash):
        return entry.seq, f"entry {entry.seq} was altered: its hash does not match its fields"
    return None


def _head_problem(head: tuple[int, str], last_seq: int, last_hash: str) -> tuple[int, str] | None:
    head_seq, head_hash = head
    if head_seq > last_seq:
        return last_seq + 1, (
            f"entries {last_seq + 1}..{head_seq} are missing"
            f" (the head records entry {head_seq}, the last present is {last_seq})"
        )
    if head_seq < last_seq:
        return head_seq + 1, f"entry {head_seq + 1} and later are not recorded in the head"
    if head_hash != last_hash:
        return max(last_seq, 1), "the head's hash does not match the last entry"
    return None


# ----------------------------------------------------------------------------- in the store

_HEAD = sa.select(
    audit_head.c.seq,
    audit_head.c.hash,
    audit_head.c.base_seq,
    audit_head.c.base_hash,
    audit_head.c.keyed_from,
    audit_head.c.mac,
).where(audit_head.c.id == 1)
_LOCK_HEAD = _HEAD.with_for_update()
_INSERT_ENTRY = sa.insert(audit_log)
_MOVE_HEAD = (
    sa.update(audit_head)
    .where(audit_head.c.id == 1)
    .values(
        seq=sa.bindparam("new_seq"),
        hash=sa.bindparam("new_hash"),
        base_seq=sa.bindparam("new_base_seq"),
        base_hash=sa.bindparam("new_base_hash"),
        keyed_from=sa.bindparam("new_keyed_from"),
        mac=sa.bindparam("new_mac"),
    )
)
_ONTO_LAST = sa.or_(
    sa.and_(audit_head.c.seq == audit_head.c.base_seq, audit_head.c.hash == audit_head.c.base_hash),
    sa.exists().where(audit_log.c.seq == audit_head.c.seq, audit_log.c.hash == audit_head.c.hash),
)
"""The head row records the chain's last entry as it is: that entry is there, with that hash (or
nothing follows the chain's start). An append moves the head only where this holds, checked in
the statement that moves it (no round trip more under the head's lock): a head moved, or the
last entry deleted, stops the log instead of being built on. (An entry edited in place is for
`verify` to find, as any other edit.)"""
_EXTEND_HEAD = _MOVE_HEAD.where(_ONTO_LAST)
_END_INTACT = sa.select(audit_head.c.id).where(audit_head.c.id == 1, _ONTO_LAST)
_END_ALTERED = "the audit log's last entry ({seq}) is missing or its head was altered"


@dataclass(eq=False)
class AuditJob:
    """One audit entry queued for the group commit."""

    at: datetime
    fields: dict[str, str]
    future: Future[AuditEntry] = field(default_factory=Future)


@dataclass(frozen=True)
class AuditNote:
    """The audit entry of the request that submits a report, written in the report's own
    transaction once its outcome is known: `outcome` turns the outcome (an `IngestOutcome`, or
    the `StoreError` the caller will get) into the entry's outcome text."""

    actor: str
    role: str
    action: str
    source: str
    at: datetime
    outcome: Callable[[object], str]

    def entry(self, outcome: object) -> AuditJob:
        return audit_job(
            self.actor, self.role, self.action, self.source, self.outcome(outcome), self.at
        )


def audit_job(  # noqa: PLR0917 — the audit entry's fields, in the log's order
    actor: str, role: str, action: str, source: str, outcome: str, at: datetime
) -> AuditJob:
    fields = {
        "actor": escape_text(actor),
        "role": escape_text(role),
        "action": escape_text(action),
        "source": escape_text(source),
        "outcome": escape_text(outcome),
    }
    # The hash covers the microsecond UTC text; store exactly that instant.
    return AuditJob(utc(at), fields)


class AuditLog(Database):
    """The store's audit log: entries queued for the group commit and chained there under the
    head row's lock, read back, verified, and pruned past their retention."""

    _audit_key: AuditKey | None
    _writer: batch.GroupWriter

    def append_audit(  # noqa: PLR0917 — the contract's signature; the API calls it positionally
        self, actor: str, role: str, action: str, source: str, outcome: str, now: datetime
    ) -> AuditEntry:
        """`submit_audit`, waiting for the committed entry."""
        return self.submit_audit(actor, role, action, source, outcome, now).result()

    def submit_audit(  # noqa: PLR0917 — as append_audit
        self, actor: str, role: str, action: str, source: str, outcome: str, now: datetime
    ) -> Future[AuditEntry]:
        """Queue one entry for the hash chain; the future gives it once committed. Concurrent
        entries (and reports) share a transaction; across processes the head row is locked for
        each transaction, so the chain never forks."""
        job = audit_job(actor, role, action, source, outcome, now)
        self._writer.submit(job)
        return job.future

    def _audit_batch(
        self, conn: sa.Connection, jobs: list[AuditJob]
    ) -> list[tuple[AuditJob, object]]:
        head = conn.execute(_LOCK_HEAD).first()
        if head is None:
            raise StoreError("the audit head row is missing: run `medsec db upgrade`")
        keyed_from = self._audit_keying(conn, head)
        seq, prev = int(head.seq), str(head.hash)
        rows: list[dict[str, Any]] = []
        for job in jobs:
            seq += 1
            key = (
                self._audit_key.secret
                if self._audit_key is not None and keyed_from is not None and seq >= keyed_from
                else None
            )
            digest = entry_hash(prev, key=key, seq=seq, at=job.at, **job.fields)
            rows.append({"seq": seq, "at": job.at, "prev_hash": prev, "hash": digest} | job.fields)
            prev = digest
        conn.execute(_INSERT_ENTRY, rows)
        base_seq, base_hash = int(head.base_seq), str(head.base_hash)
        if not self._move_head(conn, seq, prev, base_seq, base_hash, keyed_from, onto_last=True):
            raise AuditAltered(_END_ALTERED.format(seq=int(head.seq)))
        return [(job, AuditEntry(**row)) for job, row in zip(jobs, rows, strict=True)]

    def _audit_keying(self, conn: sa.Connection, head: Row) -> int | None:
        """The first keyed entry of the chain whose head row `head` is locked, for an append or
        a prune. The key file says where keying starts; the head row must agree (it records it
        once the chain gets there, with its MAC). A keyed chain without the key, keying switched
        off in the database, or a head whose MAC is wrong, is refused."""
        keyed_from = None if head.keyed_from is None else int(head.keyed_from)
        if self._audit_key is None:
            if keyed_from is not None:
                raise StoreError(
                    "the audit log is keyed: set audit.key_file in the settings to its key"
                )
            return None
        problem = self._keying_problem(head)
        if problem is not None:
            raise AuditAltered(problem)
        expected = self._audit_key.keyed_from
        if keyed_from is None:  # not there yet (a new log): from now on the head says so
            self._move_head(
                conn,
                int(head.seq),
                str(head.hash),
                int(head.base_seq),
                str(head.base_hash),
                expected,
            )
        return expected

    def _keying_problem(self, head: Row) -> str | None:
        """With the key: what is wrong with the head row's keying, or None."""
        if self._audit_key is None:
            return None
        expected = self._audit_key.keyed_from
        if head.keyed_from is None:
            if int(head.seq) >= expected:
                return (
                    f"keying was switched off: the key file keys entries from {expected} on,"
                    f" the head row of entry {int(head.seq)} says none are keyed"
                )
            return None
        if int(head.keyed_from) != expected:
            return "the head row was altered: it moves where keying starts"
        mac = self._head_mac(
            int(head.seq), str(head.hash), int(head.base_seq), str(head.base_hash), expected
        )
        if mac is None or not hmac.compare_digest(str(head.mac or ""), mac):
            return "the head row was altered: its MAC does not match the audit key"
        return None

    def _head_mac(
        self, seq: int, hash_: str, base_seq: int, base_hash: str, keyed_from: int | None
    ) -> str | None:
        if self._audit_key is None or keyed_from is None:
            return None
        return head_mac(
            self._audit_key.secret,
            seq=seq,
            hash_=hash_,
            base_seq=base_seq,
            base_hash=base_hash,
            keyed_from=keyed_from,
        )

    def _move_head(  # noqa: PLR0917 — as _head_mac
        self,
        conn: sa.Connection,
        seq: int,
        hash_: str,
        base_seq: int,
        base_hash: str,
        keyed_from: int | None,
        *,
        onto_last: bool = False,
    ) -> bool:
        """Move the head row; with `onto_last`, only if it still records the chain's last entry
        as it is (`_ONTO_LAST`): False when it did not."""
        moved = conn.execute(
            _EXTEND_HEAD if onto_last else _MOVE_HEAD,
            {
                "new_seq": seq,
                "new_hash": hash_,
                "new_base_seq": base_seq,
                "new_base_hash": base_hash,
                "new_keyed_from": keyed_from,
                "new_mac": self._head_mac(seq, hash_, base_seq, base_hash, keyed_from),
            },
        )
        return bool(moved.rowcount == 1)

    def audit_entries(self, limit: int, offset: int) -> Page[AuditEntry]:
        """Entries oldest first (seq order), so pages stay put while the log grows."""
        check_page(limit, offset)
        with self._tx(write=False) as conn:
            total = conn.execute(sa.select(sa.func.count()).select_from(audit_log)).scalar_one()
            rows = conn.execute(
                sa.select(audit_log)
                .order_by(audit_log.c.seq)
                .limit(bounded(limit))
                .offset(bounded(offset))
            ).all()
        return Page(tuple(to_audit_entry(row) for row in rows), total, limit, offset)

    def audit_entry(self, seq: int) -> AuditEntry | None:
        """Entry `seq`, or None (never written, pruned or deleted)."""
        if not 0 < seq < MAX_ROWS:
            return None
        with self._tx(write=False) as conn:
            row = conn.execute(sa.select(audit_log).where(audit_log.c.seq == seq)).first()
        return None if row is None else to_audit_entry(row)

    def verify_audit(self) -> AuditVerdict:
        """Re-walk the whole chain and compare its end with the head, in one snapshot (entries
        appended meanwhile are simply not seen). With the audit key, the entries from where the
        key file says keying starts must carry its HMAC and the head row its MAC; a keyed chain
        cannot be checked without the key (`StoreError`)."""
        with self._tx(write=False, snapshot=True) as conn:
            head = conn.execute(_HEAD).first()
            if head is None:
                return verify_chain((), None)
            if head.keyed_from is not None and self._audit_key is None:
                raise StoreError(
                    "the audit log is keyed: set audit.key_file in the settings to its key"
                )
            problem = self._keying_problem(head)
            if problem is not None:
                return AuditVerdict(False, 0, int(head.seq), problem)
            rows = conn.execute(
                sa.select(audit_log).order_by(audit_log.c.seq).execution_options(yield_per=2000)
            )
            key = self._audit_key
            return verify_chain(
                (to_audit_entry(row) for row in rows),
                (int(head.seq), str(head.hash)),
                (int(head.base_seq), str(head.base_hash)),
                key=None if key is None else key.secret,
                keyed_from=None if key is None else key.keyed_from,
            )

    def audit_problem(self) -> str | None:
        """Why the next entry could not be appended, or None: the checks an append makes of the
        head row and the last entry, read without taking the head's lock (for `/healthz`)."""
        with self._tx(write=False, snapshot=True) as conn:
            head = conn.execute(_HEAD).first()
            if head is None:
                return "the audit head row is missing: run `medsec db upgrade`"
            if self._audit_key is None and head.keyed_from is not None:
                return "the audit log is keyed: set audit.key_file in the settings to its key"
            problem = self._keying_problem(head)
            if problem is not None:
                return problem
            if conn.execute(_END_INTACT).first() is None:
                return _END_ALTERED.format(seq=int(head.seq))
        return None

    def prune_audit(self, before: datetime, chunk: int = 10_000) -> int:
        """Delete the entries older than `before` — the oldest run of them, up to the first entry
        at or after `before`, so nothing younger goes — and start the chain after the last one
        deleted. Returns how many were deleted. The caller keeps `before` at least as old as the
        law's retention (`audit.retention_days`).

        Each entry is checked before it goes (`AuditAltered`, and nothing more is deleted): a
        prune must not erase the trace of an edit. In transactions of `chunk` entries, each
        moving the chain's start, so appends (which lock the head row) wait only briefly."""
        before = utc(before)
        with self._tx(write=False) as conn:
            first_young = conn.execute(
                sa.select(sa.func.min(audit_log.c.seq)).where(audit_log.c.at >= before)
            ).scalar_one()
        pruned = 0
        while True:
            with self._tx(write=True) as conn:
                head = conn.execute(_LOCK_HEAD).first()
                if head is None:
                    raise StoreError("the audit head row is missing: run `medsec db upgrade`")
                keyed_from = self._audit_keying(conn, head)
                last_old = head.seq if first_young is None else int(first_young) - 1
                upto = min(last_old, int(head.base_seq) + chunk)
                if upto <= head.base_seq:
                    return pruned
                rows = conn.execute(
                    sa.select(audit_log)
                    .where(audit_log.c.seq > head.base_seq, audit_log.c.seq <= upto)
                    .order_by(audit_log.c.seq)
                ).all()
                entries = [to_audit_entry(row) for row in rows]
                end = (upto, entries[-1].hash) if entries else (upto, "")
                verdict = verify_chain(
                    entries,
                    end,
                    (int(head.base_seq), str(head.base_hash)),
                    key=None if self._audit_key is None else self._audit_key.secret,
                    keyed_from=keyed_from,
                )
                if not verdict.ok:
                    raise AuditAltered(
                        f"the audit log is altered at seq {verdict.first_bad_seq}"
                        f" ({verdict.problem}); nothing more was pruned"
                    )
                pruned += conn.execute(sa.delete(audit_log).where(audit_log.c.seq <= upto)).rowcount
                self._move_head(
                    conn, int(head.seq), str(head.hash), upto, entries[-1].hash, keyed_from
                )
