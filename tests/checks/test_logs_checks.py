"""`log.retention` and `host.firewall_default_deny` on recorded facts: the shared cases, the
site parameters (declared central servers, another minimum), and the evidence an assessor reads."""

from __future__ import annotations

import json
from dataclasses import replace

import pytest

from checks.facts import HostFacts
from checks.facts.logs import LogFacts, LogForwarding, LogStream, OldestRecord, Retention
from checks.host import logs
from checks.model import Status, Unavailable, jsonable
from checks.registry import Registry
from checks.runner import ParameterError, run_check
from tests.checks.cases_logs import (
    AUDIT_ROTATE,
    AUTH_DEBIAN,
    JOURNALD,
    OBSERVED_AT,
    UNDECLARED,
    auth,
)

REGISTRY = Registry.from_modules([logs])


def _retention(facts: HostFacts, **overrides: object) -> list[tuple[str | None, Status, str]]:
    results = run_check(REGISTRY.get("log.retention"), facts, overrides)
    return [(r.target, r.status, r.message) for r in results]


@pytest.mark.parametrize(
    "declared",
    ["198.18.4.50", "198.18.4.50:6514", "LOGS.HIS.LOCAL"],
)
def test_forwarding_to_a_declared_server_passes(declared: str) -> None:
    rule = UNDECLARED if declared[0].isdigit() else replace(UNDECLARED, host="logs.his.local")
    ((target, status, message),) = _retention(
        auth(forwarded_to=(rule,)), central_log_servers=[declared]
    )
    assert (target, status) == ("auth", Status.PASS)
    assert "forwarded by rsyslog to declared central log server" in message
    assert message.endswith("locally: logrotate keeps 4 weekly = 28 days < 183")


@pytest.mark.parametrize(
    ("rule", "declared", "status"),
    [
        # `@@host` leaves rsyslog's default port, 514.
        (replace(UNDECLARED, port=None), "198.18.4.50:514", Status.PASS),
        (replace(UNDECLARED, port=None), "198.18.4.50:6514", Status.FAIL),
        (replace(UNDECLARED, host="2001:db8::50", port=514), "[2001:db8::50]:514", Status.PASS),
        (replace(UNDECLARED, host="2001:db8::50", port=514), "2001:db8::50", Status.PASS),
        (replace(UNDECLARED, host="198.18.4.51"), "198.18.4.50", Status.FAIL),
    ],
)
def test_declared_server_forms(rule: LogForwarding, declared: str, status: Status) -> None:
    ((_, got, _),) = _retention(auth(forwarded_to=(rule,)), central_log_servers=[declared])
    assert got is status


def test_a_site_may_ask_for_a_year() -> None:
    facts = auth(retention=Retention(200.0, "logrotate keeps 200 daily = 200 days"))
    ((_, status, message),) = _retention(facts, min_retention_days=365)
    assert status is Status.FAIL
    assert message == "logrotate keeps 200 daily = 200 days < 365"
    (result,) = run_check(REGISTRY.get("log.retention"), facts, {"min_retention_days": 365})
    assert result.message_zh == (
        "logrotate keeps 200 daily = 200 days（留存 200 天，不足要求的 365 天）"
    )


def test_parameters_are_typed() -> None:
    with pytest.raises(ParameterError, match="central_log_servers"):
        _retention(auth(), central_log_servers="198.18.4.50")


def test_one_result_per_stream_with_evidence() -> None:
    facts = HostFacts(
        logs=LogFacts(
            observed_at=OBSERVED_AT,
            streams=(
                AUTH_DEBIAN,
                AUDIT_ROTATE,
                LogStream(
                    name="/var/log/nginx/access.log",
                    kind="file",
                    present=True,
                    retention=Retention(None, "no logrotate rule names /var/log/nginx/access.log"),
                    oldest=None,
                    forwarded_to=Unavailable("rsyslog configuration unreadable: denied"),
                ),
            ),
            journald=JOURNALD,
            logrotate=(),
            auditd=None,
            forwarding=(),
        )
    )
    results = run_check(REGISTRY.get("log.retention"), facts)
    assert [(r.target, r.status) for r in results] == [
        ("auth", Status.FAIL),
        ("audit", Status.PASS),
        ("/var/log/nginx/access.log", Status.ERROR),
    ]
    assert "forwarding configuration unreadable" in results[2].message
    evidence = results[0].evidence
    assert evidence["configured"]["days"] == 28.0
    assert evidence["configured"]["sources"] == ["/etc/logrotate.d/rsyslog"]
    assert evidence["oldest_record"] == {
        "at": "2026-10-25T09:00:00Z",
        "age_days": 34.1,
        "source": "first line of /var/log/auth.log.4.gz",
    }
    assert evidence["min_retention_days"] == 183
    assert evidence["forwarded_to"] == []
    json.dumps([r.to_dict() for r in results])  # the report can carry it
    json.dumps(jsonable(facts.logs))


def test_a_conditional_rule_is_not_counted() -> None:
    """The gatherer only lists rules that carry a stream; a filtered rule stays in
    `LogFacts.forwarding` for the evidence but cannot make a stream pass."""
    conditional = replace(UNDECLARED, selector=None, condition="if $programname == 'sudo' then")
    facts = HostFacts(
        logs=LogFacts(
            observed_at=OBSERVED_AT,
            streams=(AUTH_DEBIAN,),
            journald=JOURNALD,
            logrotate=(),
            auditd=None,
            forwarding=(conditional,),
        )
    )
    ((_, status, _),) = _retention(facts, central_log_servers=["198.18.4.50"])
    assert status is Status.FAIL


def test_size_bound_stream_with_no_record_fails() -> None:
    ((_, status, message),) = _retention(_single(replace(AUDIT_ROTATE, oldest=None)))
    assert status is Status.FAIL
    assert message.endswith("no record is kept yet")


def _single(stream: LogStream) -> HostFacts:
    return HostFacts(
        logs=LogFacts(
            observed_at=OBSERVED_AT,
            streams=(stream,),
            journald=JOURNALD,
            logrotate=(),
            auditd=None,
            forwarding=(),
        )
    )


def test_oldest_record_age_is_measured_from_observation_time() -> None:
    """Stored facts replay to the same result: the age comes from `observed_at`."""
    young = replace(
        AUDIT_ROTATE, oldest=OldestRecord("2026-06-01T00:00:00Z", "first line of audit.log.9")
    )
    early = HostFacts(logs=replace(_logs(_single(young)), observed_at="2026-06-02T00:00:00Z"))
    late = HostFacts(logs=replace(_logs(_single(young)), observed_at="2027-06-02T00:00:00Z"))
    assert _retention(early)[0][1] is Status.FAIL
    assert _retention(late)[0][1] is Status.PASS


def _logs(facts: HostFacts) -> LogFacts:
    assert isinstance(facts.logs, LogFacts)
    return facts.logs
