"""The offline bundle (scripts/bundle.sh), unpacked as a hospital would: SHA256SUMS covers every
file and catches a flipped byte; the wheelhouse installs medsec into a fresh venv of Debian's
python3 with no network (`unshare -n`) and its commands run; apt resolves the agent's and the
collector's Debian packages from the bundle's debs/ alone, for a host with nothing installed
(an empty dpkg status), and fails once one package of the closure is missing (so the check can
fail); the tarball is one top folder carrying the roles. A build with no network fails with
one line and leaves nothing behind. Needs root (unshare, the caches under /var/cache), apt-get
and dpkg-scanpackages; skips with the reason otherwise. The bundle is built once per state of
its inputs (tests/ansible/bundle.py).
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import tarfile
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

from tests.ansible.bundle import REPO, BundleBuildError, build_bundle, bundle_tarball, version

pytestmark = [
    pytest.mark.root,
    pytest.mark.skipif(os.geteuid() != 0, reason="needs root (unshare -n, /var/cache)"),
    pytest.mark.skipif(
        shutil.which("apt-get") is None or shutil.which("dpkg-scanpackages") is None,
        reason="needs apt-get and dpkg-scanpackages (Debian packages apt, dpkg-dev)",
    ),
]
PYTHON = Path("/usr/bin/python3")  # Debian's python3.11: what the roles make /opt/medsec/.venv with
UNSHARE = "/usr/bin/unshare"


@pytest.fixture(scope="module")
def bundle(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """The unpacked top folder, removed afterwards (it holds about 250 MB)."""
    where = tmp_path_factory.mktemp("bundle")
    try:
        top = build_bundle(where)
    except BundleBuildError as exc:
        pytest.fail(f"scripts/bundle.sh failed: {exc}")
    yield top
    shutil.rmtree(where, ignore_errors=True)


def _run(
    argv: list[str], cwd: Path | None = None, timeout: float = 300
) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "LC_ALL": "C"}
    return subprocess.run(
        argv, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout, check=False
    )


def test_sha256sums_cover_every_file_and_catch_a_flipped_byte(bundle: Path) -> None:
    listed = {line.split("  ", 1)[1] for line in (bundle / "SHA256SUMS").read_text().splitlines()}
    present = {p.relative_to(bundle).as_posix() for p in bundle.rglob("*") if p.is_file()} - {
        "SHA256SUMS"
    }
    assert listed == present
    checked = _run(["/usr/bin/sha256sum", "-c", "--quiet", "SHA256SUMS"], bundle)
    assert checked.returncode == 0, checked.stdout + checked.stderr

    victim = min((bundle / "debs").glob("*.deb"), key=lambda p: p.stat().st_size)
    original = victim.read_bytes()
    flipped = bytearray(original)
    flipped[len(flipped) // 2] ^= 0x01
    victim.write_bytes(bytes(flipped))
    try:
        checked = _run(["/usr/bin/sha256sum", "-c", "--quiet", "SHA256SUMS"], bundle)
    finally:
        victim.write_bytes(original)
    assert checked.returncode != 0
    assert checked.stdout.strip() == f"debs/{victim.name}: FAILED"


def test_wheelhouse_installs_medsec_offline_into_a_fresh_venv(bundle: Path, tmp_path: Path) -> None:
    if not PYTHON.exists():
        pytest.skip(f"{PYTHON} (Debian's python3) is not installed")
    venv = tmp_path / "venv"
    made = _run([UNSHARE, "-n", str(PYTHON), "-m", "venv", str(venv)])
    assert made.returncode == 0, made.stderr
    # --isolated: this machine's pip.conf and PIP_FIND_LINKS must not lend it other wheels.
    installed = _run(
        [
            UNSHARE, "-n", str(venv / "bin" / "python"), "-m", "pip", "install", "--isolated",
            "--no-index", "--find-links", str(bundle / "wheels"), "--no-cache-dir", "medsec",
        ],
        timeout=600,
    )  # fmt: skip
    assert installed.returncode == 0, installed.stdout[-2000:] + installed.stderr[-2000:]

    for command in ("medsec-agent", "medsec"):
        ran = _run([str(venv / "bin" / command), "--version"])
        assert ran.returncode == 0, ran.stderr
        assert ran.stdout.split() == [command, version()]
    # tpm2-pytss is the one dependency built here from its source, against Debian's libtss2.
    imported = _run([str(venv / "bin" / "python"), "-c", "import tpm2_pytss.ESAPI"])
    assert imported.returncode == 0, imported.stderr

    # The wheelhouse is exactly medsec's dependency set: every wheel was installed.
    listed = _run([str(venv / "bin" / "python"), "-m", "pip", "list", "--format=json"])
    names = {_norm(d["name"]) for d in json.loads(listed.stdout)} - {"pip", "setuptools"}
    wheels = {_norm(w.name.split("-", 1)[0]) for w in (bundle / "wheels").iterdir()}
    assert wheels == names


def _norm(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def _role_packages(bundle: Path) -> dict[str, list[str]]:
    roles = bundle / "ansible" / "roles"
    agent = yaml.safe_load((roles / "medsec_agent" / "vars" / "Debian.yml").read_text())
    collector = yaml.safe_load((roles / "medsec_collector" / "vars" / "Debian.yml").read_text())
    backups = [p for kind in agent["medsec_agent_backup_packages"].values() for p in kind]
    return {
        "agent": [*agent["medsec_agent_os_packages"], *backups],
        "collector": collector["medsec_collector_os_packages"],
    }


def _apt_with_only(repo: Path, work: Path) -> list[str]:
    """apt-get and options that see no source but repo and no installed package."""
    lists, cache = work / "lists", work / "cache"
    for folder in (lists / "partial", cache / "archives" / "partial"):
        folder.mkdir(parents=True)
    (work / "sources.list").write_text(f"deb [trusted=yes] file:{repo} ./\n")
    (work / "status").write_text("")
    options = {
        "Dir::Etc::SourceList": work / "sources.list",
        "Dir::Etc::SourceParts": "/nonexistent",
        "Dir::Etc::Preferences": "/nonexistent",
        "Dir::Etc::PreferencesParts": "/nonexistent",
        "Dir::State::Lists": lists,
        "Dir::State::status": work / "status",
        "Dir::Cache": cache,
        "APT::Sandbox::User": "root",  # _apt cannot enter pytest's private temporary folders
    }
    return ["/usr/bin/apt-get", *(f"-o{key}={value}" for key, value in options.items())]


def test_apt_resolves_each_role_from_the_bundle_alone(bundle: Path, tmp_path: Path) -> None:
    # One version of each package: apt would otherwise be free to mix them.
    indexed = re.findall(r"^Package: (\S+)$", (bundle / "debs" / "Packages").read_text(), re.M)
    assert len(indexed) == len(set(indexed)) == len(list((bundle / "debs").glob("*.deb")))

    apt = _apt_with_only(bundle / "debs", tmp_path)
    updated = _run([*apt, "update"])
    assert updated.returncode == 0, updated.stdout + updated.stderr
    assert not re.search(r"^(Err|W|E):", updated.stdout + updated.stderr, re.M), updated.stdout

    for role, packages in _role_packages(bundle).items():
        simulated = _run([*apt, "install", "--simulate", "--no-install-recommends", *packages])
        assert simulated.returncode == 0, f"{role}: {simulated.stdout[-3000:]}{simulated.stderr}"
        installs = set(re.findall(r"^Inst (\S+) ", simulated.stdout, re.M))
        assert set(packages) <= installs, role
        assert "libc6" in installs  # a host with nothing installed gets its whole closure


def test_apt_check_fails_when_one_package_of_the_closure_is_missing(
    bundle: Path, tmp_path: Path
) -> None:
    """The control for the test above: without nvme-cli's library the agent's list cannot
    resolve, so that test would notice an incomplete closure."""
    repo = tmp_path / "repo"
    repo.mkdir()
    stanzas = (bundle / "debs" / "Packages").read_text().split("\n\n")
    kept = [s for s in stanzas if not s.startswith("Package: libnvme1\n")]
    assert len(kept) == len(stanzas) - 1
    (repo / "Packages").write_text("\n\n".join(kept))
    apt = _apt_with_only(repo, tmp_path / "apt")
    assert _run([*apt, "update"]).returncode == 0
    simulated = _run([*apt, "install", "--simulate", *_role_packages(bundle)["agent"]])
    assert simulated.returncode != 0
    assert "Depends: libnvme1" in simulated.stdout


def test_tarball_is_one_folder_carrying_the_roles(bundle: Path) -> None:
    with tarfile.open(bundle_tarball()) as archive:
        names = set(archive.getnames())
    top = f"medsec-bundle-{version()}"
    assert {name.split("/", 1)[0] for name in names} == {top}
    roles = {
        f"{top}/{p.relative_to(REPO).as_posix()}"
        for p in (REPO / "ansible").rglob("*")
        if p.is_file() and not {"__pycache__", ".ansible"}.intersection(p.parts)
    }
    assert f"{top}/ansible/roles/medsec_agent/vars/Debian.yml" in roles
    assert f"{top}/ansible/roles/medsec_collector/vars/Debian.yml" in roles
    assert roles <= names
    for member in ("README.txt", "SHA256SUMS", "debs/Packages", "debs/Packages.gz", "debs/Release"):
        assert f"{top}/{member}" in names
    assert f"{top}/wheels/medsec-{version()}-py3-none-any.whl" in names


def test_build_with_no_network_fails_in_one_line_and_leaves_nothing(tmp_path: Path) -> None:
    out, cache = tmp_path / "out", tmp_path / "deb-cache"
    built = _run(
        [UNSHARE, "-n", "/bin/bash", str(REPO / "scripts" / "bundle.sh"),
         "--out", str(out), "--deb-cache", str(cache)],
        timeout=600,
    )  # fmt: skip
    assert built.returncode != 0
    lines = built.stderr.strip().splitlines()
    assert all(line.startswith("bundle: ") for line in lines), built.stderr
    assert "apt-get failed" in lines[-1]
    assert list(out.iterdir()) == []
    assert list(cache.iterdir()) == []


def test_build_without_dpkg_scanpackages_says_so(tmp_path: Path) -> None:
    tools = tmp_path / "bin"
    tools.mkdir()
    for tool in ("dirname", "apt-get", "apt-cache", "sha256sum", "tar", "gzip"):
        (tools / tool).symlink_to(shutil.which(tool) or f"/usr/bin/{tool}")
    out = tmp_path / "out"
    built = subprocess.run(
        ["/bin/bash", str(REPO / "scripts" / "bundle.sh"), "--out", str(out)],
        env={"PATH": str(tools), "LC_ALL": "C"},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert built.returncode != 0
    assert built.stderr == (
        "bundle: dpkg-scanpackages is missing (Debian packages apt, dpkg-dev, coreutils, tar, "
        "gzip)\n"
    )
    assert not out.exists()
