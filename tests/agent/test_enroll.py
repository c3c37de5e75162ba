"""`medsec-agent enroll` against the real collector (uvicorn + trustme TLS + SQLite store), run as
the installed console script. Secrets (the enrolment token, the API token, the private key) must
never reach stdout or stderr.
"""

from __future__ import annotations

import json
import socket
import stat
import subprocess
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest

from agent.credential import load_credential
from checks.envelope import public_key_pem
from tests.agent.test_push import (  # the live collector and an agent's files
    AGENT,
    AgentHost,
    LiveCollector,
    agent_host,
    free_port,
    medsec_agent,
    serve_collector,
)


@pytest.fixture
def collector(tmp_path: Path) -> Iterator[LiveCollector]:
    yield from serve_collector(tmp_path)


@pytest.fixture
def host(tmp_path: Path, collector: LiveCollector) -> AgentHost:
    return agent_host(tmp_path, collector)


def enroll_args(h: AgentHost, token: str) -> list[str]:
    return ["enroll", "--config", str(h.config), "--collector", h.collector.url, "--token", token]


def test_enrol_writes_a_0600_credential_and_prints_one_line(host, collector):
    token = collector.enrollment_token("his-db-01")
    proc = medsec_agent(*enroll_args(host, token), "--name", "his-db-01")
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout == f"enrolled as his-db-01 with {collector.url}\n"
    assert proc.stderr == ""
    assert stat.S_IMODE(host.credential.stat().st_mode) == 0o600
    cred = load_credential(host.credential)
    assert cred.agent == "his-db-01"
    assert cred.collector == collector.url
    assert cred.alg == "ed25519"
    assert cred.api_token.startswith("msa_")
    for secret in (token, cred.api_token, "PRIVATE KEY"):
        assert secret not in proc.stdout + proc.stderr
    [agent] = collector.store.list_agents()
    assert agent.active
    assert agent.public_key_pem == public_key_pem(cred.private_key_pem, "ed25519")
    # The API token the agent got is the one the collector knows.
    assert collector.store.agent_by_token(cred.api_token).name == "his-db-01"


def test_name_defaults_to_the_hostname(host, collector):
    name = socket.gethostname()
    proc = medsec_agent(*enroll_args(host, collector.enrollment_token(name)))
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout == f"enrolled as {name} with {collector.url}\n"


def test_existing_credential_needs_force(host, collector):
    assert host.enroll().returncode == 0
    before = host.credential.read_bytes()
    token = collector.enrollment_token("other")
    proc = medsec_agent(*enroll_args(host, token), "--name", "other")
    assert proc.returncode == 2
    assert "already holds a credential (agent his-db-01" in proc.stderr
    assert "--force" in proc.stderr
    assert host.credential.read_bytes() == before
    # The token was not spent: the refusal came before contacting the collector.
    assert collector.audit_outcomes("POST /api/v1/enroll") == ["201"]

    proc = medsec_agent(*enroll_args(host, token), "--name", "other", "--force")
    assert proc.returncode == 0, proc.stderr
    assert load_credential(host.credential).agent == "other"


def test_force_reseals_what_waits_in_the_spool(host, collector):
    assert host.enroll().returncode == 0
    collector.stop()
    made = [json.loads(host.run().stdout)["report_id"] for _ in range(2)]
    collector.start()
    collector.store.revoke_agent("his-db-01", datetime.now(UTC))  # e.g. a key thought lost
    proc = host.enroll("his-db-01", "--force")
    assert proc.returncode == 0, proc.stderr
    assert "2 spooled report(s) re-sealed for his-db-01" in proc.stderr
    run = host.run()
    assert run.returncode == 0, run.stderr
    assert collector.reports() == [*made, json.loads(run.stdout)["report_id"]]


def test_bad_token_is_refused_with_the_collectors_code(host, collector):
    collector.enrollment_token("his-db-01")
    bogus = "mse_" + "x" * 43
    proc = medsec_agent(*enroll_args(host, bogus), "--name", "his-db-01")
    assert proc.returncode == 1
    assert "refused enrolment: 401 enrollment_token_invalid" in proc.stderr
    assert bogus not in proc.stderr
    assert len(proc.stderr.splitlines()) == 1
    assert not host.credential.exists()


