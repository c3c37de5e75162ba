"""The block-device tree: one `lsblk --json` call (`--pairs` on old util-linux), dm uuids from
/sys/block/dm-*/dm/uuid saying which device-mapper nodes are dm-crypt mappings (and of which
kind), and, where udev holds no record of a device (containers, hosts without udev), `blkid -p`
probing the signatures lsblk could not see, one device per call.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import replace
from typing import Any, Literal

from checks.facts.disk import BlockDevice, CryptKind
from checks.model import Unavailable
from inventory.host import jsontext
from inventory.runner import CommandFailed, GatherError, Runner, ToolMissing

LSBLK_COLUMNS = "NAME,KNAME,PATH,MAJ:MIN,TYPE,FSTYPE,FSVER,UUID,SIZE,PKNAME,MOUNTPOINTS"
"""util-linux ≥ 2.37 (MOUNTPOINTS; PATH since 2.33, FSVER since 2.35)."""
LSBLK_LEGACY_COLUMNS = "NAME,KNAME,MAJ:MIN,TYPE,FSTYPE,UUID,SIZE,PKNAME,MOUNTPOINT"
"""What older util-linux knows (RHEL 8: 2.32, Kylin V10: 2.35)."""

LSBLK_TIMEOUT_S = 5.0
BLKID_TIMEOUT_S = 10.0

# The CRYPT-<KIND>- prefixes cryptsetup gives the dm uuids of mappings that encrypt. INTEGRITY,
# SUBDEV (the LUKS2 integrity sub-device), VERITY and TEMP also start with CRYPT- and do not.
_CRYPT_KINDS: Mapping[str, CryptKind] = {
    "LUKS1": "luks1",
    "LUKS2": "luks2",
    "PLAIN": "plain",
    "TCRYPT": "tcrypt",
    "BITLK": "bitlk",
    "LOOPAES": "loopaes",
    "FVAULT2": "fvault2",
}


def text_or_none(value: Any) -> str | None:
    """A JSON or lsblk value as trimmed text; None for null, booleans and blanks."""
    if value is None or isinstance(value, bool):
        return None
    text = str(value).strip()
    return text or None


def int_or_none(value: Any) -> int | None:
    """A JSON or lsblk value as a non-negative integer; None when it is not one."""
    text = text_or_none(value)
    return int(text) if text is not None and text.isdigit() else None


def _mountpoints(row: Mapping[str, Any]) -> tuple[str, ...]:
    raw = row.get("mountpoints", row.get("mountpoint"))
    values = raw if isinstance(raw, list) else [raw]
    return tuple(t for t in (text_or_none(v) for v in values) if t is not None)


def _build_devices(rows: Iterable[tuple[Mapping[str, Any], str | None]]) -> tuple[BlockDevice, ...]:
    """Merge lsblk rows (a device appears once per parent) into one `BlockDevice` per KNAME."""
    devices: dict[str, BlockDevice] = {}
    for row, tree_parent in rows:
        name = text_or_none(row.get("name"))
        kname = text_or_none(row.get("kname")) or name
        if name is None or kname is None:
            raise ValueError("an lsblk entry has no NAME/KNAME")
        parents = tuple(p for p in (tree_parent, text_or_none(row.get("pkname"))) if p)
        known = devices.get(kname)
        if known is not None:
            merged = tuple(dict.fromkeys((*known.parents, *parents)))
            devices[kname] = replace(known, parents=merged)
            continue
        dtype = text_or_none(row.get("type")) or "unknown"
        default_path = f"/dev/mapper/{name}" if kname.startswith("dm-") else f"/dev/{kname}"
        devices[kname] = BlockDevice(
            name=name,
            kname=kname,
            path=text_or_none(row.get("path")) or default_path,
            type=dtype,
            majmin=text_or_none(row.get("maj:min")),
            size_bytes=int_or_none(row.get("size")),
            fstype=text_or_none(row.get("fstype")),
            fsver=text_or_none(row.get("fsver")),
            uuid=text_or_none(row.get("uuid")),
            mountpoints=_mountpoints(row),
            parents=tuple(dict.fromkeys(parents)),
        )
    return tuple(devices.values())


def parse_lsblk_json(text: str) -> tuple[BlockDevice, ...]:
    """`lsblk --json --bytes --output …` (tree or `--list`): one `BlockDevice` per KNAME, parents
    from the tree nesting and the PKNAME column. dm uuids are filled in later from sysfs."""
    data = jsontext.loads(text)
    nodes = data.get("blockdevices") if isinstance(data, dict) else None
    if not isinstance(nodes, list):
        raise ValueError("lsblk --json printed no blockdevices list")
    rows: list[tuple[Mapping[str, Any], str | None]] = []

    def walk(node: Any, parent: str | None) -> None:
        if not isinstance(node, dict):
            return
        rows.append((node, parent))
        here = text_or_none(node.get("kname")) or text_or_none(node.get("name"))
        children = node.get("children")
        for child in children if isinstance(children, list) else ():
            walk(child, here)

    for node in nodes:
        walk(node, None)
    return _build_devices(rows)


_PAIR = re.compile(r'([A-Z0-9:%_-]+)="((?:[^"\\]|\\.)*)"')


def parse_lsblk_pairs(text: str) -> tuple[BlockDevice, ...]:
    """`lsblk --pairs --bytes --output …` (util-linux < 2.27 has no --json): KEY="value" lines,
    unsafe characters as \\xHH, one line per (device, parent)."""
    rows: list[tuple[Mapping[str, Any], str | None]] = []
    for line in text.splitlines():
        pairs = {
            key.lower(): re.sub(r"\\x([0-9a-fA-F]{2})", lambda m: chr(int(m.group(1), 16)), value)
            for key, value in _PAIR.findall(line)
        }
        if pairs:
            rows.append((pairs, None))
    return _build_devices(rows)


def read_lsblk(runner: Runner) -> tuple[BlockDevice, ...]:
    """The device tree from one lsblk call; older util-linux costs a retry per missing feature.
    Raises GatherError when lsblk is missing or no form of the call works."""
    attempts: tuple[tuple[list[str], bool], ...] = (
        (["--json", "--bytes", "--output", LSBLK_COLUMNS], True),
        (["--json", "--bytes", "--output", LSBLK_LEGACY_COLUMNS], True),
        (["--pairs", "--bytes", "--output", LSBLK_LEGACY_COLUMNS], False),
    )
    failure: CommandFailed | None = None
    for args, is_json in attempts:
        try:
            out = runner.run(["lsblk", *args], timeout=LSBLK_TIMEOUT_S).stdout
        except CommandFailed as exc:  # an option or column this util-linux does not know
            failure = exc
            continue
        return parse_lsblk_json(out) if is_json else parse_lsblk_pairs(out)
    raise failure or GatherError("lsblk printed nothing usable")


# ----------------------------------------------------------------------------- sysfs and blkid


def crypt_kind(dm_uuid: str | None, lsblk_type: str) -> CryptKind | Literal["crypt"] | None:
    """The encryption a device-mapper node performs, from its dm uuid (CRYPT-LUKS2-…)."""
    if dm_uuid is None:
        return "crypt" if lsblk_type == "crypt" else None
    prefix, _, rest = dm_uuid.partition("-")
    if prefix != "CRYPT":
        return None
    return _CRYPT_KINDS.get(rest.partition("-")[0])


def read_optional(runner: Runner, path: str) -> str | None:
    """A sysfs attribute's trimmed text; None when it is empty or cannot be read."""
    try:
        return runner.read_text(path).strip() or None
    except GatherError:
        return None


