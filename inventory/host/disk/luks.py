"""Encryption metadata: LUKS1/LUKS2 headers from `cryptsetup luksDump` (JSON metadata for LUKS2,
text for LUKS1 and cryptsetup < 2.4) with their keyslots and TPM-sealing tokens, and the ciphers
of headerless mappings from one `dmsetup table --target crypt`.

A dm-crypt table line carries the volume key. `parse_dmsetup_crypt_table` keeps only the cipher
name and the key's length and never puts the line (or any part of the key) in an error message.
"""

from __future__ import annotations

import base64
import binascii
import json
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any

from checks.facts.disk import BlockDevice, Cipher, CryptKind, LuksKeyslots
from checks.model import Unavailable
from inventory.host.disk.ciphers import make_cipher
from inventory.host.disk.devices import int_or_none, text_or_none
from inventory.runner import (
    AccessDenied,
    CommandFailed,
    CommandTimeout,
    GatherError,
    Runner,
    ToolMissing,
)

CRYPTSETUP_TIMEOUT_S = 10.0
DMSETUP_TIMEOUT_S = 5.0


# ----------------------------------------------------------------------------- LUKS headers


@dataclass(frozen=True)
class LuksHeader:
    """What a `cryptsetup luksDump` said, before it is joined to the device it came from."""

    version: int
    uuid: str | None
    cipher: Cipher | Unavailable
    keys: LuksKeyslots
    bound_keyslots: tuple[str, ...] = ()
    """Ids of the keyslots that unlock the data segment."""
    unexplained_tokens: tuple[str, ...] = ()
    """Ids of clevis tokens the text dump cannot describe: `cryptsetup token export` them."""


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
class _TokenVerdict:
    systemd_tpm2: bool = False
    clevis_tpm2: bool = False
    pcrs: tuple[int, ...] = ()


def _judge_token(token: Mapping[str, Any], bound: Sequence[str]) -> _TokenVerdict:
    """Whether a LUKS2 token seals a keyslot that unlocks the data to the TPM, and to which PCRs."""
    keyslots = {str(k) for k in token.get("keyslots") or []}
    if not keyslots & set(bound):
        return _TokenVerdict()
    if token.get("type") == "systemd-tpm2":
        return _TokenVerdict(systemd_tpm2=True, pcrs=tuple(_pcr_list(token.get("tpm2-pcrs"))))
    if token.get("type") == "clevis":
        tpm2 = [b for b in clevis_bindings(token.get("jwe")) if b.get("pin") == "tpm2"]
        pcrs: list[int] = []
        for binding in tpm2:
            config = binding.get("tpm2")
            if isinstance(config, Mapping):
                pcrs.extend(_pcr_list(config.get("pcr_ids")))
        return _TokenVerdict(clevis_tpm2=bool(tpm2), pcrs=tuple(pcrs))
    return _TokenVerdict()


def _keyslots_with_tokens(
    keyslots: int,
    pbkdf: Iterable[str],
    tokens: Sequence[tuple[str, Mapping[str, Any]]],
    bound: Sequence[str],
) -> LuksKeyslots:
    verdicts = [_judge_token(token, bound) for _, token in tokens]
    return LuksKeyslots(
        keyslots=keyslots,
        pbkdf=tuple(dict.fromkeys(pbkdf)),
        tokens=tuple(str(token.get("type")) for _, token in tokens),
        tpm2_token=any(v.systemd_tpm2 for v in verdicts),
        clevis_tpm2=any(v.clevis_tpm2 for v in verdicts),
        tpm2_pcrs=tuple(sorted({p for v in verdicts for p in v.pcrs})),
    )


def _by_id(section: Any) -> list[tuple[str, Mapping[str, Any]]]:
    if not isinstance(section, Mapping):
        return []
    items = [(str(k), v) for k, v in section.items() if isinstance(v, Mapping)]
    return sorted(items, key=lambda kv: (not kv[0].isdigit(), int(kv[0]) if kv[0].isdigit() else 0))