def test_token_is_single_use(host, collector):
    token = collector.enrollment_token("his-db-01")
    assert medsec_agent(*enroll_args(host, token), "--name", "his-db-01").returncode == 0
    host.credential.unlink()
    proc = medsec_agent(*enroll_args(host, token), "--name", "his-db-01")
    assert proc.returncode == 1
    assert "401 enrollment_token_invalid" in proc.stderr


def test_name_mismatch_is_refused(host, collector):
    token = collector.enrollment_token("his-db-01")
    proc = medsec_agent(*enroll_args(host, token), "--name", "his-db-02")
    assert proc.returncode == 1
    assert "enrollment_token_invalid" in proc.stderr


def test_unreachable_collector_names_the_url(host, collector):
    url = f"https://127.0.0.1:{free_port()}"  # nothing listens there
    host.write_config(url=url)
    proc = medsec_agent(
        "enroll", "--config", str(host.config), "--collector", url, "--token", "mse_" + "y" * 43
    )
    assert proc.returncode == 1
    assert f"cannot reach the collector at {url}" in proc.stderr
    assert "mse_" not in proc.stderr


def test_collector_with_an_untrusted_certificate(host, collector, tmp_path):
    import trustme

    other = tmp_path / "other.pem"
    trustme.CA().cert_pem.write_to_path(str(other))
    token = collector.enrollment_token("his-db-01")
    proc = medsec_agent(*enroll_args(host, token), "--name", "his-db-01", "--ca-file", str(other))
    assert proc.returncode == 1
    assert "CERTIFICATE_VERIFY_FAILED" in proc.stderr
    assert collector.url in proc.stderr


def test_usage_errors_exit_2_in_one_line(host, collector, tmp_path):
    token = collector.enrollment_token("his-db-01")
    cases = [
        (["--collector", "http://127.0.0.1:1"], "http is refused"),
        (["--collector", "https://other.example:8443"], "differs from collector.url"),
        (["--name", "bad name!"], "not a valid agent name"),
        (["--ca-file", str(tmp_path / "none.pem")], "does not exist"),
    ]
    for extra, words in cases:
        args = enroll_args(host, token)
        if "--collector" in extra:
            args = args[:3] + extra + args[5:]
        else:
            args += extra
        proc = medsec_agent(*args)
        assert proc.returncode == 2, (extra, proc.stderr)
        assert words in proc.stderr
        assert len(proc.stderr.splitlines()) == 1
        assert token not in proc.stderr
    proc = medsec_agent(*enroll_args(host, "not-a-token"))
    assert proc.returncode == 2
    assert "--token: not an enrolment token" in proc.stderr
    assert "not-a-token" not in proc.stderr


def test_no_collector_section_needs_a_ca_file(collector, tmp_path):
    config = tmp_path / "agent.yaml"
    config.write_text(f"spool_dir: {tmp_path / 'spool'}\n")
    token = collector.enrollment_token("his-db-01")
    proc = medsec_agent(
        "enroll", "--config", str(config), "--collector", collector.url, "--token", token
    )
    assert proc.returncode == 2
    assert "pass --ca-file or set collector.ca_file" in proc.stderr


def test_bad_config_exits_2(tmp_path, collector):
    config = tmp_path / "agent.yaml"
    config.write_text("collector: {url: 'http://x:1', ca_file: /etc/hostname}\n")
    proc = medsec_agent(
        "enroll", "--config", str(config), "--collector", collector.url, "--token", "mse_x"
    )
    assert proc.returncode == 2
    assert "collector.url: must be an https:// URL (http is refused)" in proc.stderr


def test_token_from_stdin_stays_out_of_the_process_list(host, collector):
    token = collector.enrollment_token("his-db-01")
    proc = subprocess.run(
        [str(AGENT), *enroll_args(host, "-"), "--name", "his-db-01"],
        input=token + "\n",
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout == f"enrolled as his-db-01 with {collector.url}\n"