def _with_dm_uuids(runner: Runner, devices: Iterable[BlockDevice]) -> list[BlockDevice]:
    result = []
    for dev in devices:
        dm_uuid = None
        if dev.kname.startswith("dm-"):
            dm_uuid = read_optional(runner, f"/sys/block/{dev.kname}/dm/uuid")
        result.append(replace(dev, dm_uuid=dm_uuid, encryption=crypt_kind(dm_uuid, dev.type)))
    return result


def parse_blkid_export(stdout: str, stderr: str = "") -> dict[str, dict[str, str] | str]:
    """`blkid -p -o export DEV…`: DEVNAME → its KEY=value block, or the error blkid printed for it
    (`blkid: error: /dev/vda: Operation not permitted`). Devices with no signature are absent."""
    result: dict[str, dict[str, str] | str] = {}
    for block in re.split(r"\n\s*\n", stdout.strip()):
        values = dict(
            line.split("=", 1) for line in block.splitlines() if "=" in line and line.strip()
        )
        if "DEVNAME" in values:
            result[values["DEVNAME"]] = values
    for line in stderr.splitlines():
        match = re.match(r"blkid: error: (/\S+): (.+)$", line.strip())
        if match:
            result[match.group(1)] = match.group(2)
    return result


def _needs_probe(runner: Runner, dev: BlockDevice) -> bool:
    """lsblk takes FSTYPE from the udev database; without a udev record it knows nothing."""
    if dev.fstype is not None or dev.type == "rom" or dev.size_bytes == 0:
        return False
    return dev.majmin is None or not runner.exists(f"/run/udev/data/b{dev.majmin}")


