"""National cryptography offered on the host: SM2/SM3/SM4 in OpenSSL (`openssl list`) and in the
kernel crypto API (/proc/crypto, plus the SM modules installed for the running kernel, which the
kernel loads on first request).

Four short `openssl` calls, one read of /proc/crypto and a few folder listings: no module is
loaded and nothing is computed. The `parse_*` functions are pure and are tested on captured
output under tests/fixtures/raw/crypto.
"""

from __future__ import annotations

import re

from checks.facts.crypto import (
    SM_ALGORITHMS,
    CryptoFacts,
    KernelCryptoAlgorithm,
    KernelCryptoFacts,
    KernelModuleFile,
    OpenSslFacts,
)
from checks.model import Unavailable
from inventory.runner import GatherError, Runner, SourceMissing

OPENSSL_TIMEOUT_S = 2.0

# Family → the `openssl list` option whose output names it.
_LIST_OPTION = {
    "sm2": "-public-key-algorithms",
    "sm3": "-digest-algorithms",
    "sm4": "-cipher-algorithms",
}
# OpenSSL 1.0.x (CentOS 7) had one command per list instead of `list -<kind>`; it has no SM.
_LEGACY_COMMAND = {
    "-public-key-algorithms": "list-public-key-algorithms",
    "-digest-algorithms": "list-message-digest-algorithms",
    "-cipher-algorithms": "list-cipher-algorithms",
}

# ----------------------------------------------------------------------------- openssl

_OID = re.compile(r"^\d+(\.\d+)+$")
_PROVIDER_SUFFIX = re.compile(r"\s@\s\S+$")


def _names_in(line: str) -> list[str]:
    text = line.strip()
    for label in ("IDs:", "Name:", "PEM string:"):
        if text.startswith(label):
            text = text[len(label) :].strip()
            break
    else:
        if ":" in text and not text.startswith("{"):
            return []  # "Type: Builtin Algorithm", "OID: ...", "Alias for: ...", section heads
    text = _PROVIDER_SUFFIX.sub("", text).strip()
    if text.startswith("{") and text.endswith("}"):
        parts = text[1:-1].split(",")
    elif "=>" in text:
        parts = text.split("=>")
    else:
        parts = [text]
    return [p.strip() for p in parts if p.strip() and not _OID.match(p.strip())]


def parse_openssl_list(text: str) -> tuple[str, ...]:
    """Algorithm names in `openssl list -digest-algorithms` (or -cipher-, -public-key-).

    OpenSSL 3 prints a "Legacy:" section (names libcrypto knows) and a "Provided:" section
    (what loaded providers implement); only the latter can be fetched, so when it is there only
    its names are returned. OpenSSL 1.1.1 prints one flat list. Aliases ("sm4 => SM4-CBC") give
    both names; OIDs are dropped.
    """
    lines = text.splitlines()
    provided = [i for i, line in enumerate(lines) if line.strip() == "Provided:"]
    if provided:
        lines = lines[provided[0] + 1 :]
    names: dict[str, None] = {}
    for line in lines:
        for name in _names_in(line):
            names.setdefault(name)
    return tuple(names)


def sm_family(name: str) -> str | None:
    """ "SM4-CBC" → "sm4", "SM3" → "sm3", "sm2" → "sm2"; None for anything else (RSA-SM3 too,
    which names a signature scheme, not the hash)."""
    head = name.split("-", 1)[0].casefold()
    return head if head in SM_ALGORITHMS else None


def collect_openssl(runner: Runner) -> OpenSslFacts | Unavailable:
    binary = runner.which("openssl")
    if binary is None:
        return OpenSslFacts(binary=None, version=None, offered=dict.fromkeys(SM_ALGORITHMS, ()))
    try:
        version_out = runner.run([binary, "version"], timeout=OPENSSL_TIMEOUT_S).stdout
    except GatherError as exc:
        return Unavailable(f"openssl version: {exc}")
    version = (version_out.strip().splitlines() or [""])[0] or None
    legacy = bool(version and re.match(r"OpenSSL (0\.9|1\.0)\.", version))
    offered: dict[str, tuple[str, ...] | Unavailable] = {}
    for family, option in _LIST_OPTION.items():
        argv = [binary, _LEGACY_COMMAND[option]] if legacy else [binary, "list", option]
        try:
            out = runner.run(argv, timeout=OPENSSL_TIMEOUT_S).stdout
        except GatherError as exc:
            offered[family] = Unavailable(f"openssl {' '.join(argv[1:])}: {exc}")
            continue
        offered[family] = tuple(
            sorted(n for n in parse_openssl_list(out) if sm_family(n) == family)
        )
    return OpenSslFacts(binary=binary, version=version, offered=offered)


