"""The offline bundle for tests: built once by scripts/bundle.sh per state of its inputs, kept
under /var/cache/medsec-tests/bundle/, unpacked into a test's own folder.

The cache key is the SHA-256 of, for each input file in path order, its path relative to the
repository and the SHA-256 of its content. The inputs are pyproject.toml and README.md (the
wheel's metadata), scripts/bundle.sh and scripts/bundle_debs.py, and every file under checks/,
inventory/, agent/, collector/ (the wheel) and ansible/ (the roles and the vars files naming the
Debian packages), skipping __pycache__, *.pyc, *.egg-info, .ansible and *.retry. Anything else a
build depends on (the Debian mirror's versions, PyPI's newest releases) is not in the key: a
cached bundle stays as built until an input changes or its folder is removed. The two newest
bundles are kept; older ones are deleted when a new one is built.
"""

from __future__ import annotations

import fcntl
import hashlib
import os
import shutil
import subprocess
import tomllib
from collections.abc import Iterator
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
CACHE = Path("/var/cache/medsec-tests/bundle")
KEEP = 2
FILES = ("pyproject.toml", "README.md", "scripts/bundle.sh", "scripts/bundle_debs.py")
TREES = ("checks", "inventory", "agent", "collector", "ansible")
SKIP_DIRS = {"__pycache__", ".ansible"}
SKIP_SUFFIXES = (".pyc", ".retry")
BUILD_TIMEOUT = 1800  # seconds: a cold build downloads about 250 MB


class BundleBuildError(RuntimeError):
    """scripts/bundle.sh failed; the message is the line it printed."""


def version() -> str:
    """project.version of pyproject.toml: the bundle's name carries it."""
    with (REPO / "pyproject.toml").open("rb") as handle:
        return str(tomllib.load(handle)["project"]["version"])


def _inputs() -> Iterator[Path]:
    for name in FILES:
        yield REPO / name
    for tree in TREES:
        for path in (REPO / tree).rglob("*"):
            parts = path.relative_to(REPO).parts
            if (
                path.is_file()
                and not SKIP_DIRS.intersection(parts)
                and not any(part.endswith(".egg-info") for part in parts)
                and not path.name.endswith(SKIP_SUFFIXES)
            ):
                yield path


def bundle_key() -> str:
    """The cache key described in the module docstring (64 hex digits)."""
    digest = hashlib.sha256()
    for path in sorted(_inputs(), key=lambda p: p.relative_to(REPO).as_posix()):
        digest.update(path.relative_to(REPO).as_posix().encode() + b"\0")
        digest.update(hashlib.sha256(path.read_bytes()).digest())
    return digest.hexdigest()


def bundle_tarball() -> Path:
    """The built medsec-bundle-VERSION.tar.gz for the checkout as it is now, built if needed.

    Builds are serialised by a lock: a second test run waiting on the first reuses its bundle.
    """
    CACHE.mkdir(parents=True, exist_ok=True)
    folder = CACHE / bundle_key()[:32]
    tarball = folder / f"medsec-bundle-{version()}.tar.gz"
    with (CACHE / ".lock").open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not tarball.is_file():
            done = subprocess.run(
                ["/bin/bash", str(REPO / "scripts" / "bundle.sh"), "--out", str(folder)],
                capture_output=True,
                text=True,
                timeout=BUILD_TIMEOUT,
                check=False,
            )
            if done.returncode != 0 or not tarball.is_file():
                lines = done.stderr.strip().splitlines() or [f"exit {done.returncode}"]
                raise BundleBuildError(lines[-1])
            _prune(keep=folder)
        os.utime(folder)  # most recently used: _prune keeps it
    return tarball


def _prune(keep: Path) -> None:
    """Delete all but the KEEP most recently used bundles (each is about 250 MB)."""
    others = sorted(
        (p for p in CACHE.iterdir() if p.is_dir() and p != keep),
        key=lambda p: p.stat().st_mtime,
        reverse=True,
    )
    for old in others[KEEP - 1 :]:
        shutil.rmtree(old, ignore_errors=True)


def build_bundle(out_dir: Path) -> Path:
    """Unpack the bundle (built or reused, see bundle_tarball) into out_dir and return its top
    folder, out_dir/medsec-bundle-VERSION, holding wheels/, debs/, ansible/, README.txt and
    SHA256SUMS."""
    tarball = bundle_tarball()
    out_dir.mkdir(parents=True, exist_ok=True)
    subprocess.run(
        ["/usr/bin/tar", "-C", str(out_dir), "-xzf", str(tarball)],
        check=True,
        capture_output=True,
        timeout=300,
    )
    return out_dir / f"medsec-bundle-{version()}"
