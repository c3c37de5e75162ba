"""LUKS headers and dm-crypt tables: the parsers on recorded real output (among them headers of
re-encryptions, encryptions and decryptions stopped part-way), judged segment by segment, and the
reader's fallbacks for cryptsetup older than 2.4. Verdicts against cryptsetup's own reading of
many generated headers: test_disk_truth.py.
"""

from __future__ import annotations

import json
from typing import Any

import pytest

from checks.facts.disk import Cipher, Reencryption
from checks.model import Status, Unavailable, jsonable
from inventory.host.disk import (
    LuksHeader,
    clevis_bindings,
    effective_key_bits,
    key_field_bits,
    make_cipher,
    parse_cipher_spec,
    parse_dmsetup_crypt_table,
    parse_luks1_dump,
    parse_luks2_dump,
    parse_luks_debug_json,
    parse_luks_dump,
    parse_luks_dump_json,
)
from tests.inventory.disk_recorded import (
    HIS_DB,
    LUKS_UUID,
    PLAIN_KEY,
    RAW,
    by_path,
    gather,
    results,
)

# ----------------------------------------------------------------------------- ciphers


@pytest.mark.parametrize(
    ("spec", "key_bits", "algorithm", "mode", "effective"),
    [
        ("aes-xts-plain64", 512, "aes", "xts", 256),
        ("aes-xts-plain64", 256, "aes", "xts", 128),
        ("aes-xts-plain64", 384, "aes", "xts", 192),
        ("sm4-xts-plain64", 256, "sm4", "xts", 128),
        ("aes-cbc-essiv:sha256", 256, "aes", "cbc", 256),
        ("aes-cbc-essiv:sha256", 128, "aes", "cbc", 128),
        ("aes-plain", 256, "aes", "cbc", 256),  # the old default: CBC with a plain IV
        ("aes", 128, "aes", "cbc", 128),
        ("aes-lrw-benbi", 384, "aes", "lrw", 256),
        ("capi:xts(aes)-plain64", 512, "aes", "xts", 256),
        ("capi:cbc(aes)-essiv:sha256", 256, "aes", "cbc", 256),
        ("capi:authenc(hmac(sha256),xts(aes))-random", 512, "aes", "xts", 256),
        ("serpent-xts-plain64", 512, "serpent", "xts", 256),
        ("twofish-cbc-essiv:sha256", 256, "twofish", "cbc", 256),
        ("xchacha12,aes-adiantum-plain64", 256, "xchacha12", "adiantum", 256),
        ("cipher_null-ecb", 0, "null", "ecb", 0),
        ("aes-xts-plain64", 1024, "aes", "xts", None),  # AES-512 does not exist
        ("aes:64-cbc-lmk", 8192, "aes", "cbc", None),  # loop-AES multi-key: not judged
        ("foo-bar", 256, None, "bar", None),
    ],
)
def test_cipher_specs(spec, key_bits, algorithm, mode, effective):
    parsed = parse_cipher_spec(spec)
    assert (parsed.algorithm, parsed.mode) == (algorithm, mode)
    assert effective_key_bits(spec, key_bits) == effective


@pytest.mark.parametrize(
    ("field_text", "bits"),
    [("0" * 128, 512), ("ab" * 32, 256), (":64:logon:cryptsetup:uuid-d0", 512), ("-", 0)],
)
def test_key_field_bits(field_text, bits):
    assert key_field_bits(field_text) == bits


# ----------------------------------------------------------------------------- dmsetup


def test_dmsetup_table_keeps_cipher_and_key_length_only():
    table = parse_dmsetup_crypt_table((HIS_DB / "dmsetup-table-crypt.txt").read_text())
    assert set(table) == {f"luks-{LUKS_UUID}", "pacs"}
    assert table[f"luks-{LUKS_UUID}"].key_bits == 512  # ":64:logon:…": 64 bytes
    pacs = table["pacs"]
    assert (pacs.spec, pacs.key_bits, pacs.effective_bits) == ("aes-xts-plain64", 512, 256)
    assert PLAIN_KEY not in repr(table)
    assert PLAIN_KEY not in json.dumps(jsonable(table))


def test_dmsetup_table_hidden_keys_integrity_and_no_devices():
    text = (
        "cryptswap: 0 16777216 crypt aes-xts-plain64 "
        + "0" * 128
        + " 0 253:2 0 1 sector_size:4096\n"
        "secure: 0 1024 crypt capi:authenc(hmac(sha256),xts(aes))-random "
        + "0"
        * 192
        + " 0 8:3 0 2 integrity:32:hmac(sha256) sector_size:4096\n"
        "vg0-root: 0 2048 linear 8:2 2048\n"
    )
    table = parse_dmsetup_crypt_table(text)
    assert table["cryptswap"].effective_bits == 256
    secure = table["secure"]
    assert (secure.key_bits, secure.integrity, secure.effective_bits) == (768, "hmac(sha256)", 256)
    assert parse_dmsetup_crypt_table("No devices found\n") == {}


