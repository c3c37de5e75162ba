"""nmap as a subprocess: the argument list, an asyncio runner that streams and parses nmap's XML
as it arrives (progress, cancellation, per-vantage timeout, partial results), and the parser.

The XML is parsed here rather than by python-nmap, which drops `reason_ttl`, `extraports` and
timed-out hosts and only hands results over when nmap exits. Every port keeps nmap's state,
reason and reason TTL; ports nmap folds into `<extraports>` stay folded as nmap's own port list
(`<extrareasons ports=...>`, expanded on demand: a thousand silent ports of a thousand silent
hosts are one list, not a million records); a host that hit `--host-timeout` is marked
`timed_out`. Output cut short (nmap killed) still yields every host completed until then.
nmap's own `--top-ports` list is read from the `<scaninfo>` of a run with no target.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import ipaddress
import os
import re
import shlex
import shutil
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Literal, NamedTuple
from xml.parsers import expat  # nmap's own output; expat fetches no external entity

if TYPE_CHECKING:
    # For types only: zones.py takes its `scan` defaults from `NMAP_DEFAULTS`, so importing it
    # back at run time would be a cycle.
    from collector.scan.zones import PortSpec, Scope

ScanKind = Literal["syn", "connect", "udp", "ack"]
SCAN_FLAGS: dict[ScanKind, str] = {"syn": "-sS", "connect": "-sT", "udp": "-sU", "ack": "-sA"}
SYSTEM_PATH = "/usr/sbin:/usr/bin:/sbin:/bin"
BASE_ENV = {"PATH": SYSTEM_PATH, "LC_ALL": "C", "LANG": "C"}
_KILL_GRACE = 2.0

ProgressCallback = Callable[[float, str], None]
"""(fraction done 0..1, what nmap is doing)."""


class NmapError(Exception):
    """nmap could not be run or its output could not be read; the message is one line."""


class NmapPort(NamedTuple):
    """`<port>`: one port of one host, or one port folded into `<extraports>`."""

    proto: Literal["tcp", "udp"]
    port: int
    state: str
    reason: str
    reason_ttl: int


class NmapExtraPorts(NamedTuple):
    """`<extraports>` + `<extrareasons>`: ports of one host that nmap folded into one line, all
    in one state for one reason. `ports` is nmap's own list (`1,3-4,6-7`); empty when this nmap
    did not name the ports it folded (then `total` says only how many there were)."""

    proto: Literal["tcp", "udp"]
    state: str
    reason: str
    ports: str
    total: int

    def numbers(self) -> tuple[int, ...]:
        return port_numbers(self.ports)


@dataclass(frozen=True)
class NmapHost:
    """`<host>`: one target as nmap finished it."""

    address: str
    status: str
    """`<status state>`: up (always, with -Pn), down, unknown."""
    status_reason: str
    timed_out: bool
    """`timedout="true"`: nmap gave up on it at --host-timeout; its ports are missing."""
    ports: tuple[NmapPort, ...]
    """The ports nmap listed one by one (`<port>`): every open one, and the rarer states."""
    extra: tuple[NmapExtraPorts, ...] = ()
    """The ports nmap folded (`<extraports>`), as nmap's lists."""

    def all_ports(self) -> tuple[NmapPort, ...]:
        """Every port, the folded ones expanded (reason TTL 0: nmap gives none for them)."""
        folded = [
            NmapPort(extra.proto, number, extra.state, extra.reason, 0)
            for extra in self.extra
            for number in extra.numbers()
        ]
        return tuple(sorted((*self.ports, *folded)))


