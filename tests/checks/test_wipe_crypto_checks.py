"""`wipe.capability` and `crypto.sm_algorithms` on recorded facts: what the cases table's
one-status-per-case shape cannot express (several disks, per-target crypto outcomes, site
parameters).
"""

from __future__ import annotations

from dataclasses import replace

import pytest

from checks.facts import HostFacts
from checks.facts.crypto import CryptoFacts
from checks.facts.wipe import DiskErase, WipeFacts, WipeTool
from checks.host import crypto as crypto_checks
from checks.host import wipe as wipe_checks
from checks.model import Result, Status, Unavailable
from checks.registry import Registry
from checks.runner import ParameterError, run_check
from tests.checks.cases_wipe_crypto import (
    ALL_TOOLS,
    ATA_FROZEN,
    HDD,
    KERNEL_NONE,
    KERNEL_SM,
    NVME,
    OPENSSL_NONE,
    OPENSSL_SM,
    SSD,
    VDA,
    block,
    crypto,
    layout,
    luks_layout_of,
    plain_layout,
)

REGISTRY = Registry.from_modules([wipe_checks, crypto_checks])


def run(check_id: str, facts: HostFacts, **overrides: object) -> list[Result]:
    return run_check(REGISTRY.get(check_id), facts, overrides or None)


# ----------------------------------------------------------------------------- wipe


def disks_facts(*disks: DiskErase, tools: tuple[WipeTool, ...] = ALL_TOOLS) -> HostFacts:
    """The disks, each with one ext4 partition (nothing for a crypto erase)."""
    devices = [d for disk in disks for d in plain_layout(disk.name).block_devices or ()]
    return HostFacts(wipe=WipeFacts(tools, disks), disk=layout(*devices))


def test_one_result_per_disk_named_by_its_path() -> None:
    facts = disks_facts(NVME, HDD, replace(SSD, ata=ATA_FROZEN), VDA)

    results = run("wipe.capability", facts)

    assert [(r.target, r.status) for r in results] == [
        ("/dev/nvme0n1", Status.PASS),
        ("/dev/sda", Status.PASS),
        ("/dev/sdb", Status.FAIL),
        ("/dev/vda", Status.NOT_APPLICABLE),
    ]
    frozen = results[2]
    assert "NIST SP 800-88" in frozen.message
    assert frozen.evidence["ata"]["frozen"] is True
    assert frozen.evidence["tools"]["hdparm"] == "1.0"
    assert frozen.evidence["usable"] == []
    assert frozen.evidence["crypto_erasable"] is False
    assert frozen.evidence["luks"]["outside"] == ["/dev/sdb1 (ext4)"]


def test_crypto_erase_is_judged_disk_by_disk() -> None:
    # sdb is LUKS behind its EFI partition; sdc holds an ext4 partition beside its LUKS one.
    sdc = replace(SSD, name="sdc", path="/dev/sdc")
    sdb_layout = luks_layout_of("sdb")
    sdc_layout = luks_layout_of("sdc", esp=False, extra=block("sdc3", fstype="ext4", parent="sdc"))
    assert isinstance(sdb_layout.block_devices, tuple)
    assert isinstance(sdc_layout.block_devices, tuple)
    assert isinstance(sdb_layout.volumes, tuple)
    assert isinstance(sdc_layout.volumes, tuple)
    facts = HostFacts(
        wipe=WipeFacts(ALL_TOOLS, (replace(SSD, ata=ATA_FROZEN), replace(sdc, ata=ATA_FROZEN))),
        disk=layout(
            *sdb_layout.block_devices,
            *sdc_layout.block_devices,
            volumes=(*sdb_layout.volumes, *sdc_layout.volumes),
        ),
    )

    sdb, sdc_result = run("wipe.capability", facts)

    assert sdb.status is Status.PASS
    assert sdb.evidence["crypto_erasable"] is True
    assert sdb.evidence["luks"]["boot"] == ["/dev/sdb1 (/boot/efi)"]
    assert sdb.evidence["luks"]["containers"] == [{"device": "/dev/sdb2", "header_bytes": 16 << 20}]
    assert sdc_result.status is Status.FAIL
    assert "crypto erase does not reach data outside LUKS: /dev/sdc3 (ext4)" in sdc_result.message


def test_crypto_erasable_is_no_longer_a_parameter() -> None:
    with pytest.raises(ParameterError, match="has no parameter 'crypto_erasable'"):
        run("wipe.capability", HostFacts(), crypto_erasable=["sdb"])


def test_unanswered_identify_does_not_hide_a_usable_method() -> None:
    # An HDD whose identify was denied still has shred.
    disk = replace(HDD, ata=Unavailable("hdparm -I /dev/sda: Permission denied"))

    results = run("wipe.capability", disks_facts(disk))

    assert [r.status for r in results] == [Status.PASS]
    assert results[0].evidence["unknown"] == ["ATA identify: hdparm -I /dev/sda: Permission denied"]


