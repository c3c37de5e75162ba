"""A real software TPM for tests: `swtpm socket --tpm2` on free loopback ports with its state in a
temporary folder, plus EK-certificate provisioning with swtpm's own tooling (`swtpm_setup` driving
`swtpm_localca`), configured so that nothing is written outside that folder.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path

SWTPM = "swtpm"
SWTPM_SETUP = "swtpm_setup"
SWTPM_LOCALCA = "swtpm_localca"


class SwtpmError(RuntimeError):
    """swtpm or its tooling did not start or failed; the message carries its log."""


def swtpm_binary() -> str | None:
    return shutil.which(SWTPM)


def _free_port_pair() -> tuple[int, int]:
    """Two consecutive free loopback ports: the swtpm TCTI expects the control channel at port+1."""
    for _ in range(50):
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as first:
            first.bind(("127.0.0.1", 0))
            port = int(first.getsockname()[1])
            if port >= 65535:
                continue
            with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as second:
                try:
                    second.bind(("127.0.0.1", port + 1))
                except OSError:
                    continue
                return port, port + 1
    raise SwtpmError("no two consecutive free loopback ports")


def _accepts(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.2):
            return True
    except OSError:
        return False


@dataclass
class Swtpm:
    """A running `swtpm socket --tpm2`; `tcti` is what tpm2-pytss and tpm2-tools take."""

    state_dir: Path
    port: int
    ctrl_port: int
    process: subprocess.Popen[bytes] = field(repr=False)
    log: Path

    @property
    def tcti(self) -> str:
        return f"swtpm:host=127.0.0.1,port={self.port}"

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=5)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=5)


def start_swtpm(
    state_dir: Path, *, startup_clear: bool = True, timeout: float = 5.0, attempts: int = 3
) -> Swtpm:
    """Start swtpm on free loopback ports P and P+1 (server, control), Startup(CLEAR) done, and
    wait until both accept. A port picked free can be taken before swtpm binds it; swtpm then
    exits and we retry. `startup_clear=False` leaves the TPM as firmware that never sent
    TPM2_Startup would: every command answers TPM_RC_INITIALIZE.
    """
    exe = swtpm_binary()
    if exe is None:
        raise SwtpmError("swtpm is not installed")
    state_dir.mkdir(parents=True, exist_ok=True)
    log = state_dir.parent / f"{state_dir.name}.swtpm.log"
    last = ""
    for _ in range(attempts):
        port, ctrl_port = _free_port_pair()
        argv = [
            exe, "socket", "--tpm2",
            "--server", f"type=tcp,port={port},bindaddr=127.0.0.1",
            "--ctrl", f"type=tcp,port={ctrl_port},bindaddr=127.0.0.1",
            "--tpmstate", f"dir={state_dir}",
            "--flags", "not-need-init,startup-clear" if startup_clear else "not-need-init",
            "--log", f"file={log}",
        ]  # fmt: skip
        # stderr to a file, not a pipe nobody drains while swtpm runs.
        with log.open("ab") as stderr:
            process = subprocess.Popen(
                argv, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=stderr
            )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline and process.poll() is None:
            if _accepts(port) and _accepts(ctrl_port):
                return Swtpm(state_dir, port, ctrl_port, process, log)
            time.sleep(0.01)
        if process.poll() is None:
            process.kill()
        process.wait(timeout=5)
        last = log.read_text(errors="replace").strip() if log.exists() else ""
    raise SwtpmError(f"swtpm did not start after {attempts} attempts: {last}")


def provision_ek_certificate(state_dir: Path, work_dir: Path, *, timeout: float = 60.0) -> Path:
    """Manufacture a TPM state in `state_dir` with RSA and ECC EKs and their certificates in NV.

    Runs `swtpm_setup --create-ek-cert --create-platform-cert --lock-nvram` before the socket
    server is started on that state. `swtpm_localca` creates a throw-away root CA and signing key
    under `work_dir` (its default statedir is /var/lib/swtpm-localca; TMPDIR and HOME point into
    `work_dir` too). Returns the issuing CA's certificate (PEM).
    """
    setup = shutil.which(SWTPM_SETUP)
    localca = shutil.which(SWTPM_LOCALCA)
    if setup is None or localca is None:
        raise SwtpmError("swtpm_setup or swtpm_localca is not installed (Debian: swtpm-tools)")
    ca_dir = work_dir / "localca"
    tmp_dir = work_dir / "tmp"
    for d in (state_dir, ca_dir, tmp_dir):
        d.mkdir(parents=True, exist_ok=True)
    localca_conf = work_dir / "swtpm-localca.conf"
    localca_conf.write_text(
        f"statedir = {ca_dir}\n"
        f"signingkey = {ca_dir}/signkey.pem\n"
        f"issuercert = {ca_dir}/issuercert.pem\n"
        f"certserial = {ca_dir}/certserial\n"
    )
    localca_options = work_dir / "swtpm-localca.options"
    localca_options.write_text(
        "--platform-manufacturer medsec-test\n--platform-version 2.1\n--platform-model swtpm\n"
    )
    setup_conf = work_dir / "swtpm_setup.conf"
    setup_conf.write_text(
        f"create_certs_tool = {localca}\n"
        f"create_certs_tool_config = {localca_conf}\n"
        f"create_certs_tool_options = {localca_options}\n"
        "active_pcr_banks = sha256\n"
    )
    log = work_dir / "swtpm_setup.log"
    argv = [
        setup, "--tpm2", "--tpmstate", str(state_dir),
        "--create-ek-cert", "--create-platform-cert", "--lock-nvram",
        "--config", str(setup_conf), "--logfile", str(log),
    ]  # fmt: skip
    env = {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "LC_ALL": "C",
        "TMPDIR": str(tmp_dir),
        "HOME": str(work_dir),
        "XDG_CONFIG_HOME": str(work_dir),
    }
    proc = subprocess.run(
        argv, capture_output=True, text=True, timeout=timeout, env=env, check=False,
        stdin=subprocess.DEVNULL,
    )  # fmt: skip
    if proc.returncode != 0:
        detail = log.read_text(errors="replace") if log.exists() else ""
        raise SwtpmError(f"swtpm_setup exited {proc.returncode}: {proc.stderr}\n{detail}")
    return ca_dir / "issuercert.pem"
