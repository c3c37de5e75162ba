"""TLS floor: every TLS service the scan found refuses SSLv3, TLS 1.0 and TLS 1.1.

Each version was offered alone (SSLv3 by a hand-made ClientHello, TLS 1.0/1.1 at OpenSSL
security level 0 so the client's own floor cannot hide a server that allows them). One result
per service.
"""

from __future__ import annotations

from collections.abc import Iterator

from checks.facts.network import NetFacts, TlsService
from checks.model import (
    Outcome,
    Severity,
    errored,
    failed,
    not_applicable,
    passed,
    require,
)
from checks.registry import check


def _services(facts: NetFacts) -> tuple[TlsService, ...]:
    services: tuple[TlsService, ...] = require(facts.tls, tuple)
    return services


@check(
    "net.tls_floor",
    title_en="TLS services refuse SSLv3, TLS 1.0 and TLS 1.1",
    title_zh="TLS 服务禁用 SSLv3、TLS 1.0 和 TLS 1.1",
    severity=Severity.MEDIUM,
    needs=("tls",),
    params={"forbidden_versions": ["SSLv3", "TLSv1", "TLSv1.1"]},
)
def tls_floor(facts: NetFacts, forbidden_versions: list[str]) -> Iterator[Outcome]:
    services = _services(facts)
    if not services:
        yield not_applicable(
            f"no TLS service found ({facts.tls_probed} open TCP endpoints offered a handshake)"
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
                f"{target} ({service.zone}) accepts "
                + ", ".join(f"{v.version} ({v.detail})" for v in accepted),
                evidence,
                target=target,
            )
        elif untested or missing:
            why = [f"{v.version}: {v.detail}" for v in untested] + [
                f"{name}: not offered" for name in missing
            ]
            yield errored(f"{target}: could not test {'; '.join(why)}", evidence, target=target)
        else:
            yield passed(
                f"{target} ({service.zone}) refuses {', '.join(forbidden_versions)} "
                f"(accepts {', '.join(allowed)})",
                evidence,
                target=target,
            )
