"""What a signed auditor snapshot is made of, shared by its writer (`snapshot`) and its offline
reader (`snapshot_verify`): member names, the key fingerprint, and what of a host's signed report
`snapshot.json` copies, so both sides derive a host's entry from its signed report alike. Like
the reader, it needs only the standard library, msgspec and `checks.envelope`."""

from __future__ import annotations

import base64
import binascii
import hashlib
from typing import Any

SNAPSHOT_SCHEMA = "medsec.snapshot/v1"
MANIFEST_SCHEMA = "medsec.manifest/v1"
SNAPSHOT_JSON = "snapshot.json"
MANIFEST = "manifest.json"
SIGNATURE = "manifest.sig"
SIGNER = "signer.pem"
UNSIGNED_MEMBERS = (MANIFEST, SIGNATURE)
"""The members the manifest cannot list: itself and its signature."""
DOMAINS = ("tpm", "disk", "backup", "wipe", "log")
"""The check domains a snapshot carries per host: TPM, disk encryption, backup, erasure, logs."""
TRUST_NOTE = (
    "the signer is only as trusted as the key fingerprint printed above: compare it with the "
    "fingerprint the collector's operator gives you, or pass --expect-key FINGERPRINT"
)
_ABSENT = {"unavailable": "not in the report's inventory"}


def envelope_member(report_id: str) -> str:
    """The member holding the signed envelope of report `report_id` (a UUID: a safe name)."""
    return f"envelopes/{report_id}.json"


def fingerprint(public_pem: str) -> str:
    """`SHA256:` and the hex SHA-256 of the key's DER SubjectPublicKeyInfo (the PEM's body), the
    same for Ed25519 and SM2 keys and computable without any crypto library. ValueError unless
    `public_pem` holds one PEM public key."""
    lines = public_pem.strip().splitlines()
    if (
        len(lines) < 3
        or lines[0].strip() != "-----BEGIN PUBLIC KEY-----"
        or lines[-1].strip() != "-----END PUBLIC KEY-----"
    ):
        raise ValueError("not a PEM public key")
    try:
        der = base64.b64decode("".join(line.strip() for line in lines[1:-1]), validate=True)
    except (binascii.Error, ValueError):
        raise ValueError("the PEM public key is not base64") from None
    return "SHA256:" + hashlib.sha256(der).hexdigest()


def normal_fingerprint(text: str) -> str:
    """A fingerprint as an auditor may type it: `SHA256:` optional, any case, colons allowed."""
    body = text.strip()
    if body[:7].upper() == "SHA256:":
        body = body[7:]
    return "SHA256:" + body.replace(":", "").replace(" ", "").lower()


def host_results(report: Any) -> list[dict[str, Any]]:
    """The results of a report's TPM, encryption, backup, erasure and logging checks, in the
    report's order, as the report states them (without the writer's clause ids: the collector
    joins clauses from its own catalogs)."""
    found = report.get("results") if isinstance(report, dict) else None
    out: list[dict[str, Any]] = []
    for item in found if isinstance(found, list) else ():
        if not isinstance(item, dict):
            continue
        check_id = item.get("check_id")
        if not isinstance(check_id, str) or check_id.partition(".")[0] not in DOMAINS:
            continue
        out.append(
            {
                "check_id": check_id,
                "status": item.get("status"),
                "severity": item.get("severity"),
                "target": item.get("target"),
                "message": item.get("message"),
                "message_zh": item.get("message_zh"),
                "evidence": item.get("evidence", {}),
            }
        )
    return out


def host_hardware(inventory: Any) -> dict[str, Any]:
    """A host's hardware as its report's inventory states it: system identity (DMI), CPU,
    memory, disks with their encryption, TPM with its EK certificates' fingerprints, NICs. A fact
    the agent could not gather keeps its `{"unavailable": reason}`; one the report lacks says so."""
    facts = inventory if isinstance(inventory, dict) else {}
    hardware = _part(facts.get("hardware"))
    if not isinstance(hardware, dict) or "unavailable" in hardware:
        hardware = dict.fromkeys(_HARDWARE, hardware)
    os_release = _part(hardware.get("os_release"))
    if isinstance(os_release, dict) and "unavailable" not in os_release:
        os_release = os_release.get("PRETTY_NAME")
    disks = _part(hardware.get("disks"))
    if isinstance(disks, list):
        disks = [_disk(d, facts.get("disk")) for d in disks]
    nics = _part(hardware.get("nics"))
    if isinstance(nics, list):
        nics = [_pick(n, _NIC) for n in nics]
    return {
        "hostname": hardware.get("hostname"),
        "system": _pick(_part(hardware.get("dmi")), _SYSTEM),
        "os": os_release,
        "kernel": hardware.get("kernel"),
        "boot_mode": hardware.get("boot_mode"),
        "secure_boot": _part(hardware.get("secure_boot")),
        "cpu": _pick(_part(hardware.get("cpu")), _CPU),
        "memory_bytes": _part(hardware.get("memory_bytes")),
        "disks": disks,
        "tpm": _tpm(facts.get("tpm")),
        "nics": nics,
    }


def derivable_ids(report: Any) -> list[str]:
    """The host ids a report's agent could itself have reported: its own and its identity's
    fallbacks. The collector stores a report under a fallback when its DMI id proves shared by
    another machine (`collector.store.anchors`), never under any other id."""
    host = report.get("host") if isinstance(report, dict) else None
    found = [host.get("id")] if isinstance(host, dict) else []
    inventory = report.get("inventory") if isinstance(report, dict) else None
    hardware = inventory.get("hardware") if isinstance(inventory, dict) else None
    identity = hardware.get("identity") if isinstance(hardware, dict) else None
    fallbacks = identity.get("fallbacks") if isinstance(identity, dict) else None
    for anchor in fallbacks if isinstance(fallbacks, list) else ():
        if isinstance(anchor, dict):
            found.append(anchor.get("id"))
    return [i for i in found if isinstance(i, str)]


