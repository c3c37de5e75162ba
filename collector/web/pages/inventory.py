"""A host's stored inventory made into what the host page shows: identity and hardware, TPM,
disks with the encrypted volumes on each (cipher, whole key and effective key bits), mounts and
swap, backup sources with the age of their newest recovery point against the RPO, erasure tools
and what each disk's firmware can erase, and log streams.

The inventory is the agent's JSON as it arrived (`checks.facts` serialised; a fact that could not
be gathered is `{"unavailable": reason}`), from agents of any version: every read here tolerates
a missing or malformed part and shows it as absent, never failing the page.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, NamedTuple

DEFAULT_RPO_MINUTES = 15
"""`backup.rpo`'s default, for a source whose own RPO and result say nothing."""


def get(value: Any, *keys: str | int) -> Any:
    """`value[k1][k2]...`, or None where a step is missing or of the wrong type."""
    for key in keys:
        if isinstance(key, int):
            if not isinstance(value, list) or not -len(value) <= key < len(value):
                return None
        elif not isinstance(value, Mapping):
            return None
        value = value[key] if isinstance(key, int) else value.get(key)
    return value


def unavailable(value: Any) -> str | None:
    """The reason of an `Unavailable` fact, else None."""
    if isinstance(value, Mapping) and set(value) == {"unavailable"}:
        return str(value["unavailable"])
    return None


def items(value: Any) -> list[Mapping[str, Any]]:
    """The mappings of a list fact ([] when it is absent, unavailable or malformed)."""
    if not isinstance(value, list):
        return []
    return [v for v in value if isinstance(v, Mapping)]


class Why(NamedTuple):
    """Why something is not shown, in both languages."""

    zh: str
    en: str


@dataclass(frozen=True)
class Volume:
    device: str
    kind: str
    mapped: str | None
    spec: str | None
    key_bits: Any
    effective_bits: Any
    algorithm: str | None
    mode: str | None
    cipher_problem: Why | None
    keyslots: Any
    pbkdf: str
    tpm: str
    """How the key is sealed to a TPM: systemd-tpm2, clevis tpm2, or '' (none)."""
    reencrypting: bool


@dataclass(frozen=True)
class DiskRow:
    name: str
    path: str
    model: str | None
    serial: str | None
    size: Any
    medium: str | None
    transport: str | None
    removable: bool
    volumes: list[Volume]
    erase: list[str]
    """Erase methods the firmware offers."""
    erase_notes: list[Why]
    """Why a method cannot run now (frozen, locked) or why it was not read."""


@dataclass(frozen=True)
class BackupRow:
    name: str
    kind: str
    site: str | None
    newest: str | None
    age_seconds: float | None
    rpo_minutes: int
    within: bool | None
    """The age against the RPO; None when there is no recovery point or no reading."""
    problem: str | None
    status: str | None
    """`backup.rpo`'s verdict on this source, as the agent judged it."""
    message: Any


@dataclass(frozen=True)
class LogRow:
    name: str
    kind: str
    present: bool
    paths: list[str]
    retention: str | None
    days: Any
    oldest: str | None
    forwarded: list[str]
    problem: str | None


@dataclass
class HostView:
    hardware: Mapping[str, Any] | None = None
    hardware_missing: Why | None = None
    os: str | None = None
    cpu: str | None = None
    memory: Any = None
    dmi: Mapping[str, Any] | None = None
    dmi_missing: Why | None = None
    secure_boot: Any = None
    nics: list[Mapping[str, Any]] = field(default_factory=list)
    tpm: Mapping[str, Any] | None = None
    tpm_missing: Why | None = None
    disks: list[DiskRow] = field(default_factory=list)
    disks_missing: Why | None = None
    volumes: list[Volume] = field(default_factory=list)
    """Every encrypted volume, also those on no disk found."""
    mounts: list[Mapping[str, Any]] = field(default_factory=list)
    swaps: list[Mapping[str, Any]] = field(default_factory=list)
    disk_missing: Why | None = None
    backups: list[BackupRow] = field(default_factory=list)
    backups_missing: Why | None = None
    backup_site: str | None = None
    wipe_tools: list[Mapping[str, Any]] = field(default_factory=list)
    wipe_missing: Why | None = None
    logs: list[LogRow] = field(default_factory=list)
    logs_missing: Why | None = None
    logs_observed: str | None = None


