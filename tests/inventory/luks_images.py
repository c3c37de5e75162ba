"""Real LUKS headers for the disk tests: `cryptsetup luksFormat` on sparse image files,
re-encryption interrupted with SIGINT, and loop devices that are always detached again.

Device-mapper is not needed for any of it: cryptsetup formats, converts, dumps and re-encrypts
image files offline (`--force-offline-reencrypt` where it cannot tell whether a plain file is in
use). What it cannot do without device-mapper: open a mapping, check a cipher the kernel's
userspace crypto API (AF_ALG) lacks (serpent, twofish, SM4, capi: specs, aes-lrw, 384-bit XTS
keys: "Cannot initialize device-mapper"), or add integrity (dm-integrity).
"""

from __future__ import annotations

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
LUKS1_FAST_KDF = ("--iter-time", "1")


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
    """Start `cryptsetup ARGS`, send SIGINT after `delay` seconds and again every 50 ms until it
    exits (cryptsetup only looks at the signal between hotzones, and misses one sent while it
    sets up). Returns how long it ran."""
    started = time.monotonic()
    proc = subprocess.Popen(
        [need_cryptsetup(), *args], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE
    )
    time.sleep(delay)
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
