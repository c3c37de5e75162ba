"""`medsec init` (a collector folder: settings, TLS pair, audit key, database) and `medsec
serve` (the HTTPS API in this process or in N uvicorn workers). Exit codes and one-line errors as
in collector/cli.py, whose helpers these use.
"""

from __future__ import annotations

import argparse
import os
import signal
import socket
import sys
from pathlib import Path
from types import FrameType
from typing import TYPE_CHECKING

from collector.cli import EXIT_OK, PROG, UsageError, _audit, _open_store
from collector.settings import (
    MAX_WORKERS,
    AuditSettings,
    CollectorSettings,
    TlsSettings,
    check_host,
    load_settings,
    parse_listen,
    render_settings,
    write_audit_key,
)

if TYPE_CHECKING:
    import uvicorn


def cmd_init(args: argparse.Namespace) -> int:
    from collector.tls import make_self_signed

    folder: Path = args.dir.expanduser().resolve()
    config = folder / "collector.yaml"
    if config.exists():
        raise UsageError(f"{config} already exists; not overwriting it")
    try:
        hostnames = [check_host(h) for h in args.hostname]
    except ValueError as exc:
        raise UsageError(f"--hostname: {exc}") from None
    local = socket.gethostname()
    if local not in hostnames and _is_name(local):
        hostnames.append(local)
    try:
        folder.mkdir(parents=True, exist_ok=True, mode=0o750)
    except OSError as exc:
        raise UsageError(f"cannot create {folder}: {exc.strerror}") from None
    tls = folder / "tls"
    cert, key = tls / "cert.pem", tls / "key.pem"
    make_self_signed(cert, key, hostnames)
    audit_key_file = folder / "audit.key"
    try:
        write_audit_key(audit_key_file)
    except FileExistsError:
        raise UsageError(f"{audit_key_file} already exists; not overwriting it") from None
    settings = CollectorSettings(
        tls=TlsSettings(cert_file=str(cert), key_file=str(key)),
        database=f"sqlite:///{folder / 'medsec.db'}",
        audit=AuditSettings(key_file=str(audit_key_file)),
    )
    try:
        _init_store_and_settings(settings, folder, config)
    except BaseException:
        audit_key_file.unlink()  # so that `init` can be run again once the problem is fixed
        raise
    print(f"settings:    {config}")
    print(f"certificate: {cert}  (give it to agents as their ca_file)")
    print(f"private key: {key}  (mode 0600)")
    print(f"audit key:   {audit_key_file}  (mode 0600; back it up: the audit log verifies with it)")
    print(f"database:    {settings.database}")
    print(f"names:       localhost, 127.0.0.1{''.join(', ' + h for h in hostnames)}")
    print(f"next: {PROG} serve --config {config}")
    return EXIT_OK


def _init_store_and_settings(settings: CollectorSettings, folder: Path, config: Path) -> None:
    store = _open_store(settings)
    try:
        store.upgrade()
        _audit(store, f"init {folder}", str(EXIT_OK))
    finally:
        store.close()
    try:
        # O_EXCL: two `medsec init` racing on one folder cannot both write the settings.
        fd = os.open(config, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        raise UsageError(f"{config} already exists; not overwriting it") from None
    with os.fdopen(fd, "w", encoding="utf-8") as out:
        out.write(render_settings(settings))


def _is_name(host: str) -> bool:
    try:
        check_host(host)
    except ValueError:
        return False
    return True


def _listen_socket(host: str, port: int) -> socket.socket:
    """The listening socket, bound here so a busy port is one clear line, not a traceback."""
    try:
        family, kind, proto, _, address = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)[0]
    except socket.gaierror as exc:
        raise UsageError(f"cannot resolve {host}: {exc.strerror}") from None
    sock = socket.socket(family, kind, proto)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind(address)
    except OSError as exc:
        sock.close()
        raise UsageError(f"cannot listen on {host}:{port}: {exc.strerror}") from None
    sock.set_inheritable(True)
    return sock


def cmd_serve(args: argparse.Namespace) -> int:
    from collector.tls import uvicorn_config

    settings = load_settings(args.config)
    try:
        host, port = parse_listen(args.listen) if args.listen else (settings.host, settings.port)
    except ValueError as exc:
        raise UsageError(f"--listen: {exc} (value: {args.listen!r})") from None
    workers = settings.workers if args.workers is None else args.workers
    if not 1 <= workers <= MAX_WORKERS:
        raise UsageError(f"--workers: must be between 1 and {MAX_WORKERS} (value: {workers})")
    tls = settings.tls
    from collector.serve import log_medsec_events

    log_medsec_events()
    store = _open_store(settings)
    try:
        store.upgrade()
        if workers == 1:
            from collector.app import create_app
            from collector.serve import tune_gc

            app = create_app(settings, store)
            config = uvicorn_config(app, host, port, *_pair(tls), limits=settings.limits)
            tune_gc()
        else:
            from collector.serve import CONFIG_ENV, WORKER_APP

            config = uvicorn_config(
                WORKER_APP, host, port, *_pair(tls), workers=workers, limits=settings.limits
            )
            os.environ[CONFIG_ENV] = str(Path(args.config).resolve())
        sock = _listen_socket(host, port)
        _audit(store, f"serve {host}:{port}", str(EXIT_OK))
        where = f"[{host}]" if ":" in host else host
        print(
            f"{PROG}: serving https://{where}:{port} with {workers} worker(s)"
            f" (database {settings.database_for_display()})",
            file=sys.stderr,
            flush=True,
        )
        try:
            if workers == 1:
                _run_one(config, sock, host, port)
            else:
                store.close()  # the workers have their own; this process only supervises
                _run_workers(config, sock)
        finally:
            sock.close()
        return EXIT_OK
    finally:
        store.close()


def _pair(tls: TlsSettings) -> tuple[str, str]:
    return tls.cert_file, tls.key_file


def _run_one(config: uvicorn.Config, sock: socket.socket, host: str, port: int) -> None:
    import uvicorn

    server = uvicorn.Server(config)
    stopped: list[int] = []

    def note(signum: int, frame: FrameType | None) -> None:
        stopped.append(signum)

    # uvicorn handles SIGTERM/SIGINT while it runs (graceful: finish requests, then stop) and
    # re-raises the signal afterwards; these handlers receive it, so the exit is clean (0).
    previous = {s: signal.signal(s, note) for s in (signal.SIGTERM, signal.SIGINT)}
    try:
        server.run(sockets=[sock])
    finally:
        for s, handler in previous.items():
            signal.signal(s, handler)
    if not server.started:
        raise UsageError(f"the server on {host}:{port} did not start (see the log above)")


def _run_workers(config: uvicorn.Config, sock: socket.socket) -> None:
    """uvicorn's supervisor: starts the workers, replaces one that dies, and on SIGTERM/SIGINT
    stops them gracefully (each finishes its requests) and returns."""
    from uvicorn.config import STARTUP_FAILURE
    from uvicorn.supervisors import Multiprocess

    from collector.api.metrics import shared_metrics

    # The workers' metrics go to files in one private folder, so every scrape (answered by any
    # worker) sums the whole collector instead of showing one worker's counters.
    with shared_metrics():
        supervisor = Multiprocess(config, sockets=[sock])
        supervisor.run()
    if any(p.exitcode == STARTUP_FAILURE for p in supervisor.processes):
        raise UsageError("a worker process did not start (see the log above)")