_HARDWARE = ("hostname", "os_release", "kernel", "boot_mode", "secure_boot", "cpu",
             "memory_bytes", "disks", "nics", "dmi")  # fmt: skip
_SYSTEM = (
    ("vendor", "sys_vendor"),
    ("model", "product_name"),
    ("serial", "product_serial"),
    ("board_serial", "board_serial"),
    ("uuid", "product_uuid"),
    ("bios_vendor", "bios_vendor"),
    ("bios_version", "bios_version"),
    ("bios_date", "bios_date"),
    ("placeholders", "placeholders"),
    ("unreadable", "unreadable"),
)


def _as_is(names: str) -> tuple[tuple[str, str], ...]:
    return tuple((name, name) for name in names.split())


_CPU = _as_is("model sockets cores threads")
_DISK = _as_is("name path model serial medium transport size_bytes removable")
_NIC = _as_is("name mac addresses physical speed_mbps")
_TPM = _as_is(
    "present source family manufacturer manufacturer_name vendor_strings firmware_version "
    "spec_revision"
)
_EK = _as_is("key_type nv_index subject issuer serial not_before not_after sha256 parse_error")


def _part(value: Any) -> Any:
    """A fact as the report has it; None (not in the report) said as such."""
    return dict(_ABSENT) if value is None else value


def _pick(value: Any, keys: tuple[tuple[str, str], ...]) -> Any:
    """Some fields of a fact object, renamed; an unavailable fact (or a malformed one) as is."""
    if not isinstance(value, dict) or "unavailable" in value:
        return value
    return {name: value.get(key) for name, key in keys}


def _tpm(value: Any) -> Any:
    tpm = _pick(_part(value), _TPM)
    if isinstance(tpm, dict) and "unavailable" not in tpm:
        certificates = _part(value.get("ek_certificates"))
        if isinstance(certificates, list):
            certificates = [_pick(c, _EK) for c in certificates]
        tpm["ek_certificates"] = certificates
    return tpm


def _disk(value: Any, disk_facts: Any) -> Any:
    disk = _pick(value, _DISK)
    if isinstance(disk, dict) and "unavailable" not in disk:
        disk["encryption"] = _encryption(value.get("name"), value.get("path"), disk_facts)
    return disk


def _encryption(name: Any, path: Any, disk_facts: Any) -> Any:
    """The encrypted volumes on one disk (on it, its partitions, or anything stacked on them),
    from the report's block-device tree and encrypted volumes; [] when the disk has none."""
    facts = _part(disk_facts)
    if not isinstance(facts, dict) or "unavailable" in facts:
        return facts
    devices, volumes = _part(facts.get("block_devices")), _part(facts.get("volumes"))
    for part in (devices, volumes):
        if not isinstance(part, list):
            return part
    on_disk = _paths_on(name, path, devices, facts.get("mounts"), facts.get("swaps"))
    found: list[dict[str, Any]] = []
    mapped = set()
    for volume in volumes:
        if not isinstance(volume, dict) or _str(volume.get("device")) not in on_disk:
            continue
        cipher = volume.get("cipher")
        keys = volume.get("keys")
        if isinstance(cipher, dict) and "unavailable" not in cipher:
            cipher = {k: cipher.get(k) for k in ("spec", "effective_bits")}
        if isinstance(keys, dict) and "unavailable" not in keys:
            keys = {k: keys.get(k) for k in ("tpm2_token", "clevis_tpm2")}
        mapped.add(_str(volume.get("mapped_path")))
        found.append(
            {
                "device": volume.get("device"),
                "kind": volume.get("kind"),
                "cipher": cipher,
                "mapped_path": volume.get("mapped_path"),
                "keys": keys,
            }
        )
    for device in devices:
        if not isinstance(device, dict) or not device.get("encryption"):
            continue
        where = _str(device.get("path"))
        if where in on_disk and where not in mapped:  # a mapping no volume describes
            found.append(
                {
                    "device": where,
                    "kind": device.get("encryption"),
                    "cipher": {"unavailable": "no header or table of this mapping was read"},
                    "mapped_path": where,
                    "keys": None,
                }
            )
    return found


def _paths_on(name: Any, path: Any, devices: list[Any], *stacks: Any) -> set[str]:
    """Paths of the disk and of every device stacked on it: block-device parents, and the
    layer chains of mounts and swaps (top first, disk last)."""
    children: dict[str, list[dict[str, Any]]] = {}
    for device in devices:
        parents = device.get("parents") if isinstance(device, dict) else None
        for parent in parents if isinstance(parents, list) else ():
            if isinstance(parent, str):
                children.setdefault(parent, []).append(device)
    paths = {_str(path)}
    waiting, seen = [_str(name)], {_str(name)}
    while waiting:
        for child in children.get(waiting.pop(), ()):
            paths.add(_str(child.get("path")))
            kname = _str(child.get("kname"))
            if kname not in seen:
                seen.add(kname)
                waiting.append(kname)
    for stack in stacks:
        for item in stack if isinstance(stack, list) else ():
            layers = item.get("layers") if isinstance(item, dict) else None
            if isinstance(layers, list) and path in layers:
                paths.update(_str(layer) for layer in layers)
    paths.discard("")
    return paths


def _str(value: Any) -> str:
    """A text field, or "" for anything else (never a match)."""
    return value if isinstance(value, str) else ""
