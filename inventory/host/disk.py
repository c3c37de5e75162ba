"""Block-device stack and disk encryption: lsblk, sysfs, blkid, cryptsetup and dmsetup.

One `lsblk --json` call gives the device tree; /sys/block/dm-*/dm/uuid tells which device-mapper
nodes are dm-crypt mappings (and of which kind); where udev holds no record of a device (containers,
hosts without udev) one `blkid -p` call probes the signatures lsblk could not see. Each LUKS device
costs one `cryptsetup luksDump` (JSON metadata for LUKS2, text for LUKS1 and old cryptsetup);
headerless mappings cost one `dmsetup table --target crypt` between them. Mounts come from
/proc/self/mountinfo and swap areas from /proc/swaps, each placed on the tree to say whether its
data reaches a disk only through a crypt layer.

A dm-crypt table line carries the volume key. `parse_dmsetup_crypt_table` keeps only the cipher
name and the key's length and never puts the line (or any part of the key) in an error message.
"""

from __future__ import annotations

import base64
import binascii
import json
import re
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any, Literal

from checks.facts.disk import (
    DATA_DIRS,
    BlockDevice,
    Cipher,
    CryptKind,
    DiskFacts,
    EncryptedVolume,
    LuksKeyslots,
    Mount,
    Swap,
    containing_mount,
)
from checks.model import Unavailable
from inventory.runner import (
    AccessDenied,
    CommandFailed,
    CommandTimeout,
    GatherError,
    Runner,
    ToolMissing,
)

LSBLK_COLUMNS = "NAME,KNAME,PATH,MAJ:MIN,TYPE,FSTYPE,FSVER,UUID,SIZE,PKNAME,MOUNTPOINTS"
"""util-linux ≥ 2.37 (MOUNTPOINTS; PATH since 2.33, FSVER since 2.35)."""
LSBLK_LEGACY_COLUMNS = "NAME,KNAME,MAJ:MIN,TYPE,FSTYPE,UUID,SIZE,PKNAME,MOUNTPOINT"
"""What older util-linux knows (RHEL 8: 2.32, Kylin V10: 2.35)."""

LSBLK_TIMEOUT_S = 5.0
BLKID_TIMEOUT_S = 10.0
CRYPTSETUP_TIMEOUT_S = 10.0
DMSETUP_TIMEOUT_S = 5.0

MOUNTINFO = "/proc/self/mountinfo"
PROC_SWAPS = "/proc/swaps"

# Kernel and virtual file systems that hold no data at rest; left out of `DiskFacts.mounts`.
PSEUDO_FILESYSTEMS = frozenset(
    [
        "autofs",
        "binfmt_misc",
        "bpf",
        "cgroup",
        "cgroup2",
        "configfs",
        "debugfs",
        "devpts",
        "devtmpfs",
        "efivarfs",
        "fusectl",
        "hugetlbfs",
        "mqueue",
        "nsfs",
        "proc",
        "pstore",
        "rpc_pipefs",
        "securityfs",
        "selinuxfs",
        "sysfs",
        "tracefs",
    ]
)

# The CRYPT-<KIND>- prefixes cryptsetup gives the dm uuids of mappings that encrypt. INTEGRITY,
# SUBDEV (the LUKS2 integrity sub-device), VERITY and TEMP also start with CRYPT- and do not.
_CRYPT_KINDS: Mapping[str, CryptKind] = {
    "LUKS1": "luks1",
    "LUKS2": "luks2",
    "PLAIN": "plain",
    "TCRYPT": "tcrypt",
    "BITLK": "bitlk",
    "LOOPAES": "loopaes",
    "FVAULT2": "fvault2",
}


# ----------------------------------------------------------------------------- ciphers

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


# ----------------------------------------------------------------------------- lsblk


def _text(value: Any) -> str | None:
    if value is None or isinstance(value, bool):
        return None
    text = str(value).strip()
    return text or None


def _int(value: Any) -> int | None:
    text = _text(value)
    return int(text) if text is not None and text.isdigit() else None


def _mountpoints(row: Mapping[str, Any]) -> tuple[str, ...]:
    raw = row.get("mountpoints", row.get("mountpoint"))
    values = raw if isinstance(raw, list) else [raw]
    return tuple(t for t in (_text(v) for v in values) if t is not None)


