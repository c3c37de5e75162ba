"""Wipe gatherer: pure parsers on captured and reconstructed tool output (tests/fixtures/raw/wipe,
see its README for which is which), `collect_wipe` replaying those recordings for the disks of
the recorded hardware trees, and `collect_wipe` on this machine.
"""

from __future__ import annotations

import shutil
import subprocess
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import pytest

from checks.facts import HostFacts
from checks.facts.disk import DiskFacts
from checks.facts.hardware import Disk
from checks.facts.wipe import AtaSecurity, DiskErase, NvmeErase, ScsiSanitize, WipeFacts
from checks.host import wipe as wipe_checks
from checks.model import Status, Unavailable
from checks.registry import Registry
from checks.runner import evaluate
from inventory.host.disk import collect_disk
from inventory.host.hardware import collect_disks, collect_hardware
from inventory.host.wipe import (
    WIPE_TOOLS,
    collect_wipe,
    parse_hdparm_identify,
    parse_nvme_id_ctrl,
    parse_sg_opcodes,
    parse_tool_version,
)
from inventory.runner import CommandResult, CommandTimeout, LocalRunner, ToolMissing
from tests.checks.cases_wipe_crypto import layout, luks_layout_of, plain_layout

RAW = Path(__file__).resolve().parent.parent / "fixtures" / "raw" / "wipe"
SYSFS = Path(__file__).resolve().parent.parent / "fixtures" / "sysfs"


def raw(name: str) -> str:
    return (RAW / name).read_text()


# ----------------------------------------------------------------------------- replay runner


@dataclass(frozen=True)
class Recording:
    stdout: str = ""
    stderr: str = ""
    returncode: int = 0


VERSION_RECORDINGS = {
    "shred": Recording(raw("versions/shred_--version.txt")),
    "nwipe": Recording(raw("versions/nwipe_--version.txt")),
    "blkdiscard": Recording(raw("versions/blkdiscard_--version.txt")),
    "hdparm": Recording(raw("versions/hdparm_-V.txt")),
    "nvme": Recording(raw("versions/nvme_version.txt")),
    "sg_sanitize": Recording(stderr=raw("versions/sg_sanitize_--version.stderr.txt")),
    "cryptsetup": Recording(raw("versions/cryptsetup_--version.txt")),
}

# What hdparm 9.65 says of a disk that rejects ATA PASS-THROUGH (a SAS disk): reconstructed.
HDPARM_NOT_ATA = Recording(
    stdout="\n/dev/sda:\n",
    stderr=(
        "SG_IO: bad/missing sense data, sb[]:  70 00 05 00 00 00 00 0a 00 00 00 00 20 00 00 00 "
        "00 00 00 00 00 00 00 00 00 00 00 00 00 00 00 00\n"
        " HDIO_DRIVE_CMD(identify) failed: Input/output error\n"
    ),
    returncode=5,
)


class ReplayRunner(LocalRunner):
    """`LocalRunner` over a recorded file tree whose commands answer from recordings.

    Installed tools live in /usr/sbin; a command of an installed tool without a recording fails
    as an unknown option would, so a test notices any command it did not expect.
    """

    def __init__(
        self,
        tools: Sequence[str],
        recordings: Mapping[tuple[str, ...], Recording | Exception],
        root: Path = Path("/nonexistent"),
    ) -> None:
        super().__init__(root=root)
        self.tools = {name: f"/usr/sbin/{name}" for name in tools}
        self.recordings = {
            **{
                (self.tools[name], *args): VERSION_RECORDINGS[name]
                for name, args in WIPE_TOOLS.items()
                if name in self.tools
            },
            **{(f"/usr/sbin/{argv[0]}", *argv[1:]): rec for argv, rec in recordings.items()},
        }
        self.commands_run: list[tuple[str, ...]] = []

    def which(self, name: str) -> str | None:
        return self.tools.get(name)

    def run(
        self,
        argv: Sequence[str],
        *,
        timeout: float = 10.0,
        check: bool = True,
        input_text: str | None = None,
        env: Mapping[str, str] | None = None,
    ) -> CommandResult:
        assert timeout <= 3.0, f"{argv}: timeout {timeout} s is not short"
        self.commands_run.append(tuple(argv))
        if argv[0] not in self.tools.values():
            raise ToolMissing(f"{argv[0]} is not installed")
        recording = self.recordings.get(tuple(argv))
        if isinstance(recording, Exception):
            raise recording
        if recording is None:
            return CommandResult(tuple(argv), 1, "", f"{argv[0]}: unexpected arguments\n")
        return CommandResult(tuple(argv), recording.returncode, recording.stdout, recording.stderr)


