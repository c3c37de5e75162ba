"""The collector's setup steps as the Ansible role runs them, one command at a time, through the
installed `medsec` script: `tls self-signed` and `audit new-key` write files that never existed
(and never replace one), `check-config` judges settings as `serve` would (exit 0 or one line and
exit 2), and `users list` / `agents list --format json` tell the role who already exists.
"""

from __future__ import annotations

import json
import os
import pwd
import sqlite3
import stat
import subprocess
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from cryptography import x509

from checks import envelope as env
from collector.tls import server_ssl_context
from tests.collector.test_cli import ME, MEDSEC, Done, medsec


def refused(done: Done, *words: str) -> None:
    assert done.code == 2, done
    assert done.out == "", done
    assert done.err.startswith("medsec"), done.err
    assert done.err.count("\n") == 1, done.err
    for word in words:
        assert word in done.err, done.err


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def sans(cert: Path) -> list[str]:
    parsed = x509.load_pem_x509_certificate(cert.read_bytes())
    names = parsed.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    return [str(n.value) for n in names]


# --------------------------------------------------------------------------- tls self-signed


def test_self_signed_pair_names_the_hosts_and_keeps_the_key_private(tmp_path: Path) -> None:
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    done = medsec(
        "tls", "self-signed", "--cert", cert, "--key", key,
        "--hostname", "Collector.Hospital.example", "--hostname", "198.18.0.1",
    )  # fmt: skip
    assert done.code == 0, done
    assert done.out.splitlines() == [
        f"certificate: {cert}  (give it to agents as their ca_file)",
        f"private key: {key}  (mode 0600)",
        "names:       localhost, 127.0.0.1, Collector.Hospital.example, 198.18.0.1",
    ]
    assert sans(cert) == ["localhost", "127.0.0.1", "collector.hospital.example", "198.18.0.1"]
    assert mode(key) == 0o600
    assert mode(cert) == 0o644  # agents' ca_file: readable although medsec runs with umask 077
    server_ssl_context(cert, key)  # the key is this certificate's
    assert sorted(p.name for p in tmp_path.iterdir()) == ["cert.pem", "key.pem"]  # no scraps


