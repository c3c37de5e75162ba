"""What a person's attestation may say: on a manual clause of a known standard, one of `pass`,
`fail`, `not_applicable`, with a note, an optional document's SHA-256 and a validity in days.
Checked the same way for `medsec attest` and `POST /api/v1/attestations`."""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path

from checks.catalog import Catalogs
from collector.compliance.service import ComplianceError, catalog_for
from collector.models import Attestation
from collector.store import Store

ATTEST_STATUSES = ("pass", "fail", "not_applicable")
MAX_NOTE = 4000
MAX_VALID_DAYS = 3650
DEFAULT_VALID_DAYS = 365
_SHA256 = re.compile(r"^[0-9a-f]{64}$")


class AttestationRefused(ComplianceError):
    """`code` is the API's error code: unknown_standard, unknown_clause, clause_automated,
    invalid_attestation."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code


@dataclass(frozen=True)
class AttestationRequest:
    standard: str
    """The catalog's key (gbt22239-2019-l3, mnds) or its id prefix (GB/T 22239-2019, MNDS)."""
    clause: str
    status: str
    note: str
    valid_days: int = DEFAULT_VALID_DAYS
    file_name: str | None = None
    file_sha256: str | None = None


@dataclass(frozen=True)
class Checked:
    standard_id: str
    clause: str
    valid_until: datetime


def check_request(request: AttestationRequest, now: datetime, catalogs: Catalogs) -> Checked:
    """The request made fit to store, or `AttestationRefused` with one line naming the problem."""
    by_id = {c.standard.id: c for c in catalogs}
    catalog = by_id.get(request.standard)
    if catalog is None:
        try:
            catalog = catalog_for(request.standard, catalogs)
        except ComplianceError as exc:
            raise AttestationRefused("unknown_standard", str(exc)) from None
    clause = next((c for c in catalog.clauses if c.id == request.clause), None)
    if clause is None:
        raise AttestationRefused(
            "unknown_clause", f"{catalog.standard.id} has no clause {request.clause!r}"
        )
    if clause.assessment == "automated":
        raise AttestationRefused(
            "clause_automated",
            f"{catalog.standard.id} {clause.id} is automated: its evidence comes from the checks "
            f"{', '.join(clause.checks)}, not from a person's statement",
        )
    if request.status not in ATTEST_STATUSES:
        raise AttestationRefused(
            "invalid_attestation", f"status must be one of {', '.join(ATTEST_STATUSES)}"
        )
    note = request.note.strip()
    if not note or len(note) > MAX_NOTE or "\x00" in note:
        raise AttestationRefused(
            "invalid_attestation", f"the note must say why, in 1 to {MAX_NOTE} characters"
        )
    if not 1 <= request.valid_days <= MAX_VALID_DAYS:
        raise AttestationRefused(
            "invalid_attestation", f"valid days must be between 1 and {MAX_VALID_DAYS}"
        )
    if request.file_sha256 is not None and not _SHA256.match(request.file_sha256):
        raise AttestationRefused(
            "invalid_attestation", "file_sha256 must be 64 lower-case hex digits"
        )
    if (request.file_name is None) != (request.file_sha256 is None):
        raise AttestationRefused(
            "invalid_attestation", "give the file's name and its SHA-256 together"
        )
    return Checked(catalog.standard.id, clause.id, now + timedelta(days=request.valid_days))


def record(
    store: Store, request: AttestationRequest, by: str, now: datetime, catalogs: Catalogs
) -> Attestation:
    """Check the request and store it as said by `by`; `AttestationRefused` names a problem."""
    checked = check_request(request, now, catalogs)
    return store.add_attestation(
        checked.standard_id,
        checked.clause,
        status=request.status,
        note=request.note.strip(),
        created_by=by,
        now=now,
        valid_until=checked.valid_until,
        file_name=request.file_name,
        file_sha256=request.file_sha256,
    )


def file_digest(path: Path) -> tuple[str, str]:
    """(name, SHA-256) of the document behind an attestation; ComplianceError if unreadable."""
    digest = hashlib.sha256()
    try:
        with path.open("rb") as source:
            while chunk := source.read(1 << 20):
                digest.update(chunk)
    except OSError as exc:
        raise ComplianceError(f"--file: cannot read {path}: {exc.strerror}") from None
    return path.name, digest.hexdigest()