def recorded_disks(scenario: str) -> tuple[Disk, ...]:
    disks = collect_disks(LocalRunner(root=SYSFS / scenario / "root"))
    assert isinstance(disks, tuple)
    return disks


def plain_disks(facts: WipeFacts) -> DiskFacts:
    """Each disk with one ext4 partition: nothing for a crypto erase."""
    assert isinstance(facts.disks, tuple)
    return layout(*[d for disk in facts.disks for d in plain_layout(disk.name).block_devices or ()])


def outcomes(
    facts: WipeFacts, disk: DiskFacts | None = None
) -> dict[str | None, tuple[Status, str]]:
    registry = Registry.from_modules([wipe_checks])
    disk_facts = disk if disk is not None else plain_disks(facts)
    results = evaluate(registry, HostFacts(wipe=facts, disk=disk_facts))
    return {r.target: (r.status, r.message) for r in results}


# ----------------------------------------------------------------------------- parsers


def test_hdd_with_security_supported_not_enabled_not_frozen() -> None:
    ata = parse_hdparm_identify(raw("hdparm-I_sata-hdd-security-not-frozen.txt"))

    assert ata == AtaSecurity(
        security_supported=True,
        enabled=False,
        locked=False,
        frozen=False,
        count_expired=False,
        enhanced_erase=False,
        erase_minutes=708,
        enhanced_erase_minutes=None,
        sanitize=True,
        sanitize_crypto_scramble=False,
        sanitize_block_erase=False,
        sanitize_overwrite=True,
    )


def test_frozen_ssd_with_enhanced_erase() -> None:
    ata = parse_hdparm_identify(raw("hdparm-I_sata-ssd-frozen-enhanced-erase.txt"))

    assert (ata.security_supported, ata.frozen, ata.enabled, ata.locked) == (
        True,
        True,
        False,
        False,
    )
    assert ata.enhanced_erase
    assert (ata.erase_minutes, ata.enhanced_erase_minutes) == (2, 2)
    assert not ata.sanitize


def test_old_disk_without_the_security_feature_set() -> None:
    ata = parse_hdparm_identify(raw("hdparm-I_old-hdd-no-security.txt"))

    assert not ata.security_supported
    assert (ata.frozen, ata.enhanced_erase, ata.sanitize) == (False, False, False)
    assert (ata.erase_minutes, ata.enhanced_erase_minutes) == (None, None)


def test_hdparm_output_with_tabs_expanded_parses_the_same() -> None:
    # Output pasted from a terminal (as in bug reports) has spaces where hdparm printed tabs.
    for name in (
        "hdparm-I_sata-hdd-security-not-frozen.txt",
        "hdparm-I_sata-ssd-frozen-enhanced-erase.txt",
    ):
        text = raw(name)
        assert parse_hdparm_identify(text.expandtabs()) == parse_hdparm_identify(text)


def test_erase_time_beyond_508_minutes_and_the_more_than_form() -> None:
    text = raw("hdparm-I_sata-hdd-security-not-frozen.txt").replace(
        "\t708min for SECURITY ERASE UNIT. ",
        "\tmore than 508min for SECURITY ERASE UNIT. 1118min for ENHANCED SECURITY ERASE UNIT. ",
    )

    ata = parse_hdparm_identify(text)

    assert (ata.erase_minutes, ata.enhanced_erase_minutes) == (508, 1118)


