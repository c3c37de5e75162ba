"""Wipe tooling and per-disk erase capabilities: which erasure programs are installed (with their
versions), and what each disk's firmware offers — ATA Security Erase and Sanitize from
`hdparm -I`, NVMe Sanitize and Format from `nvme id-ctrl`, SCSI SANITIZE from `sg_opcodes`.

The disks come from the hardware facts, gathered first. Every command goes through the runner
with a short timeout, and only what can answer is asked: a version command only for an installed
tool, an identify only for a fixed physical disk (virtual disks, removable media and drives of
unknown medium are listed but not probed), so a whole run costs a few milliseconds per disk. The
`parse_*` functions are pure and are tested on captured output under tests/fixtures/raw/wipe.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import replace
from typing import Any, TypeVar

from checks.facts.hardware import Disk
from checks.facts.wipe import AtaSecurity, DiskErase, NvmeErase, ScsiSanitize, WipeFacts, WipeTool
from checks.model import Unavailable
from inventory.host import jsontext
from inventory.runner import GatherError, Runner

T = TypeVar("T")

# Tool → the arguments that make it print its version and exit.
WIPE_TOOLS: Mapping[str, tuple[str, ...]] = {
    "shred": ("--version",),
    "nwipe": ("--version",),
    "blkdiscard": ("--version",),
    "hdparm": ("-V",),
    "nvme": ("version",),
    "sg_sanitize": ("--version",),
    "cryptsetup": ("--version",),
}
VERSION_TIMEOUT_S = 1.0
IDENTIFY_TIMEOUT_S = 3.0
"""An identify is answered from the drive's controller in milliseconds; the limit is for a
drive or HBA that hangs, so one bad disk cannot stall the run for long."""


# ----------------------------------------------------------------------------- tool versions

_VERSION = re.compile(r"(?<![\w.])v?(\d+(?:\.\d+)+[a-z]?)\b")


def parse_tool_version(name: str, text: str) -> str | None:
    """The version number a tool printed ("hdparm v9.65" → "9.65"); None when there is none.

    The first line naming the tool is preferred, so `nvme version` gives nvme-cli's version and
    not libnvme's on the next line.
    """
    lines = text.splitlines()
    naming = [line for line in lines if name.casefold() in line.casefold()]
    for line in [*naming, *lines]:
        match = _VERSION.search(line)
        if match:
            return match.group(1)
    return None


def collect_wipe_tools(runner: Runner) -> tuple[WipeTool, ...]:
    """Installed erasure tools with their versions. A tool that is absent is not listed."""
    tools = []
    for name, args in WIPE_TOOLS.items():
        path = runner.which(name)
        if path is None:
            continue
        try:
            # sg3_utils print their version on stderr.
            result = runner.run([path, *args], timeout=VERSION_TIMEOUT_S, check=False)
            version = parse_tool_version(name, result.stdout + "\n" + result.stderr)
        except GatherError:
            version = None
        tools.append(WipeTool(name=name, path=path, version=version))
    return tuple(tools)


# ----------------------------------------------------------------------------- hdparm -I

_SECURITY_FLAGS = {
    "supported": "security_supported",
    "enabled": "enabled",
    "locked": "locked",
    "frozen": "frozen",
    "expired: security count": "count_expired",
    "supported: enhanced erase": "enhanced_erase",
}
_SANITIZE_FEATURES = {
    "SANITIZE feature set": "sanitize",
    "CRYPTO_SCRAMBLE_EXT command": "sanitize_crypto_scramble",
    "BLOCK_ERASE_EXT command": "sanitize_block_erase",
    "OVERWRITE_EXT command": "sanitize_overwrite",
}
_ERASE_TIME = re.compile(r"(?:more than )?(\d+)\s*min for (ENHANCED )?SECURITY ERASE UNIT")


def _security_section(lines: list[str]) -> list[str]:
    """The indented lines after "Security:", up to the next unindented heading."""
    for index, line in enumerate(lines):
        if line.rstrip() == "Security:":  # some hdparm versions print "Security: "
            section = []
            for following in lines[index + 1 :]:
                if following and not following[0].isspace():
                    break
                section.append(following.strip())
            return section
    return []


def parse_hdparm_identify(text: str) -> AtaSecurity:
    """`hdparm -I <disk>`: the Security section and the Sanitize commands of Commands/features.

    Raises ValueError when the output holds no ATA IDENTIFY data (SAS disks, RAID logical
    drives and USB bridges without ATA pass-through answer with an SG_IO error instead).
    """
    lines = text.splitlines()
    if not any(line.startswith("ATA device") for line in lines):
        raise ValueError("no ATA IDENTIFY data in hdparm -I output: not an ATA device")
    values: dict[str, Any] = dict.fromkeys(
        [*_SECURITY_FLAGS.values(), *_SANITIZE_FEATURES.values()], False
    )
    values["erase_minutes"] = values["enhanced_erase_minutes"] = None
    for line in lines:
        # Commands/features rows: "\t   *\tSANITIZE feature set" (the star means enabled).
        feature = line.strip().lstrip("*").strip()
        if feature in _SANITIZE_FEATURES:
            values[_SANITIZE_FEATURES[feature]] = True
    for line in _security_section(lines):
        # "\tnot\tfrozen" / "\t\tsupported: enhanced erase": a leading "not" negates the flag.
        words = line.split()
        present = not (words and words[0] == "not")
        key = " ".join(words if present else words[1:])
        if key in _SECURITY_FLAGS:
            values[_SECURITY_FLAGS[key]] = present
        for match in _ERASE_TIME.finditer(line):
            field = "enhanced_erase_minutes" if match.group(2) else "erase_minutes"
            values[field] = int(match.group(1))
    return AtaSecurity(**values)


# ----------------------------------------------------------------------------- nvme id-ctrl

# OACS, SANICAP and FNA bits (NVM Express Base Specification, Identify Controller).
OACS_FORMAT_NVM = 1 << 1
SANICAP_CRYPTO_ERASE = 1 << 0
SANICAP_BLOCK_ERASE = 1 << 1
SANICAP_OVERWRITE = 1 << 2
FNA_FORMAT_ALL_NAMESPACES = 1 << 0
FNA_SECURE_ERASE_ALL_NAMESPACES = 1 << 1
FNA_CRYPTO_ERASE = 1 << 2


def parse_nvme_id_ctrl(json_text: str) -> NvmeErase:
    """`nvme id-ctrl -o json`: the OACS, SANICAP and FNA fields, decoded. Raises ValueError."""
    data = jsontext.loads(json_text)
    if not isinstance(data, dict):
        raise ValueError("nvme id-ctrl JSON is not an object")
    fields: dict[str, int] = {}
    for key in ("oacs", "sanicap", "fna"):
        value = data.get(key)
        if not isinstance(value, int) or isinstance(value, bool):
            raise ValueError(f"nvme id-ctrl JSON has no integer {key!r}")
        fields[key] = value
    oacs, sanicap, fna = fields["oacs"], fields["sanicap"], fields["fna"]
    return NvmeErase(
        oacs=oacs,
        sanicap=sanicap,
        fna=fna,
        format_nvm=bool(oacs & OACS_FORMAT_NVM),
        sanitize_crypto=bool(sanicap & SANICAP_CRYPTO_ERASE),
        sanitize_block=bool(sanicap & SANICAP_BLOCK_ERASE),
        sanitize_overwrite=bool(sanicap & SANICAP_OVERWRITE),
        format_all_namespaces=bool(fna & FNA_FORMAT_ALL_NAMESPACES),
        secure_erase_all_namespaces=bool(fna & FNA_SECURE_ERASE_ALL_NAMESPACES),
        format_crypto_erase=bool(fna & FNA_CRYPTO_ERASE),
    )


# ----------------------------------------------------------------------------- sg_opcodes

SCSI_SANITIZE = 0x48
_SANITIZE_ACTIONS = {1: "overwrite", 2: "block_erase", 3: "crypto_erase"}


def parse_sg_opcodes(text: str) -> ScsiSanitize:
    """`sg_opcodes --compact <disk>`: which SANITIZE service actions the device supports.

    Rows follow a dashed rule: "48,3      Sanitize, cryptographic erase" (hex opcode,service
    action). Raises ValueError when there is no table (the device rejected the command).
    """
    lines = text.splitlines()
    starts = [i for i, line in enumerate(lines) if line.startswith("----")]
    if not starts:
        raise ValueError("no supported-opcodes table in sg_opcodes output")
    found = dict.fromkeys(_SANITIZE_ACTIONS.values(), False)
    for line in lines[starts[0] + 1 :]:
        code, _, _ = line.strip().partition(" ")
        opcode, _, action = code.partition(",")
        try:
            if int(opcode, 16) == SCSI_SANITIZE and int(action or "0", 16) in _SANITIZE_ACTIONS:
                found[_SANITIZE_ACTIONS[int(action, 16)]] = True
        except ValueError:
            continue
    return ScsiSanitize(**found)


# ----------------------------------------------------------------------------- per disk


def _probe(
    runner: Runner,
    tool: str | None,
    args: Sequence[str],
    parse: Callable[[str], T],
    *,
    missing: str,
) -> T | Unavailable:
    """Run one identify command and parse it; any failure becomes Unavailable naming the cause."""
    if tool is None:
        return Unavailable(missing)
    command = " ".join([tool.rsplit("/", 1)[-1], *args])
    try:
        result = runner.run([tool, *args], timeout=IDENTIFY_TIMEOUT_S, check=False)
    except GatherError as exc:
        return Unavailable(f"{command}: {exc}")
    try:
        # hdparm exits 0 on some failures and non-zero on some successes: the output decides.
        return parse(result.stdout)
    except ValueError as exc:
        said = (result.stderr.strip().splitlines() or [""])[-1].strip()
        detail = f"; exit {result.returncode}: {said}" if result.returncode or said else ""
        return Unavailable(f"{command}: {exc}{detail}")


def collect_disk_erase(
    runner: Runner,
    disk: Disk,
    *,
    hdparm: str | None,
    nvme: str | None,
    sg_opcodes: str | None,
) -> DiskErase:
    """Probe one disk with the tools given (None: not installed)."""
    erase = DiskErase(
        name=disk.name,
        path=disk.path,
        medium=disk.medium,
        transport=disk.transport,
        removable=disk.removable,
    )
    if disk.removable or disk.medium in ("virtual", "unknown"):
        return erase
    if disk.medium == "nvme":
        # The namespace node, not /dev/nvmeX: with native multipath the controller numbers do
        # not follow the namespace's, and the kernel routes admin commands from the head.
        nvme_caps = _probe(
            runner,
            nvme,
            ["id-ctrl", "-o", "json", disk.path],
            parse_nvme_id_ctrl,
            missing="nvme-cli is not installed",
        )
        return replace(erase, nvme=nvme_caps)
    ata = _probe(
        runner, hdparm, ["-I", disk.path], parse_hdparm_identify, missing="hdparm is not installed"
    )
    scsi: ScsiSanitize | Unavailable | None = None
    if not isinstance(ata, AtaSecurity) and disk.transport not in ("sata", "usb"):
        scsi = _probe(
            runner,
            sg_opcodes,
            ["--compact", disk.path],
            parse_sg_opcodes,
            missing="sg_opcodes (sg3-utils) is not installed",
        )
    return replace(erase, ata=ata, scsi=scsi)


def collect_wipe(runner: Runner, disks: Sequence[Disk] | Unavailable) -> WipeFacts:
    """Wipe tools and the erase capabilities of `disks` (the hardware facts' disk list)."""
    tools = collect_wipe_tools(runner)
    if isinstance(disks, Unavailable):
        return WipeFacts(tools, Unavailable(f"disk inventory unavailable: {disks.reason}"))
    paths = {tool.name: tool.path for tool in tools}
    sg_opcodes = runner.which("sg_opcodes")
    return WipeFacts(
        tools,
        tuple(
            collect_disk_erase(
                runner,
                disk,
                hdparm=paths.get("hdparm"),
                nvme=paths.get("nvme"),
                sg_opcodes=sg_opcodes,
            )
            for disk in disks
        ),
    )
