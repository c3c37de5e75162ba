"""LUKS1/LUKS2 headers from `cryptsetup luksDump`: the JSON metadata for LUKS2 (cryptsetup ≥ 2.4),
the text dump for LUKS1 and older cryptsetup. Every data segment is judged with the key that covers
it, so an interrupted re-encryption (two keys, or a range still in plaintext) is seen range by
range; keyslots and their TPM-sealing tokens say how the key is protected.

A segment is bound to a key through a digest: the JSON lists each digest's segments and keyslots.
The text dump prints each keyslot's digest but not each digest's segments, so there a crypt segment
takes the size of the keys bound to any segment; when a re-encryption between keys of different
sizes leaves more than one that could fit the segment's cipher, the text cannot say which covers
which range and that segment's cipher is Unavailable (cryptsetup ≥ 2.4 tells).
"""

from __future__ import annotations

import json
import re
from collections.abc import Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any

from checks.facts.disk import (
    BlockDevice,
    Cipher,
    CryptKind,
    DataSegment,
    LuksKeyslots,
    Reencryption,
)
from checks.model import Unavailable
from inventory.host import jsontext
from inventory.host.disk.ciphers import make_cipher
from inventory.host.disk.devices import int_or_none, text_or_none
from inventory.host.disk.tokens import TokenVerdict, judge_token, keyslots_with_tokens
from inventory.runner import (
    AccessDenied,
    CommandFailed,
    CommandTimeout,
    GatherError,
    Runner,
    ToolMissing,
)

CRYPTSETUP_TIMEOUT_S = 10.0

# Segment types cryptsetup writes: software dm-crypt, plaintext (mid-encryption or decryption),
# and OPAL self-encrypting drives without and with dm-crypt on top (cryptsetup ≥ 2.7).
_SEGMENT_TYPES = ("crypt", "linear", "hw-opal", "hw-opal-crypt")
# A data segment half-way through re-encryption: both the old and the new key are bound to it.
_IN_REENCRYPTION = "in-reencryption"


@dataclass(frozen=True)
class LuksHeader:
    """What a `cryptsetup luksDump` said, before it is joined to the device it came from."""

    version: int
    uuid: str | None
    cipher: Cipher | Unavailable
    keys: LuksKeyslots
    bound_keyslots: tuple[str, ...] = ()
    """Ids of the keyslots bound to a data segment (what cryptsetup does not print as "unbound")."""
    unexplained_tokens: tuple[str, ...] = ()
    """Ids of clevis tokens the text dump cannot describe: `cryptsetup token export` them."""
    segments: tuple[DataSegment, ...] = ()
    reencryption: Reencryption | None = None


# ----------------------------------------------------------------------------- data segments


def span(offset: int, length: int | None) -> str:
    """A byte range as the reasons in these facts name it."""
    if length is None:
        return f"bytes {offset} to the end of the device"
    return f"bytes {offset}–{offset + length - 1}"


def _weakest(ciphers: Iterable[Cipher]) -> Cipher:
    # An effective length that cannot be told counts as the weakest: it is judged an error.
    return min(ciphers, key=lambda c: (c.effective_bits is not None, c.effective_bits or 0))


def segment_cipher(
    segment: str,
    kind: str,
    spec: str | None,
    integrity: str | None,
    key_bits: Collection[int],
    *,
    opal_bits: int = 0,
) -> Cipher | Unavailable:
    """The cipher of one data segment, given the sizes of the keys that may cover it (the weaker
    when several may). `opal_bits` is the part of an hw-opal-crypt volume key that the drive
    takes; an hw-opal segment has no software cipher and is named "hw-opal"."""
    if kind == "linear":
        return make_cipher("linear", 0)
    if kind not in _SEGMENT_TYPES:
        return Unavailable(f"data segment {segment} has type {kind!r}, which medsec does not know")
    if not key_bits:
        return Unavailable(
            f"no keyslot holds the key of data segment {segment}, so its size is not recorded"
        )
    if kind == "hw-opal" or spec is None:
        return _weakest(make_cipher(kind, bits) for bits in key_bits)
    return _weakest(make_cipher(spec, bits - opal_bits, integrity) for bits in key_bits)


