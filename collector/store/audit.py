"""The audit log's hash chain: how an entry's hash is computed, how a sequence of stored entries
is checked against it and against the recorded head. Entries are appended in batches by the store's
group commit (`collector.store.batch`), one lock of the head row per batch.

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
"""

from __future__ import annotations

import hashlib
import hmac
import json
from collections.abc import Iterable
from datetime import UTC, datetime

from collector.models import AuditEntry, AuditVerdict
from collector.store.schema import GENESIS_HASH


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


# ----------------------------------------------------------------------------- group commit
