"""TLS floor: every TLS service the scan found refuses the forbidden protocol versions (by
default SSLv3, TLS 1.0 and TLS 1.1; a site may forbid more).

Every open TCP port the scan found was offered each version alone, with every cipher suite the
prober's OpenSSL has at security level 0 (so neither the client's floor nor an uncommon suite
such as CAMELLIA hides a server that allows the version), and where that found no suite in
common, with a hand-made ClientHello carrying every suite code (the only way for SSLv3, which
OpenSSL 3 cannot speak). A version is refused only when the server said so (protocol_version
alert, another version chosen, or no TLS at all); a handshake that failed for another reason
leaves it untested, and the check says `error` naming it. One result per service.
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
                    f"(accepts {', '.join(allowed) or 'no version it was offered'})",
                    f"{target}（{service.zone}）拒绝 {'、'.join(forbidden_versions)}"
                    f"（接受 {'、'.join(allowed) or '所尝试的版本均未接受'}）",
                ),
                evidence,
                target=target,
            )
