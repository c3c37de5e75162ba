"""The lab's daemons: their configuration files written under LAB, which daemon runs in which
namespace with which files (`specs`), starting them all at once and waiting until each listens
and has written its pid file (`start`), and the log lines that say why one did not. Every daemon
keeps its pid file, logs and runtime files inside LAB.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO

from collector.lab import netns as ns
from collector.lab import topology as t
from collector.lab.configs import (
    MODSECURITY_RECOMMENDED,
    LabConfigError,
    LabPaths,
    SnmpSecrets,
    render_all,
)
from collector.lab.host import BASE_ENV, LabError, in_netns
from collector.lab.processes import read_pid
from collector.lab.state import State

_START_TIMEOUT = 30.0
# Where a daemon writes why it failed, besides what its launcher printed.
_ERROR_LOGS = {"waf": "apache-error", "gateway": "nginx-error", "snmpd": "snmpd", "sshd": "sshd"}


@dataclass(frozen=True)
class Daemon:
    name: str
    zone: str
    argv: tuple[str, ...]
    listens: tuple[tuple[str, str, int], ...]
    env: Mapping[str, str] = field(default_factory=dict)


def write_configs(
    paths: LabPaths, persona: t.Persona, secrets: SnmpSecrets, faults: Iterable[str]
) -> None:
    """Every daemon's configuration under LAB, for the faults given."""
    recommended = Path(MODSECURITY_RECOMMENDED).read_text(encoding="utf-8")
    try:
        files = render_all(
            paths,
            recommended_modsecurity=recommended,
            persona=persona,
            secrets=secrets,
            faults=faults,
        )
    except LabConfigError as exc:
        raise LabError(str(exc)) from exc
    for path, text in files.items():
        path.write_text(text, encoding="utf-8")
    os.chmod(paths.snmp / "snmpd.conf", 0o600)


def specs(paths: LabPaths, tools: Mapping[str, str]) -> list[Daemon]:
    apps = [sys.executable, "-I", str(Path(__file__).with_name("apps.py"))]
    return [
        Daemon(
            "waf",
            "dmz",
            (tools["apache2"], "-f", str(paths.apache / "httpd.conf"), "-k", "start"),
            (("tcp", *t.PORTAL),),
        ),
        Daemon(
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
        Daemon(
            "dmz-apps",
            "dmz",
            (
                *apps,
                "--pidfile", str(paths.pidfile("dmz-apps")),
                "--portal-filter", str(paths.root / t.PORTAL_FILTER_FILE),
                f"portal-backend={t.PORTAL_BACKEND[0]}:{t.PORTAL_BACKEND[1]}",
                f"booking={t.BOOKING[0]}:{t.BOOKING[1]}",
            ),
            (("tcp", *t.PORTAL_BACKEND), ("tcp", *t.BOOKING)),
        ),
        Daemon(
            "his-apps",
            "his",
            (
                *apps,
                "--pidfile", str(paths.pidfile("his-apps")),
                "--cert", str(paths.pki / "his-web.crt"),
                "--key", str(paths.pki / "his-web.key"),
                f"db={t.DATABASE[0]}:{t.DATABASE[1]}",
                f"sqlserver={t.DATABASE_SQLSERVER[0]}:{t.DATABASE_SQLSERVER[1]}",
                f"his-web={t.HIS_WEB[0]}:{t.HIS_WEB[1]}",
            ),
            (("tcp", *t.DATABASE), ("tcp", *t.DATABASE_SQLSERVER), ("tcp", *t.HIS_WEB)),
        ),
        Daemon(
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
        Daemon(
            "sshd",
            "office",
            (tools["sshd"], "-f", str(paths.ssh / "sshd_config"), "-E", str(paths.log("sshd"))),
            (("tcp", *t.SSH_VANTAGE),),
        ),
    ]  # fmt: skip


def start(
    daemons: Sequence[Daemon],
    *,
    paths: LabPaths,
    prefix: str,
    state: State,
    save: Callable[[], None],
) -> None:
    """Launch every daemon at once inside its zone's namespace, record each in `state` (saved
    before waiting, so `down` finds them after a crash) and wait until all are ready."""
    os.makedirs("/run/sshd", mode=0o755, exist_ok=True)  # sshd's privilege separation dir
    launched: list[tuple[Daemon, subprocess.Popen[bytes], IO[bytes]]] = []
    try:
        for daemon in daemons:
            state.daemons[daemon.name] = {
                "netns": prefix + daemon.zone,
                "pidfile": str(paths.pidfile(daemon.name)),
                "argv": list(daemon.argv),
            }
            log: IO[bytes] = open(paths.log(f"{daemon.name}.start"), "ab")  # noqa: SIM115
            process = subprocess.Popen(
                in_netns(prefix + daemon.zone, *daemon.argv),
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=log,
                env={**BASE_ENV, **daemon.env},
                start_new_session=True,
            )
            launched.append((daemon, process, log))
        save()
        for daemon, process, _ in launched:
            try:
                code = process.wait(timeout=_START_TIMEOUT)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
                raise LabError(
                    f"{daemon.name} did not start within {_START_TIMEOUT:.0f} s"
                ) from None
            if code != 0:
                raise LabError(
                    f"{daemon.name} failed to start (exit {code}): {log_tail(paths, daemon)}"
                )
    finally:
        for _, _, log in launched:
            log.close()
    _wait_listening(daemons, paths, prefix)
    for daemon in daemons:
        state.daemons[daemon.name]["pid"] = read_pid(paths.pidfile(daemon.name))
    save()


def _wait_listening(
    daemons: Sequence[Daemon], paths: LabPaths, prefix: str, timeout: float = 20.0
) -> None:
    deadline = time.monotonic() + timeout
    pending = list(daemons)
    while pending:
        by_zone: dict[str, set[tuple[str, str, int]]] = {}
        still: list[Daemon] = []
        for daemon in pending:
            if daemon.zone not in by_zone:
                by_zone[daemon.zone] = ns.listening(prefix + daemon.zone)
            # Apache writes its pid file after it starts listening.
            ready = set(daemon.listens) <= by_zone[daemon.zone]
            if not ready or read_pid(paths.pidfile(daemon.name)) is None:
                still.append(daemon)
        pending = still
        if pending and time.monotonic() > deadline:
            daemon = pending[0]
            raise LabError(
                f"{daemon.name} is not ready (listening on {daemon.listens}, pid file) "
                f"after {timeout:.0f} s: "
                f"{log_tail(paths, daemon)}"
            )
        if pending:
            time.sleep(0.02)


def log_tail(paths: LabPaths, daemon: Daemon) -> str:
    """The last lines of what the daemon's launcher and the daemon itself logged."""
    tails = []
    for name in (f"{daemon.name}.start", _ERROR_LOGS.get(daemon.name, "")):
        path = paths.log(name) if name else None
        if path is not None and path.exists():
            text = path.read_text(errors="replace").strip().splitlines()[-3:]
            tails += text
    return " | ".join(tails) or "no log output"
