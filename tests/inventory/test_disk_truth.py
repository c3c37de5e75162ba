"""`disk.cipher_strength` against cryptsetup's own reading of real LUKS headers.

Every header here is written by cryptsetup 2.x on a sparse image file: `luksFormat` across
ciphers, modes and key sizes, LUKS1 and LUKS2, detached headers, extra and unbound keyslots; and
LUKS2 left half-way by `cryptsetup reencrypt` (to a new key, `--encrypt`, `--decrypt`) on 1 GiB
files, interrupted with SIGINT after a fraction of a second. medsec's verdict comes from its own
reader (`collect_volumes` on the image, as on a device) and the check with its default
`min_strength` (aes-256). The truth comes from `cryptsetup luksDump --dump-json-metadata` (for
LUKS1, of a copy `cryptsetup convert --type luks2` made of it), read by the rule below with
nothing of medsec's:

1. The data segments are the segments none of whose flags starts with `backup-`.
2. A `linear` data segment is plaintext: it fails.
3. A `crypt` data segment is covered by the keyslots of every digest whose `segments` list it;
   its key has `key_size` × 8 bits. No such keyslot: it cannot be judged (error). Keys of
   several sizes: each is judged and the worst verdict stands.
4. Its cipher is `encryption` up to the first `-`, its mode the next field
   (`aes-cbc-essiv:sha256` → aes, cbc). XTS keys hold two keys of half the length.
5. It passes when the cipher is aes, the mode neither ecb nor ctr (ECB shows equal blocks, CTR
   reuses a sector's keystream on every write), and the cipher's own key has ≥ 256 bits; it
   fails otherwise.
6. The volume fails when any data segment fails, is an error when any cannot be judged, and
   passes otherwise. A keyslot of type `reencrypt` means a re-encryption is in progress, which
   medsec's evidence must say, with every data segment's byte range and verdict.

The same headers also hold medsec's two readers to each other: the text dump (what cryptsetup
< 2.4 offers) must give the JSON's segments, keys and re-encryption state, except a segment
whose key the text cannot name (rule: it prints no digest per segment, so two bound key sizes
that fit the segment's cipher leave it open); cryptsetup 2.1–2.3 then prints the metadata in
its debug output, and the reader playing such a cryptsetup must reach the truth all the same.

What cannot be generated here (no device-mapper, no SM4/serpent/twofish in the kernel's crypto
API): see tests/inventory/luks_images.py.
"""

from __future__ import annotations

import json
import shutil
import subprocess
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from checks.facts import HostFacts
from checks.facts.disk import BlockDevice, DiskFacts, EncryptedVolume
from checks.host import disk as disk_checks
from checks.model import Result, Status, Unavailable
from checks.registry import Registry
from checks.runner import run_check
from inventory.host.disk import (
    collect_volumes,
    parse_luks1_dump,
    parse_luks2_dump,
    parse_luks_debug_json,
    parse_luks_dump_json,
)
from inventory.runner import CommandFailed, CommandResult, LocalRunner
from tests.inventory.luks_images import (
    FAST_KDF,
    LUKS1_FAST_KDF,
    cryptsetup,
    need_cryptsetup,
    reencrypt_part_way,
    sparse_file,
)

REGISTRY = Registry.from_modules([disk_checks])
GIB = 2**30

# ----------------------------------------------------------------------------- the truth


def _strength(spec: str, bits: int) -> Status:
    """Rules 4 and 5."""
    cipher, mode = [*spec.split("-"), ""][:2]
    effective = bits // 2 if mode == "xts" else bits
    passes = cipher == "aes" and mode not in ("ecb", "ctr") and effective >= 256
    return Status.PASS if passes else Status.FAIL


def _worst(statuses: Sequence[Status]) -> Status:
    """Rule 6, also rule 3's several key sizes."""
    for status in (Status.FAIL, Status.ERROR):
        if status in statuses:
            return status
    return Status.PASS


