"""`wipe.capability`'s crypto erase on real disks: partition tables written by sfdisk, file systems
by mkfs, LUKS1/LUKS2 headers by cryptsetup, on a loop device read back by the real disk gatherer
(lsblk, blkid one device at a time, cryptsetup luksDump).

Truth rule, computed from the layout the test built (not from medsec's reading): a disk can be
erased by destroying LUKS keys exactly when the whole device is a LUKS container, or it carries
a partition table and every partition is a LUKS container or an MBR extended partition (whose
logical partitions count themselves); a file system, swap or a partition without any signature
is data outside LUKS. Where medsec says the disk can be crypto-erased, the procedure it prints
is then run for real (`cryptsetup luksErase` and `blkdiscard` of each header it names), and the
test's key must open none of the disk's containers afterwards, nor blkid find their headers.
"""

from __future__ import annotations

import json
import os
import random
import re
import shutil
import signal
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from checks.facts import HostFacts
from checks.facts.disk import DiskFacts
from checks.facts.luks_layout import LuksLayout, luks_layout
from checks.facts.wipe import DiskErase, WipeFacts, WipeTool
from checks.host import wipe as wipe_checks
from checks.model import Result, Status
from checks.registry import Registry
from checks.runner import evaluate
from inventory.host.disk import collect_disk
from inventory.runner import LocalRunner

REPO = Path(__file__).resolve().parents[2]
REGISTRY = Registry.from_modules([wipe_checks])
FAST_KDF = ("--pbkdf", "pbkdf2", "--pbkdf-force-iterations", "1000")
TOOLS = tuple(
    WipeTool(name, f"/usr/sbin/{name}", "1.0") for name in ("cryptsetup", "blkdiscard", "hdparm")
)
PART_MB = 24
"""Every partition: room for a LUKS2 header (16 MiB) and some data."""
CONTENTS = ("luks1", "luks2", "luks2", "ext4", "vfat", "swap", "none")