@pytest.mark.parametrize(
    "text",
    [HDPARM_NOT_ATA.stdout, "", "/dev/sdb: Permission denied\n"],
)
def test_hdparm_without_identify_data_is_rejected(text: str) -> None:
    with pytest.raises(ValueError, match="not an ATA device"):
        parse_hdparm_identify(text)


def test_datacenter_nvme_with_sanitize_and_crypto_format() -> None:
    caps = parse_nvme_id_ctrl(raw("nvme-id-ctrl_intel-p4510-sanicap3-fna4.json"))

    assert (caps.oacs, caps.sanicap, caps.fna) == (0xE, 0x3, 0x4)
    assert caps == NvmeErase(
        oacs=0xE,
        sanicap=0x3,
        fna=0x4,
        format_nvm=True,
        sanitize_crypto=True,
        sanitize_block=True,
        sanitize_overwrite=False,
        format_all_namespaces=False,
        secure_erase_all_namespaces=False,
        format_crypto_erase=True,
    )


def test_nvme_without_sanitize_still_formats() -> None:
    caps = parse_nvme_id_ctrl(raw("nvme-id-ctrl_huawei-es3000-no-sanitize.json"))

    assert caps.sanicap == 0
    assert (caps.sanitize_crypto, caps.sanitize_block, caps.sanitize_overwrite) == (
        False,
        False,
        False,
    )
    assert caps.format_nvm
    assert not caps.format_crypto_erase


