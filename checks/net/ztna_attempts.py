"""How the ZTNA check reads one request a client without valid credentials sent to a gateway
(no certificate, one from the scanner's untrusted CA, an expired one; on the published path,
`/api/`, a random path, a path with `..`): refused, let through, or undecided — beside what the
site's own client certificate got on the same path, when the zones file gives one.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from enum import Enum
from urllib.parse import urlsplit

from checks.facts.network import GatewayAttempt, HttpExchange
from checks.model import Msg
from checks.net.wording import answered

REFUSALS = (400, 401, 403, 407, 495, 496)
"""Statuses meaning "no credentials, no entry" (495/496: nginx's certificate errors)."""
_SIGN_IN_WORDS = ("login", "signin", "sign_in", "sign-in", "auth", "sso", "oauth", "saml")
"""In a redirect's target: the ZTNA products' way of refusing (send the client to sign in)."""
_SIGN_IN_PAGE = ('type="password"', "type='password'", "sign in", "log in", "登录")
_NO_HTTP_REFUSALS = ("TLS", "connection reset")
"""No HTTP answer, but a refusal: a TLS alert (a certificate the gateway will not take) or a
reset once the gateway has seen who the client is."""

CREDENTIALS = {
    "none": Msg("without a certificate", "不带证书"),
    "untrusted": Msg("with a certificate from an untrusted CA", "使用不受信任 CA 签发的证书"),
    "expired": Msg("with an expired certificate", "使用已过期证书"),
}


class Verdict(Enum):
    REFUSED = "refused"
    LET_IN = "let in"
    UNDECIDED = "undecided"


@dataclass(frozen=True)
class Judged:
    attempt: GatewayAttempt
    verdict: Verdict
    why: Msg

    def line(self) -> Msg:
        """`/api/ without a certificate: 200 OK` and its Chinese."""
        how = CREDENTIALS.get(self.attempt.credential, Msg(self.attempt.credential, ""))
        return Msg(
            f"{self.attempt.path} {how.en}: {self.why.en}",
            f"{self.attempt.path} {how.zh}：{self.why.zh}",
        )


def _title(body: str) -> str:
    start, end = body.find("<title>"), body.find("</title>")
    if 0 <= start < end:
        return body[start + 7 : end].strip()
    return body.strip().splitlines()[0][:80] if body.strip() else ""


def _to_sign_in(location: str, gateway_host: str) -> bool:
    target = urlsplit(location)
    elsewhere = bool(target.hostname) and target.hostname != gateway_host
    words = (target.path + "?" + target.query).lower()
    return elsewhere or any(w in words for w in _SIGN_IN_WORDS)


def judge(  # noqa: PLR0911 — one return per verdict, in the order they are decided
    attempt: GatewayAttempt, baseline: HttpExchange | None, gateway_host: str
) -> Judged:
    """`baseline`: what the site's client certificate got on the same path (None: not sent)."""
    answer = attempt.exchange
    got = answered(answer)
    if answer.status is None:
        error = answer.error or "no detail"
        if error.startswith(_NO_HTTP_REFUSALS):
            return Judged(attempt, Verdict.REFUSED, got)
        return Judged(attempt, Verdict.UNDECIDED, got)
    if answer.status in REFUSALS:
        title = _title(answer.body)
        if title:
            got = Msg(f"{got.en} ({title})", f"{got.zh}（{title}）")
        return Judged(attempt, Verdict.REFUSED, got)
    location = answer.header("location")
    if 300 <= answer.status < 400 and location and _to_sign_in(location, gateway_host):
        return Judged(
            attempt,
            Verdict.REFUSED,
            Msg(f"{got.en}, sent to sign in at {location}", f"{got.zh}，被转去登录：{location}"),
        )
    if answer.status < 300 and any(w in answer.body.lower() for w in _SIGN_IN_PAGE):
        return Judged(
            attempt, Verdict.REFUSED, Msg(f"{got.en}, a sign-in page", f"{got.zh}，登录页面")
        )
    if baseline is not None and baseline.status is not None:
        if (baseline.status, baseline.body) == (answer.status, answer.body):
            return Judged(
                attempt,
                Verdict.LET_IN,
                Msg(
                    f"{got.en}, the very answer the site's client certificate gets",
                    f"{got.zh}，与持有本站客户端证书者得到的应答相同",
                ),
            )
        if answer.status >= 400:
            held = answered(baseline)
            return Judged(
                attempt,
                Verdict.REFUSED,
                Msg(
                    f"{got.en}, unlike the site's client certificate ({held.en})",
                    f"{got.zh}，不同于本站客户端证书得到的应答（{held.zh}）",
                ),
            )
    if answer.status < 400:
        return Judged(attempt, Verdict.LET_IN, got)
    return Judged(
        attempt,
        Verdict.UNDECIDED,
        Msg(
            f"{got.en}, neither a refusal nor comparable with a certificate holder's answer",
            f"{got.zh}，既非拒绝，也无持证者的应答可比",
        ),
    )


def judge_all(attempts: Sequence[GatewayAttempt], gateway_url: str) -> list[Judged]:
    """Every attempt of a refused credential, judged beside the configured one on its path."""
    host = urlsplit(gateway_url).hostname or ""
    baselines = {a.path: a.exchange for a in attempts if a.credential == "configured"}
    return [judge(a, baselines.get(a.path), host) for a in attempts if a.credential in CREDENTIALS]
