"""dm-crypt cipher specifications taken apart (`aes-xts-plain64`, `capi:xts(aes)-plain64`, ...)
and the effective key length of a volume key under them: what `disk.cipher_strength` judges.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass

from checks.facts.disk import Cipher

_ALGORITHMS = frozenset(
    [
        "aes",
        "sm4",
        "serpent",
        "twofish",
        "camellia",
        "cast5",
        "cast6",
        "blowfish",
        "des",
        "des3_ede",
        "anubis",
        "khazad",
        "aria",
        "chacha20",
        "xchacha12",
        "xchacha20",
        "null",
    ]
)
# Initialisation-vector generators: a spec "<cipher>-<iv>" has no explicit mode and means CBC.
_IVS = ("plain", "plain64", "plain64be", "essiv", "benbi", "null", "lmk", "tcw", "random", "eboiv")
# Key lengths each algorithm accepts; an effective length outside them means we misread the spec.
_VALID_BITS: Mapping[str, frozenset[int]] = {
    "aes": frozenset({128, 192, 256}),
    "sm4": frozenset({128}),
    "serpent": frozenset({128, 192, 256}),
    "twofish": frozenset({128, 192, 256}),
    "camellia": frozenset({128, 192, 256}),
}
_HMAC_BITS = {"sha1": 160, "sha256": 256, "sha384": 384, "sha512": 512, "sm3": 256}


@dataclass(frozen=True)
class CipherSpec:
    """A dm-crypt cipher specification taken apart."""

    algorithm: str | None
    mode: str | None
    iv: str | None
    keycount: int = 1


def parse_cipher_spec(spec: str) -> CipherSpec:
    """Split `aes-xts-plain64`, `aes-cbc-essiv:sha256`, `aes:64-cbc-lmk`, `capi:xts(aes)-plain64`,
    `xchacha12,aes-adiantum-plain64` or `cipher_null-ecb`. Unknown ciphers give algorithm None."""
    text = spec.strip().lower()
    if text == "linear" or text.startswith("cipher_null"):
        return CipherSpec("null", "ecb", None)
    if text.startswith("capi:"):
        return _parse_capi(text[5:])
    head, _, rest = text.partition("-")
    name, _, count = head.partition(":")
    keycount = int(count) if count.isdigit() and int(count) > 0 else 1
    mode, _, iv = rest.partition("-")
    if mode.startswith(_IVS):  # "aes-plain": the historical default chaining mode is CBC
        mode, iv = "cbc", mode
    if name in ("xchacha12,aes", "xchacha20,aes"):
        return CipherSpec(name.partition(",")[0], "adiantum", iv or None)
    algorithm = name if name in _ALGORITHMS else None
    return CipherSpec(algorithm, mode or ("cbc" if algorithm else None), iv or None, keycount)


def _parse_capi(text: str) -> CipherSpec:
    """The kernel crypto API form: `xts(aes)-plain64`, `authenc(hmac(sha256),xts(aes))-random`,
    `gcm(aes)-random`, `adiantum(xchacha12,aes)-plain64`, `rfc7539(chacha20,poly1305)-random`."""
    body, _, iv = text.rpartition("-")
    if not body:
        body, iv = text, ""
    authenc = re.fullmatch(r"authenc\(hmac\([a-z0-9_-]+\),(.+)\)", body)
    if authenc:
        body = authenc.group(1)
    if match := re.fullmatch(r"adiantum\((xchacha12|xchacha20),aes\)", body):
        return CipherSpec(match.group(1), "adiantum", iv or None)
    if match := re.fullmatch(r"rfc7539\((chacha20),poly1305\)", body):
        return CipherSpec("chacha20", "rfc7539", iv or None)
    if match := re.fullmatch(r"([a-z0-9_]+)\(([a-z0-9_]+)\)", body):
        mode, name = match.groups()
        return CipherSpec(name if name in _ALGORITHMS else None, mode, iv or None)
    return CipherSpec(None, None, iv or None)


def effective_key_bits(cipher: str, key_bits: int) -> int | None:
    """The cipher's own key length for a volume key of `key_bits` (integrity keys removed first).

    XTS uses two keys of half the length (aes-xts with 512 bits is AES-256); LRW appends a 128-bit
    tweak key; other modes use the whole key. None for unknown ciphers, multi-key loop-AES specs
    and lengths the algorithm does not accept.
    """
    spec = parse_cipher_spec(cipher)
    if spec.algorithm is None or spec.keycount != 1 or key_bits < 0:
        return None
    if spec.algorithm == "null":
        return 0
    bits: int | None = key_bits
    if spec.mode == "xts":
        bits = key_bits // 2 if key_bits % 2 == 0 else None
    elif spec.mode == "lrw":
        bits = key_bits - 128 if key_bits > 128 else None
    valid = _VALID_BITS.get(spec.algorithm)
    if bits is None or (valid is not None and bits not in valid):
        return None
    return bits


def integrity_key_bits(integrity: str | None) -> int | None:
    """Bits of the volume key an integrity algorithm takes: hmac(sha256) 256, aead/none 0."""
    if integrity is None or integrity in ("", "none", "aead", "poly1305"):
        return 0
    match = re.fullmatch(r"hmac[(-]([a-z0-9]+)\)?", integrity.lower())
    return _HMAC_BITS.get(match.group(1)) if match else None


def make_cipher(spec: str, key_bits: int, integrity: str | None = None) -> Cipher:
    parts = parse_cipher_spec(spec)
    extra = integrity_key_bits(integrity)
    return Cipher(
        spec=spec,
        key_bits=key_bits,
        algorithm=parts.algorithm,
        mode=parts.mode,
        effective_bits=None if extra is None else effective_key_bits(spec, key_bits - extra),
        integrity=integrity or None,
    )
