"""National (SM) cryptography facts: which of SM2, SM3 and SM4 OpenSSL and the kernel offer.

SM2 is the public-key algorithm (GB/T 32918), SM3 the hash (GB/T 32905), SM4 the block cipher
(GB/T 32907). Keys of the `offered`/`registered` mappings are always the lower-case family names
"sm2", "sm3" and "sm4".
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from checks.model import Unavailable

SM_ALGORITHMS = ("sm2", "sm3", "sm4")


@dataclass(frozen=True)
class OpenSslFacts:
    """What the `openssl` command line says its library offers."""

    binary: str | None
    """The `openssl` found on PATH; None when there is none (then nothing is offered)."""
    version: str | None
    """First line of `openssl version` ("OpenSSL 3.0.19 27 Jan 2026 (Library: ...)")."""
    offered: Mapping[str, tuple[str, ...] | Unavailable]
    """Family → the OpenSSL names implementing it, () when none: sm2 from
    `openssl list -public-key-algorithms`, sm3 from `-digest-algorithms`, sm4 from
    `-cipher-algorithms` (SM4-CBC, SM4-ECB, ...). With OpenSSL 3 only names a provider
    implements count (the "Provided:" section): a legacy alias no provider backs cannot be
    fetched. Unavailable when that `openssl list` call failed."""


@dataclass(frozen=True)
class KernelCryptoAlgorithm:
    """One entry of /proc/crypto."""

    name: str
    """`name`: the algorithm (sm4, xts(sm4), hmac(sm3), ...)."""
    driver: str
    """`driver`: the implementation (sm4-generic, sm4-ce, xts(ecb(sm4-ce)), ...)."""
    module: str
    """`module`: the module providing it, "kernel" when built in."""
    type: str
    """`type`: cipher, skcipher, shash, akcipher, ..."""
    priority: int | None
    """`priority`: the kernel picks the highest for a name."""
    internal: bool
    """`internal`: yes for helper instances callers cannot request directly."""


@dataclass(frozen=True)
class KernelModuleFile:
    """An SM algorithm module installed for the running kernel (loaded or not)."""

    algorithm: str
    """sm2, sm3 or sm4: the family the file name starts with."""
    module: str
    """Module name (`sm4_generic`, `sm4_ce`): the file name without `.ko*`, `-` read as `_`."""
    path: str
    """Where it is, under /lib/modules/<release>/kernel/crypto or .../kernel/arch/<arch>/crypto."""


@dataclass(frozen=True)
class KernelCryptoFacts:
    """SM algorithms the running kernel's crypto API offers, registered or loadable."""

    release: str
    """/proc/sys/kernel/osrelease."""
    registered: Mapping[str, tuple[KernelCryptoAlgorithm, ...]] | Unavailable
    """Family → its non-internal /proc/crypto entries (built in, or from a loaded module)."""
    modules: tuple[KernelModuleFile, ...] | Unavailable
    """SM module files installed for this kernel; the kernel loads them on first request."""
    module_search: tuple[str, ...]
    """Every module folder consulted, with what it held, for the evidence."""


@dataclass(frozen=True)
class CryptoFacts:
    """National cryptography offered by OpenSSL and by the kernel."""

    openssl: OpenSslFacts | Unavailable
    kernel: KernelCryptoFacts | Unavailable
