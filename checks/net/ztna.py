"""ZTNA coverage: a critical system is covered when it is dark from every user and internet
zone (no answer on its ports, measured from inside each) AND published through its ZTNA gateway,
which refuses every client without valid credentials — no certificate, one from a CA of the
scanner's making, an expired one; on the published path, `/api/`, a random path and a path with
`..` (nginx: 400 "No required SSL certificate was sent"; 401/403; a failed handshake; a redirect
to sign in) — and, when the zones file gives a client certificate, answers with it. One result
per system, plus the overall coverage: covered systems / critical systems.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import replace
from urllib.parse import urlsplit

from checks.facts.network import (
    REACHABLE_STATES,
    CriticalSystem,
    GatewayAttempt,
    GatewayProbe,
    NetFacts,
    PortObservation,
)
from checks.model import (
    Msg,
    Outcome,
    Severity,
    Status,
    errored,
    failed,
    not_applicable,
    passed,
    require,
)
from checks.net.matrix import cut, lines, pair
from checks.net.wording import answered, first_of, joined
from checks.net.ztna_attempts import REFUSALS, Judged, Verdict, judge, judge_all
from checks.registry import check

_CERT_TEXT = ("certificate", "ssl", "unauthorized", "forbidden", "authentication")


def _gateways(facts: NetFacts) -> dict[str, GatewayProbe]:
    gateways: tuple[GatewayProbe, ...] = require(facts.gateways, tuple)
    return {g.system: g for g in gateways}


def _direct(facts: NetFacts, system: CriticalSystem) -> tuple[list[PortObservation], list[Msg]]:
    """Direct answers from user and internet zones, and the zones that could not be measured."""
    answers: list[PortObservation] = []
    unknown: list[Msg] = []
    for zone in facts.zones:
        if zone.name == system.zone or not (zone.users or zone.internet):
            continue
        measured = pair(facts, zone.name, system.zone)
        for cell in measured.cells:
            if cell.spec not in system.ports:
                continue
            answers += [
                o
                for o in cell.observations
                if o.address == system.address and o.state in REACHABLE_STATES
            ]
        problem = measured.incomplete
        if problem is not None:
            unknown.append(Msg(f"{zone.name}: {problem.en}", f"{zone.name}：{problem.zh}"))
    return answers, unknown


def _refusal(gateway: GatewayProbe) -> Msg | None:
    """How the gateway refused the anonymous client, or None when it let it in."""
    if not gateway.handshake:
        error = gateway.handshake_error
        return Msg(
            f"TLS handshake refused ({error or 'no detail'})",
            f"TLS 握手被拒绝（{error or '无详情'}）",
        )
    anonymous = gateway.anonymous
    if anonymous is None or anonymous.status is None:
        error = anonymous.error if anonymous else gateway.error
        return Msg(f"connection ended without an answer ({error})", f"连接结束，无应答（{error}）")
    if anonymous.status in REFUSALS:
        text = anonymous.body.lower()
        detail = next((w for w in _CERT_TEXT if w in text), None)
        status = f"{anonymous.status} {anonymous.reason}"
        if detail:
            title = _title(anonymous.body)
            return Msg(f"{status} ({title})", f"{status}（{title}）")
        return Msg(status, status)
    # A redirect to sign in, or a sign-in page, is how identity-aware gateways refuse.
    path = urlsplit(gateway.gateway_url).path or "/"
    judged = judge(
        GatewayAttempt(path, "none", anonymous),
        gateway.authenticated,
        urlsplit(gateway.gateway_url).hostname or "",
    )
    return judged.why if judged.verdict is Verdict.REFUSED else None


def _title(body: str) -> str:
    start, end = body.find("<title>"), body.find("</title>")
    if 0 <= start < end:
        return body[start + 7 : end].strip()
    return body.strip().splitlines()[0][:80] if body.strip() else ""


@check(
    "net.ztna_coverage",
    title_en="Critical systems are reachable only through a ZTNA gateway",
    title_zh="关键业务系统仅经零信任网关（ZTNA）访问",
    severity=Severity.HIGH,
    needs=("matrix", "gateways"),
    params={"min_coverage_percent": 100.0},
)
def ztna_coverage(facts: NetFacts, min_coverage_percent: float) -> Iterator[Outcome]:
    systems = facts.critical_systems
    if not systems:
        yield not_applicable(
            Msg("the zones file lists no critical system", "区域文件未列出关键业务系统")
        )
        return
    gateways = _gateways(facts)
    outcomes: list[Outcome] = []
    for system in systems:
        outcomes.append(_system(facts, system, gateways.get(system.name)))
    covered = [o for o in outcomes if o.status is Status.PASS]
    coverage = round(100.0 * len(covered) / len(systems), 1)
    for outcome in outcomes:
        yield replace(outcome, evidence={**outcome.evidence, "coverage_percent": coverage})
    not_covered = [str(o.target) for o in outcomes if o.status is Status.FAIL]
    unknown = [str(o.target) for o in outcomes if o.status is Status.ERROR]
    summary = {
        "coverage_percent": coverage,
        "covered": [str(o.target) for o in covered],
        "not_covered": not_covered,
        "unknown": unknown,
        "min_coverage_percent": min_coverage_percent,
    }
    message = Msg(
        f"ZTNA coverage {coverage:g}% ({len(covered)} of {len(systems)} critical systems dark "
        f"from user and internet zones and published through their gateway)",
        f"ZTNA 覆盖率 {coverage:g}%（{len(systems)} 个关键业务系统中有 {len(covered)} 个"
        f"对用户区和互联网区均不可达，并经其网关发布）",
    )
    if coverage >= min_coverage_percent:
        yield passed(message, summary, target="coverage")
    elif not_covered:
        names = ", ".join(not_covered)
        yield failed(
            Msg(f"{message.en}; not covered: {names}", f"{message.zh}；未覆盖：{names}"),
            summary,
            target="coverage",
        )
    else:
        names = ", ".join(unknown)
        yield errored(
            Msg(f"{message.en}; unknown: {names}", f"{message.zh}；无法判定：{names}"),
            summary,
            target="coverage",
        )


def _system(  # noqa: PLR0911 — one return per verdict, in the order they are decided
    facts: NetFacts, system: CriticalSystem, gateway: GatewayProbe | None
) -> Outcome:
    target = system.name
    direct, unknown = _direct(facts, system)
    evidence: dict[str, object] = {
        "address": system.address,
        "ports": list(system.ports),
        "zone": system.zone,
        "gateway": system.ztna_gateway,
        "direct": cut(lines(direct)),
        "unmeasured_zones": [u.en for u in unknown],
    }
    gateway_url = system.ztna_gateway
    if direct:
        first = first_of(direct)
        return failed(
            Msg(
                f"{target}: reachable directly, bypassing the ZTNA gateway: {first.en}",
                f"{target}：可绕过 ZTNA 网关直接访问：{first.zh}",
            ),
            evidence,
            target=target,
        )
    if gateway_url is None:
        return failed(
            Msg(
                f"{target}: not published through a ZTNA gateway (no ztna_gateway)",
                f"{target}：未经 ZTNA 网关发布（未配置 ztna_gateway）",
            ),
            evidence,
            target=target,
        )
    if gateway is None:
        return errored(
            Msg(
                f"{target}: the gateway {gateway_url} was not probed",
                f"{target}：未探测网关 {gateway_url}",
            ),
            evidence,
            target=target,
        )
    evidence["gateway_vantage"] = gateway.vantage
    evidence["gateway_tls"] = gateway.tls_version
    if gateway.vantage is None:
        return failed(
            Msg(
                f"{target}: the gateway {gateway_url} answers no user or internet zone: "
                f"{gateway.error}",
                f"{target}：网关 {gateway_url} 对任何用户区和互联网区均无应答：{gateway.error}",
            ),
            evidence,
            target=target,
        )
    if gateway.error and gateway.anonymous is None:
        return errored(
            Msg(
                f"{target}: gateway probe failed: {gateway.error}",
                f"{target}：网关探测失败：{gateway.error}",
            ),
            evidence,
            target=target,
        )
    refusal = _refusal(gateway)
    if gateway.anonymous is not None:
        evidence["without_credentials"] = gateway.anonymous.summary()
    if refusal is None:
        let_in = answered(gateway.anonymous) if gateway.anonymous else Msg("?", "?")
        return failed(
            Msg(
                f"{target}: the gateway {gateway_url} lets a client without credentials "
                f"through ({let_in.en})",
                f"{target}：网关 {gateway_url} 放行了未携带凭据的客户端（{let_in.zh}）",
            ),
            evidence,
            target=target,
        )
    evidence["refusal"] = refusal.en
    judged = judge_all(gateway.attempts, gateway_url)
    evidence["attempts"] = [f"{j.line().en} ({j.verdict.value})" for j in judged]
    published = Msg(
        "published not verified (no client certificate in the zones file)",
        "发布未验证（区域文件未提供客户端证书）",
    )
    if gateway.authenticated is not None:
        answer = gateway.authenticated
        got = answered(answer)
        evidence["with_credentials"] = answer.summary()
        if answer.status is None or answer.status >= 400:
            return failed(
                Msg(
                    f"{target}: the gateway refuses the configured client certificate too "
                    f"({got.en}): the system is not published through it",
                    f"{target}：网关同样拒绝已配置的客户端证书（{got.zh}），该系统未经网关发布",
                ),
                evidence,
                target=target,
            )
        published = Msg(
            f"published with a client certificate: {got.en}",
            f"使用客户端证书可经网关访问：{got.zh}",
        )
    verdict = _attempts_outcome(target, gateway_url, judged, evidence)
    if verdict is not None:
        return verdict
    if unknown:
        zones = joined(unknown)
        return errored(
            Msg(
                f"{target}: could not measure every user and internet zone: {zones.en}",
                f"{target}：未能测量全部用户区和互联网区：{zones.zh}",
            ),
            evidence,
            target=target,
        )
    tried = _tried(judged)
    return passed(
        Msg(
            f"{target}: dark from every user and internet zone; the gateway {gateway_url} "
            f"refuses a client without credentials ({refusal.en}) and all {tried.en}; "
            f"{published.en}",
            f"{target}：对所有用户区和互联网区均不可达；网关 {gateway_url} 拒绝未携带凭据的"
            f"客户端（{refusal.zh}），也拒绝了全部 {tried.zh}；{published.zh}",
        ),
        evidence,
        target=target,
    )


def _listed(judged: list[Judged], most: int = 3) -> Msg:
    """The first few attempts, and how many more there were."""
    shown = joined([j.line() for j in judged[:most]])
    rest = len(judged) - most
    if rest <= 0:
        return shown
    return Msg(f"{shown.en} (+{rest} more)", f"{shown.zh}（另有 {rest} 项）")


def _tried(judged: list[Judged]) -> Msg:
    """`12 attempts (none, untrusted, expired certificate) on /, /api/, ...`."""
    paths = ", ".join(dict.fromkeys(j.attempt.path for j in judged))
    kinds = list(dict.fromkeys(j.attempt.credential for j in judged))
    return Msg(
        f"{len(judged)} attempts ({', '.join(kinds)}) on {paths}",
        f"{len(judged)} 次尝试（{', '.join(kinds)}），路径 {paths}",
    )


def _attempts_outcome(
    target: str, gateway_url: str, judged: list[Judged], evidence: dict[str, object]
) -> Outcome | None:
    """Fail when any attempt without valid credentials got through; error when one could not
    be told, or none was made; None when every one was refused."""
    admitted = [j for j in judged if j.verdict is Verdict.LET_IN]
    if admitted:
        return failed(
            Msg(
                f"{target}: the gateway {gateway_url} lets clients without valid credentials "
                f"through: {_listed(admitted).en}",
                f"{target}：网关 {gateway_url} 放行了未持有效凭据的客户端：{_listed(admitted).zh}",
            ),
            evidence,
            target=target,
        )
    undecided = [j for j in judged if j.verdict is Verdict.UNDECIDED]
    if undecided:
        return errored(
            Msg(
                f"{target}: could not tell whether the gateway {gateway_url} refused "
                f"{_listed(undecided).en}",
                f"{target}：无法判定网关 {gateway_url} 是否拒绝了：{_listed(undecided).zh}",
            ),
            evidence,
            target=target,
        )
    if not judged:
        return errored(
            Msg(
                f"{target}: the gateway {gateway_url} was probed only without a certificate on "
                "its published path: certificates from other CAs, expired ones and other paths "
                "were not tried",
                f"{target}：仅在发布路径上以不带证书的方式探测了网关 {gateway_url}，"
                "未尝试其他 CA 签发的证书、过期证书及其他路径",
            ),
            evidence,
            target=target,
        )
    return None
