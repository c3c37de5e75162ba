"""Real LUKS headers for the disk tests: `cryptsetup luksFormat` on sparse image files,
re-encryption interrupted with SIGINT, and loop devices that are always detached again.

Device-mapper is not needed for any of it: cryptsetup formats, converts, dumps and re-encrypts
image files offline (`--force-offline-reencrypt` where it cannot tell whether a plain file is in
use). What it cannot do without device-mapper: open a mapping, check a cipher the kernel's
userspace crypto API (AF_ALG) lacks (serpent, twofish, SM4, capi: specs, aes-lrw, 384-bit XTS
keys: "Cannot initialize device-mapper"), or add integrity (dm-integrity).
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import subprocess
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import pytest

CRYPTSETUP = shutil.which("cryptsetup")
LOSETUP = shutil.which("losetup")
FAST_KDF = ("--pbkdf", "pbkdf2", "--pbkdf-force-iterations", "1000")
LUKS1_FAST_KDF = FAST_KDF  # LUKS1 as well: `--iter-time 1` still benchmarks PBKDF2 for seconds


def need_cryptsetup() -> str:
    if CRYPTSETUP is None:
        pytest.skip("needs cryptsetup (Debian package cryptsetup-bin)")
    return CRYPTSETUP


def need_root_and_tools() -> None:
    if os.geteuid() != 0:
        pytest.skip("needs root: loop devices")
    if CRYPTSETUP is None or LOSETUP is None:
        pytest.skip("needs cryptsetup and losetup (Debian packages cryptsetup-bin, mount)")


class CryptsetupFailed(AssertionError):
    """cryptsetup refused: the test fails with its own words unless it expects the refusal."""

    def __init__(self, args: Sequence[str], stderr: str) -> None:
        super().__init__(f"cryptsetup {' '.join(args)}: {stderr}")
        self.stderr = stderr


def cryptsetup(*args: str, timeout: float = 60) -> str:
    """Run cryptsetup; its stdout."""
    proc = subprocess.run(
        [need_cryptsetup(), *args], capture_output=True, text=True, timeout=timeout, check=False
    )
    if proc.returncode != 0:
        raise CryptsetupFailed(args, " ".join(proc.stderr.split()))
    return proc.stdout


def sparse_file(path: Path, size: int) -> Path:
    with path.open("wb") as handle:
        handle.truncate(size)
    return path


def interrupt(args: Sequence[str], delay: float, timeout: float = 60) -> float:
    """Start `cryptsetup ARGS`, send SIGINT after `delay` seconds (unless it finished first) and
    again every 50 ms until it exits (cryptsetup only looks at the signal between hotzones, and
    misses one sent while it sets up). Returns how long it ran."""
    started = time.monotonic()
    proc = subprocess.Popen(
        [need_cryptsetup(), *args], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE
    )
    with contextlib.suppress(subprocess.TimeoutExpired):
        proc.wait(delay)
    try:
        while proc.poll() is None:
            proc.send_signal(signal.SIGINT)
            try:
                proc.wait(0.05)
            except subprocess.TimeoutExpired:
                if time.monotonic() - started > timeout:
                    proc.kill()
                    raise
    finally:
        if proc.stderr is not None:
            proc.stderr.close()
    return time.monotonic() - started


# SIGINT lands at a random point of cryptsetup's work: while it sets up (an unfinished header,
# or one with no keyslot yet), between hotzones (what is wanted), or after it finished.
DELAYS = (0.15, 0.3, 0.08, 0.6, 1.2)


def _stopped_part_way(header: Path, split: bool) -> bool:
    """A re-encryption in progress, with its data segments already split when `split`."""
    proc = subprocess.run(
        [need_cryptsetup(), "luksDump", "--dump-json-metadata", str(header)],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    if proc.returncode != 0:
        return False
    meta = json.loads(proc.stdout)
    data = [s for s in meta["segments"].values() if not s.get("flags")]
    started = any(k["type"] == "reencrypt" for k in meta["keyslots"].values())
    return started and (len(data) > 1 or not split)


def reencrypt_part_way(
    image: Path,
    start: Sequence[str] | None,
    operation: Sequence[str],
    header: Path | None = None,
    split: bool = True,
) -> Path:
    """A 1 GiB sparse `image`, LUKS2-formatted with the `start` options (left blank when None),
    then `cryptsetup reencrypt OPERATION` stopped with SIGINT after a fraction of a second, tried
    again with each delay in DELAYS until it stops part-way. With `header` the LUKS2 header lives
    in that file. Returns the file holding the header."""
    where = ["--header", str(header)] if header else []
    for delay in DELAYS:
        if header:
            header.unlink(missing_ok=True)
        sparse_file(image, 2**30)
        if start is not None:
            cryptsetup("luksFormat", "--batch-mode", "--type", "luks2", *start, *where, str(image))
        args = ["reencrypt", "--batch-mode", "--force-offline-reencrypt", *operation, *where]
        interrupt([*args, str(image)], delay)
        if _stopped_part_way(header or image, split):
            return header or image
    raise AssertionError(f"cryptsetup reencrypt never stopped part-way (delays {DELAYS})")


@dataclass
class LoopImages:
    """Image files attached to loop devices; every device is detached at teardown."""

    work: Path
    attached: list[str] = field(default_factory=list)
    keyfile: Path = field(init=False)

    def __post_init__(self) -> None:
        self.keyfile = self.work / "key"
        self.keyfile.write_bytes(os.urandom(64))

    def image(self, name: str, *options: str, size_mb: int = 20) -> Path:
        """A sparse image with a LUKS header written by `luksFormat OPTIONS`."""
        image = sparse_file(self.work / f"{name}.img", size_mb * 2**20)
        cryptsetup(
            "luksFormat", "--batch-mode", *options, "--key-file", str(self.keyfile), str(image)
        )
        return image

    def luks(self, name: str, *options: str, size_mb: int = 20) -> str:
        return self.attach(self.image(name, *options, size_mb=size_mb))

    def plain(self, name: str, size_mb: int = 4) -> str:
        """A loop device without any signature."""
        return self.attach(sparse_file(self.work / f"{name}.img", size_mb * 2**20))

    def attach(self, image: Path) -> str:
        proc = subprocess.run(
            [LOSETUP or "losetup", "--find", "--show", str(image)],
            capture_output=True,
            text=True,
            timeout=30,
            check=False,
        )
        if proc.returncode != 0:
            pytest.skip(f"losetup cannot attach a loop device here: {proc.stderr.strip()}")
        self.attached.append(proc.stdout.strip())
        return self.attached[-1]

    def detach_all(self) -> None:
        for device in reversed(self.attached):
            subprocess.run([LOSETUP or "losetup", "-d", device], check=False, timeout=30)
        self.attached.clear()


@pytest.fixture
def loops(tmp_path: Path) -> Iterator[LoopImages]:
    need_root_and_tools()
    images = LoopImages(tmp_path)
    try:
        yield images
    finally:
        images.detach_all()