def _build_devices(rows: Iterable[tuple[Mapping[str, Any], str | None]]) -> tuple[BlockDevice, ...]:
    """Merge lsblk rows (a device appears once per parent) into one `BlockDevice` per KNAME."""
    devices: dict[str, BlockDevice] = {}
    for row, tree_parent in rows:
        name = _text(row.get("name"))
        kname = _text(row.get("kname")) or name
        if name is None or kname is None:
            raise ValueError("an lsblk entry has no NAME/KNAME")
        parents = tuple(p for p in (tree_parent, _text(row.get("pkname"))) if p)
        known = devices.get(kname)
        if known is not None:
            merged = tuple(dict.fromkeys((*known.parents, *parents)))
            devices[kname] = replace(known, parents=merged)
            continue
        dtype = _text(row.get("type")) or "unknown"
        default_path = f"/dev/mapper/{name}" if kname.startswith("dm-") else f"/dev/{kname}"
        devices[kname] = BlockDevice(
            name=name,
            kname=kname,
            path=_text(row.get("path")) or default_path,
            type=dtype,
            majmin=_text(row.get("maj:min")),
            size_bytes=_int(row.get("size")),
            fstype=_text(row.get("fstype")),
            fsver=_text(row.get("fsver")),
            uuid=_text(row.get("uuid")),
            mountpoints=_mountpoints(row),
            parents=tuple(dict.fromkeys(parents)),
        )
    return tuple(devices.values())


def parse_lsblk_json(text: str) -> tuple[BlockDevice, ...]:
    """`lsblk --json --bytes --output …` (tree or `--list`): one `BlockDevice` per KNAME, parents
    from the tree nesting and the PKNAME column. dm uuids are filled in later from sysfs."""
    data = json.loads(text)
    nodes = data.get("blockdevices") if isinstance(data, dict) else None
    if not isinstance(nodes, list):
        raise ValueError("lsblk --json printed no blockdevices list")
    rows: list[tuple[Mapping[str, Any], str | None]] = []

    def walk(node: Any, parent: str | None) -> None:
        if not isinstance(node, dict):
            return
        rows.append((node, parent))
        here = _text(node.get("kname")) or _text(node.get("name"))
        for child in node.get("children") or []:
            walk(child, here)

    for node in nodes:
        walk(node, None)
    return _build_devices(rows)


_PAIR = re.compile(r'([A-Z0-9:%_-]+)="((?:[^"\\]|\\.)*)"')


def parse_lsblk_pairs(text: str) -> tuple[BlockDevice, ...]:
    """`lsblk --pairs --bytes --output …` (util-linux < 2.27 has no --json): KEY="value" lines,
    unsafe characters as \\xHH, one line per (device, parent)."""
    rows: list[tuple[Mapping[str, Any], str | None]] = []
    for line in text.splitlines():
        pairs = {
            key.lower(): re.sub(r"\\x([0-9a-fA-F]{2})", lambda m: chr(int(m.group(1), 16)), value)
            for key, value in _PAIR.findall(line)
        }
        if pairs:
            rows.append((pairs, None))
    return _build_devices(rows)


def read_lsblk(runner: Runner) -> tuple[BlockDevice, ...]:
    """The device tree from one lsblk call; older util-linux costs a retry per missing feature.
    Raises GatherError when lsblk is missing or no form of the call works."""
    attempts: tuple[tuple[list[str], bool], ...] = (
        (["--json", "--bytes", "--output", LSBLK_COLUMNS], True),
        (["--json", "--bytes", "--output", LSBLK_LEGACY_COLUMNS], True),
        (["--pairs", "--bytes", "--output", LSBLK_LEGACY_COLUMNS], False),
    )
    failure: CommandFailed | None = None
    for args, is_json in attempts:
        try:
            out = runner.run(["lsblk", *args], timeout=LSBLK_TIMEOUT_S).stdout
        except CommandFailed as exc:  # an option or column this util-linux does not know
            failure = exc
            continue
        return parse_lsblk_json(out) if is_json else parse_lsblk_pairs(out)
    raise failure or GatherError("lsblk printed nothing usable")


# ----------------------------------------------------------------------------- sysfs and blkid