def parse_luks_dump_json(text: str, uuid: str | None = None) -> LuksHeader:
    """`cryptsetup luksDump --dump-json-metadata DEV` (LUKS2, cryptsetup ≥ 2.4). The JSON carries
    neither version (always 2) nor UUID (pass the one blkid or lsblk gave)."""
    meta = json.loads(text)
    if not isinstance(meta, Mapping) or not isinstance(meta.get("segments"), Mapping):
        raise ValueError("LUKS2 metadata without segments")
    segments = [
        (sid, seg)
        for sid, seg in _by_id(meta["segments"])
        if seg.get("type") in ("crypt", "linear", "hw-opal", "hw-opal-crypt")
    ]
    keyslots = dict(_by_id(meta.get("keyslots")))
    if not segments:
        raise ValueError("LUKS2 metadata has no data segment")
    seg_id, segment = segments[0]
    bound: list[str] = []
    for _, digest in _by_id(meta.get("digests")):
        if seg_id in [str(s) for s in digest.get("segments") or []]:
            bound.extend(str(k) for k in digest.get("keyslots") or [] if str(k) in keyslots)
    sizes = [int_or_none(keyslots[k].get("key_size")) for k in bound]
    key_bytes = max((s for s in sizes if s is not None), default=None)
    integrity_obj = segment.get("integrity")
    integrity = (
        text_or_none(integrity_obj.get("type")) if isinstance(integrity_obj, Mapping) else None
    )
    cipher: Cipher | Unavailable
    if segment.get("type") == "linear":
        cipher = make_cipher("linear", 0)
    elif key_bytes is None:
        cipher = Unavailable("no keyslot holds the volume key, so its size is not recorded")
    else:
        spec = text_or_none(segment.get("encryption")) or str(segment.get("type"))
        cipher = make_cipher(spec, key_bytes * 8, integrity)
    pbkdf = []
    for k in bound:
        kdf = keyslots[k].get("kdf")
        if isinstance(kdf, Mapping) and text_or_none(kdf.get("type")):
            pbkdf.append(str(kdf["type"]))
    keys = _keyslots_with_tokens(len(bound), pbkdf, _by_id(meta.get("tokens")), bound)
    return LuksHeader(version=2, uuid=uuid, cipher=cipher, keys=keys, bound_keyslots=tuple(bound))


def _dump_fields(text: str) -> dict[str, str]:
    """Top-level `Key:  value` lines of a luksDump (first occurrence wins)."""
    fields: dict[str, str] = {}
    for line in text.splitlines():
        if line[:1].isspace():
            continue
        key, sep, value = line.partition(":")
        if sep:
            fields.setdefault(key.strip(), value.strip())
    return fields


def parse_luks1_dump(text: str) -> LuksHeader:
    """`cryptsetup luksDump DEV` of a LUKS1 header: `Cipher name`, `Cipher mode`, `MK bits`,
    `UUID` and the `Key Slot N: ENABLED` lines. LUKS1 always derives keys with PBKDF2."""
    fields = _dump_fields(text)
    if fields.get("Version") != "1":
        raise ValueError(f"not a LUKS1 dump (Version: {fields.get('Version')})")
    name, mode, bits = fields.get("Cipher name"), fields.get("Cipher mode"), fields.get("MK bits")
    if not name or not mode or not bits or not bits.isdigit():
        raise ValueError("LUKS1 dump without Cipher name, Cipher mode or MK bits")
    enabled = re.findall(r"^Key Slot \d+: ENABLED", text, re.MULTILINE)
    return LuksHeader(
        version=1,
        uuid=fields.get("UUID") or None,
        cipher=make_cipher(f"{name}-{mode}", int(bits)),
        keys=LuksKeyslots(
            keyslots=len(enabled), pbkdf=("pbkdf2",), tokens=(), tpm2_token=False, clevis_tpm2=False
        ),
    )


def _dump_sections(text: str) -> dict[str, list[tuple[str, str, dict[str, str]]]]:
    """LUKS2 text dump sections (`Data segments`, `Keyslots`, `Tokens`) as
    [(entry id, heading, fields)]; a token's `Keyslot:` lines are joined with spaces."""
    sections: dict[str, list[tuple[str, str, dict[str, str]]]] = {}
    current: list[tuple[str, str, dict[str, str]]] | None = None
    for line in text.splitlines():
        if line and not line[0].isspace():
            current = (
                sections.setdefault(line.rstrip(":").strip(), []) if line.endswith(":") else None
            )
            continue
        if current is None:
            continue
        entry = re.match(r"^  (\d+): (.*)$", line)
        if entry:
            current.append((entry.group(1), entry.group(2).strip(), {}))
        elif current and ":" in line:
            key, _, value = line.strip().partition(":")
            key, value, fields = key.strip(), value.strip(), current[-1][2]
            if key == "Keyslot":
                fields["Keyslot"] = f"{fields.get('Keyslot', '')} {value}".strip()
            else:
                fields.setdefault(key, value)
    return sections


