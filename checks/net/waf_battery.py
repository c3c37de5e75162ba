"""How the WAF battery's answers read: each attack request judged beside its benign twin (blocked,
let through, or undecided), whether a block can be told from the application's own errors, and
which WAF product the answers name — first by the fingerprints kept here (Chinese vendors'
block pages among them), then by wafw00f's plugins when it is installed, run over the recorded
exchanges rather than requests of its own.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Literal

from checks.facts.network import AttackExchange, HttpExchange
from checks.model import Msg

Verdict = Literal["blocked", "through", "undecided"]
CLASSES = ("sqli", "xss", "traversal", "cmdi", "scanner", "protocol")
"""The attack classes a WAF is bought for, in the order messages name them."""


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
    Fingerprint(
        "Safedog (安全狗)",
        headers=(("server", r"Safedog"), ("set-cookie", r"safedog-flow-item=")),
        body=(r"safedogsite/", r"404\.safedog\.cn"),
    ),
    Fingerprint(
        "Yunsuo (云锁)", headers=(("set-cookie", r"yunsuo_session="),), body=(r"yunsuologo",)
    ),
)

_CUT = ("reset", "closed", "refused", "timed out", "EOF", "Remote end")


@dataclass(frozen=True)
class Judged:
    """One attack request of the battery, judged beside its benign twin."""

    attack: AttackExchange
    verdict: Verdict
    why: Msg
    """How it was blocked, what it got, or why it cannot be told."""
    marks: tuple[Msg, ...] = ()
    """What tells a block from the application's own error; empty when nothing does."""

    @property
    def where(self) -> str:
        return f"{self.attack.kind}/{self.attack.location}"


def judge(attack: AttackExchange) -> tuple[Verdict, Msg]:  # noqa: PLR0911 — one return per case
    """Blocked, let through or undecided, from the attack's answer beside its twin's."""
    answer, twin = attack.exchange, attack.benign
    if twin is None or twin.status is None:
        why = twin.error if twin is not None else "not sent"
        return "undecided", Msg(
            f"its benign twin got no answer ({why})", f"其正常对照请求无应答（{why}）"
        )
    if answer.status is None:
        if answer.error and any(word in answer.error for word in _CUT):
            return "blocked", Msg(
                f"connection cut ({answer.error})", f"连接被切断（{answer.error}）"
            )
        return "undecided", Msg(f"no answer ({answer.error})", f"无应答（{answer.error}）")
    status = f"{answer.status} {answer.reason}".strip()
    if answer.status == twin.status:
        if twin.status >= 400:
            return "undecided", Msg(
                f"{status}, as its benign twin", f"{status}，与正常对照请求相同"
            )
        return "through", Msg(status, status)
    if answer.status >= 400:
        return "blocked", Msg(status, status)
    return "through", Msg(status, status)


def _page(exchange: HttpExchange) -> str:
    """The body with the parts that change per request (ids, numbers) blanked."""
    text = re.sub(r"[A-Za-z0-9@_-]{16,}", "#", exchange.body)
    return re.sub(r"\d+", "#", text).strip()


def judge_all(
    attacks: Sequence[AttackExchange], not_found: HttpExchange | None
) -> tuple[Judged, ...]:
    """Every attack judged, and every block's marks of a responder other than the application:
    a connection cut the twin did not get, a WAF product's marker, another Server header than
    the twin's, or a block page shared by blocks of different classes that no benign twin and
    not the application's own error page ever got."""
    verdicts = [(a, *judge(a)) for a in attacks]
    app_pages = {_page(a.benign) for a in attacks if a.benign is not None and a.benign.status}
    if not_found is not None and not_found.status is not None:
        app_pages.add(_page(not_found))
    pages: dict[tuple[int | None, str], set[str]] = {}
    for attack, verdict, _ in verdicts:
        if verdict == "blocked" and attack.exchange.status is not None:
            key = (attack.exchange.status, _page(attack.exchange))
            pages.setdefault(key, set()).add(attack.kind)
    judged = []
    for attack, verdict, why in verdicts:
        marks: list[Msg] = []
        if verdict == "blocked":
            answer, twin = attack.exchange, attack.benign
            assert twin is not None  # noqa: S101 — judge() blocks only beside an answered twin
            if answer.status is None:
                marks.append(Msg("a connection cut", "连接被切断"))
            else:
                named = name_waf(twin, [answer])
                if named is not None:
                    marks.append(Msg(f"{named[0]}'s marker", f"{named[0]} 的特征"))
                server, twin_server = answer.header("server"), twin.header("server")
                if server != twin_server:
                    marks.append(
                        Msg(
                            f"Server {server or '(none)'} where the twin got "
                            f"{twin_server or '(none)'}",
                            f"Server 为 {server or '（无）'}，正常对照为 {twin_server or '（无）'}",
                        )
                    )
                page = _page(answer)
                classes = pages.get((answer.status, page), set())
                if page and page not in app_pages and len(classes) > 1:
                    marks.append(
                        Msg(
                            "a block page no benign request got",
                            "正常请求从未得到的阻断页面",
                        )
                    )
        judged.append(Judged(attack, verdict, why, tuple(marks)))
    return tuple(judged)


