"""Mounts (/proc/self/mountinfo) and swap areas (/proc/swaps) placed on the block-device tree, to
say whether each one's data reaches a disk only through a crypt layer. zram swap is in memory
unless it writes back to a backing device.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass

from checks.facts.disk import BlockDevice, Mount, Swap, containing_mount
from checks.model import Unavailable
from inventory.host.disk.devices import read_optional
from inventory.runner import Runner

MOUNTINFO = "/proc/self/mountinfo"
PROC_SWAPS = "/proc/swaps"

# Kernel and virtual file systems that hold no data at rest; left out of `DiskFacts.mounts`.
PSEUDO_FILESYSTEMS = frozenset(
    [
        "autofs",
        "binfmt_misc",
        "bpf",
        "cgroup",
        "cgroup2",
        "configfs",
        "debugfs",
        "devpts",
        "devtmpfs",
        "efivarfs",
        "fusectl",
        "hugetlbfs",
        "mqueue",
        "nsfs",
        "proc",
        "pstore",
        "rpc_pipefs",
        "securityfs",
        "selinuxfs",
        "sysfs",
        "tracefs",
    ]
)


def _unescape(text: str) -> str:
    """Octal escapes the kernel uses in mountinfo and /proc/swaps (\\040 for a space)."""
    return re.sub(r"\\([0-7]{3})", lambda m: chr(int(m.group(1), 8)), text)


@dataclass(frozen=True)
class MountEntry:
    """One /proc/self/mountinfo line, before it is placed on the block-device tree."""

    mountpoint: str
    source: str
    fstype: str
    majmin: str
    root: str


def parse_mountinfo(text: str) -> tuple[MountEntry, ...]:
    """proc(5) mountinfo: `id parent maj:min root mountpoint options [optional…] - fstype source
    superoptions`. Pseudo file systems are dropped; of several mounts on one mountpoint the last
    (the visible one) is kept."""
    entries: dict[str, MountEntry] = {}
    for line in text.splitlines():
        left, sep, right = line.partition(" - ")
        head, tail = left.split(), right.split()
        if not sep or len(head) < 6 or len(tail) < 2:
            continue
        fstype = tail[0]
        if fstype in PSEUDO_FILESYSTEMS:
            continue
        mountpoint = _unescape(head[4])
        entries.pop(mountpoint, None)
        entries[mountpoint] = MountEntry(
            mountpoint=mountpoint,
            source=_unescape(tail[1]),
            fstype=fstype,
            majmin=head[2],
            root=_unescape(head[3]),
        )
    return tuple(entries.values())


@dataclass(frozen=True)
class SwapEntry:
    """One /proc/swaps line."""

    path: str
    kind: str
    size_bytes: int


def parse_proc_swaps(text: str) -> tuple[SwapEntry, ...]:
    """/proc/swaps: a header, then `Filename Type Size(KiB) Used Priority` per swap area."""
    swaps = []
    for line in text.splitlines()[1:]:
        fields = line.split()
        if len(fields) >= 3 and re.fullmatch(r"[0-9]{1,20}", fields[2]):
            swaps.append(SwapEntry(_unescape(fields[0]), fields[1], int(fields[2]) * 1024))
    return tuple(swaps)


@dataclass(frozen=True)
class Placement:
    """Where a mount or swap area sits on the block-device tree."""

    device: str | None
    layers: tuple[str, ...]
    crypt_layers: tuple[str, ...]
    encrypted: bool | Unavailable


class DeviceTree:
    """Lookups over the block devices: by KNAME, MAJ:MIN and every path a device goes by."""

    def __init__(self, devices: Iterable[BlockDevice]) -> None:
        self.by_kname: dict[str, BlockDevice] = {}
        self.by_majmin: dict[str, BlockDevice] = {}
        self.by_path: dict[str, BlockDevice] = {}
        for dev in devices:
            self.by_kname[dev.kname] = dev
            if dev.majmin:
                self.by_majmin[dev.majmin] = dev
            for path in (dev.path, f"/dev/{dev.kname}", f"/dev/{dev.name}"):
                self.by_path.setdefault(path, dev)
            if dev.kname.startswith("dm-"):
                self.by_path.setdefault(f"/dev/mapper/{dev.name}", dev)

    def find(self, majmin: str | None, path: str | None) -> BlockDevice | None:
        if majmin and not majmin.startswith("0:") and majmin in self.by_majmin:
            return self.by_majmin[majmin]
        return self.by_path.get(path or "")

    def place(self, dev: BlockDevice) -> Placement:
        """Every device beneath `dev` (top first) and whether each path down crosses crypt."""
        layers: list[str] = []
        crypt: list[str] = []
        verdicts: dict[str, bool] = {}

        def covered(kname: str) -> bool:
            if kname in verdicts:  # shared lower layers (md, multipath) are walked once
                return verdicts[kname]
            node = self.by_kname.get(kname)
            if node is None:
                return False
            verdicts[kname] = False  # a cycle would be a broken tree: it encrypts nothing
            layers.append(node.path)
            if node.encryption is not None:
                crypt.append(node.path)
            below = [covered(parent) for parent in node.parents]
            verdicts[kname] = node.encryption is not None or (bool(below) and all(below))
            return verdicts[kname]

        encrypted = covered(dev.kname)
        return Placement(dev.path, tuple(layers), tuple(crypt), encrypted)


def place_mounts(
    entries: Iterable[MountEntry], devices: tuple[BlockDevice, ...] | Unavailable
) -> tuple[Mount, ...]:
    tree = DeviceTree(devices) if not isinstance(devices, Unavailable) else None
    mounts = []
    for entry in entries:
        placement = _place(tree, devices, entry.majmin, entry.source, entry.fstype)
        mounts.append(
            Mount(
                mountpoint=entry.mountpoint,
                source=entry.source,
                fstype=entry.fstype,
                majmin=entry.majmin,
                root=entry.root,
                device=placement.device,
                layers=placement.layers,
                crypt_layers=placement.crypt_layers,
                encrypted=placement.encrypted,
            )
        )
    return tuple(mounts)


def _place(
    tree: DeviceTree | None,
    devices: tuple[BlockDevice, ...] | Unavailable,
    majmin: str | None,
    source: str,
    fstype: str,
) -> Placement:
    if tree is None or isinstance(devices, Unavailable):
        reason = devices.reason if isinstance(devices, Unavailable) else "no device tree"
        return Placement(None, (), (), Unavailable(f"block devices unavailable: {reason}"))
    dev = tree.find(majmin, source)
    if dev is not None:
        return tree.place(dev)
    if source.startswith("/dev/"):
        why = f"{source} is not in the block-device tree lsblk printed"
    else:
        why = f"{source} ({fstype}) is not a local block device"
    return Placement(None, (), (), Unavailable(why))


def place_swaps(
    runner: Runner,
    entries: Iterable[SwapEntry],
    devices: tuple[BlockDevice, ...] | Unavailable,
    mounts: tuple[Mount, ...] | Unavailable,
) -> tuple[Swap, ...]:
    tree = DeviceTree(devices) if not isinstance(devices, Unavailable) else None
    swaps = []
    for entry in entries:
        in_memory = False
        if entry.kind == "file":
            mount = containing_mount(mounts, entry.path) if isinstance(mounts, tuple) else None
            if mount is None:
                placement = Placement(
                    None, (), (), Unavailable(f"no mount holding swap file {entry.path} is known")
                )
            else:
                placement = Placement(
                    mount.device, mount.layers, mount.crypt_layers, mount.encrypted
                )
        else:
            placement = _place(tree, devices, None, entry.path, "swap")
            name = entry.path.rpartition("/")[2]
            if tree is not None and placement.device is not None:
                name = tree.by_path[placement.device].kname
            if name.startswith("zram"):
                backing = read_optional(runner, f"/sys/block/{name}/backing_dev")
                if backing is None or backing == "none":
                    in_memory = True
                else:  # zram writeback: idle pages are written to this device
                    placement = _place(tree, devices, None, backing, "swap")
        swaps.append(
            Swap(
                path=entry.path,
                kind=entry.kind,
                size_bytes=entry.size_bytes,
                device=placement.device,
                layers=placement.layers,
                crypt_layers=placement.crypt_layers,
                encrypted=placement.encrypted,
                in_memory=in_memory,
            )
        )
    return tuple(swaps)
