"""Compliance documents built by the real aggregation over generated evidence, for renderer and
snapshot tests: a few hosts (one failing its disk checks, one stale), a lab-like scan, missing
agents and attestations, with Chinese messages. Deterministic: the same arguments give the same
document, so renderers can be compared with golden files."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import msgspec

from checks.catalog import Catalog, builtin_catalogs
from collector.compliance.aggregate import Evidence, Rules, aggregate, check_kinds
from collector.compliance.model import Compliance, Scope
from collector.models import Attestation, EvidenceHost, EvidenceResult, MissingAgent

NOW = datetime(2026, 12, 1, 8, 0, tzinfo=UTC)
_HOST_CHECKS = {
    "tpm.present": ("TPM 2.0 present", "存在 TPM 2.0"),
    "tpm.pcr_bank": ("SHA-256 PCR bank active", "SHA-256 PCR 组已启用"),
    "tpm.ek_certificate": ("EK certificate present", "存在 EK 证书"),
    "tpm.lockout": ("dictionary-attack lockout set", "已设置字典攻击锁定"),
    "host.secure_boot": ("Secure Boot enabled", "安全启动已启用"),
    "disk.encrypted_mounts": ("/var/lib/his encrypted", "/var/lib/his 已加密"),
    "disk.cipher_strength": ("aes-xts-plain64 512-bit key", "aes-xts-plain64 512 位密钥"),
    "disk.swap_encrypted": ("swap encrypted", "交换分区已加密"),
    "disk.key_sealed_by_tpm": ("key sealed by TPM", "密钥由 TPM 封装"),
    "backup.rpo": ("newest backup 4 min old", "最新备份 4 分钟前"),
    "backup.offsite": ("copy at site dc2", "异地副本位于 dc2"),
    "wipe.capability": ("crypto erase available", "支持加密擦除"),
    "log.retention": ("journal keeps 200 days", "日志保留 200 天"),
    "host.firewall_default_deny": ("input policy drop", "入站默认拒绝"),
    "crypto.sm_algorithms": ("SM2/SM3/SM4 available", "支持 SM2/SM3/SM4"),
}
_NET = [
    ("net.segmentation", "office->his", "pass", "no path office->his", "office->his 无通路"),
    (
        "net.segmentation",
        "guest->his",
        "fail",
        "guest->his: 5432/tcp open",
        "guest->his：5432/tcp 开放",
    ),
    ("net.internet_isolation", "his<->internet", "pass", "isolated", "已隔离"),
    ("net.border_firewall", "internet->dmz", "pass", "filtered", "已过滤"),
    ("net.waf", "his-portal", "pass", "ModSecurity blocks 12/12", "ModSecurity 拦截 12/12"),
    (
        "net.ztna_coverage",
        "coverage",
        "fail",
        "1 of 2 systems behind ZTNA",
        "2 个系统中 1 个在 ZTNA 后",
    ),
    ("net.ztna_coverage", "pacs", "fail", "pacs reachable without gateway", "pacs 可绕过网关访问"),
    ("net.tls_floor", "198.18.2.10:443", "pass", "TLS 1.2+ only", "仅 TLS 1.2 及以上"),
]


def _host(n: int, *, age: timedelta, site: str = "dc1", scan: bool = False) -> EvidenceHost:
    name = f"scanner-{n}" if scan else f"his-app-{n:02d}"
    return EvidenceHost(
        host_id=(f"scan:{n:032x}" if scan else f"sha256:{n:064x}"),
        hostname=name,
        agent="medsec-scanner" if scan else name,
        site=None if scan else site,
        addresses=() if scan else (f"198.18.{1 + n % 2}.{10 + n}", "fe80::1"),
        report_pk=n,
        report_id=f"00000000-0000-4000-8000-{n:012d}",
        generated_at=NOW - age,
        received_at=NOW - age + timedelta(seconds=2),
    )


def sample_evidence(hosts: int = 4) -> Evidence:
    """`hosts` agent hosts (the second fails disk.cipher_strength, the last is stale), one scan,
    one missing agent, an attestation on GB/T 8.1.1.2 and an expired one on 8.1.1.3 a."""
    made = [_host(n, age=timedelta(minutes=5)) for n in range(1, hosts)]
    made.append(_host(hosts, age=timedelta(hours=3), site="dc2"))
    scan = _host(hosts + 1, age=timedelta(hours=1), scan=True)
    results: list[EvidenceResult] = []
    for host in made:
        for check_id, (en, zh) in _HOST_CHECKS.items():
            failing = host.report_pk == 2 and check_id == "disk.cipher_strength"
            results.append(
                EvidenceResult(
                    report_pk=host.report_pk,
                    check_id=check_id,
                    status="fail" if failing else "pass",
                    target="/var/lib/his" if check_id.startswith("disk.") else None,
                    message="aes-cbc-essiv 128-bit key" if failing else en,
                    message_zh="aes-cbc-essiv 128 位密钥" if failing else zh,
                    evidence=msgspec.json.encode(
                        {"host": host.hostname, "check": check_id}
                    ).decode(),
                )
            )
    for check_id, target, status, en, zh in _NET:
        results.append(
            EvidenceResult(scan.report_pk, check_id, status, target, en, zh, '{"ports":[5432]}')
        )
    attestations = [
        Attestation(
            id="a-1",
            standard="GB/T 22239-2019",
            clause="8.1.1.2",
            status="pass",
            note="门禁系统验收报告",
            file_name="access-control.pdf",
            file_sha256="ab" * 32,
            created_by="auditor-li",
            created_at=NOW - timedelta(days=3),
            valid_until=NOW + timedelta(days=362),
        ),
        Attestation(
            id="a-2",
            standard="GB/T 22239-2019",
            clause="8.1.1.3 a",
            status="pass",
            note="expired statement",
            file_name=None,
            file_sha256=None,
            created_by="auditor-li",
            created_at=NOW - timedelta(days=400),
            valid_until=NOW - timedelta(days=35),
        ),
    ]
    missing = [MissingAgent("lis-db-01", NOW - timedelta(days=2))]
    return Evidence([*made, scan], results, missing, attestations)


def catalog(key: str) -> Catalog:
    for cat in builtin_catalogs():
        if (key == "mnds") == (cat.standard.id == "MNDS"):
            return cat
    raise KeyError(key)


def sample_compliance(standard: str = "gbt22239-2019-l3", hosts: int = 4) -> Compliance:
    """The aggregation of `sample_evidence(hosts)` against a built-in catalog, judged at NOW."""
    return aggregate(
        catalog(standard),
        sample_evidence(hosts),
        Rules(evaluated_at=NOW),
        check_kinds(),
        scope=Scope(),
        generated_at=NOW,
    )
