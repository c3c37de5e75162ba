"""Block-device stack and disk-encryption facts: which devices sit on which (disk → partition →
LUKS/dm-crypt → LVM → file system), what each encrypted volume's header says about its cipher and
key protection, and whether each mount and each swap area reaches the disk through a crypt layer.

Key material never enters these models: a dm-crypt table's key is reduced to its length by the
parser, and only cipher names, sizes and token types are kept from LUKS headers.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Literal

from checks.model import Unavailable

CryptKind = Literal["luks1", "luks2", "luks", "plain", "tcrypt", "bitlk", "loopaes", "fvault2"]
"""How a volume is encrypted. `luks` is a LUKS header whose version could not be read; `plain`
is dm-crypt without a header; tcrypt (TrueCrypt/VeraCrypt), bitlk (BitLocker), loopaes and
fvault2 (FileVault 2) are the other formats cryptsetup maps."""

# Well-known data directories of the databases found in Chinese hospitals. The gatherer records
# which exist; `disk.encrypted_mounts` checks the file systems holding them by default.
DATA_DIRS: tuple[str, ...] = (
    "/var/lib/postgresql",  # PostgreSQL (Debian, Ubuntu)
    "/var/lib/pgsql",  # PostgreSQL (RHEL, Kylin, openEuler)
    "/var/lib/mysql",  # MySQL, MariaDB
    "/var/lib/mongodb",  # MongoDB (Debian packages)
    "/var/lib/mongo",  # MongoDB (RPM packages)
    "/var/lib/redis",  # Redis persistence
    "/var/lib/dm",  # Dameng (DM8) data, as some installers lay it out
    "/opt/dmdbms/data",  # Dameng default installation
    "/dm8/data",  # Dameng data directory seen on hospital HIS servers
    "/opt/Kingbase/ES/V8/data",  # KingbaseES V8 default
    "/opt/kingbase",  # KingbaseES, lower-case installs
    "/opt/highgo",  # HighGo DB
    "/opt/gbase",  # GBase 8s/8a
    "/var/lib/opengauss",  # openGauss
    "/u01/app/oracle/oradata",  # Oracle OFA layout
)


@dataclass(frozen=True)
class BlockDevice:
    """One node of the block-device tree, from `lsblk --json` and /sys/block/<kname>/dm."""

    name: str
    """lsblk NAME: the kernel name, or the device-mapper name for dm devices (`luks-…`,
    `vg-root`)."""
    kname: str
    """lsblk KNAME: the kernel name (`nvme0n1p3`, `dm-0`)."""
    path: str
    """lsblk PATH (`/dev/mapper/vg-root`); built as /dev/mapper/<name> or /dev/<kname> where lsblk
    is older than 2.33 and has no PATH column."""
    type: str
    """lsblk TYPE: disk, part, lvm, crypt, loop, raid1, mpath, rom, dm, ..."""
    majmin: str | None
    """lsblk MAJ:MIN: the device number /proc/self/mountinfo names mounts by."""
    size_bytes: int | None
    """lsblk SIZE with --bytes."""
    fstype: str | Unavailable | None
    """lsblk FSTYPE (from the udev database); where udev has no record of the device (containers,
    initramfs-less hosts) `blkid -p` probes it instead. None: no signature found; Unavailable: the
    probe could not read the device."""
    fsver: str | None
    """lsblk FSVER (util-linux ≥ 2.35) or blkid VERSION: "1"/"2" for LUKS."""
    uuid: str | None
    """lsblk UUID or blkid UUID: the file system's or the LUKS header's UUID."""
    mountpoints: tuple[str, ...]
    """lsblk MOUNTPOINTS (MOUNTPOINT on util-linux < 2.37); informational, mounts are read from
    /proc/self/mountinfo."""
    parents: tuple[str, ...]
    """KNAMEs of the devices this one sits on: its lsblk tree parents (PKNAME in list output).
    Several for LVM spanning physical volumes, md RAID and multipath."""
    dm_uuid: str | None = None
    """/sys/block/<kname>/dm/uuid for device-mapper devices: `CRYPT-LUKS2-<uuid>-<name>`,
    `CRYPT-PLAIN-<name>`, `LVM-<vg uuid><lv uuid>`, `mpath-<wwid>`; None for other devices or
    when unreadable."""
    encryption: CryptKind | Literal["crypt"] | None = None
    """Set on a dm-crypt mapping that encrypts, from the CRYPT-<KIND>- prefix of `dm_uuid`;
    "crypt" when lsblk says crypt but the dm uuid could not be read. Integrity, verity and LUKS2
    integrity sub-devices (also CRYPT-… uuids) do not encrypt and stay None."""


@dataclass(frozen=True)
class Cipher:
    """The data cipher of an encrypted volume, from its LUKS header or its dm-crypt table."""

    spec: str
    """As stated: `aes-xts-plain64`, `aes-cbc-essiv:sha256`, `capi:xts(aes)-plain64`,
    `sm4-xts-plain64`; "linear" for a LUKS2 segment that is not encrypted (mid-encryption)."""
    key_bits: int
    """The whole volume key as stored: both XTS halves, and with LUKS2 hmac integrity the HMAC key
    too. LUKS2 `key_size` (bytes) × 8, LUKS1 `MK bits`, or a dm table key's hex length × 4."""
    algorithm: str | None
    """The block cipher, lower case: aes, sm4, serpent, twofish, camellia, ...; "null" for
    cipher_null and unencrypted segments; None when the spec names no cipher medsec knows."""
    mode: str | None
    """Chaining mode: xts, cbc, ecb, lrw, ctr, gcm, adiantum, ...; None when not stated."""
    effective_bits: int | None
    """The cipher's own key length: XTS splits the key in two (512-bit aes-xts is AES-256, 256-bit
    is AES-128), LRW drops its 128-bit tweak key, an HMAC integrity key is left out. None when the
    spec is not understood."""
    integrity: str | None = None
    """LUKS2 segment integrity (`hmac(sha256)`, `aead`, `poly1305`), None without."""


