"""Block-device stack and disk encryption: lsblk, sysfs, blkid, cryptsetup and dmsetup.

One `lsblk --json` call gives the device tree; /sys/block/dm-*/dm/uuid tells which device-mapper
nodes are dm-crypt mappings (and of which kind); where udev holds no record of a device (containers,
hosts without udev) `blkid -p` probes the signatures lsblk could not see, one device per call. Each
LUKS device costs one `cryptsetup luksDump` (JSON metadata for LUKS2, text for LUKS1 and old
cryptsetup); headerless mappings cost one `dmsetup table --target crypt` between them. Mounts come
from /proc/self/mountinfo and swap areas from /proc/swaps, each placed on the tree to say whether
its data reaches a disk only through a crypt layer.

Modules: `devices` (lsblk, sysfs, blkid), `ciphers` (cipher specifications and key lengths),
`luks` (LUKS headers and their data segments), `tokens` (TPM-sealing tokens), `dmcrypt`
(headerless dm-crypt tables), `mounts` (mounts and swap on the tree) and `collect` (the entry
point). This package re-exports their public names.
"""

from __future__ import annotations

from inventory.host.disk.ciphers import (
    CipherSpec,
    effective_key_bits,
    integrity_key_bits,
    make_cipher,
    parse_cipher_spec,
)
from inventory.host.disk.collect import collect_disk, collect_volumes
from inventory.host.disk.devices import (
    BLKID_TIMEOUT_S,
    LSBLK_COLUMNS,
    LSBLK_LEGACY_COLUMNS,
    LSBLK_TIMEOUT_S,
    collect_block_devices,
    crypt_kind,
    parse_blkid_export,
    parse_lsblk_json,
    parse_lsblk_pairs,
    probe_signature,
    read_lsblk,
)
from inventory.host.disk.dmcrypt import (
    DMSETUP_TIMEOUT_S,
    CryptTarget,
    key_field_bits,
    mapping_segments,
    parse_dmsetup_crypt_table,
    parse_dmsetup_crypt_targets,
    read_dm_crypt_tables,
)
from inventory.host.disk.luks import (
    CRYPTSETUP_TIMEOUT_S,
    LuksHeader,
    parse_luks1_dump,
    parse_luks2_dump,
    parse_luks_debug_json,
    parse_luks_dump,
    parse_luks_dump_json,
    read_luks_header,
    segment_cipher,
    span,
    volume_cipher,
)
from inventory.host.disk.mounts import (
    MOUNTINFO,
    PROC_SWAPS,
    PSEUDO_FILESYSTEMS,
    DeviceTree,
    MountEntry,
    Placement,
    SwapEntry,
    parse_mountinfo,
    parse_proc_swaps,
    place_mounts,
    place_swaps,
)
from inventory.host.disk.tokens import clevis_bindings

__all__ = [
    "BLKID_TIMEOUT_S",
    "CRYPTSETUP_TIMEOUT_S",
    "DMSETUP_TIMEOUT_S",
    "LSBLK_COLUMNS",
    "LSBLK_LEGACY_COLUMNS",
    "LSBLK_TIMEOUT_S",
    "MOUNTINFO",
    "PROC_SWAPS",
    "PSEUDO_FILESYSTEMS",
    "CipherSpec",
    "CryptTarget",
    "DeviceTree",
    "LuksHeader",
    "MountEntry",
    "Placement",
    "SwapEntry",
    "clevis_bindings",
    "collect_block_devices",
    "collect_disk",
    "collect_volumes",
    "crypt_kind",
    "effective_key_bits",
    "integrity_key_bits",
    "key_field_bits",
    "make_cipher",
    "mapping_segments",
    "parse_blkid_export",
    "parse_cipher_spec",
    "parse_dmsetup_crypt_table",
    "parse_dmsetup_crypt_targets",
    "parse_lsblk_json",
    "parse_lsblk_pairs",
    "parse_luks1_dump",
    "parse_luks2_dump",
    "parse_luks_debug_json",
    "parse_luks_dump",
    "parse_luks_dump_json",
    "parse_mountinfo",
    "parse_proc_swaps",
    "place_mounts",
    "place_swaps",
    "probe_signature",
    "read_dm_crypt_tables",
    "read_lsblk",
    "read_luks_header",
    "segment_cipher",
    "span",
    "volume_cipher",
]