def host_view(inventory: Mapping[str, Any], results: Iterable[Any]) -> HostView:
    """What the host page shows of `inventory`, with the verdicts of `results` it refers to
    (the `backup.rpo` result of each backup source)."""
    view = HostView()
    _hardware(view, inventory.get("hardware"))
    _tpm(view, inventory.get("tpm"))
    volumes = _disk(view, inventory.get("disk"))
    erase = _wipe(view, inventory.get("wipe"))
    _disks(view, inventory.get("hardware"), inventory.get("disk"), volumes, erase)
    rpo = {r.target: r for r in results if r.check_id == "backup.rpo" and r.target is not None}
    _backups(view, inventory.get("backups"), rpo)
    _logs(view, inventory.get("logs"))
    return view


def _missing(value: Any, what: str) -> Why | None:
    """Why a part of the inventory is not shown: not gathered (the agent's reason), absent, or
    not what the part should be; None when it is there."""
    if value is None:
        return Why(f"报告中没有此项（{what}）", f"not in the report ({what})")
    reason = unavailable(value)
    if reason is not None:
        return Why(f"未能采集：{reason}", f"not gathered: {reason}")
    if not isinstance(value, Mapping):
        return Why(f"格式不符（{what}）", f"malformed ({what})")
    return None


def _hardware(view: HostView, hardware: Any) -> None:
    view.hardware_missing = _missing(hardware, "hardware")
    if view.hardware_missing:
        return
    view.hardware = hardware
    os_release = get(hardware, "os_release")
    view.os = get(os_release, "PRETTY_NAME") or unavailable(os_release)
    cpu = get(hardware, "cpu")
    if unavailable(cpu):
        view.cpu = unavailable(cpu)
    elif isinstance(cpu, Mapping):
        view.cpu = (
            f"{cpu.get('model') or '?'} · {cpu.get('sockets', '?')} × "
            f"{cpu.get('cores', '?')} / {cpu.get('threads', '?')}"
        )
    view.memory = get(hardware, "memory_bytes")
    dmi = get(hardware, "dmi")
    view.dmi_missing = _missing(dmi, "dmi")
    view.dmi = dmi if isinstance(dmi, Mapping) and not view.dmi_missing else None
    view.secure_boot = get(hardware, "secure_boot")
    view.nics = items(get(hardware, "nics"))


def _tpm(view: HostView, tpm: Any) -> None:
    view.tpm_missing = _missing(tpm, "tpm")
    if not view.tpm_missing:
        view.tpm = tpm


def _cipher(value: Any) -> tuple[Mapping[str, Any] | None, Why | None]:
    if isinstance(value, Mapping) and not unavailable(value):
        return value, None
    reason = unavailable(value)
    if reason is None:
        return None, Why("未读取", "not read")
    return None, Why(f"无法读取：{reason}", f"not read: {reason}")


def _volume(raw: Mapping[str, Any]) -> Volume:
    cipher, problem = _cipher(raw.get("cipher"))
    segments = items(raw.get("segments"))
    if cipher is None and segments:
        # Several data segments (a re-encryption, several dm targets): show the weakest.
        known = [c for c in (_cipher(s.get("cipher"))[0] for s in segments) if c is not None]
        if known:
            cipher = min(known, key=lambda c: c.get("effective_bits") or 0)
            n = len(segments)
            problem = Why(f"{n} 个数据段，显示最弱者", f"{n} segments; the weakest shown")
    keys = raw.get("keys")
    tpm = ""
    if isinstance(keys, Mapping):
        if keys.get("tpm2_token"):
            tpm = "systemd-tpm2"
        elif keys.get("clevis_tpm2"):
            tpm = "clevis tpm2"
        pcrs = keys.get("tpm2_pcrs")
        if tpm and isinstance(pcrs, list) and pcrs:
            tpm += " (PCR " + ",".join(str(p) for p in pcrs) + ")"
    pbkdf = keys.get("pbkdf") if isinstance(keys, Mapping) else None
    return Volume(
        device=str(raw.get("device") or "?"),
        kind=str(raw.get("kind") or "?"),
        mapped=raw.get("mapped_path") or raw.get("mapped_name"),
        spec=get(cipher, "spec"),
        key_bits=get(cipher, "key_bits"),
        effective_bits=get(cipher, "effective_bits"),
        algorithm=get(cipher, "algorithm"),
        mode=get(cipher, "mode"),
        cipher_problem=problem,
        keyslots=get(keys, "keyslots"),
        pbkdf=", ".join(str(p) for p in pbkdf) if isinstance(pbkdf, list) else "",
        tpm=tpm,
        reencrypting=isinstance(raw.get("reencryption"), Mapping),
    )