def crypt_kind(dm_uuid: str | None, lsblk_type: str) -> CryptKind | Literal["crypt"] | None:
    """The encryption a device-mapper node performs, from its dm uuid (CRYPT-LUKS2-…)."""
    if dm_uuid is None:
        return "crypt" if lsblk_type == "crypt" else None
    prefix, _, rest = dm_uuid.partition("-")
    if prefix != "CRYPT":
        return None
    return _CRYPT_KINDS.get(rest.partition("-")[0])


def _read_optional(runner: Runner, path: str) -> str | None:
    try:
        return runner.read_text(path).strip() or None
    except GatherError:
        return None


def _with_dm_uuids(runner: Runner, devices: Iterable[BlockDevice]) -> list[BlockDevice]:
    result = []
    for dev in devices:
        dm_uuid = None
        if dev.kname.startswith("dm-"):
            dm_uuid = _read_optional(runner, f"/sys/block/{dev.kname}/dm/uuid")
        result.append(replace(dev, dm_uuid=dm_uuid, encryption=crypt_kind(dm_uuid, dev.type)))
    return result


def parse_blkid_export(stdout: str, stderr: str = "") -> dict[str, dict[str, str] | str]:
    """`blkid -p -o export DEV…`: DEVNAME → its KEY=value block, or the error blkid printed for it
    (`blkid: error: /dev/vda: Operation not permitted`). Devices with no signature are absent."""
    result: dict[str, dict[str, str] | str] = {}
    for block in re.split(r"\n\s*\n", stdout.strip()):
        values = dict(
            line.split("=", 1) for line in block.splitlines() if "=" in line and line.strip()
        )
        if "DEVNAME" in values:
            result[values["DEVNAME"]] = values
    for line in stderr.splitlines():
        match = re.match(r"blkid: error: (/\S+): (.+)$", line.strip())
        if match:
            result[match.group(1)] = match.group(2)
    return result


def _needs_probe(runner: Runner, dev: BlockDevice) -> bool:
    """lsblk takes FSTYPE from the udev database; without a udev record it knows nothing."""
    if dev.fstype is not None or dev.type == "rom" or dev.size_bytes == 0:
        return False
    return dev.majmin is None or not runner.exists(f"/run/udev/data/b{dev.majmin}")


def _probe_signatures(runner: Runner, devices: list[BlockDevice]) -> list[BlockDevice]:
    todo = [dev for dev in devices if _needs_probe(runner, dev)]
    if not todo:
        return devices
    argv = ["blkid", "-p", "-o", "export", *(dev.path for dev in todo)]
    try:
        result = runner.run(argv, timeout=BLKID_TIMEOUT_S, check=False)
    except GatherError as exc:
        failed: dict[str, dict[str, str] | str] = {dev.path: str(exc) for dev in todo}
    else:
        # Exit status 2 only says some device had no signature; errors are per device on stderr.
        failed = parse_blkid_export(result.stdout, result.stderr)
    probed = {dev.path for dev in todo}
    out = []
    for dev in devices:
        found = failed.get(dev.path)
        if dev.path not in probed:
            out.append(dev)
        elif isinstance(found, str):
            out.append(replace(dev, fstype=Unavailable(f"blkid -p {dev.path}: {found}")))
        elif found is None:
            out.append(dev)  # probed, no signature: fstype stays None
        else:
            out.append(
                replace(
                    dev,
                    fstype=found.get("TYPE"),  # a partition table alone (PTTYPE) is no file system
                    fsver=dev.fsver or found.get("VERSION"),
                    uuid=dev.uuid or found.get("UUID"),
                )
            )
    return out


def collect_block_devices(runner: Runner) -> tuple[BlockDevice, ...] | Unavailable:
    """lsblk's tree with dm uuids from sysfs and, where udev has no record, blkid's signatures."""
    try:
        devices = list(read_lsblk(runner))
    except ToolMissing:
        return Unavailable("lsblk is not installed (util-linux)")
    except (GatherError, ValueError) as exc:
        return Unavailable(f"lsblk: {exc}")
    return tuple(_probe_signatures(runner, _with_dm_uuids(runner, devices)))


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
    sizes = [_int(keyslots[k].get("key_size")) for k in bound]
    key_bytes = max((s for s in sizes if s is not None), default=None)
    integrity_obj = segment.get("integrity")
    integrity = _text(integrity_obj.get("type")) if isinstance(integrity_obj, Mapping) else None
    cipher: Cipher | Unavailable
    if segment.get("type") == "linear":
        cipher = make_cipher("linear", 0)
    elif key_bytes is None:
        cipher = Unavailable("no keyslot holds the volume key, so its size is not recorded")
    else:
        spec = _text(segment.get("encryption")) or str(segment.get("type"))
        cipher = make_cipher(spec, key_bytes * 8, integrity)
    pbkdf = []
    for k in bound:
        kdf = keyslots[k].get("kdf")
        if isinstance(kdf, Mapping) and _text(kdf.get("type")):
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