@dataclass(frozen=True)
class NmapRun:
    """One nmap run's XML document."""

    args: str
    version: str
    scan_types: tuple[str, ...]
    """`<scaninfo type>`: syn, connect, udp, ack."""
    hosts: tuple[NmapHost, ...]
    finished: bool
    """`<runstats><finished>` was seen: the document is complete."""
    exit_status: str | None = None
    """`finished exit`: success or error."""
    error_message: str | None = None
    """`finished errormsg`, when nmap reported one."""
    elapsed: float | None = None
    services: tuple[tuple[str, str], ...] = ()
    """`<scaninfo protocol services>`: the ports nmap was asked to scan, per protocol, in its
    own list syntax (with `--top-ports N`, the N ports nmap-services ranks first)."""


@dataclass
class _Progress:
    total_hosts: int
    done: int = 0
    last: float = 0.0


@dataclass
class _Host:
    """The host being read."""

    attributes: dict[str, str]
    address: str = ""
    status: str = ""
    status_reason: str = ""
    ports: list[NmapPort] = field(default_factory=list)
    extra: list[NmapExtraPorts] = field(default_factory=list)


class NmapXmlParser:
    """Incremental parser: feed nmap's stdout as it comes, `close()` for the run so far.

    Built on expat's callbacks, keeping only what the scan needs: every element of interest
    carries its data in attributes, so no tree is built (four scans of a few thousand hosts end
    at once, and parsing is what stands between nmap's last line and the result).
    """

    def __init__(
        self, *, total_hosts: int = 0, on_progress: ProgressCallback | None = None
    ) -> None:
        self._expat = expat.ParserCreate()
        self._expat.StartElementHandler = self._start
        self._expat.EndElementHandler = self._end
        self._hosts: list[NmapHost] = []
        self._host: _Host | None = None
        self._port: tuple[Literal["tcp", "udp"], int] | None = None
        self._extra_state = ""
        self._extra_left = 0
        self._lists: dict[str, str] = {}
        """One copy of each folded-port list: silent hosts all carry the same one."""
        self._scan_types: list[str] = []
        self._services: list[tuple[str, str]] = []
        self._args = ""
        self._version = ""
        self._finished: dict[str, str] | None = None
        self._broken: str | None = None
        self._progress = _Progress(total_hosts)
        self._on_progress = on_progress

    @property
    def hosts_done(self) -> int:
        return len(self._hosts)

    def feed(self, data: bytes) -> None:
        if self._broken is not None:
            return
        try:
            self._expat.Parse(data, False)
        except expat.ExpatError as exc:
            # Keep what was parsed; the run is reported unfinished with the reason.
            self._broken = str(exc)
        except LookupError as exc:  # an XML declaration naming an encoding Python lacks
            self._broken = f"the XML declares an unknown encoding: {str(exc).split(': ', 1)[-1]}"

    def close(self) -> NmapRun:
        if self._broken is None:
            with contextlib.suppress(expat.ExpatError, LookupError):
                self._expat.Parse(b"", True)
        finished = self._finished
        return NmapRun(
            args=self._args,
            version=self._version,
            scan_types=tuple(self._scan_types),
            hosts=tuple(self._hosts),
            finished=finished is not None,
            exit_status=finished.get("exit") if finished else None,
            error_message=finished.get("errormsg") if finished else None,
            elapsed=_seconds(finished.get("elapsed")) if finished else None,
            services=tuple(self._services),
        )

    def _start(self, name: str, attributes: dict[str, str]) -> None:
        host = self._host
        # The common elements first: a port and its state, for every port of every host.
        if name == "state":
            if host is not None and self._port is not None:
                proto, number = self._port
                ttl = attributes.get("reason_ttl", "0")
                host.ports.append(
                    NmapPort(
                        proto,
                        number,
                        attributes.get("state", ""),
                        attributes.get("reason", ""),
                        _count(ttl),
                    )
                )
        elif name == "port":
            protocol, portid = attributes.get("protocol"), attributes.get("portid", "")
            if protocol in {"tcp", "udp"} and _COUNT.fullmatch(portid):
                self._port = ("tcp" if protocol == "tcp" else "udp", int(portid))
        elif name == "host":
            self._host = _Host(attributes)
        elif host is not None:
            self._host_part(host, name, attributes)
        elif name == "taskprogress":
            self._report(attributes)
        elif name == "scaninfo":
            self._scan_types.append(attributes.get("type", ""))
            self._services.append((attributes.get("protocol", ""), attributes.get("services", "")))
        elif name == "finished":
            self._finished = dict(attributes)
        elif name == "nmaprun":
            self._args = attributes.get("args", "")
            self._version = attributes.get("version", "")

    def _host_part(self, host: _Host, name: str, attributes: dict[str, str]) -> None:
        if name == "status":
            host.status = attributes.get("state", "")
            host.status_reason = attributes.get("reason", "")
        elif name == "address":
            if attributes.get("addrtype") == "ipv4" or not host.address:
                host.address = attributes.get("addr", "")
        elif name == "extraports":
            self._extra_state = attributes.get("state", "")
            self._extra_left = _count(attributes.get("count", "0"))
        elif name == "extrareasons":
            proto = attributes.get("proto", "tcp")
            kind: Literal["tcp", "udp"] = "udp" if proto == "udp" else "tcp"
            ports = attributes.get("ports", "")
            number = _count(attributes.get("count", "0"))
            self._extra_left -= number
            host.extra.append(
                NmapExtraPorts(
                    kind,
                    self._extra_state,
                    attributes.get("reason", ""),
                    self._lists.setdefault(ports, ports),
                    number,
                )
            )

    def _end(self, name: str) -> None:
        if name == "port":
            self._port = None
        elif name == "extraports" and self._host is not None:
            if self._extra_left > 0:
                # Folded ports no <extrareasons> accounts for: known by number only.
                self._host.extra.append(
                    NmapExtraPorts("tcp", self._extra_state, "", "", self._extra_left)
                )
            self._extra_left = 0
        elif name == "host" and self._host is not None:
            host, self._host = self._host, None
            host.ports.sort()
            self._hosts.append(
                NmapHost(
                    address=host.address,
                    status=host.status,
                    status_reason=host.status_reason,
                    timed_out=host.attributes.get("timedout") == "true",
                    ports=tuple(host.ports),
                    extra=tuple(host.extra),
                )
            )
            self._progress.done += 1
            self._report(None)

    def _report(self, task: dict[str, str] | None) -> None:
        if self._on_progress is None:
            return
        total = max(self._progress.total_hosts, 1)
        done = min(self._progress.done, total)
        fraction = done / total
        note = f"{done}/{total} hosts"
        if task is not None:
            with contextlib.suppress(ValueError):
                percent = float(task.get("percent", "0"))
                # The task covers the current host group (at most what is left).
                fraction += (total - done) / total * percent / 100 * 0.99
                note = f"{task.get('task', 'scan')} {percent:.0f}%, {note}"
        fraction = max(self._progress.last, min(fraction, 1.0))
        self._progress.last = fraction
        self._on_progress(fraction, note)


