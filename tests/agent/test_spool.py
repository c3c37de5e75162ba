"""The spool on a real file system: round trip, encryption at rest, crash safety, the bound."""

from __future__ import annotations

import os
import signal
import stat
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest

from agent.credential import (
    Credential,
    CredentialError,
    CredentialMissing,
    load_credential,
    pending_key,
    write_credential,
)
from agent.spool import ItemUnreadable, Spool, SpoolFull, atomic_write, item_name
from checks.envelope import generate_private_key, open_envelope, seal

ROOT = Path(__file__).resolve().parents[2]
HOSTNAME = "his-db-01.hospital.example"


@pytest.fixture(scope="module")
def key() -> str:
    return generate_private_key("ed25519")


def report_bytes(report_id: str) -> bytes:
    return (
        f'{{"schema": "medsec.report/v1", "report_id": "{report_id}", '
        f'"host": {{"hostname": "{HOSTNAME}"}}}}\n'
    ).encode()


def envelope(report_id: str, key: str) -> bytes:
    return seal(report_bytes(report_id), "his-db-01", key, "ed25519")


def test_round_trip_oldest_first(tmp_path, key):
    spool = Spool(tmp_path / "spool", 10 * 2**20, key)
    ids = [str(uuid.uuid4()) for _ in range(3)]
    # Added out of time order: the listing follows the timestamp in the name, not insertion.
    for ns, rid in zip((3_000, 1_000, 2_000), ids, strict=True):
        spool.add(rid, envelope(rid, key), now_ns=1_700_000_000_000_000_000 + ns)
    items = spool.items()
    assert [i.report_id for i in items] == [ids[1], ids[2], ids[0]]
    for item in items:
        env, body, _ = open_envelope(spool.read(item))
        assert env.agent == "his-db-01"
        assert body == report_bytes(item.report_id)
    spool.remove(items[0])
    assert [i.report_id for i in spool.items()] == [ids[2], ids[0]]


def test_modes_dir_0700_files_0600(tmp_path, key):
    os.umask(0o022)
    spool = Spool(tmp_path / "spool", 2**20, key)
    item = spool.add(str(uuid.uuid4()), envelope(str(uuid.uuid4()), key))
    assert stat.S_IMODE((tmp_path / "spool").stat().st_mode) == 0o700
    assert stat.S_IMODE((tmp_path / "spool" / "rejected").stat().st_mode) == 0o700
    assert stat.S_IMODE(item.path.stat().st_mode) == 0o600


def test_existing_wide_dir_is_tightened(tmp_path, key):
    (tmp_path / "spool").mkdir(mode=0o755)
    (tmp_path / "spool").chmod(0o755)
    Spool(tmp_path / "spool", 2**20, key).add(str(uuid.uuid4()), b"{}")
    assert stat.S_IMODE((tmp_path / "spool").stat().st_mode) == 0o700


def test_encrypted_at_rest(tmp_path, key):
    spool = Spool(tmp_path / "spool", 2**20, key)
    rid = str(uuid.uuid4())
    item = spool.add(rid, envelope(rid, key))
    data = item.path.read_bytes()
    assert rid in item.name  # the name carries the id, the bytes do not
    for secret in (rid.encode(), HOSTNAME.encode(), b"his-db-01", b"medsec", b"schema"):
        assert secret not in data
    # Nor does the base64 of the report inside the envelope survive.
    assert envelope(rid, key)[:40] not in data


def test_other_key_or_other_name_does_not_decrypt(tmp_path, key):
    spool = Spool(tmp_path / "spool", 2**20, key)
    rid = str(uuid.uuid4())
    item = spool.add(rid, envelope(rid, key))
    other = Spool(tmp_path / "spool", 2**20, generate_private_key("ed25519"))
    with pytest.raises(ItemUnreadable, match="another agent key"):
        other.read(item)
    # The name is associated data: an item renamed to pose as another report fails.
    renamed = item.path.with_name(item_name(str(uuid.uuid4()), 1))
    item.path.rename(renamed)
    with pytest.raises(ItemUnreadable):
        spool.read(spool.items()[0])


def test_corrupt_item_is_unreadable_and_rejects_with_reason(tmp_path, key):
    spool = Spool(tmp_path / "spool", 2**20, key)
    rid = str(uuid.uuid4())
    item = spool.add(rid, envelope(rid, key))
    data = bytearray(item.path.read_bytes())
    data[20] ^= 0x01
    item.path.write_bytes(bytes(data))
    with pytest.raises(ItemUnreadable) as info:
        spool.read(item)
    target = spool.reject(item, f"unreadable: {info.value}")
    assert spool.items() == []
    assert target.parent.name == "rejected"
    assert "does not decrypt" in target.with_name(target.name + ".reason").read_text()
    assert [i.report_id for i in spool.rejected()] == [rid]


def test_truncated_item(tmp_path, key):
    spool = Spool(tmp_path / "spool", 2**20, key)
    rid = str(uuid.uuid4())
    item = spool.add(rid, envelope(rid, key))
    item.path.write_bytes(b"short")
    with pytest.raises(ItemUnreadable, match="truncated"):
        spool.read(item)