def _describe(cipher: Cipher | Unavailable) -> str:
    if isinstance(cipher, Unavailable):
        return cipher.reason
    if cipher.spec == "linear":
        return "not encrypted"
    return f"{cipher.spec}, {cipher.key_bits}-bit key"


def volume_cipher(segments: Sequence[DataSegment]) -> Cipher | Unavailable:
    """The volume's one cipher when every data segment has the same; otherwise Unavailable,
    naming each range, so that nothing reads one segment's cipher as the whole volume's."""
    ciphers = {s.cipher for s in segments}
    if len(ciphers) == 1:
        return next(iter(ciphers))
    each = "; ".join(f"{span(s.offset, s.length)}: {_describe(s.cipher)}" for s in segments)
    return Unavailable(f"the data segments differ ({each}); each is judged on its own")


# ----------------------------------------------------------------------------- JSON metadata


def _by_id(section: Any) -> list[tuple[str, Mapping[str, Any]]]:
    if not isinstance(section, Mapping):
        return []
    items = [(str(k), v) for k, v in section.items() if isinstance(v, Mapping)]
    return sorted(items, key=lambda kv: (not kv[0].isdigit(), int(kv[0]) if kv[0].isdigit() else 0))


def _ids(value: Any) -> list[str]:
    return [str(v) for v in value] if isinstance(value, list) else []


def _is_backup(flags: Iterable[str]) -> bool:
    return any(flag.startswith("backup-") for flag in flags)


def _json_reencryption(
    meta: Mapping[str, Any], keyslots: Mapping[str, Mapping[str, Any]]
) -> Reencryption | None:
    for keyslot in keyslots.values():
        if keyslot.get("type") == "reencrypt":
            return Reencryption(
                text_or_none(keyslot.get("mode")), text_or_none(keyslot.get("direction"))
            )
    config = meta.get("config")
    requirements = config.get("requirements") if isinstance(config, Mapping) else None
    mandatory = requirements.get("mandatory") if isinstance(requirements, Mapping) else None
    if any(r.startswith("online-reencrypt") for r in _ids(mandatory)):
        return Reencryption(None, None)
    return None


def _json_segment(
    sid: str,
    segment: Mapping[str, Any],
    digests: Sequence[tuple[str, Mapping[str, Any]]],
    keyslots: Mapping[str, Mapping[str, Any]],
) -> DataSegment:
    covering = [
        k
        for _, digest in digests
        if sid in _ids(digest.get("segments"))
        for k in _ids(digest.get("keyslots"))
        if k in keyslots
    ]
    bits = {b * 8 for k in covering if (b := int_or_none(keyslots[k].get("key_size"))) is not None}
    integrity_obj = segment.get("integrity")
    integrity = (
        text_or_none(integrity_obj.get("type")) if isinstance(integrity_obj, Mapping) else None
    )
    opal_bytes = (
        int_or_none(segment.get("opal_key_size"))
        if segment.get("type") == "hw-opal-crypt"
        else None
    )
    cipher = segment_cipher(
        sid,
        str(segment.get("type")),
        text_or_none(segment.get("encryption")),
        integrity,
        bits,
        opal_bits=(opal_bytes or 0) * 8,
    )
    size = text_or_none(segment.get("size"))
    return DataSegment(
        id=sid,
        offset=int_or_none(segment.get("offset")) or 0,
        length=None if size == "dynamic" else int_or_none(size),
        cipher=cipher,
    )


def parse_luks_dump_json(text: str, uuid: str | None = None) -> LuksHeader:
    """`cryptsetup luksDump --dump-json-metadata DEV` (LUKS2, cryptsetup ≥ 2.4). The JSON carries
    neither version (always 2) nor UUID (pass the one blkid or lsblk gave).

    Each data segment (every segment but the `backup-*` ones) takes the key size of the keyslots
    of the digests that list it; a segment two digests list (in re-encryption) the weaker."""
    return _parse_metadata(jsontext.loads(text), uuid)


