"""Hardware inventory: host names, firmware, CPU, memory, disks, NICs, DMI and a stable host id.

Everything is read through a `Runner` from /proc, /sys and /etc (no dmidecode, one `ip` call), so
the same code reads this host, a host over SSH, or a recorded tree in tests. Each `parse_*`
function is pure; each `collect_*` function does the reads and turns a missing or denied source
into `Unavailable(reason)` for its own field. The host id never trusts a vendor placeholder
(`inventory.host.placeholders` recognises them by shape: filler words, sequences, template
UUIDs): two boards that both say "Default string" fall through to the system UUID, then to
/etc/machine-id, then to the MACs of the physical NICs. The anchors after the one used travel
with the id, so a collector that sees one DMI anchor on two machines can keep them apart.
"""

from __future__ import annotations

import hashlib
import re
import shlex
from collections.abc import Collection, Iterable, Mapping
from dataclasses import replace
from typing import Literal

from checks.facts import CpuInfo, Disk, DmiInfo, HardwareFacts, HostIdentity, Nic
from checks.facts.hardware import HostAnchor, IdSource
from checks.model import Unavailable
from inventory.host import jsontext
from inventory.host.placeholders import is_placeholder
from inventory.runner import (
    AccessDenied,
    CommandFailed,
    CommandTimeout,
    GatherError,
    Runner,
    SourceMissing,
    ToolMissing,
)

Medium = Literal["hdd", "ssd", "nvme", "virtual", "unknown"]


class NoHostIdentity(GatherError):
    """None of the id anchors (DMI serial or UUID, machine-id, physical MACs) is usable."""


# ----------------------------------------------------------------------------- DMI

DMI_DIR = "/sys/class/dmi/id"
DMI_FIELDS = (
    "sys_vendor",
    "product_name",
    "product_serial",
    "product_uuid",
    "board_serial",
    "bios_vendor",
    "bios_version",
    "bios_date",
)
DMI_IDENTIFIERS = frozenset(("product_serial", "product_uuid", "board_serial"))
"""Fields that must tell machines apart, so sequences and short values are placeholders there."""


def parse_dmi(values: Mapping[str, str | None], denied: Collection[str] = ()) -> DmiInfo:
    """Build `DmiInfo` from raw attribute texts (None: absent); placeholders become None."""
    clean: dict[str, str | None] = {}
    placeholders: list[str] = []
    for name in DMI_FIELDS:
        raw = values.get(name)
        if raw is None or name in denied:
            clean[name] = None
        elif is_placeholder(raw, "identifier" if name in DMI_IDENTIFIERS else "text"):
            clean[name] = None
            placeholders.append(name)
        else:
            clean[name] = raw.strip()
    return DmiInfo(
        sys_vendor=clean["sys_vendor"],
        product_name=clean["product_name"],
        product_serial=clean["product_serial"],
        product_uuid=clean["product_uuid"].lower() if clean["product_uuid"] else None,
        board_serial=clean["board_serial"],
        bios_vendor=clean["bios_vendor"],
        bios_version=clean["bios_version"],
        bios_date=clean["bios_date"],
        placeholders=tuple(placeholders),
        unreadable=tuple(name for name in DMI_FIELDS if name in denied),
    )


def collect_dmi(runner: Runner) -> DmiInfo | Unavailable:
    if not runner.exists(DMI_DIR):
        return Unavailable(f"{DMI_DIR} does not exist: the kernel exposes no SMBIOS tables")
    values: dict[str, str | None] = {}
    denied: list[str] = []
    for name in DMI_FIELDS:
        try:
            values[name] = runner.read_text(f"{DMI_DIR}/{name}")
        except AccessDenied:
            # product_serial, product_uuid and board_serial are root-only on most kernels.
            denied.append(name)
        except SourceMissing:
            values[name] = None
    return parse_dmi(values, denied)


# ----------------------------------------------------------------------------- OS and firmware


