"""Recorded facts for every check, with the status each must produce.

The catalog meta-test requires every registered check to have at least one `pass` and one `fail`
case here, so a new check cannot land without both.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any

from checks.facts import (
    EkCertificate,
    HardwareFacts,
    HostFacts,
    HostIdentity,
    TpmFacts,
    TpmLockout,
)
from checks.model import Status, Unavailable

LOCKOUT_OK = TpmLockout(
    in_lockout=False,
    counter=0,
    max_tries=32,
    recovery_seconds=7200,
    lockout_recovery_seconds=86400,
    owner_auth_set=True,
    endorsement_auth_set=False,
    lockout_auth_set=True,
)

EK = EkCertificate(
    nv_index=0x01C00002,
    key_type="rsa",
    subject=None,
    issuer="CN=Nationz TPM Root CA,O=Nationz Technologies Inc,C=CN",
    not_before="2024-01-01T00:00:00Z",
    not_after="2044-01-01T00:00:00Z",
    serial="1f2e",
    sha256="ab" * 32,
)

TPM_GOOD = TpmFacts(
    present=True,
    source="tss",
    looked_at=("tss device:/dev/tpmrm0: answered",),
    family="2.0",
    manufacturer="NTZ",
    manufacturer_name="Nationz",
    vendor_strings="Z32H320TC",
    firmware_version="7.2.3.1",
    spec_revision="1.59",
    pcr_banks=("sha1", "sha256", "sm3_256"),
    algorithms=("rsa", "sha256", "sm2", "sm3_256", "sm4"),
    ek_certificates=(EK,),
    lockout=LOCKOUT_OK,
)

TPM_ABSENT = TpmFacts(
    present=False,
    source="none",
    looked_at=(
        "tss device:/dev/tpmrm0: /dev/tpmrm0 does not exist",
        "sysfs /sys/class/tpm: no tpm* entries",
    ),
)

HW = HardwareFacts(
    hostname="his-db-01",
    os_release={"ID": "debian", "VERSION_ID": "12"},
    kernel="6.1.0",
    boot_mode="uefi",
    secure_boot=True,
    cpu=Unavailable("not recorded"),
    memory_bytes=Unavailable("not recorded"),
    disks=Unavailable("not recorded"),
    nics=Unavailable("not recorded"),
    dmi=Unavailable("not recorded"),
    identity=HostIdentity(id="sha256:" + "0" * 64, source="machine-id"),
)


def tpm(**changes: Any) -> HostFacts:
    return HostFacts(tpm=replace(TPM_GOOD, **changes))


def hw(**changes: Any) -> HostFacts:
    return HostFacts(hardware=replace(HW, **changes))


# check id → [(case name, facts, expected status, words the message must contain)]
CASES: dict[str, list[tuple[str, HostFacts, Status, str]]] = {
    "tpm.present": [
        ("tpm2 answers", tpm(), Status.PASS, "TPM 2.0"),
        ("no tpm", HostFacts(tpm=TPM_ABSENT), Status.FAIL, "/dev/tpmrm0 does not exist"),
        ("tpm 1.2", tpm(family="1.2", source="sysfs"), Status.FAIL, "1.2"),
        (
            "access denied",
            HostFacts(tpm=Unavailable("TPM present but access denied: /dev/tpmrm0")),
            Status.ERROR,
            "access denied",
        ),
        ("not gathered", HostFacts(), Status.ERROR, "not gathered"),
    ],
    "tpm.pcr_bank": [
        ("sha256 allocated", tpm(), Status.PASS, "sha256"),
        ("sm3 only", tpm(pcr_banks=("sm3_256",)), Status.PASS, "sm3_256"),
        ("sha1 only", tpm(pcr_banks=("sha1",)), Status.FAIL, "sha1"),
        ("none allocated", tpm(pcr_banks=()), Status.FAIL, "none"),
        (
            "sysfs only",
            tpm(source="sysfs", pcr_banks=Unavailable("TSS not available")),
            Status.ERROR,
            "TSS not available",
        ),
        ("no tpm", HostFacts(tpm=TPM_ABSENT), Status.NOT_APPLICABLE, "no TPM 2.0"),
    ],
    "tpm.ek_certificate": [
        ("provisioned", tpm(), Status.PASS, "Nationz"),
        ("none", tpm(ek_certificates=()), Status.FAIL, "0x01C00002"),
        (
            "garbage in NV",
            tpm(ek_certificates=(replace(EK, parse_error="not DER"),)),
            Status.FAIL,
            "not DER",
        ),
        (
            "NV unreadable",
            tpm(ek_certificates=Unavailable("NV_Read 0x01C00002: TPM_RC_NV_LOCKED")),
            Status.ERROR,
            "TPM_RC_NV_LOCKED",
        ),
    ],
    "tpm.lockout": [
        ("not locked", tpm(), Status.PASS, "0/32"),
        (
            "locked",
            tpm(lockout=replace(LOCKOUT_OK, in_lockout=True, counter=32)),
            Status.FAIL,
            "32 failed",
        ),
        (
            "unreadable",
            tpm(lockout=Unavailable("TPM2_PT_PERMANENT: TPM_RC_FAILURE")),
            Status.ERROR,
            "TPM_RC_FAILURE",
        ),
    ],
    "host.secure_boot": [
        ("enabled", hw(), Status.PASS, "enabled"),
        ("disabled", hw(secure_boot=False), Status.FAIL, "disabled"),
        (
            "legacy",
            hw(boot_mode="legacy", secure_boot=Unavailable("legacy boot")),
            Status.FAIL,
            "legacy",
        ),
        ("unreadable", hw(secure_boot=Unavailable("efivars not mounted")), Status.ERROR, "efivars"),
    ],
}