# --- naming -------------------------------------------------------------------------------------


def identify(exchanges: Sequence[HttpExchange]) -> tuple[str, Msg] | None:
    """(product, marker) of the first fingerprint kept here found in the answers."""
    for exchange in exchanges:
        for fingerprint in FINGERPRINTS:
            marker = fingerprint.matches(exchange)
            if marker is not None:
                return fingerprint.product, marker
    return None


def name_waf(baseline: HttpExchange, blocks: Sequence[HttpExchange]) -> tuple[str, Msg] | None:
    """(product, marker): the fingerprints kept here first, then wafw00f's, over the blocks
    (each read beside the ordinary answer, as wafw00f reads its own requests)."""
    found = identify([*blocks, baseline])
    if found is not None:
        return found
    for block in blocks:
        product = _wafw00f(baseline, block)
        if product is not None:
            return product, Msg("wafw00f fingerprint", "wafw00f 指纹")
    return None


@functools.cache
def _wafw00f_plugins() -> tuple[tuple[str, Callable[[Any], object]], ...]:
    """wafw00f's detection functions in its own priority order; empty when not installed."""
    try:
        from wafw00f.manager import load_plugins  # type: ignore[import-untyped]
        from wafw00f.wafprio import wafdetectionsprio  # type: ignore[import-untyped]
    except ImportError:
        return ()
    plugins = {module.NAME: module.is_waf for module in load_plugins().values()}
    order = [name for name in wafdetectionsprio if name in plugins]
    order += sorted(set(plugins) - set(order))
    return tuple((name, plugins[name]) for name in order)


def _wafw00f(baseline: HttpExchange, block: HttpExchange) -> str | None:
    recorded = _Recorded(baseline, block)
    for name, is_waf in _wafw00f_plugins():
        if is_waf(recorded):
            return str(name)
    return None


class _Response:
    """What wafw00f's matchers read of a `requests` response, from a recorded exchange."""

    def __init__(self, exchange: HttpExchange) -> None:
        self.status_code = exchange.status
        self.reason = exchange.reason
        self.text = exchange.body
        self.headers: dict[str, str] = {}
        for key, value in exchange.headers:
            # Several headers of one name reach wafw00f joined by ", ", as `requests` joins them.
            known = next((k for k in self.headers if k.lower() == key.lower()), key)
            self.headers[known] = (
                f"{self.headers[known]}, {value}" if known in self.headers else value
            )

    def header(self, name: str) -> str | None:
        return next((v for k, v in self.headers.items() if k.lower() == name.lower()), None)


class _Recorded:
    """The five matchers wafw00f's plugins call (`wafw00f.main.WAFW00F.match*`), over the
    ordinary answer (`rq`) and a blocked attack's (`attackres`), sending nothing."""

    def __init__(self, baseline: HttpExchange, block: HttpExchange) -> None:
        self.rq = _Response(baseline)
        self.attackres = _Response(block)

    def _pick(self, attack: bool) -> _Response:
        return self.attackres if attack else self.rq

    def matchHeader(self, headermatch: tuple[str, str], attack: bool = False) -> bool:
        header, pattern = headermatch
        value = self._pick(attack).header(header)
        if not value:
            return False
        values = value.split(", ") if header.lower() == "set-cookie" else [value]
        return any(re.search(pattern, v, re.IGNORECASE) for v in values)

    def matchStatus(self, statuscode: int, attack: bool = True) -> bool:
        return self._pick(attack).status_code == statuscode

    def matchCookie(self, match: str, attack: bool = False) -> bool:
        return self.matchHeader(("Set-Cookie", match), attack=attack)

    def matchReason(self, reasoncode: str, attack: bool = True) -> bool:
        return str(self._pick(attack).reason) == reasoncode

    def matchContent(self, regex: str, attack: bool = True) -> bool:
        return re.search(regex, self._pick(attack).text, re.IGNORECASE) is not None