def parse_os_release(text: str) -> dict[str, str]:
    """Parse os-release(5): KEY=value lines, values optionally shell-quoted."""
    result: dict[str, str] = {}
    for line in text.splitlines():
        key, sep, raw = line.strip().partition("=")
        if not sep or not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", key):
            continue
        try:
            value = " ".join(shlex.split(raw))
        except ValueError:  # unbalanced quote: keep what is there rather than drop the key
            value = raw.strip().strip("\"'")
        result[key] = value
    return result


def collect_os_release(runner: Runner) -> dict[str, str] | Unavailable:
    """/etc/os-release, else /usr/lib/os-release."""
    reasons = []
    for path in ("/etc/os-release", "/usr/lib/os-release"):
        try:
            return parse_os_release(runner.read_text(path))
        except GatherError as exc:
            reasons.append(str(exc))
    return Unavailable("; ".join(reasons))


def collect_hostname(runner: Runner) -> str:
    """The kernel's hostname; /etc/hostname when /proc is not mounted. Raises GatherError."""
    try:
        return runner.read_text("/proc/sys/kernel/hostname").strip()
    except GatherError:
        return runner.read_text("/etc/hostname").strip()


def collect_kernel(runner: Runner) -> str:
    """The running kernel release. Raises GatherError when /proc is not mounted."""
    return runner.read_text("/proc/sys/kernel/osrelease").strip()


def collect_boot_mode(runner: Runner) -> Literal["uefi", "legacy"]:
    return "uefi" if runner.exists("/sys/firmware/efi") else "legacy"


EFI_GLOBAL_GUID = "8be4df61-93ca-11d2-aa0d-00e098032b8c"
EFIVARS_DIR = "/sys/firmware/efi/efivars"
SECURE_BOOT_VAR = f"{EFIVARS_DIR}/SecureBoot-{EFI_GLOBAL_GUID}"
# The pre-efivarfs interface (kernels before 3.8, still on some old installs): data without
# the 4 attribute bytes.
SECURE_BOOT_LEGACY_VAR = f"/sys/firmware/efi/vars/SecureBoot-{EFI_GLOBAL_GUID}/data"


def parse_secure_boot_var(data: bytes, *, has_attributes: bool = True) -> bool:
    """The SecureBoot variable: (4 attribute bytes, efivarfs only) then one byte, 1 = enabled."""
    payload = data[4:] if has_attributes else data
    if len(payload) != 1 or payload[0] not in (0, 1):
        raise ValueError(f"unexpected SecureBoot variable contents {data.hex()}")
    return payload[0] == 1


def _read_secure_boot_var(runner: Runner) -> bool | None:
    """The variable's value, or None when neither EFI variable interface has it."""
    try:
        return parse_secure_boot_var(runner.read_bytes(SECURE_BOOT_VAR))
    except SourceMissing:
        pass
    try:
        data = runner.read_bytes(SECURE_BOOT_LEGACY_VAR)
    except SourceMissing:
        return None
    return parse_secure_boot_var(data, has_attributes=False)


def collect_secure_boot(runner: Runner) -> bool | Unavailable:
    if not runner.exists("/sys/firmware/efi"):
        return Unavailable("legacy BIOS boot: there is no Secure Boot")
    try:
        enabled = _read_secure_boot_var(runner)
        if enabled is not None:
            return enabled
        variables = runner.list_dir(EFIVARS_DIR)
    except (GatherError, ValueError) as exc:
        return Unavailable(f"Secure Boot state unreadable: {exc}")
    if not variables:
        return Unavailable(f"efivarfs is not mounted on {EFIVARS_DIR}")
    # Firmware that implements Secure Boot always defines the variable (UEFI spec 3.3), so its
    # absence from a populated efivarfs means the firmware does not enforce it.
    return False


# ----------------------------------------------------------------------------- CPU and memory

