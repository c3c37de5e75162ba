"""Signed auditor hardware-compliance snapshots: the collector's snapshot key, and one zip that
freezes, at one instant, every in-scope host's hardware and its TPM, encryption, backup, erasure
and logging results (copied from the report its agent signed, with the clauses the collector's
catalogs map them to), each host's signed envelope, and the reports of both standards, under a
manifest signed by the collector. `snapshot_verify` checks such a zip without the collector.

Members, in this order: `envelopes/<report id>.json` (the hosts' order in `snapshot.json`),
`reports/<standard>.<format>`, `snapshot.json`, `signer.pem`, `manifest.json`, `manifest.sig`.
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import io
import multiprocessing
import os
import pickle
import stat
import tempfile
import uuid
import zipfile
from collections.abc import Iterable, Iterator, Sequence
from concurrent.futures import Future, ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import msgspec

from checks import envelope as env
from checks.catalog import Catalogs, builtin_catalogs
from checks.report import rfc3339
from collector.compliance.model import Compliance, HostEntry, Scope
from collector.compliance.render import FORMATS, render
from collector.compliance.render.json import write_json
from collector.compliance.service import (
    STANDARDS,
    ComplianceError,
    aggregate_all,
    as_of_instant,
    catalog_for,
    collector_paused,
    gather,
    write_atomically,
)
from collector.compliance.snapshot_format import (
    DOMAINS,
    MANIFEST,
    MANIFEST_SCHEMA,
    SIGNATURE,
    SIGNER,
    SNAPSHOT_JSON,
    SNAPSHOT_SCHEMA,
    envelope_member,
    fingerprint,
    host_hardware,
    host_results,
)
from collector.models import EvidenceHost, SnapshotRecord
from collector.settings import CollectorSettings
from collector.store import Store

DEFAULT_FORMATS = ("json", "xlsx", "pdf")
_BATCH = 500
"""Hosts whose signed reports are read and written at a time: memory stays bounded."""
_ALGS: dict[str, env.Alg] = {"ed25519": "ed25519", "sm": "sm2-sm3"}
_KINDS = {"ed25519": "an Ed25519", "sm2-sm3": "an SM2"}
_STORED_AS_IS = (".pdf", ".xlsx")
"""Members compressed already: deflating them again only costs time."""
UNSIGNED_REASON = (
    "the collector holds no signature for this report: it was received before the collector "
    "kept the envelopes reports arrive in, so only this snapshot's signature covers it"
)
SCAN_REASON = (
    "a scan the collector ran itself: its results travelled in no envelope, so only this "
    "snapshot's signature covers them"
)


# --------------------------------------------------------------------------- the key


@dataclass(frozen=True)
class SnapshotKey:
    """The collector's snapshot signing key (PKCS#8 PEM in a 0600 file)."""

    path: Path
    alg: env.Alg
    public_pem: str
    fingerprint: str
    """`SHA256:` + hex SHA-256 of the DER SubjectPublicKeyInfo: what auditors compare."""
    _private_pem: str = field(repr=False)

    @classmethod
    def load_or_create(cls, path: str | os.PathLike[str], crypto: str) -> SnapshotKey:
        """The key in `path`, made there (mode 0600) when absent. `ComplianceError` naming the
        file when others may read it, or when it is not a key of the kind `crypto` asks for
        (`ed25519`, or `sm` for SM2 over SM3)."""
        where = Path(path)
        alg = _ALGS.get(crypto)
        if alg is None:
            raise ComplianceError(f"snapshots.crypto: {crypto!r} is not ed25519 or sm")
        if not os.path.lexists(where):
            _create_key(where, alg)
        fd = _open_key(where)
        with os.fdopen(fd, "rb") as handle:
            mode = stat.S_IMODE(os.fstat(handle.fileno()).st_mode)
            if mode & 0o077:
                raise ComplianceError(
                    f"snapshot key {where}: other users may access it (mode {mode:04o}); "
                    f"run chmod 600 {where}"
                )
            raw = handle.read(64 * 1024)
        try:
            private_pem = raw.decode("ascii")
            public_pem = env.public_key_pem(private_pem, alg)
            usable = env.valid_public_key(public_pem, alg)
        except Exception:  # whatever the key parsers raise, the file holds no usable key
            usable = False
        if not usable:
            raise ComplianceError(
                f"snapshot key {where}: not {_KINDS[alg]} private key in PKCS#8 PEM "
                f"(snapshots.crypto: {crypto})"
            )
        return cls(where, alg, public_pem, fingerprint(public_pem), private_pem)

    def sign(self, data: bytes) -> bytes:
        return env.sign(data, self._private_pem, self.alg)