def _disk(view: HostView, disk: Any) -> list[Volume]:
    view.disk_missing = _missing(disk, "disk")
    if view.disk_missing:
        return []
    view.volumes = [_volume(v) for v in items(get(disk, "volumes"))]
    view.mounts = items(get(disk, "mounts"))
    view.swaps = items(get(disk, "swaps"))
    return view.volumes


def _disk_of(devices: list[Mapping[str, Any]]) -> dict[str, set[str]]:
    """Each block device's path → the knames of the whole disks beneath it."""
    by_kname = {str(d.get("kname")): d for d in devices if d.get("kname")}

    def disks(kname: str, seen: frozenset[str]) -> set[str]:
        device = by_kname.get(kname)
        if device is None or kname in seen:
            return set()
        parents = [str(p) for p in device.get("parents") or () if isinstance(p, str)]
        if device.get("type") == "disk" or not parents:
            return {kname}
        found: set[str] = set()
        for parent in parents:
            found |= disks(parent, seen | {kname})
        return found

    return {
        str(d.get("path")): disks(str(d.get("kname")), frozenset())
        for d in devices
        if d.get("path") and d.get("kname")
    }


def _disks(
    view: HostView,
    hardware: Any,
    disk: Any,
    volumes: list[Volume],
    erase: dict[str, tuple[list[str], list[Why]]],
) -> None:
    listed = get(hardware, "disks")
    reason = unavailable(listed)
    if reason is not None:
        view.disks_missing = Why(f"未能采集：{reason}", f"not gathered: {reason}")
    elif not isinstance(listed, list):
        view.disks_missing = Why("报告中没有磁盘清单", "no disk list in the report")
    under = _disk_of(items(get(disk, "block_devices")))
    for raw in items(listed):
        name = str(raw.get("name") or "?")
        methods, notes = erase.get(name, ([], []))
        view.disks.append(
            DiskRow(
                name=name,
                path=str(raw.get("path") or f"/dev/{name}"),
                model=raw.get("model"),
                serial=raw.get("serial"),
                size=raw.get("size_bytes"),
                medium=raw.get("medium"),
                transport=raw.get("transport"),
                removable=bool(raw.get("removable")),
                volumes=[v for v in volumes if name in under.get(v.device, {v.device[5:]})],
                erase=methods,
                erase_notes=notes,
            )
        )


_ERASE: dict[str, tuple[tuple[str, str], ...]] = {
    "ata": (
        ("security_supported", "ATA SECURITY ERASE UNIT"),
        ("enhanced_erase", "ATA ENHANCED SECURITY ERASE UNIT"),
        ("sanitize_crypto_scramble", "ATA SANITIZE crypto scramble"),
        ("sanitize_block_erase", "ATA SANITIZE block erase"),
        ("sanitize_overwrite", "ATA SANITIZE overwrite"),
    ),
    "nvme": (
        ("format_nvm", "NVMe Format (user data erase)"),
        ("format_crypto_erase", "NVMe Format (crypto erase)"),
        ("sanitize_crypto", "NVMe Sanitize crypto erase"),
        ("sanitize_block", "NVMe Sanitize block erase"),
        ("sanitize_overwrite", "NVMe Sanitize overwrite"),
    ),
    "scsi": (
        ("crypto_erase", "SCSI SANITIZE crypto erase"),
        ("block_erase", "SCSI SANITIZE block erase"),
        ("overwrite", "SCSI SANITIZE overwrite"),
    ),
}
"""Per firmware probe: the flag that says a method is offered, and the method's name."""
_ATA_STATES = {
    "frozen": Why("ATA 安全已冻结（需重新上电）", "ATA security frozen (needs a power cycle)"),
    "locked": Why("ATA 安全已锁定", "ATA security locked"),
    "count_expired": Why("ATA 密码尝试次数已用尽", "ATA password attempts exhausted"),
}
"""ATA security states under which SECURITY ERASE is refused until a power cycle."""


