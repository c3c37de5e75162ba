"""`medsec-agent probe`: a probe inside a zone that dials out to the collector for its work.

A zone whose firewall lets nothing in can still be scanned from inside: the probe connects out
over HTTPS with its enrolled credential (enrolled with `medsec agents enroll NAME --probe-zone
ZONE`), claims the scan jobs of its zone (a long poll), checks each one itself against its own
`probe.targets` (collector/scan/probe_guard.py: a refused job fails with the reason and nothing
runs), runs it (agent/probe_exec.py, the scanner's local vantage), and posts the result as a
signed envelope, as a report is. While jobs run their leases are renewed every third of the
lease; a lease the collector says is lost stops the job at once (another probe has it now).

The loop: claim as many jobs as there are free slots (`probe.concurrency`) → run them → renew →
post each result (network errors retried with backoff while the lease lasts; a 409 means another
probe owns the job now: dropped) → claim again. An unreachable collector is waited for (one line
when it goes, one when it is back). SIGTERM (systemd stopping the service) and SIGINT stop the
loop: running jobs are cancelled, their nmap stopped, and their leases left to run out, so
another probe of the zone takes them over.

Exit codes: 0 stopped or (`--once`) the round is done; 1 a person must act (not enrolled, not
enrolled as a probe, enrolled for another zone, the token refused); 2 config error.
"""

from __future__ import annotations

import asyncio
import contextlib
import secrets
import signal
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TextIO

from agent.config import AgentConfig, CollectorConfig, ProbeConfig
from agent.credential import Credential, CredentialError, CredentialMissing, load_credential
from agent.probe_client import (
    Claim,
    ClaimedJob,
    CollectorDown,
    LeaseLost,
    ProbeClient,
    ProbeRefused,
    result_payload,
)
from agent.probe_exec import JobFailed, JobRunner
from checks.envelope import seal
from collector.scan.probe_guard import Refused, Targets, check_job

PROG = "medsec-agent"
EXIT_OK, EXIT_ATTENTION, EXIT_USAGE = 0, 1, 2
BACKOFF_SECONDS = 0.5
BACKOFF_CAP_SECONDS = 30.0


class ProbeStop(Exception):
    """The probe cannot go on without a person; the message is its one line."""


def probe_credential(collector: CollectorConfig) -> Credential:
    """The enrolled credential, checked against the config; `ProbeStop` naming what to do."""
    path = Path(collector.credential_file)
    try:
        cred = load_credential(path)
    except CredentialMissing:
        raise ProbeStop(f"not enrolled: run {PROG} enroll (no credential at {path})") from None
    except CredentialError as exc:
        raise ProbeStop(f"{exc}; run {PROG} enroll --force") from None
    if cred.collector.rstrip("/") != collector.url.rstrip("/"):
        # The token must never be shown to another server than the one that issued it.
        raise ProbeStop(
            f"credential {path} is for {cred.collector}, not collector.url {collector.url}: "
            f"run {PROG} enroll --force"
        )
    return cred


@dataclass
class _Held:
    """A job this probe holds: its claim, its task, when its lease ends by this host's clock."""

    job: ClaimedJob
    task: asyncio.Task[None] | None = None
    lease_end: float = 0.0


