"""Configuration files as Debian packages ship them, fetched with apt's own client and unpacked
without installing anything: `apt-get download` into a cache folder kept across test runs
(MEDSEC_DEB_CACHE, by default /var/cache/medsec-test-debs), then the wanted members read out of
`dpkg-deb --fsys-tarfile`. A package that cannot be fetched is reported, never guessed at.
"""

from __future__ import annotations

import io
import os
import shutil
import subprocess
import tarfile
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

DEFAULT_CACHE = Path("/var/cache/medsec-test-debs")
_TIMEOUT_S = 300


@dataclass(frozen=True)
class Unpacked:
    """The files of interest from the packages that could be had, and those that could not."""

    files: dict[str, dict[str, bytes]]
    """package → {path inside the package (`etc/logrotate.d/nginx`): content}."""
    missing: dict[str, str]
    """package → why it could not be had."""


def cache_dir(fallback: Path) -> Path:
    """The shared cache when it can be written, else `fallback` (a test's own temp folder)."""
    wanted = Path(os.environ.get("MEDSEC_DEB_CACHE", DEFAULT_CACHE))
    try:
        wanted.mkdir(parents=True, exist_ok=True)
        probe = wanted / ".write-test"
        probe.write_text("")
        probe.unlink()
    except OSError:
        fallback.mkdir(parents=True, exist_ok=True)
        return fallback
    return wanted


def _tool(name: str) -> str:
    path = shutil.which(name)
    if path is None:
        raise FileNotFoundError(f"{name} is not installed")
    return path


def tools_missing() -> str | None:
    for tool in ("apt-get", "dpkg-deb"):
        if shutil.which(tool) is None:
            return f"{tool} is not installed"
    return None


def _deb_of(cache: Path, package: str) -> Path | None:
    found = sorted(cache.glob(f"{package}_*.deb"))
    return found[-1] if found else None


def _download(cache: Path, packages: Sequence[str]) -> dict[str, str]:
    """Fetch the packages not in the cache yet; package → reason for those that failed."""
    wanted = [p for p in packages if _deb_of(cache, p) is None]
    if not wanted:
        return {}
    argv = [_tool("apt-get"), "download", "-q", *wanted]
    env = {**os.environ, "LC_ALL": "C"}
    done = subprocess.run(
        argv, cwd=cache, capture_output=True, text=True, timeout=_TIMEOUT_S, env=env, check=False
    )
    if done.returncode == 0:
        return {}
    # One unknown name makes apt refuse the whole list: ask again one by one.
    failed: dict[str, str] = {}
    for package in wanted:
        if _deb_of(cache, package) is not None:
            continue
        one = subprocess.run(
            [_tool("apt-get"), "download", "-q", package],
            cwd=cache,
            capture_output=True,
            text=True,
            timeout=_TIMEOUT_S,
            env=env,
            check=False,
        )
        if one.returncode != 0 or _deb_of(cache, package) is None:
            lines = (one.stderr or one.stdout).strip().splitlines()
            failed[package] = lines[-1] if lines else f"apt-get exited {one.returncode}"
    return failed


def _members(deb: Path, prefixes: Iterable[str]) -> dict[str, bytes]:
    tar_bytes = subprocess.run(
        [_tool("dpkg-deb"), "--fsys-tarfile", str(deb)],
        capture_output=True,
        timeout=_TIMEOUT_S,
        check=True,
    ).stdout
    wanted = tuple(prefixes)
    found: dict[str, bytes] = {}
    with tarfile.open(fileobj=io.BytesIO(tar_bytes)) as tar:
        for member in tar:
            name = member.name.removeprefix("./")
            if member.isfile() and name.startswith(wanted):
                handle = tar.extractfile(member)
                if handle is not None:
                    found[name] = handle.read()
    return found


def unpack(cache: Path, packages: Sequence[str], prefixes: Sequence[str]) -> Unpacked:
    """The members under `prefixes` of each package, unpacked once into `cache`/unpacked."""
    missing = _download(cache, packages)
    files: dict[str, dict[str, bytes]] = {}
    for package in packages:
        if package in missing:
            continue
        deb = _deb_of(cache, package)
        if deb is None:
            missing[package] = "not downloaded"
            continue
        unpacked = cache / "unpacked" / deb.stem
        if not (unpacked / ".done").exists():
            members = _members(deb, prefixes)
            for name, data in members.items():
                target = unpacked / name
                target.parent.mkdir(parents=True, exist_ok=True)
                target.write_bytes(data)
            unpacked.mkdir(parents=True, exist_ok=True)
            (unpacked / ".done").write_text("\n".join(sorted(members)))
        names = [n for n in (unpacked / ".done").read_text().splitlines() if n]
        files[package] = {name: (unpacked / name).read_bytes() for name in names}
    return Unpacked(files, missing)
