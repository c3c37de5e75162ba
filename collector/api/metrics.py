"""The collector's Prometheus metrics — report ingest, fed by the audit middleware, which sees
every answer to `POST /api/v1/reports`, the answers refused because their audit entry could not
be written, the serving processes — served at `/metrics`, for the whole collector whatever
worker answers the scrape.

With `medsec serve --workers N`, each worker is a process with its own counters; a scrape
answered from one worker's registry would show that worker's share, and Prometheus would read
the alternation as counter resets. So the serving parent makes a private folder for
prometheus_client's multiprocess mode (`shared_metrics`), the workers inherit it through
`PROMETHEUS_MULTIPROC_DIR` (read by prometheus_client when it is imported: a worker is a fresh
interpreter), every worker writes its values to files there, and a scrape sums them all —
counters and histograms of exited workers included, so counters never go back.
"""

from __future__ import annotations

import os
import re
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
    multiprocess,
    values,
)

MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"
_LIVE_FILE = re.compile(r"gauge_live[a-z]+_(\d+)\.db")


class Metrics:
    """The app's Prometheus metrics: in a registry of its own (two apps in one process never
    share counters), or, in a worker of several, in the workers' shared folder."""

    def __init__(self) -> None:
        self.folder = multiprocess_folder()
        self.registry = CollectorRegistry(auto_describe=True)
        own: CollectorRegistry | None = self.registry
        if self.folder is not None:
            multiprocess.MultiProcessCollector(self.registry, path=str(self.folder))  # type: ignore[no-untyped-call]
            own = None  # this process's values are read back from its files, with the others'
        self.received = Counter(
            "medsec_reports_received",
            "Reports accepted at POST /api/v1/reports (stored, or already stored: duplicate).",
            registry=own,
        )
        self.rejected = Counter(
            "medsec_reports_rejected",
            "Reports refused at POST /api/v1/reports, by the error code answered.",
            ["reason"],
            registry=own,
        )
        self.ingest_seconds = Histogram(
            "medsec_ingest_seconds",
            "Time to answer POST /api/v1/reports, from the first byte read to the status sent.",
            registry=own,
        )
        self.audit_unwritten = Counter(
            "medsec_audit_unwritten",
            "Requests answered 503 because their audit entry could not be written.",
            registry=own,
        )
        self.processes = Gauge(
            "medsec_serving_processes",
            "Collector processes serving the API on this port (one per worker).",
            registry=own,
            multiprocess_mode="livesum",  # the workers alive now; one killed is not counted
        )
        self.processes.set(1)

    def observe_ingest(self, status: int, code: str | None, seconds: float) -> None:
        self.ingest_seconds.observe(seconds)
        if status in (200, 201):
            self.received.inc()
        else:
            self.rejected.labels(reason=code or f"http_{status}").inc()

    def exposition(self) -> bytes:
        """The scrape: the text format, every serving process's values summed."""
        if self.folder is not None:
            forget_exited(self.folder)
        return generate_latest(self.registry)

    def close(self) -> None:
        """This process stops serving: its gauges leave the scrape (its counters stay)."""
        if self.folder is not None:
            multiprocess.mark_process_dead(os.getpid(), str(self.folder))  # type: ignore[no-untyped-call]


def multiprocess_folder() -> Path | None:
    """The workers' shared folder when prometheus_client runs in multiprocess mode, else None."""
    folder = os.environ.get(MULTIPROC_ENV)
    if not folder:
        return None
    if not getattr(values.ValueClass, "_multiprocess", False):
        raise RuntimeError(f"{MULTIPROC_ENV} was set after prometheus_client was imported")
    return Path(folder)


def forget_exited(folder: Path) -> None:
    """Drop the live gauges of workers that exited without saying so (killed): uvicorn starts
    another in their place, under another process id."""
    for path in folder.glob("gauge_live*_*.db"):
        found = _LIVE_FILE.fullmatch(path.name)
        if found is not None and not _running(int(found.group(1))):
            multiprocess.mark_process_dead(int(found.group(1)), str(folder))  # type: ignore[no-untyped-call]


def _running(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's process has that id
        return True
    return True


@contextmanager
def shared_metrics() -> Iterator[Path]:
    """For the parent of several workers, around their whole life: a new, empty, private (0700)
    folder for their metric files, named in the environment they inherit, removed at the end."""
    folder = Path(tempfile.mkdtemp(prefix="medsec-metrics-"))
    os.environ[MULTIPROC_ENV] = str(folder)
    try:
        yield folder
    finally:
        os.environ.pop(MULTIPROC_ENV, None)
        shutil.rmtree(folder, ignore_errors=True)