def run(*argv: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    proc = subprocess.run(argv, capture_output=True, text=True, timeout=120, check=False)
    if check and proc.returncode != 0:
        raise AssertionError(f"{' '.join(argv)} exited {proc.returncode}: {proc.stderr.strip()}")
    return proc


@pytest.fixture(scope="module")
def tools_here() -> None:
    if os.geteuid() != 0:
        pytest.skip("needs root: loop devices")
    for tool, package in [
        ("losetup", "mount"),
        ("partx", "util-linux"),
        ("sfdisk", "fdisk"),
        ("cryptsetup", "cryptsetup-bin"),
        ("mkfs.ext4", "e2fsprogs"),
        ("mkfs.vfat", "dosfstools"),
        ("mkswap", "util-linux"),
        ("blkdiscard", "util-linux"),
    ]:
        if shutil.which(tool) is None:
            pytest.skip(f"needs {tool} (Debian package {package})")


@dataclass
class Disk:
    """An image file built to a layout and attached to a loop device with its partitions."""

    work: Path
    keyfile: Path
    table: str
    """none (the whole device holds `contents[0]`), gpt or dos."""
    contents: list[str]
    """What each partition holds, in partition-number order; "extended" for an MBR extended one."""
    device: str = ""
    luks: list[str] = field(default_factory=list)
    """The LUKS containers the test made."""

    def partition(self, number: int) -> str:
        return f"{self.device}p{number}" if self.table != "none" else self.device

    def build(self, name: str) -> None:
        image = self.work / f"{name}.img"
        image.unlink(missing_ok=True)
        data_parts = [c for c in self.contents if c != "extended"]
        with image.open("wb") as handle:
            handle.truncate((len(data_parts) * PART_MB + 4) << 20)
        if self.table != "none":
            lines = [f"label: {self.table}"]
            for content in self.contents:
                lines.append(",,E" if content == "extended" else f",{PART_MB}M,L")
            run_input("sfdisk", "--quiet", str(image), text="\n".join(lines) + "\n")
        self.device = run("losetup", "--find", "--show", "--partscan", str(image)).stdout.strip()
        if self.table != "none":
            # Without udev the partitions appear once the kernel is told (or has read) the table.
            run("partx", "--add", self.device, check=False)
            run("partx", "--update", self.device, check=False)
        for number, content in enumerate(self.contents, start=1):
            self.make(self.partition(number), content)

    def make(self, device: str, content: str) -> None:
        for _ in range(100):
            if Path(device).exists():
                break
            time.sleep(0.02)
        if content in ("luks1", "luks2"):
            run("cryptsetup", "luksFormat", "--batch-mode", "--type", content, *FAST_KDF,
                "--key-file", str(self.keyfile), device)  # fmt: skip
            self.luks.append(device)
        elif content == "ext4":
            run("mkfs.ext4", "-q", "-F", device)
        elif content == "vfat":
            run("mkfs.vfat", device)
        elif content == "swap":
            run("mkswap", device)

    def detach(self) -> None:
        if self.device:
            run("losetup", "--detach", self.device, check=False)
            self.device = ""  # the name may go to the next disk attached

    @property
    def kname(self) -> str:
        return self.device.removeprefix("/dev/")

    def truth(self) -> bool:
        """The rule in the module docstring, from the layout alone."""
        counted = [c for c in self.contents if c != "extended"]
        return all(c.startswith("luks") for c in counted)

    def opens(self, device: str) -> bool:
        test = run("cryptsetup", "open", "--test-passphrase", "--key-file", str(self.keyfile),
                   device, check=False)  # fmt: skip
        return test.returncode == 0


def run_input(*argv: str, text: str) -> None:
    proc = subprocess.run(argv, input=text, capture_output=True, text=True, timeout=60, check=False)
    if proc.returncode != 0:
        raise AssertionError(f"{' '.join(argv)} exited {proc.returncode}: {proc.stderr.strip()}")


@pytest.fixture
def disks(tools_here: None, tmp_path: Path) -> Iterator[list[Disk]]:
    made: list[Disk] = []
    (tmp_path / "key").write_bytes(os.urandom(64))
    try:
        yield made
    finally:
        for disk in made:
            disk.detach()


def new_disk(made: list[Disk], work: Path, table: str, contents: list[str]) -> Disk:
    disk = Disk(work, work / "key", table, contents)
    made.append(disk)
    disk.build(f"disk{len(made)}")
    return disk


def verdict(disk: Disk, facts: DiskFacts) -> tuple[LuksLayout, Result]:
    erase = DiskErase(disk.kname, disk.device, "ssd", None, removable=False)
    wipe = WipeFacts(TOOLS, (erase,))
    (result,) = evaluate(REGISTRY, HostFacts(wipe=wipe, disk=facts))
    return luks_layout(disk.kname, facts), result


def random_layout(rng: random.Random) -> tuple[str, list[str]]:
    table = rng.choice(["none", "gpt", "gpt", "dos", "dos"])
    if table == "none":
        return table, [rng.choice(["luks1", "luks2", "ext4", "none"])]
    luks_only = rng.random() < 0.5  # half the disks all-LUKS, so both verdicts are common
    choices = ("luks1", "luks2") if luks_only else CONTENTS
    count = rng.randint(1, 5 if table == "dos" else 4)
    contents = [rng.choice(choices) for _ in range(count)]
    if table == "dos" and count > 4:
        contents.insert(3, "extended")  # p4 extends over the logical partitions p5, p6, ...
    return table, contents


@pytest.mark.root
def test_differential_crypto_erase_on_real_layouts(disks: list[Disk], tmp_path: Path) -> None:
    rng = random.Random(20261207)  # noqa: S311 — reproducible layouts, not secrets
    seen: Counter[str] = Counter()
    disagreements = []
    for _ in range(14):
        table, contents = random_layout(rng)
        disk = new_disk(disks, tmp_path, table, contents)
        layout, result = verdict(disk, collect_disk(LocalRunner()))
        truth = disk.truth()
        seen[f"{table} {truth}"] += 1
        if layout.covered is not truth or (result.status is Status.PASS) is not truth:
            disagreements.append(f"{table} {contents}: {result.status.value}: {result.message}")
            continue
        if truth:
            assert sorted(c.device for c in layout.containers) == sorted(disk.luks)
            assert all(disk.opens(device) for device in disk.luks)
            erase_as_told(result)
            assert not any(disk.opens(device) for device in disk.luks)
            probed = [run("blkid", "-p", "-s", "TYPE", device, check=False) for device in disk.luks]
            assert not any("crypto_LUKS" in p.stdout for p in probed)
        disk.detach()
    assert disagreements == []
    assert seen["none True"] + seen["gpt True"] + seen["dos True"] >= 3, seen
    assert sum(n for key, n in seen.items() if key.endswith("False")) >= 3, seen


def erase_as_told(result: Result) -> None:
    """Run the commands in the passing message: luksErase, then each header's discard."""
    found = re.search(r"cryptsetup luksErase ([^,)]+), then discard each header: ([^)]+)\)",
                      result.message)  # fmt: skip
    assert found is not None, result.message
    for device in found[1].split():
        run("cryptsetup", "luksErase", "--batch-mode", device)
    for step in found[2].split("; "):
        run(*step.split())


@pytest.mark.root
def test_mbr_extended_partition_is_no_data(disks: list[Disk], tmp_path: Path) -> None:
    disk = new_disk(disks, tmp_path, "dos", ["luks2", "luks1", "luks2", "extended", "luks2"])
    facts = collect_disk(LocalRunner())

    layout, result = verdict(disk, facts)

    assert result.status is Status.PASS, result.message
    assert sorted(c.device for c in layout.containers) == sorted(disk.luks)
    assert isinstance(facts.block_devices, tuple)
    extended = next(d for d in facts.block_devices if d.path == disk.partition(4))
    assert extended.fstype is None
    assert extended.size_bytes is not None
    assert extended.size_bytes <= 4096


@pytest.mark.root
def test_interrupted_encryption_leaves_plaintext_outside_luks(
    disks: list[Disk], tmp_path: Path
) -> None:
    image = tmp_path / "encrypting.img"
    with image.open("wb") as handle:
        handle.truncate(512 << 20)
    interrupt(
        ["cryptsetup", "reencrypt", "--encrypt", "--type", "luks2", "--reduce-device-size", "32M",
         "--resilience", "none", "--force-offline-reencrypt", "--batch-mode", *FAST_KDF,
         "--key-file", str(tmp_path / "key"), str(image)],
        after=0.3,
    )  # fmt: skip
    disk = Disk(tmp_path, tmp_path / "key", "none", [])
    disks.append(disk)
    disk.device = run("losetup", "--find", "--show", str(image)).stdout.strip()

    layout, result = verdict(disk, collect_disk(LocalRunner()))

    assert layout.covered is False
    assert len(layout.containers) == 1
    (outside,) = layout.outside
    assert outside.startswith(f"{disk.device} (LUKS with plaintext data: bytes ")
    assert result.status is Status.FAIL
    assert "crypto erase does not reach data outside LUKS" in result.message


def interrupt(argv: Sequence[str], after: float) -> None:
    """Start `argv`, send SIGINT after `after` seconds and until it exits (cryptsetup looks at
    the signal only between the chunks it re-encrypts)."""
    proc = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    time.sleep(after)
    deadline = time.monotonic() + 60
    while proc.poll() is None:
        proc.send_signal(signal.SIGINT)
        try:
            proc.wait(0.05)
        except subprocess.TimeoutExpired:
            if time.monotonic() > deadline:
                proc.kill()
                raise


@pytest.mark.root
def test_boot_partition_is_not_counted(disks: list[Disk], tmp_path: Path) -> None:
    """A /boot partition counts as data until it is mounted at /boot (in a private mount
    namespace here, so the host's /boot is untouched)."""
    unshare = shutil.which("unshare")
    if unshare is None:
        pytest.skip("needs unshare (Debian package util-linux)")
    disk = new_disk(disks, tmp_path, "gpt", ["ext4", "luks2"])
    unmounted, _ = verdict(disk, collect_disk(LocalRunner()))
    code = (
        "import json; from checks.facts.luks_layout import luks_layout; "
        "from checks.model import jsonable; from inventory.host.disk import collect_disk; "
        "from inventory.runner import LocalRunner; "
        f"print(json.dumps(jsonable(luks_layout({disk.kname!r}, collect_disk(LocalRunner())))))"
    )
    script = f'mount {disk.partition(1)} /boot && exec {sys.executable} -c "$0"'
    inside = subprocess.run(
        [unshare, "--mount", "--propagation", "private", "sh", "-c", script, code],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        cwd=REPO,
    )
    if inside.returncode != 0 and "mount" in inside.stderr:
        pytest.skip(f"cannot mount in a private namespace here: {inside.stderr.strip()}")
    assert inside.returncode == 0, inside.stderr
    mounted = json.loads(inside.stdout)

    assert unmounted.covered is False
    assert unmounted.outside == (f"{disk.partition(1)} (ext4)",)
    assert mounted["covered"] is True
    assert mounted["boot"] == [f"{disk.partition(1)} (/boot)"]
