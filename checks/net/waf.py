"""A web application firewall protects every web application the zones file says needs one: an
ordinary request succeeds, and requests carrying recognisable attack strings (XSS, SQL
injection, path traversal) are blocked — refused with another status than the ordinary request
got, cut at the connection, or answered with a WAF's block page.

The WAF is named when its answers carry a known marker (the public fingerprints wafw00f uses:
ModSecurity, Chaitin SafeLine, NSFOCUS, Qi An Xin / 360 WangZhanBao, Huawei Cloud WAF). Sangfor,
Huawei's on-premises WAF and most Chinese appliances publish no marker; their blocks are
recognised by behaviour, and the evidence names the server that answered the blocks.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Sequence
from dataclasses import dataclass

from checks.facts.network import AttackExchange, HttpExchange, NetFacts, WebAppProbe
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


@dataclass(frozen=True)
class Fingerprint:
    """Markers that name a WAF product in an answer (any one suffices)."""

    product: str
    headers: tuple[tuple[str, str], ...] = ()
    """(header name, regex on its value)."""
    body: tuple[str, ...] = ()
    """Regexes on the body."""
    statuses: tuple[int, ...] = ()
    """Statuses only this product uses."""

    def matches(self, exchange: HttpExchange) -> str | None:
        """The marker found, or None."""
        for name, pattern in self.headers:
            for key, value in exchange.headers:
                if key.lower() == name and re.search(pattern, value, re.IGNORECASE):
                    return f"{key}: {value}"
        for pattern in self.body:
            match = re.search(pattern, exchange.body, re.IGNORECASE)
            if match:
                return f"body contains {match.group(0)!r}"
        if exchange.status in self.statuses:
            return f"status {exchange.status}"
        return None


FINGERPRINTS: tuple[Fingerprint, ...] = (
    Fingerprint(
        "ModSecurity",
        headers=(("server", r"mod_security|NOYB"),),
        body=(
            r"This.error.was.generated.by.Mod.?Security",
            r"rules.of.the.mod.security.module",
            r"mod.security.rules.triggered",
            r"Protected.by.Mod.?Security",
            r"/modsecurity.errorpage/",
        ),
    ),
    Fingerprint("Chaitin SafeLine (长亭雷池)", body=(r"SafeLine", r"<!--\s*event[_ ]id:")),
    Fingerprint("NSFOCUS WAF (绿盟)", headers=(("server", r"NSFocus"),)),
    Fingerprint(
        "Qi An Xin / 360 WangZhanBao (奇安信网站卫士)",
        headers=(("server", r"qianxin-waf"), ("wzws-ray", r"."), ("x-powered-by-360wzb", r".")),
        body=(r"wzws-waf-cgi/", r"wangshan\.360\.cn"),
        statuses=(493,),
    ),
    Fingerprint(
        "Huawei Cloud WAF (华为云)",
        headers=(("server", r"HuaweiCloudWAF"), ("set-cookie", r"HWWAFSESID=")),
        body=(r"hwclouds\.com", r"hws_security@"),
    ),
)

_CUT = ("reset", "closed", "refused", "timed out", "EOF", "Remote end")


def identify(exchanges: Sequence[HttpExchange]) -> tuple[str, str] | None:
    """(product, marker) of the first fingerprint found in the answers."""
    for exchange in exchanges:
        for fingerprint in FINGERPRINTS:
            marker = fingerprint.matches(exchange)
            if marker is not None:
                return fingerprint.product, marker
    return None


def _blocked(baseline: HttpExchange, attack: AttackExchange) -> str | None:
    """How the attack request was blocked, or None when it was answered like any request."""
    answer = attack.exchange
    if answer.status is None:
        if answer.error and any(word in answer.error for word in _CUT):
            return f"connection cut ({answer.error})"
        return None
    found = identify([answer])
    if found is not None:
        return f"{answer.status} with {found[0]}'s marker ({found[1]})"
    if answer.status >= 400 and answer.status != baseline.status:
        return f"{answer.status} {answer.reason}".strip()
    return None


def _app(facts: NetFacts) -> tuple[WebAppProbe, ...]:
    apps: tuple[WebAppProbe, ...] = require(facts.web_apps, tuple)
    return apps


@check(
    "net.waf",
    title_en="Web applications that need one sit behind a WAF that blocks attacks",
    title_zh="需防护的 Web 应用部署 WAF 并阻断攻击请求",
    severity=Severity.HIGH,
    needs=("web_apps",),
)
def waf(facts: NetFacts) -> Iterator[Outcome]:
    apps = _app(facts)
    if not apps:
        yield not_applicable("the zones file lists no web application")
        return
    for app in apps:
        target = app.name
        evidence: dict[str, object] = {"url": app.url, "zone": app.zone, "vantage": app.vantage}
        if not app.require_waf:
            yield not_applicable(f"{target}: require_waf is false in the zones file", evidence,
                                 target=target)  # fmt: skip
            continue
        baseline = app.baseline
        if app.error or baseline is None:
            yield errored(f"{target}: could not probe {app.url}: {app.error or 'no answer'}",
                          evidence, target=target)  # fmt: skip
            continue
        evidence["baseline"] = baseline.summary()
        if baseline.status is None or baseline.status >= 400:
            yield errored(
                f"{target}: the ordinary request to {app.url} did not succeed "
                f"({baseline.summary()}): attacks cannot be told apart",
                evidence,
                target=target,
            )
            continue
        if not app.attacks:
            yield errored(f"{target}: no attack request was sent", evidence, target=target)
            continue
        outcomes = [(attack, _blocked(baseline, attack)) for attack in app.attacks]
        evidence["attacks"] = [
            {
                "kind": attack.kind,
                "url": attack.exchange.url,
                "answer": attack.exchange.summary(),
                "blocked": how,
            }
            for attack, how in outcomes
        ]
        found = identify([a.exchange for a, how in outcomes if how] + [baseline])
        name = found[0] if found else None
        evidence["waf"] = name or "not identified"
        if found:
            evidence["waf_marker"] = found[1]
        blockers = {a.exchange.header("server") for a, how in outcomes if how}
        blockers.discard(None)
        app_server = baseline.header("server")
        if blockers and blockers != {app_server}:
            evidence["answered_blocks"] = sorted(str(b) for b in blockers)
        let_through = [attack for attack, how in outcomes if how is None]
        if let_through:
            first = let_through[0]
            yield failed(
                f"{target}: {', '.join(a.kind for a in let_through)} attack requests were "
                f"answered like ordinary ones, not blocked: {first.exchange.url} -> "
                f"{first.exchange.summary()} (ordinary request: {baseline.summary()})",
                evidence,
                target=target,
            )
            continue
        who = name or "a WAF (product not identified"
        if not name:
            shown = ", ".join(sorted(str(b) for b in blockers)) or "no Server header"
            who += f"; blocks answered by {shown})"
        first_how = outcomes[0][1]
        yield passed(
            f"{target}: ordinary request {baseline.summary()}; {len(outcomes)} attack requests "
            f"({', '.join(a.kind for a, _ in outcomes)}) blocked ({first_how}) by {who}",
            evidence,
            target=target,
        )