# ----------------------------------------------------------------------------- kernel

_SM_IN_NAME = re.compile(r"(?<![a-z0-9])(sm[234])(?![a-z0-9])")


def parse_proc_crypto(text: str) -> tuple[KernelCryptoAlgorithm, ...]:
    """/proc/crypto: blank-line separated "key : value" blocks, one per registered algorithm."""
    entries = []
    for block in re.split(r"\n\s*\n", text.strip()):
        fields: dict[str, str] = {}
        for line in block.splitlines():
            key, sep, value = line.partition(":")
            if sep:
                fields.setdefault(key.strip(), value.strip())
        if "name" not in fields:
            continue
        priority = fields.get("priority", "")
        entries.append(
            KernelCryptoAlgorithm(
                name=fields["name"],
                driver=fields.get("driver", ""),
                module=fields.get("module", ""),
                type=fields.get("type", ""),
                priority=int(priority) if re.fullmatch(r"-?[0-9]{1,20}", priority) else None,
                internal=fields.get("internal") == "yes",
            )
        )
    return tuple(entries)


def kernel_families(name: str) -> set[str]:
    """SM families an algorithm name uses: "xts(sm4)" → {"sm4"}, "hmac(sm3)" → {"sm3"}."""
    return set(_SM_IN_NAME.findall(name))


_MODULE_FILE = re.compile(r"^((sm[234])([-_][a-z0-9_-]+)?)\.ko(\.(xz|zst|gz))?$")


def parse_module_file(filename: str) -> tuple[str, str] | None:
    """ "sm4-ce.ko.xz" → ("sm4", "sm4_ce"); None for files that are not SM algorithm modules."""
    match = _MODULE_FILE.match(filename)
    if match is None:
        return None
    return match.group(2), match.group(1).replace("-", "_")


def _registered(runner: Runner) -> dict[str, tuple[KernelCryptoAlgorithm, ...]] | Unavailable:
    try:
        entries = parse_proc_crypto(runner.read_text("/proc/crypto"))
    except GatherError as exc:
        return Unavailable(str(exc))
    grouped: dict[str, list[KernelCryptoAlgorithm]] = {f: [] for f in SM_ALGORITHMS}
    for entry in entries:
        if entry.internal:  # helper instances (e.g. "__xts(sm4)") callers cannot request
            continue
        for family in sorted(kernel_families(entry.name)):
            grouped[family].append(entry)
    return {family: tuple(found) for family, found in grouped.items()}


def _modules(
    runner: Runner, release: str
) -> tuple[tuple[KernelModuleFile, ...] | Unavailable, tuple[str, ...]]:
    base = f"/lib/modules/{release}"
    if not runner.exists(base):
        # modprobe looks nowhere else: this kernel can load no module at all.
        return (), (f"{base}: does not exist (no modules installed for the running kernel)",)
    folders = [f"{base}/kernel/crypto"]
    try:
        folders += [
            f"{base}/kernel/arch/{a}/crypto" for a in runner.list_dir(f"{base}/kernel/arch")
        ]
    except SourceMissing:
        pass
    except GatherError as exc:
        return Unavailable(str(exc)), (f"{base}/kernel/arch: {exc}",)
    found: list[KernelModuleFile] = []
    searched: list[str] = []
    for folder in folders:
        try:
            names = runner.list_dir(folder)
        except SourceMissing:
            searched.append(f"{folder}: does not exist")
            continue
        except GatherError as exc:
            return Unavailable(str(exc)), (*searched, f"{folder}: {exc}")
        here = [
            KernelModuleFile(algorithm=parsed[0], module=parsed[1], path=f"{folder}/{name}")
            for name in names
            if (parsed := parse_module_file(name)) is not None
        ]
        searched.append(f"{folder}: " + (", ".join(m.module for m in here) or "no SM modules"))
        found.extend(here)
    return tuple(found), tuple(searched)


def collect_kernel_crypto(runner: Runner) -> KernelCryptoFacts | Unavailable:
    try:
        release = runner.read_text("/proc/sys/kernel/osrelease").strip()
    except GatherError as exc:
        return Unavailable(f"kernel release unknown: {exc}")
    modules, searched = _modules(runner, release)
    return KernelCryptoFacts(
        release=release,
        registered=_registered(runner),
        modules=modules,
        module_search=searched,
    )


def collect_crypto(runner: Runner) -> CryptoFacts:
    """SM2/SM3/SM4 as offered by OpenSSL and by the kernel of the host behind `runner`."""
    return CryptoFacts(openssl=collect_openssl(runner), kernel=collect_kernel_crypto(runner))
