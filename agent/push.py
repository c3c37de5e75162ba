"""Pushing sealed reports to the collector, with the spool as the safety net.

`deliver` runs after the report is printed: it seals the report (the exact bytes the JSON
renderer produced), keeps it in the spool first (so a crash while sending loses nothing), then
sends what waits oldest first, the new report last. A collector that cannot be reached, or answers
5xx/429 after the configured attempts, stops the sending: the rest waits, in order, for the next
run. 2xx (201 stored, 200 duplicate) removes the item. Any other answer is the collector refusing
the report: the item moves to rejected/ with the collector's code and message, one line goes to
stderr, and it is never retried.

Exit-code decision: a report that waits in the spool because the collector is down keeps the
report's own exit code (0/1): the findings are the contract, the spool will deliver, and a loud
stderr line says "collector unreachable: report spooled (N waiting)". Anything that needs a person
— not enrolled or an unusable credential, a full or unusable spool, a report the collector refused
— makes the run exit 1 even when every check passed, because no later run will fix it alone.

Memory: `run` hands delivery to a fresh interpreter (exec, see `push`), so httpx, TLS, AES-GCM
and the SM2 library never sit on top of the gatherers' memory; `run --no-push` and a config
without a collector never load them at all.
"""

from __future__ import annotations

import os
import secrets
import ssl
import sys
import time
from collections.abc import Callable
from contextlib import ExitStack
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, TextIO

import msgspec

from agent import __version__
from agent.config import AgentConfig, CollectorConfig
from agent.credential import (
    Credential,
    CredentialError,
    CredentialMissing,
    load_credential,
    load_pending_key,
    pending_key,
)
from agent.spool import ItemUnreadable, Spool, SpoolFull, SpoolItem
from checks.envelope import Alg, EnvelopeError, open_envelope, seal

if TYPE_CHECKING:
    import httpx

PROG = "medsec-agent"
REPORTS_PATH = "/api/v1/reports"
BACKOFF_SECONDS = 0.5
BACKOFF_CAP_SECONDS = 8.0
_TRANSIENT = {408, 425, 429}  # the collector is busy or slow: not the report's fault


# --------------------------------------------------------------------------- the client


@dataclass(frozen=True)
class Delivered:
    status: int
    duplicate: bool


@dataclass(frozen=True)
class Rejected:
    status: int
    code: str
    message: str

    @property
    def reason(self) -> str:
        return f"{self.status} {self.code}: {self.message}"


@dataclass(frozen=True)
class Unreachable:
    reason: str
    retry: bool = True
    """False when another attempt cannot help (a redirect: the URL is wrong)."""


Answer = Delivered | Rejected | Unreachable


def import_httpx() -> Any:
    """httpx without its command-line extra: httpx imports click, pygments and rich for its own
    CLI when they happen to be installed (~9 MB the agent never uses). Marking `httpx._main` as
    absent makes httpx take its documented fallback for a missing CLI extra."""
    if "httpx" not in sys.modules:
        sys.modules.setdefault("httpx._main", None)  # type: ignore[arg-type]
    import httpx

    return httpx


def tls_context(ca_file: str) -> ssl.SSLContext:
    """Verify the collector against `ca_file` only (not the system store); TLS 1.2 at least."""
    context = ssl.create_default_context(ssl.Purpose.SERVER_AUTH, cafile=ca_file)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    return context


def error_of(response: httpx.Response) -> tuple[str, str]:
    """The collector's {"error", "message"}, or a stand-in for a body that is not one."""
    try:
        body = response.json()
    except ValueError:
        body = None
    if isinstance(body, dict) and isinstance(body.get("error"), str):
        return body["error"], _one_line(str(body.get("message", "")))
    return f"http_{response.status_code}", _one_line(response.text[:200]) or response.reason_phrase


def _one_line(text: str) -> str:
    return " ".join(text.split())[:500]


def _clock_hint(detail: str) -> str:
    """A certificate "not yet valid" or "expired" is as often this host's clock as the
    certificate: say what the clock reads, so a person can tell which."""
    if "certificate is not yet valid" not in detail and "certificate has expired" not in detail:
        return ""
    now = datetime.now(UTC).isoformat(timespec="seconds").replace("+00:00", "Z")
    return f" (this host's clock reads {now}: check it)"


