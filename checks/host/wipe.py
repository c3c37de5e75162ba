"""Irreversible erasure: every disk can be erased beyond recovery with a tool that is installed.

What counts depends on the medium (NIST SP 800-88): on a magnetic disk an overwrite (shred,
nwipe) reaches every sector; on flash (SATA SSD, NVMe) it does not — wear levelling and
over-provisioning keep old blocks the host cannot address — so only the drive's own erase
(ATA Security Erase, Sanitize, NVMe Format/Sanitize) or destroying the key of a wholly encrypted
disk (`cryptsetup luksErase`) is irreversible. Pure functions of `WipeFacts`.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

from checks.facts import HostFacts
from checks.facts.wipe import AtaSecurity, DiskErase, NvmeErase, ScsiSanitize, WipeFacts
from checks.model import (
    Outcome,
    Severity,
    Unavailable,
    errored,
    failed,
    jsonable,
    not_applicable,
    passed,
    require,
)
from checks.registry import check

FROZEN_HINT = (
    "ATA security is frozen (the BIOS sent SECURITY FREEZE LOCK at boot): suspend and resume "
    "the host (systemctl suspend) or hot-plug the drive's power to unfreeze it, then erase"
)
FLASH_OVERWRITE = (
    "overwriting flash with {tools} is not irreversible: wear levelling and over-provisioning "
    "keep copies the host cannot address (NIST SP 800-88)"
)


@dataclass
class _Methods:
    """What a disk offers: usable irreversible methods, blocked ones, and unanswered probes."""

    usable: list[str] = field(default_factory=list)
    blocked: list[str] = field(default_factory=list)
    unknown: list[str] = field(default_factory=list)


def _wipe(facts: Any) -> WipeFacts:
    return require(facts.wipe, WipeFacts)


def crypto_erasable_disks(facts: HostFacts, configured: list[str]) -> set[str]:
    """Disks wholly covered by LUKS, whose data `cryptsetup luksErase` makes unreadable.

    Today only the site's list (`crypto_erasable`, names or /dev paths). Wire here: add the
    disks the block-device facts (`facts.disk`, checks/facts/disk.py) show as one LUKS volume
    spanning the whole disk (directly or as its only partition), once that model lands.
    """
    return {name.removeprefix("/dev/") for name in configured}


def _ata_security(ata: AtaSecurity, hdparm: bool, found: _Methods) -> None:
    if not ata.security_supported:
        return
    name = "ATA ENHANCED SECURITY ERASE UNIT" if ata.enhanced_erase else "ATA SECURITY ERASE UNIT"
    if not hdparm:
        found.blocked.append(f"{name} is supported but hdparm is not installed")
    elif ata.frozen:
        found.blocked.append(f"{name} is supported but {FROZEN_HINT}")
    elif ata.locked:
        found.blocked.append(f"{name} is supported but the disk is locked (unlock it first)")
    elif ata.count_expired:
        found.blocked.append(f"{name} is supported but the password try count expired")
    else:
        found.usable.append(f"{name} (hdparm)")


def _ata_sanitize(ata: AtaSecurity, hdparm: bool, flash: bool, found: _Methods) -> None:
    if not ata.sanitize:
        return
    actions = [
        ("CRYPTO SCRAMBLE", ata.sanitize_crypto_scramble),
        ("BLOCK ERASE", ata.sanitize_block_erase),
        # An overwrite by the drive itself still misses over-provisioned flash blocks.
        ("OVERWRITE", ata.sanitize_overwrite and not flash),
    ]
    for action, supported in actions:
        if supported and hdparm:
            found.usable.append(f"ATA SANITIZE {action} (hdparm)")
        elif supported:
            found.blocked.append(f"ATA SANITIZE {action} is supported but hdparm is not installed")


def _scsi_sanitize(scsi: ScsiSanitize, sg_sanitize: bool, flash: bool, found: _Methods) -> None:
    actions = [
        ("cryptographic erase", scsi.crypto_erase),
        ("block erase", scsi.block_erase),
        ("overwrite", scsi.overwrite and not flash),
    ]
    for action, supported in actions:
        if supported and sg_sanitize:
            found.usable.append(f"SCSI SANITIZE {action} (sg_sanitize)")
        elif supported:
            found.blocked.append(
                f"SCSI SANITIZE {action} is supported but sg_sanitize is not installed"
            )


def _nvme(caps: NvmeErase, nvme: bool, found: _Methods) -> None:
    actions = [
        ("NVMe Sanitize crypto erase", caps.sanitize_crypto),
        ("NVMe Sanitize block erase", caps.sanitize_block),
        ("NVMe Format SES=2 (cryptographic erase)", caps.format_nvm and caps.format_crypto_erase),
        ("NVMe Format SES=1 (user data erase)", caps.format_nvm),
    ]
    for action, supported in actions:
        if supported and nvme:
            found.usable.append(f"{action} (nvme)")
        elif supported:
            found.blocked.append(f"{action} is supported but nvme-cli is not installed")


def _unanswered(label: str, value: Unavailable, tool_installed: bool, found: _Methods) -> None:
    # A probe whose tool is missing is no mystery: that route is closed, not unknown.
    if tool_installed:
        found.unknown.append(f"{label}: {value.reason}")


def _methods(disk: DiskErase, tools: set[str], luks: bool) -> _Methods:
    found = _Methods()
    flash = disk.medium in ("ssd", "nvme")
    if disk.medium == "hdd":
        found.usable += [f"overwrite ({t})" for t in ("shred", "nwipe") if t in tools]
    if isinstance(disk.ata, Unavailable):
        # A disk that answered SCSI REPORT SUPPORTED OPERATION CODES is a SCSI disk: its
        # refusing an ATA IDENTIFY is an answer, not a gap.
        scsi_answered = isinstance(disk.scsi, ScsiSanitize)
        _unanswered("ATA identify", disk.ata, "hdparm" in tools and not scsi_answered, found)
    elif disk.ata is not None:
        _ata_security(disk.ata, "hdparm" in tools, found)
        _ata_sanitize(disk.ata, "hdparm" in tools, flash, found)
    if isinstance(disk.scsi, Unavailable):
        _unanswered("SCSI opcodes", disk.scsi, "sg_sanitize" in tools, found)
    elif disk.scsi is not None:
        _scsi_sanitize(disk.scsi, "sg_sanitize" in tools, flash, found)
    if isinstance(disk.nvme, Unavailable):
        _unanswered("NVMe identify", disk.nvme, "nvme" in tools, found)
    elif disk.nvme is not None:
        _nvme(disk.nvme, "nvme" in tools, found)
    if luks and "cryptsetup" in tools:
        found.usable.append("crypto erase of the whole-disk LUKS volume (cryptsetup luksErase)")
    elif luks:
        found.blocked.append("the disk is wholly LUKS-encrypted but cryptsetup is not installed")
    return found


def _missing_tool_hint(disk: DiskErase, tools: set[str]) -> str | None:
    if disk.medium == "nvme" and "nvme" not in tools:
        return "install nvme-cli to use the drive's Sanitize or Format"
    if disk.medium == "ssd" and "hdparm" not in tools:
        return "install hdparm to use the drive's ATA Security Erase or Sanitize"
    if disk.medium == "hdd" and not tools & {"shred", "nwipe"}:
        return "install shred (coreutils) or nwipe: an overwrite is irreversible on magnetic media"
    return None


def _not_assessable(disk: DiskErase) -> Outcome | None:
    """Disks this check does not judge, and disks it cannot judge; None for the rest."""
    target = disk.path
    if disk.medium == "virtual":
        return not_applicable(
            "virtual disk: erasure is the hypervisor's (document it)",
            {"medium": disk.medium, "transport": disk.transport},
            target=target,
        )
    if disk.name.startswith(("sr", "fd")):
        return not_applicable(
            "optical or floppy drive: not host storage; destroy written media physically",
            {"medium": disk.medium},
            target=target,
        )
    if disk.removable:
        return not_applicable(
            "removable medium: erase or destroy it under the media-handling procedure",
            {"medium": disk.medium, "transport": disk.transport, "removable": True},
            target=target,
        )
    if disk.medium == "unknown":
        return errored(
            "medium unknown (sysfs says neither rotational nor solid-state): cannot tell which "
            "erasure is irreversible",
            {"medium": disk.medium, "transport": disk.transport},
            target=target,
        )
    return None


def _disk_outcome(
    disk: DiskErase, tools: set[str], versions: dict[str, str | None], luks: bool
) -> Outcome:
    skipped = _not_assessable(disk)
    if skipped is not None:
        return skipped
    target = disk.path
    found = _methods(disk, tools, luks)
    evidence: dict[str, Any] = {
        "medium": disk.medium,
        "transport": disk.transport,
        "tools": versions,
        "usable": found.usable,
        "blocked": found.blocked,
        "unknown": found.unknown,
        "crypto_erasable": luks,
        "ata": jsonable(disk.ata),
        "nvme": jsonable(disk.nvme),
        "scsi": jsonable(disk.scsi),
    }
    if found.usable:
        return passed(
            f"{disk.medium} {disk.name}: irreversible erasure by " + "; ".join(found.usable),
            evidence,
            target=target,
        )
    if found.unknown:
        return errored(
            f"{disk.medium} {disk.name}: could not read the drive's erase capabilities: "
            + "; ".join(found.unknown),
            evidence,
            target=target,
        )
    reasons = list(found.blocked)
    answered = [p for p in (disk.ata, disk.nvme, disk.scsi) if p and not isinstance(p, Unavailable)]
    if answered and not reasons:
        reasons.append("the drive reports no Security Erase, Sanitize or Format capability")
    overwriters = sorted(tools & {"shred", "nwipe"})
    if disk.medium != "hdd" and overwriters:
        reasons.append(FLASH_OVERWRITE.format(tools=" or ".join(overwriters)))
    hint = _missing_tool_hint(disk, tools)
    if hint:
        reasons.append(hint)
    if not reasons:
        reasons.append("no erase capability could be determined")
    return failed(
        f"{disk.medium} {disk.name}: no irreversible erasure available: " + "; ".join(reasons),
        evidence,
        target=target,
    )


@check(
    "wipe.capability",
    title_en="Every disk can be irreversibly erased with an installed tool",
    title_zh="每块磁盘均具备可用的不可逆擦除手段（相应工具已安装）",
    severity=Severity.HIGH,
    needs=("wipe",),
    params={"crypto_erasable": []},
)
def wipe_capability(facts: HostFacts, crypto_erasable: list[str]) -> Iterator[Outcome]:
    wipe = _wipe(facts)
    if isinstance(wipe.disks, Unavailable):
        yield errored(f"disks unavailable: {wipe.disks.reason}")
        return
    if not wipe.disks:
        yield not_applicable("no disks found")
        return
    tools = {tool.name for tool in wipe.tools}
    versions = {tool.name: tool.version for tool in wipe.tools}
    luks = crypto_erasable_disks(facts, crypto_erasable)
    for disk in wipe.disks:
        yield _disk_outcome(disk, tools, versions, disk.name in luks)
