"""Running a job the probe checked (collector.scan.probe_guard): on this machine, inside the
zone, exactly as the scanner's local vantage would (collector/scan/vantage.py `LocalVantage`,
which the agent's wheel carries): nmap as a subprocess with a clean environment, the probe helper
(`collector/scan/probe_cli.py`) fed one JSON request.

nmap's XML goes back to the collector whole (it parses it with the scanner's own parser), so the
run here keeps the bytes as they stream while still parsing them: a run cut short by its timeout
is reported with what it finished, as the scanner does. Cancelling a job (its lease lost, the
probe stopping) stops nmap and the helper; nothing outlives the job.
"""

from __future__ import annotations

from typing import Any

from collector.scan.nmap import (
    NmapError,
    NmapXmlParser,
    is_root,
    nmap_binary,
    run_nmap_process,
)
from collector.scan.probe_guard import CheckedJob
from collector.scan.vantage import LocalVantage, VantageError


class JobFailed(Exception):
    """The job ran but could not give a result; the message is the one line stored with it."""


class _KeepingParser(NmapXmlParser):
    """The scanner's parser, also keeping the bytes it is fed (they are the job's result)."""

    def __init__(self) -> None:
        super().__init__()
        self.chunks: list[bytes] = []

    def feed(self, data: bytes) -> None:
        self.chunks.append(data)
        super().feed(data)


async def run_nmap_keeping_xml(argv: list[str], timeout: float) -> dict[str, Any]:
    """Run nmap as the scanner does (`run_nmap_process`); what the collector rebuilds its
    `NmapResult` from (XML, status, message, seconds, stderr, return code, command). On timeout
    nmap is stopped and what it finished is kept; on cancellation nmap is stopped and the
    cancellation goes on."""
    parser = _KeepingParser()
    result = await run_nmap_process(argv, timeout=timeout, parser=parser)
    return {
        "xml": b"".join(parser.chunks).decode("utf-8", "replace"),
        "status": result.status,
        "message": result.message,
        "seconds": result.seconds,
        "stderr": result.stderr,
        "returncode": result.returncode,
        "command": result.command,
    }


class JobRunner:
    """Runs checked jobs here. `nmap`: the probe's own nmap (None: the one on the system PATH)."""

    def __init__(self, zone: str, nmap: str | None = None) -> None:
        self.zone = zone
        self.nmap = nmap
        self._local = LocalVantage(zone)

    async def run(self, job: CheckedJob) -> dict[str, Any]:
        """The job's result, or `JobFailed` with why."""
        if job.kind == "noop":
            return {"ok": True}
        if job.kind == "privileged":
            # nmap uses raw sockets (SYN, UDP, ACK scans) only when it runs as root.
            return {"privileged": is_root()}
        if job.kind == "nmap":
            try:
                nmap = self.nmap or nmap_binary()
                return await run_nmap_keeping_xml([nmap, *job.argv[1:]], job.timeout)
            except NmapError as exc:
                raise JobFailed(str(exc)) from None
        if job.kind == "probe" and job.probe is not None:
            try:
                return await self._local.probe(dict(job.probe), timeout=job.timeout)
            except VantageError as exc:
                raise JobFailed(str(exc)) from None
        raise JobFailed(f"job kind {job.kind!r} cannot be run here")