def test_bound_refuses_and_deletes_nothing(tmp_path, key):
    spool = Spool(tmp_path / "spool", 4096, key)
    first = str(uuid.uuid4())
    spool.add(first, b"x" * 3000)
    rid = str(uuid.uuid4())
    with pytest.raises(SpoolFull) as info:
        spool.add(rid, b"y" * 2000)
    assert str(info.value) == f"spool full (0.0 MB of 0): report {rid} NOT kept"
    assert [i.report_id for i in spool.items()] == [first]


def test_bound_message_in_mb(tmp_path, key):
    spool = Spool(tmp_path / "spool", 2 * 2**20, key)
    spool.ensure()
    (tmp_path / "spool" / "rejected" / "old.msr").write_bytes(b"z" * (2 * 2**20 - 100))
    with pytest.raises(SpoolFull, match=r"^spool full \(2\.0 MB of 2\): report r NOT kept$"):
        spool.add("r", b"{}" * 100)


_CRASH = """
import os, sys, time
sys.path.insert(0, {root!r})
from agent.spool import Spool
def crash_here(*args):  # between the fsynced write and the rename: the process dies here
    print("written", flush=True)
    time.sleep(60)
os.link = crash_here
os.replace = crash_here
Spool(__import__("pathlib").Path({spool!r}), 2**20, {key!r}).add({rid!r}, b'{{"x": 1}}')
"""


def test_crash_between_write_and_rename_leaves_only_a_temp_file(tmp_path, key):
    spool_dir = tmp_path / "spool"
    rid = str(uuid.uuid4())
    code = _CRASH.format(root=str(ROOT), spool=str(spool_dir), key=key, rid=rid)
    proc = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout is not None
        assert proc.stdout.readline().strip() == "written"
        proc.send_signal(signal.SIGKILL)
    finally:
        proc.wait(timeout=10)
    left = sorted(p.name for p in spool_dir.iterdir() if p.is_file())
    assert len(left) == 1
    assert left[0].startswith(".tmp-")
    spool = Spool(spool_dir, 2**20, key)
    assert spool.items() == []  # the listing never sees a half-made item
    assert spool.clean_temp() == 0  # too fresh: could be a live write
    old = time.time() - 3600
    os.utime(spool_dir / left[0], (old, old))
    assert spool.clean_temp() == 1
    assert not any(p.name.startswith(".tmp-") for p in spool_dir.iterdir())


def test_atomic_write_no_overwrite(tmp_path):
    path = tmp_path / "f"
    atomic_write(path, b"one", overwrite=False)
    with pytest.raises(FileExistsError):
        atomic_write(path, b"two", overwrite=False)
    assert path.read_bytes() == b"one"
    assert os.listdir(tmp_path) == ["f"]  # no temp left behind
    atomic_write(path, b"three")
    assert path.read_bytes() == b"three"


def test_send_lock_is_exclusive(tmp_path, key):
    spool = Spool(tmp_path / "spool", 2**20, key)
    code = (
        f"import sys, fcntl, os; sys.path.insert(0, {str(ROOT)!r})\n"
        "from pathlib import Path; from agent.spool import Spool\n"
        f"s = Spool(Path({str(tmp_path / 'spool')!r}), 2**20, {key!r})\n"
        "with s.sending() as mine: print(mine)\n"
    )
    with spool.sending() as mine:
        assert mine
        other = subprocess.run(
            [sys.executable, "-c", code], capture_output=True, text=True, timeout=30, check=True
        )
        assert other.stdout.strip() == "False"
    again = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=30, check=True
    )
    assert again.stdout.strip() == "True"


# --------------------------------------------------------------------------- the credential


def test_credential_written_0600_and_read_back(tmp_path, key):
    os.umask(0o022)
    path = tmp_path / "etc" / "agent.cred"
    cred = Credential("https://127.0.0.1:8443", "his-db-01", "ed25519", "msa_" + "a" * 40, key)
    write_credential(path, cred, overwrite=False)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert load_credential(path) == cred
    assert "msa_" not in repr(cred)
    assert "PRIVATE" not in repr(cred)
    with pytest.raises(FileExistsError):
        write_credential(path, cred, overwrite=False)


def test_credential_readable_by_others_is_refused(tmp_path, key):
    path = tmp_path / "agent.cred"
    cred = Credential("https://127.0.0.1:8443", "a", "ed25519", "msa_" + "a" * 40, key)
    write_credential(path, cred, overwrite=False)
    path.chmod(0o644)
    with pytest.raises(CredentialError, match=r"readable by others \(mode 0644\)"):
        load_credential(path)


def test_credential_missing_and_damaged(tmp_path):
    with pytest.raises(CredentialMissing):
        load_credential(tmp_path / "none")
    bad = tmp_path / "bad"
    atomic_write(bad, b'{"api_token": "msa_secret_value"}')
    with pytest.raises(CredentialError) as info:
        load_credential(bad)
    assert "msa_secret_value" not in str(info.value)


def test_pending_key_is_made_once(tmp_path):
    first = pending_key(tmp_path / "spool", "ed25519")
    second = pending_key(tmp_path / "spool", "sm2-sm3")
    assert first == second
    assert stat.S_IMODE((tmp_path / "spool" / "pending.key").stat().st_mode) == 0o600