def parse_luks_debug_json(text: str, uuid: str | None = None) -> LuksHeader:
    """`cryptsetup luksDump --debug-json DEV` (cryptsetup 2.1 to 2.3, which have no
    --dump-json-metadata): the header's JSON metadata is the first debug message that is a JSON
    object (`# {` … `}`, the text dump following on the same line)."""
    match = re.search(r"^# \{", text, re.MULTILINE)
    if match is None:
        raise ValueError("no JSON metadata among the debug messages")
    meta, _ = jsontext.raw_decode(text, match.start() + 2)
    return _parse_metadata(meta, uuid)


def _parse_metadata(meta: Any, uuid: str | None) -> LuksHeader:
    if not isinstance(meta, Mapping) or not isinstance(meta.get("segments"), Mapping):
        raise ValueError("LUKS2 metadata without segments")
    keyslots = dict(_by_id(meta.get("keyslots")))
    digests = _by_id(meta.get("digests"))
    data = [
        (sid, seg)
        for sid, seg in _by_id(meta["segments"])
        if not _is_backup(_ids(seg.get("flags")))
    ]
    if not data:
        raise ValueError("LUKS2 metadata has no data segment")
    segments = tuple(_json_segment(sid, seg, digests, keyslots) for sid, seg in data)
    # Bound as cryptsetup prints it: a keyslot whose digest covers a data segment. The new key
    # of a re-encryption that has not started yet covers only `backup-final`: still unbound.
    data_ids = {sid for sid, _ in data}
    bound = list(
        dict.fromkeys(
            k
            for _, digest in digests
            if data_ids & set(_ids(digest.get("segments")))
            for k in _ids(digest.get("keyslots"))
            if k in keyslots
        )
    )
    pbkdf = []
    for k in bound:
        kdf = keyslots[k].get("kdf")
        if isinstance(kdf, Mapping) and text_or_none(kdf.get("type")):
            pbkdf.append(str(kdf["type"]))
    keys = keyslots_with_tokens(len(bound), pbkdf, _by_id(meta.get("tokens")), bound)
    return LuksHeader(
        version=2,
        uuid=uuid,
        cipher=volume_cipher(segments),
        keys=keys,
        bound_keyslots=tuple(bound),
        segments=segments,
        reencryption=_json_reencryption(meta, keyslots),
    )


# ----------------------------------------------------------------------------- text dumps


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


def _leading_int(value: str | None) -> int | None:
    match = re.match(r"\s*(\d+)", value or "")
    return int(match.group(1)) if match else None


