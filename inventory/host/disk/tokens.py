"""LUKS2 tokens: whether a `systemd-tpm2` token or a clevis binding using the tpm2 pin (directly or
inside sss) seals a keyslot that unlocks the data, and to which PCRs.
"""

from __future__ import annotations

import base64
import binascii
import json
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from checks.facts.disk import LuksKeyslots


def _b64url_json(data: str) -> Any:
    padded = data + "=" * (-len(data) % 4)
    return json.loads(base64.urlsafe_b64decode(padded.encode("ascii")))


def clevis_bindings(jwe: Any) -> list[Mapping[str, Any]]:
    """The clevis pin configurations in a JWE (LUKS2 token `jwe` object or compact string), sss
    pins unfolded: e.g. [{"pin": "tpm2", "tpm2": {...}}, {"pin": "tang", ...}]. A JWE that does
    not decode has no bindings."""
    if isinstance(jwe, Mapping):
        protected = jwe.get("protected")
    elif isinstance(jwe, str):
        protected = jwe.split(".", 1)[0]
    else:
        return []
    try:
        header = _b64url_json(protected) if isinstance(protected, str) else None
    except (ValueError, binascii.Error, UnicodeDecodeError):
        return []
    clevis = header.get("clevis") if isinstance(header, Mapping) else None
    if not isinstance(clevis, Mapping):
        return []
    found: list[Mapping[str, Any]] = [clevis]
    if clevis.get("pin") == "sss":
        sss = clevis.get("sss")
        for inner in sss.get("jwe", []) if isinstance(sss, Mapping) else []:
            found.extend(clevis_bindings(inner))
    return found


def _pcr_list(value: Any) -> list[int]:
    if isinstance(value, list):
        return [int(v) for v in value if isinstance(v, int) or (isinstance(v, str) and v.isdigit())]
    if isinstance(value, str):
        return [int(v) for v in re.split(r"[,+\s]+", value) if v.isdigit()]
    if isinstance(value, int):
        return [value]
    return []


@dataclass(frozen=True)
class TokenVerdict:
    systemd_tpm2: bool = False
    clevis_tpm2: bool = False
    pcrs: tuple[int, ...] = ()


def judge_token(token: Mapping[str, Any], bound: Sequence[str]) -> TokenVerdict:
    """Whether a LUKS2 token seals a keyslot that unlocks the data to the TPM, and to which PCRs."""
    keyslots = {str(k) for k in token.get("keyslots") or []}
    if not keyslots & set(bound):
        return TokenVerdict()
    if token.get("type") == "systemd-tpm2":
        return TokenVerdict(systemd_tpm2=True, pcrs=tuple(_pcr_list(token.get("tpm2-pcrs"))))
    if token.get("type") == "clevis":
        tpm2 = [b for b in clevis_bindings(token.get("jwe")) if b.get("pin") == "tpm2"]
        pcrs: list[int] = []
        for binding in tpm2:
            config = binding.get("tpm2")
            if isinstance(config, Mapping):
                pcrs.extend(_pcr_list(config.get("pcr_ids")))
        return TokenVerdict(clevis_tpm2=bool(tpm2), pcrs=tuple(pcrs))
    return TokenVerdict()


def keyslots_with_tokens(
    keyslots: int,
    pbkdf: Iterable[str],
    tokens: Sequence[tuple[str, Mapping[str, Any]]],
    bound: Sequence[str],
) -> LuksKeyslots:
    verdicts = [judge_token(token, bound) for _, token in tokens]
    return LuksKeyslots(
        keyslots=keyslots,
        pbkdf=tuple(dict.fromkeys(pbkdf)),
        tokens=tuple(str(token.get("type")) for _, token in tokens),
        tpm2_token=any(v.systemd_tpm2 for v in verdicts),
        clevis_tpm2=any(v.clevis_tpm2 for v in verdicts),
        tpm2_pcrs=tuple(sorted({p for v in verdicts for p in v.pcrs})),
    )