def test_dmsetup_table_error_never_quotes_the_key():
    secret = "Z" + PLAIN_KEY[1:]  # not hex: the parser refuses the field
    with pytest.raises(ValueError, match="pacs") as info:
        parse_dmsetup_crypt_table(f"pacs: 0 1024 crypt aes-xts-plain64 {secret} 0 8:16 0\n")
    for exc in (info.value, info.value.__cause__, info.value.__context__):
        assert PLAIN_KEY[1:] not in str(exc)


# ----------------------------------------------------------------------------- LUKS headers


def test_luks2_json_systemd_tpm2_token():
    header = parse_luks_dump_json((RAW / "luks2-aes-xts-512-tpm2.json").read_text(), "u")
    cipher, keys = header.cipher, header.keys
    assert not isinstance(cipher, Unavailable)
    assert (header.version, header.uuid) == (2, "u")
    assert (cipher.spec, cipher.key_bits, cipher.effective_bits) == ("aes-xts-plain64", 512, 256)
    assert keys.keyslots == 1
    assert keys.pbkdf == ("pbkdf2",)
    assert keys.tokens == ("systemd-tpm2",)
    assert keys.tpm2_token
    assert not keys.clevis_tpm2
    assert keys.tpm2_pcrs == (7,)


def test_luks2_json_aes128_argon2id():
    header = parse_luks_dump_json((RAW / "luks2-aes-xts-256-argon2id.json").read_text())
    assert not isinstance(header.cipher, Unavailable)
    assert (header.cipher.key_bits, header.cipher.effective_bits) == (256, 128)
    assert header.keys.pbkdf == ("argon2id",)
    assert header.keys.tokens == ()
    assert not header.keys.tpm2_token


def test_luks2_json_sm4():
    """An edited dump (see the fixtures' README): this kernel cannot format SM4."""
    header = parse_luks_dump_json((RAW / "luks2-sm4-xts-256.json").read_text())
    assert not isinstance(header.cipher, Unavailable)
    assert (header.cipher.algorithm, header.cipher.key_bits) == ("sm4", 256)
    assert header.cipher.effective_bits == 128


def test_luks2_json_clevis_tpm2_inside_sss():
    header = parse_luks_dump_json((RAW / "luks2-clevis-sss.json").read_text())
    assert header.keys.keyslots == 2
    assert header.keys.tokens == ("clevis",)
    assert header.keys.clevis_tpm2
    assert not header.keys.tpm2_token
    assert header.keys.tpm2_pcrs == (0, 7)


def test_clevis_bindings_unfold_sss():
    token = json.loads((RAW / "luks2-clevis-sss-token0.json").read_text())
    assert [b["pin"] for b in clevis_bindings(token["jwe"])] == ["sss", "tpm2", "tang"]
    assert clevis_bindings({"protected": "not base64 json!"}) == []
    assert clevis_bindings(None) == []


def test_token_on_a_keyslot_that_does_not_unlock_the_data_does_not_count():
    meta = json.loads((RAW / "luks2-aes-xts-512-tpm2.json").read_text())
    meta["tokens"]["0"]["keyslots"] = ["5"]  # dangling: keyslot 5 does not exist
    header = parse_luks_dump_json(json.dumps(meta))
    assert header.keys.tokens == ("systemd-tpm2",)
    assert not header.keys.tpm2_token


def test_luks2_json_without_keyslots_has_no_key_size():
    meta = json.loads((RAW / "luks2-aes-xts-512-tpm2.json").read_text())
    meta["keyslots"] = {}
    header = parse_luks_dump_json(json.dumps(meta))
    assert isinstance(header.cipher, Unavailable)
    assert header.keys.keyslots == 0


def test_luks1_text_dumps():
    essiv = parse_luks1_dump((RAW / "luks1-aes-cbc-essiv-256.txt").read_text())
    assert not isinstance(essiv.cipher, Unavailable)
    assert essiv.version == 1
    assert essiv.uuid == "02426ee2-d3fd-4afe-bf31-dd70d8dedcd6"
    assert (essiv.cipher.spec, essiv.cipher.key_bits) == ("aes-cbc-essiv:sha256", 256)
    assert essiv.cipher.effective_bits == 256
    assert essiv.keys.keyslots == 2
    assert essiv.keys.pbkdf == ("pbkdf2",)
    assert essiv.keys.tokens == ()
    xts = parse_luks_dump((RAW / "luks1-aes-xts-512.txt").read_text())
    assert not isinstance(xts.cipher, Unavailable)
    assert (xts.cipher.key_bits, xts.cipher.effective_bits, xts.keys.keyslots) == (512, 256, 1)