class CollectorClient:
    """Posts envelopes to one collector with one agent token. Use as a context manager."""

    def __init__(
        self,
        base_url: str,
        ca_file: str,
        api_token: str,
        *,
        timeout: float = 10.0,
        attempts: int = 3,
        backoff: float = BACKOFF_SECONDS,
        backoff_cap: float = BACKOFF_CAP_SECONDS,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        hx = import_httpx()
        self.base_url = base_url.rstrip("/")
        self.attempts = max(1, attempts)
        self.backoff, self.backoff_cap, self._sleep = backoff, backoff_cap, sleep
        self._httpx = hx
        self._client: httpx.Client = hx.Client(
            verify=tls_context(ca_file),
            timeout=timeout,
            follow_redirects=False,  # the token goes to the configured URL and nowhere else
            headers={
                "Authorization": f"Bearer {api_token}",
                "User-Agent": f"{PROG}/{__version__}",
            },
        )

    def __enter__(self) -> CollectorClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self._client.close()

    def delay(self, attempt: int) -> float:
        """Before attempt 2, 3, ...: 0.5 s, 1 s, 2 s, ... (capped) plus up to `backoff` of jitter,
        so that a fleet coming back after an outage does not knock in step."""
        jitter = self.backoff * secrets.randbelow(1000) / 1000
        return min(self.backoff_cap, self.backoff * 2.0 ** (attempt - 2)) + jitter

    def post_report(self, envelope: bytes) -> Answer:
        answer: Answer = Unreachable("no attempt made")
        for attempt in range(1, self.attempts + 1):
            if attempt > 1:
                self._sleep(self.delay(attempt))
            answer = self._attempt(envelope)
            if not isinstance(answer, Unreachable) or not answer.retry:
                return answer
        return answer

    def _attempt(self, envelope: bytes) -> Answer:
        httpx = self._httpx
        try:
            response = self._client.post(
                self.base_url + REPORTS_PATH,
                content=envelope,
                headers={"Content-Type": "application/json"},
            )
        except httpx.TransportError as exc:
            detail = _one_line(str(exc)) or "no detail"
            return Unreachable(f"{type(exc).__name__}: {detail}{_clock_hint(detail)}")
        status = response.status_code
        if 200 <= status < 300:
            try:
                duplicate = response.json().get("duplicate") is True
            except (ValueError, AttributeError):
                duplicate = False
            return Delivered(status, duplicate)
        if status >= 500 or status in _TRANSIENT:
            code, message = error_of(response)
            return Unreachable(f"answered {status} {code}: {message}")
        if 300 <= status < 400:
            # Not the report's fault: the URL is wrong. Keep it and say so.
            where = response.headers.get("location", "?")
            return Unreachable(
                f"answered {status} (redirect to {where}): check collector.url", retry=False
            )
        code, message = error_of(response)
        return Rejected(status, code, message)


# --------------------------------------------------------------------------- one run's delivery


@dataclass(frozen=True)
class Signer:
    agent: str
    alg: Alg
    private_key_pem: str
    credential: Credential | None

    def __repr__(self) -> str:
        return f"Signer(agent={self.agent!r}, alg={self.alg!r})"


class PushJob(msgspec.Struct, forbid_unknown_fields=True, frozen=True):
    """Everything delivery needs besides the report bytes (it crosses the exec hand-off)."""

    collector: CollectorConfig
    spool_dir: str
    spool_max_mb: int
    crypto: Literal["ed25519", "sm"]
    report_id: str
    hostname: str
    """Names the agent in envelopes sealed before enrolment (the default enrolment name)."""
    report_exit: int = 0
    """The report's own exit code (0/1), which delivery may raise but never lower."""

    @classmethod
    def of(cls, config: AgentConfig, report_id: str, hostname: str, report_exit: int) -> PushJob:
        if config.collector is None:
            raise ValueError("no collector section: nothing to push")
        return cls(
            collector=config.collector,
            spool_dir=config.spool_dir,
            spool_max_mb=config.spool_max_mb,
            crypto=config.crypto,
            report_id=report_id,
            hostname=hostname,
            report_exit=report_exit,
        )

    @property
    def signature_alg(self) -> Alg:
        return "sm2-sm3" if self.crypto == "sm" else "ed25519"


def _credential(job: PushJob) -> tuple[Credential | None, str]:
    """The usable credential, or None and the problem (one line) that keeps reports unsent."""
    collector = job.collector
    path = Path(collector.credential_file)
    try:
        cred = load_credential(path)
    except CredentialMissing:
        return None, f"not enrolled: run {PROG} enroll (no credential at {path})"
    except CredentialError as exc:
        return None, f"{exc}; run {PROG} enroll --force"
    if cred.collector.rstrip("/") != collector.url.rstrip("/"):
        # The token must never be shown to another server than the one that issued it.
        return cred, (
            f"credential {path} is for {cred.collector}, not collector.url "
            f"{collector.url}: run {PROG} enroll --force"
        )
    if cred.alg != job.signature_alg:
        return cred, (
            f"credential {path} holds an {cred.alg} key but crypto is {job.crypto}: "
            f"run {PROG} enroll --force"
        )
    return cred, ""


def _seal(job: PushJob, report_bytes: bytes) -> tuple[Signer, str, bytes]:
    """Seal the report: (who sealed it, the problem keeping it from being sent, the envelope).

    Without a usable credential the pending key seals it, so it waits in the spool encrypted
    like any other report; `enroll` re-seals it. OSError/CredentialError: no key can be kept.
    """
    cred, problem = _credential(job)
    if cred is not None:
        signer = Signer(cred.agent, cred.alg, cred.private_key_pem, None if problem else cred)
        try:
            return signer, problem, seal(report_bytes, cred.agent, cred.private_key_pem, cred.alg)
        except (EnvelopeError, ValueError, TypeError) as exc:
            problem = (
                f"credential {job.collector.credential_file}: its private key is unusable "
                f"({type(exc).__name__}); run {PROG} enroll --force"
            )
            # A damaged key cannot seal: the pending key keeps the report meanwhile.
    key = pending_key(Path(job.spool_dir), job.signature_alg)
    signer = Signer(job.hostname, key.alg, key.private_key_pem, None)
    return signer, problem, seal(report_bytes, job.hostname, key.private_key_pem, key.alg)


class _Delivery:
    """One run's delivery: the new report, the spool, the client, and the lines on stderr."""

    def __init__(self, spool: Spool, report_id: str, envelope: bytes, err: TextIO) -> None:
        self.spool, self.report_id, self.envelope, self.err = spool, report_id, envelope, err
        self.attention = False
        self.kept: SpoolItem | None = None
        self.full: SpoolFull | None = None
        self.unusable = ""
        self.signer: Signer | None = None
        self.reseal_from: Spool | None = None
        """The pending key's view of the spool, when a pending key is still around."""

    def say(self, line: str, *, attention: bool = False) -> None:
        print(f"{PROG}: {line}", file=self.err, flush=True)
        self.attention = self.attention or attention

    @property
    def exit_code(self) -> int:
        return 1 if self.attention else 0

    @property
    def not_kept(self) -> str:
        """Why the new report is not in the spool, and that it is not (one line's worth)."""
        if self.full:
            return str(self.full)
        if self.unusable:
            return f"spool unusable ({self.unusable}): report {self.report_id} NOT kept"
        return f"report {self.report_id} NOT kept"

    def keep(self) -> None:
        """Spool the new report before anything is sent: a crash mid-send loses nothing. When it
        cannot be kept, the run's one line about it is said once its fate is known."""
        try:
            self.kept = self.spool.add(self.report_id, self.envelope)
        except SpoolFull as exc:
            self.full = exc
        except OSError as exc:  # a full disk, a read-only or foreign folder
            self.unusable = f"{self.spool.directory}: {exc.strerror or exc}"

    def send(self, client: CollectorClient) -> Unreachable | None:
        with ExitStack() as stack:
            try:
                mine = stack.enter_context(self.spool.sending())
            except OSError as exc:  # not even the lock file can be made
                problem = f"{self.spool.directory}: {exc.strerror or exc}"
                if self.kept is not None:
                    self.say(
                        f"spool unusable ({problem}): report spooled, not sent", attention=True
                    )
                    return None
                self.unusable = self.unusable or problem
                mine = False
            if mine:
                return self.send_spooled(client)
            if self.kept is not None:
                self.say(
                    f"another {PROG} run is sending the spool: report spooled "
                    f"({len(self.spool.items())} waiting)"
                )
            elif self.unusable:
                return self.direct(client)
            else:
                self.say(self.not_kept, attention=True)
            return None

    def send_spooled(self, client: CollectorClient) -> Unreachable | None:
        """Holding the spool's lock: what waits, oldest first, then the new report. On a full
        disk too: what waits needs no room to be sent, and sending it frees some."""
        self.spool.clean_temp()
        down = self.drain(client)
        if down is not None or self.kept is not None:
            return down
        if self.unusable:
            return self.direct(client)
        # The backlog went out: there may be room now; else send it from memory.
        try:
            self.kept = self.spool.add(self.report_id, self.envelope)
        except (SpoolFull, OSError):
            return self.direct(client)
        return self.drain(client)

    def drain(self, client: CollectorClient) -> Unreachable | None:
        """Send what waits, oldest first; stop at the first sign the collector is down."""
        for item in self.spool.items():
            body: bytes | None
            try:
                body = self.spool.read(item)
            except ItemUnreadable as exc:
                body = self.resealed(item)
                if body is None:
                    self.reject(item, f"unreadable: {exc}", "spool item")
                    continue
            except OSError as exc:
                self.say(
                    f"spool item {item.path} unreadable: {exc.strerror or exc}", attention=True
                )
                continue
            answer = client.post_report(body)
            if isinstance(answer, Unreachable):
                return answer
            if isinstance(answer, Rejected):
                self.reject(item, answer.reason, "collector rejected report")
                continue
            try:
                self.spool.remove(item)
            except OSError as exc:  # sent again next time: the collector answers "duplicate"
                self.say(
                    f"spool item {item.report_id} delivered but not removed "
                    f"({exc.strerror or exc}): the spool's folder is not writable",
                    attention=True,
                )
                return None
        return None

    def resealed(self, item: SpoolItem) -> bytes | None:
        """An item still under the pending key (enrolment stopped before re-sealing it, or a run
        raced it): re-seal it for the enrolled agent now, in place. None if that key fails too."""
        if self.reseal_from is None or self.signer is None:
            return None
        try:
            _, report, _ = open_envelope(self.reseal_from.read(item))
        except (ItemUnreadable, EnvelopeError):
            return None
        envelope = seal(report, self.signer.agent, self.signer.private_key_pem, self.signer.alg)
        self.spool.replace(item, envelope)
        return envelope

    def direct(self, client: CollectorClient) -> Unreachable | None:
        """Send a report the spool could not keep. Delivered or not, a person must look."""
        answer = client.post_report(self.envelope)
        if isinstance(answer, Delivered):
            why = self.full.summary if self.full else f"spool unusable ({self.unusable})"
            self.say(f"report {self.report_id} delivered without the spool: {why}", attention=True)
            return None
        if isinstance(answer, Rejected):
            self.say(
                f"collector rejected report {self.report_id}: {answer.reason}; {self.not_kept}",
                attention=True,
            )
            return None
        return answer

    def reject(self, item: SpoolItem, reason: str, what: str) -> None:
        try:
            where: Path | str = self.spool.reject(item, reason)
        except OSError as exc:
            where = f"(could not move it to {self.spool.rejected_dir}: {exc.strerror or exc})"
        self.say(f"{what} {item.report_id}: {reason}; kept in {where}, not retried", attention=True)

    def unreachable(self, reason: str) -> None:
        if self.kept is not None:
            waiting = len(self.spool.items())
            self.say(f"collector unreachable: report spooled ({waiting} waiting) — {reason}")
        else:
            self.say(f"{self.not_kept}; collector unreachable — {reason}", attention=True)


def deliver(
    job: PushJob, report_bytes: bytes, err: TextIO, *, backoff: float = BACKOFF_SECONDS
) -> int:
    """Seal, spool and send the report; 0, or 1 when a person must act (see the module doc)."""
    collector, report_id = job.collector, job.report_id
    try:
        signer, problem, envelope = _seal(job, report_bytes)
    except (CredentialError, OSError) as exc:
        detail = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
        print(
            f"{PROG}: no key to seal report {report_id} with ({detail}): report NOT kept; "
            f"run {PROG} enroll",
            file=err,
            flush=True,
        )
        return 1
    spool = Spool(Path(job.spool_dir), job.spool_max_mb * 2**20, signer.private_key_pem)
    run = _Delivery(spool, report_id, envelope, err)
    run.keep()
    if signer.credential is None:
        kept = f"report {report_id} spooled ({len(spool.items())} waiting)"
        run.say(f"{problem}; {kept if run.kept is not None else run.not_kept}", attention=True)
        return 1
    run.signer = signer
    try:
        pending = load_pending_key(Path(job.spool_dir))
    except CredentialError:
        pending = None
    if pending is not None:
        run.reseal_from = Spool(spool.directory, spool.max_bytes, pending.private_key_pem)
    try:
        client = CollectorClient(
            collector.url,
            collector.ca_file,
            signer.credential.api_token,
            timeout=collector.timeout_seconds,
            attempts=collector.retries,
            backoff=backoff,
        )
    except (ssl.SSLError, OSError) as exc:
        # The CA file exists (checked at load) but holds no usable certificate: a person must fix
        # the config; the report waits in the spool meanwhile.
        run.say(f"CA file {collector.ca_file} unusable: {exc}", attention=True)
        run.unreachable(collector.url)
        return run.exit_code
    with client:
        down = run.send(client)
    if down is not None:
        run.unreachable(f"{collector.url}: {down.reason}")
    return run.exit_code


# --------------------------------------------------------------------------- the exec hand-off


def push(job: PushJob, report_bytes: bytes) -> int:
    """Deliver the report after `run` printed it; returns the run's exit code.

    The gathering process holds the TSS bindings and every gatherer (~44 MB); adding httpx, TLS
    and the signature suite on top would pass the agent's 50 MB budget (51 MB with Ed25519,
    55 MB with SM2). So the process replaces itself (exec: same PID, its memory released) with a
    fresh interpreter that only delivers (~35 MB), handing over the job and the report in an
    anonymous memory file. If the exec cannot happen, delivery runs here instead.
    """
    sys.stdout.flush()
    sys.stderr.flush()
    try:
        fd = os.memfd_create("medsec-report", 0)
        with os.fdopen(os.dup(fd), "wb") as out:
            out.write(msgspec.json.encode(job) + b"\n" + report_bytes)
        os.lseek(fd, 0, os.SEEK_SET)
        os.set_inheritable(fd, True)
        if sys.executable:
            argv = [sys.executable, "-I", "-m", "agent.push", str(fd)]
            os.execv(sys.executable, argv)  # noqa: S606 — our interpreter, an argv list
    except OSError:
        pass  # no memfd or no interpreter to exec: deliver in this process
    return max(job.report_exit, deliver(job, report_bytes, sys.stderr))


def _read_job(fd: int) -> tuple[PushJob, bytes]:
    with os.fdopen(fd, "rb") as handed:
        data = handed.read()
    header, _, report_bytes = data.partition(b"\n")
    return msgspec.json.decode(header, type=PushJob), report_bytes


def main(argv: list[str] | None = None) -> int:
    """`python -m agent.push FD`: the delivering half of `medsec-agent run` (see `push`)."""
    args = sys.argv[1:] if argv is None else argv
    try:
        job, report_bytes = _read_job(int(args[0]))
    except (IndexError, ValueError, OSError, msgspec.DecodeError) as exc:
        print(f"{PROG}: internal error: no report handed over ({exc})", file=sys.stderr)
        return 3
    try:
        return max(job.report_exit, deliver(job, report_bytes, sys.stderr))
    except KeyboardInterrupt:
        print(f"{PROG}: interrupted", file=sys.stderr)
        return 130
    except Exception as exc:  # the delivering process's boundary: one line, never a traceback
        print(f"{PROG}: internal error while pushing: {type(exc).__name__}: {exc}", file=sys.stderr)
        return 3


if __name__ == "__main__":
    sys.exit(main())
