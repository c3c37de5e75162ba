"""The collector's Prometheus metrics of report ingest, fed by the audit middleware, which sees
every answer to `POST /api/v1/reports`, and of the answers refused because their audit entry could
not be written; served at `/metrics`."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Histogram


class Metrics:
    """The app's Prometheus metrics, in a registry of its own (two apps never share counters)."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        self.received = Counter(
            "medsec_reports_received",
            "Reports accepted at POST /api/v1/reports (stored, or already stored: duplicate).",
            registry=self.registry,
        )
        self.rejected = Counter(
            "medsec_reports_rejected",
            "Reports refused at POST /api/v1/reports, by the error code answered.",
            ["reason"],
            registry=self.registry,
        )
        self.ingest_seconds = Histogram(
            "medsec_ingest_seconds",
            "Time to answer POST /api/v1/reports, from the first byte read to the status sent.",
            registry=self.registry,
        )
        self.audit_unwritten = Counter(
            "medsec_audit_unwritten",
            "Requests answered 503 because their audit entry could not be written.",
            registry=self.registry,
        )

    def observe_ingest(self, status: int, code: str | None, seconds: float) -> None:
        self.ingest_seconds.observe(seconds)
        if status in (200, 201):
            self.received.inc()
        else:
            self.rejected.labels(reason=code or f"http_{status}").inc()