@dataclass(frozen=True)
class LuksKeyslots:
    """How a LUKS volume's key is protected, from `cryptsetup luksDump` (JSON metadata on
    LUKS2 with cryptsetup ≥ 2.4, the text dump otherwise)."""

    keyslots: int
    """Keyslots that unlock the data: ENABLED slots on LUKS1; on LUKS2 the keyslots of the digest
    that covers the data segment (unbound keyslots are not counted)."""
    pbkdf: tuple[str, ...]
    """Distinct key-derivation functions of those keyslots: pbkdf2 (always on LUKS1), argon2i,
    argon2id."""
    tokens: tuple[str, ...]
    """LUKS2 token types in token-id order (systemd-tpm2, clevis, systemd-fido2, ...); always ()
    on LUKS1, whose header has no token area."""
    tpm2_token: bool
    """A `systemd-tpm2` token bound to at least one keyslot that unlocks the data
    (systemd-cryptenroll --tpm2-device)."""
    clevis_tpm2: bool
    """A `clevis` token bound to such a keyslot whose JWE uses the tpm2 pin, directly or inside
    an sss pin (clevis luks bind -d DEV tpm2 ...)."""
    tpm2_pcrs: tuple[int, ...] = ()
    """PCRs the TPM binding is sealed to: systemd-tpm2 `tpm2-pcrs`, clevis tpm2 `pcr_ids`."""


@dataclass(frozen=True)
class DataSegment:
    """A byte range of an encrypted volume and what protects it: one LUKS2 data segment (the
    `backup-previous`, `backup-final` and `backup-moved-segment` segments, which describe a
    re-encryption's start and goal rather than data, are left out), a LUKS1 payload, or one
    target of a headerless mapping's dm table (or a range of the mapping no crypt target
    covers)."""

    id: str
    """The segment's id in the LUKS2 metadata ("0" for a LUKS1 payload); for a headerless
    mapping the crypt target's index in its table, or "gap N" for an uncovered range."""
    offset: int
    """Where the range starts, in bytes: on the device for LUKS (LUKS2 `offset`, LUKS1
    `Payload offset` × 512), in the mapping for a dm table target (its start × 512)."""
    length: int | None
    """Its length in bytes (LUKS2 `size`); None for `dynamic`: to the end of the device."""
    cipher: Cipher | Unavailable
    """`encryption` with the size of the key that covers the range; "linear" (the null cipher)
    for a range still or again in plaintext during `cryptsetup reencrypt --encrypt/--decrypt`.
    A range in the middle of re-encryption (`in-reencryption`), which both keys may cover, is
    judged with the weaker. Unavailable when the header does not say which key covers it."""


@dataclass(frozen=True)
class Reencryption:
    """A LUKS2 re-encryption in progress (`cryptsetup reencrypt` started, interrupted, or
    running online), from the header's `reencrypt` keyslot and `online-reencrypt` requirement."""

    mode: str | None
    """reencrypt (to a new key), encrypt (plaintext being encrypted in place) or decrypt; None
    when the header demands online-reencrypt but holds no reencrypt keyslot."""
    direction: str | None
    """forward or backward: the end of the device the work started from."""


