"""The disk gatherer on real LUKS1/LUKS2 headers that cryptsetup writes to loop devices here (one
of them left half-way through re-encryption), and on loop devices probed without udev (blkid one
device at a time, in either order).

Device-mapper does not work in the container these tests were written in (`cryptsetup open`
fails with "Cannot initialize device-mapper"), so `test_open_mapping_and_mount_chain` runs the
mapped chain for real only where device-mapper is available and says why it skipped otherwise.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from collections.abc import Mapping, Sequence
from pathlib import PurePath

import pytest

from checks.facts import HostFacts
from checks.facts.disk import DiskFacts, EncryptedVolume
from checks.model import Status, Unavailable
from checks.runner import evaluate
from inventory.host.disk import (
    collect_disk,
    parse_luks1_dump,
    parse_luks2_dump,
    parse_luks_dump_json,
)
from inventory.runner import CommandResult, LocalRunner
from tests.inventory.disk_recorded import DISK_CHECKS, RAW, by_path, mounts, results
from tests.inventory.luks_images import (
    CRYPTSETUP,
    FAST_KDF,
    LUKS1_FAST_KDF,
    CryptsetupFailed,
    cryptsetup,
    loops,
    reencrypt_part_way,
)

__all__ = ["loops"]  # the fixture, imported for pytest


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
    kdf = FAST_KDF if luks_type == "luks2" else LUKS1_FAST_KDF
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
    luks1 = loops.luks("l1", "--type", "luks1", "--key-size", "512", *LUKS1_FAST_KDF)
    luks2 = loops.luks("l2", "--type", "luks2", "--key-size", "512", *FAST_KDF)
    assert parse_luks1_dump(cryptsetup("luksDump", luks1)).keys.keyslots == 1
    text = cryptsetup("luksDump", luks2)
    meta = cryptsetup("luksDump", "--dump-json-metadata", luks2)
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
        [CRYPTSETUP or "cryptsetup", "luksAddKey", "--batch-mode", "--key-file", str(loops.keyfile),
         *FAST_KDF, device, str(tmp_path / "key2")],
        check=True,
        capture_output=True,
        timeout=60,
    )  # fmt: skip
    for name in ("token.json", "clevis.json"):
        subprocess.run(
            [
                CRYPTSETUP or "cryptsetup",
                "token",
                "import",
                "--json-file",
                str(tmp_path / name),
                device,
            ],
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
    except CryptsetupFailed as exc:
        pytest.skip(f"this kernel's crypto API offers no SM4-XTS; cryptsetup said: {exc.stderr}")
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
        [CRYPTSETUP or "cryptsetup", "open", "--key-file", str(loops.keyfile), device, name],
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
        subprocess.run([CRYPTSETUP or "cryptsetup", "close", name], check=False, timeout=60)


# ----------------------------------------------------------------------------- without udev


class WithoutUdev(LocalRunner):
    """This host as a container or udev-less host shows it: udev keeps no record of any device,
    so lsblk knows no FSTYPE, FSVER or UUID and the gatherer must probe with blkid."""

    def __init__(self) -> None:
        super().__init__()
        self.probed: list[tuple[str, ...]] = []

    def run(
        self,
        argv: Sequence[str],
        *,
        timeout: float = 10.0,
        check: bool = True,
        input_text: str | None = None,
        env: Mapping[str, str] | None = None,
    ) -> CommandResult:
        result = super().run(argv, timeout=timeout, check=check, input_text=input_text, env=env)
        tool = PurePath(argv[0]).name
        if tool == "blkid":
            self.probed.append(tuple(argv[1:]))
        if tool != "lsblk" or "--json" not in argv:
            return result
        tree = json.loads(result.stdout)

        def blank(nodes: list[dict[str, object]]) -> None:
            for node in nodes:
                for key in ("fstype", "fsver", "uuid"):
                    node[key] = None
                blank(node.get("children", []))  # type: ignore[arg-type]

        blank(tree["blockdevices"])
        return CommandResult(result.argv, result.returncode, json.dumps(tree), result.stderr)

    def exists(self, path: str) -> bool:
        return not path.startswith("/run/udev/data/") and super().exists(path)


@pytest.mark.root
@pytest.mark.parametrize("first", ["blank", "luks"])
def test_blkid_one_device_cannot_hide_another(loops, first):
    """blkid given several devices stops at the first without a signature: a LUKS volume listed
    after a blank device was never judged. Each device is probed on its own, in either order."""
    kinds = (
        ["blank", "luks", "blank", "luks"]
        if first == "blank"
        else ["luks", "blank", "luks", "blank"]
    )
    devices = {
        (
            loops.plain(f"blank{n}")
            if kind == "blank"
            else loops.luks(f"luks{n}", "--type", "luks2", *FAST_KDF)
        ): kind
        for n, kind in enumerate(kinds)
    }
    runner = WithoutUdev()
    facts = collect_disk(runner)
    assert isinstance(facts, DiskFacts)
    assert isinstance(facts.block_devices, tuple)
    fstype = {d.path: d.fstype for d in facts.block_devices}
    for device, kind in devices.items():
        assert fstype[device] == ("crypto_LUKS" if kind == "luks" else None), device
        assert ("-p", "-o", "export", device) in runner.probed
    luks = {d for d, kind in devices.items() if kind == "luks"}
    assert luks <= set(by_path(facts))
    assert all(len(args) == 4 for args in runner.probed)  # one device per call
    got = results(facts)
    for device in luks:
        assert got[("disk.cipher_strength", device)] == Status.PASS


@pytest.mark.root
def test_interrupted_reencryption_on_a_loop_device_fails_naming_the_weak_range(loops):
    """The whole gather on a udev-less host: lsblk, blkid one device at a time, luksDump, the
    check. 256-bit XTS (AES-128) to 512-bit, stopped part-way: the rest is still AES-128."""
    key = ["--key-file", str(loops.keyfile), *FAST_KDF, "--cipher", "aes-xts-plain64"]
    image = reencrypt_part_way(
        loops.work / "reencrypting.img",
        [*key, "--key-size", "256"],
        [*key, "--key-size", "512", "--resilience", "none"],
    )
    blank = loops.plain("before")  # listed first: blkid would have stopped here
    device = loops.attach(image)
    facts = collect_disk(WithoutUdev())
    assert isinstance(facts, DiskFacts)
    volume = by_path(facts)[device]
    assert volume.reencryption is not None
    assert len(volume.segments) == 2
    [result] = [
        r
        for r in evaluate(DISK_CHECKS, HostFacts(disk=facts))
        if (r.check_id, r.target) == ("disk.cipher_strength", device)
    ]
    assert result.status is Status.FAIL
    old = volume.segments[1]
    assert f"bytes {old.offset} to the end of the device: AES-128" in result.message
    assert "re-encryption to a new key in progress" in result.message
    assert blank not in by_path(facts)