def _wipe(view: HostView, wipe: Any) -> dict[str, tuple[list[str], list[Why]]]:
    """Per disk name: (the erase methods its firmware offers, notes)."""
    view.wipe_missing = _missing(wipe, "wipe")
    if view.wipe_missing:
        return {}
    view.wipe_tools = items(get(wipe, "tools"))
    found: dict[str, tuple[list[str], list[Why]]] = {}
    for disk in items(get(wipe, "disks")):
        methods: list[str] = []
        notes: list[Why] = []
        for probe, offered in _ERASE.items():
            answer = disk.get(probe)
            reason = unavailable(answer)
            if reason:
                notes.append(Why(f"{probe}：{reason}", f"{probe}: {reason}"))
            elif isinstance(answer, Mapping):
                methods += [word for flag, word in offered if answer.get(flag)]
        ata = disk.get("ata")
        if isinstance(ata, Mapping):
            notes += [why for key, why in _ATA_STATES.items() if ata.get(key)]
        if disk.get("medium") == "virtual":
            notes.append(
                Why("虚拟磁盘：擦除由虚拟化平台负责", "virtual disk: erasure is the hypervisor's")
            )
        if disk.get("removable"):
            notes.append(Why("可移动介质：未探测", "removable: not probed"))
        found[str(disk.get("name"))] = (methods, notes)
    return found


def _backups(view: HostView, backups: Any, rpo: Mapping[str, Any]) -> None:
    view.backups_missing = _missing(backups, "backups")
    if view.backups_missing:
        return
    view.backup_site = get(backups, "host_site")
    for status in items(get(backups, "sources")):
        source = status.get("source") if isinstance(status.get("source"), Mapping) else {}
        name = str(get(source, "name") or "?")
        result = rpo.get(name)
        evidence = getattr(result, "evidence", None)
        minutes = get(source, "rpo_minutes")
        if not isinstance(minutes, int):
            seconds = get(evidence, "rpo_seconds")
            minutes = (
                int(seconds) // 60 if isinstance(seconds, int | float) else DEFAULT_RPO_MINUTES
            )
        reading = status.get("reading")
        problem = unavailable(reading)
        newest = get(reading, "newest") if not problem else None
        age = get(reading, "age_seconds") if not problem else None
        if not problem and newest is None:
            problem = get(reading, "missing_reason") or "no recovery point"
        within = None if not isinstance(age, int | float) else age <= minutes * 60
        view.backups.append(
            BackupRow(
                name=name,
                kind=str(get(source, "kind") or "?"),
                site=get(source, "site"),
                newest=newest if isinstance(newest, str) else None,
                age_seconds=float(age) if isinstance(age, int | float) else None,
                rpo_minutes=minutes,
                within=within,
                problem=problem,
                status=getattr(result, "status", None),
                message=result,
            )
        )


def _logs(view: HostView, logs: Any) -> None:
    view.logs_missing = _missing(logs, "logs")
    if view.logs_missing:
        return
    view.logs_observed = get(logs, "observed_at")
    for stream in items(get(logs, "streams")):
        retention = stream.get("retention")
        oldest = stream.get("oldest")
        forwarded = stream.get("forwarded_to")
        targets = [
            f"{f.get('host')}{':' + str(f['port']) if f.get('port') else ''} ({f.get('protocol')})"
            for f in items(forwarded)
        ]
        problems = [
            p
            for p in (
                stream.get("absent_reason"),
                unavailable(retention),
                unavailable(oldest),
                unavailable(forwarded),
            )
            if p
        ]
        view.logs.append(
            LogRow(
                name=str(stream.get("name") or "?"),
                kind=str(stream.get("kind") or "?"),
                present=bool(stream.get("present")),
                paths=[str(p) for p in stream.get("paths") or () if isinstance(p, str)],
                retention=get(retention, "description"),
                days=get(retention, "days"),
                oldest=get(oldest, "at"),
                forwarded=targets,
                problem="; ".join(str(p) for p in problems) or None,
            )
        )


def age_words(seconds: float | None, lang: str) -> str:
    """An age as people say it: '42 min', '3.5 h', '2.1 d' (`分钟`, `小时`, `天` in Chinese)."""
    if seconds is None:
        return "—"
    zh = lang != "en"
    if seconds < 0:
        return "时钟超前" if zh else "in the future"
    if seconds < 3600:
        return f"{seconds / 60:.0f} {'分钟' if zh else 'min'}"
    if seconds < 86400 * 2:
        return f"{seconds / 3600:.1f} {'小时' if zh else 'h'}"
    return f"{seconds / 86400:.1f} {'天' if zh else 'd'}"