@dataclass(frozen=True)
class Truth:
    status: Status
    ranges: tuple[tuple[int, int | None, Status], ...]
    """(offset, length or None for "to the end", verdict) of each data segment."""
    in_progress: bool


def truth(meta: Mapping[str, Any]) -> Truth:
    ranges = []
    for sid, segment in sorted(meta["segments"].items(), key=lambda kv: int(kv[0])):
        if any(flag.startswith("backup-") for flag in segment.get("flags", [])):
            continue  # rule 1
        if segment["type"] == "linear":
            verdict = Status.FAIL  # rule 2
        else:
            sizes = {
                meta["keyslots"][slot]["key_size"] * 8
                for digest in meta["digests"].values()
                if sid in digest["segments"]
                for slot in digest["keyslots"]
            }
            verdict = (
                _worst([_strength(segment["encryption"], bits) for bits in sizes])
                if sizes
                else Status.ERROR
            )
        size = segment["size"]
        ranges.append((int(segment["offset"]), None if size == "dynamic" else int(size), verdict))
    in_progress = any(k["type"] == "reencrypt" for k in meta["keyslots"].values())
    return Truth(_worst([r[2] for r in ranges]), tuple(ranges), in_progress)


# ----------------------------------------------------------------------------- the headers


@dataclass(frozen=True)
class Made:
    """A header cryptsetup wrote, and cryptsetup's dumps of it."""

    path: Path
    luks_type: str
    meta: Mapping[str, Any]
    """--dump-json-metadata; for LUKS1, of the converted copy."""
    text: str


class Workshop:
    """Makes each header once, in one directory, with one key file."""

    def __init__(self, work: Path) -> None:
        self.work = work
        self.key = work / "key"
        self.key.write_bytes(bytes(range(64)))
        self.made: dict[str, Made] = {}

    def format(self, name: str, *options: str, size: int = 32 * 2**20) -> Path:
        image = sparse_file(self.work / f"{name}.img", size)
        cryptsetup("luksFormat", "--batch-mode", "--key-file", str(self.key), *options, str(image))
        return image

    def keyed(self, *options: str) -> list[str]:
        return [*options, "--key-file", str(self.key), *FAST_KDF]

    def dumps(self, name: str, header: Path, luks_type: str) -> Made:
        text = cryptsetup("luksDump", str(header))
        if luks_type == "luks1":
            copy = self.work / f"{name}.luks2"
            shutil.copyfile(header, copy)
            cryptsetup("convert", "--batch-mode", "--type", "luks2", str(copy))
            meta = json.loads(cryptsetup("luksDump", "--dump-json-metadata", str(copy)))
            copy.unlink()
        else:
            meta = json.loads(cryptsetup("luksDump", "--dump-json-metadata", str(header)))
        return Made(header, luks_type, meta, text)


Builder = Callable[[Workshop, str], tuple[Path, str]]
"""Writes a header; returns the file holding it and its LUKS type."""


def formatted(luks_type: str, spec: str, bits: int, *extra: str) -> Builder:
    def build(shop: Workshop, name: str) -> tuple[Path, str]:
        kdf = LUKS1_FAST_KDF if luks_type == "luks1" else FAST_KDF
        options = ("--type", luks_type, "--cipher", spec, "--key-size", str(bits), *kdf, *extra)
        return shop.format(name, *options), luks_type

    return build


def detached(spec: str, bits: int) -> Builder:
    def build(shop: Workshop, name: str) -> tuple[Path, str]:
        header = shop.work / f"{name}.hdr"
        options = ["--type", "luks2", "--cipher", spec, "--key-size", str(bits), *FAST_KDF]
        shop.format(name, "--header", str(header), *options)
        return header, "luks2"

    return build