MAX_PORT = 65_535
_COUNT = re.compile(r"[0-9]{1,9}")
"""A count, port or TTL as nmap writes it: `str.isdigit()` also takes "²", which int() refuses."""


def _count(text: str) -> int:
    return int(text) if _COUNT.fullmatch(text) else 0


def _seconds(text: str | None) -> float | None:
    try:
        return float(text) if text is not None else None
    except ValueError:
        return None


@functools.lru_cache(maxsize=64)
def port_numbers(ports: str) -> tuple[int, ...]:
    """nmap's port list (`1,3-4,6-7`) as numbers; cached, as every silent host repeats it.
    What is no port (a damaged list) is left out, and no range runs past port 65535."""
    numbers: list[int] = []
    for raw in ports.split(","):
        low, _, high = raw.strip().partition("-")
        if _COUNT.fullmatch(low) and (not high or _COUNT.fullmatch(high)):
            numbers.extend(range(int(low), min(int(high or low), MAX_PORT) + 1))
    return tuple(numbers)


def port_list(numbers: Iterable[int]) -> str:
    """Numbers in nmap's list syntax, runs joined (`1,3-4,6-7`): a `-p` of all 65535 ports
    stays one short argument, well under the kernel's limit on one argument."""
    spans: list[list[int]] = []
    for number in sorted(set(numbers)):
        if spans and number == spans[-1][1] + 1:
            spans[-1][1] = number
        else:
            spans.append([number, number])
    return ",".join(str(low) if low == high else f"{low}-{high}" for low, high in spans)


