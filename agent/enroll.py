"""`medsec-agent enroll`: make this agent's signing key and register it with the collector.

The agent generates its own key pair (the private key never leaves the host), sends the public
key with the one-time enrolment token to `POST /api/v1/enroll` over TLS verified against the
given CA, and keeps what it gets back — the API token — with the private key in the credential
file (mode 0600, written atomically; an existing one is replaced only with `--force`). Reports
spooled before (under the pending key, or under the key `--force` replaces) are re-sealed with the
new key and name, so enrolling late or again loses none of them.
"""

from __future__ import annotations

import re
import socket
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TextIO

from agent.config import DEFAULT_CREDENTIAL_FILE, AgentConfig, check_collector_url
from agent.credential import (
    Credential,
    CredentialError,
    load_credential,
    load_pending_key,
    remove_pending_key,
    write_credential,
)
from agent.push import error_of, import_httpx, tls_context
from agent.spool import ItemUnreadable, Spool, SpoolItem
from checks.envelope import (
    EnvelopeError,
    generate_private_key,
    open_envelope,
    public_key_pem,
    seal,
)

ENROLL_PATH = "/api/v1/enroll"
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$")
EXIT_OK, EXIT_REFUSED, EXIT_USAGE = 0, 1, 2


class EnrollError(Exception):
    """Enrolment failed; `exit_code` 2 for usage/config, 1 for the collector refusing or absent."""

    def __init__(self, message: str, exit_code: int) -> None:
        super().__init__(message)
        self.exit_code = exit_code


@dataclass(frozen=True)
class EnrollRequest:
    collector: str
    token: str
    ca_file: str | None
    name: str | None
    force: bool

    def __repr__(self) -> str:  # the token is a secret
        return f"EnrollRequest(collector={self.collector!r}, name={self.name!r})"


def _usage(message: str) -> EnrollError:
    return EnrollError(message, EXIT_USAGE)


def _checked(config: AgentConfig, source: str, request: EnrollRequest) -> tuple[str, str, str]:
    """(collector URL, CA file, agent name), or an EnrollError naming what is wrong."""
    try:
        url = check_collector_url(request.collector)
    except ValueError as exc:
        raise _usage(f"--collector: {exc}") from None
    if config.collector is not None and config.collector.url.rstrip("/") != url:
        raise _usage(
            f"--collector {url} differs from collector.url {config.collector.url} in {source}"
        )
    ca_file = request.ca_file or (config.collector.ca_file if config.collector else None)
    if ca_file is None:
        raise _usage(
            f"no CA to verify the collector with: pass --ca-file or set collector.ca_file "
            f"in {source}"
        )
    if not Path(ca_file).is_file():
        raise _usage(f"--ca-file: {ca_file} does not exist")
    name = request.name or socket.gethostname()
    if not _NAME.match(name):
        raise _usage(
            f"--name: {name!r} is not a valid agent name "
            "(letters, digits, '.', '_', '-'; at most 128)"
        )
    if not request.token.startswith("mse_") or len(request.token) < 16:
        raise _usage(
            "--token: not an enrolment token (it starts with mse_; the collector's "
            "`medsec agents enroll NAME` prints it)"
        )  # never echo the value
    return url, ca_file, name


def _post(url: str, ca_file: str, body: dict[str, str], timeout: float) -> dict[str, Any]:
    httpx = import_httpx()
    try:
        context = tls_context(ca_file)
    except (OSError, ValueError) as exc:
        raise _usage(f"--ca-file: {ca_file} holds no usable certificate: {exc}") from None
    try:
        with httpx.Client(verify=context, timeout=timeout, follow_redirects=False) as client:
            response = client.post(url + ENROLL_PATH, json=body)
    except httpx.TransportError as exc:
        raise EnrollError(
            f"cannot reach the collector at {url}: {type(exc).__name__}: {exc}", EXIT_REFUSED
        ) from None
    if response.status_code != 201:
        code, message = error_of(response)
        raise EnrollError(
            f"collector {url} refused enrolment: {response.status_code} {code}: {message}",
            EXIT_REFUSED,
        )
    try:
        answer = response.json()
    except ValueError:
        answer = None
    if not isinstance(answer, dict) or not isinstance(answer.get("api_token"), str):
        raise EnrollError(f"collector {url} answered enrolment without an API token", EXIT_REFUSED)
    return answer


