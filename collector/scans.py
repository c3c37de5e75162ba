"""Network scans started by operators through the API (`POST /api/v1/scans`), and the storing of
any scan's results as a report of the collector's own scanner identity.

A scan runs as its own process (`python -m collector.scan.cli --format report`), in its own
session, so the API never waits on nmap, a stuck scan is stopped with everything it started,
and a crash in a scan cannot take a worker down. Operators name a zones file the settings list
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
from collections.abc import Callable
from datetime import datetime, timedelta

from checks.envelope import EnvelopeError, generate_private_key, parse_report, public_key_pem
from collector.models import Agent, IngestOutcome, ScanRun, ScanState
from collector.settings import ScanSettings
from collector.store import AgentExists, Store, StoreError

logger = logging.getLogger("medsec.collector.scans")

SCANNER_AGENT = "medsec-scanner"
"""The identity scan results are stored under: a scan has no agent, and the store records who
sent each report."""
_STDERR_KEPT = 4096
_KILL_GRACE_S = 15.0
_EXIT_MESSAGES = {2: "the zones file or the scan's settings are not usable", 130: "cancelled"}


class UnknownZones(LookupError):
    """The settings list no zones file by that name."""


def scanner_identity(store: Store, now: datetime) -> Agent:
    """The scanner's agent record, created on first use (its key is never used to sign: scan
    results are stored by the collector itself, not sent over the network)."""
    for _ in range(2):  # two processes creating it at once: one wins, the other reads it
        found = next((a for a in store.list_agents() if a.name == SCANNER_AGENT and a.active), None)
        if found is not None:
            return found
        try:
            token = store.create_enrollment(SCANNER_AGENT, timedelta(minutes=1), now)
        except AgentExists:
            continue
        key = generate_private_key("ed25519")
        scanner, _ = store.redeem_enrollment(
            token, SCANNER_AGENT, "ed25519", public_key_pem(key, "ed25519"), now
        )
        return scanner
    raise StoreError(f"the {SCANNER_AGENT} identity could not be created")


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
    ) -> None:
        self.settings = settings
        self.store = store
        self.clock = clock
        self._running: dict[str, asyncio.Task[None]] = {}

    @property
    def timeout(self) -> timedelta:
        return timedelta(seconds=self.settings.timeout_seconds)

    async def start(self, zones: str, requested_by: str) -> ScanRun:
        """Start a scan of the zones file named `zones`: `UnknownZones`, or the store's
        `ScanRunning` when one of those zones runs already."""
        path = self.settings.zones.get(zones)
        if path is None:
            raise UnknownZones(zones)
        # A scan of a collector that died is "lost" after the timeout and a margin to stop it.
        lost_after = self.timeout + timedelta(minutes=1)
        run = await asyncio.to_thread(
            self.store.start_scan, zones, requested_by, self.clock(), lost_after
        )
        try:
            process = await asyncio.create_subprocess_exec(
                sys.executable,
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
                start_new_session=True,  # its own process group: stopped with all it started
            )
        except OSError as exc:
            return await self._finish(run, ScanState.FAILED, message=f"could not start: {exc}")
        self._running[run.id] = asyncio.create_task(self._watch(run, process))
        return run

    async def _watch(self, run: ScanRun, process: asyncio.subprocess.Process) -> None:
        try:
            async with asyncio.timeout(self.settings.timeout_seconds):
                out, err = await process.communicate()
        except TimeoutError:
            _stop(process)
            await process.wait()
            await self._finish(
                run,
                ScanState.FAILED,
                message=f"stopped after {self.settings.timeout_seconds} s (scans.timeout_seconds)",
            )
            return
        except asyncio.CancelledError:  # the collector is stopping
            _stop(process)
            await process.wait()
            await self._finish(run, ScanState.FAILED, message="the collector stopped")
            raise
        finally:
            self._running.pop(run.id, None)
        await self._settle(run, process.returncode, out, err)

    async def _settle(self, run: ScanRun, code: int | None, out: bytes, err: bytes) -> None:
        if code not in (0, 1):
            said = _last_line(err) or _EXIT_MESSAGES.get(code or 0, f"exited with code {code}")
            await self._finish(run, ScanState.FAILED, message=said)
            return
        try:
            outcome = await asyncio.to_thread(store_scan_report, self.store, out, self.clock())
        except EnvelopeError as exc:
            await self._finish(run, ScanState.FAILED, message=f"the scan's output: {exc}")
            return
        state = ScanState.PASSED if code == 0 else ScanState.FINDINGS
        await self._finish(run, state, report_id=outcome.report_id)

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
        tasks = list(self._running.values())
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError, StoreError):
                await task


def _stop(process: asyncio.subprocess.Process) -> None:
    """SIGTERM cancels the scan, which stops its nmaps (each runs in a session of its own) and
    exits; whatever is left of the scan's own group after a grace period is killed."""
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(process.pid, signal.SIGTERM)
    loop = asyncio.get_running_loop()
    loop.call_later(_KILL_GRACE_S, _kill_group, process.pid)


def _kill_group(pid: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pid, signal.SIGKILL)


def _last_line(err: bytes) -> str:
    lines = err[-_STDERR_KEPT:].decode("utf-8", "replace").strip().splitlines()
    return lines[-1].strip()[:500] if lines else ""