def with_keyslot(luks_type: str, bits: int, *add: str) -> Builder:
    """A second keyslot: `add` holds luksAddKey's options (`--unbound --key-size N` for a
    keyslot that unlocks no data)."""

    def build(shop: Workshop, name: str) -> tuple[Path, str]:
        image, _ = formatted(luks_type, "aes-xts-plain64", bits)(shop, name)
        second = shop.work / f"{name}.key2"
        second.write_bytes(b"another passphrase")
        kdf = () if "--pbkdf" in add else LUKS1_FAST_KDF if luks_type == "luks1" else FAST_KDF
        unbound = "--unbound" in add
        cryptsetup(
            "luksAddKey",
            "--batch-mode",
            *([] if unbound else ["--key-file", str(shop.key)]),
            *kdf,
            *add,
            str(image),
            str(second),
        )
        return image, luks_type

    return build


def interrupted(
    start: Sequence[str], operation: Sequence[str], header: bool = False, split: bool = True
) -> Builder:
    """A 1 GiB sparse file formatted with `start` (nothing to format when empty), then
    `cryptsetup reencrypt OPERATION` stopped part-way with SIGINT; with `header` the LUKS2
    header lives in a file of its own."""

    def build(shop: Workshop, name: str) -> tuple[Path, str]:
        image = shop.work / f"{name}.img"
        hdr = shop.work / f"{name}.hdr" if header else None
        holder = reencrypt_part_way(
            image,
            shop.keyed(*start) if start else None,
            shop.keyed(*operation),
            header=hdr,
            split=split,
        )
        return holder, "luks2"

    return build


def _formats() -> dict[str, Builder]:
    specs = [
        ("aes-xts-plain64", 256),
        ("aes-xts-plain64", 512),
        ("aes-xts-essiv:sha256", 512),
        ("aes-xts-plain", 256),
        ("aes-cbc-essiv:sha256", 128),
        ("aes-cbc-essiv:sha256", 192),
        ("aes-cbc-essiv:sha256", 256),
        ("aes-cbc-plain64", 256),
        ("aes-cbc-benbi", 128),
        ("aes-ecb", 256),
        ("aes-ctr-plain64", 256),
    ]
    return {
        f"{luks_type}-{spec}-{bits}": formatted(luks_type, spec, bits)
        for luks_type in ("luks1", "luks2")
        for spec, bits in specs
    }


XTS = ("--cipher", "aes-xts-plain64")
CASES: dict[str, Builder] = {
    **_formats(),
    "luks2-sector-512": formatted("luks2", "aes-xts-plain64", 512, "--sector-size", "512"),
    "luks2-detached-512": detached("aes-xts-plain64", 512),
    "luks2-detached-256": detached("aes-xts-plain64", 256),
    "luks2-detached-cbc-128": detached("aes-cbc-essiv:sha256", 128),
    "luks1-second-keyslot": with_keyslot("luks1", 512),
    "luks2-second-keyslot-argon2id": with_keyslot(
        "luks2", 256, "--pbkdf", "argon2id", "--pbkdf-memory", "32", "--pbkdf-force-iterations", "4"
    ),
    # An unbound keyslot unlocks no data: its key size must not count either way.
    "luks2-512-unbound-128": with_keyslot("luks2", 512, "--unbound", "--key-size", "128"),
    "luks2-256-unbound-512": with_keyslot("luks2", 256, "--unbound", "--key-size", "512"),
    "reencrypt-init-only": interrupted(
        (*XTS, "--key-size", "256"), ("--init-only", *XTS, "--key-size", "512"), split=False
    ),
    "reencrypt-256-to-512": interrupted(
        (*XTS, "--key-size", "256"), (*XTS, "--key-size", "512", "--resilience", "none")
    ),
    "reencrypt-512-to-256": interrupted(
        (*XTS, "--key-size", "512"), (*XTS, "--key-size", "256", "--resilience", "none")
    ),
    "reencrypt-512-to-512": interrupted(
        (*XTS, "--key-size", "512"), (*XTS, "--key-size", "512", "--resilience", "none")
    ),
    "reencrypt-xts-512-to-cbc-256": interrupted(
        (*XTS, "--key-size", "512"),
        ("--cipher", "aes-cbc-essiv:sha256", "--key-size", "256", "--resilience", "none"),
    ),
    "reencrypt-cbc-256-to-xts-256-journal": interrupted(
        ("--cipher", "aes-cbc-essiv:sha256", "--key-size", "256"),
        (*XTS, "--key-size", "256", "--resilience", "journal"),
    ),
    "encrypt-shift": interrupted(
        (),
        ("--encrypt", "--type", "luks2", *XTS, "--key-size", "512", "--reduce-device-size", "32M"),
    ),
    "encrypt-detached": interrupted(
        (),
        ("--encrypt", "--type", "luks2", *XTS, "--key-size", "512", "--resilience", "journal"),
        header=True,
    ),
    "decrypt-detached": interrupted(
        (*XTS, "--key-size", "512"), ("--decrypt", "--resilience", "journal"), header=True
    ),
}
INTERRUPTED = {
    name for name, build in CASES.items() if build.__qualname__.startswith("interrupted")
}