# ARM cores do not name themselves in /proc/cpuinfo; lscpu decodes MIDR implementer/part codes.
# Only the implementers and parts seen in Chinese server rooms are named; others stay as codes.
_ARM_IMPLEMENTERS = {"0x41": "ARM", "0x48": "HiSilicon", "0x70": "Phytium", "0xc0": "Ampere"}
_ARM_PARTS = {
    ("0x48", "0xd01"): "Kunpeng-920",
    ("0x70", "0x660"): "FTC660",
    ("0x70", "0x661"): "FTC661",
    ("0x70", "0x662"): "FTC662",
    ("0x70", "0x663"): "FTC663",
}


def _cpuinfo_blocks(text: str) -> list[dict[str, str]]:
    blocks: list[dict[str, str]] = []
    current: dict[str, str] = {}
    for line in [*text.splitlines(), ""]:
        key, sep, value = line.partition(":")
        if not line.strip():
            if current:
                blocks.append(current)
            current = {}
        elif sep:
            current.setdefault(key.strip().casefold(), value.strip())
    return blocks


def _cpu_model(blocks: list[dict[str, str]]) -> str | None:
    for block in blocks:
        for key in ("model name", "cpu model", "cpu"):
            if block.get(key):
                return block[key]
    for block in blocks:
        impl = block.get("cpu implementer", "").lower()
        part = block.get("cpu part", "").lower()
        if impl:
            vendor = _ARM_IMPLEMENTERS.get(impl, f"implementer {impl}")
            return f"{vendor} {_ARM_PARTS.get((impl, part), f'part {part}')}".strip()
    return None


def parse_cpuinfo(text: str) -> CpuInfo:
    """/proc/cpuinfo. Without `physical id`/`core id` (ARM), one socket and a core per thread."""
    blocks = _cpuinfo_blocks(text)
    processors = [b for b in blocks if b.get("processor", "").isdigit()]
    if not processors:
        raise ValueError("no processor entries in /proc/cpuinfo")
    packages = {b["physical id"] for b in processors if "physical id" in b}
    cores = {(b.get("physical id"), b["core id"]) for b in processors if "core id" in b}
    return CpuInfo(
        model=_cpu_model(blocks),
        sockets=len(packages) or 1,
        cores=len(cores) or len(processors),
        threads=len(processors),
    )


def parse_cpu_topology(cpus: Iterable[tuple[str, str]]) -> tuple[int, int]:
    """(sockets, cores) from (physical_package_id, thread_siblings_list) of each online CPU."""
    pairs = {(package.strip(), siblings.strip()) for package, siblings in cpus}
    return len({package for package, _ in pairs}), len(pairs)


def _read_cpu_topology(runner: Runner) -> list[tuple[str, str]]:
    base = "/sys/devices/system/cpu"
    cpus: list[tuple[str, str]] = []
    for name in runner.list_dir(base):
        if not re.fullmatch(r"cpu\d+", name):
            continue
        try:
            package = runner.read_text(f"{base}/{name}/topology/physical_package_id")
            siblings = runner.read_text(f"{base}/{name}/topology/thread_siblings_list")
        except SourceMissing:  # an offline CPU has no topology folder
            continue
        cpus.append((package, siblings))
    return cpus


def collect_cpu(runner: Runner) -> CpuInfo | Unavailable:
    try:
        text = runner.read_text("/proc/cpuinfo")
        info = parse_cpuinfo(text)
    except (GatherError, ValueError) as exc:
        return Unavailable(str(exc))
    if "physical id" in text:
        return info
    # ARM and some other architectures leave topology to sysfs only.
    try:
        cpus = _read_cpu_topology(runner)
    except GatherError:
        return info
    if not cpus:
        return info
    sockets, cores = parse_cpu_topology(cpus)
    return replace(info, sockets=sockets, cores=cores)


def parse_meminfo(text: str) -> int:
    """`MemTotal` from /proc/meminfo, in bytes."""
    match = re.search(r"^MemTotal:\s+(\d+)\s*kB", text, re.MULTILINE)
    if match is None:
        raise ValueError("no MemTotal line in /proc/meminfo")
    return int(match.group(1)) * 1024


