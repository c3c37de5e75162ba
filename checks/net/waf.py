"""A web application firewall protects every web application the zones file says needs one,
judged by behaviour: a battery of attack requests covering the classes a WAF is bought for (SQL
injection, XSS, path traversal, command injection, a scanner's User-Agent, a protocol
violation) in the query, path, body and headers, each beside a benign twin of the same shape.
It passes only when every class is blocked and each block can be told from the application's
own errors (a WAF's marker, another responder, a connection cut, or a block page no benign
request got); a class let through fails, naming it; a class whose answers cannot be told apart
is `error`. The WAF is named when its answers carry a known marker (`waf_battery`).
"""

from __future__ import annotations

from collections.abc import Iterator

from checks.facts.network import NetFacts, WebAppProbe
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
from checks.net.waf_battery import (
    CLASSES,
    FINGERPRINTS,
    Fingerprint,
    Judged,
    identify,
    judge_all,
    name_waf,
)
from checks.net.wording import answered
from checks.registry import check

__all__ = ["FINGERPRINTS", "Fingerprint", "identify", "waf"]


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
        yield _verdict(app, evidence)


def _classes(judged: tuple[Judged, ...], verdict: str) -> list[str]:
    """Attack classes, in battery order, with at least one request of that verdict."""
    kinds = {j.attack.kind for j in judged if j.verdict == verdict}
    return [k for k in CLASSES if k in kinds] + sorted(kinds - set(CLASSES))


def _listed(judged: list[Judged]) -> Msg:
    """`sqli (query, body), xss (body)`: classes with the locations concerned."""
    by_kind: dict[str, list[str]] = {}
    for j in judged:
        by_kind.setdefault(j.attack.kind, []).append(j.attack.location)
    en = ", ".join(f"{k} ({', '.join(v)})" for k, v in by_kind.items())
    zh = "、".join(f"{k}（{'、'.join(v)}）" for k, v in by_kind.items())
    return Msg(en, zh)


