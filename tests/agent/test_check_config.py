"""`medsec-agent check-config FILE` as Ansible's `template: validate:` runs it: the installed
console script on a file with any name, exit 0 and `FILE: valid`, or exit 2 and exactly the one
line `run` prints for the same file; it judges the file without calling the collector.

That it needs no root is not tested here: the test interpreter lives under /root, which another
user cannot run.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest

AGENT = Path(sys.executable).with_name("medsec-agent")
EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "agent.yaml"


def agent(*args: str | Path) -> subprocess.CompletedProcess[str]:
    done = subprocess.run(
        [str(AGENT), *map(str, args)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        env={**os.environ, "NO_COLOR": "1"},
    )
    assert "Traceback" not in done.stderr, done.stderr
    return done


def written(folder: Path, text: str, name: str = "tmpk3v9q2xe") -> Path:
    """A config under a name like the temporary one Ansible validates (no .yaml suffix)."""
    path = folder / name
    path.write_text(text, encoding="utf-8")
    return path


@pytest.fixture
def password_file(tmp_path: Path) -> Path:
    path = tmp_path / "restic.pass"
    path.write_text("secret\n", encoding="utf-8")
    path.chmod(0o600)
    return path


def test_a_valid_config_says_so_on_one_line(tmp_path: Path, password_file: Path) -> None:
    text = EXAMPLE.read_text(encoding="utf-8").replace(
        "backups: []",
        "backups:\n  - {name: his-db-restic, kind: restic, repository: /srv/restic,"
        f" password_file: {password_file}, rpo_minutes: 15, site: dc2}}",
    )
    config = written(tmp_path, text)
    done = agent("check-config", config)
    assert done.returncode == 0, done.stderr
    assert done.stdout == f"{config}: valid\n"
    assert done.stderr == ""


@pytest.mark.parametrize(
    ("text", "named"),
    [
        ("site: dc1\ncolour: red\n", "unknown key colour"),
        (
            "backups:\n  - {name: b, kind: restic, repository: /srv/restic,"
            " password_file: /nonexistent/restic.pass}\n",
            "password_file: /nonexistent/restic.pass does not exist",
        ),
        (
            "backups:\n  - {name: b, kind: restic, repository: /srv/restic}\n",
            "a restic source needs password_file",
        ),
        ("checks: {disabled: [tpm.no_such_check]}\n", "unknown check id 'tpm.no_such_check'"),
        ("tpm: {tcti: 'serial:/dev/ttyS0'}\n", "tpm.tcti"),
        ("logs: [\n", "invalid YAML at line 2"),
        ("- site: dc1\n", "the top level must be a mapping"),
    ],
)
def test_a_bad_config_is_the_one_line_run_prints(tmp_path: Path, text: str, named: str) -> None:
    config = written(tmp_path, text)
    checked = agent("check-config", config)
    assert checked.returncode == 2
    assert checked.stdout == ""
    assert checked.stderr.count("\n") == 1, checked.stderr
    assert checked.stderr.startswith(f"medsec-agent: {config}"), checked.stderr
    assert named in checked.stderr
    ran = agent("run", "--config", config, "--no-push")
    assert (ran.returncode, ran.stderr) == (2, checked.stderr)


def test_a_missing_file_is_one_line(tmp_path: Path) -> None:
    done = agent("check-config", tmp_path / "absent")
    assert done.returncode == 2
    assert done.stderr == f"medsec-agent: {tmp_path / 'absent'}: config file not found\n"


def test_no_file_at_all_is_a_usage_error() -> None:
    done = agent("check-config")
    assert done.returncode == 2
    assert done.stderr.count("\n") == 1, done.stderr


def test_an_empty_config_is_valid_as_run_takes_it(tmp_path: Path) -> None:
    config = written(tmp_path, "")  # every key is optional
    assert agent("check-config", config).stdout == f"{config}: valid\n"


def test_never_calls_the_collector(tmp_path: Path) -> None:
    ca = tmp_path / "ca.pem"
    ca.write_text("not read by check-config\n", encoding="utf-8")
    with socket.socket() as collector:
        collector.bind(("127.0.0.1", 0))
        collector.listen()
        collector.setblocking(False)
        port = collector.getsockname()[1]
        config = written(
            tmp_path, f"collector: {{url: 'https://127.0.0.1:{port}', ca_file: {ca}}}\n"
        )
        done = agent("check-config", config)
        assert done.returncode == 0, done.stderr
        assert done.stdout == f"{config}: valid\n"
        with pytest.raises(BlockingIOError):
            collector.accept()  # nobody knocked