def _open_key(where: Path) -> int:
    try:
        return os.open(where, os.O_RDONLY | os.O_NOFOLLOW)
    except OSError as exc:
        raise ComplianceError(f"snapshot key {where}: cannot open it ({exc.strerror})") from None


def _create_key(where: Path, alg: env.Alg) -> None:
    """A new key at `where`, whole or not at all, never over a key another process made first:
    written to a temporary file in the same folder, then linked into place."""
    pem = env.generate_private_key(alg).encode("ascii")
    try:
        where.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        fd, temporary = tempfile.mkstemp(prefix=f".{where.name}.", dir=where.parent)
    except OSError as exc:
        raise ComplianceError(f"snapshot key {where}: cannot create it ({exc.strerror})") from None
    try:
        with os.fdopen(fd, "wb") as out:  # mkstemp makes it 0600
            out.write(pem)
            out.flush()
            os.fsync(out.fileno())
        with contextlib.suppress(FileExistsError):  # made meanwhile: that one is the key
            os.link(temporary, where)
    except OSError as exc:
        raise ComplianceError(f"snapshot key {where}: cannot create it ({exc.strerror})") from None
    finally:
        with contextlib.suppress(OSError):
            os.unlink(temporary)


# --------------------------------------------------------------------------- creating


@dataclass(frozen=True)
class _Member:
    name: str
    sha256: str
    size: int


class _Writer:
    """Zip members in the order written, each dated `created_at`, with its hash kept."""

    def __init__(self, out: io.BytesIO, created_at: datetime) -> None:
        self.archive = zipfile.ZipFile(out, "w")
        moment = created_at.astimezone(UTC)
        self.date_time = (
            moment.year,
            moment.month,
            moment.day,
            moment.hour,
            moment.minute,
            moment.second,
        )
        self.members: list[_Member] = []

    def add(self, name: str, data: bytes, level: int = 6) -> None:
        info = zipfile.ZipInfo(name, self.date_time)
        info.create_system = 3  # Unix, wherever it is made: the same bytes everywhere
        info.external_attr = 0o100444 << 16  # a read-only regular file
        stored = name.endswith(_STORED_AS_IS)
        info.compress_type = zipfile.ZIP_STORED if stored else zipfile.ZIP_DEFLATED
        self.archive.writestr(info, data, compresslevel=None if stored else level)
        self.members.append(_Member(name, hashlib.sha256(data).hexdigest(), len(data)))

    def add_file(self, name: str, path: Path) -> None:
        """A member copied from a file, a megabyte at a time."""
        with path.open("rb") as source:
            self.add_chunks(name, iter(lambda: source.read(1 << 20), b""))

    def add_chunks(self, name: str, chunks: Iterable[bytes]) -> None:
        """A member written as its chunks come, hashed on the way. Level 1: these are hundreds
        of megabytes of JSON, which zlib's fastest level packs nearly as small."""
        info = zipfile.ZipInfo(name, self.date_time)
        info.create_system = 3
        info.external_attr = 0o100444 << 16
        info.compress_type = zipfile.ZIP_DEFLATED
        # A ZipInfo opened for writing brings its own level (zlib's default when unset); the
        # attribute has no public name before Python 3.13, which keeps this one as an alias.
        info._compresslevel = 1  # type: ignore[attr-defined]
        digest, size = hashlib.sha256(), 0
        with self.archive.open(info, "w", force_zip64=True) as target:
            for chunk in chunks:
                digest.update(chunk)
                target.write(chunk)
                size += len(chunk)
        self.members.append(_Member(name, digest.hexdigest(), size))

    def close(self) -> None:
        self.archive.close()


