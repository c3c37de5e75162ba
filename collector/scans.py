"""Network scans started by operators through the API (`POST /api/v1/scans`) or fired by a
schedule (collector/periodic.py), and the storing of any scan's results as a report of the
collector's own scanner identity.

A scan runs as its own process (`python -m collector.scan.cli --format report`), in a process
group of its own, so the API never waits on nmap, a stuck scan is stopped with everything it
started, and a crash in a scan cannot take a worker down. Only a complete scan is stored: one
whose vantage failed (exit 4) is recorded as failed with the scanner's line naming the vantage
and why, and nothing of it is stored. Operators name a zones file the settings list
(`scans.zones`), never a path. The scans table keeps the state, so any collector process can
answer about any scan, and at most one scan per zones file runs at a time.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
import sys
from collections.abc import Awaitable, Callable
from datetime import datetime, timedelta

import msgspec

from checks.envelope import EnvelopeError, generate_private_key, parse_report, public_key_pem
from collector.models import Agent, IngestOutcome, ScanRun, ScanState
from collector.settings import ProbeSettings, ScanSettings
from collector.store import Store, StoreError

logger = logging.getLogger("medsec.collector.scans")

SCANNER_AGENT = "medsec-scanner"
"""The identity scan results are stored under: a scan has no agent, and the store records who
sent each report."""
_STDERR_KEPT = 4096
_KILL_GRACE_S = 15.0
# collector.scan.cli's exit codes (not imported: that module brings nmap and the checks along).
_EXIT_STORED = (0, 1)
"""0 nothing failed, 1 findings: the only scans whose results are stored."""
_EXIT_MESSAGES = {
    2: "the zones file or the scan's settings are not usable",
    4: "a vantage failed: the scan is incomplete",
    130: "cancelled",
}


class UnknownZones(LookupError):
    """The settings list no zones file by that name."""


def scanner_identity(store: Store, now: datetime) -> Agent:
    """The scanner's agent record, created on first use (its key is never used to sign: scan
    results are stored by the collector itself, not sent over the network)."""
    key = public_key_pem(generate_private_key("ed25519"), "ed25519")
    return store.service_agent(SCANNER_AGENT, key, now)


def store_scan_report(store: Store, body: bytes, now: datetime) -> IngestOutcome:
    """Validate a scan's `medsec.report/v1` document and store it (`EnvelopeError` if invalid)."""
    report = parse_report(body)
    return store.ingest(scanner_identity(store, now), report, body, now)