def enroll(
    config: AgentConfig, source: str, request: EnrollRequest, out: TextIO, err: TextIO
) -> int:
    """Enrol this agent; raises EnrollError. Prints one line on success (no secret in it)."""
    url, ca_file, name = _checked(config, source, request)
    path = Path(config.collector.credential_file if config.collector else DEFAULT_CREDENTIAL_FILE)
    old: Credential | None = None
    if path.exists():
        try:
            old = load_credential(path)
        except CredentialError:
            old = None
        if not request.force:
            holder = f" (agent {old.agent} at {old.collector})" if old else ""
            raise _usage(f"{path} already holds a credential{holder}; pass --force to replace it")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise _usage(f"cannot create {path.parent}: {exc.strerror or exc}") from None

    alg = config.signature_alg
    private_pem = generate_private_key(alg)
    timeout = config.collector.timeout_seconds if config.collector else 10.0
    answer = _post(
        url,
        ca_file,
        {
            "token": request.token,
            "name": name,
            "alg": alg,
            "public_key": public_key_pem(private_pem, alg),
        },
        timeout,
    )
    agent = str(answer.get("agent") or name)
    credential = Credential(
        collector=url,
        agent=agent,
        alg=alg,
        api_token=answer["api_token"],
        private_key_pem=private_pem,
    )
    try:
        write_credential(path, credential, overwrite=request.force)
    except FileExistsError:
        raise _usage(f"{path} appeared while enrolling; pass --force to replace it") from None
    except OSError as exc:
        # The collector has registered the key; without the file the token is lost: say so.
        raise EnrollError(
            f"enrolled, but cannot write {path}: {exc.strerror or exc}; "
            f"ask for a new token and enrol again",
            EXIT_REFUSED,
        ) from None

    print(f"enrolled as {agent} with {url}", file=out, flush=True)
    try:
        resealed, unreadable = reseal_spool(config, old, credential)
    except OSError as exc:
        print(
            f"medsec-agent: could not re-seal the spool in {config.spool_dir}: "
            f"{exc.strerror or exc}; its reports stay under the old key",
            file=err,
        )
        resealed = unreadable = 0
    if resealed:
        print(f"medsec-agent: {resealed} spooled report(s) re-sealed for {agent}", file=err)
    if unreadable:
        print(
            f"medsec-agent: {unreadable} spooled report(s) do not decrypt with any key of this "
            "agent; the next run moves them to rejected/",
            file=err,
        )
    if config.collector is None:
        print(
            f"medsec-agent: note: {source} has no collector section; `run` pushes once it has "
            f"collector: {{url: {url}, ca_file: {ca_file}}}",
            file=err,
        )
    return EXIT_OK


def reseal_spool(config: AgentConfig, old: Credential | None, new: Credential) -> tuple[int, int]:
    """Re-seal spooled reports made under the pending key or the replaced credential's key.

    Returns (re-sealed, unreadable). Each item is replaced atomically under its own name, so its
    place in the order is kept.
    """
    directory = Path(config.spool_dir)
    limit = config.spool_max_mb * 2**20
    target = Spool(directory, limit, new.private_key_pem)
    if not target.items():
        remove_pending_key(directory)
        return 0, 0
    try:
        pending = load_pending_key(directory)
    except CredentialError:
        pending = None
    sources = [
        Spool(directory, limit, pem)
        for pem in (
            old.private_key_pem if old else None,
            pending.private_key_pem if pending else None,
        )
        if pem is not None
    ]
    resealed = unreadable = 0
    with target.sending(wait=True):  # not while a run is sending these very items
        for item in target.items():
            if _decrypt(target, item) is not None:
                continue  # already under the new key
            envelope = next((e for s in sources if (e := _decrypt(s, item)) is not None), None)
            try:
                _, report, _ = open_envelope(envelope or b"")
            except EnvelopeError:
                unreadable += 1
                continue
            target.replace(item, seal(report, new.agent, new.private_key_pem, new.alg))
            resealed += 1
        remove_pending_key(directory)
    return resealed, unreadable


def _decrypt(spool: Spool, item: SpoolItem) -> bytes | None:
    try:
        return spool.read(item)
    except ItemUnreadable:
        return None
