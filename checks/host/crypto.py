"""National cryptography: the SM algorithms a site requires (SM2, SM3 and SM4 unless it narrows
them) are available to applications through OpenSSL and to the kernel (dm-crypt, IPsec, IMA)
through its crypto API. One result for each (targets "openssl" and "kernel"). Pure functions of
`CryptoFacts`.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from checks.facts import HostFacts
from checks.facts.crypto import SM_ALGORITHMS, CryptoFacts, KernelCryptoFacts, OpenSslFacts
from checks.model import Msg, Outcome, Severity, Unavailable, errored, failed, passed, require
from checks.registry import check


def _crypto(facts: Any) -> CryptoFacts:
    return require(facts.crypto, CryptoFacts)


def _required(required: list[str]) -> list[str]:
    wanted = [name.casefold() for name in required]
    unknown = [name for name in wanted if name not in SM_ALGORITHMS]
    if unknown:
        raise ValueError(f"required names unknown algorithms {unknown} (known: sm2, sm3, sm4)")
    return wanted


def _openssl(openssl: OpenSslFacts | Unavailable, required: list[str]) -> Outcome:
    target = "openssl"
    if isinstance(openssl, Unavailable):
        return errored(
            Msg(
                f"OpenSSL unavailable: {openssl.reason}",
                f"无法获取 OpenSSL 信息：{openssl.reason}",
            ),
            target=target,
        )
    if openssl.binary is None:
        return failed(
            Msg(
                "openssl is not installed: no SM algorithms through OpenSSL",
                "未安装 openssl：无法通过 OpenSSL 使用国密算法",
            ),
            {"required": required},
            target=target,
        )
    present: dict[str, list[str]] = {}
    missing: list[str] = []
    unknown: list[str] = []
    unknown_zh: list[str] = []
    for name in required:
        offered = openssl.offered.get(name, ())
        if isinstance(offered, Unavailable):
            unknown.append(f"{name} ({offered.reason})")
            unknown_zh.append(f"{name}（{offered.reason}）")
        elif offered:
            present[name] = list(offered)
        else:
            missing.append(name)
    evidence: dict[str, Any] = {
        "binary": openssl.binary,
        "version": openssl.version,
        "required": required,
        "offered": present,
        "missing": missing,
        "unknown": unknown,
    }
    # "OpenSSL 3.0.19 27 Jan 2026 (Library: ...)" → "OpenSSL 3.0.19"
    who = " ".join((openssl.version or openssl.binary).split()[:2])
    if missing:
        extra = Msg(
            f" (could not list {', '.join(unknown)})" if unknown else "",
            f"（无法列出 {'；'.join(unknown_zh)}）" if unknown else "",
        )
        return failed(
            Msg(
                f"{who} lacks {', '.join(missing)}{extra.en}",
                f"{who} 缺少 {'、'.join(missing)}{extra.zh}",
            ),
            evidence,
            target=target,
        )
    if unknown:
        return errored(
            Msg(
                f"{who}: could not list {', '.join(unknown)}",
                f"{who} 无法列出 {'；'.join(unknown_zh)}",
            ),
            evidence,
            target=target,
        )
    listing = Msg(
        "; ".join(f"{n} ({', '.join(names)})" for n, names in present.items()),
        "；".join(f"{n}（{', '.join(names)}）" for n, names in present.items()),
    )
    return passed(
        Msg(f"{who} offers {listing.en}", f"{who} 提供 {listing.zh}"), evidence, target=target
    )


def _kernel(kernel: KernelCryptoFacts | Unavailable, required: list[str]) -> Outcome:
    target = "kernel"
    if isinstance(kernel, Unavailable):
        return errored(
            Msg(
                f"kernel crypto unavailable: {kernel.reason}",
                f"无法获取内核密码算法信息：{kernel.reason}",
            ),
            target=target,
        )
    if isinstance(kernel.registered, Unavailable):
        reason = kernel.registered.reason
        return errored(
            Msg(f"/proc/crypto unreadable: {reason}", f"无法读取 /proc/crypto：{reason}"),
            {"release": kernel.release},
            target=target,
        )
    loaded: dict[str, list[str]] = {}
    on_demand: dict[str, list[str]] = {}
    missing: list[str] = []
    unknown: list[str] = []
    for name in required:
        entries = kernel.registered.get(name, ())
        if entries:
            loaded[name] = sorted({e.driver or e.name for e in entries})
        elif isinstance(kernel.modules, Unavailable):
            unknown.append(name)
        elif modules := [m.module for m in kernel.modules if m.algorithm == name]:
            on_demand[name] = sorted(set(modules))
        else:
            missing.append(name)
    evidence: dict[str, Any] = {
        "release": kernel.release,
        "required": required,
        "registered": loaded,
        "modules_not_loaded": on_demand,
        "missing": missing,
        "unknown": unknown,
        "module_search": list(kernel.module_search),
    }
    parts = [
        Msg(f"{n} ({', '.join(drivers)})", f"{n}（{', '.join(drivers)}）")
        for n, drivers in loaded.items()
    ]
    parts += [
        Msg(
            f"{n} available as module {', '.join(mods)}, not loaded (the kernel loads it on "
            "demand)",
            f"{n} 以模块 {', '.join(mods)} 提供，尚未加载（内核按需加载）",
        )
        for n, mods in on_demand.items()
    ]
    offered = Msg(
        "; ".join(p.en for p in parts) or "none of them",
        "；".join(p.zh for p in parts) or "无",
    )
    release = kernel.release
    if missing:
        return failed(
            Msg(
                f"kernel {release} lacks {', '.join(missing)} (neither registered in "
                f"/proc/crypto nor installed as a module); offers {offered.en}",
                f"内核 {release} 缺少 {'、'.join(missing)}（既未在 /proc/crypto 中注册，"
                f"也未以模块形式安装）；已提供：{offered.zh}",
            ),
            evidence,
            target=target,
        )
    if unknown:
        reason = kernel.modules.reason if isinstance(kernel.modules, Unavailable) else ""
        return errored(
            Msg(
                f"kernel {release}: {', '.join(unknown)} not registered and the module "
                f"folders are unreadable: {reason}",
                f"内核 {release}：{'、'.join(unknown)} 未注册，且无法读取模块目录：{reason}",
            ),
            evidence,
            target=target,
        )
    return passed(
        Msg(f"kernel {release} offers {offered.en}", f"内核 {release} 提供：{offered.zh}"),
        evidence,
        target=target,
    )


@check(
    "crypto.sm_algorithms",
    title_en="The required national SM algorithms are available in OpenSSL and the kernel",
    title_zh="系统提供所要求的国密算法（OpenSSL 与内核）",
    severity=Severity.MEDIUM,
    needs=("crypto",),
    params={"required": ["sm2", "sm3", "sm4"]},
)
def sm_algorithms(facts: HostFacts, required: list[str]) -> Iterator[Outcome]:
    crypto = _crypto(facts)
    wanted = _required(required)
    yield _openssl(crypto.openssl, wanted)
    yield _kernel(crypto.kernel, wanted)
