"""The debs/ folder of the offline bundle: the Debian packages the agent and collector roles
install (read from their vars/Debian.yml), with their whole dependency closure, downloaded
through a cache that survives between builds, and a Packages index so that
`deb [trusted=yes] file:/PATH/debs ./` works as an apt source on a host with no network.

Called by scripts/bundle.sh; prints one line and exits 1 on failure. The closure is what
`apt-cache depends --recurse` lists (every alternative and every provider of a virtual
package, essential packages included), so a minimal Debian 12 resolves from it alone.
"""

from __future__ import annotations

import argparse
import gzip
import hashlib
import os
import re
import shutil
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from email.utils import formatdate
from pathlib import Path

import yaml

# Which variables of which role name Debian packages (lists, or mappings of lists).
PACKAGE_VARS = {
    "medsec_agent": ("medsec_agent_os_packages", "medsec_agent_backup_packages"),
    "medsec_collector": ("medsec_collector_os_packages",),
}
DEPENDS = (
    "--recurse", "--no-recommends", "--no-suggests", "--no-conflicts", "--no-breaks",
    "--no-replaces", "--no-enhances",
)  # fmt: skip
PACKAGE_NAME = re.compile(r"^[a-z0-9][a-z0-9+.-]+(:[a-z0-9]+)?$")
URI_LINE = re.compile(
    r"^'(?P<uri>[^']+)' (?P<file>\S+\.deb) (?P<size>\d+) SHA256:(?P<sha>[0-9a-f]{64})$"
)
TIMEOUT = 1800  # seconds for one apt-get download of the whole closure on a slow mirror
ENV = {**os.environ, "LC_ALL": "C", "DEBIAN_FRONTEND": "noninteractive"}


class BundleError(Exception):
    """A reason the debs/ folder cannot be made, said in one line."""


@dataclass(frozen=True)
class Deb:
    """One package file apt would install: its candidate version as apt-get names the file."""

    package: str
    file: str
    size: int
    sha256: str


def role_packages(ansible_dir: Path) -> list[str]:
    """Every package named by PACKAGE_VARS in the roles' vars/Debian.yml, all backup kinds."""
    names: list[str] = []
    for role, keys in PACKAGE_VARS.items():
        path = ansible_dir / "roles" / role / "vars" / "Debian.yml"
        try:
            data = yaml.safe_load(path.read_text(encoding="utf-8"))
        except (OSError, yaml.YAMLError) as exc:
            raise BundleError(f"cannot read {path}: {exc}") from exc
        for key in keys:
            value = data.get(key) if isinstance(data, dict) else None
            groups = value.values() if isinstance(value, dict) else [value]
            for group in groups:
                if not isinstance(group, list):
                    raise BundleError(f"{path}: {key} is not a list (or a mapping of lists)")
                for name in group:
                    if not isinstance(name, str) or not PACKAGE_NAME.match(name):
                        raise BundleError(f"{path}: {key} holds {name!r}, not a package name")
                    names.append(name)
    return sorted(set(names))


