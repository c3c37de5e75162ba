"""Irreversible erasure: every disk can be erased beyond recovery with a tool that is installed.

What counts depends on the medium (NIST SP 800-88): on a magnetic disk an overwrite (shred,
nwipe) reaches every sector; on flash (SATA SSD, NVMe) it does not — wear levelling and
over-provisioning keep old blocks the host cannot address — so only the drive's own erase
(ATA Security Erase, Sanitize, NVMe Format/Sanitize) or destroying the key of a wholly encrypted
disk (`cryptsetup luksErase`, then discarding the header) is irreversible. Whether a disk is LUKS
all the way is read from the block-device facts (`checks.facts.luks_layout`), disk by disk. Pure
functions of `WipeFacts` and `DiskFacts`.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

from checks.facts import HostFacts
from checks.facts.disk import DiskFacts
from checks.facts.luks_layout import LuksLayout, luks_layout
from checks.facts.wipe import AtaSecurity, DiskErase, NvmeErase, ScsiSanitize, WipeFacts
from checks.model import (
    Msg,
    Outcome,
    Severity,
    Unavailable,
    available,
    errored,
    failed,
    jsonable,
    not_applicable,
    passed,
    require,
)
from checks.registry import check

FROZEN_HINT = Msg(
    "ATA security is frozen (the BIOS sent SECURITY FREEZE LOCK at boot): suspend and resume "
    "the host (systemctl suspend) or hot-plug the drive's power to unfreeze it, then erase",
    "该盘 ATA 安全功能已冻结（BIOS 在启动时发送了 SECURITY FREEZE LOCK）：挂起并恢复主机"
    "（systemctl suspend）或对该盘热插拔电源以解除冻结，然后再擦除",
)


def _flash_overwrite(tools: list[str]) -> Msg:
    return Msg(
        f"overwriting flash with {' or '.join(tools)} is not irreversible: wear levelling and "
        "over-provisioning keep copies the host cannot address (NIST SP 800-88)",
        f"用 {' 或 '.join(tools)} 覆写闪存并非不可逆：磨损均衡与预留空间（over-provisioning）"
        "会保留主机无法寻址的数据副本（NIST SP 800-88）",
    )


@dataclass
class _Methods:
    """What a disk offers: usable irreversible methods, blocked ones, and unanswered probes."""

    usable: list[Msg] = field(default_factory=list)
    blocked: list[Msg] = field(default_factory=list)
    unknown: list[Msg] = field(default_factory=list)


def _supported_but(method: Msg, why: Msg) -> Msg:
    return Msg(f"{method.en} is supported but {why.en}", f"支持 {method.zh}，但{why.zh}")


def _not_installed(tool: str) -> Msg:
    return Msg(f"{tool} is not installed", f"未安装 {tool}")


def _by(method: Msg, tool: str) -> Msg:
    """A usable method and the installed program that performs it."""
    return Msg(f"{method.en} ({tool})", f"{method.zh}（{tool}）")


def _en(items: list[Msg]) -> list[str]:
    # Evidence stays English and machine-readable.
    return [m.en for m in items]


def _joined(items: list[Msg]) -> Msg:
    return Msg("; ".join(m.en for m in items), "；".join(m.zh for m in items))


def _wipe(facts: Any) -> WipeFacts:
    return require(facts.wipe, WipeFacts)


def _ata_security(ata: AtaSecurity, hdparm: bool, found: _Methods) -> None:
    if not ata.security_supported:
        return
    name = "ATA ENHANCED SECURITY ERASE UNIT" if ata.enhanced_erase else "ATA SECURITY ERASE UNIT"
    method = Msg(name, name)
    if not hdparm:
        found.blocked.append(_supported_but(method, _not_installed("hdparm")))
    elif ata.frozen:
        found.blocked.append(_supported_but(method, FROZEN_HINT))
    elif ata.locked:
        locked = Msg("the disk is locked (unlock it first)", "磁盘已锁定（请先解锁）")
        found.blocked.append(_supported_but(method, locked))
    elif ata.count_expired:
        expired = Msg("the password try count expired", "密码尝试次数已用尽")
        found.blocked.append(_supported_but(method, expired))
    else:
        found.usable.append(_by(method, "hdparm"))


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
        method = Msg(f"ATA SANITIZE {action}", f"ATA SANITIZE {action}")
        if supported and hdparm:
            found.usable.append(_by(method, "hdparm"))
        elif supported:
            found.blocked.append(_supported_but(method, _not_installed("hdparm")))


def _scsi_sanitize(scsi: ScsiSanitize, sg_sanitize: bool, flash: bool, found: _Methods) -> None:
    actions = [
        (Msg("cryptographic erase", "加密擦除"), scsi.crypto_erase),
        (Msg("block erase", "块擦除"), scsi.block_erase),
        (Msg("overwrite", "覆写"), scsi.overwrite and not flash),
    ]
    for action, supported in actions:
        method = Msg(f"SCSI SANITIZE {action.en}", f"SCSI SANITIZE {action.zh}")
        if supported and sg_sanitize:
            found.usable.append(_by(method, "sg_sanitize"))
        elif supported:
            found.blocked.append(_supported_but(method, _not_installed("sg_sanitize")))


def _nvme(caps: NvmeErase, nvme: bool, found: _Methods) -> None:
    actions = [
        (Msg("NVMe Sanitize crypto erase", "NVMe Sanitize 加密擦除"), caps.sanitize_crypto),
        (Msg("NVMe Sanitize block erase", "NVMe Sanitize 块擦除"), caps.sanitize_block),
        (
            Msg("NVMe Format SES=2 (cryptographic erase)", "NVMe Format SES=2（加密擦除）"),
            caps.format_nvm and caps.format_crypto_erase,
        ),
        (
            Msg("NVMe Format SES=1 (user data erase)", "NVMe Format SES=1（用户数据擦除）"),
            caps.format_nvm,
        ),
    ]
    for method, supported in actions:
        if supported and nvme:
            found.usable.append(_by(method, "nvme"))
        elif supported:
            found.blocked.append(_supported_but(method, _not_installed("nvme-cli")))


def _unanswered(label: Msg, value: Unavailable, tool_installed: bool, found: _Methods) -> None:
    # A probe whose tool is missing is no mystery: that route is closed, not unknown.
    if tool_installed:
        found.unknown.append(Msg(f"{label.en}: {value.reason}", f"{label.zh}：{value.reason}"))


def _methods(disk: DiskErase, tools: set[str], layout: LuksLayout) -> _Methods:
    found = _Methods()
    flash = disk.medium in ("ssd", "nvme")
    if disk.medium == "hdd":
        overwrite = Msg("overwrite", "覆写")
        found.usable += [_by(overwrite, t) for t in ("shred", "nwipe") if t in tools]
    if isinstance(disk.ata, Unavailable):
        # A disk that answered SCSI REPORT SUPPORTED OPERATION CODES is a SCSI disk: its
        # refusing an ATA IDENTIFY is an answer, not a gap.
        scsi_answered = isinstance(disk.scsi, ScsiSanitize)
        label = Msg("ATA identify", "ATA IDENTIFY 查询")
        _unanswered(label, disk.ata, "hdparm" in tools and not scsi_answered, found)
    elif disk.ata is not None:
        _ata_security(disk.ata, "hdparm" in tools, found)
        _ata_sanitize(disk.ata, "hdparm" in tools, flash, found)
    if isinstance(disk.scsi, Unavailable):
        label = Msg("SCSI opcodes", "SCSI 操作码查询")
        _unanswered(label, disk.scsi, "sg_sanitize" in tools, found)
    elif disk.scsi is not None:
        _scsi_sanitize(disk.scsi, "sg_sanitize" in tools, flash, found)
    if isinstance(disk.nvme, Unavailable):
        _unanswered(Msg("NVMe identify", "NVMe Identify 查询"), disk.nvme, "nvme" in tools, found)
    elif disk.nvme is not None:
        _nvme(disk.nvme, "nvme" in tools, found)
    _luks(layout, tools, flash, found)
    return found


def _luks(layout: LuksLayout, tools: set[str], flash: bool, found: _Methods) -> None:
    """Crypto erase of a disk that is LUKS all the way: the keys go, and the header with them."""
    if layout.covered is None:
        unknown = "; ".join(layout.unknown)
        found.unknown.append(Msg(f"LUKS layout: {unknown}", f"LUKS 布局：{unknown}"))
        return
    if not layout.covered:
        if layout.containers:  # partly encrypted: say what keeps crypto erase out of reach
            outside = ", ".join(layout.outside)
            found.blocked.append(
                Msg(
                    f"crypto erase does not reach data outside LUKS: {outside}",
                    f"加密擦除无法覆盖 LUKS 之外的数据：{outside}",
                )
            )
        return
    devices = " ".join(c.device for c in layout.containers)
    if flash:
        # On flash the overwritten keyslots may survive in remapped blocks until discarded.
        steps = "; ".join(
            f"blkdiscard -o 0 -l {c.header_bytes} {c.device}" for c in layout.containers
        )
        then = Msg(f", then discard each header: {steps}", f"，然后丢弃各卷头：{steps}")
    else:
        then = Msg(" overwrites the keyslots in place", " 原地覆写密钥槽")
    method = Msg(
        f"crypto erase: the data lies wholly in LUKS (cryptsetup luksErase {devices}{then.en})",
        f"加密擦除：数据全部位于 LUKS 中（cryptsetup luksErase {devices}{then.zh}）",
    )
    wholly = Msg(f"the data lies wholly in LUKS ({devices})", f"数据全部位于 LUKS 中（{devices}）")
    if "cryptsetup" not in tools:
        found.blocked.append(
            Msg(
                f"{wholly.en}, but cryptsetup is not installed for a crypto erase",
                f"{wholly.zh}，但未安装 cryptsetup，无法进行加密擦除",
            )
        )
    elif flash and "blkdiscard" not in tools:
        found.blocked.append(
            Msg(
                f"{wholly.en}, but blkdiscard (util-linux) is not installed to discard the "
                "headers after cryptsetup luksErase",
                f"{wholly.zh}，但未安装 blkdiscard（util-linux），无法在 cryptsetup luksErase "
                "之后丢弃卷头",
            )
        )
    else:
        found.usable.append(method)


def _missing_tool_hint(disk: DiskErase, tools: set[str]) -> Msg | None:
    if disk.medium == "nvme" and "nvme" not in tools:
        return Msg(
            "install nvme-cli to use the drive's Sanitize or Format",
            "请安装 nvme-cli 以使用该盘的 Sanitize 或 Format 功能",
        )
    if disk.medium == "ssd" and "hdparm" not in tools:
        return Msg(
            "install hdparm to use the drive's ATA Security Erase or Sanitize",
            "请安装 hdparm 以使用该盘的 ATA Security Erase 或 Sanitize 功能",
        )
    if disk.medium == "hdd" and not tools & {"shred", "nwipe"}:
        return Msg(
            "install shred (coreutils) or nwipe: an overwrite is irreversible on magnetic media",
            "请安装 shred（coreutils）或 nwipe：覆写对磁介质不可逆",
        )
    return None


def _not_assessable(disk: DiskErase) -> Outcome | None:
    """Disks this check does not judge, and disks it cannot judge; None for the rest."""
    target = disk.path
    if disk.medium == "virtual":
        return not_applicable(
            Msg(
                "virtual disk: erasure is the hypervisor's (document it)",
                "虚拟磁盘：擦除由虚拟化平台负责（请形成书面记录）",
            ),
            {"medium": disk.medium, "transport": disk.transport},
            target=target,
        )
    if disk.name.startswith(("sr", "fd")):
        return not_applicable(
            Msg(
                "optical or floppy drive: not host storage; destroy written media physically",
                "光驱或软驱：不属于主机存储；已写入的介质应物理销毁",
            ),
            {"medium": disk.medium},
            target=target,
        )
    if disk.removable:
        return not_applicable(
            Msg(
                "removable medium: erase or destroy it under the media-handling procedure",
                "可移动介质：按介质管理规程擦除或销毁",
            ),
            {"medium": disk.medium, "transport": disk.transport, "removable": True},
            target=target,
        )
    if disk.medium == "unknown":
        return errored(
            Msg(
                "medium unknown (sysfs says neither rotational nor solid-state): cannot tell "
                "which erasure is irreversible",
                "介质类型未知（sysfs 未表明是机械盘还是固态盘）：无法判断哪种擦除不可逆",
            ),
            {"medium": disk.medium, "transport": disk.transport},
            target=target,
        )
    return None


def _disk_outcome(
    disk: DiskErase, tools: set[str], versions: dict[str, str | None], layout: LuksLayout
) -> Outcome:
    skipped = _not_assessable(disk)
    if skipped is not None:
        return skipped
    target = disk.path
    found = _methods(disk, tools, layout)
    evidence: dict[str, Any] = {
        "medium": disk.medium,
        "transport": disk.transport,
        "tools": versions,
        "usable": _en(found.usable),
        "blocked": _en(found.blocked),
        "unknown": _en(found.unknown),
        "crypto_erasable": layout.covered,
        "luks": jsonable(layout),
        "ata": jsonable(disk.ata),
        "nvme": jsonable(disk.nvme),
        "scsi": jsonable(disk.scsi),
    }
    disk_id = f"{disk.medium} {disk.name}"
    if found.usable:
        usable = _joined(found.usable)
        return passed(
            Msg(
                f"{disk_id}: irreversible erasure by {usable.en}",
                f"{disk_id} 具备不可逆擦除手段：{usable.zh}",
            ),
            evidence,
            target=target,
        )
    if found.unknown:
        unknown = _joined(found.unknown)
        return errored(
            Msg(
                f"{disk_id}: could not read the drive's erase capabilities: {unknown.en}",
                f"{disk_id} 无法读取该盘的擦除能力：{unknown.zh}",
            ),
            evidence,
            target=target,
        )
    reasons = list(found.blocked)
    answered = [
        p
        for p in (disk.ata, disk.nvme, disk.scsi)
        if p is not None and not isinstance(p, Unavailable)
    ]
    if answered and not reasons:
        reasons.append(
            Msg(
                "the drive reports no Security Erase, Sanitize or Format capability",
                "该盘未报告 Security Erase、Sanitize 或 Format 能力",
            )
        )
    overwriters = sorted(tools & {"shred", "nwipe"})
    if disk.medium != "hdd" and overwriters:
        reasons.append(_flash_overwrite(overwriters))
    hint = _missing_tool_hint(disk, tools)
    if hint is not None:
        reasons.append(hint)
    if not reasons:
        reasons.append(Msg("no erase capability could be determined", "无法确定任何擦除能力"))
    why = _joined(reasons)
    return failed(
        Msg(
            f"{disk_id}: no irreversible erasure available: {why.en}",
            f"{disk_id} 无可用的不可逆擦除手段：{why.zh}",
        ),
        evidence,
        target=target,
    )


@check(
    "wipe.capability",
    title_en="Every disk can be irreversibly erased with an installed tool",
    title_zh="每块磁盘均具备可用的不可逆擦除手段（相应工具已安装）",
    severity=Severity.HIGH,
    needs=("wipe.disks", "disk"),
)
def wipe_capability(facts: HostFacts) -> Iterator[Outcome]:
    wipe = _wipe(facts)
    disks = available(wipe.disks)
    if not disks:
        yield not_applicable(Msg("no disks found", "未发现磁盘"))
        return
    layout_facts = require(facts.disk, DiskFacts)
    tools = {tool.name for tool in wipe.tools}
    versions = {tool.name: tool.version for tool in wipe.tools}
    for disk in disks:
        yield _disk_outcome(disk, tools, versions, luks_layout(disk.name, layout_facts))
