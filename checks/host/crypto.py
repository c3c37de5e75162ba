"""National cryptography: the SM2, SM3 and SM4 algorithms are available to applications through
OpenSSL and to the kernel (dm-crypt, IPsec, IMA) through its crypto API. One result for each
(targets "openssl" and "kernel"). Pure functions of `CryptoFacts`.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from checks.facts import HostFacts
from checks.facts.crypto import SM_ALGORITHMS, CryptoFacts, KernelCryptoFacts, OpenSslFacts
from checks.model import Outcome, Severity, Unavailable, errored, failed, passed, require
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
        return errored(f"OpenSSL unavailable: {openssl.reason}", target=target)
    if openssl.binary is None:
        return failed(
            "openssl is not installed: no SM algorithms through OpenSSL",
            {"required": required},
            target=target,
        )
    present: dict[str, list[str]] = {}
    missing: list[str] = []
    unknown: list[str] = []
    for name in required:
        offered = openssl.offered.get(name, ())
        if isinstance(offered, Unavailable):
            unknown.append(f"{name} ({offered.reason})")
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
        extra = f" (could not list {', '.join(unknown)})" if unknown else ""
        return failed(f"{who} lacks {', '.join(missing)}{extra}", evidence, target=target)
    if unknown:
        return errored(f"{who}: could not list {', '.join(unknown)}", evidence, target=target)
    listing = "; ".join(f"{n} ({', '.join(names)})" for n, names in present.items())
    return passed(f"{who} offers {listing}", evidence, target=target)


def _kernel(kernel: KernelCryptoFacts | Unavailable, required: list[str]) -> Outcome:
    target = "kernel"
    if isinstance(kernel, Unavailable):
        return errored(f"kernel crypto unavailable: {kernel.reason}", target=target)
    if isinstance(kernel.registered, Unavailable):
        return errored(
            f"/proc/crypto unreadable: {kernel.registered.reason}",
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
    parts = [f"{n} ({', '.join(drivers)})" for n, drivers in loaded.items()]
    parts += [
        f"{n} available as module {', '.join(mods)}, not loaded (the kernel loads it on demand)"
        for n, mods in on_demand.items()
    ]
    offered = "; ".join(parts) or "none of them"
    if missing:
        return failed(
            f"kernel {kernel.release} lacks {', '.join(missing)} (neither registered in "
            f"/proc/crypto nor installed as a module); offers {offered}",
            evidence,
            target=target,
        )
    if unknown:
        reason = kernel.modules.reason if isinstance(kernel.modules, Unavailable) else ""
        return errored(
            f"kernel {kernel.release}: {', '.join(unknown)} not registered and the module "
            f"folders are unreadable: {reason}",
            evidence,
            target=target,
        )
    return passed(f"kernel {kernel.release} offers {offered}", evidence, target=target)


@check(
    "crypto.sm_algorithms",
    title_en="The national SM2/SM3/SM4 algorithms are available in OpenSSL and the kernel",
    title_zh="系统提供国密 SM2/SM3/SM4 算法（OpenSSL 与内核）",
    severity=Severity.MEDIUM,
    needs=("crypto",),
    params={"required": ["sm2", "sm3", "sm4"]},
)
def sm_algorithms(facts: HostFacts, required: list[str]) -> Iterator[Outcome]:
    crypto = _crypto(facts)
    wanted = _required(required)
    yield _openssl(crypto.openssl, wanted)
    yield _kernel(crypto.kernel, wanted)
