"""The network checks' quotations of what a scan saw, in both report languages: an nmap port
line, an HTTP answer, "and N more". Evidence keeps the English lines (`PortObservation.line()`,
`HttpExchange.summary()`) because tools read it; messages quote these. Tool output inside them
(nmap states and reasons, HTTP reason phrases, error texts) stays verbatim in both languages.
"""

from __future__ import annotations

from checks.facts.network import HttpExchange, PortObservation
from checks.model import Msg


def observed(observation: PortObservation) -> Msg:
    """Who saw what, how: the evidence line and its Chinese."""
    o = observation
    ttl = f" ttl {o.reason_ttl}" if o.reason_ttl else ""
    return Msg(
        o.line(),
        f"{o.source} -> {o.target} {o.address} {o.spec} {o.state}"
        f"（{o.reason}{ttl}；{o.scan} 扫描，探测点 {o.vantage}）",
    )


def answered(exchange: HttpExchange) -> Msg:
    """What an HTTP request got back: status and Server header, or why nothing came."""
    if exchange.status is None:
        return Msg(exchange.summary(), f"无 HTTP 应答（{exchange.error}）")
    server = exchange.header("server")
    return Msg(
        exchange.summary(),
        f"{exchange.status} {exchange.reason}" + (f"（Server: {server}）" if server else ""),
    )


def first_of(found: list[PortObservation]) -> Msg:
    """The first observation, and how many more there were."""
    first = observed(found[0])
    if len(found) == 1:
        return first
    rest = len(found) - 1
    return Msg(f"{first.en} (+{rest} more)", f"{first.zh}（另有 {rest} 条）")


def joined(parts: list[Msg], en: str = "; ", zh: str = "；") -> Msg:
    return Msg(en.join(p.en for p in parts), zh.join(p.zh for p in parts))
