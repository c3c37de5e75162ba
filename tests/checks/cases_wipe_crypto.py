"""Recorded facts for `wipe.capability` and `crypto.sm_algorithms`, with the status each must give.

Same shape as tests/checks/cases.py. `crypto.sm_algorithms` reports two results (targets
"openssl" and "kernel"): its cases are built so that both carry the listed status, and the
words must appear in the first (openssl) message; mixed outcomes are tested target by target in
test_wipe_crypto_checks.py.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any

from checks.facts import HostFacts
from checks.facts.crypto import (
    CryptoFacts,
    KernelCryptoAlgorithm,
    KernelCryptoFacts,
    KernelModuleFile,
    OpenSslFacts,
)
from checks.facts.disk import (
    BlockDevice,
    Cipher,
    DataSegment,
    DiskFacts,
    EncryptedVolume,
    LuksKeyslots,
)
from checks.facts.wipe import (
    AtaSecurity,
    DiskErase,
    NvmeErase,
    ScsiSanitize,
    WipeFacts,
    WipeTool,
)
from checks.model import Status, Unavailable

# ----------------------------------------------------------------------------- wipe


def tool(name: str, version: str = "1.0") -> WipeTool:
    return WipeTool(name=name, path=f"/usr/sbin/{name}", version=version)


ALL_TOOLS = tuple(
    tool(n) for n in ("shred", "blkdiscard", "hdparm", "nvme", "sg_sanitize", "cryptsetup")
)

ATA_NONE = AtaSecurity(
    security_supported=False,
    enabled=False,
    locked=False,
    frozen=False,
    count_expired=False,
    enhanced_erase=False,
    erase_minutes=None,
    enhanced_erase_minutes=None,
    sanitize=False,
    sanitize_crypto_scramble=False,
    sanitize_block_erase=False,
    sanitize_overwrite=False,
)
ATA_SECURE = replace(ATA_NONE, security_supported=True, erase_minutes=708)
ATA_ENHANCED = replace(ATA_SECURE, enhanced_erase=True, erase_minutes=2, enhanced_erase_minutes=2)
ATA_FROZEN = replace(ATA_ENHANCED, frozen=True)

NVME_NONE = NvmeErase(
    oacs=0,
    sanicap=0,
    fna=0,
    format_nvm=False,
    sanitize_crypto=False,
    sanitize_block=False,
    sanitize_overwrite=False,
    format_all_namespaces=False,
    secure_erase_all_namespaces=False,
    format_crypto_erase=False,
)
NVME_DATACENTER = replace(
    NVME_NONE,
    oacs=0xE,
    sanicap=0x3,
    fna=0x4,
    format_nvm=True,
    sanitize_crypto=True,
    sanitize_block=True,
    format_crypto_erase=True,
)

HDD = DiskErase("sda", "/dev/sda", "hdd", "sata", removable=False, ata=ATA_NONE)
SSD = DiskErase("sdb", "/dev/sdb", "ssd", "sata", removable=False, ata=ATA_ENHANCED)
NVME = DiskErase("nvme0n1", "/dev/nvme0n1", "nvme", "nvme", removable=False, nvme=NVME_DATACENTER)
SAS = DiskErase(
    "sdc",
    "/dev/sdc",
    "hdd",
    "sas",
    removable=False,
    ata=Unavailable("hdparm -I /dev/sdc: no ATA IDENTIFY data in hdparm -I output"),
    scsi=ScsiSanitize(overwrite=True, block_erase=False, crypto_erase=False),
)
VDA = DiskErase("vda", "/dev/vda", "virtual", "virtio", removable=False)


def block(
    kname: str,
    type_: str = "part",
    fstype: str | Unavailable | None = None,
    *,
    parent: str | None = None,
    size: int = 64 << 30,
    mounted: tuple[str, ...] = (),
) -> BlockDevice:
    return BlockDevice(
        name=kname,
        kname=kname,
        path=f"/dev/{kname}",
        type=type_,
        majmin=None,
        size_bytes=size,
        fstype=fstype,
        fsver=None,
        uuid=None,
        mountpoints=mounted,
        parents=(parent,) if parent else (),
    )


AES_XTS_512 = Cipher("aes-xts-plain64", 512, "aes", "xts", 256)
KEYS = LuksKeyslots(1, ("argon2id",), (), tpm2_token=False, clevis_tpm2=False)


def luks_volume(device: str, *segments: DataSegment) -> EncryptedVolume:
    return EncryptedVolume(
        device=device,
        kind="luks2",
        uuid="0b5e29c1-3f0a-4c4e-9d52-5b7f1e0c9a11",
        mapped_name=None,
        mapped_path=None,
        cipher=AES_XTS_512,
        keys=KEYS,
        segments=segments or (DataSegment("0", 16 << 20, None, AES_XTS_512),),
    )


def layout(*devices: BlockDevice, volumes: tuple[EncryptedVolume, ...] = ()) -> DiskFacts:
    return DiskFacts(block_devices=devices, volumes=volumes, mounts=(), swaps=())


def plain_layout(name: str) -> DiskFacts:
    """A disk with one ext4 partition: nothing for a crypto erase."""
    return layout(block(name, "disk"), block(f"{name}1", fstype="ext4", parent=name))


def luks_layout_of(name: str, *, esp: bool = True, extra: BlockDevice | None = None) -> DiskFacts:
    """An EFI system partition at /boot/efi and one LUKS2 partition (and `extra`)."""
    parts = [
        block(f"{name}1", fstype="vfat", parent=name, mounted=("/boot/efi",)) if esp else None,
        block(f"{name}2", fstype="crypto_LUKS", parent=name),
        extra,
    ]
    return layout(
        block(name, "disk"),
        *[p for p in parts if p is not None],
        volumes=(luks_volume(f"/dev/{name}2"),),
    )


def wipe(
    disk: DiskErase, *tools: str, disk_facts: DiskFacts | None = None, **changes: Any
) -> HostFacts:
    chosen = tuple(t for t in ALL_TOOLS if t.name in tools) if tools else ALL_TOOLS
    return HostFacts(
        wipe=WipeFacts(tools=chosen, disks=(replace(disk, **changes),)),
        disk=disk_facts or plain_layout(disk.name),
    )


def no_tools(disk: DiskErase, **changes: Any) -> HostFacts:
    return HostFacts(
        wipe=WipeFacts(tools=(), disks=(replace(disk, **changes),)), disk=plain_layout(disk.name)
    )


FROZEN_SSD = replace(SSD, ata=ATA_FROZEN)


# ----------------------------------------------------------------------------- crypto


def kalg(name: str, driver: str, module: str) -> KernelCryptoAlgorithm:
    return KernelCryptoAlgorithm(name, driver, module, "cipher", 100, internal=False)


OPENSSL_SM = OpenSslFacts(
    binary="/usr/bin/openssl",
    version="OpenSSL 3.0.19 27 Jan 2026 (Library: OpenSSL 3.0.19 27 Jan 2026)",
    offered={"sm2": ("SM2",), "sm3": ("SM3",), "sm4": ("SM4-CBC", "SM4-ECB")},
)
OPENSSL_NONE = OpenSslFacts(binary=None, version=None, offered={"sm2": (), "sm3": (), "sm4": ()})
KERNEL_SM = KernelCryptoFacts(
    release="5.10.0-136.12.0.86.oe2203sp1.aarch64",
    registered={
        "sm2": (),
        "sm3": (kalg("sm3", "sm3-ce", "sm3_ce"),),
        "sm4": (kalg("sm4", "sm4-ce", "sm4_ce"),),
    },
    modules=(
        KernelModuleFile(
            "sm2",
            "sm2_generic",
            "/lib/modules/5.10.0-136.12.0.86.oe2203sp1.aarch64/kernel/crypto/sm2_generic.ko.xz",
        ),
    ),
    module_search=(),
)
KERNEL_NONE = KernelCryptoFacts(
    release="6.1.0-18-amd64",
    registered={"sm2": (), "sm3": (), "sm4": ()},
    modules=(),
    module_search=("/lib/modules/6.1.0-18-amd64/kernel/crypto: no SM modules",),
)


def crypto(
    openssl: OpenSslFacts | Unavailable = OPENSSL_SM,
    kernel: KernelCryptoFacts | Unavailable = KERNEL_SM,
) -> HostFacts:
    return HostFacts(crypto=CryptoFacts(openssl=openssl, kernel=kernel))


# check id → [(case name, facts, expected status, words the message must contain)]
CASES: dict[str, list[tuple[str, HostFacts, Status, str]]] = {
    "wipe.capability": [
        ("hdd with shred", wipe(HDD, "shred"), Status.PASS, "overwrite (shred)"),
        (
            "hdd, security erase not frozen",
            wipe(HDD, "hdparm", ata=ATA_SECURE),
            Status.PASS,
            "ATA SECURITY ERASE UNIT (hdparm)",
        ),
        ("hdd, no tool", no_tools(HDD), Status.FAIL, "install shred (coreutils) or nwipe"),
        (
            "hdd without security set, hdparm only",
            wipe(HDD, "hdparm"),
            Status.FAIL,
            "install shred (coreutils) or nwipe",
        ),
        (
            "sas hdd, scsi sanitize overwrite",
            wipe(SAS, "hdparm", "sg_sanitize"),
            Status.PASS,
            "SCSI SANITIZE overwrite (sg_sanitize)",
        ),
        ("ssd enhanced erase", wipe(SSD), Status.PASS, "ATA ENHANCED SECURITY ERASE UNIT"),
        ("ssd frozen", wipe(SSD, ata=ATA_FROZEN), Status.FAIL, "suspend and resume"),
        (
            "ssd locked",
            wipe(SSD, "hdparm", ata=replace(ATA_SECURE, locked=True)),
            Status.FAIL,
            "the disk is locked",
        ),
        (
            "ssd password tries used up",
            wipe(SSD, "hdparm", ata=replace(ATA_SECURE, count_expired=True)),
            Status.FAIL,
            "password try count expired",
        ),
        (
            "sas hdd without sg_sanitize or shred",
            wipe(SAS, "hdparm"),
            Status.FAIL,
            "SCSI SANITIZE overwrite is supported but sg_sanitize is not installed",
        ),
        (
            "ssd frozen, shred installed",
            wipe(SSD, "shred", "hdparm", ata=ATA_FROZEN),
            Status.FAIL,
            "overwriting flash with shred is not irreversible",
        ),
        (
            "ssd sanitize block erase",
            wipe(SSD, ata=replace(ATA_FROZEN, sanitize=True, sanitize_block_erase=True)),
            Status.PASS,
            "ATA SANITIZE BLOCK ERASE (hdparm)",
        ),
        (
            "ssd sanitize overwrite only",
            wipe(SSD, ata=replace(ATA_NONE, sanitize=True, sanitize_overwrite=True)),
            Status.FAIL,
            "no irreversible erasure",
        ),
        (
            "ssd without hdparm",
            wipe(SSD, "shred", ata=Unavailable("hdparm is not installed")),
            Status.FAIL,
            "install hdparm",
        ),
        (
            "ssd identify denied",
            wipe(SSD, ata=Unavailable("hdparm -I /dev/sdb: /dev/sdb: Permission denied")),
            Status.ERROR,
            "Permission denied",
        ),
        ("nvme sanitize", wipe(NVME), Status.PASS, "NVMe Sanitize crypto erase (nvme)"),
        (
            "nvme format only",
            wipe(NVME, nvme=replace(NVME_NONE, oacs=0x6, format_nvm=True)),
            Status.PASS,
            "NVMe Format SES=1 (user data erase)",
        ),
        (
            "nvme without format or sanitize",
            wipe(NVME, nvme=NVME_NONE),
            Status.FAIL,
            "no Security Erase, Sanitize or Format",
        ),
        (
            "nvme without nvme-cli",
            wipe(NVME, "shred", "hdparm", nvme=Unavailable("nvme-cli is not installed")),
            Status.FAIL,
            "install nvme-cli",
        ),
        (
            "nvme identify denied",
            wipe(NVME, nvme=Unavailable("nvme id-ctrl /dev/nvme0n1: Permission denied")),
            Status.ERROR,
            "NVMe identify",
        ),
        (
            "frozen ssd, data wholly in a LUKS partition",
            wipe(FROZEN_SSD, disk_facts=luks_layout_of("sdb")),
            Status.PASS,
            "crypto erase: the data lies wholly in LUKS (cryptsetup luksErase /dev/sdb2, then "
            "discard each header: blkdiscard -o 0 -l 16777216 /dev/sdb2)",
        ),
        (
            "frozen ssd, the whole device is LUKS",
            wipe(
                FROZEN_SSD,
                disk_facts=layout(
                    block("sdb", "disk", "crypto_LUKS"), volumes=(luks_volume("/dev/sdb"),)
                ),
            ),
            Status.PASS,
            "cryptsetup luksErase /dev/sdb,",
        ),
        (
            "hdd wholly LUKS, only cryptsetup",
            wipe(HDD, "cryptsetup", disk_facts=luks_layout_of("sda", esp=False)),
            Status.PASS,
            "cryptsetup luksErase /dev/sda2 overwrites the keyslots in place",
        ),
        (
            "frozen ssd, LUKS logical partitions behind an MBR extended partition",
            wipe(
                FROZEN_SSD,
                disk_facts=layout(
                    block("sdb", "disk"),
                    block("sdb1", fstype="crypto_LUKS", parent="sdb"),
                    block("sdb2", parent="sdb", size=1024),
                    block("sdb5", fstype="crypto_LUKS", parent="sdb"),
                    volumes=(luks_volume("/dev/sdb1"), luks_volume("/dev/sdb5")),
                ),
            ),
            Status.PASS,
            "cryptsetup luksErase /dev/sdb1 /dev/sdb5",
        ),
        (
            "frozen ssd, an ext4 partition beside the LUKS one",
            wipe(
                FROZEN_SSD,
                disk_facts=luks_layout_of("sdb", extra=block("sdb3", fstype="ext4", parent="sdb")),
            ),
            Status.FAIL,
            "crypto erase does not reach data outside LUKS: /dev/sdb3 (ext4)",
        ),
        (
            "frozen ssd, a partition without any signature beside the LUKS one",
            wipe(FROZEN_SSD, disk_facts=luks_layout_of("sdb", extra=block("sdb3", parent="sdb"))),
            Status.FAIL,
            "/dev/sdb3 (no signature: content unknown)",
        ),
        (
            "frozen ssd, LUKS encryption interrupted halfway",
            wipe(
                FROZEN_SSD,
                disk_facts=layout(
                    block("sdb", "disk", "crypto_LUKS"),
                    volumes=(
                        luks_volume(
                            "/dev/sdb",
                            DataSegment("0", 32 << 20, 480 << 20, AES_XTS_512),
                            DataSegment(
                                "1", 512 << 20, None, Cipher("linear", 0, "null", None, None)
                            ),
                        ),
                    ),
                ),
            ),
            Status.FAIL,
            "/dev/sdb (LUKS with plaintext data: bytes 536870912-end)",
        ),
        (
            "frozen ssd wholly LUKS, cryptsetup missing",
            wipe(FROZEN_SSD, "hdparm", "blkdiscard", disk_facts=luks_layout_of("sdb")),
            Status.FAIL,
            "the data lies wholly in LUKS (/dev/sdb2), but cryptsetup is not installed",
        ),
        (
            "frozen ssd wholly LUKS, blkdiscard missing",
            wipe(FROZEN_SSD, "hdparm", "cryptsetup", disk_facts=luks_layout_of("sdb")),
            Status.FAIL,
            "but blkdiscard (util-linux) is not installed to discard the headers",
        ),
        (
            "frozen ssd, LUKS header unreadable",
            wipe(
                FROZEN_SSD,
                disk_facts=layout(
                    block("sdb", "disk", "crypto_LUKS"),
                    volumes=(
                        replace(
                            luks_volume("/dev/sdb"),
                            cipher=Unavailable("cryptsetup luksDump: Permission denied"),
                            keys=Unavailable("cryptsetup luksDump: Permission denied"),
                            segments=(),
                        ),
                    ),
                ),
            ),
            Status.ERROR,
            "LUKS header not read (cryptsetup luksDump: Permission denied)",
        ),
        (
            "frozen ssd, block devices unreadable",
            wipe(
                FROZEN_SSD,
                disk_facts=DiskFacts(
                    block_devices=Unavailable("lsblk is not installed"),
                    volumes=Unavailable("lsblk is not installed"),
                    mounts=(),
                    swaps=(),
                ),
            ),
            Status.ERROR,
            "LUKS layout: block devices unavailable: lsblk is not installed",
        ),
        (
            "disk facts unavailable",
            replace(wipe(SSD), disk=Unavailable("gatherer failed: OSError")),
            Status.ERROR,
            "disk unavailable: gatherer failed",
        ),
        ("virtual disk", wipe(VDA), Status.NOT_APPLICABLE, "hypervisor"),
        (
            "usb stick",
            wipe(SSD, transport="usb", removable=True, ata=None),
            Status.NOT_APPLICABLE,
            "removable medium",
        ),
        (
            "no disks",
            HostFacts(wipe=WipeFacts(ALL_TOOLS, ()), disk=layout()),
            Status.NOT_APPLICABLE,
            "no disks",
        ),
        (
            "unknown medium",
            wipe(HDD, medium="unknown", ata=None),
            Status.ERROR,
            "medium unknown",
        ),
        (
            "disk list unavailable",
            HostFacts(wipe=WipeFacts(ALL_TOOLS, Unavailable("/sys/block: permission denied"))),
            Status.ERROR,
            "/sys/block",
        ),
        ("not gathered", HostFacts(), Status.ERROR, "not gathered"),
    ],
    "crypto.sm_algorithms": [
        ("openssl and kernel offer all", crypto(), Status.PASS, "OpenSSL 3.0.19 offers sm2"),
        (
            "neither offers any",
            crypto(OPENSSL_NONE, KERNEL_NONE),
            Status.FAIL,
            "openssl is not installed",
        ),
        (
            "neither can be listed",
            crypto(
                replace(OPENSSL_SM, offered={**OPENSSL_SM.offered, "sm2": Unavailable("exited 1")}),
                replace(KERNEL_SM, modules=Unavailable("/lib/modules: permission denied")),
            ),
            Status.ERROR,
            "could not list sm2 (exited 1)",
        ),
        (
            "neither readable",
            crypto(Unavailable("openssl version: timed out"), Unavailable("uname: timed out")),
            Status.ERROR,
            "OpenSSL unavailable",
        ),
        (
            "crypto facts unavailable",
            HostFacts(crypto=Unavailable("gatherer failed: OSError")),
            Status.ERROR,
            "OSError",
        ),
        ("not gathered", HostFacts(), Status.ERROR, "not gathered"),
    ],
}