def _verdict(app: WebAppProbe, evidence: dict[str, object]) -> Outcome:
    target, baseline = app.name, app.baseline
    assert baseline is not None  # noqa: S101 — checked by the caller
    ordinary = answered(baseline)
    judged = judge_all(app.attacks, app.not_found)
    evidence["not_found"] = app.not_found.summary() if app.not_found else None
    evidence["attacks"] = [
        {
            "kind": j.attack.kind,
            "location": j.attack.location,
            "request": j.attack.payload,
            "answer": j.attack.exchange.summary(),
            "benign": j.attack.benign.summary() if j.attack.benign else None,
            "verdict": j.verdict,
            "how": j.why.en,
            "marks": [m.en for m in j.marks],
        }
        for j in judged
    ]
    blocks = [j for j in judged if j.verdict == "blocked"]
    found = name_waf(baseline, [j.attack.exchange for j in blocks])
    name = found[0] if found else None
    evidence["waf"] = name or "not identified"
    if found:
        evidence["waf_marker"] = found[1].en
    servers = {j.attack.exchange.header("server") for j in blocks if j.attack.exchange.status}
    if servers - {baseline.header("server")}:
        evidence["answered_blocks"] = sorted(str(s) for s in servers)
    through = [j for j in judged if j.verdict == "through"]
    blocked_kinds = [
        k for k in _classes(judged, "blocked") if k not in {j.attack.kind for j in through}
    ]
    through_kinds = _classes(judged, "through")
    evidence["classes_through"] = through_kinds
    evidence["classes_blocked"] = blocked_kinds
    if through:
        first, got = through[0], answered(through[0].attack.exchange)
        twin = answered(first.attack.benign) if first.attack.benign else ordinary
        kinds = Msg(", ".join(through_kinds), "、".join(through_kinds))
        stopped = Msg(", ".join(blocked_kinds) or "none", "、".join(blocked_kinds) or "无")
        where = _listed(through)
        return failed(
            Msg(
                f"{target}: {kinds.en} attack requests were answered like their benign twins, "
                f"not blocked: {where.en}; e.g. {first.attack.payload} -> {got.en} (benign "
                f"twin: {twin.en}); classes blocked throughout: {stopped.en}",
                f"{target}：{kinds.zh} 攻击请求未被阻断，与正常对照请求一样得到应答：{where.zh}；"
                f"例如 {first.attack.payload} -> {got.zh}（正常对照：{twin.zh}）；"
                f"全部被阻断的攻击类别：{stopped.zh}",
            ),
            evidence,
            target=target,
        )
    missing = [k for k in CLASSES if k not in {j.attack.kind for j in judged}]
    unmarked = [j for j in blocks if not j.marks]
    undecided = [k for k in _classes(judged, "undecided") if k not in blocked_kinds]
    if missing or undecided or unmarked:
        reasons: list[Msg] = []
        if missing:
            reasons.append(Msg(f"not sent: {', '.join(missing)}", f"未发送：{'、'.join(missing)}"))
        if undecided:
            first_undecided = next(j for j in judged if j.attack.kind == undecided[0])
            reasons.append(
                Msg(
                    f"cannot be told: {', '.join(undecided)} (e.g. {first_undecided.where}: "
                    f"{first_undecided.why.en})",
                    f"无法判断：{'、'.join(undecided)}（例如 {first_undecided.where}："
                    f"{first_undecided.why.zh}）",
                )
            )
        if unmarked:
            where = _listed(unmarked)
            example = unmarked[0]
            reasons.append(
                Msg(
                    f"refused, but nothing tells the refusal from the application's own errors: "
                    f"{where.en} (e.g. {example.attack.payload} -> "
                    f"{answered(example.attack.exchange).en}, same responder as its benign twin, "
                    "no WAF marker, no block page of its own)",
                    f"被拒绝，但无法与应用自身的错误应答区分：{where.zh}（例如 "
                    f"{example.attack.payload} -> {answered(example.attack.exchange).zh}，"
                    "应答方与正常对照相同，无 WAF 特征，无独有的阻断页面）",
                )
            )
        return errored(
            Msg(
                f"{target}: the evidence of a WAF is too weak: " + "; ".join(r.en for r in reasons),
                f"{target}：WAF 存在的证据不足：" + "；".join(r.zh for r in reasons),
            ),
            evidence,
            target=target,
        )
    who = Msg(name, name) if name else _unnamed(servers)
    marks = {m.en: m for j in blocks for m in j.marks}
    how = {f"{answered(j.attack.exchange).en}": answered(j.attack.exchange) for j in blocks}
    kinds = Msg(", ".join(blocked_kinds), "、".join(blocked_kinds))
    shown = list(how.values())[:3]
    return passed(
        Msg(
            f"{target}: ordinary request {ordinary.en}; all {len(blocked_kinds)} attack classes "
            f"({kinds.en}) blocked in {len(blocks)} requests beside their benign twins "
            f"({'; '.join(h.en for h in shown)}), told from the application's own errors by "
            f"{', '.join(list(marks)[:3])}; blocked by {who.en}",
            f"{target}：正常请求 {ordinary.zh}；全部 {len(blocked_kinds)} 类攻击（{kinds.zh}）"
            f"的 {len(blocks)} 个请求均被阻断（{'；'.join(h.zh for h in shown)}），"
            "对应的正常对照请求均正常应答；可与应用自身的错误区分："
            f"{'、'.join(m.zh for m in list(marks.values())[:3])}；阻断方：{who.zh}",
        ),
        evidence,
        target=target,
    )


def _unnamed(servers: set[str | None]) -> Msg:
    """A WAF seen only by its behaviour, with the servers that answered its blocks."""
    named = sorted(str(b) for b in servers if b)
    shown = ", ".join(named) or "no Server header"
    return Msg(
        f"a WAF (product not identified; blocks answered by {shown})",
        f"未识别产品的 WAF（阻断应答的 Server 头：{'、'.join(named)}）"
        if named
        else "未识别产品的 WAF（阻断应答无 Server 头）",
    )