def test_removable_and_optical_drives_are_not_host_storage() -> None:
    stick = replace(SSD, name="sdc", path="/dev/sdc", transport="usb", removable=True, ata=None)
    optical = replace(HDD, name="sr0", path="/dev/sr0", medium="unknown", ata=None)

    results = run("wipe.capability", disks_facts(stick, optical))

    assert [r.status for r in results] == [Status.NOT_APPLICABLE] * 2
    assert "removable" in results[0].message
    assert "optical" in results[1].message


# ----------------------------------------------------------------------------- crypto


def by_target(results: list[Result]) -> dict[str | None, Result]:
    return {r.target: r for r in results}


def test_crypto_reports_openssl_and_kernel_separately() -> None:
    results = by_target(run("crypto.sm_algorithms", crypto(OPENSSL_SM, KERNEL_NONE)))

    assert set(results) == {"openssl", "kernel"}
    assert results["openssl"].status is Status.PASS
    assert results["kernel"].status is Status.FAIL
    assert "lacks sm2, sm3, sm4" in results["kernel"].message
    assert results["kernel"].evidence["module_search"] == [
        "/lib/modules/6.1.0-18-amd64/kernel/crypto: no SM modules"
    ]


def test_kernel_module_present_but_unloaded_counts_as_offered() -> None:
    results = by_target(run("crypto.sm_algorithms", crypto()))

    kernel = results["kernel"]
    assert kernel.status is Status.PASS
    assert "sm2 available as module sm2_generic, not loaded" in kernel.message
    assert "loads it on demand" in kernel.message
    assert kernel.evidence["registered"] == {"sm3": ["sm3-ce"], "sm4": ["sm4-ce"]}
    assert kernel.evidence["modules_not_loaded"] == {"sm2": ["sm2_generic"]}


def test_openssl_missing_algorithms_are_named() -> None:
    rhel = replace(OPENSSL_SM, offered={"sm2": (), "sm3": ("SM3",), "sm4": ()})

    results = by_target(run("crypto.sm_algorithms", crypto(rhel, KERNEL_SM)))

    assert results["openssl"].status is Status.FAIL
    assert results["openssl"].message == "OpenSSL 3.0.19 lacks sm2, sm4"
    assert results["openssl"].evidence["offered"] == {"sm3": ["SM3"]}


def test_required_can_be_narrowed_by_the_site() -> None:
    # Mainline kernels dropped the SM2 akcipher: a site may require only SM3/SM4 there.
    kernel = replace(KERNEL_SM, modules=())

    default = by_target(run("crypto.sm_algorithms", crypto(OPENSSL_SM, kernel)))
    narrowed = by_target(
        run("crypto.sm_algorithms", crypto(OPENSSL_SM, kernel), required=["sm3", "SM4"])
    )

    assert default["kernel"].status is Status.FAIL
    assert narrowed["kernel"].status is Status.PASS
    assert narrowed["openssl"].status is Status.PASS


def test_unknown_required_algorithm_is_an_error() -> None:
    results = run("crypto.sm_algorithms", crypto(), required=["sm9"])

    assert [r.status for r in results] == [Status.ERROR]
    assert "sm9" in results[0].message


def test_unlistable_openssl_is_an_error_not_a_fail() -> None:
    broken = replace(
        OPENSSL_SM,
        offered={**OPENSSL_SM.offered, "sm2": Unavailable("openssl list: exited 1")},
    )

    results = by_target(run("crypto.sm_algorithms", crypto(broken, KERNEL_SM)))

    assert results["openssl"].status is Status.ERROR
    assert "exited 1" in results["openssl"].message


def test_unreadable_module_folders_leave_unloaded_algorithms_unknown() -> None:
    kernel = replace(KERNEL_SM, modules=Unavailable("/lib/modules: permission denied"))

    results = by_target(run("crypto.sm_algorithms", crypto(OPENSSL_SM, kernel)))

    assert results["kernel"].status is Status.ERROR
    assert "permission denied" in results["kernel"].message


def test_unreadable_proc_crypto_is_an_error() -> None:
    kernel = replace(KERNEL_SM, registered=Unavailable("/proc/crypto does not exist"))

    results = by_target(run("crypto.sm_algorithms", crypto(OPENSSL_NONE, kernel)))

    assert results["kernel"].status is Status.ERROR
    assert results["openssl"].status is Status.FAIL


def test_each_side_may_be_unavailable_alone() -> None:
    facts = HostFacts(
        crypto=CryptoFacts(openssl=Unavailable("openssl version: timed out"), kernel=KERNEL_SM)
    )

    results = by_target(run("crypto.sm_algorithms", facts))

    assert results["openssl"].status is Status.ERROR
    assert results["kernel"].status is Status.PASS