class ScanLauncher:
    """Starts scans in their own processes and records how each ended."""

    def __init__(
        self,
        settings: ScanSettings,
        store: Store,
        clock: Callable[[], datetime],
        *,
        database_url: str | None = None,
        probes: ProbeSettings | None = None,
        on_stored: Callable[[ScanRun, str], Awaitable[None]] | None = None,
    ) -> None:
        self.settings = settings
        self.store = store
        self.clock = clock
        self.database_url = database_url
        """Given to the scan process (env MEDSEC_JOBS_DATABASE) for its probe vantages' jobs."""
        self.probes = probes or ProbeSettings()
        self.on_stored = on_stored
        """Called once a scan's results are stored (alerts are raised and cleared from them)."""
        self._running: dict[str, asyncio.Task[None]] = {}
        self._storing: set[str] = set()
        """Scans whose results are being written: a shutdown waits for them, not cancels."""

    @property
    def timeout(self) -> timedelta:
        return timedelta(seconds=self.settings.timeout_seconds)

    @property
    def lifetime(self) -> timedelta:
        """How long a scan may be marked running: past that (the timeout, and time to stop it),
        it was lost with its collector."""
        return self.timeout + timedelta(seconds=_KILL_GRACE_S + 45)

    async def start(self, zones: str, requested_by: str) -> ScanRun:
        """Start a scan of the zones file named `zones`: `UnknownZones`, or the store's
        `ScanRunning` when one of those zones runs already."""
        if zones not in self.settings.zones:
            raise UnknownZones(zones)
        now = self.clock()
        run = await asyncio.to_thread(
            self.store.start_scan, zones, requested_by, now, now + self.lifetime
        )
        return await self.launch(run)

    async def launch(self, run: ScanRun) -> ScanRun:
        """Start the process of a scan recorded as running already (by `start`, or by a schedule
        firing), and watch it to its end. A zones name the settings no longer list (a schedule
        outlived it) fails the scan at once."""
        path = self.settings.zones.get(run.zones)
        if path is None:
            return await self._finish(
                run,
                ScanState.FAILED,
                message=f"the settings no longer name a zones file {run.zones!r} (scans.zones)",
            )
        try:
            process = await asyncio.create_subprocess_exec(
                sys.executable,
                "-I",  # isolated: neither the working folder nor PYTHON* variables reach it
                "-m",
                "collector.scan.cli",
                "--zones",
                path,
                "--format",
                "report",
                "--no-progress",
                stdin=asyncio.subprocess.DEVNULL,
                stdout=asyncio.subprocess.PIPE,
                stderr=asyncio.subprocess.PIPE,
                env=self._environment(run),
                start_new_session=True,  # its own process group, stopped as one
            )
        except OSError as exc:
            return await self._finish(run, ScanState.FAILED, message=f"could not start: {exc}")
        self._running[run.id] = asyncio.create_task(self._watch(run, process))
        return run

    def _environment(self, run: ScanRun) -> dict[str, str]:
        """The scan process's environment: this one's, and what its probe vantages need to queue
        jobs for the scan (the scan's id, the database, the probes' lease and timeout)."""
        env = dict(os.environ)
        env["MEDSEC_SCAN_ID"] = run.id
        env.pop("MEDSEC_JOBS_DATABASE", None)
        if self.database_url:
            env["MEDSEC_JOBS_DATABASE"] = self.database_url
        env["MEDSEC_PROBE_SETTINGS"] = msgspec.json.encode(self.probes).decode("utf-8")
        return env

    async def _watch(self, run: ScanRun, process: asyncio.subprocess.Process) -> None:
        """Wait for the scan, store its results and record how it ended, whatever happens:
        the row never stays "running" while this collector lives. Its probe jobs still
        unfinished are failed (no result for them matters any more); once its results are
        stored, `on_stored` hears of them."""
        try:
            try:
                state, report_id, message = await self._outcome(run, process)
            except asyncio.CancelledError:  # the collector is stopping
                await _stop(process)
                await self._end_jobs(run, "the collector stopped")
                await self._finish(run, ScanState.FAILED, message="the collector stopped")
                raise
            except Exception as exc:  # a boundary: whatever broke, the scan is recorded failed
                logger.exception("scan %s of %s", run.id, run.zones)
                state, report_id = ScanState.FAILED, None
                message = f"{type(exc).__name__}: {exc}"
            await self._end_jobs(run, message or "the scan ended")
            finished = await self._finish(run, state, report_id=report_id, message=message)
            if report_id is not None:
                await self._stored(finished, report_id)
        finally:
            self._running.pop(run.id, None)
            self._storing.discard(run.id)

    async def _end_jobs(self, run: ScanRun, reason: str) -> None:
        try:
            failed = await asyncio.to_thread(
                self.store.fail_jobs_of_scan, run.id, self.clock(), reason
            )
        except StoreError as exc:  # the jobs fail by their deadline instead
            logger.warning("scan %s: its unfinished jobs were not failed: %s", run.id, exc)
            return
        if failed:
            logger.warning("scan %s: %d unfinished probe jobs failed (%s)", run.id, failed, reason)

    async def _stored(self, run: ScanRun, report_id: str) -> None:
        if self.on_stored is None:
            return
        try:
            await self.on_stored(run, report_id)
        except Exception:  # a boundary: the scan is stored and recorded whatever its hook does
            logger.exception("scan %s: after storing report %s", run.id, report_id)

    async def _outcome(
        self, run: ScanRun, process: asyncio.subprocess.Process
    ) -> tuple[ScanState, str | None, str | None]:
        try:
            async with asyncio.timeout(self.settings.timeout_seconds):
                out, err = await process.communicate()
        except TimeoutError:
            await _stop(process)
            return (
                ScanState.FAILED,
                None,
                f"stopped after {self.settings.timeout_seconds} s (scans.timeout_seconds)",
            )
        code = process.returncode
        if code not in _EXIT_STORED:
            # 4 among them: a vantage died, was unreachable or ran out of time. Stored, the
            # scan would stand as the network's state with what that vantage could not see
            # as `error`; its last line on stderr names the vantage and why.
            said = _last_line(err) or _EXIT_MESSAGES.get(code or 0, f"exited with code {code}")
            return ScanState.FAILED, None, said
        self._storing.add(run.id)
        try:
            outcome = await asyncio.to_thread(store_scan_report, self.store, out, self.clock())
        except EnvelopeError as exc:  # 1 is also Python's exit code for an uncaught exception
            return ScanState.FAILED, None, _last_line(err) or f"the scan's output: {exc}"
        except StoreError as exc:
            return ScanState.FAILED, None, f"its results could not be stored: {exc}"
        return (ScanState.PASSED if code == 0 else ScanState.FINDINGS), outcome.report_id, None

    async def _finish(
        self,
        run: ScanRun,
        state: ScanState,
        *,
        report_id: str | None = None,
        message: str | None = None,
    ) -> ScanRun:
        if message is not None:
            logger.warning("scan %s of %s: %s", run.id, run.zones, message)
        return await asyncio.to_thread(
            self.store.finish_scan,
            run.id,
            state,
            self.clock(),
            report_id=report_id,
            message=message,
        )

    async def close(self) -> None:
        """Stop the scans this process started; they are recorded as failed."""
        tasks = list(self._running.items())
        for scan_id, task in tasks:
            if scan_id not in self._storing:  # a scan still running; stored results finish
                task.cancel()
        for _, task in tasks:
            with contextlib.suppress(asyncio.CancelledError, StoreError):
                await task


async def _stop(process: asyncio.subprocess.Process) -> None:
    """SIGTERM cancels the scan, which stops its nmaps (each started with setsid) and
    exits; if it has not exited after a grace period, its process group is killed."""
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(process.pid, signal.SIGTERM)
    try:
        await asyncio.wait_for(asyncio.shield(process.wait()), _KILL_GRACE_S)
    except TimeoutError:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(process.pid, signal.SIGKILL)
        await process.wait()


def _last_line(err: bytes) -> str:
    lines = err[-_STDERR_KEPT:].decode("utf-8", "replace").strip().splitlines()
    return lines[-1].strip()[:500] if lines else ""