def collect_memory(runner: Runner) -> int | Unavailable:
    try:
        return parse_meminfo(runner.read_text("/proc/meminfo"))
    except (GatherError, ValueError) as exc:
        return Unavailable(str(exc))


# ----------------------------------------------------------------------------- disks

# Block devices that are software constructs on top of disks, never disks themselves.
_NOT_DISKS = ("loop", "ram", "zram", "dm-", "md", "nbd", "zd", "drbd")

# The first pattern found in the device's sysfs path names the transport; order matters
# (a SATA disk in a USB enclosure is "usb", a virtio-scsi disk is "virtio").
_TRANSPORTS = (
    (re.compile(r"/nvme(-subsystem)?/"), "nvme"),
    (re.compile(r"/usb\d+/"), "usb"),
    (re.compile(r"/virtio\d+/"), "virtio"),
    (re.compile(r"/vbd-\d+/"), "xen"),
    (re.compile(r"/mmc_host/"), "mmc"),
    (re.compile(r"/session\d+/"), "iscsi"),
    (re.compile(r"/rport-"), "fc"),
    (re.compile(r"/(end_device|expander)-"), "sas"),
    (re.compile(r"/ata\d+/"), "sata"),
)


def disk_transport(sysfs_path: str) -> str | None:
    """Transport from the resolved /sys/block/<name> path; None when it names none (RAID LUNs)."""
    for pattern, transport in _TRANSPORTS:
        if pattern.search(sysfs_path):
            return transport
    return None


_ROTATIONAL: Mapping[str, Medium] = {"1": "hdd", "0": "ssd"}


def disk_medium(name: str, rotational: str | None, transport: str | None) -> Medium:
    if name.startswith("nvme"):
        return "nvme"
    # Hypervisors report their disks as rotational whatever backs them.
    if transport in ("virtio", "xen") or name.startswith(("vd", "xvd")):
        return "virtual"
    if name.startswith(("sr", "fd")):  # optical and floppy drives: neither hdd nor ssd
        return "unknown"
    return _ROTATIONAL.get((rotational or "").strip(), "unknown")


def parse_vpd_pg80(data: bytes) -> str | None:
    """SCSI VPD page 0x80 (unit serial number): 4-byte header, then the serial, space padded."""
    if len(data) < 4 or data[1] != 0x80:
        return None
    length = int.from_bytes(data[2:4], "big")
    serial = data[4 : 4 + length].decode("ascii", errors="replace").strip(" \x00")
    return serial or None


def _read_optional(runner: Runner, path: str) -> str | None:
    try:
        return runner.read_text(path).strip() or None
    except GatherError:
        return None


def _disk_serial(runner: Runner, base: str) -> str | None:
    try:
        serial = parse_vpd_pg80(runner.read_bytes(f"{base}/device/vpd_pg80"))
    except GatherError:
        serial = None
    # NVMe controllers and some SCSI drivers expose device/serial; virtio-blk exposes serial.
    return (
        serial
        or _read_optional(runner, f"{base}/device/serial")
        or _read_optional(runner, f"{base}/serial")
    )


def _collect_disk(runner: Runner, name: str) -> Disk | None:
    base = f"/sys/block/{name}"
    path = runner.realpath(base)
    if "/devices/virtual/block/" in path or _read_optional(runner, f"{base}/hidden") == "1":
        return None  # a software device, or a multipath leg hidden behind its nvme head
    transport = disk_transport(path)
    try:
        size = int(runner.read_text(f"{base}/size").strip()) * 512
    except ValueError:
        raise SourceMissing(f"{base}/size is not a number") from None
    return Disk(
        name=name,
        path=f"/dev/{name}",
        model=_read_optional(runner, f"{base}/device/model"),
        serial=_disk_serial(runner, base),
        size_bytes=size,
        medium=disk_medium(name, _read_optional(runner, f"{base}/queue/rotational"), transport),
        transport=transport,
        removable=runner.read_text(f"{base}/removable").strip() == "1",
    )


