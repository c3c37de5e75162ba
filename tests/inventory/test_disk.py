"""Disk gatherer: the pure parsers on recorded output (among them real headers of interrupted
re-encryptions), and `collect_disk` on a recorded LVM-on-LUKS server.

Device-mapper does not work in the container these tests were written in (`cryptsetup open`
fails with "Cannot initialize device-mapper"), so mapped state (dm-crypt → LVM → mounts, swap)
comes from the recorded `his-db` scenario (see tests/fixtures/raw/disk/README.md). Real headers
on loop devices: test_disk_loops.py; verdicts against cryptsetup's own reading of many generated
headers: test_disk_truth.py.
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path, PurePath
from typing import Any

import pytest

from checks.facts import HostFacts
from checks.facts.disk import BlockDevice, Cipher, DiskFacts, EncryptedVolume, Mount, Reencryption
from checks.host import disk as disk_checks
from checks.model import Status, Unavailable, jsonable
from checks.registry import Registry
from checks.runner import evaluate
from inventory.host.disk import (
    LSBLK_COLUMNS,
    LuksHeader,
    clevis_bindings,
    collect_disk,
    crypt_kind,
    effective_key_bits,
    key_field_bits,
    make_cipher,
    parse_blkid_export,
    parse_cipher_spec,
    parse_dmsetup_crypt_table,
    parse_lsblk_json,
    parse_lsblk_pairs,
    parse_luks1_dump,
    parse_luks2_dump,
    parse_luks_debug_json,
    parse_luks_dump,
    parse_luks_dump_json,
    parse_mountinfo,
    parse_proc_swaps,
)
from inventory.runner import CommandFailed, CommandResult, LocalRunner, ToolMissing

RAW = Path(__file__).resolve().parent.parent / "fixtures" / "raw" / "disk"
HIS_DB = RAW / "his-db"
LUKS_UUID = "3f6c2a4e-8b1d-4c7a-9e52-1d0b6f7a9c21"
LUKS_MAPPING = f"/dev/mapper/luks-{LUKS_UUID}"
# The hex key of the plain mapping in his-db/dmsetup-table-crypt.txt.
PLAIN_KEY = (HIS_DB / "dmsetup-table-crypt.txt").read_text().split("\n")[1].split()[5]


@dataclass(frozen=True)
class Call:
    argv: tuple[str, ...]
    timeout: float


@dataclass
class RecordedRunner(LocalRunner):
    """`LocalRunner` over a recorded root, answering commands from `commands.json` (command line
    without the tool's directory → output file) plus `extra` recordings and `failures`.

    A tool in `missing`, or with no recording at all, is not installed; a known tool asked for
    an unrecorded command line fails as tools do on an unknown option.
    """

    scenario: Path = HIS_DB
    extra: Mapping[str, str] = field(default_factory=dict)
    failures: Mapping[str, tuple[int, str]] = field(default_factory=dict)
    missing: Collection[str] = ()
    root: Path | None = None
    calls: list[Call] = field(default_factory=list)

    def __post_init__(self) -> None:
        super().__init__(root=self.root or self.scenario / "root")
        index = json.loads((self.scenario / "commands.json").read_text())
        self.recordings = {k: (self.scenario / v).read_text() for k, v in index.items()}
        self.recordings.update(self.extra)

    def _known(self, tool: str) -> bool:
        if tool in self.missing:
            return False
        lines = [*self.recordings, *self.failures]
        return any(line.split()[0] == tool for line in lines)

    def which(self, name: str) -> str | None:
        return f"/usr/sbin/{name}" if self._known(name) else None

    def run(
        self,
        argv: Sequence[str],
        *,
        timeout: float = 10.0,
        check: bool = True,
        input_text: str | None = None,
        env: Mapping[str, str] | None = None,
    ) -> CommandResult:
        self.calls.append(Call(tuple(argv), timeout))
        tool = PurePath(argv[0]).name
        line = " ".join([tool, *argv[1:]])
        if not self._known(tool):
            raise ToolMissing(f"{argv[0]} is not installed")
        if line in self.failures:
            code, stderr = self.failures[line]
            if check:
                raise CommandFailed(f"{tool} exited {code}: {stderr.strip()}", code, stderr)
            return CommandResult(tuple(argv), code, "", stderr)
        if line in self.recordings:
            return CommandResult(tuple(argv), 0, self.recordings[line], "")
        stderr = f"{tool}: unknown option -- '{argv[1:]}'\n"
        if check:
            raise CommandFailed(f"{tool} exited 1: unknown option", 1, stderr)
        return CommandResult(tuple(argv), 1, "", stderr)

    def ran(self, tool: str) -> list[tuple[str, ...]]:
        return [c.argv for c in self.calls if PurePath(c.argv[0]).name == tool]


def gather(**kwargs: object) -> tuple[DiskFacts, RecordedRunner]:
    runner = RecordedRunner(**kwargs)  # type: ignore[arg-type]
    facts = collect_disk(runner)
    assert isinstance(facts, DiskFacts), facts
    return facts, runner


def by_path(facts: DiskFacts) -> dict[str, EncryptedVolume]:
    assert isinstance(facts.volumes, tuple)
    return {v.device: v for v in facts.volumes}


def mounts(facts: DiskFacts) -> dict[str, Mount]:
    assert isinstance(facts.mounts, tuple)
    return {m.mountpoint: m for m in facts.mounts}


def devices(facts: DiskFacts) -> dict[str, BlockDevice]:
    assert isinstance(facts.block_devices, tuple)
    return {d.kname: d for d in facts.block_devices}


DISK_CHECKS = Registry.from_modules([disk_checks])


def results(facts: DiskFacts | Unavailable) -> dict[tuple[str, str | None], Status]:
    return {(r.check_id, r.target): r.status for r in evaluate(DISK_CHECKS, HostFacts(disk=facts))}


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


# ----------------------------------------------------------------------------- lsblk, blkid


def test_lsblk_tree():
    devs = {d.kname: d for d in parse_lsblk_json((HIS_DB / "lsblk.json").read_text())}
    assert devs["dm-0"].parents == ("nvme0n1p3",)
    assert devs["dm-1"].parents == ("dm-0",)
    assert devs["dm-1"].path == "/dev/mapper/vg0-root"
    assert devs["nvme0n1p3"].fstype == "crypto_LUKS"
    assert devs["nvme0n1p3"].fsver == "2"
    assert devs["dm-2"].mountpoints == ("[SWAP]",)
    assert devs["nvme0n1"].size_bytes == 1920383410176


def test_lsblk_legacy_json_and_pairs_give_the_same_tree():
    new = {d.kname: d for d in parse_lsblk_json((HIS_DB / "lsblk.json").read_text())}
    old = {d.kname: d for d in parse_lsblk_json((HIS_DB / "lsblk-2.32.json").read_text())}
    assert set(old) == set(new)
    for kname, dev in old.items():
        assert (dev.path, dev.parents, dev.size_bytes) == (
            new[kname].path,
            new[kname].parents,
            new[kname].size_bytes,
        )
    pairs = parse_lsblk_pairs(
        'NAME="sda" KNAME="sda" MAJ:MIN="8:0" TYPE="disk" FSTYPE="" UUID="" SIZE="100" '
        'PKNAME="" MOUNTPOINT=""\n'
        'NAME="md0" KNAME="md0" MAJ:MIN="9:0" TYPE="raid1" FSTYPE="xfs" UUID="u" SIZE="90" '
        'PKNAME="sda" MOUNTPOINT="/srv/his\\x20data"\n'
        'NAME="md0" KNAME="md0" MAJ:MIN="9:0" TYPE="raid1" FSTYPE="xfs" UUID="u" SIZE="90" '
        'PKNAME="sdb" MOUNTPOINT="/srv/his\\x20data"\n'
    )
    md0 = {d.kname: d for d in pairs}["md0"]
    assert md0.parents == ("sda", "sdb")
    assert md0.mountpoints == ("/srv/his data",)


def test_lsblk_json_multiple_parents_merge():
    text = json.dumps(
        {
            "blockdevices": [
                {"name": "sda", "kname": "sda", "type": "disk", "children": [
                    {"name": "md0", "kname": "md0", "type": "raid1"}]},
                {"name": "sdb", "kname": "sdb", "type": "disk", "children": [
                    {"name": "md0", "kname": "md0", "type": "raid1"}]},
            ]
        }
    )  # fmt: skip
    devs = {d.kname: d for d in parse_lsblk_json(text)}
    assert devs["md0"].parents == ("sda", "sdb")
    with pytest.raises(ValueError, match="blockdevices"):
        parse_lsblk_json("{}")


def test_blkid_export_with_per_device_errors():
    stdout = (
        "DEVNAME=/dev/loop1\nVERSION=1\nUUID=02426ee2-d3fd-4afe-bf31-dd70d8dedcd6\n"
        "TYPE=crypto_LUKS\nUSAGE=crypto\n\nDEVNAME=/dev/loop0\nVERSION=2\nTYPE=crypto_LUKS\n"
    )
    stderr = "blkid: error: /dev/vda: Operation not permitted\n"
    found = parse_blkid_export(stdout, stderr)
    assert found["/dev/loop1"] == {
        "DEVNAME": "/dev/loop1",
        "VERSION": "1",
        "UUID": "02426ee2-d3fd-4afe-bf31-dd70d8dedcd6",
        "TYPE": "crypto_LUKS",
        "USAGE": "crypto",
    }
    assert found["/dev/vda"] == "Operation not permitted"


@pytest.mark.parametrize(
    ("dm_uuid", "lsblk_type", "kind"),
    [
        (f"CRYPT-LUKS2-{LUKS_UUID.replace('-', '')}-luks-{LUKS_UUID}", "crypt", "luks2"),
        ("CRYPT-LUKS1-02426ee2d3fd4afebf31dd70d8dedcd6-data", "crypt", "luks1"),
        ("CRYPT-PLAIN-cryptswap", "crypt", "plain"),
        ("CRYPT-BITLK-c1e5a7d2-usb", "crypt", "bitlk"),
        ("CRYPT-INTEGRITY-secure_dif", "crypt", None),  # integrity, no encryption
        ("CRYPT-SUBDEV-c1e5a7d2-secure_dif", "crypt", None),
        ("CRYPT-VERITY-abc-root", "crypt", None),
        ("LVM-Xy7pQm2Rk9vT4bN1cW8eZ3aF6hJ0sD5gKq2LmN8oP4rS7tU1vW9xY3zA6bC0dE5f", "lvm", None),
        (None, "crypt", "crypt"),  # sysfs unreadable: lsblk still says crypt
        (None, "disk", None),
    ],
)
def test_crypt_kind(dm_uuid, lsblk_type, kind):
    assert crypt_kind(dm_uuid, lsblk_type) == kind


# ----------------------------------------------------------------------------- mounts, swaps


def test_mountinfo_drops_pseudo_file_systems_and_keeps_the_visible_mount():
    text = (
        "22 97 0:21 / /proc rw - proc proc rw\n"
        "97 1 253:1 / / rw shared:1 - xfs /dev/mapper/vg0-root rw\n"
        "80 97 8:1 / /srv/his\\040data rw - xfs /dev/sda1 rw\n"
        "81 97 8:2 / /srv/his\\040data rw shared:5 master:3 - ext4 /dev/sda2 rw\n"
        "90 97 0:52 /exports /mnt/b rw - nfs4 nas:/export rw\n"
        "garbage line\n"
    )
    entries = {e.mountpoint: e for e in parse_mountinfo(text)}
    assert set(entries) == {"/", "/srv/his data", "/mnt/b"}
    assert entries["/srv/his data"].source == "/dev/sda2"  # mounted over /dev/sda1
    assert entries["/"].majmin == "253:1"
    assert entries["/mnt/b"].root == "/exports"


def test_proc_swaps():
    swaps = parse_proc_swaps((HIS_DB / "root" / "proc" / "swaps").read_text())
    assert [(s.path, s.kind, s.size_bytes) for s in swaps] == [
        ("/dev/dm-2", "partition", 8388604 * 1024),
        ("/dev/zram0", "partition", 8388604 * 1024),
    ]
    files = parse_proc_swaps(
        "Filename Type Size Used Priority\n/var/swap\\040file file 1048572 0 -2\n"
    )
    assert files[0].path == "/var/swap file"


# ----------------------------------------------------------------------------- his-db


def test_his_db_block_devices_and_volumes():
    facts, _runner = gather()
    devs = devices(facts)
    assert devs["dm-0"].encryption == "luks2"
    assert devs["dm-4"].encryption == "plain"
    assert devs["dm-1"].encryption is None
    assert devs["dm-1"].dm_uuid.startswith("LVM-")
    vols = by_path(facts)
    assert set(vols) == {"/dev/nvme0n1p3", "/dev/sdb"}
    luks = vols["/dev/nvme0n1p3"]
    assert (luks.kind, luks.uuid, luks.mapped_path) == ("luks2", LUKS_UUID, LUKS_MAPPING)
    assert not isinstance(luks.cipher, Unavailable)
    assert (luks.cipher.key_bits, luks.cipher.effective_bits) == (512, 256)
    assert luks.keys is not None
    assert not isinstance(luks.keys, Unavailable)
    assert luks.keys.tpm2_token
    plain = vols["/dev/sdb"]
    assert (plain.kind, plain.mapped_name, plain.keys) == ("plain", "pacs", None)
    assert not isinstance(plain.cipher, Unavailable)
    assert (plain.cipher.spec, plain.cipher.effective_bits) == ("aes-xts-plain64", 256)


def test_his_db_costs_one_call_per_source_each_with_a_timeout():
    _, runner = gather()
    assert len(runner.ran("lsblk")) == 1
    assert runner.ran("cryptsetup") == [
        ("/usr/sbin/cryptsetup", "luksDump", "--dump-json-metadata", "/dev/nvme0n1p3")
    ]
    assert len(runner.ran("dmsetup")) == 1
    assert runner.ran("blkid") == []  # udev knows every device: lsblk's FSTYPE is enough
    assert all(0 < call.timeout <= 10 for call in runner.calls)


def test_his_db_mounts_and_swaps():
    facts, _ = gather()
    by_mp = mounts(facts)
    assert "/proc" not in by_mp
    assert "/sys/fs/cgroup" not in by_mp
    root = by_mp["/"]
    assert root.encrypted is True
    assert root.layers == ("/dev/mapper/vg0-root", LUKS_MAPPING, "/dev/nvme0n1p3", "/dev/nvme0n1")
    assert root.crypt_layers == (LUKS_MAPPING,)
    assert by_mp["/var"].encrypted is True
    assert by_mp["/srv/pacs"].crypt_layers == ("/dev/mapper/pacs",)
    assert by_mp["/var/lib/pgsql"].encrypted is False
    assert by_mp["/boot"].encrypted is False
    assert isinstance(by_mp["/mnt/backup"].encrypted, Unavailable)
    assert "nfs4" in by_mp["/mnt/backup"].encrypted.reason
    assert facts.data_dirs == ("/var/lib/pgsql",)
    assert isinstance(facts.swaps, tuple)
    lv_swap, zram = facts.swaps
    assert (lv_swap.device, lv_swap.encrypted) == ("/dev/mapper/vg0-swap", True)
    assert zram.in_memory


def test_his_db_checks_end_to_end():
    facts, _ = gather()
    got = results(facts)
    assert got == {
        ("disk.encrypted_mounts", "/dev/mapper/vg0-root"): Status.PASS,
        ("disk.encrypted_mounts", "/dev/mapper/vg0-var"): Status.PASS,
        ("disk.encrypted_mounts", "/dev/sda1"): Status.FAIL,  # /var/lib/pgsql
        ("disk.cipher_strength", "/dev/nvme0n1p3"): Status.PASS,
        ("disk.cipher_strength", "/dev/sdb"): Status.PASS,
        ("disk.swap_encrypted", "/dev/mapper/vg0-swap"): Status.PASS,
        ("disk.swap_encrypted", "/dev/zram0"): Status.PASS,
        ("disk.key_sealed_by_tpm", "/dev/nvme0n1p3"): Status.PASS,
    }


def test_key_material_never_reaches_the_facts():
    facts, _ = gather()
    assert PLAIN_KEY not in repr(facts)
    assert PLAIN_KEY not in json.dumps(jsonable(facts))
    for check_result in evaluate(DISK_CHECKS, HostFacts(disk=facts)):
        assert PLAIN_KEY not in json.dumps(check_result.to_dict())
    # Nor when the table line is malformed and the parser gives up on it.
    broken = (HIS_DB / "dmsetup-table-crypt.txt").read_text().replace(PLAIN_KEY, "Z" + PLAIN_KEY)
    facts, _ = gather(extra={"dmsetup table --target crypt": broken})
    text = repr(facts) + json.dumps(jsonable(facts))
    assert PLAIN_KEY not in text
    assert isinstance(by_path(facts)["/dev/sdb"].cipher, Unavailable)


def test_cryptsetup_missing_is_unavailable_per_volume():
    facts, _ = gather(missing={"cryptsetup"})
    luks = by_path(facts)["/dev/nvme0n1p3"]
    assert luks.cipher == Unavailable("cryptsetup is not installed")
    assert luks.keys == Unavailable("cryptsetup is not installed")
    assert luks.kind == "luks2"  # from lsblk FSVER
    got = results(facts)
    assert got[("disk.cipher_strength", "/dev/nvme0n1p3")] == Status.ERROR
    assert got[("disk.key_sealed_by_tpm", "/dev/nvme0n1p3")] == Status.ERROR
    assert got[("disk.encrypted_mounts", "/dev/mapper/vg0-root")] == Status.PASS


def test_luks_dump_permission_denied():
    line = "cryptsetup luksDump --dump-json-metadata /dev/nvme0n1p3"
    denied = "Device /dev/nvme0n1p3 does not exist or access denied.\n"
    facts, runner = gather(failures={line: (4, denied)})
    luks = by_path(facts)["/dev/nvme0n1p3"]
    assert isinstance(luks.cipher, Unavailable)
    assert "permission denied" in luks.cipher.reason
    assert "root" in luks.cipher.reason
    assert len(runner.ran("cryptsetup")) == 1  # no pointless text-dump retry


def test_dmsetup_missing_leaves_plain_cipher_unavailable():
    facts, _ = gather(missing={"dmsetup"})
    assert by_path(facts)["/dev/sdb"].cipher == Unavailable("dmsetup is not installed")


def test_lsblk_missing_keeps_mounts_but_not_their_encryption():
    facts, _ = gather(missing={"lsblk"})
    assert facts.block_devices == Unavailable("lsblk is not installed (util-linux)")
    assert isinstance(facts.volumes, Unavailable)
    root = mounts(facts)["/"]
    assert isinstance(root.encrypted, Unavailable)
    assert "lsblk" in root.encrypted.reason


def test_nothing_readable_is_unavailable(tmp_path):
    (tmp_path / "root").mkdir()
    runner = RecordedRunner(missing={"lsblk"}, root=tmp_path / "root")
    facts = collect_disk(runner)
    assert isinstance(facts, Unavailable)
    assert "lsblk" in facts.reason
    assert "mountinfo" in facts.reason


def test_old_util_linux_and_old_cryptsetup(tmp_path):
    """RHEL 8: lsblk 2.32 rejects the new columns; cryptsetup 2.3 has no --dump-json-metadata,
    so the LUKS2 text dump is read and the clevis token exported to see its pin."""
    legacy = " ".join(
        [
            "lsblk --json --bytes --output",
            "NAME,KNAME,MAJ:MIN,TYPE,FSTYPE,UUID,SIZE,PKNAME,MOUNTPOINT",
        ]
    )
    facts, runner = gather(
        failures={
            f"lsblk --json --bytes --output {LSBLK_COLUMNS}": (1, "lsblk: unknown column: PATH\n"),
            "cryptsetup luksDump --dump-json-metadata /dev/nvme0n1p3": (
                1,
                "cryptsetup: --dump-json-metadata: unknown option\n",
            ),
        },
        extra={
            legacy: (HIS_DB / "lsblk-2.32.json").read_text(),
            "cryptsetup luksDump /dev/nvme0n1p3": (RAW / "luks2-clevis-sss.txt").read_text(),
            "cryptsetup token export --token-id 0 /dev/nvme0n1p3": (
                RAW / "luks2-clevis-sss-token0.json"
            ).read_text(),
        },
    )
    assert len(runner.ran("lsblk")) == 2
    assert mounts(facts)["/"].layers[1] == LUKS_MAPPING
    luks = by_path(facts)["/dev/nvme0n1p3"]
    assert luks.uuid == "c1e5a7d2-4b8f-4e3a-9d6c-8f2b1a0e7d34"  # from the header
    assert luks.keys is not None
    assert not isinstance(luks.keys, Unavailable)
    assert luks.keys.clevis_tpm2
    assert luks.keys.tpm2_pcrs == (0, 7)


def test_swap_file_follows_its_file_system(tmp_path):
    root = tmp_path / "root"
    shutil.copytree(HIS_DB / "root", root)
    (root / "proc" / "swaps").write_text(
        "Filename Type Size Used Priority\n/var/swapfile file 2097148 0 -2\n"
        "/var/lib/pgsql/swap file 2097148 0 -3\n"
    )
    facts, _ = gather(root=root)
    assert isinstance(facts.swaps, tuple)
    on_var, on_sda = facts.swaps
    assert (on_var.device, on_var.encrypted) == ("/dev/mapper/vg0-var", True)
    assert (on_sda.device, on_sda.encrypted) == ("/dev/sda1", False)


def test_zram_with_writeback_is_judged_by_its_backing_device(tmp_path):
    root = tmp_path / "root"
    shutil.copytree(HIS_DB / "root", root)
    (root / "sys" / "block" / "zram0" / "backing_dev").write_text("/dev/sda1\n")
    facts, _ = gather(root=root)
    assert isinstance(facts.swaps, tuple)
    zram = facts.swaps[1]
    assert not zram.in_memory
    assert (zram.device, zram.encrypted) == ("/dev/sda1", False)


# ----------------------------------------------------------------------------- blkid, no udev

UDEVLESS_ORDER = [  # lsblk's order: the LUKS partition comes after six devices
    "/dev/sda",
    "/dev/sda1",
    "/dev/sdb",
    "/dev/mapper/pacs",
    "/dev/zram0",
    "/dev/nvme0n1",
    "/dev/nvme0n1p1",
    "/dev/nvme0n1p2",
    "/dev/nvme0n1p3",
    f"/dev/mapper/luks-{LUKS_UUID}",
    "/dev/mapper/vg0-root",
    "/dev/mapper/vg0-swap",
    "/dev/mapper/vg0-var",
]
LUKS_PROBE = (
    f"DEVNAME=/dev/nvme0n1p3\nVERSION=2\nUUID={LUKS_UUID}\nTYPE=crypto_LUKS\nUSAGE=crypto\n"
)


def _without_udev(
    tmp_path: Path,
    answers: Mapping[str, str],
    failures: Mapping[str, tuple[int, str]] | None = None,
    missing: Collection[str] = (),
    nodes: Collection[str] = UDEVLESS_ORDER,
) -> tuple[DiskFacts, RecordedRunner]:
    """The his-db host as a container sees it: no udev database, so lsblk has no FSTYPE, and
    /dev holds the nodes in `nodes`. blkid answers `answers` (stdout, exit 0) and `failures`
    (exit status, stderr); a device in neither has no signature (exit 2, silent)."""
    root = tmp_path / "root"
    shutil.copytree(HIS_DB / "root", root)
    shutil.rmtree(root / "run" / "udev")
    for node in nodes:
        (root / node.lstrip("/")).parent.mkdir(parents=True, exist_ok=True)
        (root / node.lstrip("/")).touch()
    tree = json.loads((HIS_DB / "lsblk.json").read_text())

    def strip(nodes_: list[dict[str, object]]) -> None:
        for node in nodes_:
            node["fstype"] = node["fsver"] = node["uuid"] = None
            strip(node.get("children", []))  # type: ignore[arg-type]

    strip(tree["blockdevices"])
    blkid = {f"blkid -p -o export {path}": (2, "") for path in UDEVLESS_ORDER}
    for path in answers:
        del blkid[f"blkid -p -o export {path}"]
    blkid.update({f"blkid -p -o export {path}": fail for path, fail in (failures or {}).items()})
    facts, runner = gather(
        root=root,
        missing=missing,
        failures=blkid,
        extra={
            f"lsblk --json --bytes --output {LSBLK_COLUMNS}": json.dumps(tree),
            **{f"blkid -p -o export {path}": out for path, out in answers.items()},
        },
    )
    return facts, runner


def test_without_udev_blkid_probes_each_device_on_its_own(tmp_path):
    """Given several devices, blkid stops at the first without a signature: the LUKS partition,
    sixth in line, was never seen. One call per device: no answer hides another's."""
    facts, runner = _without_udev(
        tmp_path,
        {
            "/dev/nvme0n1p3": LUKS_PROBE,
            "/dev/sda1": "DEVNAME=/dev/sda1\nUUID=5f4e\nTYPE=xfs\nUSAGE=filesystem\n",
            "/dev/sda": "DEVNAME=/dev/sda\nPTUUID=8c1f\nPTTYPE=gpt\n",  # a partition table only
        },
    )
    probed = [call[1:] for call in runner.ran("blkid")]
    assert probed == [("-p", "-o", "export", path) for path in UDEVLESS_ORDER]
    assert all(0 < c.timeout <= 10 for c in runner.calls)
    devs = devices(facts)
    assert (devs["nvme0n1p3"].fstype, devs["nvme0n1p3"].fsver) == ("crypto_LUKS", "2")
    assert devs["sda1"].fstype == "xfs"
    assert devs["sda"].fstype is None
    assert devs["nvme0n1"].fstype is None  # probed: no signature
    assert "/dev/nvme0n1p3" in by_path(facts)
    assert results(facts)[("disk.cipher_strength", "/dev/nvme0n1p3")] == Status.PASS


def test_without_udev_a_device_blkid_cannot_read_is_unknown_not_blank(tmp_path):
    facts, _ = _without_udev(
        tmp_path,
        {"/dev/nvme0n1p3": LUKS_PROBE},
        failures={
            "/dev/sda": (2, "blkid: error: /dev/sda: Permission denied\n"),
            "/dev/sda1": (
                8,
                "blkid: /dev/sda1: ambivalent result (probably more filesystems on the device, "
                "use wipefs(8) to see more details)\n",
            ),
        },
        nodes=[p for p in UDEVLESS_ORDER if p != "/dev/zram0"],
    )
    devs = devices(facts)
    for kname, words in (
        ("sda", "Permission denied"),
        ("sda1", "ambivalent"),
        ("zram0", "no device node"),
    ):
        fstype = devs[kname].fstype
        assert isinstance(fstype, Unavailable), kname
        assert words in fstype.reason
    got = results(facts)
    assert got[("disk.cipher_strength", "/dev/nvme0n1p3")] == Status.PASS
    # A device that may hold an encrypted volume nobody judged is not silently left out.
    for path in ("/dev/sda", "/dev/sda1", "/dev/zram0"):
        assert got[("disk.cipher_strength", path)] == Status.ERROR
        assert got[("disk.key_sealed_by_tpm", path)] == Status.ERROR
    assert got[("disk.cipher_strength", "/dev/sdb")] == Status.PASS  # known: the plain mapping


def test_without_udev_and_without_blkid(tmp_path):
    facts, runner = _without_udev(tmp_path, {}, missing={"blkid"})
    assert len(runner.ran("blkid")) == 1  # not asked again for every device
    fstypes = [d.fstype for d in devices(facts).values()]
    assert all(isinstance(f, Unavailable) and "blkid" in f.reason for f in fstypes)
    got = results(facts)
    # The LUKS partition and the plain disk are known by their open mappings; nothing else is
    # known, and no device whose signature went unread is judged anything but an error.
    assert got[("disk.cipher_strength", "/dev/nvme0n1p3")] == Status.PASS
    assert got[("disk.cipher_strength", "/dev/sda1")] == Status.ERROR
    unread = {k for k, status in got.items() if k[0] == "disk.cipher_strength"} - {
        ("disk.cipher_strength", "/dev/nvme0n1p3"),
        ("disk.cipher_strength", "/dev/sdb"),
    }
    assert {got[k] for k in unread} == {Status.ERROR}


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
