"""Agentless collection: the agent's gatherers and checks run against a server over SSH
(`inventory.network.ssh.SshRunner`), giving the same `medsec.report/v1` the agent would, with the
same host id, plus a `collection` entry in its inventory naming the transport and every command
run.

Many hosts run at once in threads (paramiko blocks), each bounded by its own time limit; a host
that cannot be reached, refuses the login or whose key is refused is an error line for that host
and the others go on. Reports are stored under the collector's own agent `medsec-agentless`,
which never outranks an agent on the host itself (`collector.store.anchors`): where an enrolled
agent holds the host id, the agentless report is refused (`HeldByAgent`, naming it); where
agentless collection came first, the host's first real agent report takes the host over.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Any

from agent import __version__
from agent.config import AgentConfig
from agent.gather import gather
from agent.report import build_report
from checks import report as contract
from checks.catalog import Catalogs
from checks.facts import HardwareFacts
from checks.registry import Registry
from checks.runner import evaluate
from inventory.network.ssh import SshConnectError, SshRunner, SshTarget

if TYPE_CHECKING:
    import paramiko

    from collector.models import Agent, IngestOutcome
    from collector.store import Store

AGENTLESS_AGENT = "medsec-agentless"
"""The identity agentless reports are stored under (one of `anchors.YIELDING_AGENTS`)."""
PRODUCER = f"medsec-agentless {__version__}"
"""The report's `agent.version`: who produced it, distinct from any agent's."""


@dataclass(frozen=True)
class HostSpec:
    """One host to collect: where to log in, and the agent config its gatherers and checks use
    (backup sources, log files, check selection and parameters)."""

    target: SshTarget
    config: AgentConfig
    pkey: paramiko.PKey | None = field(default=None, repr=False, compare=False)
    """The key, loaded once by the caller (None: the target's key file, or the ssh-agent)."""

    @property
    def label(self) -> str:
        return self.target.where


@dataclass
class HostOutcome:
    """What collecting one host gave: its report document, or the one line why not."""

    spec: HostSpec
    document: dict[str, Any] | None
    error: str | None
    seconds: float

    @property
    def exit_code(self) -> int:
        """0: the report has no `fail` or `error`; 1: it has, or the host could not be collected."""
        if self.document is None:
            return 1
        return contract.exit_code(item["status"] for item in self.document["results"])


def collection_entry(runner: SshRunner, seconds: float) -> dict[str, Any]:
    """The report's `inventory.collection`: how the evidence was gathered, every command run
    (argv, exit status, seconds) and how many file requests of each kind were made."""
    target = runner.target
    return {
        "transport": "ssh",
        "host": target.host,
        "port": target.port,
        "user": target.user,
        "sudo": target.sudo,
        "host_key": runner.host_key,
        "host_key_recorded": runner.host_key_recorded,
        "files": runner.file_access,
        "file_requests": dict(sorted(runner.file_ops.items())),
        "commands": [
            {"argv": c.argv, "exit": c.exit, "seconds": c.seconds} for c in runner.commands
        ],
        "seconds": round(seconds, 3),
    }


def host_report(
    runner: SshRunner,
    config: AgentConfig,
    registry: Registry,
    catalogs: Catalogs,
    *,
    started: float | None = None,
) -> dict[str, Any]:
    """Gather, evaluate and build the report exactly as `medsec-agent run` does, with the
    `collection` entry added. `ValueError` when the host gave no hardware inventory (no id)."""
    started = time.monotonic() if started is None else started
    chosen = [registry.get(c) for c in config.checks.selected(registry.ids())]
    facts = gather(runner, config, registry.needs(c.id for c in chosen))
    if not isinstance(facts.hardware, HardwareFacts):
        reason = getattr(facts.hardware, "reason", "not gathered")
        raise ValueError(f"no hardware inventory, so no host id: {reason}")
    overrides = {k: v for k, v in config.check_overrides().items() if k in registry}
    results = evaluate(chosen, facts, overrides)
    report = build_report(facts, results, PRODUCER, site=config.site)
    inventory = report.inventory()
    inventory["collection"] = collection_entry(runner, time.monotonic() - started)
    return contract.build_report(
        host_id=report.host_id,
        hostname=report.hostname,
        producer=PRODUCER,
        inventory=inventory,
        results=report.results,
        catalogs=catalogs,
        generated_at=report.generated_at,
        report_id=report.report_id,
    )


def collect_host(
    spec: HostSpec, registry: Registry, catalogs: Catalogs, *, host_timeout: float
) -> HostOutcome:
    """Collect one host within `host_timeout` seconds; never raises (a host's failure, whatever
    it is, is its error line)."""
    started = time.monotonic()
    deadline = started + host_timeout

    def failed(message: str) -> HostOutcome:
        return HostOutcome(spec, None, message, round(time.monotonic() - started, 3))

    try:
        runner = SshRunner.connect(spec.target, deadline=deadline, pkey=spec.pkey)
    except SshConnectError as exc:
        return failed(str(exc))
    except Exception as exc:  # a host's boundary: the other hosts go on
        return failed(f"{spec.label}: {type(exc).__name__}: {exc}")
    late = f"{spec.label}: did not finish within {host_timeout:g} s"
    try:
        with runner:
            document = host_report(runner, spec.config, registry, catalogs, started=started)
    except Exception as exc:  # a host's boundary: the other hosts go on
        said = str(exc) if isinstance(exc, ValueError) else f"{type(exc).__name__}: {exc}"
        return failed(late if runner.expired else f"{spec.label}: {said}")
    if runner.expired:
        # What ran after the limit is `error` in the report: a partial report would stand
        # as the host's state, so none is given.
        return failed(late)
    return HostOutcome(spec, document, None, round(time.monotonic() - started, 3))


def collect_hosts(
    specs: Sequence[HostSpec],
    registry: Registry,
    catalogs: Catalogs,
    *,
    host_timeout: float,
    concurrency: int,
    on_done: Callable[[HostOutcome], None] | None = None,
) -> list[HostOutcome]:
    """Collect every host, at most `concurrency` at once; outcomes in the order of `specs`."""

    def one(spec: HostSpec) -> HostOutcome:
        outcome = collect_host(spec, registry, catalogs, host_timeout=host_timeout)
        if on_done is not None:
            on_done(outcome)
        return outcome

    workers = max(1, min(concurrency, len(specs)))
    with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="medsec-ssh") as pool:
        return list(pool.map(one, specs))


def agentless_identity(store: Store, now: datetime) -> Agent:
    """The agentless collector's agent record, created on first use (its key never signs:
    the collector stores these reports itself, they travel in no envelope)."""
    from checks.envelope import generate_private_key, public_key_pem

    key = public_key_pem(generate_private_key("ed25519"), "ed25519")
    return store.service_agent(AGENTLESS_AGENT, key, now)


def store_document(store: Store, document: dict[str, Any], now: datetime) -> IngestOutcome:
    """Validate and store one agentless report. `HeldByAgent` (a `HostClaimed`) when an
    enrolled agent reports the host itself; `EnvelopeError` when the document is invalid."""
    from checks.envelope import parse_report

    body = json.dumps(document, ensure_ascii=False).encode("utf-8")
    report = parse_report(body)
    return store.ingest(agentless_identity(store, now), report, body, now)