def create_snapshot(
    store: Store,
    settings: CollectorSettings,
    *,
    scope: Scope,
    now: datetime,
    created_by: str,
    formats: Sequence[str] = DEFAULT_FORMATS,
    key: SnapshotKey | None = None,
    lang: str = "zh",
) -> tuple[bytes, SnapshotRecord]:
    """The snapshot zip of `scope` (judged at `scope.as_of`, or `now`), and its record for the
    store (`save_snapshot` keeps both). `ComplianceError` or `ScopeError` for bad input; nothing
    is written anywhere but the key file, made on first use."""
    unknown = [f for f in formats if f not in FORMATS]
    if unknown:
        raise ComplianceError(
            f"snapshot formats: {', '.join(unknown)} unknown (use {', '.join(FORMATS)})"
        )
    as_of = as_of_instant(scope.as_of, now)
    key = key or SnapshotKey.load_or_create(settings.snapshots.key_file, settings.snapshots.crypto)
    catalogs = builtin_catalogs()
    with collector_paused():
        gathered = gather(store, settings, now, as_of=as_of)
        chosen = [catalog_for(standard, catalogs) for standard in STANDARDS]
        documents = aggregate_all(gathered, chosen, scope, now)
    snapshot_id = str(uuid.uuid4())
    by_id = {h.host_id: h for h in gathered.hosts}
    first = documents[STANDARDS[0]]
    entries = [(by_id[e.id], e) for e in first.hosts]
    out = io.BytesIO()
    writer = _Writer(out, now)
    with contextlib.ExitStack() as stack:
        stack.callback(writer.close)
        started = _Reports(documents, formats, lang, stack)
        hosts = _write_hosts(writer, store, [p for p in entries if not p[0].is_scan], catalogs)
        reports = started.write(writer)
        standards = {
            standard: {
                "standard_id": document.standard_id,
                "title_zh": document.title_zh,
                "title_en": document.title_en,
                "catalog_edition": document.catalog_edition,
                "summary": document.summary,
                "reports": reports[standard],
            }
            for standard, document in documents.items()
        }
        missing = first.missing
        # The documents' evidence is in the reports now: let it go before snapshot.json is made.
        started.documents = {}
        del documents, first
        snapshot = {
            "schema": SNAPSHOT_SCHEMA,
            "id": snapshot_id,
            "created_at": rfc3339(now),
            "created_by": created_by,
            "scope": scope,
            "evaluated_at": rfc3339(gathered.rules.evaluated_at),
            "key": {"alg": key.alg, "fingerprint": key.fingerprint},
            "domains": list(DOMAINS),
            "notes": [
                "Each host's hardware and results are copied from the report its agent signed "
                "(envelopes/<report id>.json, checkable with the agent key it carries); the "
                "clauses beside each result are joined from the collector's catalogs.",
                "Scans are referenced by report id: the collector ran them itself.",
            ],
            "hosts": [],  # streamed in where the empty list stands (`_spliced`)
            "scans": [_scan(e) for h, e in entries if h.is_scan],
            "missing": missing,
            "standards": standards,
        }
        # Compact, each host encoded as it was read and streamed into the zip: at 10,000 hosts
        # an indented copy, the hosts as Python objects or the whole document encoded at once
        # would cost hundreds of megabytes more.
        writer.add_chunks(SNAPSHOT_JSON, _spliced(snapshot, hosts))
        host_count = len(hosts)
        del snapshot, hosts
        writer.add(SIGNER, key.public_pem.encode("ascii"))
        manifest = {
            "schema": MANIFEST_SCHEMA,
            "snapshot": snapshot_id,
            "created_at": rfc3339(now),
            "key": {"alg": key.alg, "fingerprint": key.fingerprint},
            "files": [{"name": m.name, "sha256": m.sha256, "size": m.size} for m in writer.members],
        }
        manifest_bytes = _pretty(manifest)
        writer.add(MANIFEST, manifest_bytes)
        writer.add(SIGNATURE, base64.b64encode(key.sign(manifest_bytes)) + b"\n")
    data = out.getvalue()
    record = SnapshotRecord(
        id=snapshot_id,
        created_by=created_by,
        created_at=now,
        scope=msgspec.to_builtins(scope),
        file_name=f"medsec-snapshot-{now.astimezone(UTC):%Y%m%dT%H%M%SZ}-{snapshot_id}.zip",
        sha256=hashlib.sha256(data).hexdigest(),
        size=len(data),
        key_fingerprint=key.fingerprint,
        hosts=host_count,
    )
    return data, record


def _spliced(snapshot: dict[str, Any], hosts: Sequence[msgspec.Raw]) -> Iterator[bytes]:
    """`snapshot` as JSON with `hosts` where its empty `"hosts":[]` stands: that key is never
    escaped, and a string value holding those characters would hold `\\"`, so it occurs once."""
    frame = msgspec.json.encode(snapshot)
    head, found, tail = frame.partition(b'"hosts":[]')
    if not found:  # never write a snapshot without its hosts
        raise RuntimeError("the snapshot document has no hosts field")
    yield head + b'"hosts":['
    for index, host in enumerate(hosts):
        yield (b"," if index else b"") + bytes(host)
    yield b"]" + tail + b"\n"