def parse_luks2_dump(text: str) -> LuksHeader:
    """`cryptsetup luksDump DEV` of a LUKS2 header, for cryptsetup < 2.4 (RHEL 8, Kylin V10),
    which cannot dump the JSON metadata. Clevis tokens show no pin here: their ids are returned
    in `unexplained_tokens` for `cryptsetup token export`."""
    fields = _dump_fields(text)
    if fields.get("Version") != "2":
        raise ValueError(f"not a LUKS2 dump (Version: {fields.get('Version')})")
    sections = _dump_sections(text)
    segments = [
        s for s in sections.get("Data segments", []) if s[1].split()[0] in ("crypt", "linear")
    ]
    if not segments:
        raise ValueError("LUKS2 dump has no data segment")
    _, seg_type, seg = segments[0]
    bound = [
        (sid, f)
        for sid, heading, f in sections.get("Keyslots", [])
        if heading.split()[0] == "luks2" and "unbound" not in heading
    ]
    bits = [int(m.group(1)) for _, f in bound if (m := re.match(r"(\d+) bits", f.get("Key", "")))]
    cipher: Cipher | Unavailable
    if seg_type.startswith("linear"):
        cipher = make_cipher("linear", 0)
    elif not bits or "cipher" not in seg:
        cipher = Unavailable("the LUKS2 dump names no cipher or key size for the data segment")
    else:
        cipher = make_cipher(seg["cipher"], max(bits), seg.get("integrity") or None)
    bound_ids = [sid for sid, _ in bound]
    tokens: list[tuple[str, Mapping[str, Any]]] = [
        (tid, {"type": heading.split()[0], "keyslots": f.get("Keyslot", "").split()})
        for tid, heading, f in sections.get("Tokens", [])
    ]
    return LuksHeader(
        version=2,
        uuid=fields.get("UUID") or None,
        cipher=cipher,
        keys=_keyslots_with_tokens(
            len(bound), [f["PBKDF"] for _, f in bound if f.get("PBKDF")], tokens, bound_ids
        ),
        bound_keyslots=tuple(bound_ids),
        unexplained_tokens=tuple(tid for tid, token in tokens if token["type"] == "clevis"),
    )


def parse_luks_dump(text: str) -> LuksHeader:
    """A text `cryptsetup luksDump`, LUKS1 or LUKS2 by its `Version:` line."""
    version = _dump_fields(text).get("Version")
    if version == "1":
        return parse_luks1_dump(text)
    if version == "2":
        return parse_luks2_dump(text)
    raise ValueError(f"unknown LUKS version {version!r}")


_DENIED = ("ermission denied", "access denied", "Operation not permitted", "must be run as root")


def _explain(exc: GatherError, device: str) -> str:
    detail = getattr(exc, "stderr", "") or str(exc)
    if any(word in detail for word in _DENIED):
        return f"cryptsetup luksDump {device}: permission denied (the agent must run as root)"
    return f"cryptsetup luksDump {device}: {exc}"


def _add_exported_tokens(
    runner: Runner, cryptsetup: str, device: str, header: LuksHeader
) -> LuksHeader:
    """Ask cryptsetup for the JSON of the clevis tokens a text dump only names."""
    if not header.unexplained_tokens:
        return header
    verdicts = []
    for token_id in header.unexplained_tokens:
        out = runner.run(
            [cryptsetup, "token", "export", "--token-id", token_id, device],
            timeout=CRYPTSETUP_TIMEOUT_S,
        ).stdout
        token = json.loads(out)
        if isinstance(token, Mapping):
            verdicts.append(_judge_token(token, header.bound_keyslots))
    keys = replace(
        header.keys,
        clevis_tpm2=any(v.clevis_tpm2 for v in verdicts),
        tpm2_pcrs=tuple(sorted({*header.keys.tpm2_pcrs, *(p for v in verdicts for p in v.pcrs)})),
    )
    return replace(header, keys=keys, unexplained_tokens=())