@dataclass(frozen=True)
class EncryptedVolume:
    """A LUKS volume (open or not) or an open non-LUKS dm-crypt mapping."""

    device: str
    """Path of the device holding the LUKS header; for headerless kinds (plain, ...) the
    mapping's backing device."""
    kind: CryptKind
    """From the header (`Version:`), blkid/lsblk FSVER, or the mapping's dm uuid."""
    uuid: str | None
    """The LUKS UUID (header, blkid or lsblk); None for headerless kinds."""
    mapped_name: str | None
    """Device-mapper name of the open mapping (`luks-…`, `cryptswap`); None when not open."""
    mapped_path: str | None
    """/dev/mapper path of the open mapping; None when not open."""
    cipher: Cipher | Unavailable
    """LUKS: the data segment's `encryption` (LUKS2) or `Cipher name`-`Cipher mode` (LUKS1) with
    the volume key size; others: the active `dmsetup table --target crypt` line. Unavailable when
    the header or table could not be read (missing tool, no permission, detached header), and when
    the data segments differ (a re-encryption, several dm targets): `segments` holds each one's."""
    keys: LuksKeyslots | Unavailable | None
    """Key protection from the LUKS header; None for headerless kinds, which store no keyslots."""
    segments: tuple[DataSegment, ...] = ()
    """Every byte range that holds data, with its own cipher and key; () when the header or
    table was not read. Several during a LUKS2 re-encryption, or for a mapping whose table has
    several targets."""
    reencryption: Reencryption | None = None
    """Set while a LUKS2 re-encryption, encryption or decryption is in progress."""


@dataclass(frozen=True)
class Mount:
    """A mounted file system, from /proc/self/mountinfo, placed on the block-device tree."""

    mountpoint: str
    """Field 5 of mountinfo, octal escapes decoded. When several mounts share a mountpoint only
    the last one (the visible one) is kept."""
    source: str
    """The mount source after the separator (`/dev/mapper/vg-root`, `tmpfs`, `server:/export`)."""
    fstype: str
    """The file-system type after the separator (`ext4`, `xfs`, `btrfs`, `nfs4`, ...)."""
    majmin: str
    """Field 3: the st_dev of the mount (`253:1`; 0:N for non-block file systems and btrfs)."""
    root: str
    """Field 4: the mounted subtree, `/` unless a bind mount or btrfs subvolume."""
    device: str | None
    """Path of the block device under the mount, matched on MAJ:MIN, else on the source path;
    None when the source is not a block device medsec found."""
    layers: tuple[str, ...]
    """Every device beneath the mount, top first: (`/dev/mapper/vg-root`,
    `/dev/mapper/luks-…`, `/dev/nvme0n1p3`, `/dev/nvme0n1`)."""
    crypt_layers: tuple[str, ...]
    """The encrypting dm-crypt mappings among `layers`."""
    encrypted: bool | Unavailable
    """True when every path from `device` down to a disk passes through an encrypting crypt
    layer; Unavailable when the source is not a local block device (network, overlay, ZFS, tmpfs)
    or is missing from the block-device tree. Loop devices count as disks: their backing files
    are not followed."""


@dataclass(frozen=True)
class Swap:
    """An active swap area from /proc/swaps, placed on the block-device tree."""

    path: str
    """Filename column: `/dev/dm-2`, `/dev/zram0`, `/swap.img` (escapes decoded)."""
    kind: str
    """Type column: partition or file."""
    size_bytes: int
    """Size column (KiB) × 1024."""
    device: str | None
    """Path of the block device holding the swap: the device itself for a partition, the device
    of the file system containing it for a swap file."""
    layers: tuple[str, ...]
    """Every device beneath, top first, as for `Mount.layers`."""
    crypt_layers: tuple[str, ...]
    """The encrypting dm-crypt mappings among `layers`."""
    encrypted: bool | Unavailable
    """As for `Mount.encrypted`."""
    in_memory: bool = False
    """zram without a writeback device (/sys/block/zramN/backing_dev is "none"): swapped pages
    are compressed in RAM and never reach a disk."""


@dataclass(frozen=True)
class DiskFacts:
    """The host's block-device stack, encrypted volumes, mounts and swap areas."""

    block_devices: tuple[BlockDevice, ...] | Unavailable
    """Every device lsblk lists, with sysfs dm uuids; Unavailable when lsblk is missing or
    failed."""
    volumes: tuple[EncryptedVolume, ...] | Unavailable
    """LUKS devices (signature from lsblk/blkid, or the backing device of an open LUKS mapping)
    and open non-LUKS crypt mappings; Unavailable when the block devices are."""
    mounts: tuple[Mount, ...] | Unavailable
    """/proc/self/mountinfo, every entry except pseudo file systems (proc, sysfs, cgroup, ...)."""
    swaps: tuple[Swap, ...] | Unavailable
    """/proc/swaps."""
    data_dirs: tuple[str, ...] = ()
    """The entries of `DATA_DIRS` that exist on this host."""


def containing_mount(mounts: Iterable[Mount], path: str) -> Mount | None:
    """The mount whose mountpoint is the longest component-wise prefix of `path`: the file system
    that stores whatever is written under `path` (symlinks are not followed)."""
    best: Mount | None = None
    for mount in mounts:
        inside = mount.mountpoint in ("/", path) or path.startswith(
            mount.mountpoint.rstrip("/") + "/"
        )
        if inside and (best is None or len(mount.mountpoint) > len(best.mountpoint)):
            best = mount
    return best
