"""`medsec-agent` as a sysadmin runs it: the installed console script, a real swtpm, real config
files. Exit codes and stderr are the contract scripts depend on.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest

AGENT = Path(sys.executable).with_name("medsec-agent")
TPM_CHECKS = {"tpm.present", "tpm.pcr_bank", "tpm.ek_certificate", "tpm.lockout"}


def agent(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(AGENT), *args],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        env={**os.environ, "NO_COLOR": "1", **(env or {})},
    )


def config(tmp_path: Path, text: str) -> str:
    path = tmp_path / "agent.yaml"
    path.write_text(text, encoding="utf-8")
    return str(path)


def closed_port() -> int:
    """A loopback port nothing listens on (bound, then released; with port+1 for the swtpm ctrl)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_working_tpm_passes_every_tpm_check(tmp_path, swtpm_ek):
    cfg = config(tmp_path, f'tpm: {{tcti: "{swtpm_ek}"}}\nchecks: {{only: ["tpm.*"]}}\n')
    proc = agent("run", "--config", cfg, "--format", "json", "--no-push")
    assert proc.returncode == 0, proc.stderr
    report = json.loads(proc.stdout)
    assert report["schema"] == "medsec.report/v1"
    by_id = {r["check_id"]: r for r in report["results"]}
    assert set(by_id) == TPM_CHECKS
    assert {r["status"] for r in by_id.values()} == {"pass"}
    assert "GB/T 22239-2019 8.1.4.6" in by_id["tpm.present"]["clauses"]
    assert "swtpm-localca" in by_id["tpm.ek_certificate"]["message"]
    assert report["inventory"]["tpm"]["manufacturer"] == "IBM"
    assert report["host"]["id"].startswith("sha256:")
    assert proc.stderr == ""


def test_no_tpm_reachable_fails_with_a_clear_message(tmp_path):
    cfg = config(tmp_path, f'tpm: {{tcti: "swtpm:host=127.0.0.1,port={closed_port()}"}}\n')
    proc = agent("run", "--config", cfg, "--format", "json", "--no-push")
    assert proc.returncode == 1
    present = next(r for r in json.loads(proc.stdout)["results"] if r["check_id"] == "tpm.present")
    assert present["status"] == "fail"
    assert "127.0.0.1" in present["message"]
    assert "/sys/class/tpm" in present["message"]
    assert "Traceback" not in proc.stderr
    assert "ERROR:tcti" not in proc.stderr  # TSS log noise is silenced


def test_table_in_chinese(tmp_path, swtpm_ek):
    cfg = config(tmp_path, f'tpm: {{tcti: "{swtpm_ek}"}}\n')
    proc = agent("run", "--config", cfg, "--lang", "zh", "--no-push")
    lines = proc.stdout.splitlines()
    assert lines[2].split() == ["状态", "检查项", "对象", "说明"]
    assert any(line.startswith("通过") and "tpm.present" in line for line in lines)
    assert "汇总" in lines[-1]
    assert "\x1b[" not in proc.stdout  # not a terminal: no colour codes


def test_facts_prints_gathered_facts(tmp_path, swtpm_ek):
    cfg = config(tmp_path, f'tpm: {{tcti: "{swtpm_ek}"}}\n')
    proc = agent("facts", "--config", cfg)
    assert proc.returncode == 0, proc.stderr
    facts = json.loads(proc.stdout)
    assert facts["tpm"]["family"] == "2.0"
    assert facts["hardware"]["hostname"] == socket.gethostname()


@pytest.mark.parametrize(
    ("text", "words"),
    [
        ("tpm: {tctii: x}\n", "unknown key tpm.tctii (value: 'x')"),
        ("checks: {disabled: [tpm.presnt]}\n", "unknown check id 'tpm.presnt'"),
        ("tpm: {tcti: [\n", "invalid YAML"),
    ],
)
def test_bad_config_is_one_line_and_exit_2(tmp_path, text, words):
    cfg = config(tmp_path, text)
    proc = agent("run", "--config", cfg)
    assert proc.returncode == 2
    assert proc.stdout == ""
    assert proc.stderr.count("\n") == 1
    assert cfg in proc.stderr
    assert words in proc.stderr


def test_missing_config_file(tmp_path):
    proc = agent("run", "--config", str(tmp_path / "absent.yaml"))
    assert proc.returncode == 2
    assert proc.stderr == f"medsec-agent: {tmp_path / 'absent.yaml'}: config file not found\n"


@pytest.mark.parametrize(
    "args", [["frobnicate"], ["run"], ["run", "--config", "x", "--format", "xml"], []]
)
def test_usage_errors_are_one_line(args):
    proc = agent(*args)
    assert proc.returncode == 2
    assert proc.stderr.count("\n") == 1
    assert "see --help" in proc.stderr


def test_checks_lists_every_check_with_its_clauses():
    proc = agent("checks")
    assert proc.returncode == 0
    lines = {line.split()[0]: line for line in proc.stdout.splitlines()}
    assert TPM_CHECKS | {"host.secure_boot"} <= set(lines)
    assert "MNDS 6.1.1" in lines["tpm.present"]


def test_backup_recency_end_to_end(tmp_path):
    """Config → typed sources → the path gatherer → backup.rpo and backup.offsite, per source."""
    import time

    fresh, stale = tmp_path / "fresh", tmp_path / "stale"
    for folder, minutes in ((fresh, 5), (stale, 20)):
        folder.mkdir()
        dump = folder / "his-db.tar"
        dump.write_bytes(b"dump")
        moment = time.time() - minutes * 60
        os.utime(dump, (moment, moment))
    cfg = config(
        tmp_path,
        f"""
site: dc1
backups:
  - {{name: pacs-export, kind: path, glob: "{fresh}/*.tar", rpo_minutes: 15, site: dc2}}
  - {{name: his-db-dump, kind: path, glob: "{stale}/*.tar", site: dc1}}
checks: {{only: ['backup.*']}}
""",
    )
    proc = agent("run", "--config", cfg, "--format", "json", "--no-push")
    assert proc.returncode == 1, proc.stderr
    results = {(r["check_id"], r["target"]): r for r in json.loads(proc.stdout)["results"]}
    assert results["backup.rpo", "pacs-export"]["status"] == "pass"
    stale_result = results["backup.rpo", "his-db-dump"]
    assert stale_result["status"] == "fail"
    assert stale_result["evidence"]["rpo_seconds"] == 900
    assert 1190 < stale_result["evidence"]["age_seconds"] < 1300
    assert results["backup.offsite", "dc1"]["status"] == "pass"
    assert "MNDS 7.2.4.3" in stale_result["clauses"]


def test_missing_backup_password_file_is_a_config_error(tmp_path):
    cfg = config(
        tmp_path,
        "backups:\n  - {name: r, kind: restic, repository: /srv/restic,"
        " password_file: /etc/medsec/none.pass}\n",
    )
    proc = agent("run", "--config", cfg)
    assert proc.returncode == 2
    assert proc.stderr == (
        f"medsec-agent: {cfg}: backups[0].password_file: /etc/medsec/none.pass does not exist"
        " (value: '/etc/medsec/none.pass')\n"
    )


def test_checks_lists_each_parameter_with_its_one_default():
    listing = agent("checks")
    assert listing.returncode == 0, listing.stderr
    assert "default_rpo_minutes = 15\n" in listing.stdout
    assert "default_rpo_minutes = 15  (shared: set it on backup.rpo)" in listing.stdout
    assert "GB/T 22239-2019 8.1.4.6" in listing.stdout
    chinese = agent("checks", "--lang", "zh")
    assert "磁盘" in chinese.stdout
