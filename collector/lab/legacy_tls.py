"""The fault `tls-camellia`: a legacy TLS service on a lab host that speaks TLS 1.0 and 1.1 only,
and only with CAMELLIA suites (none of which OpenSSL's DEFAULT list holds), as old medical
devices and appliances still do. `switch` starts or stops `openssl s_server` for it inside the
dmz and returns once a handshake from the dmz shows the lab behaves accordingly.
"""

from __future__ import annotations

import contextlib
import os
import signal
import ssl
import subprocess
import time
import warnings
from pathlib import Path

from collector.lab import netns as ns
from collector.lab import topology as t
from collector.lab.configs import LabPaths
from collector.lab.host import BASE_ENV, LabError, in_netns, run, tool
from collector.lab.processes import alive_in, read_pid

CIPHERS = "CAMELLIA:@SECLEVEL=0"
"""The server's suites: CAMELLIA with RSA and DHE-RSA key exchange (before TLS 1.2 CAMELLIA has no
ECDSA form, hence the RSA key). Level 0, or OpenSSL 3 refuses TLS 1.0/1.1 itself."""
_NAME = "legacy-tls"


def _pair(paths: LabPaths) -> tuple[Path, Path]:
    cert, key = paths.pki / f"{_NAME}.crt", paths.pki / f"{_NAME}.key"
    if not (cert.exists() and key.exists()):
        run(
            [
                tool("openssl"), "req", "-x509", "-newkey", "rsa:2048", "-nodes",
                "-keyout", str(key), "-out", str(cert), "-days", "30",
                "-subj", "/CN=legacy-device.hospital.lab",
            ]
        )  # fmt: skip
        os.chmod(key, 0o600)
    return cert, key


def speaks_tls10(netns: str, endpoint: tuple[str, int], ciphers: str) -> bool:
    """Whether `endpoint` completes a TLS 1.0 handshake offering `ciphers`, from inside `netns`."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    context.set_ciphers(ciphers)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        context.minimum_version = ssl.TLSVersion.TLSv1
        context.maximum_version = ssl.TLSVersion.TLSv1
    try:
        with (
            ns.connect(netns, *endpoint, timeout=2.0) as connection,
            context.wrap_socket(connection) as tls,
        ):
            return tls.version() == "TLSv1"
    except OSError:
        return False


def accepts_camellia_tls10(netns: str) -> bool:
    """Whether LEGACY_TLS completes a TLS 1.0 handshake offering CAMELLIA only, from `netns`."""
    return speaks_tls10(netns, t.LEGACY_TLS, CIPHERS)


def _reap(pid: int) -> None:
    # Started by an earlier call of this process, the server is its child: collect its status.
    with contextlib.suppress(ChildProcessError, OSError):
        os.waitpid(pid, os.WNOHANG)


def switch(on: bool, *, paths: LabPaths, dmz: str, timeout: float = 15.0) -> None:
    """Start (on) or stop the legacy server in the dmz namespace `dmz` (idempotent)."""
    pidfile = paths.pidfile(_NAME)
    pid = read_pid(pidfile)
    running = pid is not None and alive_in(pid, dmz)
    if on and not running:
        cert, key = _pair(paths)
        address, port = t.LEGACY_TLS
        with open(paths.log(_NAME), "ab") as log:
            process = subprocess.Popen(
                in_netns(
                    dmz, tool("openssl"), "s_server", "-accept", f"{address}:{port}",
                    "-cert", str(cert), "-key", str(key), "-cipher", CIPHERS,
                    "-min_protocol", "TLSv1", "-max_protocol", "TLSv1.1", "-www", "-quiet",
                ),
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=log,
                env=BASE_ENV,
                start_new_session=True,
            )  # fmt: skip
        # `ip netns exec` execs the command, so this is the server's own pid.
        pidfile.write_text(f"{process.pid}\n", encoding="utf-8")
    elif not on and running and pid is not None:
        os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + timeout
    while accepts_camellia_tls10(dmz) is not on:
        if pid is not None and not on:
            _reap(pid)
        if time.monotonic() > deadline:
            raise LabError(
                f"the legacy TLS server did not {'start' if on else 'stop'} in {timeout:.0f} s "
                f"(log {paths.log(_NAME)})"
            )
        time.sleep(0.05)
    if not on:
        if pid is not None:
            _reap(pid)
        pidfile.unlink(missing_ok=True)
