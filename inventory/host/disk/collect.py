"""The disk gatherer's entry point: `collect_disk` reads the block-device tree, finds the
encrypted volumes on it (LUKS devices and open headerless crypt mappings), and places mounts and
swap areas on it.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence

from checks.facts.disk import (
    DATA_DIRS,
    BlockDevice,
    Cipher,
    CryptKind,
    DataSegment,
    DiskFacts,
    EncryptedVolume,
    Mount,
    Swap,
)
from checks.model import Unavailable
from inventory.host.disk.devices import collect_block_devices
from inventory.host.disk.dmcrypt import CryptTarget, mapping_segments, read_dm_crypt_tables
from inventory.host.disk.luks import LuksHeader, read_luks_header, volume_cipher
from inventory.host.disk.mounts import (
    MOUNTINFO,
    PROC_SWAPS,
    parse_mountinfo,
    parse_proc_swaps,
    place_mounts,
    place_swaps,
)
from inventory.runner import GatherError, Runner


def _luks_hint(fsver: str | None) -> CryptKind | None:
    version = (fsver or "").strip()
    if version == "1":
        return "luks1"
    return "luks2" if version == "2" else None


def _headerless_kind(mapping: BlockDevice) -> CryptKind:
    """A crypt mapping of unknown kind (dm uuid unreadable) on a device without a LUKS
    signature is taken for plain dm-crypt."""
    kind = mapping.encryption
    if kind is None or kind == "crypt":
        return "plain"
    return kind


def _headerless_volume(
    mapping: BlockDevice,
    backing: BlockDevice | None,
    kname: str,
    tables: dict[str, tuple[CryptTarget, ...]] | Unavailable,
) -> EncryptedVolume:
    """An open crypt mapping without a LUKS header, judged by its dm table's crypt targets."""
    cipher: Cipher | Unavailable
    segments: tuple[DataSegment, ...] = ()
    targets = None if isinstance(tables, Unavailable) else tables.get(mapping.name)
    if isinstance(tables, Unavailable):
        cipher = tables
    elif not targets:
        cipher = Unavailable(f"dmsetup table lists no crypt target named {mapping.name}")
    else:
        segments = mapping_segments(targets, mapping.size_bytes)
        cipher = volume_cipher(segments)
    return EncryptedVolume(
        device=backing.path if backing else f"/dev/{kname}",
        kind=_headerless_kind(mapping),
        uuid=None,
        mapped_name=mapping.name,
        mapped_path=mapping.path,
        cipher=cipher,
        keys=None,
        segments=segments,
    )


def collect_volumes(runner: Runner, devices: Sequence[BlockDevice]) -> tuple[EncryptedVolume, ...]:
    """LUKS devices (by signature, or as the backing device of an open LUKS mapping) and open
    headerless crypt mappings, each with what its header or dm table says."""
    by_kname = {dev.kname: dev for dev in devices}
    mappings: dict[str, BlockDevice] = {}
    for dev in devices:
        if dev.encryption is not None and dev.parents:
            mappings.setdefault(dev.parents[0], dev)
    luks: dict[str, CryptKind | None] = {}
    for dev in devices:
        if dev.fstype == "crypto_LUKS":
            luks[dev.kname] = _luks_hint(dev.fsver)
    for kname, mapping in mappings.items():
        if mapping.encryption in ("luks1", "luks2") and kname in by_kname:
            luks[kname] = luks.get(kname) or _luks_hint(mapping.encryption[-1])
    volumes: list[EncryptedVolume] = []
    for kname, hint in luks.items():
        dev, opened = by_kname[kname], mappings.get(kname)
        header = read_luks_header(runner, dev, hint)
        kind: CryptKind = hint or "luks"
        if isinstance(header, LuksHeader):
            kind = "luks1" if header.version == 1 else "luks2"
        volumes.append(
            EncryptedVolume(
                device=dev.path,
                kind=kind,
                uuid=header.uuid if isinstance(header, LuksHeader) else dev.uuid,
                mapped_name=opened.name if opened else None,
                mapped_path=opened.path if opened else None,
                cipher=header.cipher if isinstance(header, LuksHeader) else header,
                keys=header.keys if isinstance(header, LuksHeader) else header,
                segments=header.segments if isinstance(header, LuksHeader) else (),
                reencryption=header.reencryption if isinstance(header, LuksHeader) else None,
            )
        )
    headerless = [
        (kname, mapping)
        for kname, mapping in mappings.items()
        if kname not in luks and mapping.encryption is not None
    ]
    tables: dict[str, tuple[CryptTarget, ...]] | Unavailable = {}
    if headerless:
        tables = read_dm_crypt_tables(runner)
    for kname, mapping in headerless:
        volumes.append(_headerless_volume(mapping, by_kname.get(kname), kname, tables))
    return tuple(volumes)


def _read_proc(runner: Runner, path: str) -> str | Unavailable:
    try:
        return runner.read_text(path)
    except GatherError as exc:
        return Unavailable(str(exc))


def _read_data_dirs(runner: Runner) -> Iterator[str]:
    for path in DATA_DIRS:
        if runner.exists(path):
            yield runner.realpath(path)  # a symlinked data dir lives where it points


def collect_disk(runner: Runner) -> DiskFacts | Unavailable:
    """The block-device stack, encrypted volumes, mounts and swap areas of the host behind
    `runner`. Unavailable only when neither lsblk nor /proc/self/mountinfo can be read."""
    devices = collect_block_devices(runner)
    mountinfo = _read_proc(runner, MOUNTINFO)
    if isinstance(devices, Unavailable) and isinstance(mountinfo, Unavailable):
        return Unavailable(f"{devices.reason}; {mountinfo.reason}")
    volumes: tuple[EncryptedVolume, ...] | Unavailable = (
        devices if isinstance(devices, Unavailable) else collect_volumes(runner, devices)
    )
    mounts: tuple[Mount, ...] | Unavailable = (
        mountinfo
        if isinstance(mountinfo, Unavailable)
        else place_mounts(parse_mountinfo(mountinfo), devices)
    )
    swaps_text = _read_proc(runner, PROC_SWAPS)
    swaps: tuple[Swap, ...] | Unavailable = (
        swaps_text
        if isinstance(swaps_text, Unavailable)
        else place_swaps(runner, parse_proc_swaps(swaps_text), devices, mounts)
    )
    return DiskFacts(
        block_devices=devices,
        volumes=volumes,
        mounts=mounts,
        swaps=swaps,
        data_dirs=tuple(dict.fromkeys(_read_data_dirs(runner))),
    )
