"""TPM facts: what the TPM says about itself through the TSS, or what sysfs says of it."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

from checks.model import Unavailable


@dataclass(frozen=True)
class EkCertificate:
    """An endorsement-key certificate read from its TCG NV index."""

    nv_index: int
    """TCG EK Credential Profile index: 0x01C00002 (RSA 2048) and 0x01C0000A (ECC P-256) in the
    low range, 0x01C00012–0x01C0001E in the high range (P-384, SM2 at 0x01C0001A, RSA 3072...)."""
    key_type: Literal["rsa", "ecc", "sm2"]
    """The EK's key type, from the index it was found at."""
    subject: str | None
    """RFC 4514 subject (often empty for EK certs: the identity is in the SAN)."""
    issuer: str | None
    """RFC 4514 issuer: the TPM vendor's CA. None when the data did not parse."""
    not_before: str | None
    """Validity start, ISO 8601 UTC."""
    not_after: str | None
    """Validity end, ISO 8601 UTC."""
    serial: str | None
    """Hex serial number."""
    sha256: str
    """SHA-256 of the DER certificate."""
    parse_error: str | None = None
    """Set when the NV index held data that is not a parsable X.509 certificate."""


@dataclass(frozen=True)
class TpmLockout:
    """Dictionary-attack protection: TPM2_PT_PERMANENT and the TPM2_PT_LOCKOUT_* properties."""

    in_lockout: bool
    """TPMA_PERMANENT.inLockout."""
    counter: int
    """TPM2_PT_LOCKOUT_COUNTER: authorization failures counted so far."""
    max_tries: int
    """TPM2_PT_MAX_AUTH_FAIL: failures before lockout."""
    recovery_seconds: int
    """TPM2_PT_LOCKOUT_INTERVAL: seconds for one failure to be forgiven."""
    lockout_recovery_seconds: int
    """TPM2_PT_LOCKOUT_RECOVERY: seconds before lockoutAuth may be tried again after a failure."""
    owner_auth_set: bool
    """TPMA_PERMANENT.ownerAuthSet."""
    endorsement_auth_set: bool
    lockout_auth_set: bool


@dataclass(frozen=True)
class TpmFacts:
    """What the TPM says about itself, through tpm2-pytss (ESAPI) or, failing that, sysfs."""

    present: bool
    """A TPM answered (tss) or the kernel lists one (sysfs)."""
    source: Literal["tss", "sysfs", "none"]
    """Where the facts came from: the TSS over the configured TCTI, or /sys/class/tpm."""
    looked_at: tuple[str, ...]
    """Every source consulted, with what it said, for the evidence of an absent TPM."""
    family: str | None = None
    """TPM2_PT_FAMILY_INDICATOR ("2.0"), or the sysfs `tpm_version_major` as "2.0"/"1.2"."""
    manufacturer: str | None = None
    """TPM2_PT_MANUFACTURER decoded to its TCG vendor id (IBM, INTC, NTC, NTZ, IFX, STM, ...)."""
    manufacturer_name: str | None = None
    """The vendor's name from the TCG vendor registry, when known."""
    vendor_strings: str | None = None
    """TPM2_PT_VENDOR_STRING_1..4 concatenated."""
    firmware_version: str | None = None
    """TPM2_PT_FIRMWARE_VERSION_1/2 as major.minor.build.patch."""
    spec_revision: str | None = None
    """TPM2_PT_REVISION as e.g. "1.59", with TPM2_PT_LEVEL and TPM2_PT_YEAR/DAY_OF_YEAR."""
    pcr_banks: tuple[str, ...] | Unavailable = field(
        default_factory=lambda: Unavailable("not read")
    )
    """Hash algorithms with at least one PCR allocated (TPM2_CAP_PCRS)."""
    algorithms: tuple[str, ...] | Unavailable = field(
        default_factory=lambda: Unavailable("not read")
    )
    """Algorithms the TPM implements (TPM2_CAP_ALGS), lower case (sha256, sm3_256, sm4, ...)."""
    ek_certificates: tuple[EkCertificate, ...] | Unavailable = field(
        default_factory=lambda: Unavailable("not read")
    )
    """EK certificates found at the TCG NV indices."""
    lockout: TpmLockout | Unavailable = field(default_factory=lambda: Unavailable("not read"))