def test_luks2_text_dump_as_old_cryptsetup_prints_it():
    header = parse_luks2_dump((RAW / "luks2-aes-xts-512-tpm2.txt").read_text())
    assert not isinstance(header.cipher, Unavailable)
    assert header.uuid == LUKS_UUID
    assert (header.cipher.key_bits, header.cipher.effective_bits) == (512, 256)
    assert header.keys.tokens == ("systemd-tpm2",)
    assert header.keys.tpm2_token
    clevis = parse_luks_dump((RAW / "luks2-clevis-sss.txt").read_text())
    assert clevis.keys.keyslots == 2
    assert clevis.unexplained_tokens == ("0",)  # the pin needs `cryptsetup token export`


def test_luks_text_dump_rejects_other_versions():
    with pytest.raises(ValueError, match="LUKS version"):
        parse_luks_dump("LUKS header information\nVersion: 3\n")
    with pytest.raises(ValueError, match="not a LUKS1 dump"):
        parse_luks1_dump((RAW / "luks2-aes-xts-512-tpm2.txt").read_text())


# ----------------------------------------------------------------------------- re-encryption


def _segments(header: LuksHeader) -> list[tuple[str, int, int | None, object]]:
    return [(s.id, s.offset, s.length, s.cipher) for s in header.segments]


def _cipher(spec: str, bits: int) -> Cipher:
    return make_cipher(spec, bits)


LINEAR = _cipher("linear", 0)


def test_interrupted_reencryption_is_judged_segment_by_segment():
    """cryptsetup reencrypt from a 256-bit to a 512-bit XTS key, SIGINT after 0.3 s: the first
    200 MiB have the new key, the rest still the old one (AES-128)."""
    header = parse_luks_dump_json((RAW / "luks2-reencrypt-256-to-512.json").read_text(), "u")
    assert _segments(header) == [
        ("0", 16777216, 209715200, _cipher("aes-xts-plain64", 512)),
        ("1", 226492416, None, _cipher("aes-xts-plain64", 256)),
    ]
    assert header.reencryption == Reencryption("reencrypt", "forward")
    assert isinstance(header.cipher, Unavailable)  # no one cipher speaks for the volume
    assert "bytes 226492416 to the end of the device: aes-xts-plain64, 256-bit" in (
        header.cipher.reason
    )
    assert header.keys.keyslots == 2  # the old key's keyslot and the new one's
    assert header.bound_keyslots == ("0", "1")


def test_interrupted_reencryption_text_dump_does_not_guess():
    """The text dump names no digest per segment: with 256- and 512-bit keys in use, which covers
    which range is not in it, and the parser says so rather than take the larger."""
    text = parse_luks2_dump((RAW / "luks2-reencrypt-256-to-512.txt").read_text())
    assert [(s.id, s.offset, s.length) for s in text.segments] == [
        ("0", 16777216, 209715200),
        ("1", 226492416, None),
    ]
    for segment in text.segments:
        assert isinstance(segment.cipher, Unavailable)
        assert "256-bit and 512-bit keys" in segment.cipher.reason
    assert text.reencryption == Reencryption("reencrypt", "forward")
    from_json = parse_luks_dump_json((RAW / "luks2-reencrypt-256-to-512.json").read_text())
    assert text.keys == from_json.keys
    debug = (RAW / "luks2-reencrypt-256-to-512.debug-json.txt").read_text()
    assert parse_luks_debug_json(debug) == from_json


@pytest.mark.parametrize(
    ("name", "mode", "direction", "segments"),
    [
        (
            "luks2-encrypt-in-progress",  # --encrypt --reduce-device-size 32M, from the end
            "encrypt",
            "backward",
            [
                ("0", 1056964608, 16777216, LINEAR),
                ("1", 16777216, 905969664, LINEAR),
                ("2", 939524096, 117440512, _cipher("aes-xts-plain64", 512)),
            ],
        ),
        (
            "luks2-decrypt-in-progress",  # --decrypt with a detached header
            "decrypt",
            "backward",
            [
                ("0", 0, 1057255424, _cipher("aes-xts-plain64", 512)),
                ("1", 1057255424, None, LINEAR),
            ],
        ),
    ],
)
def test_encryption_and_decryption_in_progress_show_the_plaintext_ranges(
    name, mode, direction, segments
):
    from_json = parse_luks_dump_json((RAW / f"{name}.json").read_text())
    from_text = parse_luks2_dump((RAW / f"{name}.txt").read_text())
    assert _segments(from_json) == segments
    assert _segments(from_text) == segments
    assert from_json.reencryption == from_text.reencryption == Reencryption(mode, direction)
    assert from_json.keys == from_text.keys