def _write_hosts(
    writer: _Writer,
    store: Store,
    entries: Sequence[tuple[EvidenceHost, HostEntry]],
    catalogs: Catalogs,
) -> list[msgspec.Raw]:
    """Each host's entry of `snapshot.json` (as JSON), from the report the snapshot uses (its stored
    exact bytes), and its envelope when the collector holds the signature."""
    hosts: list[msgspec.Raw] = []
    for start in range(0, len(entries), _BATCH):
        batch = entries[start : start + _BATCH]
        stored = {
            pk: (body, alg, signature, signer)
            for pk, body, alg, signature, signer in store.evidence_reports(
                [h.report_pk for h, _ in batch]
            )
        }
        for host, entry in batch:
            if host.report_pk not in stored:  # pruned between the two reads
                raise ComplianceError(
                    f"report {host.report_id} of {host.hostname} was deleted while the snapshot "
                    "was made (db prune?): make the snapshot again"
                )
            body, alg, signature, signer = stored[host.report_pk]
            report_bytes = body.encode("utf-8")
            report = msgspec.json.decode(report_bytes)
            signed = alg is not None and signature is not None and signer is not None
            member = envelope_member(host.report_id) if signed else None
            if member is not None:
                writer.add(
                    member,
                    msgspec.json.encode(
                        {
                            "schema": env.ENVELOPE_SCHEMA,
                            "agent": host.agent,
                            "alg": alg,
                            "report": base64.b64encode(report_bytes).decode("ascii"),
                            "signature": signature,
                            "signer_key": signer,
                        }
                    ),
                    level=1,  # base64 deflates poorly whatever the effort: take the fast one
                )
            entry_json = msgspec.json.encode(
                {
                    "id": host.host_id,
                    "hostname": report["host"]["hostname"],
                    "agent": host.agent,
                    "site": entry.site,
                    "zones": entry.zones,
                    "addresses": entry.addresses,
                    "report_id": report["report_id"],
                    "generated_at": report["generated_at"],
                    "received_at": entry.received_at,
                    "stale": entry.stale,
                    "signed": signed,
                    "envelope": member,
                    "alg": alg,
                    "signer_key_fingerprint": None if signer is None else fingerprint(signer),
                    "unsigned_reason": None if signed else UNSIGNED_REASON,
                    "hardware": host_hardware(report.get("inventory")),
                    "results": [
                        {**r, "clauses": catalogs.clause_ids(r["check_id"])}
                        for r in host_results(report)
                    ],
                }
            )
            hosts.append(msgspec.Raw(entry_json))
    return hosts


def _scan(entry: HostEntry) -> dict[str, Any]:
    return {
        "id": entry.id,
        "scanner": entry.hostname,
        "report_id": entry.report_id,
        "generated_at": entry.generated_at,
        "received_at": entry.received_at,
        "stale": entry.stale,
        "signed": False,
        "unsigned_reason": SCAN_REASON,
    }


class _Reports:
    """Each standard's reports, started as soon as the documents exist: the JSON streamed to a
    scratch folder, the XLSX and PDF handed to worker processes (one per core, at most one per
    standard; the work is pure Python, so threads would take turns), which render them while
    this process reads the hosts' signed reports; `write` adds them all to the zip, in a fixed
    order."""

    def __init__(
        self,
        documents: dict[str, Compliance],
        formats: Sequence[str],
        lang: str,
        stack: contextlib.ExitStack,
    ) -> None:
        self.documents, self.formats, self.lang = documents, formats, lang
        self.heavy = [f for f in formats if f in _HEAVY]
        self.folder = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="medsec-")))
        self.pending: dict[str, Future[dict[str, bytes]]] = {}
        large = max(len(d.hosts) for d in documents.values()) >= _WORKERS_FROM_HOSTS
        workers = min(len(documents), os.cpu_count() or 1) if self.heavy and large else 0
        pool = None
        if workers >= 2:
            # spawn, not fork: the collector runs threads (the store's writer, the API's pool),
            # and a forked child could inherit a lock one of them held.
            context = multiprocessing.get_context("spawn")
            pool = stack.enter_context(ProcessPoolExecutor(workers, mp_context=context))
        for standard, document in documents.items():
            path = self.folder / f"{standard}.json"
            with path.open("wb") as out:
                write_json(document, out)
            if pool is not None:
                # Handed over as a pickle in this process's private scratch folder: unlike the
                # JSON, it keeps each result shared by the clauses it evidences, so the worker
                # holds no more than this process does.
                handed = self.folder / f"{standard}.pickle"
                with handed.open("wb") as out:
                    pickle.dump(document, out, protocol=pickle.HIGHEST_PROTOCOL)
                self.pending[standard] = pool.submit(
                    _render_in_worker, str(handed), self.heavy, lang
                )

    def write(self, writer: _Writer) -> dict[str, list[str]]:
        written: dict[str, list[str]] = {standard: [] for standard in self.documents}
        for standard, document in self.documents.items():
            for fmt in self.formats:
                name = f"reports/{standard}.{fmt}"
                if fmt == "json":
                    writer.add_file(name, self.folder / f"{standard}.json")
                elif fmt not in _HEAVY:
                    writer.add(name, render(document, fmt, self.lang))
                else:
                    continue
                written[standard].append(name)
        for standard, document in self.documents.items():
            try:
                made = (
                    self.pending[standard].result()
                    if standard in self.pending
                    else {fmt: render(document, fmt, self.lang) for fmt in self.heavy}
                )
            except BrokenProcessPool as exc:
                raise ComplianceError(f"rendering the snapshot's reports failed: {exc}") from None
            for fmt in self.heavy:
                name = f"reports/{standard}.{fmt}"
                writer.add(name, made.pop(fmt))
                written[standard].append(name)
        return written