def _run(argv: list[str], cwd: Path | None = None, timeout: float = 300) -> str:
    try:
        done = subprocess.run(
            argv, cwd=cwd, env=ENV, capture_output=True, text=True, timeout=timeout, check=False
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise BundleError(f"{argv[0]} failed: {exc}") from exc
    if done.returncode != 0:
        errors = [line[3:] for line in done.stderr.splitlines() if line.startswith("E: ")]
        reason = (errors or done.stderr.strip().splitlines() or [f"exit {done.returncode}"])[-1]
        raise BundleError(f"{Path(argv[0]).name} failed: {reason}")
    return done.stdout


def closure(names: list[str]) -> list[str]:
    """Real packages of the recursive dependency closure of names.

    apt-cache prints a virtual package as `<name>` with its providers indented below it and
    recurses into every provider; a virtual package is kept only through its providers, and one
    with none (nor a real package of the same name, as `<python3:any>`) stops the build.
    """
    text = _run(["/usr/bin/apt-cache", "depends", *DEPENDS, *names])
    real: set[str] = set()
    providers: dict[str, set[str]] = {}
    virtual: str | None = None
    for line in text.splitlines():
        if not line.startswith(" "):
            virtual = None
            if not line.startswith("<"):
                real.add(line.strip())
        elif line.startswith("    ") and virtual is not None:
            providers[virtual].add(line.strip())
        else:
            target = line.split(":", 1)[1].strip() if ":" in line else ""
            virtual = target[1:-1] if target.startswith("<") else None
            if virtual is not None:
                providers.setdefault(virtual, set())
    unknown = [name for name in names if name not in real and not providers.get(name)]
    if unknown:
        raise BundleError(
            f"apt knows no package {', '.join(unknown)} (misspelt, or apt-get update not run?)"
        )
    for name, offered in sorted(providers.items()):
        if not offered and name.split(":", 1)[0] not in real:
            raise BundleError(f"no Debian package provides {name} (needed by the closure)")
        real |= offered
    return sorted(real)


def candidates(packages: list[str]) -> list[Deb]:
    """The one file apt-get would download for each package: its candidate version."""
    text = _run(["/usr/bin/apt-get", "download", "--print-uris", *packages])
    debs: dict[str, Deb] = {}
    for line in text.splitlines():
        match = URI_LINE.match(line.strip())
        if match is None:
            continue
        package = match["file"].split("_", 1)[0]
        if package in debs:
            raise BundleError(f"apt-get offers two files for {package}")
        debs[package] = Deb(package, match["file"], int(match["size"]), match["sha"])
    missing = sorted({p.split(":", 1)[0] for p in packages} - set(debs))
    if missing:
        raise BundleError(f"apt-get has no file to download for {', '.join(missing)}")
    return sorted(debs.values(), key=lambda deb: deb.package)


def _intact(path: Path, deb: Deb) -> bool:
    if not path.is_file() or path.stat().st_size != deb.size:
        return False
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        while chunk := handle.read(1 << 20):
            digest.update(chunk)
    return digest.hexdigest() == deb.sha256


def fill_cache(debs: list[Deb], cache: Path) -> int:
    """Download into cache every file not already there intact; returns how many were fetched.

    apt-get writes into a private folder first and each checked file is renamed into the cache,
    so an interrupted or parallel build never leaves a half-written .deb under its final name.
    """
    try:
        cache.mkdir(parents=True, exist_ok=True)
        partial = Path(tempfile.mkdtemp(prefix=".partial-", dir=cache))
    except OSError as exc:
        raise BundleError(f"cannot write the deb cache {cache}: {exc.strerror}") from exc
    try:
        wanted = [deb for deb in debs if not _intact(cache / deb.file, deb)]
        if not wanted:
            return 0
        _let_apt_write(partial)
        _run(["/usr/bin/apt-get", "download", *(d.package for d in wanted)], partial, TIMEOUT)
        for deb in wanted:
            if not _intact(partial / deb.file, deb):
                raise BundleError(f"apt-get download gave no intact {deb.file}")
            os.replace(partial / deb.file, cache / deb.file)
        return len(wanted)
    finally:
        shutil.rmtree(partial, ignore_errors=True)


def _let_apt_write(folder: Path) -> None:
    """Run as root, apt downloads as its sandbox user `_apt`, which must own the folder (else
    it warns and downloads as root)."""
    if os.geteuid() != 0:
        return
    try:
        shutil.chown(folder, user="_apt")
    except (LookupError, OSError):
        return


def index(dest: Path, count: int) -> None:
    """Packages, Packages.gz and an unsigned Release of dest, as a flat repository (`./`).

    The Release file names the indexes that exist, so `apt-get update` asks for no other
    compression of Packages (without it, apt prints an error line for each one it tries).
    """
    text = _run(["/usr/bin/dpkg-scanpackages", ".", "/dev/null"], dest).encode()
    if sum(line.startswith(b"Package: ") for line in text.splitlines()) != count:
        raise BundleError(f"dpkg-scanpackages did not index all {count} packages")
    indexes = {"Packages": text, "Packages.gz": gzip.compress(text, mtime=0)}
    release = [
        "Origin: medsec",
        "Label: medsec offline bundle",
        f"Date: {formatdate(usegmt=True)}",
        f"Architectures: {' '.join(sorted(_architectures(text)))}",
        "SHA256:",
        *(
            f" {hashlib.sha256(data).hexdigest()} {len(data)} {name}"
            for name, data in indexes.items()
        ),
    ]
    indexes["Release"] = "\n".join([*release, ""]).encode()
    for name, data in indexes.items():
        (dest / name).write_bytes(data)


def _architectures(packages: bytes) -> set[str]:
    return {
        line.split(b":", 1)[1].strip().decode()
        for line in packages.splitlines()
        if line.startswith(b"Architecture: ")
    }


def build(ansible_dir: Path, cache: Path, dest: Path) -> tuple[int, int, int]:
    """Fill dest (empty or new) with the closure; returns (packages, bytes, downloaded)."""
    debs = candidates(closure(role_packages(ansible_dir)))
    fetched = fill_cache(debs, cache)
    dest.mkdir(parents=True, exist_ok=True)
    for deb in debs:
        try:
            os.link(cache / deb.file, dest / deb.file)
        except OSError:
            shutil.copyfile(cache / deb.file, dest / deb.file)
    index(dest, len(debs))
    return len(debs), sum(deb.size for deb in debs), fetched


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n", 1)[0])
    parser.add_argument("--ansible", type=Path, required=True, help="the repository's ansible/")
    parser.add_argument("--cache", type=Path, required=True, help="downloaded .debs kept here")
    parser.add_argument("--dest", type=Path, required=True, help="the bundle's debs/ folder")
    args = parser.parse_args(argv)
    try:
        count, size, fetched = build(args.ansible, args.cache, args.dest)
    except BundleError as exc:
        print(f"bundle: {exc}", file=sys.stderr)
        return 1
    print(
        f"bundle: debs: {count} packages, {size / 1e6:.0f} MB, {fetched} downloaded, "
        f"{count - fetched} from {args.cache}",
        file=sys.stderr,
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