def read_luks_header(
    runner: Runner, device: BlockDevice, version_hint: CryptKind | None
) -> LuksHeader | Unavailable:
    """One luksDump: the JSON metadata when the device is (or may be) LUKS2, else the text dump;
    the text dump also when this cryptsetup predates --dump-json-metadata (2.4)."""
    cryptsetup = runner.which("cryptsetup")
    if cryptsetup is None:
        return Unavailable("cryptsetup is not installed")
    uuid = device.uuid
    try:
        if version_hint != "luks1":
            try:
                out = runner.run(
                    [cryptsetup, "luksDump", "--dump-json-metadata", device.path],
                    timeout=CRYPTSETUP_TIMEOUT_S,
                ).stdout
                return parse_luks_dump_json(out, uuid)
            except CommandFailed as exc:
                if any(word in exc.stderr for word in _DENIED):
                    raise
                # LUKS1 ("not supported for this device type") or cryptsetup < 2.4: text dump.
        out = runner.run([cryptsetup, "luksDump", device.path], timeout=CRYPTSETUP_TIMEOUT_S).stdout
        header = parse_luks_dump(out)
        header = _add_exported_tokens(runner, cryptsetup, device.path, header)
    except (CommandFailed, CommandTimeout, AccessDenied, ToolMissing) as exc:
        return Unavailable(_explain(exc, device.path))
    except ValueError as exc:
        return Unavailable(f"cryptsetup luksDump {device.path}: unreadable output: {exc}")
    return header if header.uuid else replace(header, uuid=uuid)


# ----------------------------------------------------------------------------- dm-crypt tables


def key_field_bits(key: str) -> int:
    """Length in bits of a dm-crypt table key field: hex digits × 4 (dmsetup prints zeros in
    place of the key unless --showkeys), `:<bytes>:<type>:<description>` for a kernel keyring
    key, or `-` for no key. Raises ValueError without quoting the field."""
    if key == "-":
        return 0
    if key.startswith(":"):
        size = key.split(":")[1]
        if size.isdigit():
            return int(size) * 8
        raise ValueError("keyring reference without a key size")
    if re.fullmatch(r"[0-9a-fA-F]+", key):
        return len(key) * 4
    raise ValueError("key field is neither hex nor a keyring reference")


def parse_dmsetup_crypt_table(text: str) -> dict[str, Cipher]:
    """`dmsetup table --target crypt`: mapping name → cipher and key size of its first crypt
    target. Each line is `<name>: <start> <length> crypt <cipher> <key> <iv_offset> <device>
    <offset> [<#opt> <opt>…]`; the key is reduced to its length on the spot and never kept."""
    ciphers: dict[str, Cipher] = {}
    for line in text.splitlines():
        name, sep, rest = line.partition(": ")
        fields = rest.split()
        if not sep or len(fields) < 7 or fields[2] != "crypt":
            continue  # "No devices found", or a line that is not a crypt target
        spec = fields[3]
        try:
            key_bits = key_field_bits(fields[4])
        except ValueError as exc:
            raise ValueError(f"dm-crypt table of {name}: {exc}") from None
        integrity = None
        for option in fields[8:]:
            if option.startswith("integrity:"):  # integrity:<tag bytes>:<aead|hmac(sha256)>
                integrity = option.split(":", 2)[-1]
        ciphers.setdefault(name.strip(), make_cipher(spec, key_bits, integrity))
    return ciphers


def read_dm_crypt_tables(runner: Runner) -> dict[str, Cipher] | Unavailable:
    dmsetup = runner.which("dmsetup")
    if dmsetup is None:
        return Unavailable("dmsetup is not installed")
    try:
        result = runner.run([dmsetup, "table", "--target", "crypt"], timeout=DMSETUP_TIMEOUT_S)
        return parse_dmsetup_crypt_table(result.stdout)
    except CommandFailed as exc:
        detail = exc.stderr
        if any(word in detail for word in _DENIED):
            return Unavailable("dmsetup table: permission denied (the agent must run as root)")
        return Unavailable(f"dmsetup table: {exc}")
    except (CommandTimeout, AccessDenied, ToolMissing, ValueError) as exc:
        return Unavailable(f"dmsetup table: {exc}")