def parse_nmap_xml(data: bytes | str) -> NmapRun:
    """Parse a whole (or cut short) nmap XML document."""
    parser = NmapXmlParser()
    parser.feed(data.encode() if isinstance(data, str) else data)
    return parser.close()


# --- the command line -------------------------------------------------------------------------


@dataclass(frozen=True)
class NmapOptions:
    """Timing and politeness, from the zones file's `scan` section (whose keys say what each
    is for). These defaults are the only ones: that section takes its own from `NMAP_DEFAULTS`."""

    timing: int = 4
    max_retries: int = 1
    min_rate: int | None = 3000
    max_rate: int | None = None
    min_hostgroup: int = 1024
    max_rtt_timeout_ms: int | None = None
    host_timeout_seconds: float | None = None
    """None: `sized_host_timeout` for each run."""
    stats_every: str = "1s"


NMAP_DEFAULTS = NmapOptions()
ASSUMED_RATE = 1000
"""Probes per second assumed when sizing a timeout for a run without `--min-rate`."""


def sized_host_timeout(options: NmapOptions, hosts: int, ports: int) -> float:
    """nmap's `--host-timeout` when none is set. nmap scans a host group at once (at least
    `--min-hostgroup` hosts), so each host's clock runs as long as its group's whole scan: the
    bound is sized to every probe of every host (a silent port costs its retries too) at the
    minimum rate, three times over, plus a minute; at most a day."""
    probes = hosts * ports * (1 + options.max_retries)
    rate = options.min_rate or ASSUMED_RATE
    return float(min(86_400, 60 + int(3 * probes / rate)))


def port_argument(ports: Sequence[PortSpec], scans: Sequence[ScanKind]) -> str:
    """`-p` value: `T:22,80-81,U:161`; only the protocols the scans cover."""
    tcp = [p.port for p in ports if p.proto == "tcp"]
    udp = [p.port for p in ports if p.proto == "udp"]
    parts = []
    if tcp and any(s in {"syn", "connect", "ack"} for s in scans):
        parts.append("T:" + port_list(tcp))
    if udp and "udp" in scans:
        parts.append("U:" + port_list(udp))
    if not parts:
        raise NmapError("no port to scan for these scan types")
    return ",".join(parts)


def count_hosts(targets: Iterable[str]) -> int:
    return sum(ipaddress.ip_network(t, strict=False).num_addresses for t in targets)


def build_argv(
    *,
    nmap: str,
    scans: Sequence[ScanKind],
    ports: Sequence[PortSpec],
    targets: Sequence[str],
    scope: Scope,
    options: NmapOptions,
) -> list[str]:
    """nmap's argument list. Every target is checked against the scope first: a target outside
    the declared CIDRs (or the confinement) raises ScopeError and nothing runs."""
    if not targets:
        raise NmapError("no target to scan")
    for target in targets:
        scope.check(target, "nmap target")
    if not scans or len({s for s in scans if s != "udp"}) > 1:
        raise NmapError(f"one TCP scan type per run (and optionally udp), not {list(scans)}")
    argv = [nmap, "-n", "-Pn", "--reason", "-oX", "-", "--stats-every", options.stats_every]
    argv += [SCAN_FLAGS[s] for s in scans]
    argv += ["-p", port_argument(ports, scans)]
    argv += [f"-T{options.timing}", "--max-retries", str(options.max_retries)]
    host_timeout = options.host_timeout_seconds
    if host_timeout is None:
        host_timeout = sized_host_timeout(options, count_hosts(targets), len(ports))
    argv += ["--host-timeout", f"{host_timeout:g}s"]
    argv += ["--min-hostgroup", str(options.min_hostgroup)]
    if options.min_rate is not None:
        argv += ["--min-rate", str(options.min_rate)]
    if options.max_rate is not None:
        argv += ["--max-rate", str(options.max_rate)]
    if options.max_rtt_timeout_ms is not None:
        argv += ["--max-rtt-timeout", f"{options.max_rtt_timeout_ms}ms"]
    argv += ["--", *targets]
    return argv


