"""The spool: sealed reports the collector has not taken yet, encrypted at rest, oldest first.

Each item is one file `<UTC ns, 20 digits>-<report_id>.msr` holding a 12-byte random nonce and
the AES-256-GCM encryption of the envelope bytes, with the file name as associated data (an item
renamed to pose as another fails to decrypt). The key is derived with HKDF-SHA256 from the agent's
private key PEM, so a copy of the spool alone (a backup, a disk image) reveals neither the host
nor its findings. Every write goes to a temp file in the same folder, is fsynced, renamed into
place, and the folder fsynced: a crash leaves either the whole item or a dot-temp file that the
listing ignores and a later run removes. Items the collector refused, and items that no longer
decrypt, move to `rejected/` beside a `.reason` file; nothing here deletes a report that was not
delivered. The spool never grows past its bound: `add` refuses instead (`SpoolFull`).
"""

from __future__ import annotations

import errno
import fcntl
import os
import re
import secrets
import time
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from pathlib import Path

SUFFIX = ".msr"
REJECTED = "rejected"
NONCE_BYTES = 12
TAG_BYTES = 16
HKDF_INFO = b"medsec spool v1"
_TEMP_PREFIX = ".tmp-"
_LOCK = ".lock"
_NAME = re.compile(r"^(?P<ns>\d{20})-(?P<report_id>[0-9a-f-]{36})\.msr$")
STALE_TEMP_SECONDS = 300.0
"""A temp file older than this is the leftover of a crashed write (a live write takes ms)."""


class SpoolError(Exception):
    """The spool cannot be used; the message is one line."""


class SpoolFull(SpoolError):
    def __init__(self, used: int, limit: int, report_id: str) -> None:
        self.used, self.limit, self.report_id = used, limit, report_id
        self.summary = f"spool full ({used / 2**20:.1f} MB of {limit / 2**20:.0f})"
        super().__init__(f"{self.summary}: report {report_id} NOT kept")


class ItemUnreadable(SpoolError):
    """The item does not decrypt with this key: damaged, truncated, or sealed with another key."""


@dataclass(frozen=True)
class SpoolItem:
    path: Path

    @property
    def name(self) -> str:
        return self.path.name

    @property
    def report_id(self) -> str:
        m = _NAME.match(self.name)
        return m.group("report_id") if m else "?"


def item_name(report_id: str, now_ns: int) -> str:
    """`<UTC ns>-<report_id>.msr`; zero-padded so that name order is time order."""
    return f"{now_ns:020d}-{report_id}{SUFFIX}"


# --------------------------------------------------------------------------- durable writes


def fsync_dir(directory: Path) -> None:
    fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def atomic_write(path: Path, data: bytes, *, mode: int = 0o600, overwrite: bool = True) -> None:
    """Write `data` to `path` so that a reader (or a crash) sees the old state or the new one.

    With `overwrite=False` an existing `path` is left alone and `FileExistsError` is raised (the
    check and the write are one step: a hard link, which never replaces).
    """
    directory = path.parent
    temp = directory / f"{_TEMP_PREFIX}{path.name}-{secrets.token_hex(4)}"
    fd = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, mode)
    try:
        try:
            os.fchmod(fd, mode)  # the umask may have narrowed it; never widened
            view = memoryview(data)
            while view:
                view = view[os.write(fd, view) :]
            os.fsync(fd)
        finally:
            os.close(fd)
        if overwrite:
            os.replace(temp, path)
        else:
            os.link(temp, path)
            os.unlink(temp)
    except BaseException:
        temp.unlink(missing_ok=True)
        raise
    fsync_dir(directory)


# --------------------------------------------------------------------------- the spool


def derive_key(private_key_pem: str) -> bytes:
    """The spool's AES-256 key: HKDF-SHA256 over the agent's private key PEM."""
    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives.kdf.hkdf import HKDF

    hkdf = HKDF(algorithm=hashes.SHA256(), length=32, salt=None, info=HKDF_INFO)
    return hkdf.derive(private_key_pem.encode("ascii"))


