"""Erasure facts: the wipe tools installed, and what each disk's firmware says it can erase.

A disk is always listed with its name, so a probe that failed on one disk stays attached to that
disk: each probe field is the parsed answer, `Unavailable(reason)` when the probe was tried and
failed (tool missing, permission, not an ATA device), or None when the probe does not apply to
that disk (no ATA identify for an NVMe or virtual disk).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from checks.model import Unavailable

Medium = Literal["hdd", "ssd", "nvme", "virtual", "unknown"]


@dataclass(frozen=True)
class WipeTool:
    """An erasure-related program found on PATH."""

    name: str
    """Command name: shred, nwipe, blkdiscard, hdparm, nvme, sg_sanitize or cryptsetup."""
    path: str
    """Where the runner's `which` found it."""
    version: str | None
    """Parsed from the tool's version command (`shred --version`, `hdparm -V`, `nvme version`,
    ...); None when that command failed or printed no version number."""


@dataclass(frozen=True)
class AtaSecurity:
    """The ATA Security and Sanitize feature sets of a disk, from `hdparm -I <disk>`."""

    security_supported: bool
    """"Security:" section, line "supported" (IDENTIFY word 128 bit 0)."""
    enabled: bool
    """"enabled": a user password is set."""
    locked: bool
    """"locked": the password is set and the disk was not unlocked since power-on."""
    frozen: bool
    """"frozen": SECURITY FREEZE LOCK was issued (most BIOSes do so at boot); security
    commands, including SECURITY ERASE UNIT, are refused until a power cycle."""
    count_expired: bool
    """"expired: security count": too many wrong passwords since power-on."""
    enhanced_erase: bool
    """"supported: enhanced erase" (ENHANCED SECURITY ERASE UNIT)."""
    erase_minutes: int | None
    """Drive's estimate "<n>min for SECURITY ERASE UNIT"; None when it gives none."""
    enhanced_erase_minutes: int | None
    """Drive's estimate "<n>min for ENHANCED SECURITY ERASE UNIT"; None when it gives none."""
    sanitize: bool
    """"SANITIZE feature set" in Commands/features (IDENTIFY word 59 bit 12)."""
    sanitize_crypto_scramble: bool
    """"CRYPTO_SCRAMBLE_EXT command" (word 59 bit 13)."""
    sanitize_block_erase: bool
    """"BLOCK_ERASE_EXT command" (word 59 bit 15)."""
    sanitize_overwrite: bool
    """"OVERWRITE_EXT command" (word 59 bit 14)."""


@dataclass(frozen=True)
class NvmeErase:
    """Erase capabilities of an NVMe controller, from `nvme id-ctrl -o json <namespace>`."""

    oacs: int
    """Optional Admin Command Support, as reported."""
    sanicap: int
    """Sanitize Capabilities, as reported."""
    fna: int
    """Format NVM Attributes, as reported."""
    format_nvm: bool
    """OACS bit 1: Format NVM is supported, so Format with SES=1 (user data erase) works."""
    sanitize_crypto: bool
    """SANICAP bit 0: Sanitize, crypto erase."""
    sanitize_block: bool
    """SANICAP bit 1: Sanitize, block erase."""
    sanitize_overwrite: bool
    """SANICAP bit 2: Sanitize, overwrite."""
    format_all_namespaces: bool
    """FNA bit 0: a format applies to every namespace of the controller."""
    secure_erase_all_namespaces: bool
    """FNA bit 1: a secure erase applies to every namespace of the controller."""
    format_crypto_erase: bool
    """FNA bit 2: Format with SES=2 (cryptographic erase) is supported."""


@dataclass(frozen=True)
class ScsiSanitize:
    """SANITIZE (opcode 0x48) service actions a SCSI disk reports, from `sg_opcodes --compact`."""

    overwrite: bool
    """Service action 1."""
    block_erase: bool
    """Service action 2."""
    crypto_erase: bool
    """Service action 3."""


@dataclass(frozen=True)
class DiskErase:
    """One disk of the hardware inventory and what its firmware can erase."""

    name: str
    """Kernel name (`sda`, `nvme0n1`), as in the hardware facts."""
    path: str
    """`/dev/<name>`."""
    medium: Medium
    """hdd, ssd, nvme, virtual or unknown, as in the hardware facts."""
    transport: str | None
    """sata, sas, usb, nvme, virtio, ... as in the hardware facts."""
    removable: bool
    """The kernel's `removable` flag (USB sticks, card readers): such disks are not probed."""
    ata: AtaSecurity | Unavailable | None = None
    """`hdparm -I`, asked of fixed hdd and ssd disks; Unavailable when hdparm is missing or the
    disk does not answer an ATA IDENTIFY (SAS disks, RAID logical drives)."""
    nvme: NvmeErase | Unavailable | None = None
    """`nvme id-ctrl`, asked of NVMe disks."""
    scsi: ScsiSanitize | Unavailable | None = None
    """`sg_opcodes --compact`, asked of fixed disks that are not SATA/USB and gave no ATA identify
    (SAS disks)."""


@dataclass(frozen=True)
class WipeFacts:
    """Erasure tooling and per-disk erase capabilities."""

    tools: tuple[WipeTool, ...]
    """The erasure-related programs installed (absent ones are not listed)."""
    disks: tuple[DiskErase, ...] | Unavailable
    """Every disk of the hardware inventory; Unavailable when the disk list itself was."""