def top_ports_argv(nmap: str, count: int) -> list[str]:
    """nmap asked for its `--top-ports` list and nothing else: with no target it scans nothing
    and names the ports it would have scanned (`<scaninfo services>`, from its nmap-services).
    A connect scan, so an unprivileged vantage can answer too."""
    return [nmap, "-n", "-oX", "-", "-sT", "--top-ports", str(count)]


def top_ports(run: NmapRun, count: int) -> tuple[int, ...]:
    """The TCP ports of a `top_ports_argv` run; NmapError unless there are `count` of them."""
    listed = next((text for proto, text in run.services if proto == "tcp"), "")
    try:
        numbers = port_numbers(listed)
    except ValueError:
        raise NmapError(f"nmap's --top-ports list is not a port list: {listed[:60]!r}") from None
    if len(numbers) != count or not all(0 < n < 65536 for n in numbers):
        raise NmapError(f"nmap named {len(numbers)} ports for --top-ports {count}")
    return numbers


def nmap_binary() -> str:
    found = shutil.which("nmap", path=SYSTEM_PATH)
    if found is None:
        raise NmapError("nmap is not installed (Debian package nmap)")
    return found


# --- running it -------------------------------------------------------------------------------


@dataclass(frozen=True)
class NmapResult:
    """How one nmap run ended, with whatever it produced."""

    argv: tuple[str, ...]
    run: NmapRun
    status: Literal["ok", "timeout", "error", "cancelled"]
    message: str
    seconds: float
    stderr: str = ""
    returncode: int | None = None
    command: str = ""
    """The command as run (for remote vantages, the remote command line)."""

    @property
    def timed_out_hosts(self) -> tuple[str, ...]:
        return tuple(h.address for h in self.run.hosts if h.timed_out)


@dataclass
class _Tail:
    """The last lines of stderr, for the one-line error message."""

    lines: list[str] = field(default_factory=list)

    def add(self, data: bytes) -> None:
        for raw in data.decode("utf-8", "replace").splitlines():
            line = raw.strip()
            if line:
                self.lines = [*self.lines[-19:], line]

    def text(self) -> str:
        return "\n".join(self.lines)

    def problem(self) -> str:
        """The last line that is not one of nmap's warnings."""
        meaningful = [x for x in self.lines if not x.startswith("Warning:")]
        return (meaningful or self.lines or ["no output on stderr"])[-1]


def finish(
    argv: Sequence[str],
    parser: NmapXmlParser,
    *,
    returncode: int | None,
    stderr: str,
    problem: str,
    started: float,
    timed_out: bool = False,
    cancelled: bool = False,
    command: str = "",
) -> NmapResult:
    """Turn an ended nmap process into an NmapResult (shared by local and remote runners)."""
    run = parser.close()
    seconds = round(time.monotonic() - started, 3)
    status: Literal["ok", "timeout", "error", "cancelled"]
    if cancelled:
        status, message = "cancelled", "cancelled"
    elif timed_out:
        status = "timeout"
        message = (
            f"nmap stopped after {seconds:.0f} s (vantage timeout); {len(run.hosts)} hosts done"
        )
    elif returncode == 0 and run.finished and run.exit_status != "error":
        status, message = "ok", f"{len(run.hosts)} hosts in {seconds:.1f} s"
    else:
        status = "error"
        detail = run.error_message or problem
        message = f"nmap exited {returncode}: {detail}"
    return NmapResult(
        argv=tuple(argv),
        run=run,
        status=status,
        message=message,
        seconds=seconds,
        stderr=stderr,
        returncode=returncode,
        command=command or shlex.join(argv),
    )


