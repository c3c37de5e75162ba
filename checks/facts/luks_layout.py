"""Whether a disk holds its data wholly inside LUKS containers, derived from the block-device
facts (no I/O): then destroying the containers' keys (`cryptsetup luksErase`) and discarding
their headers erases the disk irreversibly, whatever the medium (the "crypto erase" of NIST
SP 800-88).

A disk is LUKS all the way when the whole device is a LUKS container, or when it carries a
partition table and every partition that can hold data is one. Partitions mounted at /boot,
/boot/efi or /efi hold the boot loader and kernels, no data, and are not counted (listed in the
evidence); a partition of at most 4 KiB is an MBR extended partition as the kernel shows it (its
logical partitions are judged themselves). Any other partition counts: a file system, swap, an
LVM or RAID member, a headerless dm-crypt mapping, or no signature at all (content unknown). A
LUKS container whose data is still partly plaintext (an interrupted `cryptsetup reencrypt
--encrypt` or `--decrypt`, or cipher_null) does not count either. Free space outside the
partitions is not examined. Pure functions of `DiskFacts`.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field

from checks.facts.disk import BlockDevice, Cipher, DiskFacts, EncryptedVolume
from checks.model import Unavailable

BOOT_MOUNTS = frozenset({"/boot", "/boot/efi", "/efi"})
LUKS_KINDS = frozenset({"luks1", "luks2", "luks"})
EXTENDED_PARTITION_MAX = 4096
"""The kernel shows an MBR extended partition as 1 KiB (2 sectors; up to 4 KiB on 4K-sector
disks): no data fits in it."""


@dataclass(frozen=True)
class LuksContainer:
    """A LUKS container on the disk, with what its erasure must discard."""

    device: str
    """Path of the device holding the header."""
    header_bytes: int | None
    """Bytes from the device's start to its first data segment: the header and keyslots that
    `luksErase` overwrites and the discard must cover. None when the header was not read."""


@dataclass(frozen=True)
class LuksLayout:
    """Whether a disk's data lies wholly inside LUKS containers."""

    covered: bool | None
    """True: every part that can hold data is LUKS; False: some part is not; None: unknown."""
    containers: tuple[LuksContainer, ...] = ()
    """The LUKS containers found on the disk."""
    outside: tuple[str, ...] = ()
    """Parts holding (or able to hold) data outside LUKS, each with why (`/dev/sdb3 (ext4)`)."""
    boot: tuple[str, ...] = ()
    """Boot partitions not counted (`/dev/sdb1 (/boot/efi)`)."""
    unknown: tuple[str, ...] = ()
    """What could not be told, and why."""


@dataclass
class _Walk:
    devices: tuple[BlockDevice, ...]
    volumes: dict[str, EncryptedVolume] | Unavailable
    boot_paths: dict[str, str]
    children: dict[str, list[BlockDevice]] = field(default_factory=lambda: defaultdict(list))
    containers: list[LuksContainer] = field(default_factory=list)
    outside: list[str] = field(default_factory=list)
    boot: list[str] = field(default_factory=list)
    unknown: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        for device in self.devices:
            for parent in device.parents:
                self.children[parent].append(device)

    def visit(self, device: BlockDevice) -> None:
        fstype = device.fstype
        if isinstance(fstype, Unavailable):
            self.unknown.append(f"{device.path}: its signature could not be read ({fstype.reason})")
            return
        if fstype == "crypto_LUKS" or self._volume_kind(device.path) in LUKS_KINDS:
            self.luks(device)
            return
        partition = device.type == "part"
        if partition and device.path in self.boot_paths:
            self.boot.append(f"{device.path} ({self.boot_paths[device.path]})")
            return
        if fstype is not None:
            self.outside.append(f"{device.path} ({fstype})")
            return
        kids = self.children.get(device.kname, [])
        for kid in kids:
            if kid.type in ("part", "mpath"):  # mpath: this disk is one path of the device
                self.visit(kid)
            else:
                # dm-crypt without a LUKS header here (plain, or a detached header), LVM, RAID
                what = f"{kid.encryption} dm-crypt" if kid.encryption else kid.type
                self.outside.append(f"{kid.path} ({what} directly on {device.path})")
        if kids:
            return
        if partition and (device.size_bytes or 0) <= EXTENDED_PARTITION_MAX:
            return  # an extended partition: its logical partitions are the disk's children
        self.outside.append(f"{device.path} (no signature: content unknown)")

    def _volume_kind(self, path: str) -> str | None:
        if isinstance(self.volumes, Unavailable):
            return None
        volume = self.volumes.get(path)
        return volume.kind if volume is not None else None

    def luks(self, device: BlockDevice) -> None:
        if isinstance(self.volumes, Unavailable):
            reason = self.volumes.reason
            self.unknown.append(f"{device.path}: LUKS headers unavailable ({reason})")
            return
        volume = self.volumes.get(device.path)
        if volume is None:
            self.unknown.append(f"{device.path}: LUKS signature, but its header was not read")
            return
        segments = volume.segments
        if not segments:
            cipher = volume.cipher
            reason = cipher.reason if isinstance(cipher, Unavailable) else "no data segment"
            self.unknown.append(f"{device.path}: LUKS header not read ({reason})")
            return
        self.containers.append(LuksContainer(device.path, min(s.offset for s in segments)))
        plain = [s for s in segments if isinstance(s.cipher, Cipher) and _plaintext(s.cipher)]
        if plain:
            ranges = ", ".join(
                f"bytes {s.offset}-{s.offset + s.length - 1 if s.length else 'end'}" for s in plain
            )
            self.outside.append(f"{device.path} (LUKS with plaintext data: {ranges})")


def _plaintext(cipher: Cipher) -> bool:
    return cipher.spec in ("linear", "cipher_null") or cipher.algorithm == "null"


def _boot_paths(facts: DiskFacts, devices: tuple[BlockDevice, ...]) -> dict[str, str]:
    found: dict[str, str] = {}
    for device in devices:
        for mountpoint in device.mountpoints:
            if mountpoint in BOOT_MOUNTS:
                found[device.path] = mountpoint
    if not isinstance(facts.mounts, Unavailable):
        for mount in facts.mounts:
            if mount.mountpoint in BOOT_MOUNTS and mount.device is not None:
                found[mount.device] = mount.mountpoint
    return found


def luks_layout(kname: str, facts: DiskFacts) -> LuksLayout:
    """Whether the disk with kernel name `kname` holds its data wholly inside LUKS containers."""
    devices = facts.block_devices
    if isinstance(devices, Unavailable):
        return LuksLayout(None, unknown=(f"block devices unavailable: {devices.reason}",))
    disk = next((d for d in devices if d.kname == kname), None)
    if disk is None:
        return LuksLayout(None, unknown=(f"{kname} is not among the block devices lsblk listed",))
    volumes: dict[str, EncryptedVolume] | Unavailable = (
        facts.volumes
        if isinstance(facts.volumes, Unavailable)
        else {v.device: v for v in facts.volumes}
    )
    walk = _Walk(devices, volumes, _boot_paths(facts, devices))
    walk.visit(disk)
    if walk.outside:
        covered: bool | None = False
    elif walk.unknown:
        covered = None
    else:
        covered = bool(walk.containers)
        if not covered:
            walk.outside.append(f"{disk.path} (no LUKS container)")
    return LuksLayout(
        covered,
        tuple(walk.containers),
        tuple(walk.outside),
        tuple(walk.boot),
        tuple(walk.unknown),
    )