# ----------------------------------------------------------------------------- volumes


def _luks_hint(fsver: str | None) -> CryptKind | None:
    version = (fsver or "").strip()
    if version == "1":
        return "luks1"
    return "luks2" if version == "2" else None


def _headerless_kind(mapping: BlockDevice) -> CryptKind:
    """A crypt mapping of unknown kind (dm uuid unreadable) on a device without a LUKS
    signature is taken for plain dm-crypt."""
    kind = mapping.encryption
    if kind is None or kind == "crypt":
        return "plain"
    return kind


def collect_volumes(runner: Runner, devices: Sequence[BlockDevice]) -> tuple[EncryptedVolume, ...]:
    """LUKS devices (by signature, or as the backing device of an open LUKS mapping) and open
    headerless crypt mappings, each with what its header or dm table says."""
    by_kname = {dev.kname: dev for dev in devices}
    mappings: dict[str, BlockDevice] = {}
    for dev in devices:
        if dev.encryption is not None and dev.parents:
            mappings.setdefault(dev.parents[0], dev)
    luks: dict[str, CryptKind | None] = {}
    for dev in devices:
        if dev.fstype == "crypto_LUKS":
            luks[dev.kname] = _luks_hint(dev.fsver)
    for kname, mapping in mappings.items():
        if mapping.encryption in ("luks1", "luks2") and kname in by_kname:
            luks[kname] = luks.get(kname) or _luks_hint(mapping.encryption[-1])
    volumes: list[EncryptedVolume] = []
    for kname, hint in luks.items():
        dev, opened = by_kname[kname], mappings.get(kname)
        header = read_luks_header(runner, dev, hint)
        kind: CryptKind = hint or "luks"
        if isinstance(header, LuksHeader):
            kind = "luks1" if header.version == 1 else "luks2"
        volumes.append(
            EncryptedVolume(
                device=dev.path,
                kind=kind,
                uuid=header.uuid if isinstance(header, LuksHeader) else dev.uuid,
                mapped_name=opened.name if opened else None,
                mapped_path=opened.path if opened else None,
                cipher=header.cipher if isinstance(header, LuksHeader) else header,
                keys=header.keys if isinstance(header, LuksHeader) else header,
            )
        )
    headerless = [
        (kname, mapping)
        for kname, mapping in mappings.items()
        if kname not in luks and mapping.encryption is not None
    ]
    tables: dict[str, Cipher] | Unavailable = {}
    if headerless:
        tables = read_dm_crypt_tables(runner)
    for kname, mapping in headerless:
        cipher: Cipher | Unavailable
        if isinstance(tables, Unavailable):
            cipher = tables
        else:
            cipher = tables.get(mapping.name) or Unavailable(
                f"dmsetup table lists no crypt target named {mapping.name}"
            )
        backing = by_kname.get(kname)
        volumes.append(
            EncryptedVolume(
                device=backing.path if backing else f"/dev/{kname}",
                kind=_headerless_kind(mapping),
                uuid=None,
                mapped_name=mapping.name,
                mapped_path=mapping.path,
                cipher=cipher,
                keys=None,
            )
        )
    return tuple(volumes)


# ----------------------------------------------------------------------------- mounts and swap


def _unescape(text: str) -> str:
    """Octal escapes the kernel uses in mountinfo and /proc/swaps (\\040 for a space)."""
    return re.sub(r"\\([0-7]{3})", lambda m: chr(int(m.group(1), 8)), text)


@dataclass(frozen=True)
class MountEntry:
    """One /proc/self/mountinfo line, before it is placed on the block-device tree."""

    mountpoint: str
    source: str
    fstype: str
    majmin: str
    root: str


