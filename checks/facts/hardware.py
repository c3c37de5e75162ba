"""Hardware inventory facts: identity, firmware, CPU, memory, disks and NICs."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Literal

from checks.model import Unavailable


@dataclass(frozen=True)
class DmiInfo:
    """System identity from /sys/class/dmi/id (the kernel's copy of the SMBIOS tables)."""

    sys_vendor: str | None
    """`sys_vendor`: the system manufacturer."""
    product_name: str | None
    """`product_name`."""
    product_serial: str | None
    """`product_serial` (root-only on most kernels); None when unreadable or a placeholder."""
    product_uuid: str | None
    """`product_uuid` (root-only); None when unreadable or a placeholder."""
    board_serial: str | None
    """`board_serial` (root-only); None when unreadable or a placeholder."""
    bios_vendor: str | None
    """`bios_vendor`."""
    bios_version: str | None
    """`bios_version`."""
    bios_date: str | None
    """`bios_date`."""
    placeholders: tuple[str, ...] = ()
    """Fields whose raw value was a vendor placeholder ("Default string", all zeros, ...)."""
    unreadable: tuple[str, ...] = ()
    """Names of fields that exist but could not be read (permission)."""


@dataclass(frozen=True)
class CpuInfo:
    """From /proc/cpuinfo and /sys/devices/system/cpu."""

    model: str | None
    """`model name` of the first processor in /proc/cpuinfo."""
    sockets: int
    """Distinct `physical id` values; on ARM, where /proc/cpuinfo has none, the sysfs
    topology (`cpu*/topology/physical_package_id`)."""
    cores: int
    """Physical cores: distinct (physical id, core id) pairs (sysfs topology on ARM)."""
    threads: int
    """Logical processors listed in /proc/cpuinfo."""


@dataclass(frozen=True)
class Disk:
    """A whole disk (not a partition), from /sys/block/<name>."""

    name: str
    """Kernel name (`sda`, `nvme0n1`)."""
    path: str
    """`/dev/<name>`."""
    model: str | None
    """`device/model` (SCSI/ATA) or `device/model` of the NVMe controller."""
    serial: str | None
    """`device/serial` (NVMe), `device/vpd_pg80` (SCSI) or `serial` (virtio); None when absent."""
    size_bytes: int
    """`size` × 512."""
    medium: Literal["hdd", "ssd", "nvme", "virtual", "unknown"]
    """NVMe by name; virtio/xen → virtual; else `queue/rotational` (1 → hdd, 0 → ssd).
    Loop, device-mapper, md and other virtual block devices are not disks and are left out."""
    transport: str | None
    """nvme, sata, sas, usb, virtio, xen, mmc, iscsi or fc, from the device's sysfs path."""
    removable: bool
    """`removable`."""


@dataclass(frozen=True)
class Nic:
    """A network interface, from /sys/class/net and `ip -json addr`."""

    name: str
    mac: str | None
    """`address`; None for interfaces without a hardware address."""
    addresses: tuple[str, ...] | Unavailable
    """Addresses with prefix length, IPv4 and IPv6, from `ip -json addr` (`ip -o addr` on old
    iproute2); Unavailable when `ip` is missing or fails."""
    physical: bool
    """True when /sys/class/net/<name>/device exists (not a bridge, veth or tunnel)."""
    speed_mbps: int | None = None
    """`speed`, when the link reports one."""


IdSource = Literal["dmi-serial", "dmi-uuid", "machine-id", "mac"]


@dataclass(frozen=True)
class HostAnchor:
    """One source a host id can be derived from, and the id it gives."""

    source: IdSource
    """`dmi-serial` (vendor, product and system serial), `dmi-uuid`, `machine-id` or `mac`."""
    id: str
    """`sha256:` digest of the source name and its values."""


@dataclass(frozen=True)
class HostIdentity:
    """A stable id for the host that does not collapse machines with placeholder DMI serials,
    with the evidence a collector needs to tell two machines apart when a DMI value it took for
    real turns out to be shared (see `collector.store.anchors`)."""

    id: str
    """`sha256:` digest of the source value below."""
    source: IdSource
    """Which anchor the id was derived from, in order of preference."""
    fallbacks: tuple[HostAnchor, ...] = ()
    """The other usable anchors after it, in order of preference: the ids the host would have
    if its preferred anchor proved to be a placeholder."""
    machine: str | None = None
    """The id the `machine-id` anchor gives (a digest: /etc/machine-id itself is not sent), used
    or not; None when the host has no machine-id."""
    macs: tuple[str, ...] = ()
    """MAC addresses of the physical NICs, sorted."""


@dataclass(frozen=True)
class HardwareFacts:
    """The host's hardware inventory and identity (gathered on every run: it names the host)."""

    hostname: str
    """`/proc/sys/kernel/hostname`."""
    os_release: Mapping[str, str] | Unavailable
    """`/etc/os-release`, else `/usr/lib/os-release` (ID, VERSION_ID, PRETTY_NAME, ...)."""
    kernel: str
    """`/proc/sys/kernel/osrelease`."""
    boot_mode: Literal["uefi", "legacy"]
    """`uefi` when /sys/firmware/efi exists."""
    secure_boot: bool | Unavailable
    """The SecureBoot EFI variable: the byte after its 4 attribute bytes in
    /sys/firmware/efi/efivars/SecureBoot-8be4df61-…; False on UEFI when the variable store is
    readable but holds no SecureBoot variable; Unavailable on legacy boot or when unreadable."""
    cpu: CpuInfo | Unavailable
    """Processor model and counts."""
    memory_bytes: int | Unavailable
    """`MemTotal` from /proc/meminfo."""
    disks: tuple[Disk, ...] | Unavailable
    """Every whole disk in /sys/block."""
    nics: tuple[Nic, ...] | Unavailable
    """Every interface in /sys/class/net."""
    dmi: DmiInfo | Unavailable
    """System identity from SMBIOS; Unavailable where /sys/class/dmi is absent (ARM, containers)."""
    identity: HostIdentity
    """The stable host id. Gathering fails when no anchor exists at all."""