def probe_signature(runner: Runner, path: str) -> dict[str, str] | str | None:
    """`blkid -p -o export DEV` for one device: its KEY=value block, None when it carries no
    signature, or what kept blkid from telling. One device per call: given several, blkid stops
    at the first without a signature (exit 2) and never probes the others. Raises ToolMissing."""
    try:
        result = runner.run(
            ["blkid", "-p", "-o", "export", path], timeout=BLKID_TIMEOUT_S, check=False
        )
    except ToolMissing:
        raise
    except GatherError as exc:
        return str(exc)
    found = parse_blkid_export(result.stdout, result.stderr).get(path)
    if result.returncode == 0 and isinstance(found, dict):
        return found
    if isinstance(found, str):  # "blkid: error: DEV: Permission denied"
        return found
    if result.returncode == 2 and not result.stdout.strip() and not result.stderr.strip():
        # blkid is as silent about a missing device node as about a blank device.
        return None if runner.exists(path) else "no device node (the device is not in /dev)"
    if result.returncode == 8:
        return "ambivalent result: more than one signature (wipefs lists them)"
    detail = (result.stderr.strip().splitlines() or ["no message"])[-1]
    return f"blkid exited {result.returncode}: {detail}"


def _probe_signatures(runner: Runner, devices: list[BlockDevice]) -> list[BlockDevice]:
    out = []
    missing: str | None = None
    for dev in devices:
        if not _needs_probe(runner, dev):
            out.append(dev)
            continue
        try:
            found = missing or probe_signature(runner, dev.path)
        except ToolMissing as exc:
            found = missing = str(exc)  # said once for every device
        if isinstance(found, str):
            out.append(replace(dev, fstype=Unavailable(f"blkid -p {dev.path}: {found}")))
        elif found is None:
            out.append(dev)  # probed, no signature: fstype stays None
        else:
            out.append(
                replace(
                    dev,
                    fstype=found.get("TYPE"),  # a partition table alone (PTTYPE) is no file system
                    fsver=dev.fsver or found.get("VERSION"),
                    uuid=dev.uuid or found.get("UUID"),
                )
            )
    return out


def collect_block_devices(runner: Runner) -> tuple[BlockDevice, ...] | Unavailable:
    """lsblk's tree with dm uuids from sysfs and, where udev has no record, blkid's signatures."""
    try:
        devices = list(read_lsblk(runner))
    except ToolMissing:
        return Unavailable("lsblk is not installed (util-linux)")
    except (GatherError, ValueError) as exc:
        return Unavailable(f"lsblk: {exc}")
    return tuple(_probe_signatures(runner, _with_dm_uuids(runner, devices)))