def parse_mountinfo(text: str) -> tuple[MountEntry, ...]:
    """proc(5) mountinfo: `id parent maj:min root mountpoint options [optional…] - fstype source
    superoptions`. Pseudo file systems are dropped; of several mounts on one mountpoint the last
    (the visible one) is kept."""
    entries: dict[str, MountEntry] = {}
    for line in text.splitlines():
        left, sep, right = line.partition(" - ")
        head, tail = left.split(), right.split()
        if not sep or len(head) < 6 or len(tail) < 2:
            continue
        fstype = tail[0]
        if fstype in PSEUDO_FILESYSTEMS:
            continue
        mountpoint = _unescape(head[4])
        entries.pop(mountpoint, None)
        entries[mountpoint] = MountEntry(
            mountpoint=mountpoint,
            source=_unescape(tail[1]),
            fstype=fstype,
            majmin=head[2],
            root=_unescape(head[3]),
        )
    return tuple(entries.values())


@dataclass(frozen=True)
class SwapEntry:
    """One /proc/swaps line."""

    path: str
    kind: str
    size_bytes: int


def parse_proc_swaps(text: str) -> tuple[SwapEntry, ...]:
    """/proc/swaps: a header, then `Filename Type Size(KiB) Used Priority` per swap area."""
    swaps = []
    for line in text.splitlines()[1:]:
        fields = line.split()
        if len(fields) >= 3 and fields[2].isdigit():
            swaps.append(SwapEntry(_unescape(fields[0]), fields[1], int(fields[2]) * 1024))
    return tuple(swaps)


@dataclass(frozen=True)
class Placement:
    """Where a mount or swap area sits on the block-device tree."""

    device: str | None
    layers: tuple[str, ...]
    crypt_layers: tuple[str, ...]
    encrypted: bool | Unavailable


class DeviceTree:
    """Lookups over the block devices: by KNAME, MAJ:MIN and every path a device goes by."""

    def __init__(self, devices: Iterable[BlockDevice]) -> None:
        self.by_kname: dict[str, BlockDevice] = {}
        self.by_majmin: dict[str, BlockDevice] = {}
        self.by_path: dict[str, BlockDevice] = {}
        for dev in devices:
            self.by_kname[dev.kname] = dev
            if dev.majmin:
                self.by_majmin[dev.majmin] = dev
            for path in (dev.path, f"/dev/{dev.kname}", f"/dev/{dev.name}"):
                self.by_path.setdefault(path, dev)
            if dev.kname.startswith("dm-"):
                self.by_path.setdefault(f"/dev/mapper/{dev.name}", dev)

    def find(self, majmin: str | None, path: str | None) -> BlockDevice | None:
        if majmin and not majmin.startswith("0:") and majmin in self.by_majmin:
            return self.by_majmin[majmin]
        return self.by_path.get(path or "")

    def place(self, dev: BlockDevice) -> Placement:
        """Every device beneath `dev` (top first) and whether each path down crosses crypt."""
        layers: list[str] = []
        crypt: list[str] = []
        verdicts: dict[str, bool] = {}

        def covered(kname: str) -> bool:
            if kname in verdicts:  # shared lower layers (md, multipath) are walked once
                return verdicts[kname]
            node = self.by_kname.get(kname)
            if node is None:
                return False
            verdicts[kname] = False  # a cycle would be a broken tree: it encrypts nothing
            layers.append(node.path)
            if node.encryption is not None:
                crypt.append(node.path)
            below = [covered(parent) for parent in node.parents]
            verdicts[kname] = node.encryption is not None or (bool(below) and all(below))
            return verdicts[kname]

        encrypted = covered(dev.kname)
        return Placement(dev.path, tuple(layers), tuple(crypt), encrypted)


def place_mounts(
    entries: Iterable[MountEntry], devices: tuple[BlockDevice, ...] | Unavailable
) -> tuple[Mount, ...]:
    tree = DeviceTree(devices) if not isinstance(devices, Unavailable) else None
    mounts = []
    for entry in entries:
        placement = _place(tree, devices, entry.majmin, entry.source, entry.fstype)
        mounts.append(
            Mount(
                mountpoint=entry.mountpoint,
                source=entry.source,
                fstype=entry.fstype,
                majmin=entry.majmin,
                root=entry.root,
                device=placement.device,
                layers=placement.layers,
                crypt_layers=placement.crypt_layers,
                encrypted=placement.encrypted,
            )
        )
    return tuple(mounts)