def parse_luks1_dump(text: str) -> LuksHeader:
    """`cryptsetup luksDump DEV` of a LUKS1 header: `Cipher name`, `Cipher mode`, `MK bits`,
    `Payload offset` (512-byte sectors), `UUID` and the `Key Slot N: ENABLED` lines. LUKS1 always
    derives keys with PBKDF2, and has one data segment: everything from the payload on."""
    fields = _dump_fields(text)
    if fields.get("Version") != "1":
        raise ValueError(f"not a LUKS1 dump (Version: {fields.get('Version')})")
    name, mode, bits = fields.get("Cipher name"), fields.get("Cipher mode"), fields.get("MK bits")
    if not name or not mode or not bits or not bits.isdigit():
        raise ValueError("LUKS1 dump without Cipher name, Cipher mode or MK bits")
    enabled = re.findall(r"^Key Slot (\d+): ENABLED", text, re.MULTILINE)
    cipher = make_cipher(f"{name}-{mode}", int(bits))
    payload = _leading_int(fields.get("Payload offset")) or 0
    return LuksHeader(
        version=1,
        uuid=fields.get("UUID") or None,
        cipher=cipher,
        keys=LuksKeyslots(
            keyslots=len(enabled), pbkdf=("pbkdf2",), tokens=(), tpm2_token=False, clevis_tpm2=False
        ),
        bound_keyslots=tuple(enabled),
        segments=(DataSegment(id="0", offset=payload * 512, length=None, cipher=cipher),),
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


@dataclass(frozen=True)
class _TextKeys:
    """The bound keyslots of a LUKS2 text dump: ids, and the key size of each digest."""

    slots: tuple[str, ...]
    bits_by_digest: Mapping[str, frozenset[int]]

    @property
    def all_bits(self) -> frozenset[int]:
        return frozenset(b for bits in self.bits_by_digest.values() for b in bits)


def _text_keys(keyslots: Sequence[tuple[str, str, dict[str, str]]]) -> _TextKeys:
    slots: list[str] = []
    bits_by_digest: dict[str, set[int]] = {}
    for sid, heading, fields in keyslots:
        if heading.split()[0] != "luks2" or "unbound" in heading:
            continue
        slots.append(sid)
        bits = _leading_int(fields.get("Key"))
        if bits is not None:
            # cryptsetup < 2.2 prints no digest id; it predates re-encryption, so one key.
            bits_by_digest.setdefault(fields.get("Digest ID", "?"), set()).add(bits)
    return _TextKeys(tuple(slots), {d: frozenset(b) for d, b in bits_by_digest.items()})


def _text_segment(
    sid: str, heading: str, fields: Mapping[str, str], keys: _TextKeys
) -> DataSegment:
    kind = heading.split(maxsplit=1)[0]
    spec = fields.get("cipher")
    spec = None if spec is None or spec.startswith("(") else spec  # "(no SW encryption)"
    integrity = fields.get("integrity") or None
    opal = (_leading_int(fields.get("OPAL key")) or 0) if kind == "hw-opal-crypt" else 0
    offset = _leading_int(fields.get("offset")) or 0
    length = _leading_int(fields.get("length"))  # "(whole device)" has none
    flags = [f.strip() for f in fields.get("flags", "").split(",")]
    candidates: Collection[int] = keys.all_bits
    if kind in ("crypt", "hw-opal-crypt") and _IN_REENCRYPTION not in flags and spec is not None:
        # cryptsetup never binds a segment to a key its cipher cannot take.
        fitting = {
            b
            for b in candidates
            if make_cipher(spec, b - opal, integrity).effective_bits is not None
        }
        candidates = fitting or candidates
        if len(candidates) > 1:
            sizes = " and ".join(f"{b}-bit" for b in sorted(candidates))
            return DataSegment(
                id=sid,
                offset=offset,
                length=length,
                cipher=Unavailable(
                    f"a re-encryption uses {sizes} keys and this cryptsetup's text dump does not "
                    f"say which covers data segment {sid} ({span(offset, length)}); cryptsetup "
                    "≥ 2.4 (luksDump --dump-json-metadata) does"
                ),
            )
    return DataSegment(
        id=sid,
        offset=offset,
        length=length,
        cipher=segment_cipher(sid, kind, spec, integrity, candidates, opal_bits=opal),
    )


def parse_luks2_dump(text: str) -> LuksHeader:
    """`cryptsetup luksDump DEV` of a LUKS2 header, for cryptsetup < 2.4 (RHEL 8, Kylin V10),
    which cannot dump the JSON metadata. Clevis tokens show no pin here: their ids are returned
    in `unexplained_tokens` for `cryptsetup token export`."""
    fields = _dump_fields(text)
    if fields.get("Version") != "2":
        raise ValueError(f"not a LUKS2 dump (Version: {fields.get('Version')})")
    sections = _dump_sections(text)
    data = [
        (sid, heading, f)
        for sid, heading, f in sections.get("Data segments", [])
        if not _is_backup(flag.strip() for flag in f.get("flags", "").split(","))
    ]
    if not data:
        raise ValueError("LUKS2 dump has no data segment")
    keyslot_entries = sections.get("Keyslots", [])
    keys = _text_keys(keyslot_entries)
    segments = tuple(_text_segment(sid, heading, f, keys) for sid, heading, f in data)
    reencryption = None
    for _, heading, f in keyslot_entries:
        if heading.split()[0] == "reencrypt":
            reencryption = Reencryption(f.get("Mode") or None, f.get("Direction") or None)
    if reencryption is None and "online-reencrypt" in fields.get("Requirements", ""):
        reencryption = Reencryption(None, None)
    tokens: list[tuple[str, Mapping[str, Any]]] = [
        (tid, {"type": heading.split()[0], "keyslots": f.get("Keyslot", "").split()})
        for tid, heading, f in sections.get("Tokens", [])
    ]
    pbkdf = [f["PBKDF"] for sid, _, f in keyslot_entries if sid in keys.slots and f.get("PBKDF")]
    return LuksHeader(
        version=2,
        uuid=fields.get("UUID") or None,
        cipher=volume_cipher(segments),
        keys=keyslots_with_tokens(len(keys.slots), pbkdf, tokens, keys.slots),
        bound_keyslots=keys.slots,
        unexplained_tokens=tuple(tid for tid, token in tokens if token["type"] == "clevis"),
        segments=segments,
        reencryption=reencryption,
    )


def parse_luks_dump(text: str) -> LuksHeader:
    """A text `cryptsetup luksDump`, LUKS1 or LUKS2 by its `Version:` line."""
    version = _dump_fields(text).get("Version")
    if version == "1":
        return parse_luks1_dump(text)
    if version == "2":
        return parse_luks2_dump(text)
    raise ValueError(f"unknown LUKS version {version!r}")


# ----------------------------------------------------------------------------- reading


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
    verdicts: list[TokenVerdict] = []
    for token_id in header.unexplained_tokens:
        out = runner.run(
            [cryptsetup, "token", "export", "--token-id", token_id, device],
            timeout=CRYPTSETUP_TIMEOUT_S,
        ).stdout
        token = json.loads(out)
        if isinstance(token, Mapping):
            verdicts.append(judge_token(token, header.bound_keyslots))
    keys = replace(
        header.keys,
        clevis_tpm2=any(v.clevis_tpm2 for v in verdicts),
        tpm2_pcrs=tuple(sorted({*header.keys.tpm2_pcrs, *(p for v in verdicts for p in v.pcrs)})),
    )
    return replace(header, keys=keys, unexplained_tokens=())


def _read_debug_json(
    runner: Runner, cryptsetup: str, device: str, uuid: str | None
) -> LuksHeader | None:
    """The JSON metadata through cryptsetup's debug output, for a text dump that left a segment
    undecided; None where this cryptsetup (2.0) cannot print it."""
    try:
        out = runner.run(
            [cryptsetup, "luksDump", "--debug-json", device], timeout=CRYPTSETUP_TIMEOUT_S
        ).stdout
        return parse_luks_debug_json(out, uuid)
    except (CommandFailed, ValueError):
        return None


def read_luks_header(
    runner: Runner, device: BlockDevice, version_hint: CryptKind | None
) -> LuksHeader | Unavailable:
    """One luksDump: the JSON metadata when the device is (or may be) LUKS2, else the text dump;
    the text dump also when this cryptsetup predates --dump-json-metadata (2.4), and then the
    JSON from its debug output when the text leaves a data segment's key undecided."""
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
        if any(isinstance(s.cipher, Unavailable) for s in header.segments):
            metadata = _read_debug_json(runner, cryptsetup, device.path, header.uuid or uuid)
            if metadata is not None:
                return metadata
        header = _add_exported_tokens(runner, cryptsetup, device.path, header)
    except (CommandFailed, CommandTimeout, AccessDenied, ToolMissing) as exc:
        return Unavailable(_explain(exc, device.path))
    except ValueError as exc:
        return Unavailable(f"cryptsetup luksDump {device.path}: unreadable output: {exc}")
    return header if header.uuid else replace(header, uuid=uuid)
