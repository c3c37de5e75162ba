"""Typed facts that checks read. Gatherers in `inventory/` produce them; checks never do I/O.

Every field's docstring says where the value comes from. A value that could not be gathered is
`Unavailable(reason)`, never a default that could be mistaken for an observation.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Literal

from checks.model import Unavailable

# ----------------------------------------------------------------------------- hardware


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


@dataclass(frozen=True)
class HostIdentity:
    """A stable id for the host that does not collapse machines with placeholder DMI serials."""

    id: str
    """`sha256:` digest of the source value below."""
    source: Literal["dmi-serial", "dmi-uuid", "machine-id", "mac"]
    """Which anchor the id was derived from, in order of preference."""


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


# ----------------------------------------------------------------------------- TPM


@dataclass(frozen=True)
class EkCertificate:
    """An endorsement-key certificate read from its TCG NV index."""

    nv_index: int
    """0x01C00002 (RSA 2048) or 0x01C0000A (ECC NIST P-256)."""
    key_type: Literal["rsa", "ecc"]
    subject: str | None
    """RFC 4514 subject (often empty for EK certs: the identity is in the SAN)."""
    issuer: str
    """RFC 4514 issuer: the TPM vendor's CA."""
    not_before: str
    not_after: str
    serial: str
    """Hex serial number."""
    sha256: str
    """SHA-256 of the DER certificate."""
    parse_error: str | None = None
    """Set when the NV index held data that is not a parsable X.509 certificate."""


@dataclass(frozen=True)
class TpmLockout:
    """Dictionary-attack protection: TPM2_PT_PERMANENT and the TPM2_PT_LOCKOUT_* properties."""

    in_lockout: bool
    """TPMA_PERMANENT.inLockout."""
    counter: int
    """TPM2_PT_LOCKOUT_COUNTER: authorization failures counted so far."""
    max_tries: int
    """TPM2_PT_MAX_AUTH_FAIL: failures before lockout."""
    recovery_seconds: int
    """TPM2_PT_LOCKOUT_INTERVAL: seconds for one failure to be forgiven."""
    lockout_recovery_seconds: int
    """TPM2_PT_LOCKOUT_RECOVERY: seconds before lockoutAuth may be tried again after a failure."""
    owner_auth_set: bool
    """TPMA_PERMANENT.ownerAuthSet."""
    endorsement_auth_set: bool
    lockout_auth_set: bool


@dataclass(frozen=True)
class TpmFacts:
    """What the TPM says about itself, through tpm2-pytss (ESAPI) or, failing that, sysfs."""

    present: bool
    """A TPM answered (tss) or the kernel lists one (sysfs)."""
    source: Literal["tss", "sysfs", "none"]
    """Where the facts came from: the TSS over the configured TCTI, or /sys/class/tpm."""
    looked_at: tuple[str, ...]
    """Every source consulted, with what it said, for the evidence of an absent TPM."""
    family: str | None = None
    """TPM2_PT_FAMILY_INDICATOR ("2.0"), or the sysfs `tpm_version_major` as "2.0"/"1.2"."""
    manufacturer: str | None = None
    """TPM2_PT_MANUFACTURER decoded to its TCG vendor id (IBM, INTC, NTC, NTZ, IFX, STM, ...)."""
    manufacturer_name: str | None = None
    """The vendor's name from the TCG vendor registry, when known."""
    vendor_strings: str | None = None
    """TPM2_PT_VENDOR_STRING_1..4 concatenated."""
    firmware_version: str | None = None
    """TPM2_PT_FIRMWARE_VERSION_1/2 as major.minor.build.patch."""
    spec_revision: str | None = None
    """TPM2_PT_REVISION as e.g. "1.59", with TPM2_PT_LEVEL and TPM2_PT_YEAR/DAY_OF_YEAR."""
    pcr_banks: tuple[str, ...] | Unavailable = field(
        default_factory=lambda: Unavailable("not read")
    )
    """Hash algorithms with at least one PCR allocated (TPM2_CAP_PCRS)."""
    algorithms: tuple[str, ...] | Unavailable = field(
        default_factory=lambda: Unavailable("not read")
    )
    """Algorithms the TPM implements (TPM2_CAP_ALGS), lower case (sha256, sm3_256, sm4, ...)."""
    ek_certificates: tuple[EkCertificate, ...] | Unavailable = field(
        default_factory=lambda: Unavailable("not read")
    )
    """EK certificates found at the TCG NV indices."""
    lockout: TpmLockout | Unavailable = field(default_factory=lambda: Unavailable("not read"))


# ----------------------------------------------------------------------------- the host


@dataclass
class HostFacts:
    """Everything gathered on one host. A field left None was not asked for."""

    hardware: HardwareFacts | Unavailable | None = None
    tpm: TpmFacts | Unavailable | None = None
