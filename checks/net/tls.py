"""TLS floor: every TLS service the scan found refuses the forbidden protocol versions (by
default SSLv3, TLS 1.0 and TLS 1.1; a site may forbid more).

Each version was offered alone (SSLv3 by a hand-made ClientHello, TLS 1.0/1.1 at OpenSSL
security level 0 so the client's own floor cannot hide a server that allows them). One result
per service.
"""

from __future__ import annotations

from collections.abc import Iterator

from checks.facts.network import NetFacts, TlsService
from checks.model import (
    Msg,
    Outcome,
    Severity,
    errored,
    failed,
    not_applicable,
    passed,
    require,
)
from checks.net.wording import joined
from checks.registry import check


def _services(facts: NetFacts) -> tuple[TlsService, ...]:
    services: tuple[TlsService, ...] = require(facts.tls, tuple)
    return services


@check(
    "net.tls_floor",
    title_en="TLS services refuse outdated protocol versions",
    title_zh="TLS 服务禁用不安全的旧版协议",
    severity=Severity.MEDIUM,
    needs=("tls",),
    params={"forbidden_versions": ["SSLv3", "TLSv1", "TLSv1.1"]},
)
def tls_floor(facts: NetFacts, forbidden_versions: list[str]) -> Iterator[Outcome]:
    services = _services(facts)
    if not services:
        yield not_applicable(
            Msg(
                f"no TLS service found ({facts.tls_probed} open TCP endpoints offered a handshake)",
                f"未发现 TLS 服务（已向 {facts.tls_probed} 个开放的 TCP 端点发起握手）",
            )
        )
        return
    for service in services:
        target = service.endpoint
        evidence = {
            "address": service.address,
            "port": service.port,
            "zone": service.zone,
            "vantage": service.vantage,
            "versions": {v.version: f"{v.outcome}: {v.detail}" for v in service.versions},
        }
        accepted = [
            v
            for v in service.versions
            if v.version in forbidden_versions and v.outcome == "accepted"
        ]
        untested = [
            v
            for v in service.versions
            if v.version in forbidden_versions and v.outcome == "untested"
        ]
        missing = [name for name in forbidden_versions if service.outcome(name) is None]
        allowed = [v.version for v in service.versions if v.outcome == "accepted"]
        if accepted:
            yield failed(
                Msg(
                    f"{target} ({service.zone}) accepts "
                    + ", ".join(f"{v.version} ({v.detail})" for v in accepted),
                    f"{target}（{service.zone}）接受已禁用的协议版本 "
                    + "、".join(f"{v.version}（{v.detail}）" for v in accepted),
                ),
                evidence,
                target=target,
            )
        elif untested or missing:
            why = [Msg(f"{v.version}: {v.detail}", f"{v.version}：{v.detail}") for v in untested]
            why += [Msg(f"{name}: not offered", f"{name}：未尝试握手") for name in missing]
            what = joined(why)
            yield errored(
                Msg(f"{target}: could not test {what.en}", f"{target}：无法测试 {what.zh}"),
                evidence,
                target=target,
            )
        else:
            yield passed(
                Msg(
                    f"{target} ({service.zone}) refuses {', '.join(forbidden_versions)} "
                    f"(accepts {', '.join(allowed)})",
                    f"{target}（{service.zone}）拒绝 {'、'.join(forbidden_versions)}"
                    f"（接受 {'、'.join(allowed)}）",
                ),
                evidence,
                target=target,
            )
