"""Checking a signed auditor snapshot offline, on an auditor's laptop: no database, no settings,
only the standard library, msgspec and `checks.envelope`. Also the few pure pieces the snapshot's
writer shares with this reader live in `snapshot_format`.

What is checked: the manifest's signature with `signer.pem` (and the key the auditor expects),
every member's SHA-256 and size against the manifest, members missing or added, and every host
envelope: its base64, its signature by the agent key it carries, that the report it signs is the
host and report `snapshot.json` names, and that `snapshot.json`'s hardware and results of that
host are those of the signed report. So a result altered in `snapshot.json` is caught even by
whoever holds the snapshot key and re-signs the manifest: only the agent's key could sign it.

The verdict: unreadable (not a zip, truncated, no manifest: exit 2), altered (something named
altered, missing or added: exit 1) or intact (exit 0).
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import io
import os
import zipfile
import zlib
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import Any, Literal

import msgspec

from checks import envelope as env
from collector.compliance.snapshot_format import (
    DOMAINS,
    MANIFEST,
    MANIFEST_SCHEMA,
    SIGNATURE,
    SIGNER,
    SNAPSHOT_JSON,
    SNAPSHOT_SCHEMA,
    TRUST_NOTE,
    UNSIGNED_MEMBERS,
    derivable_ids,
    envelope_member,
    fingerprint,
    host_hardware,
    host_results,
    normal_fingerprint,
)

_SHOWN_DIFFERENCES = 3

# --------------------------------------------------------------------------- the verdict

Kind = Literal["altered", "missing", "added"]


@dataclass(frozen=True)
class Finding:
    """What is wrong with one member: its kind and every reason found."""

    kind: Kind
    member: str
    reasons: tuple[str, ...]


@dataclass(frozen=True)
class SnapshotVerdict:
    readable: bool
    problem: str | None = None
    """Why the file is unreadable (not a zip, truncated, no manifest)."""
    findings: tuple[Finding, ...] = ()
    alg: str | None = None
    fingerprint: str | None = None
    """The fingerprint of `signer.pem`: the key the manifest is signed with."""
    expected_key: str | None = None
    snapshot_id: str | None = None
    created_at: str | None = None
    created_by: str | None = None
    hosts: int = 0
    envelopes_verified: int = 0
    unsigned: tuple[str, ...] = ()
    """Hosts without a signed envelope, each with the reason `snapshot.json` gives."""
    scans: int = 0

    @property
    def intact(self) -> bool:
        return self.readable and not self.findings

    @property
    def exit_code(self) -> int:
        """0 intact, 1 altered (something altered, missing or added), 2 unreadable."""
        return 2 if not self.readable else 1 if self.findings else 0

    @property
    def trust_note(self) -> str | None:
        """Without an expected key: the sentence that the signer is only as trusted as the
        fingerprint printed."""
        return TRUST_NOTE if self.readable and self.expected_key is None else None

    def named(self, kind: Kind) -> list[str]:
        """The members found `kind`."""
        return [f.member for f in self.findings if f.kind == kind]


class _Findings:
    def __init__(self) -> None:
        self._found: dict[tuple[Kind, str], list[str]] = {}

    def add(self, kind: Kind, member: str, reason: str) -> None:
        reasons = self._found.setdefault((kind, member), [])
        if reason not in reasons:
            reasons.append(reason)

    def has(self, member: str) -> bool:
        return any(m == member for _, m in self._found)

    def all(self) -> tuple[Finding, ...]:
        return tuple(Finding(k, m, tuple(r)) for (k, m), r in self._found.items())


class _FileRef(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    name: str
    sha256: str
    size: int


class _KeyRef(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    alg: env.Alg
    fingerprint: str


class Manifest(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """`manifest.json`: every other member's SHA-256 and size, and the key that signs it."""

    schema: Literal["medsec.manifest/v1"]
    snapshot: str
    created_at: str
    key: _KeyRef
    files: list[_FileRef]


