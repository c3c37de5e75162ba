"""Hardware gatherers against recorded /proc, /sys and /etc trees, and against this machine.

The recorded trees live in tests/fixtures/sysfs/<scenario>/root (symlinks laid out like the
kernel's, all relative), with the output of the commands the gatherers run in
tests/fixtures/sysfs/<scenario>/commands.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import socket
import subprocess
from collections.abc import Collection, Mapping, Sequence
from dataclasses import replace
from pathlib import Path, PurePath

import psutil
import pytest

from checks.facts import DmiInfo, HardwareFacts, Nic
from checks.model import Unavailable
from inventory.host.hardware import (
    NoHostIdentity,
    anchor_id,
    collect_cpu,
    collect_hardware,
    collect_secure_boot,
    derive_identity,
    disk_transport,
    parse_cpuinfo,
    parse_ip_addr_json,
    parse_ip_addr_oneline,
    parse_meminfo,
    parse_os_release,
    parse_secure_boot_var,
    parse_vpd_pg80,
)
from inventory.runner import (
    AccessDenied,
    CommandFailed,
    CommandResult,
    LocalRunner,
    ToolMissing,
)

FIXTURES = Path(__file__).resolve().parent.parent / "fixtures" / "sysfs"
SCENARIOS = ("server-uefi", "placeholder-a", "placeholder-b", "legacy-vm", "kunpeng-arm")
ROOT_ONLY_DMI = ("product_serial", "product_uuid", "board_serial")


class RecordedRunner(LocalRunner):
    """`LocalRunner` over a recorded scenario.

    `root` re-bases files but not commands, so commands answer from the recordings
    (`commands/<tool>_<arg>_<arg>...`): a tool with no recording is not installed, and a tool
    recorded only with other arguments rejects these, as iproute2 4.11 rejects `-json`.
    Paths in `denied` fail as a non-root agent's reads of root-only files do.
    """

    def __init__(self, scenario: str | Path, *, denied: Collection[str] = ()) -> None:
        self.scenario = Path(scenario) if isinstance(scenario, Path) else FIXTURES / scenario
        super().__init__(root=self.scenario / "root")
        self.denied = set(denied)
        self.commands_run: list[tuple[str, ...]] = []

    def _recordings(self, tool: str) -> list[Path]:
        return sorted((self.scenario / "commands").glob(f"{tool}_*"))

    def which(self, name: str) -> str | None:
        return f"/usr/sbin/{name}" if self._recordings(name) else None

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
        tool = PurePath(argv[0]).name
        recorded = self.scenario / "commands" / "_".join([tool, *argv[1:]])
        if recorded.is_file():
            return CommandResult(tuple(argv), 0, recorded.read_text(), "")
        if not self._recordings(tool):
            raise ToolMissing(f"{argv[0]} is not installed")
        raise CommandFailed(f"{argv[0]} exited 255: unknown option", 255, "unknown option\n")

    def read_bytes(self, path: str) -> bytes:
        if path in self.denied:
            raise AccessDenied(f"{path}: permission denied")
        return super().read_bytes(path)


def gather(scenario: str | Path, *, denied: Collection[str] = ()) -> HardwareFacts:
    return collect_hardware(RecordedRunner(scenario, denied=denied))


def copy_scenario(name: str, dest: Path) -> Path:
    shutil.copytree(FIXTURES / name, dest / name, symlinks=True)
    return dest / name


def nics_by_name(facts: HardwareFacts) -> dict[str, Nic]:
    assert isinstance(facts.nics, tuple)
    return {nic.name: nic for nic in facts.nics}


# ----------------------------------------------------------------------------- parsers


def test_cpuinfo_of_a_two_socket_server_counts_sockets_cores_and_threads() -> None:
    text = (FIXTURES / "server-uefi/root/proc/cpuinfo").read_text()

    cpu = parse_cpuinfo(text)

    assert cpu.model == "Intel(R) Xeon(R) Gold 6230R CPU @ 2.10GHz"
    assert (cpu.sockets, cpu.cores, cpu.threads) == (2, 4, 8)


def test_arm_cpuinfo_names_the_core_from_its_implementer_and_part() -> None:
    text = (FIXTURES / "kunpeng-arm/root/proc/cpuinfo").read_text()

    cpu = parse_cpuinfo(text)

    # /proc/cpuinfo on arm64 has no topology: one socket and a core per thread until sysfs says.
    assert cpu.model == "HiSilicon Kunpeng-920"
    assert (cpu.sockets, cpu.cores, cpu.threads) == (1, 4, 4)


def test_arm_topology_comes_from_sysfs() -> None:
    cpu = collect_cpu(RecordedRunner("kunpeng-arm"))

    assert not isinstance(cpu, Unavailable)
    assert (cpu.sockets, cpu.cores, cpu.threads) == (2, 4, 4)


def test_cpuinfo_without_processors_is_rejected() -> None:
    with pytest.raises(ValueError, match="no processor"):
        parse_cpuinfo("garbage\n")


def test_meminfo_total_is_in_bytes() -> None:
    assert parse_meminfo("MemTotal:       24684096 kB\nMemFree: 1 kB\n") == 24684096 * 1024
    with pytest.raises(ValueError, match="MemTotal"):
        parse_meminfo("MemFree:        1 kB\n")


def test_os_release_values_are_unquoted() -> None:
    text = (
        "# comment\n"
        'PRETTY_NAME="CentOS Linux 7 (Core)"\n'
        "ID=debian\n"
        "VERSION_ID='22.03'\n"
        'NAME="Say \\"hi\\""\n'
        "\n"
        "not a line\n"
    )

    assert parse_os_release(text) == {
        "PRETTY_NAME": "CentOS Linux 7 (Core)",
        "ID": "debian",
        "VERSION_ID": "22.03",
        "NAME": 'Say "hi"',
    }


# Captured from `ip -json addr show` on a Debian 12 VM (iproute2 6.1), shortened.
IP_JSON = json.dumps(
    [
        {
            "ifindex": 1,
            "ifname": "lo",
            "flags": ["LOOPBACK", "UP", "LOWER_UP"],
            "address": "00:00:00:00:00:00",
            "addr_info": [
                {"family": "inet", "local": "127.0.0.1", "prefixlen": 8, "scope": "host"},
                {"family": "inet6", "local": "::1", "prefixlen": 128, "scope": "host"},
            ],
        },
        {"ifindex": 2, "ifname": "ifb0", "flags": ["BROADCAST", "NOARP"], "addr_info": []},
        {
            "ifindex": 4,
            "ifname": "eth0",
            "address": "02:fc:00:00:00:01",
            "addr_info": [
                {
                    "family": "inet",
                    "local": "198.19.2.2",
                    "prefixlen": 24,
                    "broadcast": "198.19.2.255",
                    "scope": "global",
                },
                {"family": "inet6", "local": "fd00::2", "prefixlen": 64, "scope": "global"},
                {"family": "inet6", "local": "fe80::fc:ff:fe00:1", "prefixlen": 64},
            ],
        },
    ]
)


def test_ip_json_gives_addresses_with_prefix_per_interface() -> None:
    assert parse_ip_addr_json(IP_JSON) == {
        "lo": ("127.0.0.1/8", "::1/128"),
        "ifb0": (),
        "eth0": ("198.19.2.2/24", "fd00::2/64", "fe80::fc:ff:fe00:1/64"),
    }


def test_ip_json_that_is_not_json_is_rejected() -> None:
    with pytest.raises(ValueError):  # noqa: PT011 - json's decode error has no stable message
        parse_ip_addr_json('Option "-json" is unknown, try "ip -help".')


def test_ip_oneline_output_of_old_iproute2() -> None:
    # Captured from `ip -o addr show` (same format in iproute2 4.11 and 6.1), plus a
    # point-to-point tunnel line whose prefix belongs to the peer.
    text = (
        "1: lo    inet 127.0.0.1/8 scope host lo\\       valid_lft forever preferred_lft forever\n"
        "4: eth0    inet 198.19.2.2/24 brd 198.19.2.255 scope global eth0\\"
        "       valid_lft forever\n"
        "4: eth0    inet6 fe80::fc:ff:fe00:1/64 scope link \\       valid_lft forever\n"
        "7: tun0    inet 198.19.8.1 peer 198.19.8.2/32 scope global tun0\\"
        "       valid_lft forever\n"
    )

    assert parse_ip_addr_oneline(text) == {
        "lo": ("127.0.0.1/8",),
        "eth0": ("198.19.2.2/24", "fe80::fc:ff:fe00:1/64"),
        "tun0": ("198.19.8.1/32",),
    }


def test_vpd_page_80_serial_is_trimmed() -> None:
    assert parse_vpd_pg80(b"\x00\x80\x00\x14     WD-WCC2EH441120") == "WD-WCC2EH441120"
    assert parse_vpd_pg80(b"\x00\x80\x00\x08V6J8KZ3S\x00\x00") == "V6J8KZ3S"
    assert parse_vpd_pg80(b"\x00\x80\x00\x04    ") is None
    assert parse_vpd_pg80(b"\x00\x83\x00\x08V6J8KZ3S") is None  # another VPD page
    assert parse_vpd_pg80(b"") is None


def test_secure_boot_variable_value_follows_the_attribute_bytes() -> None:
    assert parse_secure_boot_var(bytes([6, 0, 0, 0, 1])) is True
    assert parse_secure_boot_var(bytes([6, 0, 0, 0, 0])) is False
    assert parse_secure_boot_var(bytes([1]), has_attributes=False) is True
    with pytest.raises(ValueError, match="unexpected"):
        parse_secure_boot_var(bytes([6, 0, 0, 0]))
    with pytest.raises(ValueError, match="unexpected"):
        parse_secure_boot_var(bytes([6, 0, 0, 0, 7]))


@pytest.mark.parametrize(
    ("path", "transport"),
    [
        ("/sys/devices/pci0000:00/0000:00:1d.0/0000:3d:00.0/nvme/nvme0/nvme0n1", "nvme"),
        ("/sys/devices/virtual/nvme-subsystem/nvme-subsys0/nvme0n1", "nvme"),
        ("/sys/devices/pci0000:00/0000:00:17.0/ata1/host0/target0:0:0/0:0:0:0/block/sda", "sata"),
        (
            "/sys/devices/pci0000:00/0000:00:14.0/usb2/2-1/2-1:1.0/host6/target6:0:0/6:0:0:0/"
            "block/sdb",
            "usb",
        ),
        ("/sys/devices/pci0000:00/0000:00:02.0/virtio1/block/vda", "virtio"),
        (
            "/sys/devices/pci0000:00/0000:00:05.0/virtio2/host2/target2:0:0/2:0:0:0/block/sda",
            "virtio",
        ),
        (
            "/sys/devices/pci0000:74/0000:74:02.0/host0/port-0:0/end_device-0:0/target0:0:0/"
            "0:0:0:0/block/sda",
            "sas",
        ),
        # A RAID controller's logical drive: the path names no transport, so none is claimed.
        (
            "/sys/devices/pci0000:00/0000:00:01.0/0000:02:00.0/host0/target0:2:0/0:2:0:0/block/sda",
            None,
        ),
    ],
)
def test_disk_transport_from_sysfs_path(path: str, transport: str | None) -> None:
    assert disk_transport(path) == transport


# ----------------------------------------------------------------------------- recorded hosts


def test_uefi_server_with_secure_boot() -> None:
    facts = gather("server-uefi")

    assert facts.hostname == "his-db01"
    assert facts.kernel == "4.19.90-52.22.v2207.ky10.x86_64"
    assert facts.os_release["PRETTY_NAME"] == "Kylin Linux Advanced Server V10 (Lance)"
    assert facts.boot_mode == "uefi"
    assert facts.secure_boot is True
    assert facts.memory_bytes == 395875380 * 1024
    assert isinstance(facts.dmi, DmiInfo)
    assert (facts.dmi.sys_vendor, facts.dmi.product_name) == ("Inspur", "NF5280M6")
    assert facts.dmi.product_serial == "219823476"
    assert facts.dmi.placeholders == ()
    assert facts.identity.source == "dmi-serial"
    assert facts.identity.id.startswith("sha256:")
    assert len(facts.identity.id) == len("sha256:") + 64


def test_uefi_server_disks() -> None:
    facts = gather("server-uefi")

    assert isinstance(facts.disks, tuple)
    # loop0, dm-0 and bcache0 are in /sys/block too, but they are not disks.
    summary = {
        d.name: (d.medium, d.transport, d.model, d.serial, d.size_bytes, d.removable)
        for d in facts.disks
    }
    assert summary == {
        "nvme0n1": (
            "nvme", "nvme", "INTEL SSDPE2KX020T8", "PHLJ9104012Q2P0BGN", 3750748848 * 512, False,
        ),
        "sda": ("hdd", "sata", "ST8000NM000A-2KE", "WKD3CE8Q", 15628053168 * 512, False),
        "sdb": ("ssd", "sata", "SAMSUNG MZ7LH480", "S45PNA0N401223", 937703088 * 512, False),
        "sdc": ("ssd", "usb", "Ultra Fit", "4C530001230718114294", 60063744 * 512, True),
    }  # fmt: skip
    assert [d.path for d in facts.disks] == ["/dev/nvme0n1", "/dev/sda", "/dev/sdb", "/dev/sdc"]


def test_uefi_server_nics() -> None:
    nics = nics_by_name(gather("server-uefi"))

    # bonding_masters sits in /sys/class/net but is a control file, not an interface.
    assert set(nics) == {"br0", "eno1", "eno2", "lo"}
    assert nics["eno1"] == Nic("eno1", "b4:05:5d:3e:8c:10", (), physical=True, speed_mbps=1000)
    # eno2's link is down: the kernel refuses to report a speed.
    assert nics["eno2"].physical
    assert nics["eno2"].speed_mbps is None
    assert not nics["br0"].physical
    assert nics["br0"].addresses == ("198.18.8.21/24", "fe80::b605:5dff:fe3e:8c10/64")
    assert nics["lo"].mac is None
    assert nics["lo"].addresses == ("127.0.0.1/8", "::1/128")


def test_ip_runs_once() -> None:
    runner = RecordedRunner("server-uefi")

    collect_hardware(runner)

    assert runner.commands_run == [("/usr/sbin/ip", "-json", "addr", "show")]


@pytest.mark.parametrize("scenario", ["placeholder-a", "placeholder-b"])
def test_placeholder_dmi_is_reported_and_not_used_as_identity(scenario: str) -> None:
    facts = gather(scenario)

    assert isinstance(facts.dmi, DmiInfo)
    assert facts.dmi.product_serial is None
    assert facts.dmi.product_uuid is None
    assert facts.dmi.sys_vendor is None
    assert set(facts.dmi.placeholders) == {
        "sys_vendor",
        "product_name",
        "product_serial",
        "product_uuid",
        "board_serial",
    }
    assert facts.dmi.bios_vendor is not None
    assert facts.identity.source == "machine-id"


def test_two_placeholder_machines_get_different_ids() -> None:
    a, b = gather("placeholder-a"), gather("placeholder-b")

    assert a.identity.id != b.identity.id


def test_identical_placeholder_boards_are_told_apart_by_machine_id(tmp_path: Path) -> None:
    # Two workstations from the same batch: the same "Default string" DMI, different installs.
    first = copy_scenario("placeholder-a", tmp_path / "1")
    second = copy_scenario("placeholder-a", tmp_path / "2")
    (second / "root/etc/machine-id").write_text("4a1b2c3d4e5f40718293a4b5c6d7e8f9\n")

    assert gather(first).identity.id == gather("placeholder-a").identity.id
    assert gather(first).identity.id != gather(second).identity.id


def test_without_machine_id_the_physical_macs_identify_the_host(tmp_path: Path) -> None:
    first = copy_scenario("placeholder-a", tmp_path / "1")
    (first / "root/etc/machine-id").unlink()
    second = copy_scenario("placeholder-a", tmp_path / "2")
    (second / "root/etc/machine-id").write_text("uninitialized\n")
    mac = "sys/devices/pci0000:00/0000:00:1c.5/0000:03:00.0/net/enp3s0/address"
    (second / "root" / mac).write_text("00:e0:4c:68:01:a8\n")

    one, two = gather(first).identity, gather(second).identity

    assert (one.source, two.source) == ("mac", "mac")
    assert one.id != two.id


def test_same_serial_from_different_vendors_gives_different_ids() -> None:
    def dmi(vendor: str) -> DmiInfo:
        return DmiInfo(vendor, "R740", "ABC1234", None, None, None, None, None)

    dell = derive_identity(dmi("Dell Inc."), None, ())
    other = derive_identity(dmi("Sugon"), None, ())

    assert dell.source == other.source == "dmi-serial"
    assert dell.id != other.id


def test_identity_prefers_uuid_when_serial_is_a_placeholder() -> None:
    uuid = "8d3f5a2e-1c4b-4f6e-9a7d-2b5c8e1f4a3d"
    dmi = DmiInfo("QEMU", "Standard PC", None, uuid, None, None, None, None)

    identity = derive_identity(dmi, "3e6a9d0c1b2f48d7a5c4e3f2d1b0a998", ())

    assert identity.source == "dmi-uuid"


def test_identity_carries_the_anchors_after_the_one_used_and_the_evidence() -> None:
    facts = gather("server-uefi")
    identity = facts.identity
    machine_id = (FIXTURES / "server-uefi/root/etc/machine-id").read_text().strip()
    macs = sorted(nic.mac for nic in nics_by_name(facts).values() if nic.physical and nic.mac)

    assert identity.source == "dmi-serial"
    assert [anchor.source for anchor in identity.fallbacks] == ["dmi-uuid", "machine-id", "mac"]
    assert identity.machine == anchor_id("machine-id", (machine_id,))
    assert identity.fallbacks[1].id == identity.machine
    assert identity.macs == tuple(macs)
    assert macs


def test_each_fallback_is_the_id_the_host_gets_once_the_anchors_before_it_are_placeholders() -> (
    None
):
    """A collector that finds a DMI value shared stores the report under the next fallback: the
    very id a later agent derives once it recognises that value as a filler."""
    facts = gather("server-uefi")
    assert isinstance(facts.dmi, DmiInfo)
    machine_id = (FIXTURES / "server-uefi/root/etc/machine-id").read_text().strip()
    without_serial = replace(facts.dmi, product_serial=None)
    without_dmi = replace(without_serial, product_uuid=None)

    uuid_first = derive_identity(without_serial, machine_id, facts.nics)
    machine_first = derive_identity(without_dmi, machine_id, facts.nics)
    mac_only = derive_identity(without_dmi, None, facts.nics)

    assert [a.id for a in facts.identity.fallbacks] == [
        uuid_first.id,
        machine_first.id,
        mac_only.id,
    ]
    assert uuid_first.fallbacks == facts.identity.fallbacks[1:]
    assert mac_only.machine is None
    assert mac_only.fallbacks == ()


def test_ids_derived_before_the_fallbacks_existed_are_unchanged() -> None:
    """The id of a host whose anchors did not change stays what earlier agents sent."""
    dmi = DmiInfo("Inspur", "NF5280M6", "219823476", None, None, None, None, None)
    canonical = "medsec.host-id/1\ndmi-serial\nInspur\nNF5280M6\n219823476"

    identity = derive_identity(dmi, None, ())

    assert identity.id == "sha256:" + hashlib.sha256(canonical.encode()).hexdigest()


def test_host_without_any_identity_anchor_is_refused(tmp_path: Path) -> None:
    root = copy_scenario("placeholder-b", tmp_path) / "root"
    (root / "etc/machine-id").unlink()
    shutil.rmtree(root / "sys/class/net")

    with pytest.raises(NoHostIdentity, match="no stable host id"):
        gather(tmp_path / "placeholder-b")


def test_old_iproute2_without_json_still_gives_addresses() -> None:
    runner = RecordedRunner("placeholder-b")

    nics = nics_by_name(collect_hardware(runner))

    assert nics["enp2s0"].addresses == ("198.18.5.12/23", "fe80::7285:c2ff:fe4d:193e/64")
    assert [argv[1] for argv in runner.commands_run] == ["-json", "-o"]


def test_legacy_vm() -> None:
    facts = gather("legacy-vm")

    assert facts.boot_mode == "legacy"
    assert isinstance(facts.secure_boot, Unavailable)
    assert "legacy" in facts.secure_boot.reason
    assert isinstance(facts.disks, tuple)
    disks = {d.name: d for d in facts.disks}
    assert (disks["vda"].medium, disks["vda"].transport) == ("virtual", "virtio")
    assert disks["vda"].serial is None  # QEMU gave the disk no serial
    assert (disks["sr0"].medium, disks["sr0"].removable) == ("unknown", True)
    nics = nics_by_name(facts)
    # The VM has no `ip`: interfaces are still listed, without addresses.
    assert isinstance(nics["eth0"].addresses, Unavailable)
    assert nics["eth0"].physical
    assert nics["eth0"].speed_mbps is None  # virtio reports -1 (unknown)


def test_root_only_dmi_fields_denied_to_a_non_root_agent() -> None:
    denied = {f"/sys/class/dmi/id/{name}" for name in ROOT_ONLY_DMI}

    facts = gather("legacy-vm", denied=denied)

    assert isinstance(facts.dmi, DmiInfo)
    assert facts.dmi.unreadable == ROOT_ONLY_DMI
    assert (facts.dmi.product_serial, facts.dmi.product_uuid, facts.dmi.board_serial) == (
        None,
        None,
        None,
    )
    assert facts.dmi.placeholders == ()  # unreadable is not the same as a placeholder
    assert facts.dmi.sys_vendor == "QEMU"
    assert facts.identity.source == "machine-id"


def test_uuid_identifies_the_vm_when_only_the_serial_is_denied() -> None:
    facts = gather("legacy-vm", denied={"/sys/class/dmi/id/product_serial"})

    assert isinstance(facts.dmi, DmiInfo)
    assert facts.dmi.unreadable == ("product_serial",)
    assert facts.identity.source == "dmi-uuid"
    assert facts.identity == gather("legacy-vm").identity


def test_kunpeng_server_with_nvme_multipath_and_sas() -> None:
    facts = gather("kunpeng-arm")

    assert isinstance(facts.disks, tuple)
    disks = {d.name: d for d in facts.disks}
    # The multipath head is the disk; its hidden per-controller path is not a second disk.
    assert set(disks) == {"nvme0n1", "sda"}
    assert (disks["nvme0n1"].medium, disks["nvme0n1"].transport) == ("nvme", "nvme")
    assert disks["nvme0n1"].serial == "032WFKFSKB002533"
    assert (disks["sda"].medium, disks["sda"].transport) == ("hdd", "sas")
    # UEFI firmware whose efivarfs has no SecureBoot variable does not enforce Secure Boot.
    assert facts.boot_mode == "uefi"
    assert facts.secure_boot is False
    assert facts.identity.source == "dmi-serial"


def test_uefi_without_efivarfs_mounted_is_unknown_not_off(tmp_path: Path) -> None:
    root = copy_scenario("kunpeng-arm", tmp_path) / "root"
    for var in (root / "sys/firmware/efi/efivars").iterdir():
        var.unlink()

    secure_boot = collect_secure_boot(RecordedRunner(tmp_path / "kunpeng-arm"))

    assert isinstance(secure_boot, Unavailable)
    assert "efivarfs is not mounted" in secure_boot.reason


def test_missing_sources_become_unavailable(tmp_path: Path) -> None:
    root = tmp_path / "bare" / "root"
    (root / "proc/sys/kernel").mkdir(parents=True)
    (root / "proc/sys/kernel/hostname").write_text("bare\n")
    (root / "proc/sys/kernel/osrelease").write_text("6.1.0-18-amd64\n")
    (root / "etc").mkdir()
    (root / "etc/machine-id").write_text("3d1219c7c4c5404aaa1f6d2a48adfda4\n")

    facts = gather(tmp_path / "bare")

    assert (facts.hostname, facts.kernel, facts.boot_mode) == ("bare", "6.1.0-18-amd64", "legacy")
    assert isinstance(facts.os_release, Unavailable)
    for field in ("secure_boot", "cpu", "memory_bytes", "disks", "nics", "dmi"):
        value = getattr(facts, field)
        assert isinstance(value, Unavailable), field
        assert value.reason, field
    assert isinstance(facts.cpu, Unavailable)
    assert "/proc/cpuinfo" in facts.cpu.reason
    assert facts.identity.source == "machine-id"


@pytest.mark.parametrize("scenario", SCENARIOS)
def test_recorded_trees_only_link_inside_themselves(scenario: str) -> None:
    root = FIXTURES / scenario / "root"
    for path in root.rglob("*"):
        if path.is_symlink():
            target = os.readlink(path)
            assert not os.path.isabs(target), path
            assert path.resolve().is_relative_to(root.resolve()), path


# ----------------------------------------------------------------------------- this machine


def test_this_machine() -> None:
    runner = LocalRunner()

    facts = collect_hardware(runner)

    assert facts.hostname == socket.gethostname()
    assert facts.kernel == os.uname().release
    assert isinstance(facts.memory_bytes, int)
    total = psutil.virtual_memory().total
    assert abs(facts.memory_bytes - total) <= total * 0.01
    assert not isinstance(facts.cpu, Unavailable)
    assert facts.cpu.threads == os.cpu_count()
    assert facts.boot_mode == ("uefi" if os.path.exists("/sys/firmware/efi") else "legacy")
    assert collect_hardware(runner).identity == facts.identity


def test_this_machine_nics_and_addresses_match_the_kernel() -> None:
    facts = collect_hardware(LocalRunner())

    nics = nics_by_name(facts)
    assert set(nics) == {
        n for n in os.listdir("/sys/class/net") if os.path.isdir(f"/sys/class/net/{n}")
    }
    kernel_ipv4 = {
        name: {a.address for a in addrs if a.family == socket.AF_INET}
        for name, addrs in psutil.net_if_addrs().items()
    }
    for name, nic in nics.items():
        ours = {a.split("/")[0] for a in nic.addresses if ":" not in a}
        assert ours == kernel_ipv4.get(name, set()), name


LSBLK = shutil.which("lsblk")


@pytest.mark.skipif(LSBLK is None, reason="needs lsblk (util-linux)")
def test_this_machine_disks_match_lsblk() -> None:
    assert LSBLK is not None
    facts = collect_hardware(LocalRunner())
    out = subprocess.run(
        [LSBLK, "--bytes", "--nodeps", "--json", "--output", "NAME,SIZE,RM,TYPE"],
        capture_output=True,
        text=True,
        check=True,
        timeout=10,
    ).stdout
    software = ("zram", "ram", "loop", "dm-", "md", "nbd", "zd", "drbd")
    lsblk = {
        d["name"]: d
        for d in json.loads(out)["blockdevices"]
        if d["type"] == "disk" and not d["name"].startswith(software)
    }

    assert isinstance(facts.disks, tuple)
    assert {d.name for d in facts.disks} == set(lsblk)
    for disk in facts.disks:
        assert disk.size_bytes == int(lsblk[disk.name]["size"]), disk.name
        assert disk.removable == (lsblk[disk.name]["rm"] in (True, "1")), disk.name
