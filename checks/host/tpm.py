"""TPM 2.0 checks: a TPM answers, a strong PCR bank is allocated, an EK certificate is provisioned,
and dictionary-attack protection is not tripped. Pure functions of `TpmFacts`.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from checks.facts import HostFacts, TpmFacts
from checks.model import Msg, Outcome, Severity, Unavailable, errored, failed, passed, require
from checks.registry import check


def _tpm(facts: Any) -> TpmFacts:
    return require(facts.tpm, TpmFacts)


def _needs_tpm2(facts: HostFacts) -> Msg | None:
    tpm = facts.tpm
    if isinstance(tpm, TpmFacts) and not (tpm.present and tpm.family == "2.0"):
        return Msg(
            "no TPM 2.0 is present (see tpm.present)", "未检测到 TPM 2.0（参见 tpm.present）"
        )
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
        yield failed(
            Msg(
                "no TPM found; looked at " + "; ".join(tpm.looked_at),
                "未发现 TPM；已检查：" + "；".join(tpm.looked_at),
            ),
            evidence,
        )
    elif tpm.family != "2.0":
        yield failed(
            Msg(
                f"TPM family {tpm.family} found, 2.0 required",
                f"发现的 TPM 版本为 {tpm.family}，要求 2.0",
            ),
            evidence,
        )
    else:
        firmware, source = tpm.firmware_version or "?", tpm.source
        who = Msg(tpm.manufacturer or "unknown vendor", tpm.manufacturer or "厂商未知")
        yield passed(
            Msg(
                f"TPM 2.0 ({who.en}, firmware {firmware}) via {source}",
                f"TPM 2.0（{who.zh}，固件 {firmware}），经 {source} 读取",
            ),
            evidence,
        )


@check(
    "tpm.pcr_bank",
    title_en="A PCR bank with a strong hash algorithm is allocated",
    title_zh="TPM 已分配采用强杂凑算法的 PCR 组",
    severity=Severity.MEDIUM,
    needs=("tpm",),
    applies_to=_needs_tpm2,
    params={"accepted_banks": ["sha256", "sha384", "sha512", "sm3_256"]},
)
def tpm_pcr_bank(facts: HostFacts, accepted_banks: list[str]) -> Iterator[Outcome]:
    banks = _tpm(facts).pcr_banks
    if isinstance(banks, Unavailable):
        yield errored(
            Msg(f"PCR banks unavailable: {banks.reason}", f"无法获取 PCR 组：{banks.reason}")
        )
        return
    strong = [b for b in banks if b in accepted_banks]
    evidence = {"allocated": list(banks), "accepted": accepted_banks}
    allocated = ", ".join(banks)
    if strong:
        yield passed(
            Msg(f"allocated PCR banks: {allocated}", f"已分配的 PCR 组：{allocated}"), evidence
        )
    else:
        yield failed(
            Msg(
                f"only weak PCR banks allocated: {allocated or 'none'}",
                f"未分配强杂凑算法的 PCR 组（已分配：{allocated or '无'}）",
            ),
            evidence,
        )


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
        yield errored(
            Msg(
                f"EK certificates unavailable: {certs.reason}",
                f"无法获取 EK 证书：{certs.reason}",
            )
        )
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
        yield passed(
            Msg(
                f"EK certificate ({first.key_type}) issued by {first.issuer}",
                f"EK 证书（{first.key_type}），签发者 {first.issuer}",
            ),
            evidence,
        )
    elif certs:
        error = certs[0].parse_error
        yield failed(
            Msg(
                f"EK NV index holds no parsable certificate: {error}",
                f"EK 所在 NV 索引中没有可解析的证书：{error}",
            ),
            evidence,
        )
    else:
        yield failed(
            Msg(
                "no EK certificate at NV 0x01C00002 (RSA), 0x01C0000A (ECC) or the high range "
                "0x01C00012-0x01C0001E",
                "NV 0x01C00002（RSA）、0x01C0000A（ECC）及高位区间 0x01C00012-0x01C0001E "
                "均无 EK 证书",
            ),
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
        yield errored(
            Msg(
                f"lockout state unavailable: {lockout.reason}",
                f"无法获取锁定状态：{lockout.reason}",
            )
        )
        return
    evidence = {
        "in_lockout": lockout.in_lockout,
        "failed_tries": lockout.counter,
        "max_tries": lockout.max_tries,
        "recovery_seconds": lockout.recovery_seconds,
        "lockout_auth_set": lockout.lockout_auth_set,
    }
    counter, max_tries = lockout.counter, lockout.max_tries
    if lockout.in_lockout:
        every = lockout.recovery_seconds
        yield failed(
            Msg(
                f"TPM is in lockout after {counter} failed authorizations (max {max_tries}); "
                f"one is forgiven every {every} s",
                f"TPM 因 {counter} 次授权失败（上限 {max_tries}）处于锁定状态；"
                f"失败计数每 {every} s 减 1",
            ),
            evidence,
        )
    else:
        yield passed(
            Msg(
                f"not in lockout ({counter}/{max_tries} failed tries)",
                f"未处于锁定状态（失败尝试 {counter}/{max_tries}）",
            ),
            evidence,
        )
