"""Disk gatherer: the pure parsers on recorded output, `collect_disk` on a recorded LVM-on-LUKS
server, and on real LUKS1/LUKS2 headers that cryptsetup writes to loop devices here.

Device-mapper does not work in the container these tests were written in (`cryptsetup open`
fails with "Cannot initialize device-mapper"), so mapped state (dm-crypt → LVM → mounts, swap)
comes from the recorded `his-db` scenario (see tests/fixtures/raw/disk/README.md). The loop-device
tests use real headers; `test_open_mapping_and_mount_chain` runs the mapped chain for real wherever
device-mapper is available and says why it skipped otherwise.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from collections.abc import Collection, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path, PurePath

import pytest

from checks.facts import HostFacts
from checks.facts.disk import BlockDevice, DiskFacts, EncryptedVolume, Mount
from checks.host import disk as disk_checks
from checks.model import Status, Unavailable, jsonable
from checks.registry import Registry
from checks.runner import evaluate
from inventory.host.disk import (
    LSBLK_COLUMNS,
    clevis_bindings,
    collect_disk,
    crypt_kind,
    effective_key_bits,
    key_field_bits,
    parse_blkid_export,
    parse_cipher_spec,
    parse_dmsetup_crypt_table,
    parse_lsblk_json,
    parse_lsblk_pairs,
    parse_luks1_dump,
    parse_luks2_dump,
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


def test_without_udev_blkid_probes_once(tmp_path):
    """Containers and udev-less hosts: lsblk has no FSTYPE; one blkid call probes every device."""
    root = tmp_path / "root"
    shutil.copytree(HIS_DB / "root", root)
    shutil.rmtree(root / "run" / "udev")
    tree = json.loads((HIS_DB / "lsblk.json").read_text())

    def strip(nodes: list[dict[str, object]]) -> None:
        for node in nodes:
            node["fstype"] = node["fsver"] = node["uuid"] = None
            strip(node.get("children", []))  # type: ignore[arg-type]

    strip(tree["blockdevices"])
    paths = [
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
    facts, runner = gather(
        root=root,
        extra={
            f"lsblk --json --bytes --output {LSBLK_COLUMNS}": json.dumps(tree),
            "blkid -p -o export " + " ".join(paths): (
                f"DEVNAME=/dev/nvme0n1p3\nVERSION=2\nUUID={LUKS_UUID}\nTYPE=crypto_LUKS\n"
                "USAGE=crypto\n\nDEVNAME=/dev/sda1\nUUID=5f4e\nTYPE=xfs\nUSAGE=filesystem\n"
            ),
        },
    )
    assert len(runner.ran("blkid")) == 1
    devs = devices(facts)
    assert (devs["nvme0n1p3"].fstype, devs["nvme0n1p3"].fsver) == ("crypto_LUKS", "2")
    assert devs["nvme0n1"].fstype is None
    assert "/dev/nvme0n1p3" in by_path(facts)


# ----------------------------------------------------------------------------- real LUKS headers


CRYPTSETUP = shutil.which("cryptsetup")
LOSETUP = shutil.which("losetup")
FAST_KDF = ["--pbkdf", "pbkdf2", "--pbkdf-force-iterations", "1000"]


def _need_root_and_tools() -> None:
    if os.geteuid() != 0:
        pytest.skip("needs root: loop devices")
    if CRYPTSETUP is None or LOSETUP is None:
        pytest.skip("needs cryptsetup and losetup (Debian packages cryptsetup-bin, mount)")


@dataclass
class LoopImages:
    """Image files attached to loop devices; every device is detached at teardown."""

    work: Path
    attached: list[str] = field(default_factory=list)
    keyfile: Path = field(init=False)

    def __post_init__(self) -> None:
        self.keyfile = self.work / "key"
        self.keyfile.write_bytes(os.urandom(64))

    def luks(self, name: str, *options: str, size_mb: int = 20) -> str:
        image = self.work / f"{name}.img"
        with image.open("wb") as handle:
            handle.truncate(size_mb * 2**20)
        subprocess.run(
            [
                CRYPTSETUP or "cryptsetup",
                "luksFormat",
                "--batch-mode",
                *options,
                "--key-file",
                str(self.keyfile),
                str(image),
            ],
            check=True,
            capture_output=True,
            timeout=60,
        )
        return self.attach(image)

    def attach(self, image: Path) -> str:
        proc = subprocess.run(
            [LOSETUP or "losetup", "--find", "--show", str(image)],
            capture_output=True,
            text=True,
            timeout=30,
            check=False,
        )
        if proc.returncode != 0:
            pytest.skip(f"losetup cannot attach a loop device here: {proc.stderr.strip()}")
        self.attached.append(proc.stdout.strip())
        return self.attached[-1]

    def detach_all(self) -> None:
        for device in reversed(self.attached):
            subprocess.run([LOSETUP or "losetup", "-d", device], check=False, timeout=30)


@pytest.fixture
def loops(tmp_path: Path) -> Iterator[LoopImages]:
    _need_root_and_tools()
    images = LoopImages(tmp_path)
    try:
        yield images
    finally:
        images.detach_all()


def _volume(facts: DiskFacts | Unavailable, device: str) -> EncryptedVolume:
    assert isinstance(facts, DiskFacts), facts
    return by_path(facts)[device]


@pytest.mark.root
@pytest.mark.parametrize(
    ("luks_type", "cipher", "key_size", "effective"),
    [
        ("luks2", "aes-xts-plain64", 512, 256),
        ("luks2", "aes-xts-plain64", 256, 128),
        ("luks1", "aes-xts-plain64", 512, 256),
        ("luks1", "aes-cbc-essiv:sha256", 256, 256),
        ("luks2", "aes-cbc-essiv:sha256", 256, 256),
    ],
)
def test_real_luks_headers(loops, luks_type, cipher, key_size, effective):
    options = ["--type", luks_type, "--cipher", cipher, "--key-size", str(key_size)]
    kdf = FAST_KDF if luks_type == "luks2" else ["--iter-time", "1"]
    device = loops.luks(f"{luks_type}-{key_size}", *options, *kdf)
    volume = _volume(collect_disk(LocalRunner()), device)
    assert volume.kind == luks_type
    assert volume.uuid is not None
    assert not isinstance(volume.cipher, Unavailable), volume.cipher
    assert (volume.cipher.spec, volume.cipher.key_bits) == (cipher, key_size)
    assert volume.cipher.effective_bits == effective
    assert volume.keys is not None
    assert not isinstance(volume.keys, Unavailable)
    assert volume.keys.keyslots == 1
    assert volume.keys.pbkdf == ("pbkdf2",)
    assert volume.mapped_path is None  # nothing is opened


@pytest.mark.root
def test_real_luks_dumps_parse(loops):
    luks1 = loops.luks("l1", "--type", "luks1", "--key-size", "512", "--iter-time", "1")
    luks2 = loops.luks("l2", "--type", "luks2", "--key-size", "512", *FAST_KDF)
    dump = subprocess.run(
        [CRYPTSETUP or "", "luksDump", luks1], capture_output=True, text=True, check=True
    ).stdout
    assert parse_luks1_dump(dump).keys.keyslots == 1
    text = subprocess.run(
        [CRYPTSETUP or "", "luksDump", luks2], capture_output=True, text=True, check=True
    ).stdout
    meta = subprocess.run(
        [CRYPTSETUP or "", "luksDump", "--dump-json-metadata", luks2],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    from_text, from_json = parse_luks2_dump(text), parse_luks_dump_json(meta)
    assert from_text.cipher == from_json.cipher
    assert from_text.keys == from_json.keys


@pytest.mark.root
def test_real_tokens_are_detected(loops, tmp_path):
    device = loops.luks("tpm2", "--type", "luks2", "--key-size", "512", *FAST_KDF)
    before = _volume(collect_disk(LocalRunner()), device)
    assert before.keys is not None
    assert not isinstance(before.keys, Unavailable)
    assert not before.keys.tpm2_token
    token = {
        "type": "systemd-tpm2",
        "keyslots": ["0"],
        "tpm2-blob": "AJ4AIBvmvq0=",
        "tpm2-pcrs": [7],
        "tpm2-pcr-bank": "sha256",
        "tpm2-primary-alg": "ecc",
        "tpm2-policy-hash": "6a1a8b7f",
        "tpm2-pin": False,
    }
    (tmp_path / "token.json").write_text(json.dumps(token))
    (tmp_path / "clevis.json").write_text((RAW / "luks2-clevis-sss-token0.json").read_text())
    (tmp_path / "key2").write_bytes(os.urandom(32))
    subprocess.run(  # keyslot 1, which the clevis token names
        [CRYPTSETUP or "", "luksAddKey", "--batch-mode", "--key-file", str(loops.keyfile),
         *FAST_KDF, device, str(tmp_path / "key2")],
        check=True,
        capture_output=True,
        timeout=60,
    )  # fmt: skip
    for name in ("token.json", "clevis.json"):
        subprocess.run(
            [CRYPTSETUP or "", "token", "import", "--json-file", str(tmp_path / name), device],
            check=True,
            capture_output=True,
            timeout=30,
        )
    after = _volume(collect_disk(LocalRunner()), device)
    assert after.keys is not None
    assert not isinstance(after.keys, Unavailable)
    assert after.keys.tokens == ("systemd-tpm2", "clevis")
    assert after.keys.keyslots == 2
    assert after.keys.tpm2_token
    assert after.keys.clevis_tpm2
    assert after.keys.tpm2_pcrs == (0, 7)
    got = results(collect_disk(LocalRunner()))
    assert got[("disk.key_sealed_by_tpm", device)] == Status.PASS


@pytest.mark.root
def test_real_sm4_is_refused_or_read(loops):
    """SM4 needs kernel support; where cryptsetup refuses it, the edited fixture stands in."""
    try:
        device = loops.luks(
            "sm4", "--type", "luks2", "--cipher", "sm4-xts-plain64", "--key-size", "256", *FAST_KDF
        )
    except subprocess.CalledProcessError as exc:
        said = " ".join(exc.stderr.decode().split())
        pytest.skip(f"this kernel and crypto backend offer no SM4-XTS; cryptsetup said: {said}")
    volume = _volume(collect_disk(LocalRunner()), device)
    assert not isinstance(volume.cipher, Unavailable)
    assert (volume.cipher.algorithm, volume.cipher.effective_bits) == ("sm4", 128)


@pytest.mark.root
def test_real_gather_finds_every_luks_loop(loops):
    devices = [
        loops.luks(f"many{n}", "--type", "luks2", "--key-size", "512", *FAST_KDF) for n in range(3)
    ]
    facts = collect_disk(LocalRunner())
    assert isinstance(facts, DiskFacts)
    assert isinstance(facts.volumes, tuple)
    assert set(devices) <= {v.device for v in facts.volumes}


@pytest.mark.root
def test_open_mapping_and_mount_chain(loops, tmp_path):
    """Runs for real where device-mapper works: open the LUKS volume, make a file system, mount it
    and see the chain. In containers without dm_mod it skips, naming cryptsetup's complaint."""
    device = loops.luks("open", "--type", "luks2", "--key-size", "512", *FAST_KDF, size_mb=40)
    name = f"medsec-test-{os.getpid()}"
    opened = subprocess.run(
        [CRYPTSETUP or "", "open", "--key-file", str(loops.keyfile), device, name],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    if opened.returncode != 0:
        pytest.skip(f"device-mapper unavailable: {opened.stderr.strip().splitlines()[0]}")
    mnt = tmp_path / "mnt"
    mnt.mkdir()
    try:
        mkfs = shutil.which("mkfs.ext4")
        if mkfs is None:
            pytest.skip("mkfs.ext4 is not installed (e2fsprogs)")
        subprocess.run([mkfs, "-q", f"/dev/mapper/{name}"], check=True, timeout=60)
        mount_tool, umount_tool = shutil.which("mount"), shutil.which("umount")
        if mount_tool is None or umount_tool is None:
            pytest.skip("mount/umount are not installed (util-linux)")
        subprocess.run([mount_tool, f"/dev/mapper/{name}", str(mnt)], check=True, timeout=60)
        try:
            facts = collect_disk(LocalRunner())
            assert isinstance(facts, DiskFacts)
            mount = mounts(facts)[str(mnt)]
            assert mount.encrypted is True
            assert mount.crypt_layers == (f"/dev/mapper/{name}",)
            assert device in mount.layers
            assert _volume(facts, device).mapped_name == name
        finally:
            subprocess.run([umount_tool, str(mnt)], check=False, timeout=60)
    finally:
        subprocess.run([CRYPTSETUP or "", "close", name], check=False, timeout=60)
