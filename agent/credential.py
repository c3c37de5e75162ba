"""The agent's credential: what `medsec-agent enroll` got from the collector, kept mode 0600.

A JSON file: the collector URL it is valid for, the agent name, the signature algorithm, the API
token and the agent's private signing key. Neither the token nor the key is ever printed. A file
that group or others could read is refused (like ssh does with keys). Before enrolment, reports
are still sealed and spooled with a pending key kept in the spool folder (the only place the
sandboxed service may write); `enroll` re-seals them with the enrolled key.
"""

from __future__ import annotations

import os
import stat
from pathlib import Path
from typing import Annotated

import msgspec

from agent.spool import atomic_write
from checks.envelope import Alg, generate_private_key

PENDING_KEY = "pending.key"


class CredentialError(Exception):
    """The credential cannot be used; the message is one line (never holds a secret)."""


class CredentialMissing(CredentialError):
    pass


class Credential(msgspec.Struct, forbid_unknown_fields=True, frozen=True):
    collector: str
    agent: Annotated[str, msgspec.Meta(min_length=1, max_length=128)]
    alg: Alg
    api_token: Annotated[str, msgspec.Meta(min_length=8)]
    private_key_pem: Annotated[str, msgspec.Meta(min_length=1)]

    def __repr__(self) -> str:  # never let a traceback or a debug print show the secrets
        return f"Credential(collector={self.collector!r}, agent={self.agent!r}, alg={self.alg!r})"


class PendingKey(msgspec.Struct, forbid_unknown_fields=True, frozen=True):
    alg: Alg
    private_key_pem: str

    def __repr__(self) -> str:
        return f"PendingKey(alg={self.alg!r})"


def _read_private(path: Path, what: str) -> bytes:
    try:
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC | os.O_NOFOLLOW)
    except FileNotFoundError:
        raise CredentialMissing(f"{what} {path} does not exist") from None
    except PermissionError:
        raise CredentialError(f"{what} {path}: permission denied") from None
    except OSError as exc:
        raise CredentialError(f"{what} {path}: {exc.strerror}") from None
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            raise CredentialError(f"{what} {path} is not a regular file")
        if st.st_mode & 0o077:
            raise CredentialError(
                f"{what} {path} is readable by others (mode {stat.S_IMODE(st.st_mode):04o}); "
                "chmod 600 it"
            )
        with os.fdopen(fd, "rb", closefd=False) as f:
            return f.read(1 << 20)
    finally:
        os.close(fd)


def load_credential(path: Path) -> Credential:
    data = _read_private(path, "credential")
    try:
        return msgspec.json.decode(data, type=Credential)
    except (msgspec.ValidationError, msgspec.DecodeError):
        # msgspec's message may quote a value, and every value here is secret.
        raise CredentialError(f"credential {path} is damaged (not a medsec credential)") from None


def write_credential(path: Path, credential: Credential, *, overwrite: bool) -> None:
    """Write atomically with mode 0600. `FileExistsError` unless `overwrite`."""
    path.parent.mkdir(mode=0o755, parents=True, exist_ok=True)
    atomic_write(path, msgspec.json.encode(credential) + b"\n", overwrite=overwrite)


def load_pending_key(spool_dir: Path) -> PendingKey | None:
    try:
        data = _read_private(spool_dir / PENDING_KEY, "pending key")
    except CredentialMissing:
        return None
    try:
        return msgspec.json.decode(data, type=PendingKey)
    except (msgspec.ValidationError, msgspec.DecodeError):
        raise CredentialError(f"pending key {spool_dir / PENDING_KEY} is damaged") from None


def pending_key(spool_dir: Path, alg: Alg) -> PendingKey:
    """The key that seals reports made before enrolment, created (0600) on first use."""
    existing = load_pending_key(spool_dir)
    if existing is not None:
        return existing
    spool_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
    key = PendingKey(alg=alg, private_key_pem=generate_private_key(alg))
    try:
        atomic_write(spool_dir / PENDING_KEY, msgspec.json.encode(key), overwrite=False)
    except FileExistsError:  # another run made one first: use that one
        found = load_pending_key(spool_dir)
        if found is None:
            raise
        return found
    return key


def remove_pending_key(spool_dir: Path) -> None:
    (spool_dir / PENDING_KEY).unlink(missing_ok=True)
