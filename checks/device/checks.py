"""The checks over an SNMP inventory (`DeviceFacts`): how each device's SNMP management is
secured (`net.snmp_secure`), and which security devices sit on each border of the zones file
(`net.security_devices`).

Both judge only what the inventory saw. A device that did not answer, a fact the inventory did
not gather (whether the device speaks SNMPv3, whether it answers a well-known community) or a
role classified below the confidence a verdict needs is `error` naming what is missing, never
a pass. No secret reaches a result: the facts hold none (the configured community is reduced to
a guessable flag), and the evidence repeats only public words.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterator, Sequence
from dataclasses import dataclass

from checks.facts.devices import BorderFacts, DeviceFacts, NetworkDevice, SnmpAccess
from checks.model import Msg, Outcome, Severity, errored, failed, passed
from checks.registry import check

ROLE_ZH = {
    "firewall": "防火墙",
    "ips": "入侵防御系统（IPS）",
    "waf": "Web 应用防火墙（WAF）",
    "router": "路由器",
    "switch": "交换机",
    "wireless": "无线设备",
    "server": "服务器",
    "power": "电源设备",
    "printer": "打印机",
    "storage": "存储设备",
    "other": "其他设备",
}
STRONG_AUTH = frozenset({"sha", "sha224", "sha256", "sha384", "sha512"})
"""HMAC-SHA family (RFC 3414 SHA-1 and RFC 7860 SHA-2): what authPriv should authenticate with."""
STRONG_PRIV = frozenset({"aes", "aes192", "aes256"})
"""AES-CFB (RFC 3826 and its 192/256-bit extensions): what authPriv should encrypt with."""


def target(device: NetworkDevice) -> str:
    """How a device is named in results: `ADDRESS:PORT`."""
    return f"{device.address}:{device.port}"


def _quoted(words: Sequence[str]) -> str:
    return ", ".join(f"'{w}'" for w in words)


# --- net.snmp_secure --------------------------------------------------------------------------


def _access_evidence(device: NetworkDevice) -> dict[str, object]:
    access = device.access
    return {
        "address": device.address,
        "port": device.port,
        "source": device.source,
        "sys_name": device.sys_name,
        "vendor": device.classification.vendor,
        "role": device.classification.role,
        "version": access.version,
        "security_level": access.security_level,
        "auth_protocol": access.auth_protocol,
        "priv_protocol": access.priv_protocol,
        "community_guessable": access.community_guessable,
        "v3_supported": access.v3_supported,
        "well_known_tried": list(access.well_known_tried),
        "answered_well_known": list(access.answered_well_known),
        "error": device.error,
    }


def _untried(name: str, device: NetworkDevice) -> Msg:
    """Why a device that would otherwise pass cannot: the well-known communities were not tried."""
    why = (
        Msg(
            "it was found by a sweep, and medsec tries them only on devices the targets file names",
            "该设备由网段扫描发现，medsec 只对目标文件列出的设备尝试常见团体名",
        )
        if device.source == "sweep"
        else Msg("the inventory did not try them", "本次采集未尝试常见团体名")
    )
    return Msg(
        f"{name}: cannot judge: whether it answers well-known communities (public, private) "
        f"was not tried: {why.en}; list it in the targets file to judge it",
        f"{name}：无法判定：未尝试该设备是否响应常见团体名（public、private 等）：{why.zh}；"
        "将其列入目标文件后方可判定",
    )


def _v1v2c(name: str, access: SnmpAccess, accept_v2c_where_no_v3: bool) -> tuple[str, Msg]:
    """(status, message) for a device medsec speaks SNMPv1/v2c to."""
    v = f"SNMPv{access.version}"
    if access.community_guessable:
        return "fail", Msg(
            f"{name}: the {v} community medsec is configured with is guessable (a well-known "
            "word or too short): anyone on the path can read the device",
            f"{name}：medsec 配置的 {v} 团体名易被猜测（常见词或过短），路径上任何人都能读取该设备",
        )
    if access.community_guessable is None:
        return "error", Msg(
            f"{name}: cannot judge: whether the configured {v} community is guessable was not "
            "determined",
            f"{name}：无法判定：未判断所配置的 {v} 团体名是否易被猜测",
        )
    if access.v3_supported:
        return "fail", Msg(
            f"{name}: the device speaks SNMPv3 but medsec is configured to use {v}, whose "
            "community travels in clear text: configure an SNMPv3 authPriv user and turn "
            f"{v} off",
            f"{name}：设备支持 SNMPv3，但 medsec 配置为使用 {v}，其团体名以明文传输："
            f"应配置 SNMPv3 authPriv 用户并关闭 {v}",
        )
    if access.v3_supported is None:
        return "error", Msg(
            f"{name}: cannot judge: whether the device speaks SNMPv3 was not asked, so {v} "
            "cannot be accepted as the best it offers",
            f"{name}：无法判定：未探测设备是否支持 SNMPv3，无法认定 {v} 是其可用的最佳方式",
        )
    if not accept_v2c_where_no_v3:
        return "fail", Msg(
            f"{name}: {v} with a strong community, but its community travels in clear text "
            "and this site accepts only SNMPv3 authPriv (the device does not speak SNMPv3)",
            f"{name}：{v} 团体名强度足够，但以明文传输，本站点只接受 SNMPv3 authPriv"
            "（该设备不支持 SNMPv3）",
        )
    return "pass", Msg(
        f"{name}: {v} with a strong community, answering no well-known one "
        f"({_quoted(access.well_known_tried)} tried); the community travels in clear text, "
        "which passes only because the device does not speak SNMPv3",
        f"{name}：{v} 团体名强度足够，且不响应常见团体名（已尝试 "
        f"{_quoted(access.well_known_tried)}）；团体名以明文传输，"
        "仅因该设备不支持 SNMPv3 而判定通过",
    )


def _v3(
    name: str,
    access: SnmpAccess,
    weak_auth: Sequence[str],
    weak_priv: Sequence[str],
) -> tuple[str, Msg]:
    """(status, message) for a device medsec speaks SNMPv3 to."""
    level, auth, priv = access.security_level, access.auth_protocol, access.priv_protocol
    if level is None:
        return "error", Msg(
            f"{name}: cannot judge: the SNMPv3 security level is unknown",
            f"{name}：无法判定：SNMPv3 安全级别未知",
        )
    if level != "authPriv":
        plain = (
            "is not encrypted"
            if level == "authNoPriv"
            else "is neither authenticated nor encrypted"
        )
        plain_zh = "未加密" if level == "authNoPriv" else "既无鉴别也未加密"
        return "fail", Msg(
            f"{name}: SNMPv3 at {level}: management traffic {plain}; use authPriv",
            f"{name}：SNMPv3 安全级别为 {level}：管理流量{plain_zh}；应使用 authPriv",
        )
    weak = [p for p, listed in ((auth, weak_auth), (priv, weak_priv)) if p and p in listed]
    if weak:
        return "fail", Msg(
            f"{name}: SNMPv3 authPriv with weak algorithms ({', '.join(weak)}): use SHA "
            "authentication (SHA-2 where the device has it) and AES privacy",
            f"{name}：SNMPv3 authPriv 使用了弱算法（{', '.join(weak)}）："
            "应使用 SHA 鉴别（设备支持时用 SHA-2）与 AES 加密",
        )
    if auth not in STRONG_AUTH or priv not in STRONG_PRIV:
        return "error", Msg(
            f"{name}: cannot judge: SNMPv3 authPriv with authentication {auth or 'unknown'} "
            f"and privacy {priv or 'unknown'}",
            f"{name}：无法判定：SNMPv3 authPriv 的鉴别算法为 {auth or '未知'}，"
            f"加密算法为 {priv or '未知'}",
        )
    return "pass", Msg(
        f"{name}: SNMPv3 authPriv ({auth.upper()}, {priv.upper()}), answering no well-known "
        f"community ({_quoted(access.well_known_tried)} tried)",
        f"{name}：SNMPv3 authPriv（{auth.upper()}，{priv.upper()}），不响应常见团体名"
        f"（已尝试 {_quoted(access.well_known_tried)}）",
    )


@check(
    "net.snmp_secure",
    title_en="Network devices are managed over authenticated, encrypted SNMP with no default "
    "community",
    title_zh="网络设备的 SNMP 管理无默认或易猜测团体名，并采用鉴别与加密（SNMPv3 authPriv）",
    severity=Severity.HIGH,
    needs=("devices",),
    params={
        "weak_auth": ["md5"],
        "weak_priv": ["des", "3des"],
        "accept_v2c_where_no_v3": True,
    },
)
def snmp_secure(
    facts: DeviceFacts,
    weak_auth: list[str],
    weak_priv: list[str],
    accept_v2c_where_no_v3: bool,
) -> Iterator[Outcome]:
    if not facts.devices:
        yield errored(
            Msg(
                "no device in the inventory: nothing to judge",
                "清单中没有设备：无可判定对象",
            ),
            {"targets_file": facts.targets_file, "swept": list(facts.swept)},
        )
        return
    for device in facts.devices:
        name = target(device)
        evidence = _access_evidence(device)
        access = device.access
        if access.answered_well_known:
            words = _quoted(access.answered_well_known)
            yield failed(
                Msg(
                    f"{name}: answers the well-known SNMP community {words}: anyone who can "
                    "reach it can read the device",
                    f"{name}：响应常见 SNMP 团体名 {words}：任何能访问到它的人都能读取该设备",
                ),
                evidence,
                target=name,
            )
            continue
        if device.error is not None and not device.sys_object_id:
            # A partial answer (identity read, a walk cut short) still shows how it is reached.
            yield errored(
                Msg(
                    f"{name}: cannot judge: the device did not answer: {device.error}",
                    f"{name}：无法判定：设备无应答：{device.error}",
                ),
                evidence,
                target=name,
            )
            continue
        if access.version == "3":
            status, message = _v3(name, access, weak_auth, weak_priv)
        else:
            status, message = _v1v2c(name, access, accept_v2c_where_no_v3)
        if status == "pass" and not access.well_known_tried:
            # Everything configured is sound, but the device may still answer `public`.
            status, message = "error", _untried(name, device)
        verdict = {"pass": passed, "fail": failed, "error": errored}[status]
        yield verdict(message, evidence, target=name)


# --- net.security_devices ---------------------------------------------------------------------


@dataclass(frozen=True)
class _Placed:
    """A device on a border, and how medsec knows it is there."""

    device: NetworkDevice
    how: str
    """`addresses` (it holds an address in both zones) or `declared` (the targets file says)."""


def _networks(cidrs: Sequence[str]) -> list[ipaddress.IPv4Network | ipaddress.IPv6Network]:
    return [ipaddress.ip_network(c, strict=False) for c in cidrs]


def _inside(
    address: str, networks: Sequence[ipaddress.IPv4Network | ipaddress.IPv6Network]
) -> bool:
    try:
        ip = ipaddress.ip_address(address.split("%", 1)[0])
    except ValueError:
        return False
    return any(ip.version == n.version and ip in n for n in networks)


def _declares(device: NetworkDevice, border: BorderFacts) -> bool:
    a, b = border.zones
    return any(
        declared.replace(" ", "") in (f"{a}<->{b}", f"{b}<->{a}")
        for declared in device.declared_borders
    )


def _placement(device: NetworkDevice, border: BorderFacts) -> str | None:
    """`addresses`, `declared` or None (not on the border, as far as its facts show)."""
    first, second = (_networks(c) for c in border.cidrs)
    addresses = device.addresses
    if any(_inside(a, first) for a in addresses) and any(_inside(a, second) for a in addresses):
        return "addresses"
    if _declares(device, border):
        return "declared"
    return None


def _device_line(device: NetworkDevice) -> dict[str, object]:
    c = device.classification
    return {
        "device": target(device),
        "sys_name": device.sys_name,
        "vendor": c.vendor,
        "role": c.role,
        "confidence": c.confidence,
        "signals": list(c.signals),
        "rule": c.rule,
        "model": device.model,
    }


def _named(device: NetworkDevice) -> Msg:
    c = device.classification
    label = device.sys_name or c.vendor or ""
    return Msg(
        f"{target(device)} ({label + ', ' if label else ''}{c.role} {c.confidence:.2f})",
        f"{target(device)}（{label + '，' if label else ''}{ROLE_ZH.get(c.role, c.role)} "
        f"{c.confidence:.2f}）",
    )


def _join(items: Sequence[Msg]) -> Msg:
    if not items:
        return Msg("none", "无")
    return Msg("; ".join(m.en for m in items), "；".join(m.zh for m in items))


def _roles(roles: Sequence[str]) -> Msg:
    return Msg(", ".join(roles), "、".join(ROLE_ZH.get(r, r) for r in roles))


def _undecided(device: NetworkDevice, missing: Sequence[str], min_confidence: float) -> Msg | None:
    """Why this device, not seen on the border, might still be the missing one; None: its facts
    rule that out (its addresses are known, or it is confidently of a role not missing)."""
    if device.error is not None:
        return Msg(
            f"{target(device)} did not answer ({device.error})",
            f"{target(device)} 无应答（{device.error}）",
        )
    c = device.classification
    if device.interfaces or (c.role not in missing and c.confidence >= min_confidence):
        return None
    return Msg(
        f"{target(device)} ({c.role} {c.confidence:.2f}) gave no interfaces",
        f"{target(device)}（{ROLE_ZH.get(c.role, c.role)} {c.confidence:.2f}）未返回接口信息",
    )


def _no_borders(facts: DeviceFacts) -> Msg | None:
    if facts.borders:
        return None
    return Msg(
        "no zones file with borders was given: nothing says which security devices a border needs",
        "未提供含区域边界的区域文件：无从判断各边界应部署哪些安全设备",
    )


@check(
    "net.security_devices",
    title_en="A firewall (and, where the policy asks, a WAF or IPS) sits on every border",
    title_zh="每个区域边界部署防火墙（按策略要求部署 WAF、IPS）",
    severity=Severity.HIGH,
    needs=("devices",),
    params={"min_confidence": 0.6},
    applies_to=_no_borders,
)
def security_devices(facts: DeviceFacts, min_confidence: float) -> Iterator[Outcome]:
    for border in facts.borders:
        yield _judge_border(facts, border, min_confidence)


def _judge_border(facts: DeviceFacts, border: BorderFacts, min_confidence: float) -> Outcome:
    name = border.name
    placed = [_Placed(d, how) for d in facts.devices if (how := _placement(d, border)) is not None]
    present: dict[str, list[NetworkDevice]] = {}
    weak: dict[str, list[NetworkDevice]] = {}
    for p in placed:
        c = p.device.classification
        (present if c.confidence >= min_confidence else weak).setdefault(c.role, []).append(
            p.device
        )
    missing = [role for role in border.require if role not in present]
    undecided = [
        (d, why)
        for d in facts.devices
        if not any(p.device is d for p in placed)
        and (why := _undecided(d, missing, min_confidence)) is not None
    ]
    evidence: dict[str, object] = {
        "border": name,
        "zones": list(border.zones),
        "cidrs": [list(c) for c in border.cidrs],
        "require": list(border.require),
        "min_confidence": min_confidence,
        "devices": [{**_device_line(p.device), "placed_by": p.how} for p in placed],
        "missing": missing,
        "undecided": [target(d) for d, _ in undecided],
    }
    there = _join([_named(p.device) for p in placed])
    if not missing:
        found = _join(
            [
                Msg(
                    f"{role}: {', '.join(target(d) for d in present[role])}",
                    f"{ROLE_ZH.get(role, role)}：{'、'.join(target(d) for d in present[role])}",
                )
                for role in border.require
            ]
        )
        return passed(
            Msg(
                f"{name}: every required role sits on the border ({found.en}); devices there: "
                f"{there.en}",
                f"{name}：边界上已部署所需的全部设备（{found.zh}）；边界上的设备：{there.zh}",
            ),
            evidence,
            target=name,
        )
    need = _roles(missing)
    guesses = [d for role in missing for d in weak.get(role, [])]
    if guesses:
        said = _join([_named(d) for d in guesses])
        return errored(
            Msg(
                f"{name}: cannot judge: no {need.en} classified with confidence "
                f"{min_confidence:.2f} or more; candidates below it: {said.en} (add a rule to "
                "roles.yaml for the product line)",
                f"{name}：无法判定：没有置信度达到 {min_confidence:.2f} 的{need.zh}；"
                f"低于该置信度的候选：{said.zh}（请在 roles.yaml 中为该产品线添加规则）",
            ),
            evidence,
            target=name,
        )
    if undecided:
        said = _join([why for _, why in undecided])
        return errored(
            Msg(
                f"{name}: cannot judge: no {need.en} seen on the border, but devices whose "
                f"place is unknown could be it: {said.en}; devices there: {there.en}",
                f"{name}：无法判定：边界上未见{need.zh}，但以下位置未知的设备可能在该边界上："
                f"{said.zh}；边界上的设备：{there.zh}",
            ),
            evidence,
            target=name,
        )
    return failed(
        Msg(
            f"{name}: no {need.en} on the border; devices there: {there.en}",
            f"{name}：边界上缺少{need.zh}；边界上的设备：{there.zh}",
        ),
        evidence,
        target=name,
    )
