"""A vantage whose work is done by a probe inside the zone that dials out to the collector.

`ProbeVantage` implements the scanner's `Vantage` protocol (collector/scan/vantage.py) over the
collector's job queue: each operation — whether raw sockets are possible, one nmap run, one probe
helper request — becomes ONE job of the zone (`Store.enqueue_jobs`), and the vantage polls the
job (`Store.get_jobs`) until a probe of the zone has claimed it, run it and posted its result, or
it failed, or its deadline passed. nmap's XML comes back whole and is parsed here with the
scanner's own parser, so the runner sees the same `NmapResult` as from any other vantage.

No probe taking a job within `claim_timeout_seconds` fails the operation with a line naming the
zone. A request naming a file (SNMP secrets, the site's client certificate) is refused before it
is queued: those files stay on the collector and a probe reads no file the collector names.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable, Mapping, Sequence
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any, Literal, Protocol

import msgspec

from collector.scan.nmap import NmapResult, ProgressCallback, parse_nmap_xml
from collector.scan.probe_guard import FILE_REFUSED, NMAP_NAME, named_files
from collector.scan.vantage import VantageError
from collector.scan.zones import ProbeVantageConfig, Zones

if TYPE_CHECKING:
    # The store (SQLAlchemy) is loaded only by a scan that has probe vantages.
    from collector.store.jobs import Job, JobKind, JobSpec

POLL_SECONDS = 0.2
_GRACE_SECONDS = 30.0
"""Beyond the operation's own timeout: a probe's claim, its posting and the poll."""


class JobQueue(Protocol):
    """What a probe vantage needs of the store (collector.store.Store has it)."""

    def enqueue_jobs(self, specs: Sequence[JobSpec], now: datetime) -> list[str]: ...

    def get_jobs(self, ids: Sequence[str]) -> list[Job]: ...


class _NmapAnswer(msgspec.Struct, frozen=True):
    """A probe's answer to an nmap job (agent/probe_exec.py)."""

    xml: str
    status: Literal["ok", "timeout", "error", "cancelled"]
    message: str
    seconds: float
    stderr: str = ""
    returncode: int | None = None
    command: str = ""


def _now() -> datetime:
    return datetime.now(UTC)


class ProbeVantage:
    """The zone's probes, reached through the job queue."""

    def __init__(
        self,
        zone: str,
        queue: JobQueue,
        *,
        scan_id: str | None,
        claim_timeout: float,
        job_timeout: float,
        poll: float = POLL_SECONDS,
        clock: Callable[[], datetime] = _now,
    ) -> None:
        self.zone = zone
        self.queue = queue
        self.scan_id = scan_id
        self.claim_timeout = claim_timeout
        self.job_timeout = job_timeout
        self.poll = poll
        self.clock = clock
        self._privileged: bool | None = None

    @property
    def description(self) -> str:
        return f"probe:{self.zone}"

    @property
    def nmap(self) -> str:
        # The probe runs its own nmap; the argv it is sent names nmap and no path.
        return NMAP_NAME

    async def _job(
        self,
        kind: JobKind,
        request: dict[str, Any],
        timeout: float,
        on_progress: ProgressCallback | None = None,
    ) -> tuple[dict[str, Any], str]:
        """Queue one job and wait for it: (its result, the probe that ran it)."""
        from collector.store.errors import StoreError
        from collector.store.jobs import JobSpec

        now = self.clock()
        allowed = min(self.job_timeout, self.claim_timeout + timeout + _GRACE_SECONDS)
        spec = JobSpec(self.zone, kind, request, now + timedelta(seconds=allowed), self.scan_id)
        try:
            (job_id,) = await asyncio.to_thread(self.queue.enqueue_jobs, [spec], now)
        except (StoreError, ValueError) as exc:
            raise VantageError(f"{self.description}: the job could not be queued: {exc}") from None
        started = time.monotonic()
        said = ""
        while True:
            await asyncio.sleep(self.poll)
            try:
                found = await asyncio.to_thread(self.queue.get_jobs, [job_id])
            except StoreError as exc:
                raise VantageError(f"{self.description}: the job queue: {exc}") from None
            if not found:
                raise VantageError(f"{self.description}: job {job_id} is gone from the queue")
            job = found[0]
            waited = time.monotonic() - started
            if job.state == "done":
                return dict(job.result or {}), job.finished_by or "?"
            if job.state == "failed":
                who = f" ({job.finished_by})" if job.finished_by else ""
                raise VantageError(f"{self.description}{who}: {kind} job failed: {job.error}")
            if job.state == "queued" and job.attempts == 0 and waited > self.claim_timeout:
                raise VantageError(
                    f"no probe of zone {self.zone} took the job within {self.claim_timeout:g} s"
                )
            if waited > allowed:
                raise VantageError(f"{self.description}: {kind} job not done within {allowed:g} s")
            if on_progress is not None:
                note = (
                    f"waiting for a probe of zone {self.zone}"
                    if job.state == "queued"
                    else f"running on {job.claimed_by} (attempt {job.attempts})"
                )
                if note != said:
                    said = note
                    on_progress(0.0, note)

    def _bounded(self, timeout: float) -> float:
        """The probe's own time for an operation: within the job's life (`job_timeout`, which
        also covers waiting for a claim), so a late answer does not arrive for a failed job."""
        room = self.job_timeout - self.claim_timeout - _GRACE_SECONDS
        return max(1.0, min(timeout, room))

    async def privileged(self) -> bool:
        if self._privileged is None:
            result, _ = await self._job("privileged", {}, 30.0)
            value = result.get("privileged")
            if not isinstance(value, bool):
                raise VantageError(f"{self.description}: the probe did not say if it is root")
            self._privileged = value
        return self._privileged

    async def run_nmap(
        self,
        argv: Sequence[str],
        *,
        timeout: float,
        total_hosts: int,
        on_progress: ProgressCallback | None = None,
    ) -> NmapResult:
        timeout = self._bounded(timeout)
        request = {"argv": list(argv), "timeout": timeout, "total_hosts": total_hosts}
        result, agent = await self._job("nmap", request, timeout, on_progress)
        try:
            answer = msgspec.convert(result, _NmapAnswer)
        except msgspec.ValidationError as exc:
            raise VantageError(f"{self.description}: the probe's nmap answer: {exc}") from None
        run = parse_nmap_xml(answer.xml.encode("utf-8"))
        if on_progress is not None:
            on_progress(1.0, f"{len(run.hosts)} hosts, run by {agent}")
        return NmapResult(
            argv=tuple(argv),
            run=run,
            status=answer.status,
            message=answer.message,
            seconds=answer.seconds,
            stderr=answer.stderr,
            returncode=answer.returncode,
            command=f"probe {agent}: {answer.command}",
        )

    async def probe(self, request: dict[str, Any], *, timeout: float) -> dict[str, Any]:
        files = named_files(request)
        if files:
            raise VantageError(f"{self.description}: the request names a file ({files[0]}): "
                               f"{FILE_REFUSED}")  # fmt: skip
        timeout = self._bounded(timeout)
        result, _ = await self._job("probe", {"request": request, "timeout": timeout}, timeout)
        return result

    async def close(self) -> None:
        return None


