"""Recorded facts for the disk-encryption checks, with the status each must produce.

Same shape as `tests/checks/cases.py` (which merges these): every case yields exactly one result,
so each `DiskFacts` here holds one mount, one swap area or one volume that matters.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any

from checks.facts import HostFacts
from checks.facts.disk import (
    BlockDevice,
    Cipher,
    DataSegment,
    DiskFacts,
    EncryptedVolume,
    LuksKeyslots,
    Mount,
    Reencryption,
    Swap,
)
from checks.model import Status, Unavailable

LUKS_UUID = "3f6c2a4e-8b1d-4c7a-9e52-1d0b6f7a9c21"
LUKS_MAPPING = f"/dev/mapper/luks-{LUKS_UUID}"

ROOT_ON_LUKS = Mount(
    mountpoint="/",
    source="/dev/mapper/vg0-root",
    fstype="xfs",
    majmin="253:1",
    root="/",
    device="/dev/mapper/vg0-root",
    layers=("/dev/mapper/vg0-root", LUKS_MAPPING, "/dev/nvme0n1p3", "/dev/nvme0n1"),
    crypt_layers=(LUKS_MAPPING,),
    encrypted=True,
)
ROOT_IN_CLEAR = replace(
    ROOT_ON_LUKS,
    source="/dev/sda2",
    majmin="8:2",
    device="/dev/sda2",
    layers=("/dev/sda2", "/dev/sda"),
    crypt_layers=(),
    encrypted=False,
)

AES_256 = Cipher("aes-xts-plain64", 512, "aes", "xts", 256)
KEYS_TPM2 = LuksKeyslots(
    keyslots=2,
    pbkdf=("argon2id",),
    tokens=("systemd-tpm2",),
    tpm2_token=True,
    clevis_tpm2=False,
    tpm2_pcrs=(7,),
)
KEYS_PASSPHRASE = LuksKeyslots(
    keyslots=1, pbkdf=("argon2id",), tokens=(), tpm2_token=False, clevis_tpm2=False
)
VOLUME = EncryptedVolume(
    device="/dev/nvme0n1p3",
    kind="luks2",
    uuid=LUKS_UUID,
    mapped_name=f"luks-{LUKS_UUID}",
    mapped_path=LUKS_MAPPING,
    cipher=AES_256,
    keys=KEYS_TPM2,
)

AES_128 = Cipher("aes-xts-plain64", 256, "aes", "xts", 128)
PLAINTEXT = Cipher("linear", 0, "null", "ecb", 0)
# `cryptsetup reencrypt --key-size 512` of a 256-bit volume, interrupted: the new key covers the
# first range, the old one the rest (tests/fixtures/raw/disk/luks2-reencrypt-256-to-512.json).
NEW_KEY_RANGE = DataSegment("0", 16777216, 209715200, AES_256)
OLD_KEY_RANGE = DataSegment("1", 226492416, None, AES_128)
REENCRYPTING = Reencryption("reencrypt", "forward")
UNDECIDED = Unavailable(
    "the data segments differ (bytes 16777216–226492415: aes-xts-plain64, 512-bit key; "
    "bytes 226492416 to the end of the device: aes-xts-plain64, 256-bit key); each is judged on "
    "its own"
)

UNREAD_DISK = BlockDevice(  # a container's blkid may not open the host's disks
    name="vdb",
    kname="vdb",
    path="/dev/vdb",
    type="disk",
    majmin="252:16",
    size_bytes=2**30,
    fstype=Unavailable("blkid -p /dev/vdb: Operation not permitted"),
    fsver=None,
    uuid=None,
    mountpoints=(),
    parents=(),
)

SWAP_ON_LUKS = Swap(
    path="/dev/dm-2",
    kind="partition",
    size_bytes=8 * 2**30,
    device="/dev/mapper/vg0-swap",
    layers=("/dev/mapper/vg0-swap", LUKS_MAPPING, "/dev/nvme0n1p3", "/dev/nvme0n1"),
    crypt_layers=(LUKS_MAPPING,),
    encrypted=True,
)
SWAP_IN_CLEAR = replace(
    SWAP_ON_LUKS,
    path="/dev/sda3",
    device="/dev/sda3",
    layers=("/dev/sda3", "/dev/sda"),
    crypt_layers=(),
    encrypted=False,
)
ZRAM = Swap(
    path="/dev/zram0",
    kind="partition",
    size_bytes=8 * 2**30,
    device="/dev/zram0",
    layers=("/dev/zram0",),
    crypt_layers=(),
    encrypted=False,
    in_memory=True,
)

DISK = DiskFacts(
    block_devices=(),
    volumes=(VOLUME,),
    mounts=(ROOT_ON_LUKS,),
    swaps=(SWAP_ON_LUKS,),
)


def disk(**changes: Any) -> HostFacts:
    return HostFacts(disk=replace(DISK, **changes))


def volume(**changes: Any) -> HostFacts:
    return disk(volumes=(replace(VOLUME, **changes),))


# check id → [(case name, facts, expected status, words the message must contain)]
CASES: dict[str, list[tuple[str, HostFacts, Status, str]]] = {
    "disk.encrypted_mounts": [
        ("root on LVM on LUKS", disk(), Status.PASS, LUKS_MAPPING),
        ("root in clear", disk(mounts=(ROOT_IN_CLEAR,)), Status.FAIL, "not encrypted"),
        (
            "root partly encrypted",
            disk(
                mounts=(
                    replace(
                        ROOT_ON_LUKS,
                        layers=(*ROOT_ON_LUKS.layers, "/dev/sdb1", "/dev/sdb"),
                        encrypted=False,
                    ),
                )
            ),
            Status.FAIL,
            "only partly encrypted",
        ),
        (
            "root on overlay",
            disk(
                mounts=(
                    replace(
                        ROOT_ON_LUKS,
                        source="overlay",
                        fstype="overlay",
                        device=None,
                        layers=(),
                        crypt_layers=(),
                        encrypted=Unavailable("overlay (overlay) is not a local block device"),
                    ),
                )
            ),
            Status.ERROR,
            "overlay",
        ),
        (
            "database dir on the encrypted root",
            disk(data_dirs=("/var/lib/mysql",)),
            Status.PASS,
            "holding /var/lib/mysql",
        ),
        (
            "mountinfo unreadable",
            disk(mounts=Unavailable("/proc/self/mountinfo does not exist")),
            Status.ERROR,
            "mountinfo",
        ),
        ("not gathered", HostFacts(), Status.ERROR, "not gathered"),
    ],
    "disk.cipher_strength": [
        ("aes-xts 512 is AES-256", disk(), Status.PASS, "AES-256"),
        (
            "aes-xts 256 is AES-128",
            volume(cipher=Cipher("aes-xts-plain64", 256, "aes", "xts", 128)),
            Status.FAIL,
            "AES-128",
        ),
        (
            "sm4-xts",
            volume(cipher=Cipher("sm4-xts-plain64", 256, "sm4", "xts", 128)),
            Status.PASS,
            "SM4",
        ),
        (
            "aes-cbc-essiv 256",
            volume(kind="luks1", cipher=Cipher("aes-cbc-essiv:sha256", 256, "aes", "cbc", 256)),
            Status.PASS,
            "AES-256",
        ),
        (
            "serpent",
            volume(cipher=Cipher("serpent-xts-plain64", 512, "serpent", "xts", 256)),
            Status.FAIL,
            "SERPENT-256",
        ),
        (
            "garbage cipher",
            volume(cipher=Cipher("foo-bar", 256, None, "bar", None)),
            Status.ERROR,
            "foo-bar",
        ),
        (
            "null cipher",
            volume(cipher=Cipher("cipher_null-ecb", 0, "null", "ecb", 0)),
            Status.FAIL,
            "not encrypted",
        ),
        (
            "header unreadable",
            volume(cipher=Unavailable("cryptsetup is not installed")),
            Status.ERROR,
            "cryptsetup is not installed",
        ),
        (
            "aes-ctr reuses its keystream",
            volume(cipher=Cipher("aes-ctr-plain64", 256, "aes", "ctr", 256)),
            Status.FAIL,
            "CTR mode",
        ),
        (
            "re-encryption to a 512-bit key interrupted: the rest is AES-128",
            volume(
                cipher=UNDECIDED,
                segments=(NEW_KEY_RANGE, OLD_KEY_RANGE),
                reencryption=REENCRYPTING,
            ),
            Status.FAIL,
            "re-encryption to a new key in progress; bytes 226492416 to the end of the device: "
            "AES-128",
        ),
        (
            "key rotation interrupted, both keys AES-256",
            volume(
                segments=(NEW_KEY_RANGE, replace(OLD_KEY_RANGE, cipher=AES_256)),
                reencryption=REENCRYPTING,
            ),
            Status.PASS,
            "every data segment meets AES-256 or SM4",
        ),
        (
            "encryption in place interrupted: a range still in plaintext",
            volume(
                cipher=Unavailable("the data segments differ"),
                segments=(
                    DataSegment("0", 16777216, 905969664, PLAINTEXT),
                    DataSegment("1", 922746880, None, AES_256),
                ),
                reencryption=Reencryption("encrypt", "backward"),
            ),
            Status.FAIL,
            "bytes 16777216–922746879: data is not encrypted",
        ),
        (
            "re-encryption started, no range done yet",
            volume(
                cipher=AES_128,
                segments=(replace(OLD_KEY_RANGE, offset=16777216),),
                reencryption=REENCRYPTING,
            ),
            Status.FAIL,
            "in progress; bytes 16777216 to the end of the device: AES-128",
        ),
        (
            "re-encryption whose keys the old text dump does not bind",
            volume(
                cipher=UNDECIDED,
                segments=(
                    replace(NEW_KEY_RANGE, cipher=Unavailable("the text dump does not say")),
                    replace(OLD_KEY_RANGE, cipher=Unavailable("the text dump does not say")),
                ),
                reencryption=REENCRYPTING,
            ),
            Status.ERROR,
            "cipher unavailable: the text dump does not say",
        ),
        ("no volumes", disk(volumes=()), Status.NOT_APPLICABLE, "no encrypted volumes"),
        (
            "no volume found, but a disk blkid could not read",
            disk(volumes=(), block_devices=(UNREAD_DISK,)),
            Status.ERROR,
            "cannot tell whether it holds an encrypted volume",
        ),
        (
            "lsblk failed",
            disk(volumes=Unavailable("lsblk is not installed")),
            Status.ERROR,
            "lsblk is not installed",
        ),
    ],
    "disk.swap_encrypted": [
        ("swap LV on LUKS", disk(), Status.PASS, LUKS_MAPPING),
        ("zram", disk(swaps=(ZRAM,)), Status.PASS, "never reaches a disk"),
        ("swap partition in clear", disk(swaps=(SWAP_IN_CLEAR,)), Status.FAIL, "not encrypted"),
        (
            "swap file on unknown file system",
            disk(
                swaps=(
                    replace(
                        SWAP_IN_CLEAR,
                        path="/swap.img",
                        kind="file",
                        device=None,
                        layers=(),
                        encrypted=Unavailable("no mount holding swap file /swap.img is known"),
                    ),
                )
            ),
            Status.ERROR,
            "/swap.img",
        ),
        ("no swap", disk(swaps=()), Status.NOT_APPLICABLE, "no active swap"),
        (
            "swaps unreadable",
            disk(swaps=Unavailable("/proc/swaps does not exist")),
            Status.ERROR,
            "/proc/swaps",
        ),
    ],
    "disk.key_sealed_by_tpm": [
        ("systemd-tpm2 token", disk(), Status.PASS, "systemd-tpm2 token"),
        (
            "clevis tpm2",
            volume(keys=replace(KEYS_TPM2, tokens=("clevis",), tpm2_token=False, clevis_tpm2=True)),
            Status.PASS,
            "clevis tpm2 binding",
        ),
        ("passphrase only", volume(keys=KEYS_PASSPHRASE), Status.FAIL, "no systemd-tpm2 token"),
        (
            "clevis tang only",
            volume(keys=replace(KEYS_PASSPHRASE, tokens=("clevis",))),
            Status.FAIL,
            "tokens: clevis",
        ),
        (
            "luks1",
            volume(kind="luks1", keys=replace(KEYS_PASSPHRASE, pbkdf=("pbkdf2",))),
            Status.FAIL,
            "LUKS1",
        ),
        (
            "luksDump denied",
            volume(
                keys=Unavailable("cryptsetup luksDump /dev/nvme0n1p3: permission denied"),
                cipher=Unavailable("cryptsetup luksDump /dev/nvme0n1p3: permission denied"),
            ),
            Status.ERROR,
            "permission denied",
        ),
        (
            "no LUKS volume found, but a disk blkid could not read",
            disk(volumes=(), block_devices=(UNREAD_DISK,)),
            Status.ERROR,
            "Operation not permitted",
        ),
        (
            "plain dm-crypt only",
            volume(kind="plain", uuid=None, keys=None),
            Status.NOT_APPLICABLE,
            "no LUKS volumes",
        ),
        (
            "lsblk failed",
            disk(volumes=Unavailable("lsblk is not installed")),
            Status.ERROR,
            "lsblk is not installed",
        ),
    ],
}