Process = asyncio.subprocess.Process


async def _terminate(process: Process) -> None:
    if process.returncode is not None:
        return
    with contextlib.suppress(ProcessLookupError):
        process.terminate()
    try:
        await asyncio.wait_for(process.wait(), _KILL_GRACE)
    except TimeoutError:
        with contextlib.suppress(ProcessLookupError):
            process.kill()
        await process.wait()


async def spawn(argv: Sequence[str], *, stdin: int = asyncio.subprocess.DEVNULL) -> Process:
    """Start a program with piped output. A cancellation that arrives while it is starting
    waits for the start and stops the program, so nothing is left running unowned."""
    starting = asyncio.ensure_future(
        asyncio.create_subprocess_exec(
            *argv,
            stdin=stdin,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
            env=BASE_ENV,
            start_new_session=True,
        )
    )
    try:
        return await asyncio.shield(starting)
    except OSError as exc:
        raise NmapError(f"{argv[0]}: cannot run: {exc.strerror or exc}") from exc
    except asyncio.CancelledError:
        with contextlib.suppress(Exception):
            process = await starting
            await _terminate(process)
            await process.communicate()
        raise


async def run_nmap_process(
    argv: Sequence[str],
    *,
    nmap_argv: Sequence[str] | None = None,
    timeout: float,
    total_hosts: int = 0,
    on_progress: ProgressCallback | None = None,
    parser: NmapXmlParser | None = None,
) -> NmapResult:
    """Run nmap (argv may be prefixed, e.g. `ip netns exec NS`), parse its XML as it streams
    (with `parser` when given: a probe's keeps the bytes it is fed).

    On timeout nmap is stopped and the hosts it finished are kept (status `timeout`). When the
    calling task is cancelled nmap is stopped too, and the cancellation goes on.
    """
    started = time.monotonic()
    if parser is None:
        parser = NmapXmlParser(total_hosts=total_hosts, on_progress=on_progress)
    tail = _Tail()
    process = await spawn(argv)

    async def pump_stdout() -> None:
        assert process.stdout is not None  # noqa: S101
        while chunk := await process.stdout.read(65536):
            parser.feed(chunk)

    async def pump_stderr() -> None:
        assert process.stderr is not None  # noqa: S101
        while chunk := await process.stderr.read(65536):
            tail.add(chunk)

    pumps = asyncio.gather(pump_stdout(), pump_stderr(), process.wait())
    timed_out = False
    try:
        await asyncio.wait_for(asyncio.shield(pumps), timeout)
    except TimeoutError:
        timed_out = True
        await _terminate(process)
        with contextlib.suppress(Exception):
            await asyncio.wait_for(pumps, _KILL_GRACE)
    except asyncio.CancelledError:
        await _terminate(process)
        # Read the pipes to their end (nmap is gone) so their transports close cleanly.
        try:
            await asyncio.wait_for(pumps, _KILL_GRACE)
        except (TimeoutError, Exception):
            pumps.cancel()
        raise
    return finish(
        nmap_argv or argv,
        parser,
        returncode=process.returncode,
        stderr=tail.text(),
        problem=tail.problem(),
        started=started,
        timed_out=timed_out,
        command=shlex.join(argv),
    )


def environment() -> dict[str, str]:
    """The environment nmap and the probes run with (LC_ALL=C, system PATH only)."""
    return dict(BASE_ENV)


def is_root() -> bool:
    return os.geteuid() == 0
