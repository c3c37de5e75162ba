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
    Msg,
    Outcome,
    Severity,
    errored,
    failed,
    not_applicable,
    passed,
    require,
)
from checks.net.wording import answered
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

    def matches(self, exchange: HttpExchange) -> Msg | None:
        """The marker found, or None."""
        for name, pattern in self.headers:
            for key, value in exchange.headers:
                if key.lower() == name and re.search(pattern, value, re.IGNORECASE):
                    return Msg(f"{key}: {value}", f"{key}: {value}")
        for pattern in self.body:
            match = re.search(pattern, exchange.body, re.IGNORECASE)
            if match:
                text = repr(match.group(0))
                return Msg(f"body contains {text}", f"响应正文包含 {text}")
        if exchange.status in self.statuses:
            return Msg(f"status {exchange.status}", f"状态码 {exchange.status}")
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


def identify(exchanges: Sequence[HttpExchange]) -> tuple[str, Msg] | None:
    """(product, marker) of the first fingerprint found in the answers."""
    for exchange in exchanges:
        for fingerprint in FINGERPRINTS:
            marker = fingerprint.matches(exchange)
            if marker is not None:
                return fingerprint.product, marker
    return None


def _blocked(baseline: HttpExchange, attack: AttackExchange) -> Msg | None:
    """How the attack request was blocked, or None when it was answered like any request."""
    answer = attack.exchange
    if answer.status is None:
        if answer.error and any(word in answer.error for word in _CUT):
            return Msg(f"connection cut ({answer.error})", f"连接被切断（{answer.error}）")
        return None
    found = identify([answer])
    if found is not None:
        product, marker = found
        return Msg(
            f"{answer.status} with {product}'s marker ({marker.en})",
            f"{answer.status}，带有 {product} 的特征（{marker.zh}）",
        )
    if answer.status >= 400 and answer.status != baseline.status:
        status = f"{answer.status} {answer.reason}".strip()
        return Msg(status, status)
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
        yield not_applicable(
            Msg("the zones file lists no web application", "区域文件未列出 Web 应用")
        )
        return
    for app in apps:
        target = app.name
        evidence: dict[str, object] = {"url": app.url, "zone": app.zone, "vantage": app.vantage}
        if not app.require_waf:
            yield not_applicable(
                Msg(
                    f"{target}: require_waf is false in the zones file",
                    f"{target}：区域文件中 require_waf 为 false，不要求部署 WAF",
                ),
                evidence,
                target=target,
            )
            continue
        baseline = app.baseline
        if app.error or baseline is None:
            yield errored(
                Msg(
                    f"{target}: could not probe {app.url}: {app.error or 'no answer'}",
                    f"{target}：无法探测 {app.url}：{app.error or '无应答'}",
                ),
                evidence,
                target=target,
            )
            continue
        evidence["baseline"] = baseline.summary()
        ordinary = answered(baseline)
        if baseline.status is None or baseline.status >= 400:
            yield errored(
                Msg(
                    f"{target}: the ordinary request to {app.url} did not succeed "
                    f"({ordinary.en}): attacks cannot be told apart",
                    f"{target}：对 {app.url} 的正常请求未成功（{ordinary.zh}），"
                    "无法判断攻击请求是否被阻断",
                ),
                evidence,
                target=target,
            )
            continue
        if not app.attacks:
            yield errored(
                Msg(f"{target}: no attack request was sent", f"{target}：未发送攻击请求"),
                evidence,
                target=target,
            )
            continue
        outcomes = [(attack, _blocked(baseline, attack)) for attack in app.attacks]
        evidence["attacks"] = [
            {
                "kind": attack.kind,
                "url": attack.exchange.url,
                "answer": attack.exchange.summary(),
                "blocked": how.en if how is not None else None,
            }
            for attack, how in outcomes
        ]
        found = identify([a.exchange for a, how in outcomes if how] + [baseline])
        name = found[0] if found else None
        evidence["waf"] = name or "not identified"
        if found:
            evidence["waf_marker"] = found[1].en
        blockers = {a.exchange.header("server") for a, how in outcomes if how}
        blockers.discard(None)
        app_server = baseline.header("server")
        if blockers and blockers != {app_server}:
            evidence["answered_blocks"] = sorted(str(b) for b in blockers)
        let_through = [attack for attack, how in outcomes if how is None]
        if let_through:
            first, got = let_through[0], answered(let_through[0].exchange)
            kinds = Msg(
                ", ".join(a.kind for a in let_through), "、".join(a.kind for a in let_through)
            )
            yield failed(
                Msg(
                    f"{target}: {kinds.en} attack requests were answered like ordinary ones, not "
                    f"blocked: {first.exchange.url} -> {got.en} (ordinary request: {ordinary.en})",
                    f"{target}：{kinds.zh} 攻击请求未被阻断，与正常请求一样得到应答："
                    f"{first.exchange.url} -> {got.zh}（正常请求：{ordinary.zh}）",
                ),
                evidence,
                target=target,
            )
            continue
        who = Msg(name, name) if name else _unnamed(blockers)
        first_how = next(how for _, how in outcomes if how is not None)
        kinds = Msg(", ".join(a.kind for a, _ in outcomes), "、".join(a.kind for a, _ in outcomes))
        yield passed(
            Msg(
                f"{target}: ordinary request {ordinary.en}; {len(outcomes)} attack requests "
                f"({kinds.en}) blocked ({first_how.en}) by {who.en}",
                f"{target}：正常请求 {ordinary.zh}；{len(outcomes)} 个攻击请求（{kinds.zh}）"
                f"均被阻断（{first_how.zh}），阻断方：{who.zh}",
            ),
            evidence,
            target=target,
        )


def _unnamed(blockers: set[str | None]) -> Msg:
    """A WAF seen only by its behaviour, with the servers that answered its blocks."""
    servers = sorted(str(b) for b in blockers)
    shown = ", ".join(servers) or "no Server header"
    return Msg(
        f"a WAF (product not identified; blocks answered by {shown})",
        f"未识别产品的 WAF（阻断应答的 Server 头：{'、'.join(servers)}）"
        if servers
        else "未识别产品的 WAF（阻断应答无 Server 头）",
    )