class Spool:
    """One spool folder (created 0700), bound to one agent key and a size limit in bytes."""

    def __init__(self, directory: Path, max_bytes: int, private_key_pem: str) -> None:
        from cryptography.hazmat.primitives.ciphers.aead import AESGCM

        self.directory = directory
        self.max_bytes = max_bytes
        self._aead = AESGCM(derive_key(private_key_pem))

    # -- layout

    @property
    def rejected_dir(self) -> Path:
        return self.directory / REJECTED

    def ensure(self) -> None:
        """Create the folder (0700); tighten it if it exists wider. OSError when impossible."""
        for folder in (self.directory, self.rejected_dir):
            folder.mkdir(mode=0o700, parents=True, exist_ok=True)
            if folder.stat().st_mode & 0o077:
                folder.chmod(0o700)

    def items(self) -> list[SpoolItem]:
        """Items waiting to be sent, oldest first. Temp files and foreign files are ignored."""
        try:
            names = [e.name for e in os.scandir(self.directory) if e.is_file()]
        except FileNotFoundError:
            return []
        return [SpoolItem(self.directory / n) for n in sorted(names) if _NAME.match(n)]

    def rejected(self) -> list[SpoolItem]:
        try:
            names = [e.name for e in os.scandir(self.rejected_dir) if e.is_file()]
        except FileNotFoundError:
            return []
        return [SpoolItem(self.rejected_dir / n) for n in sorted(names) if n.endswith(SUFFIX)]

    def used_bytes(self) -> int:
        """Bytes the spool holds on disk: waiting items, rejected ones and their reasons."""
        total = 0
        for folder in (self.directory, self.rejected_dir):
            with suppress(FileNotFoundError):
                total += sum(e.stat().st_size for e in os.scandir(folder) if e.is_file())
        return total

    # -- items

    def seal_bytes(self, name: str, envelope: bytes) -> bytes:
        nonce = secrets.token_bytes(NONCE_BYTES)
        return nonce + self._aead.encrypt(nonce, envelope, name.encode("ascii"))

    def add(self, report_id: str, envelope: bytes, now_ns: int | None = None) -> SpoolItem:
        """Keep a sealed report. `SpoolFull` when it would pass the bound (nothing is deleted)."""
        self.ensure()
        size = NONCE_BYTES + len(envelope) + TAG_BYTES
        used = self.used_bytes()
        if used + size > self.max_bytes:
            raise SpoolFull(used, self.max_bytes, report_id)
        ns = now_ns if now_ns is not None else time.time_ns()
        while True:
            name = item_name(report_id, ns)
            path = self.directory / name
            if not path.exists():
                break
            ns += 1
        atomic_write(path, self.seal_bytes(name, envelope), overwrite=False)
        return SpoolItem(path)

    def read(self, item: SpoolItem) -> bytes:
        """The envelope bytes of an item; `ItemUnreadable` when they do not decrypt."""
        from cryptography.exceptions import InvalidTag

        data = item.path.read_bytes()
        if len(data) < NONCE_BYTES + TAG_BYTES:
            raise ItemUnreadable(f"{item.name}: truncated ({len(data)} bytes)")
        try:
            return self._aead.decrypt(
                data[:NONCE_BYTES], data[NONCE_BYTES:], item.name.encode("ascii")
            )
        except InvalidTag:
            raise ItemUnreadable(
                f"{item.name}: does not decrypt (damaged, or sealed with another agent key)"
            ) from None

    def replace(self, item: SpoolItem, envelope: bytes) -> None:
        """Re-encrypt an item in place (same name, so the same place in the order)."""
        atomic_write(item.path, self.seal_bytes(item.name, envelope))

    def remove(self, item: SpoolItem) -> None:
        item.path.unlink(missing_ok=True)
        fsync_dir(self.directory)

    def reject(self, item: SpoolItem, reason: str) -> Path:
        """Move an item to rejected/ (kept, never retried), its reason beside it."""
        self.ensure()
        target = self.rejected_dir / item.name
        atomic_write(target.with_name(item.name + ".reason"), (reason.strip() + "\n").encode())
        os.replace(item.path, target)
        fsync_dir(self.rejected_dir)
        fsync_dir(self.directory)
        return target

    def clean_temp(self, older_than: float = STALE_TEMP_SECONDS) -> int:
        """Remove temp files left by crashed writes; only old ones (a live write may be on)."""
        removed = 0
        cutoff = time.time() - older_than
        for folder in (self.directory, self.rejected_dir):
            try:
                entries = list(os.scandir(folder))
            except FileNotFoundError:
                continue
            for entry in entries:
                if entry.name.startswith(_TEMP_PREFIX) and entry.stat().st_mtime < cutoff:
                    Path(entry.path).unlink(missing_ok=True)
                    removed += 1
        return removed

    @contextmanager
    def sending(self, *, wait: bool = False) -> Iterator[bool]:
        """Hold the spool's lock (sending, re-sealing). Without `wait`, yields False at once when
        another process holds it; with `wait`, blocks until it is free."""
        self.ensure()
        fd = os.open(self.directory / _LOCK, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        try:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | (0 if wait else fcntl.LOCK_NB))
            except OSError as exc:
                if exc.errno not in (errno.EWOULDBLOCK, errno.EAGAIN):
                    raise
                yield False
                return
            yield True
        finally:
            os.close(fd)
