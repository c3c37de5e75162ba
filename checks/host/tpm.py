"""TPM 2.0 checks: a TPM answers, a strong PCR bank is allocated, an EK certificate is provisioned,
and dictionary-attack protection is not tripped. Pure functions of `TpmFacts`.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from checks.facts import HostFacts, TpmFacts
from checks.model import Outcome, Severity, Unavailable, errored, failed, passed, require
from checks.registry import check


def _tpm(facts: Any) -> TpmFacts:
    return require(facts.tpm, TpmFacts)


def _needs_tpm2(facts: HostFacts) -> str | None:
    tpm = facts.tpm
    if isinstance(tpm, TpmFacts) and not (tpm.present and tpm.family == "2.0"):
        return "no TPM 2.0 is present (see tpm.present)"
    return None


@check(
    "tpm.present",
    title_en="A TPM 2.0 is present and answers",
    title_zh="服务器配备并启用 TPM 2.0 可信平台模块",
    severity=Severity.HIGH,
    needs=("tpm",),
)
def tpm_present(facts: HostFacts) -> Iterator[Outcome]:
    tpm = _tpm(facts)
    evidence = {
        "source": tpm.source,
        "looked_at": list(tpm.looked_at),
        "family": tpm.family,
        "manufacturer": tpm.manufacturer,
        "manufacturer_name": tpm.manufacturer_name,
        "firmware_version": tpm.firmware_version,
        "spec_revision": tpm.spec_revision,
    }
    if not tpm.present:
        yield failed("no TPM found; looked at " + "; ".join(tpm.looked_at), evidence)
    elif tpm.family != "2.0":
        yield failed(f"TPM family {tpm.family} found, 2.0 required", evidence)
    else:
        who = tpm.manufacturer or "unknown vendor"
        yield passed(
            f"TPM 2.0 ({who}, firmware {tpm.firmware_version or '?'}) via {tpm.source}", evidence
        )


@check(
    "tpm.pcr_bank",
    title_en="A SHA-256 or SM3-256 PCR bank is allocated",
    title_zh="TPM 已分配 SHA-256 或 SM3-256 PCR 组",
    severity=Severity.MEDIUM,
    needs=("tpm",),
    applies_to=_needs_tpm2,
    params={"accepted_banks": ["sha256", "sha384", "sha512", "sm3_256"]},
)
def tpm_pcr_bank(facts: HostFacts, accepted_banks: list[str]) -> Iterator[Outcome]:
    banks = _tpm(facts).pcr_banks
    if isinstance(banks, Unavailable):
        yield errored(f"PCR banks unavailable: {banks.reason}")
        return
    strong = [b for b in banks if b in accepted_banks]
    evidence = {"allocated": list(banks), "accepted": accepted_banks}
    if strong:
        yield passed("allocated PCR banks: " + ", ".join(banks), evidence)
    else:
        yield failed("only weak PCR banks allocated: " + (", ".join(banks) or "none"), evidence)


@check(
    "tpm.ek_certificate",
    title_en="An endorsement-key certificate is provisioned in TPM NV",
    title_zh="TPM 背书密钥（EK）证书已写入 NV",
    severity=Severity.MEDIUM,
    needs=("tpm",),
    applies_to=_needs_tpm2,
)
def tpm_ek_certificate(facts: HostFacts) -> Iterator[Outcome]:
    certs = _tpm(facts).ek_certificates
    if isinstance(certs, Unavailable):
        yield errored(f"EK certificates unavailable: {certs.reason}")
        return
    good = [c for c in certs if c.parse_error is None]
    evidence = {
        "certificates": [
            {
                "nv_index": f"0x{c.nv_index:08X}",
                "key_type": c.key_type,
                "issuer": c.issuer,
                "subject": c.subject,
                "not_after": c.not_after,
                "sha256": c.sha256,
                "parse_error": c.parse_error,
            }
            for c in certs
        ]
    }
    if good:
        first = good[0]
        yield passed(f"EK certificate ({first.key_type}) issued by {first.issuer}", evidence)
    elif certs:
        yield failed(
            "EK NV index holds no parsable certificate: " + str(certs[0].parse_error), evidence
        )
    else:
        yield failed(
            "no EK certificate at NV 0x01C00002 (RSA), 0x01C0000A (ECC) or the high range "
            "0x01C00012-0x01C0001E",
            evidence,
        )


@check(
    "tpm.lockout",
    title_en="The TPM is not in dictionary-attack lockout",
    title_zh="TPM 未处于字典攻击锁定状态",
    severity=Severity.MEDIUM,
    needs=("tpm",),
    applies_to=_needs_tpm2,
)
def tpm_lockout(facts: HostFacts) -> Iterator[Outcome]:
    lockout = _tpm(facts).lockout
    if isinstance(lockout, Unavailable):
        yield errored(f"lockout state unavailable: {lockout.reason}")
        return
    evidence = {
        "in_lockout": lockout.in_lockout,
        "failed_tries": lockout.counter,
        "max_tries": lockout.max_tries,
        "recovery_seconds": lockout.recovery_seconds,
        "lockout_auth_set": lockout.lockout_auth_set,
    }
    if lockout.in_lockout:
        yield failed(
            f"TPM is in lockout after {lockout.counter} failed authorizations "
            f"(max {lockout.max_tries}); one is forgiven every {lockout.recovery_seconds} s",
            evidence,
        )
    else:
        yield passed(
            f"not in lockout ({lockout.counter}/{lockout.max_tries} failed tries)", evidence
        )
