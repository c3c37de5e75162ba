"""The hospital in a box: `Lab.up()` builds it from network namespaces, `Lab.down()` removes every
trace of it (also after a crash, without its state file), `Lab.status()` reports it and
`Lab.fault()` switches the faults the scanner must catch.

One namespace per zone (`<prefix><zone>`) plus a router (`<prefix>rtr`) whose nftables ruleset
is the zones file's policy. Nothing is added to the root namespace: no link, no address, no route;
the collector reaches the lab from inside its namespaces (`collector.lab.netns`). Every daemon runs
inside a lab namespace with all its files under the lab folder, so `down` ends them by namespace
membership (never by name), deletes the namespaces and removes the folder.
"""

from __future__ import annotations

import contextlib
import importlib.resources
import json
import os
import pwd
import shutil
import signal
import ssl
import stat
import subprocess
import sys
import time
import warnings
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import IO, Any

from collector.lab import netns as ns
from collector.lab import pki
from collector.lab import topology as t
from collector.lab.configs import (
    CRS_LOAD,
    MODSECURITY_RECOMMENDED,
    LabConfigError,
    LabPaths,
    SnmpSecrets,
    check_zones,
    modsecurity_engine_conf,
    nft_ruleset,
    nginx_tls_conf,
    parse_policy,
    render_all,
    render_zones,
)

PREFIX_ENV = "MEDSEC_LAB_PREFIX"
DIR_ENV = "MEDSEC_LAB_DIR"
DEFAULT_DIR_PARENT = Path("/run/medsec")
STATE_VERSION = 1
_SYSTEM_PATH = "/usr/sbin:/usr/bin:/sbin:/bin"
_BASE_ENV = {"PATH": _SYSTEM_PATH, "LC_ALL": "C", "LANG": "C"}

_TOOLS = {
    # name: Debian package
    "ip": "iproute2",
    "nft": "nftables",
    "apache2": "apache2",
    "nginx": "nginx",
    "snmpd": "snmpd",
    "sshd": "openssh-server",
    "useradd": "passwd",
    "usermod": "passwd",
}
_FILES = {
    "/usr/lib/apache2/modules/mod_security2.so": "libapache2-mod-security2",
    MODSECURITY_RECOMMENDED: "libapache2-mod-security2",
    CRS_LOAD: "modsecurity-crs",
}


class LabError(Exception):
    """The lab could not be built, switched or removed; the message is one actionable line."""


class LabUnavailable(LabError):
    """This machine cannot run the lab (not root, no network namespaces, a tool missing)."""


def default_prefix() -> str:
    return os.environ.get(PREFIX_ENV) or t.DEFAULT_PREFIX


def default_dir(prefix: str) -> Path:
    configured = os.environ.get(DIR_ENV)
    return Path(configured) if configured else DEFAULT_DIR_PARENT / prefix.rstrip("-")


@dataclass(frozen=True)
class DaemonStatus:
    name: str
    netns: str
    pid: int | None
    alive: bool


@dataclass(frozen=True)
class LabStatus:
    prefix: str
    directory: str
    phase: str
    """`up`, `building` (or a crashed build), or `absent`."""
    namespaces: dict[str, bool]
    daemons: list[DaemonStatus]
    faults: list[str]

    @property
    def healthy(self) -> bool:
        return (
            self.phase == "up"
            and all(self.namespaces.values())
            and all(daemon.alive for daemon in self.daemons)
        )

    def as_json(self) -> dict[str, Any]:
        return {**asdict(self), "healthy": self.healthy}


@dataclass(frozen=True)
class DownReport:
    namespaces: list[str]
    """Namespaces deleted."""
    stopped: int
    """Processes ended (they were inside a lab namespace)."""
    removed_dir: bool
    seconds: float


@dataclass
class _State:
    """LAB/state.json: rewritten after every step, so a crashed build leaves a usable trail."""

    prefix: str
    directory: str
    persona: str
    phase: str = "building"
    namespaces: list[str] = field(default_factory=list)
    daemons: dict[str, dict[str, Any]] = field(default_factory=dict)
    faults: list[str] = field(default_factory=list)
    timings: dict[str, float] = field(default_factory=dict)
    version: int = STATE_VERSION