def _place(
    tree: DeviceTree | None,
    devices: tuple[BlockDevice, ...] | Unavailable,
    majmin: str | None,
    source: str,
    fstype: str,
) -> Placement:
    if tree is None or isinstance(devices, Unavailable):
        reason = devices.reason if isinstance(devices, Unavailable) else "no device tree"
        return Placement(None, (), (), Unavailable(f"block devices unavailable: {reason}"))
    dev = tree.find(majmin, source)
    if dev is not None:
        return tree.place(dev)
    if source.startswith("/dev/"):
        why = f"{source} is not in the block-device tree lsblk printed"
    else:
        why = f"{source} ({fstype}) is not a local block device"
    return Placement(None, (), (), Unavailable(why))


def place_swaps(
    runner: Runner,
    entries: Iterable[SwapEntry],
    devices: tuple[BlockDevice, ...] | Unavailable,
    mounts: tuple[Mount, ...] | Unavailable,
) -> tuple[Swap, ...]:
    tree = DeviceTree(devices) if not isinstance(devices, Unavailable) else None
    swaps = []
    for entry in entries:
        in_memory = False
        if entry.kind == "file":
            mount = containing_mount(mounts, entry.path) if isinstance(mounts, tuple) else None
            if mount is None:
                placement = Placement(
                    None, (), (), Unavailable(f"no mount holding swap file {entry.path} is known")
                )
            else:
                placement = Placement(
                    mount.device, mount.layers, mount.crypt_layers, mount.encrypted
                )
        else:
            placement = _place(tree, devices, None, entry.path, "swap")
            name = entry.path.rpartition("/")[2]
            if tree is not None and placement.device is not None:
                name = tree.by_path[placement.device].kname
            if name.startswith("zram"):
                backing = _read_optional(runner, f"/sys/block/{name}/backing_dev")
                if backing is None or backing == "none":
                    in_memory = True
                else:  # zram writeback: idle pages are written to this device
                    placement = _place(tree, devices, None, backing, "swap")
        swaps.append(
            Swap(
                path=entry.path,
                kind=entry.kind,
                size_bytes=entry.size_bytes,
                device=placement.device,
                layers=placement.layers,
                crypt_layers=placement.crypt_layers,
                encrypted=placement.encrypted,
                in_memory=in_memory,
            )
        )
    return tuple(swaps)


def _read_proc(runner: Runner, path: str) -> str | Unavailable:
    try:
        return runner.read_text(path)
    except GatherError as exc:
        return Unavailable(str(exc))


def _data_dirs(runner: Runner) -> Iterator[str]:
    for path in DATA_DIRS:
        if runner.exists(path):
            yield runner.realpath(path)  # a symlinked data dir lives where it points


# ----------------------------------------------------------------------------- entry point


def collect_disk(runner: Runner) -> DiskFacts | Unavailable:
    """The block-device stack, encrypted volumes, mounts and swap areas of the host behind
    `runner`. Unavailable only when neither lsblk nor /proc/self/mountinfo can be read."""
    devices = collect_block_devices(runner)
    mountinfo = _read_proc(runner, MOUNTINFO)
    if isinstance(devices, Unavailable) and isinstance(mountinfo, Unavailable):
        return Unavailable(f"{devices.reason}; {mountinfo.reason}")
    volumes: tuple[EncryptedVolume, ...] | Unavailable = (
        devices if isinstance(devices, Unavailable) else collect_volumes(runner, devices)
    )
    mounts: tuple[Mount, ...] | Unavailable = (
        mountinfo
        if isinstance(mountinfo, Unavailable)
        else place_mounts(parse_mountinfo(mountinfo), devices)
    )
    swaps_text = _read_proc(runner, PROC_SWAPS)
    swaps: tuple[Swap, ...] | Unavailable = (
        swaps_text
        if isinstance(swaps_text, Unavailable)
        else place_swaps(runner, parse_proc_swaps(swaps_text), devices, mounts)
    )
    return DiskFacts(
        block_devices=devices,
        volumes=volumes,
        mounts=mounts,
        swaps=swaps,
        data_dirs=tuple(dict.fromkeys(_data_dirs(runner))),
    )
