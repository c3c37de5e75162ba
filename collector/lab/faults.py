"""The faults a daemon carries (the WAF bypass, TLS 1.0 at the ZTNA gateway): rewrite the one
configuration file the fault lives in, have the daemon reload it, and return only once the lab
behaves accordingly, as seen by a request from inside the dmz. (The router's faults are its
ruleset: `network.load_ruleset`.)
"""

from __future__ import annotations

import os
import signal
import ssl
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from collector.lab import legacy_tls
from collector.lab import netns as ns
from collector.lab import topology as t
from collector.lab.configs import (
    LabPaths,
    modsecurity_engine_conf,
    nginx_client_verify_conf,
    nginx_locations_conf,
    nginx_tls_conf,
)
from collector.lab.host import LabError
from collector.lab.pki import stranger_client
from collector.lab.processes import alive_in, read_pid


@dataclass(frozen=True)
class _DaemonFault:
    daemon: str
    file: Callable[[LabPaths], Path]
    text: Callable[[bool], str]
    """The file's text with the fault on (True) or off."""
    effective: Callable[[str, bool], bool]
    """Whether the lab, seen from the dmz's namespace, behaves as the fault on or off says."""
    before: Callable[[LabPaths, bool], None] | None = None
    """Done before the daemon reloads (a second file the fault lives in)."""


def _portal_filter(paths: LabPaths, on: bool) -> None:
    (paths.root / t.PORTAL_FILTER_FILE).write_text("on\n" if on else "off\n", encoding="utf-8")


DAEMON_FAULTS: dict[str, _DaemonFault] = {
    t.FAULT_WAF_BYPASS: _DaemonFault(
        "waf",
        lambda paths: paths.apache / "engine.conf",
        modsecurity_engine_conf,
        lambda dmz, on: portal_attack_status(dmz) == (200 if on else 403),
    ),
    t.FAULT_WAF_DETECTION_ONLY: _DaemonFault(
        "waf",
        lambda paths: paths.apache / "engine.conf",
        modsecurity_engine_conf,
        lambda dmz, on: portal_attack_status(dmz) == (200 if on else 403),
    ),
    t.FAULT_APP_FILTER: _DaemonFault(
        "waf",
        lambda paths: paths.apache / "engine.conf",
        lambda on: modsecurity_engine_conf(False, app_filter=on),
        # The app refuses the XSS probe either way; a command injection shows who answers.
        lambda dmz, on: portal_attack_status(dmz, CMDI_QUERY) == (200 if on else 403),
        _portal_filter,
    ),
    t.FAULT_TLS10: _DaemonFault(
        "gateway",
        lambda paths: paths.nginx / "tls.conf",
        nginx_tls_conf,
        lambda dmz, on: gateway_accepts_tls10(dmz) is on,
    ),
    t.FAULT_ZTNA_ANY_CERT: _DaemonFault(
        "gateway",
        lambda paths: paths.nginx / "client-verify.conf",
        nginx_client_verify_conf,
        lambda dmz, on: gateway_status(dmz, "/", stranger=True) == (200 if on else 400),
    ),
    t.FAULT_ZTNA_OPEN_PATH: _DaemonFault(
        "gateway",
        lambda paths: paths.nginx / "locations.conf",
        nginx_locations_conf,
        lambda dmz, on: gateway_status(dmz, "/api/") == (200 if on else 400),
    ),
}


def switch(name: str, on: bool, *, paths: LabPaths, dmz: str) -> None:
    """Switch one of `DAEMON_FAULTS` (or `tls-camellia`) on or off; `dmz` is the dmz's namespace."""
    if name == t.FAULT_TLS_CAMELLIA:
        legacy_tls.switch(on, paths=paths, dmz=dmz)
        return
    fault = DAEMON_FAULTS[name]
    if fault.before is not None:
        fault.before(paths, on)
    _switch_daemon_file(
        fault.file(paths),
        fault.text(on),
        paths=paths,
        daemon=fault.daemon,
        netns=dmz,
        effective=lambda: fault.effective(dmz, on),
    )


def _switch_daemon_file(
    path: Path,
    text: str,
    *,
    paths: LabPaths,
    daemon: str,
    netns: str,
    effective: Callable[[], bool],
    reload_signal: signal.Signals = signal.SIGHUP,
    timeout: float = 15.0,
) -> None:
    if path.read_text(encoding="utf-8") != text:
        path.write_text(text, encoding="utf-8")
        pid = read_pid(paths.pidfile(daemon))
        if pid is None or not alive_in(pid, netns):
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


XSS_QUERY = "q=%3Cscript%3Ealert(1)%3C%2Fscript%3E"
CMDI_QUERY = "host=127.0.0.1%3Bcat%20%2Fetc%2Fpasswd"


def portal_attack_status(dmz: str, query: str = XSS_QUERY) -> int:
    """Status of an attack probe (XSS by default) to the portal, sent from inside the dmz
    (0: no answer)."""
    request = (
        f"GET /?{query} HTTP/1.1\r\n"
        "Host: portal.hospital.lab\r\nUser-Agent: medsec-lab-selfcheck\r\n"
        "Accept: */*\r\nConnection: close\r\n\r\n"
    )
    try:
        with ns.connect(dmz, *t.PORTAL, timeout=2.0) as connection:
            connection.sendall(request.encode())
            head = connection.recv(64).decode("latin-1")
    except OSError:
        return 0
    parts = head.split()
    return int(parts[1]) if len(parts) > 1 and parts[1].isdigit() else 0


def gateway_accepts_tls10(netns: str) -> bool:
    """Whether the gateway completes a TLS 1.0 handshake with a client (at SECLEVEL=0) inside
    the namespace `netns`."""
    return legacy_tls.speaks_tls10(netns, t.GATEWAY, "DEFAULT:@SECLEVEL=0")


def gateway_status(netns: str, path: str, *, stranger: bool = False) -> int:
    """Status of a GET of `path` at the gateway from inside `netns`, with no client certificate
    or (`stranger`) with one from a CA the gateway does not trust (0: no answer)."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    request = (
        f"GET {path} HTTP/1.1\r\nHost: ztna.hospital.lab\r\n"
        "User-Agent: medsec-lab-selfcheck\r\nConnection: close\r\n\r\n"
    )
    try:
        with tempfile.TemporaryDirectory(prefix="medsec-lab-") as folder:
            if stranger:
                cert, key = stranger_client()
                (Path(folder) / "c.pem").write_bytes(cert + key)
                context.load_cert_chain(Path(folder) / "c.pem")
        with (
            ns.connect(netns, *t.GATEWAY, timeout=2.0) as connection,
            context.wrap_socket(connection, server_hostname="ztna.hospital.lab") as tls,
        ):
            tls.sendall(request.encode())
            head = tls.recv(64).decode("latin-1")
    except OSError:
        return 0
    parts = head.split()
    return int(parts[1]) if len(parts) > 1 and parts[1].isdigit() else 0