@pytest.fixture(scope="module")
def workshop(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Workshop]:
    need_cryptsetup()
    shop = Workshop(tmp_path_factory.mktemp("luks-truth"))
    yield shop
    shutil.rmtree(shop.work, ignore_errors=True)


def made(shop: Workshop, name: str) -> Made:
    if name not in shop.made:
        path, luks_type = CASES[name](shop, name)
        shop.made[name] = shop.dumps(name, path, luks_type)
        if path.suffix == ".hdr":  # the data file of a detached header is not needed any more
            shop.work.joinpath(f"{name}.img").unlink(missing_ok=True)
    return shop.made[name]


# ----------------------------------------------------------------------------- medsec


class Cryptsetup23(LocalRunner):
    """cryptsetup as 2.1–2.3 (RHEL 8, Kylin V10) answer: no --dump-json-metadata (and, with
    `debug_json=False`, as 2.0 answers: no --debug-json either)."""

    def __init__(self, debug_json: bool = True) -> None:
        super().__init__()
        self.refused = ["--dump-json-metadata"] + ([] if debug_json else ["--debug-json"])

    def run(
        self,
        argv: Sequence[str],
        *,
        timeout: float = 10.0,
        check: bool = True,
        input_text: str | None = None,
        env: Mapping[str, str] | None = None,
    ) -> CommandResult:
        refused = [option for option in self.refused if option in argv]
        if refused:
            stderr = f"cryptsetup: {refused[0]}: unknown option\n"
            raise CommandFailed(f"cryptsetup exited 1: {stderr.strip()}", 1, stderr)
        return super().run(argv, timeout=timeout, check=check, input_text=input_text, env=env)


def medsec(header: Made, runner: LocalRunner) -> tuple[EncryptedVolume, Result]:
    device = BlockDevice(
        name=header.path.name,
        kname=header.path.name,
        path=str(header.path),
        type="loop",
        majmin=None,
        size_bytes=None,
        fstype="crypto_LUKS",
        fsver=header.luks_type[-1],
        uuid=None,
        mountpoints=(),
        parents=(),
    )
    [volume] = collect_volumes(runner, [device])
    disk = DiskFacts(block_devices=(device,), volumes=(volume,), mounts=(), swaps=())
    [result] = run_check(REGISTRY.get("disk.cipher_strength"), HostFacts(disk=disk), {})
    return volume, result


def _ranges(volume: EncryptedVolume, result: Result) -> tuple[tuple[int, int | None, Status], ...]:
    if "segments" in result.evidence:
        return tuple(
            (s["offset"], s["length"], Status(s["status"])) for s in result.evidence["segments"]
        )
    return tuple((s.offset, s.length, result.status) for s in volume.segments)


# ----------------------------------------------------------------------------- the tests