def test_a_relative_pair_is_written_where_asked_and_reported_in_full(tmp_path: Path) -> None:
    (tmp_path / "tls").mkdir()
    done = subprocess.run(
        [MEDSEC, "tls", "self-signed", "--cert", "tls/c.pem", "--key", "k.pem"],
        cwd=tmp_path, capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert f"certificate: {tmp_path / 'tls' / 'c.pem'}  " in done.stdout
    assert sans(tmp_path / "tls" / "c.pem") == ["localhost", "127.0.0.1"]
    assert mode(tmp_path / "k.pem") == 0o600


@pytest.mark.parametrize("existing", ["cert", "key"])
def test_self_signed_never_overwrites_and_leaves_nothing_behind(
    tmp_path: Path, existing: str
) -> None:
    paths = {"cert": tmp_path / "cert.pem", "key": tmp_path / "key.pem"}
    paths[existing].write_text("the operator's own\n", encoding="utf-8")
    done = medsec("tls", "self-signed", "--cert", paths["cert"], "--key", paths["key"])
    refused(done, f"{paths[existing]} already exists; not overwriting it")
    assert paths[existing].read_text(encoding="utf-8") == "the operator's own\n"
    assert sorted(tmp_path.iterdir()) == [paths[existing]]  # the other one was not written


def test_self_signed_refuses_a_missing_folder_a_bad_name_and_one_file_for_both(
    tmp_path: Path,
) -> None:
    key = tmp_path / "key.pem"
    refused(
        medsec("tls", "self-signed", "--cert", tmp_path / "no" / "cert.pem", "--key", key),
        f"{tmp_path / 'no'} does not exist; create it first",
    )
    refused(
        medsec("tls", "self-signed", "--cert", key, "--key", key),
        "--cert and --key are the same file",
    )
    refused(
        medsec("tls", "self-signed", "--cert", tmp_path / "c", "--key", key, "--hostname", "a b"),
        "--hostname: 'a b' is neither an IP address nor a host name",
    )
    refused(medsec("tls", "self-signed", "--cert", tmp_path / "c"), "--key")
    assert list(tmp_path.iterdir()) == []


def test_owner_gets_the_new_files(tmp_path: Path) -> None:
    if os.geteuid() != 0:
        pytest.skip("giving files to another user needs root")
    nobody = pwd.getpwnam("nobody")
    cert, key, audit = tmp_path / "cert.pem", tmp_path / "key.pem", tmp_path / "audit.key"
    assert medsec("tls", "self-signed", "--cert", cert, "--key", key, "--owner", "nobody").code == 0
    assert medsec("audit", "new-key", audit, "--owner", "nobody").code == 0
    for path in (cert, key, audit):
        assert (path.stat().st_uid, path.stat().st_gid) == (nobody.pw_uid, nobody.pw_gid)
    assert (mode(key), mode(audit)) == (0o600, 0o600)
    refused(
        medsec("audit", "new-key", tmp_path / "other.key", "--owner", "no-such-user"),
        "--owner: no user named 'no-such-user'",
    )
    assert not (tmp_path / "other.key").exists()


# --------------------------------------------------------------------------- audit new-key


def test_audit_new_key_is_private_and_never_overwritten(tmp_path: Path) -> None:
    path = tmp_path / "audit.key"
    done = medsec("audit", "new-key", path)
    assert done.code == 0, done
    assert (
        done.out == f"audit key: {path}  (mode 0600; back it up: the audit log verifies with it)\n"
    )
    assert mode(path) == 0o600
    first = path.read_bytes()
    assert b"\nkeyed_from=1\n" in first
    refused(medsec("audit", "new-key", path), f"{path} already exists; not overwriting it")
    assert path.read_bytes() == first
    refused(medsec("audit", "new-key", tmp_path / "no" / "a.key"), "does not exist")
    assert medsec("audit", "new-key", tmp_path / "second.key").code == 0
    assert (tmp_path / "second.key").read_bytes() != first  # a fresh secret each time


# --------------------------------------------------------------------------- check-config


@pytest.fixture
def laid_out(tmp_path: Path) -> Path:
    """/etc/medsec as the role lays it out: pair, audit key, settings with absolute paths."""
    etc, data = tmp_path / "etc", tmp_path / "data"
    etc.mkdir()
    data.mkdir()
    pair = ("--cert", etc / "cert.pem", "--key", etc / "key.pem", "--hostname", "198.18.0.1")
    assert medsec("tls", "self-signed", *pair).code == 0
    assert medsec("audit", "new-key", etc / "audit.key").code == 0
    settings = etc / "collector.yaml"
    settings.write_text(
        f"listen: '198.18.0.1:8443'\n"
        f"tls: {{cert_file: {etc / 'cert.pem'}, key_file: {etc / 'key.pem'}}}\n"
        f"database: 'sqlite:///{data / 'medsec.db'}'\n"
        f"audit: {{key_file: {etc / 'audit.key'}}}\n",
        encoding="utf-8",
    )
    return settings


def test_settings_laid_out_by_the_setup_commands_are_valid_and_serve_an_audited_database(
    laid_out: Path, tmp_path: Path
) -> None:
    candidate = tmp_path / "tmpa1b2c3"  # Ansible validates a temporary copy, named like this
    candidate.write_bytes(laid_out.read_bytes())
    done = medsec("check-config", candidate)
    assert done == Done(0, f"{candidate}: valid\n", "")
    assert not (tmp_path / "data" / "medsec.db").exists()  # judged, not opened
    assert medsec("db", "upgrade", "--config", laid_out).code == 0
    verified = medsec("audit", "verify", "--config", laid_out)
    assert verified.code == 0, verified
    assert verified.out.startswith("audit log intact: 1 entries; head 1:")


@pytest.mark.parametrize(
    ("change", "named"),
    [
        (lambda t: t + "colour: red\n", "unknown key colour (value: 'red')"),
        (lambda t: t.replace("audit.key", "gone.key"), "audit.key_file: "),
        (lambda t: t.replace("key.pem", "nokey.pem"), "tls.key_file: "),
        (lambda t: t.replace("198.18.0.1:8443", "198.18.0.1"), "listen: must be HOST:PORT"),
        (lambda t: t.replace("sqlite:///", "mysql://"), "database: must start with"),
        (lambda t: "- " + t, "invalid YAML at line 2"),
    ],
)
def test_bad_settings_are_one_line_naming_the_problem(
    laid_out: Path, tmp_path: Path, change: Callable[[str], str], named: str
) -> None:
    candidate = tmp_path / "tmpz9y8x7"
    candidate.write_text(change(laid_out.read_text(encoding="utf-8")), encoding="utf-8")
    refused(medsec("check-config", candidate), f"medsec: {candidate}: ", named)


def test_a_key_others_can_read_is_refused_like_serve_refuses_it(laid_out: Path) -> None:
    key = laid_out.parent / "key.pem"
    key.chmod(0o644)
    checked = medsec("check-config", laid_out)
    refused(checked, "tls.key_file", "accessible to every user")
    assert medsec("serve", "--config", laid_out).err == checked.err


def test_a_missing_settings_file_is_one_line(tmp_path: Path) -> None:
    refused(medsec("check-config", tmp_path / "absent"), "settings file not found")


# --------------------------------------------------------------------------- lists as JSON


def test_lists_as_json_show_who_exists_and_each_agents_state(laid_out: Path) -> None:
    from collector.settings import load_settings

    config = laid_out
    assert medsec("db", "upgrade", "--config", config).code == 0
    assert medsec("users", "list", "--format", "json", "--config", config).out == "[]\n"
    assert medsec("agents", "list", "--format", "json", "--config", config).out == "[]\n"
    assert medsec("users", "add", "root", "--role", "admin", "--config", config).code == 0
    assert medsec("agents", "enroll", "pacs-01", "--config", config).code == 0
    assert medsec("agents", "enroll", "ris-01", "--config", config).code == 0
    assert medsec("agents", "revoke", "ris-01", "--config", config).code == 0
    enrolled_before = datetime.now(UTC).replace(microsecond=0)
    _enrol_directly(load_settings(config), "his-db-01")

    users = json.loads(medsec("users", "list", "--format", "json", "--config", config).out)
    assert [{k: u[k] for k in ("name", "role")} for u in users] == [
        {"name": "root", "role": "admin"}
    ]
    assert set(users[0]) == {"name", "role", "created_at"}
    assert _utc(users[0]["created_at"]) >= enrolled_before - timedelta(minutes=1)

    listed = medsec("agents", "list", "--format", "json", "--config", config)
    assert listed.code == 0, listed
    agents = {a["name"]: a for a in json.loads(listed.out)}
    assert {name: a["state"] for name, a in agents.items()} == {
        "his-db-01": "active",
        "pacs-01": "pending",
        "ris-01": "revoked",
    }
    assert all(
        set(a) == {"name", "state", "alg", "enrolled_at", "last_seen_at", "probe_zone"}
        for a in agents.values()
    )
    active, pending = agents["his-db-01"], agents["pacs-01"]
    assert active["alg"] == "ed25519"
    assert _utc(active["enrolled_at"]) >= enrolled_before
    assert (pending["alg"], pending["enrolled_at"], pending["last_seen_at"]) == (None, None, None)

    table = medsec("agents", "list", "--config", config).out.splitlines()  # a table by default
    assert table[0].split() == ["NAME", "STATE", "ALG", "ENROLLED", "LAST", "SEEN", "PROBE", "ZONE"]
    assert table[1].split()[:3] == ["his-db-01", "active", "ed25519"]
    assert table[2].split() == ["pacs-01", "pending", "-", "-", "-", "-"]  # no probe zone either
    refused(medsec("agents", "list", "--format", "yaml", "--config", config), "invalid choice")
    with sqlite3.connect(laid_out.parent.parent / "data" / "medsec.db") as db:
        actions = db.execute("SELECT actor, action, outcome FROM audit_log").fetchall()
    assert actions.count((ME, "cli agents list", "0")) == 3  # listed as before: audited


def _enrol_directly(settings: object, name: str) -> None:
    """An agent that redeemed its token, as the API does it (no server needed for the list)."""
    from collector.settings import CollectorSettings, audit_key
    from collector.store import Store

    assert isinstance(settings, CollectorSettings)
    store = Store.open(settings.database, audit_key=audit_key(settings))
    try:
        now = datetime.now(UTC)
        token = store.create_enrollment(name, timedelta(minutes=5), now)
        key = env.generate_private_key("ed25519")
        store.redeem_enrollment(token, name, "ed25519", env.public_key_pem(key, "ed25519"), now)
    finally:
        store.close()


def _utc(stamp: str) -> datetime:
    assert stamp.endswith("Z"), stamp
    return datetime.fromisoformat(stamp)