class StoredEnvelope(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """`envelopes/<report id>.json`: a host's report as it arrived, with the agent's key."""

    schema: Literal["medsec.envelope/v1"]
    agent: str
    alg: env.Alg
    report: str
    """Base64 of the report's exact bytes."""
    signature: str
    signer_key: str
    """The agent's public key (PEM) the collector held when it received the report."""


def verify_snapshot(
    source: str | os.PathLike[str] | bytes, expect_key: str | None = None
) -> SnapshotVerdict:
    """Check a snapshot zip (a path or its bytes); see the module's docstring."""
    if isinstance(source, bytes):
        data = source
    else:
        try:
            with open(source, "rb") as handle:
                data = handle.read()
        except OSError as exc:
            return SnapshotVerdict(False, f"cannot read {os.fspath(source)}: {exc.strerror}")
    try:
        archive = zipfile.ZipFile(io.BytesIO(data))
    except (zipfile.BadZipFile, zipfile.LargeZipFile, ValueError, EOFError, OSError) as exc:
        return SnapshotVerdict(False, f"not a zip file, or truncated ({exc})")
    with archive:
        return _Verify(archive, expect_key).run()


class _Verify:
    def __init__(self, archive: zipfile.ZipFile, expect_key: str | None) -> None:
        self.archive = archive
        self.expect = None if expect_key is None else normal_fingerprint(expect_key)
        self.findings = _Findings()
        self.by_name: dict[str, list[zipfile.ZipInfo]] = {}
        for info in archive.infolist():
            self.by_name.setdefault(info.filename, []).append(info)
        self.contents: dict[str, bytes] = {}

    def read(self, name: str, size: int | None = None) -> bytes | None:
        """A member's bytes (the last copy, as zip readers take it), or None with the reason
        recorded as an alteration."""
        infos = self.by_name.get(name)
        if not infos:
            return None
        info = infos[-1]
        if size is not None and info.file_size != size:
            self.findings.add(
                "altered", name, f"{info.file_size} bytes where manifest.json says {size}"
            )
            return None
        if name in self.contents:
            return self.contents[name]
        try:
            data = self.archive.read(info)
        except (zipfile.BadZipFile, zlib.error, EOFError, OSError, ValueError) as exc:
            self.findings.add("altered", name, f"its data does not read back ({exc})")
            return None
        if not name.startswith("envelopes/"):  # read again when needed: thousands of them
            self.contents[name] = data
        return data

    def run(self) -> SnapshotVerdict:
        if MANIFEST not in self.by_name:
            return SnapshotVerdict(False, "no manifest.json in the zip: not a medsec snapshot")
        raw = self.read(MANIFEST)
        manifest = None
        if raw is not None:
            try:
                manifest = msgspec.json.decode(raw, type=Manifest)
            except (msgspec.DecodeError, RecursionError) as exc:
                self.findings.add("altered", MANIFEST, f"not a {MANIFEST_SCHEMA} document: {exc}")
        if raw is None or manifest is None:
            return SnapshotVerdict(True, findings=self.findings.all())
        signer = self.signature(raw, manifest)
        self.members(manifest)
        snapshot = self.snapshot(manifest)
        counts = self.hosts(snapshot) if snapshot is not None else (0, 0, (), 0)
        return SnapshotVerdict(
            True,
            findings=self.findings.all(),
            alg=manifest.key.alg,
            fingerprint=signer,
            expected_key=self.expect,
            snapshot_id=manifest.snapshot,
            created_at=manifest.created_at,
            created_by=None if snapshot is None else _text(snapshot.get("created_by")),
            hosts=counts[0],
            envelopes_verified=counts[1],
            unsigned=counts[2],
            scans=counts[3],
        )

    def signature(self, raw: bytes, manifest: Manifest) -> str | None:
        """The manifest's signature by `signer.pem`; the signer's fingerprint (None unless
        signer.pem holds a public key)."""
        pem_bytes = self.read(SIGNER)
        if pem_bytes is None:
            if SIGNER not in self.by_name:
                self.findings.add("missing", SIGNER, "the snapshot's public key is not in the zip")
            return None
        pem = pem_bytes.decode("ascii", errors="replace")
        try:
            signer = fingerprint(pem)
        except ValueError as exc:
            self.findings.add("altered", SIGNER, str(exc))
            return None
        if signer != normal_fingerprint(manifest.key.fingerprint):
            self.findings.add(
                "altered",
                SIGNER,
                f"its key {signer} is not the key manifest.json names ({manifest.key.fingerprint})",
            )
        if self.expect is not None and signer != self.expect:
            self.findings.add(
                "altered", SIGNER, f"its key {signer} is not the expected key {self.expect}"
            )
        sig_text = self.read(SIGNATURE)
        if sig_text is None:
            if SIGNATURE not in self.by_name:
                self.findings.add(
                    "missing", SIGNATURE, "the manifest's signature is not in the zip"
                )
            return signer
        try:
            signature = base64.b64decode(sig_text.strip(), validate=True)
        except (binascii.Error, ValueError):
            self.findings.add("altered", SIGNATURE, "not base64")
            return signer
        if not env.valid_public_key(pem, manifest.key.alg):
            self.findings.add("altered", SIGNER, f"not an {manifest.key.alg} public key")
            return signer
        try:
            env.verify(raw, signature, pem, manifest.key.alg)
        except env.EnvelopeError:
            self.findings.add(
                "altered",
                SIGNATURE,
                "the signature over manifest.json does not verify with signer.pem: "
                "manifest.json or its signature was changed",
            )
        return signer

    def members(self, manifest: Manifest) -> None:
        listed = set()
        for ref in manifest.files:
            listed.add(ref.name)
            infos = self.by_name.get(ref.name)
            if not infos:
                self.findings.add("missing", ref.name, "listed in manifest.json, not in the zip")
                continue
            data = self.read(ref.name, ref.size)
            if data is not None and hashlib.sha256(data).hexdigest() != ref.sha256:
                self.findings.add("altered", ref.name, "its SHA-256 is not manifest.json's")
        for name, infos in self.by_name.items():
            if name not in listed and name not in UNSIGNED_MEMBERS:
                self.findings.add("added", name, "not listed in manifest.json")
            elif len(infos) > 1:
                self.findings.add("added", name, f"{len(infos)} members have this name")

    def snapshot(self, manifest: Manifest) -> dict[str, Any] | None:
        raw = self.read(SNAPSHOT_JSON)
        if raw is None:
            if SNAPSHOT_JSON not in self.by_name and not self.findings.has(SNAPSHOT_JSON):
                self.findings.add("missing", SNAPSHOT_JSON, "not in the zip")
            return None
        try:
            snapshot = msgspec.json.decode(raw)
        except (msgspec.DecodeError, RecursionError) as exc:
            self.findings.add("altered", SNAPSHOT_JSON, f"not JSON: {exc}")
            return None
        if not isinstance(snapshot, dict) or snapshot.get("schema") != SNAPSHOT_SCHEMA:
            self.findings.add("altered", SNAPSHOT_JSON, f"not a {SNAPSHOT_SCHEMA} document")
            return None
        if snapshot.get("id") != manifest.snapshot:
            self.findings.add(
                "altered", SNAPSHOT_JSON, "its id is not the snapshot manifest.json names"
            )
        key = snapshot.get("key")
        if not isinstance(key, dict) or key.get("fingerprint") != manifest.key.fingerprint:
            self.findings.add(
                "altered", SNAPSHOT_JSON, "its signing key is not the one manifest.json names"
            )
        return snapshot

    def hosts(self, snapshot: dict[str, Any]) -> tuple[int, int, tuple[str, ...], int]:
        """(hosts, envelopes verified, unsigned hosts with reasons, scans)."""
        hosts = snapshot.get("hosts")
        scans = snapshot.get("scans")
        if not isinstance(hosts, list):
            self.findings.add("altered", SNAPSHOT_JSON, "it lists no hosts")
            return 0, 0, (), 0
        verified, unsigned = 0, []
        for index, host in enumerate(hosts):
            if not isinstance(host, dict):
                self.findings.add("altered", SNAPSHOT_JSON, f"hosts[{index}] is not an object")
                continue
            if not host.get("signed"):
                unsigned.append(f"{_label(host)}: {_text(host.get('unsigned_reason'))}")
                continue
            verified += self.envelope(host)
        return len(hosts), verified, tuple(unsigned), len(scans) if isinstance(scans, list) else 0

    def envelope(self, host: dict[str, Any]) -> int:
        """1 when the host's envelope verifies and matches `snapshot.json`'s entry."""
        label = _label(host)
        member = envelope_member(str(host.get("report_id")))
        if host.get("envelope") != member:
            self.findings.add(
                "altered", SNAPSHOT_JSON, f"host {label}: its envelope is not named {member}"
            )
        data = self.read(member)
        if data is None:
            if member not in self.by_name:
                self.findings.add("missing", member, f"the signed report of host {label}")
            return 0
        problem = _envelope_problem(data, host)
        if problem is not None:
            self.findings.add("altered", member, f"host {label}: {problem}")
            return 0
        stored = msgspec.json.decode(data, type=StoredEnvelope)
        report_bytes = base64.b64decode(stored.report)
        differences = _entry_differences(host, stored, report_bytes)
        for difference in differences:
            self.findings.add("altered", SNAPSHOT_JSON, f"host {label}: {difference}")
        return 0 if differences else 1


def _envelope_problem(data: bytes, host: dict[str, Any]) -> str | None:
    """Why an envelope does not prove its report came from the agent's key, or None."""
    try:
        stored = msgspec.json.decode(data, type=StoredEnvelope)
    except (msgspec.DecodeError, RecursionError) as exc:
        return f"not a medsec.envelope/v1 document: {exc}"
    try:
        report_bytes = base64.b64decode(stored.report, validate=True)
        signature = base64.b64decode(stored.signature, validate=True)
    except (binascii.Error, ValueError):
        return "its report or signature is not base64"
    if not env.valid_public_key(stored.signer_key, stored.alg):
        return f"its signer_key is not an {stored.alg} public key"
    try:
        env.verify(report_bytes, signature, stored.signer_key, stored.alg)
    except env.EnvelopeError:
        return (
            "the report's signature does not verify with the agent key it carries: the report "
            "or its signature was changed"
        )
    try:
        env.parse_report(report_bytes)
    except env.EnvelopeError as exc:
        return f"the signed report is not a medsec.report/v1 document: {exc}"
    return None


def _entry_differences(
    host: dict[str, Any], stored: StoredEnvelope, report_bytes: bytes
) -> list[str]:
    """How `snapshot.json`'s entry of a host departs from the report its agent signed."""
    document = msgspec.json.decode(report_bytes)
    out = []
    if host.get("id") not in derivable_ids(document):
        out.append(
            f"id {_short(host.get('id'))} is not the signed report's host "
            f"{_short(document['host']['id'])} nor one of its fallback ids"
        )
    said = {
        "hostname": document["host"]["hostname"],
        "report_id": document["report_id"],
        "generated_at": document["generated_at"],
        "agent": stored.agent,
        "alg": stored.alg,
    }
    for key, signed in said.items():
        if not _same(host.get(key), signed):
            out.append(
                f"{key} {_short(host.get(key))} where the signed report says {_short(signed)}"
            )
    try:
        fingerprint_ok = host.get("signer_key_fingerprint") == fingerprint(stored.signer_key)
    except ValueError:
        fingerprint_ok = False
    if not fingerprint_ok:
        out.append("signer_key_fingerprint is not that of the key in its envelope")
    hardware = host_hardware(document.get("inventory"))
    out.extend(_differences("hardware", host.get("hardware"), hardware))
    ours = host.get("results")
    if not isinstance(ours, list):
        return [*out, "results is not a list"]
    stripped = [
        {k: v for k, v in r.items() if k != "clauses"} if isinstance(r, dict) else r for r in ours
    ]
    out.extend(_result_differences(stripped, host_results(document)))
    return out


def _result_differences(ours: list[Any], signed: list[dict[str, Any]]) -> list[str]:
    if _same(ours, signed):
        return []
    if len(ours) != len(signed):
        return [
            f"results: {len(ours)} where the signed report has {len(signed)} TPM, encryption, "
            "backup, erasure and logging results"
        ]
    found: list[str] = []
    for index, (mine, theirs) in enumerate(zip(ours, signed, strict=True)):
        target = theirs.get("target")
        label = f"results[{index}] {theirs['check_id']}" + (f" on {target}" if target else "")
        found.extend(_differences(label, mine, theirs))
    return found[:_SHOWN_DIFFERENCES] or ["results differ in form from the signed report's"]


class _Absent:
    """A key one side has and the other lacks."""


_GONE = _Absent()


def _differences(label: str, ours: Any, signed: Any) -> list[str]:
    """Up to a few leaves where `ours` departs from `signed`, named by their path."""
    if _same(ours, signed):
        return []
    found: list[str] = []
    for where, mine, theirs in _leaves("", ours, signed):
        found.append(
            f"{label}: {where} {_short(mine)} where the signed report says {_short(theirs)}"
            if where
            else f"{label}: {_short(mine)} where the signed report says {_short(theirs)}"
        )
        if len(found) == _SHOWN_DIFFERENCES:
            break
    return found or [f"{label} differs in form from the signed report's"]


def _leaves(path: str, ours: Any, signed: Any) -> Iterator[tuple[str, Any, Any]]:
    if isinstance(ours, dict) and isinstance(signed, dict):
        for key in [*signed, *(k for k in ours if k not in signed)]:
            where = f"{path}.{key}" if path else str(key)
            yield from _leaves(where, ours.get(key, _GONE), signed.get(key, _GONE))
    elif isinstance(ours, list) and isinstance(signed, list) and len(ours) == len(signed):
        for index, (mine, theirs) in enumerate(zip(ours, signed, strict=True)):
            yield from _leaves(f"{path}[{index}]", mine, theirs)
    elif not _same(ours, signed):
        yield path, ours, signed


def _same(a: Any, b: Any) -> bool:
    """Equal as JSON (so `true` and `1`, or `1` and `1.0`, differ)."""
    if isinstance(a, _Absent) or isinstance(b, _Absent):
        return a is b
    return bool(msgspec.json.encode(a) == msgspec.json.encode(b))


def _short(value: Any) -> str:
    if isinstance(value, _Absent):
        return "(absent)"
    text = msgspec.json.encode(value).decode("utf-8", errors="replace")
    return text if len(text) <= 80 else text[:79] + "…"


def _text(value: Any) -> str:
    return value if isinstance(value, str) else "no reason given"


def _label(host: dict[str, Any]) -> str:
    return f"{_text(host.get('hostname'))} ({_text(host.get('id'))})"


# --------------------------------------------------------------------------- the words


_WORDS: dict[Kind, str] = {"altered": "ALTERED", "missing": "MISSING", "added": "ADDED"}


def format_verdict(verdict: SnapshotVerdict) -> str:
    """The verdict as lines for a terminal (no trailing newline)."""
    return "\n".join(_lines(verdict))


def _lines(verdict: SnapshotVerdict) -> Iterable[str]:
    if not verdict.readable:
        yield f"unreadable: {verdict.problem}"
        yield "result: unreadable (exit 2)"
        return
    if verdict.snapshot_id is not None:
        yield (
            f"snapshot {verdict.snapshot_id}, created {verdict.created_at}"
            + (f" by {verdict.created_by}" if verdict.created_by else "")
        )
    if verdict.fingerprint is not None:
        yield f"signed with {verdict.alg} key {verdict.fingerprint}"
    for finding in verdict.findings:
        for reason in finding.reasons:
            yield f"{_WORDS[finding.kind]:8} {finding.member}: {reason}"
    yield (
        f"hosts: {verdict.hosts}, {verdict.envelopes_verified} with a verified signed report"
        f", {len(verdict.unsigned)} without one; scans referenced: {verdict.scans}"
    )
    for unsigned in verdict.unsigned:
        yield f"  unsigned: {unsigned}"
    if verdict.findings:
        counts = {k: len(verdict.named(k)) for k in _WORDS}
        said = ", ".join(f"{n} {k}" for k, n in counts.items() if n)
        yield f"result: NOT intact: {said} (exit 1)"
    else:
        yield (
            "result: intact: the manifest's signature, every member's SHA-256 and every signed "
            "report verify (exit 0)"
        )
    if verdict.trust_note is not None:
        yield f"note: {verdict.trust_note}"
    elif verdict.fingerprint == verdict.expected_key:
        yield f"the signer is the expected key {verdict.expected_key}"


__all__ = [
    "DOMAINS",
    "MANIFEST",
    "MANIFEST_SCHEMA",
    "SIGNATURE",
    "SIGNER",
    "SNAPSHOT_JSON",
    "SNAPSHOT_SCHEMA",
    "TRUST_NOTE",
    "Finding",
    "Manifest",
    "SnapshotVerdict",
    "StoredEnvelope",
    "derivable_ids",
    "envelope_member",
    "fingerprint",
    "format_verdict",
    "host_hardware",
    "host_results",
    "normal_fingerprint",
    "verify_snapshot",
]