@pytest.mark.parametrize("name", sorted(CASES))
def test_verdict_is_what_cryptsetup_says_the_header_holds(workshop, name):
    header = made(workshop, name)
    expected = truth(header.meta)
    volume, result = medsec(header, LocalRunner())
    assert result.status == expected.status, (result.message, expected)
    assert _ranges(volume, result) == expected.ranges, result.message
    assert (result.evidence.get("reencryption") is not None) == expected.in_progress
    # cryptsetup 2.1–2.3: the text dump, then the debug output where the text cannot tell.
    old_volume, old_result = medsec(header, Cryptsetup23())
    assert old_result.status == expected.status, (old_result.message, expected)
    assert _ranges(old_volume, old_result) == expected.ranges


def _undecidable(meta: Mapping[str, Any], spec: str) -> bool:
    """The text dump's limit, computed from the JSON: the keys bound to data segments (rule 1)
    come in more than one size that the segment's cipher takes (an AES key length by rule 4)."""
    data = {
        sid
        for sid, segment in meta["segments"].items()
        if not any(flag.startswith("backup-") for flag in segment.get("flags", []))
    }
    sizes = {
        meta["keyslots"][slot]["key_size"] * 8
        for digest in meta["digests"].values()
        if data & set(digest["segments"])
        for slot in digest["keyslots"]
    }
    mode = [*spec.split("-"), ""][1]
    fitting = {b for b in sizes if (b // 2 if mode == "xts" else b) in (128, 192, 256)}
    return len(fitting) > 1


@pytest.mark.parametrize("name", sorted(CASES))
def test_text_dump_and_json_metadata_agree(workshop, name):
    header = made(workshop, name)
    if header.luks_type == "luks1":
        from_text = parse_luks1_dump(header.text)
        converted = parse_luks_dump_json(json.dumps(header.meta))
        assert from_text.cipher == converted.cipher
        assert [s.cipher for s in from_text.segments] == [s.cipher for s in converted.segments]
        return
    from_json = parse_luks_dump_json(json.dumps(header.meta))
    from_text = parse_luks2_dump(header.text)
    assert from_text.keys == from_json.keys
    assert from_text.reencryption == from_json.reencryption
    assert len(from_text.segments) == len(from_json.segments)
    for text_segment, json_segment in zip(from_text.segments, from_json.segments, strict=True):
        assert (text_segment.offset, text_segment.length) == (
            json_segment.offset,
            json_segment.length,
        )
        if isinstance(text_segment.cipher, Unavailable):
            spec = header.meta["segments"][json_segment.id].get("encryption", "")
            assert _undecidable(header.meta, spec), text_segment.cipher.reason
            assert "does not say which covers" in text_segment.cipher.reason
        else:
            assert text_segment.cipher == json_segment.cipher
    debug = subprocess.run(
        [need_cryptsetup(), "luksDump", "--debug-json", str(header.path)],
        capture_output=True,
        text=True,
        timeout=30,
        check=True,
    ).stdout
    assert parse_luks_debug_json(debug) == from_json


def test_cryptsetup_2_0_leaves_undecided_ranges_an_error_never_a_pass(workshop):
    """Without --debug-json either, a re-encryption between key sizes is an error."""
    header = made(workshop, "reencrypt-256-to-512")
    _, result = medsec(header, Cryptsetup23(debug_json=False))
    assert result.status is Status.ERROR
    assert "does not say which covers" in result.message


def test_the_generated_headers_cover_every_state(workshop):
    """A truth test that never met a half-done re-encryption would prove nothing: the interrupted
    operations must have stopped part-way, and the verdicts must not all be the same."""
    truths = {name: truth(made(workshop, name).meta) for name in sorted(CASES)}
    stopped = {n for n in INTERRUPTED if truths[n].in_progress}
    assert stopped == INTERRUPTED, f"finished before SIGINT took: {INTERRUPTED - stopped}"
    split = {n for n, t in truths.items() if len(t.ranges) > 1}
    assert len(split) >= len(INTERRUPTED) - 1  # --init-only has not split yet
    mixed = {n for n in split if len({r[2] for r in truths[n].ranges}) > 1}
    assert {"reencrypt-256-to-512", "reencrypt-512-to-256", "encrypt-shift"} <= mixed
    assert {t.status for t in truths.values()} == {Status.PASS, Status.FAIL}