def _reencrypt_meta() -> dict[str, Any]:
    meta: dict[str, Any] = json.loads((RAW / "luks2-reencrypt-256-to-512.json").read_text())
    return meta


def test_a_segment_both_keys_may_cover_is_judged_with_the_weaker():
    """A crash inside a hotzone leaves a segment flagged in-reencryption and bound to both
    digests: part of it may still be under the old 256-bit key."""
    meta = _reencrypt_meta()
    meta["segments"]["0"]["flags"] = ["in-reencryption"]
    for digest in meta["digests"].values():
        if digest["keyslots"] in (["0"], ["1"]):
            digest["segments"] = sorted({*digest["segments"], "0"})
    header = parse_luks_dump_json(json.dumps(meta))
    assert header.segments[0].cipher == _cipher("aes-xts-plain64", 256)


def test_unknown_segment_types_and_keyless_segments_are_unavailable():
    meta = _reencrypt_meta()
    meta["segments"]["1"]["type"] = "hw-zoned"
    meta["digests"]["1"]["segments"] = ["3"]  # the new key no longer covers segment 0
    header = parse_luks_dump_json(json.dumps(meta))
    first, second = (s.cipher for s in header.segments)
    assert isinstance(first, Unavailable)
    assert "no keyslot holds the key of data segment 0" in first.reason
    assert isinstance(second, Unavailable)
    assert "'hw-zoned'" in second.reason


def test_old_cryptsetup_reads_the_metadata_from_its_debug_output():
    """cryptsetup 2.1–2.3 (RHEL 8, Kylin V10) have no --dump-json-metadata; when their text dump
    leaves a segment's key undecided, `luksDump --debug-json` prints the metadata itself."""
    json_line = "cryptsetup luksDump --dump-json-metadata /dev/nvme0n1p3"
    unknown = (1, "cryptsetup: --dump-json-metadata: unknown option\n")
    text = (RAW / "luks2-reencrypt-256-to-512.txt").read_text()
    debug = (RAW / "luks2-reencrypt-256-to-512.debug-json.txt").read_text()
    facts, runner = gather(
        failures={json_line: unknown},
        extra={
            "cryptsetup luksDump /dev/nvme0n1p3": text,
            "cryptsetup luksDump --debug-json /dev/nvme0n1p3": debug,
        },
    )
    volume = by_path(facts)["/dev/nvme0n1p3"]
    assert [s.cipher for s in volume.segments] == [
        _cipher("aes-xts-plain64", 512),
        _cipher("aes-xts-plain64", 256),
    ]
    assert volume.uuid == "7d3e1c90-52a4-4b8e-9f61-0c2a8b5d4e17"
    assert len(runner.ran("cryptsetup")) == 3
    assert results(facts)[("disk.cipher_strength", "/dev/nvme0n1p3")] == Status.FAIL
    # cryptsetup 2.0 cannot print it either: the undecided ranges are an error, not a pass.
    facts, _ = gather(
        failures={json_line: unknown, "cryptsetup luksDump --debug-json /dev/nvme0n1p3": unknown},
        extra={"cryptsetup luksDump /dev/nvme0n1p3": text},
    )
    assert results(facts)[("disk.cipher_strength", "/dev/nvme0n1p3")] == Status.ERROR


def test_a_headerless_mapping_is_judged_target_by_target():
    """A plain mapping built from several targets: each crypt target is judged, and a range no
    crypt target covers (a linear target keeps its data in clear) cannot pass."""
    table = (HIS_DB / "dmsetup-table-crypt.txt").read_text()
    luks_line, pacs_line = table.splitlines()[:2]
    fields = pacs_line.split()
    half = int(fields[2]) // 2
    weak = [fields[0], "0", str(half), "crypt", "aes-xts-plain64", "0" * 64, *fields[6:]]
    strong = [fields[0], str(half), str(half), *fields[3:]]
    facts, _ = gather(
        extra={
            "dmsetup table --target crypt": "\n".join([luks_line, " ".join(weak), " ".join(strong)])
        }
    )
    pacs = by_path(facts)["/dev/sdb"]
    assert [(s.offset, s.length) for s in pacs.segments] == [
        (0, half * 512),
        (half * 512, half * 512),
    ]
    assert isinstance(pacs.cipher, Unavailable)
    assert results(facts)[("disk.cipher_strength", "/dev/sdb")] == Status.FAIL
    facts, _ = gather(
        extra={"dmsetup table --target crypt": "\n".join([luks_line, " ".join(strong)])}
    )
    pacs = by_path(facts)["/dev/sdb"]
    assert [s.id for s in pacs.segments] == ["gap 0", "0"]
    assert results(facts)[("disk.cipher_strength", "/dev/sdb")] == Status.ERROR
    assert PLAIN_KEY not in repr(facts)