@dataclass(frozen=True)
class _Daemon:
    name: str
    zone: str
    argv: tuple[str, ...]
    listens: tuple[tuple[str, str, int], ...]
    env: Mapping[str, str] = field(default_factory=dict)


def _zones_template() -> str:
    return importlib.resources.files("collector.lab").joinpath("zones.yaml").read_text("utf-8")


class Lab:
    """One lab: its namespace prefix and its folder (LAB). Cheap to construct; nothing runs."""

    def __init__(
        self,
        state_dir: str | os.PathLike[str] | None = None,
        prefix: str | None = None,
        *,
        persona: str = t.DEFAULT_PERSONA,
    ) -> None:
        self.prefix = default_prefix() if prefix is None else prefix
        if not t.PREFIX_PATTERN.fullmatch(self.prefix):
            raise LabError(
                f"lab prefix {self.prefix!r}: use 2-11 characters a-z0-9 ending in '-', e.g. 'lab-'"
            )
        if persona not in t.PERSONAS:
            raise LabError(f"persona {persona!r}: choose one of {', '.join(t.PERSONAS)}")
        self.persona = persona
        root = Path(state_dir) if state_dir is not None else default_dir(self.prefix)
        self.paths = LabPaths(Path(os.path.abspath(root)))

    # --- names and files the scanner uses ----------------------------------------------------

    @property
    def directory(self) -> Path:
        return self.paths.root

    @property
    def zones_file(self) -> Path:
        """LAB/zones.yaml, written by `up`: the zones file for this lab's names and paths."""
        return self.paths.zones

    @property
    def snmp_file(self) -> Path:
        """LAB/snmp.json (mode 0600): the agent's address, v2c community and v3 credentials."""
        return self.paths.snmp_secrets

    def netns(self, zone: str) -> str:
        """The namespace of a zone (`internet`, `dmz`, `his`, `office`, `mgmt`) or of `rtr`."""
        if zone not in t.NAMESPACE_SUFFIXES:
            raise LabError(f"unknown lab zone {zone!r}: one of {', '.join(t.NAMESPACE_SUFFIXES)}")
        return self.prefix + zone

    def command(self, zone: str, *argv: str) -> list[str]:
        """argv running `argv` inside a zone's namespace (`ip netns exec`)."""
        return [_tool("ip"), "netns", "exec", self.netns(zone), *argv]

    def _namespaces(self) -> list[str]:
        return [self.prefix + suffix for suffix in t.NAMESPACE_SUFFIXES]

    def existing_namespaces(self) -> list[str]:
        return [name for name in self._namespaces() if os.path.exists(ns.netns_path(name))]

    # --- up ----------------------------------------------------------------------------------

    def up(self) -> dict[str, float]:
        """Build the lab; the seconds each step took. On failure everything is removed again
        (logs kept under LAB/logs) and LabError says which step and daemon failed."""
        started = time.monotonic()
        tools = _preflight()
        zones_text = _zones_template()
        try:
            check_zones(zones_text)
            policy = parse_policy(zones_text)
        except LabConfigError as exc:
            raise LabError(str(exc)) from exc
        present = self.existing_namespaces()
        if present:
            raise LabError(
                f"lab {self.prefix!r} is already (partly) up ({', '.join(present)}): "
                "run `medsec lab down` first"
            )
        self._prepare_folder()
        state = _State(self.prefix, str(self.paths.root), self.persona)
        self._save(state)
        timings: dict[str, float] = {}

        def step(name: str, action: Callable[[], None]) -> None:
            begin = time.monotonic()
            action()
            timings[name] = round(time.monotonic() - begin, 3)

        try:
            secrets = pki.make_snmp_secrets()
            step("keys", self._make_keys)
            step("network", lambda: self._build_network(state, tools))
            step("firewall", lambda: self._load_ruleset(policy, ()))
            step("configs", lambda: self._write_configs(secrets, ()))
            step("probe_user", _ensure_probe_user)
            step("daemons", lambda: self._start_daemons(state, tools))
            self._write_zones_and_secrets(zones_text, secrets)
            timings["total"] = round(time.monotonic() - started, 3)
            state.phase = "up"
            state.timings = timings
            self._save(state)
        except BaseException:
            with contextlib.suppress(Exception):
                self.down(keep_logs=True)
            raise
        return timings

    def _prepare_folder(self) -> None:
        root = self.paths.root
        _check_traversable(root.parent)
        if root.exists():
            if not self.paths.marker.exists() and any(root.iterdir()):
                raise LabError(f"{root} is not empty and not a lab folder: choose another --dir")
            _clear_folder(root, keep=())
        root.mkdir(parents=True, exist_ok=True)
        root.chmod(0o755)  # sshd reads authorized_keys as the probe user; workers run as www-data
        self.paths.marker.write_text("medsec lab folder: `medsec lab down` removes it\n")
        for folder, mode in (
            (self.paths.run, 0o755),
            (self.paths.run / "apache", 0o755),
            (self.paths.logs, 0o755),
            (self.paths.pki, 0o755),
            (self.paths.ssh, 0o755),
            (self.paths.apache, 0o755),
            (self.paths.nginx, 0o755),
            (self.paths.snmp, 0o700),
            (self.paths.snmp / "persist", 0o700),
        ):
            folder.mkdir(exist_ok=True)
            folder.chmod(mode)
        for folder in (
            self.paths.apache / "modsec-data",
            self.paths.apache / "modsec-tmp",
            *(
                self.paths.nginx / "temp" / kind
                for kind in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi")
            ),
        ):
            folder.mkdir(parents=True, exist_ok=True)
            shutil.chown(folder, "www-data", "www-data")

    def _make_keys(self) -> None:
        pki.make_pki(self.paths)
        pki.make_ssh(self.paths)

    def _build_network(self, state: _State, tools: Mapping[str, str]) -> None:
        ip = tools["ip"]
        names = self._namespaces()
        state.namespaces = names
        self._save(state)  # before creating anything: a crash from here on is recorded
        _run([ip, "-batch", "-"], stdin="".join(f"netns add {name}\n" for name in names))
        for name in names:
            ns.write_sysctls(
                name,
                {"net.ipv6.conf.all.disable_ipv6": "1", "net.ipv6.conf.default.disable_ipv6": "1"},
            )
        router = self.netns(t.ROUTER)
        ns.write_sysctls(router, {"net.ipv4.ip_forward": "1"})
        # Bridged frames must not cross the forward chain, or same-zone traffic meets its drop.
        ns.write_sysctls(
            router,
            {
                "net.bridge.bridge-nf-call-iptables": "0",
                "net.bridge.bridge-nf-call-ip6tables": "0",
                "net.bridge.bridge-nf-call-arptables": "0",
            },
            missing_ok=True,
        )
        lines = ["link set lo up"]
        for zone in t.ZONES:
            prefix_len = zone.cidr.split("/")[1]
            lines += [
                f"link add {zone.bridge} type bridge",
                f"addr add {zone.gateway}/{prefix_len} dev {zone.bridge}",
                f"link set {zone.bridge} up",
                f"link add v-{zone.name} type veth peer name eth0 netns {self.netns(zone.name)}",
                f"link set v-{zone.name} master {zone.bridge} up",
            ]
        _run([ip, "-n", router, "-batch", "-"], stdin="\n".join(lines) + "\n")
        for zone in t.ZONES:
            prefix_len = zone.cidr.split("/")[1]
            lines = ["link set lo up"]
            lines += [f"addr add {address}/{prefix_len} dev eth0" for address in zone.addresses]
            lines += ["link set eth0 up", f"route add {t.LAB_RANGE} via {zone.gateway}"]
            _run([ip, "-n", self.netns(zone.name), "-batch", "-"], stdin="\n".join(lines) + "\n")

    def _load_ruleset(self, policy: Iterable[Any], faults: Iterable[str]) -> None:
        ruleset = self.paths.run / "router.nft"
        ruleset.write_text(nft_ruleset(policy, faults))
        _run(self.command(t.ROUTER, _tool("nft"), "-f", str(ruleset)))

    def _write_configs(self, secrets: SnmpSecrets, faults: Iterable[str]) -> None:
        recommended = Path(MODSECURITY_RECOMMENDED).read_text(encoding="utf-8")
        persona = t.PERSONAS[self.persona]
        try:
            files = render_all(
                self.paths,
                recommended_modsecurity=recommended,
                persona=persona,
                secrets=secrets,
                faults=faults,
            )
        except LabConfigError as exc:
            raise LabError(str(exc)) from exc
        for path, text in files.items():
            path.write_text(text, encoding="utf-8")
        os.chmod(self.paths.snmp / "snmpd.conf", 0o600)

    def _daemons(self, tools: Mapping[str, str]) -> list[_Daemon]:
        paths = self.paths
        apps = [sys.executable, "-I", str(Path(__file__).with_name("apps.py"))]
        return [
            _Daemon(
                "waf",
                "dmz",
                (tools["apache2"], "-f", str(paths.apache / "httpd.conf"), "-k", "start"),
                (("tcp", *t.PORTAL),),
            ),
            _Daemon(
                "gateway",
                "dmz",
                (
                    tools["nginx"],
                    "-e", str(paths.log("nginx-error")),
                    "-p", f"{paths.nginx}/",
                    "-c", str(paths.nginx / "nginx.conf"),
                ),
                (("tcp", *t.GATEWAY),),
            ),
            _Daemon(
                "dmz-apps",
                "dmz",
                (
                    *apps,
                    "--pidfile", str(paths.pidfile("dmz-apps")),
                    f"portal-backend={t.PORTAL_BACKEND[0]}:{t.PORTAL_BACKEND[1]}",
                    f"booking={t.BOOKING[0]}:{t.BOOKING[1]}",
                ),
                (("tcp", *t.PORTAL_BACKEND), ("tcp", *t.BOOKING)),
            ),
            _Daemon(
                "his-apps",
                "his",
                (
                    *apps,
                    "--pidfile", str(paths.pidfile("his-apps")),
                    "--cert", str(paths.pki / "his-web.crt"),
                    "--key", str(paths.pki / "his-web.key"),
                    f"db={t.DATABASE[0]}:{t.DATABASE[1]}",
                    f"his-web={t.HIS_WEB[0]}:{t.HIS_WEB[1]}",
                ),
                (("tcp", *t.DATABASE), ("tcp", *t.HIS_WEB)),
            ),
            _Daemon(
                "snmpd",
                t.ROUTER,
                (
                    tools["snmpd"],
                    "-C", "-c", str(paths.snmp / "snmpd.conf"),
                    "-p", str(paths.pidfile("snmpd")),
                    "-Lf", str(paths.log("snmpd")),
                ),
                (("udp", *t.SNMP_AGENT),),
                {"MIBS": "", "SNMP_PERSISTENT_DIR": str(paths.snmp / "persist")},
            ),
            _Daemon(
                "sshd",
                "office",
                (tools["sshd"], "-f", str(paths.ssh / "sshd_config"), "-E", str(paths.log("sshd"))),
                (("tcp", *t.SSH_VANTAGE),),
            ),
        ]  # fmt: skip

    def _start_daemons(self, state: _State, tools: Mapping[str, str]) -> None:
        os.makedirs("/run/sshd", mode=0o755, exist_ok=True)  # sshd's privilege separation dir
        daemons = self._daemons(tools)
        launched: list[tuple[_Daemon, subprocess.Popen[bytes], IO[bytes]]] = []
        try:
            for daemon in daemons:
                state.daemons[daemon.name] = {
                    "netns": self.netns(daemon.zone),
                    "pidfile": str(self.paths.pidfile(daemon.name)),
                    "argv": list(daemon.argv),
                }
                log: IO[bytes] = open(self.paths.log(f"{daemon.name}.start"), "ab")  # noqa: SIM115
                process = subprocess.Popen(
                    self.command(daemon.zone, *daemon.argv),
                    stdin=subprocess.DEVNULL,
                    stdout=log,
                    stderr=log,
                    env={**_BASE_ENV, **daemon.env},
                    start_new_session=True,
                )
                launched.append((daemon, process, log))
            self._save(state)
            for daemon, process, _ in launched:
                try:
                    code = process.wait(timeout=30)
                except subprocess.TimeoutExpired:
                    process.kill()
                    process.wait()
                    raise LabError(f"{daemon.name} did not start within 30 s") from None
                if code != 0:
                    raise LabError(
                        f"{daemon.name} failed to start (exit {code}): {self._log_tail(daemon)}"
                    )
        finally:
            for _, _, log in launched:
                log.close()
        self._wait_listening(daemons)
        for daemon in daemons:
            state.daemons[daemon.name]["pid"] = _read_pid(self.paths.pidfile(daemon.name))
        self._save(state)

    def _wait_listening(self, daemons: Sequence[_Daemon], timeout: float = 20.0) -> None:
        deadline = time.monotonic() + timeout
        pending = list(daemons)
        while pending:
            by_zone: dict[str, set[tuple[str, str, int]]] = {}
            still: list[_Daemon] = []
            for daemon in pending:
                if daemon.zone not in by_zone:
                    by_zone[daemon.zone] = ns.listening(self.netns(daemon.zone))
                # Apache writes its pid file after it starts listening.
                ready = set(daemon.listens) <= by_zone[daemon.zone]
                if not ready or _read_pid(self.paths.pidfile(daemon.name)) is None:
                    still.append(daemon)
            pending = still
            if pending and time.monotonic() > deadline:
                daemon = pending[0]
                raise LabError(
                    f"{daemon.name} is not ready (listening on {daemon.listens}, pid file) "
                    f"after {timeout:.0f} s: "
                    f"{self._log_tail(daemon)}"
                )
            if pending:
                time.sleep(0.02)

    def _log_tail(self, daemon: _Daemon) -> str:
        logs = {
            "waf": "apache-error",
            "gateway": "nginx-error",
            "snmpd": "snmpd",
            "sshd": "sshd",
        }
        tails = []
        for name in (f"{daemon.name}.start", logs.get(daemon.name, "")):
            path = self.paths.log(name) if name else None
            if path is not None and path.exists():
                text = path.read_text(errors="replace").strip().splitlines()[-3:]
                tails += text
        return " | ".join(tails) or "no log output"

    def _write_zones_and_secrets(self, zones_text: str, secrets: SnmpSecrets) -> None:
        document = secrets.as_json(self.netns("mgmt"), t.PERSONAS[self.persona])
        fd = os.open(self.paths.snmp_secrets, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            json.dump(document, handle, indent=2)
            handle.write("\n")
        # The zones file a scan of this lab needs, complete: the router's SNMP v3 credentials
        # (secrets in their own 0600 files, never in the zones file), the gateway's client
        # certificate, and lab-speed timing (answers come in microseconds).
        secret_dir = self.paths.root / "secrets"
        secret_dir.mkdir(mode=0o700, exist_ok=True)
        v3 = document["v3"]
        for name, value in (("snmp-auth", v3["auth_password"]), ("snmp-priv", v3["priv_password"])):
            fd = os.open(secret_dir / name, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
            with os.fdopen(fd, "w", encoding="utf-8") as handle:
                handle.write(value + "\n")
        extras = {
            "snmp": {
                "host": document["address"],
                "version": "3",
                "user": v3["user"],
                "auth_key_file": str(secret_dir / "snmp-auth"),
                "priv_key_file": str(secret_dir / "snmp-priv"),
                "auth_protocol": v3["auth_protocol"].lower(),
                "priv_protocol": v3["priv_protocol"].lower(),
            },
            "client_cert_file": str(self.paths.client_cert),
            "client_key_file": str(self.paths.client_key),
            "scan": dict(t.LAB_SCAN_TIMING),
        }
        self.paths.zones.write_text(render_zones(zones_text, self.prefix, self.paths, extras))

    # --- down --------------------------------------------------------------------------------

    def down(self, *, keep_logs: bool = False) -> DownReport:
        """Remove the lab: end every process inside its namespaces, delete the namespaces (their
        links go with them) and the lab folder (`keep_logs` keeps LAB/logs). Works from whatever
        is left: the state file is a hint, the namespaces are found by this lab's names."""
        started = time.monotonic()
        present = self.existing_namespaces()
        stopped = _end_processes(present)
        if present:
            _run([_tool("ip"), "-batch", "-"], stdin="".join(f"netns del {n}\n" for n in present))
        left = self.existing_namespaces()
        if left:
            raise LabError(f"could not delete namespaces {', '.join(left)}")
        removed = False
        if self.paths.marker.exists():
            _clear_folder(self.paths.root, keep=("logs",) if keep_logs else ())
            if not keep_logs:
                shutil.rmtree(self.paths.root, ignore_errors=True)
            removed = True
        return DownReport(present, stopped, removed, round(time.monotonic() - started, 3))

    # --- status and faults -------------------------------------------------------------------

    def _load(self) -> _State | None:
        try:
            raw = json.loads(self.paths.state.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return None
        if not isinstance(raw, dict) or raw.get("version") != STATE_VERSION:
            return None
        known = _State.__dataclass_fields__
        try:
            return _State(**{key: value for key, value in raw.items() if key in known})
        except TypeError:
            return None

    def _save(self, state: _State) -> None:
        temporary = self.paths.state.with_suffix(".tmp")
        temporary.write_text(json.dumps(asdict(state), indent=2) + "\n", encoding="utf-8")
        temporary.replace(self.paths.state)

    def status(self) -> LabStatus:
        state = self._load()
        namespaces = {name: os.path.exists(ns.netns_path(name)) for name in self._namespaces()}
        daemons = []
        for name, entry in (state.daemons if state else {}).items():
            netns_name = str(entry.get("netns", ""))
            pid = _read_pid(Path(entry["pidfile"])) if entry.get("pidfile") else None
            daemons.append(DaemonStatus(name, netns_name, pid, _alive_in(pid, netns_name)))
        if state is not None:
            phase = state.phase
        else:
            phase = "building" if any(namespaces.values()) else "absent"
        return LabStatus(
            self.prefix,
            str(self.paths.root),
            phase,
            namespaces,
            daemons,
            sorted(state.faults) if state else [],
        )

    def faults(self) -> frozenset[str]:
        state = self._load()
        return frozenset(state.faults) if state else frozenset()

    def fault(self, name: str, on: bool) -> None:
        """Switch one fault on or off (idempotent); returns once the lab behaves accordingly."""
        if name not in t.FAULTS:
            raise LabError(f"unknown fault {name!r}: one of {', '.join(t.FAULTS)}")
        state = self._load()
        if state is None or state.phase != "up" or not all(self.status().namespaces.values()):
            raise LabError(f"lab {self.prefix!r} in {self.paths.root} is not up")
        active = set(state.faults)
        if on:
            active.add(name)
        else:
            active.discard(name)
        if name in t.ROUTER_FAULTS:
            self._load_ruleset(parse_policy(_zones_template()), active)
        elif name == t.FAULT_WAF_BYPASS:
            self._switch_daemon_file(
                self.paths.apache / "engine.conf",
                active,
                daemon="waf",
                reload_signal=signal.SIGHUP,
                effective=lambda: self._portal_attack_status() == (200 if on else 403),
            )
        else:
            self._switch_daemon_file(
                self.paths.nginx / "tls.conf",
                active,
                daemon="gateway",
                reload_signal=signal.SIGHUP,
                effective=lambda: self._gateway_accepts_tls10() is on,
            )
        state.faults = sorted(active)
        self._save(state)

    def _switch_daemon_file(
        self,
        path: Path,
        active: set[str],
        *,
        daemon: str,
        reload_signal: signal.Signals,
        effective: Callable[[], bool],
        timeout: float = 15.0,
    ) -> None:
        text = (
            modsecurity_engine_conf(t.FAULT_WAF_BYPASS in active)
            if daemon == "waf"
            else nginx_tls_conf(t.FAULT_TLS10 in active)
        )
        if path.read_text(encoding="utf-8") != text:
            path.write_text(text, encoding="utf-8")
            pid = _read_pid(self.paths.pidfile(daemon))
            if pid is None or not _alive_in(pid, self.netns("dmz")):
                raise LabError(f"{daemon} is not running: `medsec lab down` then `up`")
            os.kill(pid, reload_signal)
        # An old worker may answer once more after the signal: wait for two answers in a row.
        deadline = time.monotonic() + timeout
        confirmed = 0
        while confirmed < 2:
            confirmed = confirmed + 1 if effective() else 0
            if confirmed < 2:
                if time.monotonic() > deadline:
                    raise LabError(f"{daemon} did not take the new configuration in {timeout} s")
                time.sleep(0.05)

    def _portal_attack_status(self) -> int:
        """Status of an XSS probe to the portal, sent from inside the dmz (0: no answer)."""
        request = (
            "GET /?q=%3Cscript%3Ealert(1)%3C%2Fscript%3E HTTP/1.1\r\n"
            "Host: portal.hospital.lab\r\nUser-Agent: medsec-lab-selfcheck\r\n"
            "Accept: */*\r\nConnection: close\r\n\r\n"
        )
        try:
            with ns.connect(self.netns("dmz"), *t.PORTAL, timeout=2.0) as connection:
                connection.sendall(request.encode())
                head = connection.recv(64).decode("latin-1")
        except OSError:
            return 0
        parts = head.split()
        return int(parts[1]) if len(parts) > 1 and parts[1].isdigit() else 0

    def _gateway_accepts_tls10(self) -> bool:
        """Whether the gateway completes a TLS 1.0 handshake (client at SECLEVEL=0)."""
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
        context.set_ciphers("DEFAULT:@SECLEVEL=0")
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)
            context.minimum_version = ssl.TLSVersion.TLSv1
            context.maximum_version = ssl.TLSVersion.TLSv1
        try:
            with (
                ns.connect(self.netns("dmz"), *t.GATEWAY, timeout=2.0) as connection,
                context.wrap_socket(connection) as tls,
            ):
                return tls.version() == "TLSv1"
        except OSError:
            return False


# --- helpers ----------------------------------------------------------------------------------


def _tool(name: str) -> str:
    path = shutil.which(name, path=_SYSTEM_PATH)
    if path is None:
        raise LabUnavailable(f"{name} is not installed (Debian package {_TOOLS.get(name, name)})")
    return path


def _preflight() -> dict[str, str]:
    if os.geteuid() != 0:
        raise LabUnavailable("the lab needs root (network namespaces, nftables, daemons)")
    tools = {name: _tool(name) for name in _TOOLS}
    try:
        pwd.getpwnam("www-data")  # the web servers' workers
    except KeyError:
        raise LabUnavailable("user www-data is missing (Debian package base-passwd)") from None
    for path, package in _FILES.items():
        if not os.path.exists(path):
            raise LabUnavailable(f"{path} is missing (Debian package {package})")
    return tools


def _run(argv: Sequence[str], *, stdin: str | None = None, timeout: float = 20.0) -> str:
    try:
        done = subprocess.run(
            list(argv),
            input=stdin,
            capture_output=True,
            text=True,
            timeout=timeout,
            env=_BASE_ENV,
            check=False,
        )
    except subprocess.TimeoutExpired as exc:
        raise LabError(f"{' '.join(argv)}: no answer in {timeout} s") from exc
    except OSError as exc:
        raise LabError(f"{' '.join(argv)}: {exc}") from exc
    if done.returncode != 0:
        message = (done.stderr or done.stdout).strip().replace("\n", " | ")
        raise LabError(f"{' '.join(argv)}: exit {done.returncode}: {message}")
    return done.stdout


def _check_traversable(folder: Path) -> None:
    """sshd (as the probe user) and the web servers' workers (www-data) must reach LAB."""
    for ancestor in (folder, *folder.parents):
        if ancestor.exists() and not ancestor.stat().st_mode & stat.S_IXOTH:
            raise LabError(
                f"{ancestor} is not traversable by other users (mode "
                f"{stat.filemode(ancestor.stat().st_mode)}): put the lab folder elsewhere"
            )


def _clear_folder(root: Path, keep: Iterable[str]) -> None:
    kept = set(keep)
    for entry in root.iterdir():
        if entry.name in kept:
            continue
        if entry.is_dir() and not entry.is_symlink():
            shutil.rmtree(entry, ignore_errors=True)
        else:
            entry.unlink(missing_ok=True)


def _read_pid(path: Path) -> int | None:
    try:
        text = path.read_text(encoding="ascii").strip()
    except OSError:
        return None
    return int(text) if text.isdigit() else None


def _namespace_id(path: str) -> tuple[int, int] | None:
    try:
        info = os.stat(path)
    except OSError:
        return None
    return info.st_dev, info.st_ino


def _is_zombie(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat", encoding="ascii", errors="replace") as handle:
            return handle.read().rsplit(")", 1)[1].split()[0] == "Z"
    except (OSError, IndexError):
        return True


def _alive_in(pid: int | None, netns_name: str) -> bool:
    if pid is None or _is_zombie(pid):
        return False
    wanted = _namespace_id(ns.netns_path(netns_name))
    return wanted is not None and _namespace_id(f"/proc/{pid}/ns/net") == wanted


def processes_in(namespaces: Iterable[str]) -> list[int]:
    """Live processes whose network namespace is one of these (like `ip netns pids`)."""
    wanted = {ident for name in namespaces if (ident := _namespace_id(ns.netns_path(name)))}
    if not wanted:
        return []
    found = []
    for entry in os.listdir("/proc"):
        if (
            entry.isdigit()
            and _namespace_id(f"/proc/{entry}/ns/net") in wanted
            and not _is_zombie(int(entry))
        ):
            found.append(int(entry))
    return found


def _end_processes(namespaces: Sequence[str], grace: float = 3.0) -> int:
    """SIGTERM every process inside the namespaces, SIGKILL what is left after `grace`."""
    ended: set[int] = set()
    for sig, wait in ((signal.SIGTERM, grace), (signal.SIGKILL, 5.0)):
        pids = processes_in(namespaces)
        for pid in pids:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, sig)
        ended |= set(pids)
        deadline = time.monotonic() + wait
        while processes_in(namespaces) and time.monotonic() < deadline:
            time.sleep(0.02)
    left = processes_in(namespaces)
    if left:
        raise LabError(f"processes {left} inside {', '.join(namespaces)} did not end")
    return len(ended)


def _ensure_probe_user() -> None:
    """The SSH vantage's account: made if absent, unlocked ('*') if locked (`useradd` default)."""
    try:
        pwd.getpwnam(t.PROBE_USER)
    except KeyError:
        _run(
            [
                _tool("useradd"),
                "--system",
                "--no-create-home",
                "--home-dir", "/",
                "--shell", "/bin/sh",
                "--comment", "medsec lab SSH vantage",
                t.PROBE_USER,
            ]
        )  # fmt: skip
    shadow = Path("/etc/shadow").read_text(encoding="utf-8", errors="replace")
    for line in shadow.splitlines():
        fields = line.split(":")
        if fields[0] == t.PROBE_USER and len(fields) > 1 and fields[1].startswith("!"):
            _run([_tool("usermod"), "-p", "*", t.PROBE_USER])