def collect_disks(runner: Runner) -> tuple[Disk, ...] | Unavailable:
    """Whole physical (or hypervisor) disks; loop, RAM, device-mapper and md devices left out."""
    try:
        disks = [
            _collect_disk(runner, name)
            for name in runner.list_dir("/sys/block")
            if not name.startswith(_NOT_DISKS)
        ]
    except GatherError as exc:
        return Unavailable(str(exc))
    return tuple(disk for disk in disks if disk is not None)


# ----------------------------------------------------------------------------- NICs


def parse_ip_addr_json(text: str) -> dict[str, tuple[str, ...]]:
    """`ip -json addr show`: interface name → addresses with prefix length."""
    data = jsontext.loads(text)
    if not isinstance(data, list):
        raise ValueError("ip -json addr show did not print a list")
    result: dict[str, tuple[str, ...]] = {}
    for link in data:
        if not isinstance(link, dict) or not isinstance(link.get("ifname"), str):
            continue
        infos = link.get("addr_info") or []
        result[link["ifname"]] = tuple(
            f"{info['local']}/{info['prefixlen']}"
            for info in infos
            if isinstance(info, dict) and "local" in info and "prefixlen" in info
        )
    return result


def parse_ip_addr_oneline(text: str) -> dict[str, tuple[str, ...]]:
    """`ip -o addr show`, for iproute2 older than 4.13 (CentOS 7), which has no -json."""
    result: dict[str, list[str]] = {}
    for line in text.splitlines():
        fields = line.split()
        if len(fields) < 4 or fields[2] not in ("inet", "inet6"):
            continue
        address = fields[3]
        if "/" not in address and len(fields) > 5 and fields[4] == "peer":
            address += "/" + fields[5].partition("/")[2]
        result.setdefault(fields[1].partition("@")[0], []).append(address)
    return {name: tuple(addresses) for name, addresses in result.items()}


_IP_FALLBACKS = ("/usr/sbin/ip", "/sbin/ip")


def collect_ip_addresses(runner: Runner) -> dict[str, tuple[str, ...]] | Unavailable:
    """Addresses per interface from one `ip` call (two on iproute2 without JSON)."""
    found = runner.which("ip")
    problems: list[str] = []
    for ip in (found,) if found else _IP_FALLBACKS:
        try:
            try:
                return parse_ip_addr_json(
                    runner.run([ip, "-json", "addr", "show"], timeout=5).stdout
                )
            except (CommandFailed, ValueError):
                return parse_ip_addr_oneline(
                    runner.run([ip, "-o", "addr", "show"], timeout=5).stdout
                )
        except ToolMissing as exc:
            problems.append(str(exc))
        except (CommandFailed, CommandTimeout, AccessDenied) as exc:
            return Unavailable(str(exc))
    return Unavailable("; ".join(problems) or "ip is not installed")


def _nic_speed(text: str | None) -> int | None:
    try:
        speed = int(text or "")
    except ValueError:
        return None
    # -1 (and its unsigned forms) is the kernel's SPEED_UNKNOWN.
    return None if speed <= 0 or speed in (65535, 4294967295) else speed


def _nic_mac(text: str | None) -> str | None:
    mac = (text or "").lower()
    return None if not mac or set(mac) <= {"0", ":"} else mac


def collect_nics(runner: Runner) -> tuple[Nic, ...] | Unavailable:
    base = "/sys/class/net"
    try:
        names = runner.list_dir(base)
    except GatherError as exc:
        return Unavailable(str(exc))
    addresses = collect_ip_addresses(runner)
    nics = []
    for name in names:
        if not runner.exists(f"{base}/{name}/ifindex"):
            continue  # bonding_masters and other control files live here too
        nics.append(
            Nic(
                name=name,
                mac=_nic_mac(_read_optional(runner, f"{base}/{name}/address")),
                addresses=(addresses.get(name, ()) if isinstance(addresses, dict) else addresses),
                physical=runner.exists(f"{base}/{name}/device"),
                # Reading `speed` of a link that is down fails with EINVAL.
                speed_mbps=_nic_speed(_read_optional(runner, f"{base}/{name}/speed")),
            )
        )
    return tuple(nics)