@dataclass
class Probe:
    """One probe's loop over one client (see the module doc)."""

    settings: ProbeConfig
    client: ProbeClient
    credential: Credential
    runner: JobRunner
    err: TextIO = field(default_factory=lambda: sys.stderr)
    clock: Callable[[], float] = time.monotonic
    held: dict[str, _Held] = field(default_factory=dict)
    lease_seconds: float = 60.0
    refused: ProbeStop | None = None
    down: str | None = None
    """Why the collector is unreachable, while it is (said once, and once when it is back)."""
    done: int = 0

    def __post_init__(self) -> None:
        self.targets = Targets.parse(self.settings.targets)

    def say(self, line: str) -> None:
        print(f"{PROG} probe: {line}", file=self.err, flush=True)

    # --- the loop -------------------------------------------------------------------------

    async def serve(
        self, stop: asyncio.Event, *, once: bool = False, wait: float | None = None
    ) -> int:
        """Claim and run until `stop` is set (or, `once`, one claim's jobs are done)."""
        wait = self.settings.wait_seconds if wait is None else wait
        renewer = asyncio.create_task(self._renew_loop())
        failures = 0
        try:
            while not stop.is_set() and self.refused is None:
                free = self.settings.concurrency - len(self.held)
                if free <= 0:
                    await self._until_one_ends(stop)
                    continue
                try:
                    claim = await _unless(stop, self.client.claim(free, wait))
                except CollectorDown as exc:
                    failures += 1
                    self._unreachable(str(exc))
                    if once:
                        break
                    await _sleep_unless(stop, _backoff(failures))
                    continue
                except ProbeRefused as exc:
                    self.refused = ProbeStop(f"the collector refused this probe: {exc}")
                    break
                if claim is None:  # stopped while waiting
                    break
                failures = 0
                self._reachable()
                if claim.zone != self.settings.zone:
                    self.refused = ProbeStop(
                        f"enrolled as a probe of zone {claim.zone}, but probe.zone is "
                        f"{self.settings.zone}: fix the config or enrol again"
                    )
                    # Jobs of another zone are not run: their leases run out for the right probe.
                    break
                self.lease_seconds = max(1.0, float(claim.lease_seconds))
                self._start(claim)
                if once:
                    break
            if stop.is_set():
                await self._cancel_all()
            else:
                await self._finish_all(stop)
        finally:
            renewer.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await renewer
        if self.refused is not None:
            self.say(str(self.refused))
            return EXIT_ATTENTION
        return EXIT_OK

    def _start(self, claim: Claim) -> None:
        now = self.clock()
        for job in claim.jobs:
            held = _Held(job, lease_end=now + self.lease_seconds)
            self.held[job.id] = held
            held.task = asyncio.create_task(self._work(held), name=f"job-{job.id}")

    async def _until_one_ends(self, stop: asyncio.Event) -> None:
        tasks = {h.task for h in self.held.values() if h.task is not None}
        stopping = asyncio.create_task(stop.wait())
        try:
            await asyncio.wait({*tasks, stopping}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            stopping.cancel()

    async def _finish_all(self, stop: asyncio.Event) -> None:
        while self.held and not stop.is_set():
            await self._until_one_ends(stop)
        if stop.is_set():
            await self._cancel_all()

    async def _cancel_all(self) -> None:
        tasks = [h.task for h in self.held.values() if h.task is not None]
        for task in tasks:
            task.cancel()
        # Each job's cancellation stops its nmap or helper before the task ends.
        await asyncio.gather(*tasks, return_exceptions=True)
        if tasks:
            self.say(f"stopped: {len(tasks)} running job(s) left to their leases")
        self.held.clear()

    def _unreachable(self, reason: str) -> None:
        if self.down is None:
            self.say(f"collector unreachable ({reason}): trying again")
        self.down = reason

    def _reachable(self) -> None:
        if self.down is not None:
            self.say("collector reachable again")
        self.down = None

    # --- one job --------------------------------------------------------------------------

    async def _work(self, held: _Held) -> None:
        job = held.job
        result: dict[str, Any] | None = None
        error: str | None = None
        try:
            checked = check_job(job.kind, job.request, self.targets)
        except Refused as exc:
            error = str(exc)
            self.say(f"job {job.id} ({job.kind}) refused: {error}")
        else:
            try:
                result = await self.runner.run(checked)
            except JobFailed as exc:
                error = str(exc)
        try:
            await self._post(held, result=result, error=error)
        finally:
            self.held.pop(job.id, None)
            self.done += 1

    async def _post(self, held: _Held, *, result: dict[str, Any] | None, error: str | None) -> None:
        job = held.job
        payload = result_payload(job, result=result, error=error)
        cred = self.credential
        envelope = seal(payload, cred.agent, cred.private_key_pem, cred.alg)
        attempt = 0
        while True:
            attempt += 1
            try:
                await self.client.post_result(job.id, envelope)
            except LeaseLost:
                self.say(f"job {job.id}: another probe holds it now (lease lost): result dropped")
                return
            except ProbeRefused as exc:
                self.say(f"job {job.id}: the collector refused its result: {exc}")
                return
            except CollectorDown as exc:
                self._unreachable(str(exc))
                pause = _backoff(attempt)
                if self.clock() + pause >= held.lease_end:
                    self.say(f"job {job.id}: result not delivered before its lease ended: dropped")
                    return
                await asyncio.sleep(pause)
                continue
            self._reachable()
            return

    # --- leases ---------------------------------------------------------------------------

    async def _renew_loop(self) -> None:
        """Every third of the lease while jobs are held (the lease is known from the first
        claim's answer, so the loop looks often and renews when a third has passed)."""
        last = self.clock()
        while True:
            await asyncio.sleep(min(0.5, self.lease_seconds / 6))
            if not self.held:
                last = self.clock()
            elif self.clock() - last >= self.lease_seconds / 3:
                last = self.clock()
                await self._renew()

    async def _renew(self) -> None:
        claims = {job_id: h.job.claim_id for job_id, h in self.held.items()}
        asked = self.clock()
        try:
            renewed = await self.client.renew(list(claims.items()))
        except CollectorDown as exc:
            self._unreachable(str(exc))
            return
        except (ProbeRefused, LeaseLost) as exc:
            self.say(f"lease renewal refused: {exc}")
            return
        self._reachable()
        for job_id, kept in renewed.items():
            held = self.held.get(job_id)
            if held is None or held.job.claim_id != claims[job_id]:
                continue
            if kept:
                held.lease_end = asked + self.lease_seconds
                continue
            self.say(f"job {job_id}: lease lost (another probe may take it): stopped")
            self.held.pop(job_id, None)
            if held.task is not None:
                held.task.cancel()


def _backoff(attempt: int) -> float:
    """0.5 s, 1 s, 2 s, ... up to 30 s, with jitter so probes coming back do not knock in step."""
    jitter = BACKOFF_SECONDS * secrets.randbelow(1000) / 1000
    return min(BACKOFF_CAP_SECONDS, BACKOFF_SECONDS * 2.0 ** max(0, attempt - 1)) + jitter


async def _unless(stop: asyncio.Event, work: Any) -> Any:
    """`work`'s result, or None when `stop` is set first (then `work` is cancelled)."""
    task = asyncio.ensure_future(work)
    stopping = asyncio.create_task(stop.wait())
    try:
        await asyncio.wait({task, stopping}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        stopping.cancel()
    if task.done():
        return task.result()
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError, CollectorDown, ProbeRefused, LeaseLost):
        await task
    return None


async def _sleep_unless(stop: asyncio.Event, seconds: float) -> None:
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(stop.wait(), seconds)


# --- entry points -----------------------------------------------------------------------------


async def run_probe_async(
    probe: ProbeConfig,
    collector: CollectorConfig,
    *,
    once: bool,
    wait: float | None = None,
    err: TextIO | None = None,
    stop: asyncio.Event | None = None,
) -> int:
    """The probe on this event loop; SIGTERM and SIGINT set `stop` when on the main thread."""
    err = err or sys.stderr
    try:
        cred = probe_credential(collector)
    except ProbeStop as exc:
        print(f"{PROG} probe: {exc}", file=err, flush=True)
        return EXIT_ATTENTION
    stop = stop or asyncio.Event()
    loop = asyncio.get_running_loop()
    handled = threading.current_thread() is threading.main_thread()
    if handled:
        for signum in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(signum, stop.set)
    try:
        async with ProbeClient(
            collector.url, collector.ca_file, cred.api_token, timeout=collector.timeout_seconds
        ) as client:
            runner = Probe(probe, client, cred, JobRunner(probe.zone, probe.nmap), err=err)
            if not once:
                runner.say(
                    f"zone {probe.zone}, {collector.url}, up to {probe.concurrency} jobs at once"
                )
            return await runner.serve(stop, once=once, wait=wait)
    finally:
        if handled:
            for signum in (signal.SIGTERM, signal.SIGINT):
                loop.remove_signal_handler(signum)


def run_probe(config: AgentConfig, *, once: bool, wait: float | None = None) -> int:
    """`medsec-agent probe`: serve until stopped, or (`once`) one claim's jobs."""
    if config.probe is None or config.collector is None:
        print(f"{PROG}: probe: the config has no probe section", file=sys.stderr)
        return EXIT_USAGE
    return asyncio.run(run_probe_async(config.probe, config.collector, once=once, wait=wait))