_HEAVY = ("xlsx", "pdf")
"""Formats whose rendering takes seconds per standard at scale."""
_WORKERS_FROM_HOSTS = 500
"""Below this many hosts, starting worker processes costs more than it saves."""


def _render_in_worker(path: str, formats: Sequence[str], lang: str) -> dict[str, bytes]:
    """In a worker process: the document the snapshot pickled, rendered in `formats`."""
    with open(path, "rb") as source:
        # Written a moment ago by the process that started this one, in its 0700 scratch folder.
        document: Compliance = pickle.load(source)  # noqa: S301
    return {fmt: render(document, fmt, lang) for fmt in formats}


def _pretty(document: Any) -> bytes:
    return msgspec.json.format(msgspec.json.encode(document), indent=2) + b"\n"


# --------------------------------------------------------------------------- keeping


def save_snapshot(
    store: Store, settings: CollectorSettings, data: bytes, record: SnapshotRecord
) -> Path:
    """Keep a created snapshot: its zip in `snapshots.dir` (read-only, never rewritten) and its
    record in the store; both or neither."""
    folder = Path(settings.snapshots.dir)
    try:
        folder.mkdir(mode=0o750, parents=True, exist_ok=True)
    except OSError as exc:
        raise ComplianceError(
            f"snapshots.dir {folder}: cannot create it ({exc.strerror})"
        ) from None
    path = folder / record.file_name
    if path.exists():
        raise ComplianceError(f"{path} exists already: snapshots are never rewritten")
    write_atomically(path, data, mode=0o440)
    try:
        store.add_snapshot(record)
    except BaseException:
        with contextlib.suppress(OSError):
            path.unlink()
        raise
    return path


def snapshot_file(settings: CollectorSettings, record: SnapshotRecord) -> Path:
    """Where a stored snapshot's zip is kept."""
    return Path(settings.snapshots.dir) / record.file_name


class SnapshotUnavailable(ComplianceError):
    """The collector cannot make snapshots: its snapshot folder or key is unusable (a fault of
    the server's set-up, not of the request)."""


def ready_folder(settings: CollectorSettings) -> Path:
    """The snapshot folder, made if missing; `SnapshotUnavailable` unless this process can
    write there. Checked before a snapshot is made, not after the work."""
    folder = Path(settings.snapshots.dir)
    try:
        folder.mkdir(mode=0o750, parents=True, exist_ok=True)
    except OSError as exc:
        raise SnapshotUnavailable(
            f"snapshots.dir {folder}: cannot create it ({exc.strerror})"
        ) from None
    if not os.access(folder, os.W_OK | os.X_OK):
        raise SnapshotUnavailable(f"snapshots.dir {folder}: not writable by this user")
    return folder


class SnapshotAltered(ComplianceError):
    """A kept snapshot's zip is gone or is not the one recorded (its SHA-256 differs)."""


def read_snapshot(settings: CollectorSettings, record: SnapshotRecord) -> bytes:
    """A kept snapshot's zip, exactly as made: `SnapshotAltered` unless its SHA-256 is the
    recorded one."""
    path = snapshot_file(settings, record)
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise SnapshotAltered(
            f"snapshot {record.id}: cannot read {path} ({exc.strerror})"
        ) from None
    if hashlib.sha256(data).hexdigest() != record.sha256:
        raise SnapshotAltered(
            f"snapshot {record.id}: {path} is not the zip recorded (its SHA-256 differs)"
        )
    return data


__all__ = [
    "DEFAULT_FORMATS",
    "SnapshotAltered",
    "SnapshotKey",
    "create_snapshot",
    "read_snapshot",
    "save_snapshot",
    "snapshot_file",
]