# --- the scan's job queue ---------------------------------------------------------------------

JOBS_DATABASE_ENV = "MEDSEC_JOBS_DATABASE"
SCAN_ID_ENV = "MEDSEC_SCAN_ID"
PROBE_SETTINGS_ENV = "MEDSEC_PROBE_SETTINGS"
SCAN_ENDED = "the scan ended before a probe finished the job"


class QueueUnavailable(Exception):
    """The scan has probe vantages but no job queue to reach them by; one line."""


class ScanJobQueue:
    """The job queue a scan process reaches its probes by: the collector's database, named by
    the collector's scan launcher (env: `MEDSEC_JOBS_DATABASE`, `MEDSEC_SCAN_ID`,
    `MEDSEC_PROBE_SETTINGS`) or, for a scan run by hand, by the collector settings (`--config`).
    Closing it fails the scan's jobs no probe finished, so none lingers for a probe to run."""

    def __init__(self, database: str, scan_id: str, job_timeout: float) -> None:
        from collector.store import Store

        self.store = Store.open(database)
        self.scan_id = scan_id
        self.job_timeout = job_timeout

    @classmethod
    def open(cls, config: str | None, environ: Mapping[str, str]) -> ScanJobQueue:
        """From `--config` when given, else from the launcher's environment."""
        import uuid

        from collector.settings import ProbeSettings, SettingsError, load_settings

        if config is not None:
            from pathlib import Path

            try:
                settings = load_settings(Path(config))
            except SettingsError as exc:
                raise QueueUnavailable(str(exc)) from None
            database, probes = settings.database, settings.probes
            scan_id, where = str(uuid.uuid4()), f"{config}: database"
        else:
            database = environ.get(JOBS_DATABASE_ENV, "").strip()
            if not database:
                raise QueueUnavailable("no job queue")
            try:
                probes = msgspec.json.decode(
                    environ.get(PROBE_SETTINGS_ENV, "{}").encode(), type=ProbeSettings
                )
            except (msgspec.ValidationError, msgspec.DecodeError) as exc:
                raise QueueUnavailable(f"{PROBE_SETTINGS_ENV}: {exc}") from None
            scan_id = environ.get(SCAN_ID_ENV, "").strip() or str(uuid.uuid4())
            where = JOBS_DATABASE_ENV
        import sqlalchemy as sa

        from collector.store.errors import StoreError

        try:
            return cls(database, scan_id, probes.job_timeout_seconds)
        except StoreError as exc:  # the store's own words about the URL
            raise QueueUnavailable(f"{where}: {exc}") from None
        except (sa.exc.SQLAlchemyError, ValueError, TypeError) as exc:  # the engine refused it
            raise QueueUnavailable(f"{where}: {type(exc).__name__}: {exc}") from None

    def vantages(self, zones: Zones) -> Mapping[str, ProbeVantage]:
        return probe_vantages(zones, self.store, scan_id=self.scan_id, job_timeout=self.job_timeout)

    def close(self) -> None:
        from collector.store.errors import StoreError

        try:
            # A database gone now costs nothing more: the launcher fails them too at the end.
            with contextlib.suppress(StoreError):
                self.store.fail_jobs_of_scan(self.scan_id, _now(), SCAN_ENDED)
        finally:
            self.store.close()


def probe_zones(zones: Zones) -> dict[str, ProbeVantageConfig]:
    """The zones whose vantage is a probe, with their settings."""
    return {
        zone.name: zone.vantage
        for zone in zones.zones
        if isinstance(zone.vantage, ProbeVantageConfig)
    }


def probe_vantages(
    zones: Zones, queue: JobQueue, *, scan_id: str | None, job_timeout: float
) -> Mapping[str, ProbeVantage]:
    """A `ProbeVantage` for every zone whose vantage is a probe."""
    return {
        name: ProbeVantage(
            name,
            queue,
            scan_id=scan_id,
            claim_timeout=config.claim_timeout_seconds,
            job_timeout=job_timeout,
        )
        for name, config in probe_zones(zones).items()
    }