# ----------------------------------------------------------------------------- identity


def _valid_machine_id(text: str) -> str | None:
    value = text.strip().lower()
    ok = re.fullmatch(r"[0-9a-f]{32}", value) and len(set(value)) > 1
    return value if ok else None


def collect_machine_id(runner: Runner) -> str | None:
    """systemd's /etc/machine-id, else D-Bus's copy; None when absent or "uninitialized"."""
    for path in ("/etc/machine-id", "/var/lib/dbus/machine-id"):
        try:
            value = _valid_machine_id(runner.read_text(path))
        except GatherError:
            continue
        if value:
            return value
    return None


def anchor_id(source: IdSource, parts: Iterable[str]) -> str:
    """The host id an anchor gives: its source name and values, hashed."""
    canonical = "\n".join(("medsec.host-id/1", source, *parts))
    return "sha256:" + hashlib.sha256(canonical.encode("utf-8")).hexdigest()


def derive_identity(
    dmi: DmiInfo | Unavailable,
    machine_id: str | None,
    nics: tuple[Nic, ...] | Unavailable,
) -> HostIdentity:
    """The first usable anchor, hashed with its source name, and the others after it in order
    of preference, with the machine-id digest and physical MACs a collector compares when two
    machines report one DMI anchor. Raises NoHostIdentity."""
    anchors: list[HostAnchor] = []
    if isinstance(dmi, DmiInfo) and dmi.product_serial:
        parts = (dmi.sys_vendor or "", dmi.product_name or "", dmi.product_serial)
        anchors.append(HostAnchor("dmi-serial", anchor_id("dmi-serial", parts)))
    if isinstance(dmi, DmiInfo) and dmi.product_uuid:
        anchors.append(HostAnchor("dmi-uuid", anchor_id("dmi-uuid", (dmi.product_uuid.lower(),))))
    machine = anchor_id("machine-id", (machine_id,)) if machine_id else None
    if machine:
        anchors.append(HostAnchor("machine-id", machine))
    physical = nics if isinstance(nics, tuple) else ()
    macs = sorted({nic.mac for nic in physical if nic.physical and nic.mac})
    if macs:
        anchors.append(HostAnchor("mac", anchor_id("mac", macs)))
    if not anchors:
        raise NoHostIdentity(
            "no stable host id: DMI serial and UUID are placeholders or unreadable, "
            "/etc/machine-id is missing and no physical NIC has a MAC"
        )
    first, *rest = anchors
    return HostIdentity(
        id=first.id, source=first.source, fallbacks=tuple(rest), machine=machine, macs=tuple(macs)
    )


# ----------------------------------------------------------------------------- entry point


def collect_hardware(runner: Runner) -> HardwareFacts:
    """All hardware facts of the host behind `runner`.

    Sources that are missing or denied become `Unavailable` in their field. Raises `GatherError`
    only when /proc/sys/kernel cannot be read (not a Linux host, or /proc not mounted) or when
    no host id anchor exists at all (`NoHostIdentity`).
    """
    dmi = collect_dmi(runner)
    nics = collect_nics(runner)
    return HardwareFacts(
        hostname=collect_hostname(runner),
        os_release=collect_os_release(runner),
        kernel=collect_kernel(runner),
        boot_mode=collect_boot_mode(runner),
        secure_boot=collect_secure_boot(runner),
        cpu=collect_cpu(runner),
        memory_bytes=collect_memory(runner),
        disks=collect_disks(runner),
        nics=nics,
        dmi=dmi,
        identity=derive_identity(dmi, collect_machine_id(runner), nics),
    )