@pytest.mark.parametrize(
    ("text", "match"),
    [
        ("", "Expecting value"),
        ("[]", "not an object"),
        ('{"oacs": 6, "fna": 0}', "sanicap"),
        ('{"oacs": "0x6", "sanicap": 0, "fna": 0}', "oacs"),
    ],
)
def test_nvme_id_ctrl_that_is_not_identify_json_is_rejected(text: str, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        parse_nvme_id_ctrl(text)


def test_sas_disk_reports_scsi_sanitize_overwrite() -> None:
    scsi = parse_sg_opcodes(raw("sg_opcodes--compact_sas-hdd.txt"))

    assert scsi == ScsiSanitize(overwrite=True, block_erase=False, crypto_erase=False)


def test_sg_opcodes_crypto_and_block_erase_actions() -> None:
    text = "Opcode,sa  Name\n  (hex)\n----\n 48,2      Sanitize, block erase\n 48,3      x\n"

    assert parse_sg_opcodes(text) == ScsiSanitize(
        overwrite=False, block_erase=True, crypto_erase=True
    )


def test_sg_opcodes_without_a_table_is_rejected() -> None:
    with pytest.raises(ValueError, match="no supported-opcodes table"):
        parse_sg_opcodes("Report supported operation codes: Illegal request\n")


@pytest.mark.parametrize(
    ("name", "file", "version"),
    [
        ("shred", "shred_--version.txt", "9.1"),
        ("nwipe", "nwipe_--version.txt", "0.34"),
        ("blkdiscard", "blkdiscard_--version.txt", "2.38.1"),
        ("hdparm", "hdparm_-V.txt", "9.65"),
        ("nvme", "nvme_version.txt", "2.3"),
        ("sg_sanitize", "sg_sanitize_--version.stderr.txt", "1.15"),
        ("cryptsetup", "cryptsetup_--version.txt", "2.6.1"),
    ],
)
def test_tool_versions(name: str, file: str, version: str) -> None:
    assert parse_tool_version(name, raw(f"versions/{file}")) == version


def test_tool_version_absent() -> None:
    assert parse_tool_version("nwipe", "nwipe: unrecognized option '--version'\n") is None


# ----------------------------------------------------------------------------- replayed hosts


SERVER_RECORDINGS: dict[tuple[str, ...], Recording | Exception] = {
    ("hdparm", "-I", "/dev/sda"): Recording(raw("hdparm-I_sata-hdd-security-not-frozen.txt")),
    ("hdparm", "-I", "/dev/sdb"): Recording(raw("hdparm-I_sata-ssd-frozen-enhanced-erase.txt")),
    ("nvme", "id-ctrl", "-o", "json", "/dev/nvme0n1"): Recording(
        raw("nvme-id-ctrl_intel-p4510-sanicap3-fna4.json")
    ),
}
SERVER_TOOLS = ("shred", "blkdiscard", "hdparm", "nvme", "sg_sanitize", "sg_opcodes", "cryptsetup")


def test_server_disks_replayed() -> None:
    runner = ReplayRunner(SERVER_TOOLS, SERVER_RECORDINGS)

    facts = collect_wipe(runner, recorded_disks("server-uefi"))

    assert [(t.name, t.version) for t in facts.tools] == [
        ("shred", "9.1"),
        ("blkdiscard", "2.38.1"),
        ("hdparm", "9.65"),
        ("nvme", "2.3"),
        ("sg_sanitize", "1.15"),
        ("cryptsetup", "2.6.1"),
    ]
    assert isinstance(facts.disks, tuple)
    disks = {d.name: d for d in facts.disks}
    assert set(disks) == {"nvme0n1", "sda", "sdb", "sdc"}
    assert isinstance(disks["nvme0n1"].nvme, NvmeErase)
    assert disks["nvme0n1"].ata is None
    assert isinstance(disks["sda"].ata, AtaSecurity)
    assert disks["sda"].scsi is None  # a SATA disk is not asked for SCSI opcodes
    sdb = disks["sdb"].ata
    assert isinstance(sdb, AtaSecurity)
    assert sdb.frozen
    # The USB stick is listed but not probed.
    assert disks["sdc"] == DiskErase("sdc", "/dev/sdc", "ssd", "usb", removable=True)
    identify = [argv for argv in runner.commands_run if argv[1] in ("-I", "id-ctrl")]
    assert identify == [
        ("/usr/sbin/nvme", "id-ctrl", "-o", "json", "/dev/nvme0n1"),
        ("/usr/sbin/hdparm", "-I", "/dev/sda"),
        ("/usr/sbin/hdparm", "-I", "/dev/sdb"),
    ]
    assert len(runner.commands_run) == len(facts.tools) + 3


def test_server_disks_evaluated() -> None:
    facts = collect_wipe(
        ReplayRunner(SERVER_TOOLS, SERVER_RECORDINGS), recorded_disks("server-uefi")
    )

    results = outcomes(facts)

    assert {target: status for target, (status, _) in results.items()} == {
        "/dev/nvme0n1": Status.PASS,
        "/dev/sda": Status.PASS,
        "/dev/sdb": Status.FAIL,
        "/dev/sdc": Status.NOT_APPLICABLE,
    }
    assert "NVMe Sanitize crypto erase (nvme)" in results["/dev/nvme0n1"][1]
    assert "overwrite (shred)" in results["/dev/sda"][1]
    assert "ATA SECURITY ERASE UNIT (hdparm)" in results["/dev/sda"][1]
    frozen = results["/dev/sdb"][1]
    assert "frozen" in frozen
    assert "hot-plug" in frozen
    assert "overwriting flash with shred is not irreversible" in frozen


def test_frozen_ssd_wholly_luks_encrypted_passes() -> None:
    facts = collect_wipe(
        ReplayRunner(SERVER_TOOLS, SERVER_RECORDINGS), recorded_disks("server-uefi")
    )

    others = plain_disks(facts).block_devices
    sdb = luks_layout_of("sdb")
    assert isinstance(others, tuple)
    assert isinstance(sdb.block_devices, tuple)
    assert isinstance(sdb.volumes, tuple)
    disks = layout(
        *[d for d in others if not d.kname.startswith("sdb")],
        *sdb.block_devices,
        volumes=sdb.volumes,
    )

    results = outcomes(facts, disks)

    assert results["/dev/sdb"][0] is Status.PASS
    assert "cryptsetup luksErase /dev/sdb2" in results["/dev/sdb"][1]
    assert results["/dev/sda"][0] is Status.PASS


def test_kunpeng_sas_disk_falls_back_to_scsi_opcodes() -> None:
    recordings: dict[tuple[str, ...], Recording | Exception] = {
        ("hdparm", "-I", "/dev/sda"): HDPARM_NOT_ATA,
        ("sg_opcodes", "--compact", "/dev/sda"): Recording(raw("sg_opcodes--compact_sas-hdd.txt")),
        ("nvme", "id-ctrl", "-o", "json", "/dev/nvme0n1"): Recording(
            raw("nvme-id-ctrl_huawei-es3000-no-sanitize.json")
        ),
    }
    runner = ReplayRunner(("hdparm", "nvme", "sg_sanitize", "sg_opcodes"), recordings)

    facts = collect_wipe(runner, recorded_disks("kunpeng-arm"))

    assert isinstance(facts.disks, tuple)
    disks = {d.name: d for d in facts.disks}
    sda = disks["sda"]
    assert isinstance(sda.ata, Unavailable)
    assert "not an ATA device" in sda.ata.reason
    assert "Input/output error" in sda.ata.reason
    assert sda.scsi == ScsiSanitize(overwrite=True, block_erase=False, crypto_erase=False)
    results = outcomes(facts)
    # No shred here: the SAS disk's own SANITIZE overwrite is the irreversible method.
    assert results["/dev/sda"][0] is Status.PASS
    assert "SCSI SANITIZE overwrite (sg_sanitize)" in results["/dev/sda"][1]
    assert results["/dev/nvme0n1"][0] is Status.PASS
    assert "NVMe Format SES=1" in results["/dev/nvme0n1"][1]


def old_disk() -> Disk:
    return Disk("sdd", "/dev/sdd", "WDC WD800JD-75MSA3", None, 80 * 10**9, "hdd", "sata", False)


def test_old_hdd_needs_an_overwrite_tool() -> None:
    recordings: dict[tuple[str, ...], Recording | Exception] = {
        ("hdparm", "-I", "/dev/sdd"): Recording(raw("hdparm-I_old-hdd-no-security.txt")),
    }

    without = collect_wipe(ReplayRunner(("hdparm",), recordings), [old_disk()])
    with_nwipe = collect_wipe(ReplayRunner(("hdparm", "nwipe"), recordings), [old_disk()])

    status, message = outcomes(without)["/dev/sdd"]
    assert status is Status.FAIL
    assert "reports no Security Erase, Sanitize or Format" in message
    assert "install shred (coreutils) or nwipe" in message
    assert outcomes(with_nwipe)["/dev/sdd"] == (
        Status.PASS,
        "hdd sdd: irreversible erasure by overwrite (nwipe)",
    )


def test_without_hdparm_or_nvme_cli_nothing_is_probed() -> None:
    runner = ReplayRunner(("shred",), {})

    facts = collect_wipe(runner, recorded_disks("server-uefi"))

    assert runner.commands_run == [("/usr/sbin/shred", "--version")]
    assert isinstance(facts.disks, tuple)
    disks = {d.name: d for d in facts.disks}
    assert disks["sdb"].ata == Unavailable("hdparm is not installed")
    assert disks["nvme0n1"].nvme == Unavailable("nvme-cli is not installed")
    results = outcomes(facts)
    assert results["/dev/sda"][0] is Status.PASS
    assert results["/dev/sdb"][0] is Status.FAIL
    assert "install hdparm" in results["/dev/sdb"][1]
    assert results["/dev/nvme0n1"][0] is Status.FAIL
    assert "install nvme-cli" in results["/dev/nvme0n1"][1]


def test_non_root_agent_gets_an_error_not_a_verdict() -> None:
    denied = Recording(stderr="/dev/sdb: Permission denied\n", returncode=2)
    recordings: dict[tuple[str, ...], Recording | Exception] = {
        **SERVER_RECORDINGS,
        ("hdparm", "-I", "/dev/sdb"): denied,
        ("nvme", "id-ctrl", "-o", "json", "/dev/nvme0n1"): CommandTimeout(
            "nvme did not finish within 3 s"
        ),
    }

    facts = collect_wipe(ReplayRunner(SERVER_TOOLS, recordings), recorded_disks("server-uefi"))

    results = outcomes(facts)
    assert results["/dev/sdb"][0] is Status.ERROR
    assert "exit 2: /dev/sdb: Permission denied" in results["/dev/sdb"][1]
    assert results["/dev/nvme0n1"][0] is Status.ERROR
    assert "did not finish within 3 s" in results["/dev/nvme0n1"][1]


def test_unavailable_disk_list_is_carried_over() -> None:
    facts = collect_wipe(ReplayRunner(("shred",), {}), Unavailable("/sys/block does not exist"))

    assert facts.disks == Unavailable("disk inventory unavailable: /sys/block does not exist")
    assert [t.name for t in facts.tools] == ["shred"]


def test_tool_whose_version_command_hangs_is_listed_without_version() -> None:
    runner = ReplayRunner(("nwipe",), {("nwipe", "--version"): CommandTimeout("nwipe: 1 s")})

    facts = collect_wipe(runner, ())

    assert [(t.name, t.path, t.version) for t in facts.tools] == [
        ("nwipe", "/usr/sbin/nwipe", None)
    ]


# ----------------------------------------------------------------------------- this machine


class CountingRunner(LocalRunner):
    def __init__(self) -> None:
        super().__init__()
        self.commands_run: list[tuple[str, ...]] = []

    def run(
        self,
        argv: Sequence[str],
        *,
        timeout: float = 10.0,
        check: bool = True,
        input_text: str | None = None,
        env: Mapping[str, str] | None = None,
    ) -> CommandResult:
        self.commands_run.append(tuple(argv))
        return super().run(argv, timeout=timeout, check=check, input_text=input_text, env=env)


def test_this_machine() -> None:
    runner = CountingRunner()
    hardware = collect_hardware(runner)
    runner.commands_run.clear()

    started = time.monotonic()
    facts = collect_wipe(runner, hardware.disks)
    elapsed = time.monotonic() - started

    assert elapsed < 1.0
    installed = {name: shutil.which(name) for name in WIPE_TOOLS if shutil.which(name)}
    assert {t.name: t.path for t in facts.tools} == installed
    for wipe_tool in facts.tools:
        args = WIPE_TOOLS[wipe_tool.name]
        out = subprocess.run(
            [wipe_tool.path, *args], capture_output=True, text=True, timeout=5, check=False
        )
        assert wipe_tool.version == parse_tool_version(wipe_tool.name, out.stdout + out.stderr)
        assert wipe_tool.version is not None, wipe_tool.name
    assert isinstance(facts.disks, tuple)
    assert isinstance(hardware.disks, tuple)
    assert [d.name for d in facts.disks] == [d.name for d in hardware.disks]
    virtual = [d for d in facts.disks if d.medium == "virtual"]
    for disk in virtual:
        assert (disk.ata, disk.nvme, disk.scsi) == (None, None, None)
        assert not any(disk.path in argv for argv in runner.commands_run)
    results = outcomes(facts, collect_disk(runner))
    for disk in virtual:
        assert results[disk.path] == (
            Status.NOT_APPLICABLE,
            "virtual disk: erasure is the hypervisor's (document it)",
        )


@pytest.mark.skipif(
    not any(p.name.startswith("vd") for p in Path("/sys/block").iterdir()),
    reason="this machine has no virtio disk",
)
def test_this_machines_virtio_disk_is_not_applicable() -> None:
    disks = collect_hardware(LocalRunner()).disks
    assert isinstance(disks, tuple)

    facts = collect_wipe(LocalRunner(), disks)

    results = outcomes(facts, collect_disk(LocalRunner()))
    statuses = {target: status for target, (status, _) in results.items()}
    assert Status.NOT_APPLICABLE in statuses.values()
    assert all(statuses[d.path] is Status.NOT_APPLICABLE for d in disks if d.medium == "virtual")
