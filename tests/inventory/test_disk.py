"""Disk gatherer: the lsblk, blkid, mountinfo and swap parsers on recorded output, and
`collect_disk` on a recorded LVM-on-LUKS server, with udev and without (blkid then probes one
device per call).

Device-mapper does not work in the container these tests were written in (`cryptsetup open`
fails with "Cannot initialize device-mapper"), so mapped state (dm-crypt → LVM → mounts, swap)
comes from the recorded `his-db` scenario (see tests/fixtures/raw/disk/README.md). LUKS headers
and dm tables: test_disk_luks.py; real headers on loop devices: test_disk_loops.py; verdicts
against cryptsetup's own reading of many generated headers: test_disk_truth.py.
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Collection, Mapping
from pathlib import Path

import pytest

from checks.facts import HostFacts
from checks.facts.disk import DiskFacts
from checks.model import Status, Unavailable, jsonable
from checks.runner import evaluate
from inventory.host.disk import (
    LSBLK_COLUMNS,
    collect_disk,
    crypt_kind,
    parse_blkid_export,
    parse_lsblk_json,
    parse_lsblk_pairs,
    parse_mountinfo,
    parse_proc_swaps,
)
from tests.inventory.disk_recorded import (
    DISK_CHECKS,
    HIS_DB,
    LUKS_MAPPING,
    LUKS_UUID,
    PLAIN_KEY,
    RAW,
    RecordedRunner,
    by_path,
    devices,
    gather,
    mounts,
    results,
)

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
