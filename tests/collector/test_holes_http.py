"""Issue 15, hole 3: what an unauthenticated client can make `medsec serve` hold. Against the real
server (a `medsec serve` subprocess on loopback, TLS, one worker), by hand-written HTTP over raw
sockets: a huge request head is refused (431) as it arrives and the server's memory does not grow
with it; too many header fields are refused; a client that trickles its head, or connects and says
nothing, is cut off after `header_timeout_seconds`; an address with `max_connections_per_address`
connections open has one more closed at accept; and agents and API readers notice nothing.
"""

from __future__ import annotations

import json
import select
import signal
import socket
import ssl
import subprocess
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import httpx
import psutil
import pytest
import yaml

from checks import envelope as env
from tests.collector.fixtures_api import agent_report, free_port, make_report
from tests.collector.test_cli import MEDSEC, _env, assert_usage_error, medsec

HEAD_LIMIT = 32_768  # the defaults, which the tests rely on
FIELD_LIMIT = 100
PER_ADDRESS = 64
SLOW_TIMEOUT = 2  # instead of 10, for `impatient`


@dataclass
class Collector:
    config: Path
    port: int
    process: subprocess.Popen[str]
    ca: Path

    def client(self, token: str | None = None) -> httpx.Client:
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        verify = ssl.create_default_context(cafile=str(self.ca))
        return httpx.Client(
            base_url=f"https://127.0.0.1:{self.port}", verify=verify, headers=headers, timeout=30
        )

    def tls(self) -> ssl.SSLSocket:
        raw = socket.create_connection(("127.0.0.1", self.port), timeout=20)
        context = ssl.create_default_context(cafile=str(self.ca))
        return context.wrap_socket(raw, server_hostname="127.0.0.1")

    def rss(self) -> int:
        return int(psutil.Process(self.process.pid).memory_info().rss)


@contextmanager
def collector(folder: Path, **limits: int) -> Iterator[Collector]:
    """`medsec init` in `folder`, `limits` written into its collector.yaml, then `medsec serve`
    on a free loopback port until the block ends (SIGTERM; it must stop cleanly)."""
    done = medsec("init", "--dir", folder)
    assert done.code == 0, done
    config = folder / "collector.yaml"
    settings = yaml.safe_load(config.read_text(encoding="utf-8"))
    settings["limits"].update(limits)
    config.write_text(yaml.safe_dump(settings), encoding="utf-8")
    port = free_port()
    process = subprocess.Popen(
        [MEDSEC, "serve", "--config", str(config), "--listen", f"127.0.0.1:{port}"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
        env=_env(),
    )
    served = Collector(config, port, process, folder / "tls" / "cert.pem")
    try:
        deadline = time.monotonic() + 60
        while True:
            assert process.poll() is None, process.communicate(timeout=10)
            assert time.monotonic() < deadline, "medsec serve did not come up"
            try:
                with served.client() as client:
                    if client.get("/healthz").status_code == 200:
                        break
            except httpx.TransportError:
                time.sleep(0.1)
        yield served
    finally:
        stopping = time.monotonic()
        process.send_signal(signal.SIGTERM)
        try:
            _, err = process.communicate(timeout=60)
        except subprocess.TimeoutExpired:
            process.kill()
            _, err = process.communicate(timeout=10)
    assert process.returncode == 0, err
    assert "Traceback" not in err, err
    # Every connection it was made to hold is gone: nothing left for the graceful stop to await
    # (uvicorn would wait its 10 s, then say "timeout graceful shutdown exceeded").
    assert time.monotonic() - stopping < 8, err
    assert "graceful shutdown exceeded" not in err, err


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Collector]:
    """The collector with the limits `medsec init` writes."""
    with collector(tmp_path_factory.mktemp("limits")) as c:
        limits = yaml.safe_load(c.config.read_text(encoding="utf-8"))["limits"]
        assert limits["max_header_bytes"] == HEAD_LIMIT
        assert limits["max_header_fields"] == FIELD_LIMIT
        assert limits["max_connections_per_address"] == PER_ADDRESS
        yield c


@pytest.fixture(scope="module")
def impatient(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Collector]:
    with collector(tmp_path_factory.mktemp("slow"), header_timeout_seconds=SLOW_TIMEOUT) as c:
        yield c


# --------------------------------------------------------------------------- HTTP by hand


@dataclass(frozen=True)
class Answer:
    status: int
    headers: dict[str, str]
    body: bytes

    @property
    def error(self) -> str:
        doc = json.loads(self.body)
        assert isinstance(doc, dict), doc
        assert set(doc) == {"error", "message"}, doc
        return str(doc["error"])


def read_answer(sock: ssl.SSLSocket) -> Answer:
    """One HTTP response from `sock` (its whole body, by content-length)."""
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = sock.recv(65536)
        assert chunk, f"the connection closed before a response: {data!r}"
        data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    headers = {
        name.strip().lower(): value.strip()
        for name, _, value in (line.partition(":") for line in lines[1:])
    }
    while len(body) < int(headers.get("content-length", "0")):
        chunk = sock.recv(65536)
        assert chunk, "the connection closed within the body"
        body += chunk
    return Answer(int(lines[0].split()[1]), headers, body)


def head(*fields: bytes, target: bytes = b"/healthz") -> bytes:
    return b"GET " + target + b" HTTP/1.1\r\n" + b"".join(f + b"\r\n" for f in fields) + b"\r\n"


def ask(served: Collector, request: bytes) -> Answer:
    with served.tls() as sock:
        sock.sendall(request)
        return read_answer(sock)


def flood(served: Collector, size: int) -> tuple[Answer, int]:
    """A request head whose one header runs on for `size` bytes, sent whole unless the server
    cuts the connection first; then the answer. Returns it and the bytes sent."""
    sock = served.tls()
    with sock:
        sock.sendall(b"GET /api/v1/hosts HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Flood: ")
        chunk, sent = b"a" * 262_144, 0
        try:
            while sent < size:
                sock.sendall(chunk)
                sent += len(chunk)
        except OSError:
            pass  # the server gave up on reading the rest: its answer is already here
        return read_answer(sock), sent


# --------------------------------------------------------------------------- header size


def test_a_huge_header_is_refused_and_memory_does_not_grow(served: Collector) -> None:
    """The 10 MiB header of the issue is answered 431 as soon as the head passes the limit; two
    connections sending 100 MiB between them leave the server's RSS where it was (it rose from
    108 to 331 MB, and stayed, before the limit)."""
    answer, _ = flood(served, 10 * 1_048_576)
    assert answer.status == 431
    assert answer.headers["connection"] == "close"
    assert answer.error == "header_too_large"
    before = served.rss()
    peak = before
    with ThreadPoolExecutor(2) as pool:
        floods = [pool.submit(flood, served, 50 * 1_048_576) for _ in range(2)]
        while not all(f.done() for f in floods):
            peak = max(peak, served.rss())
            time.sleep(0.02)
        results = [f.result() for f in floods]
    assert [answer.status for answer, _ in results] == [431, 431]
    time.sleep(0.5)
    after = served.rss()
    sent = sum(size for _, size in results)
    mib = 1_048_576
    assert peak - before < 24 * mib, (before / mib, peak / mib, after / mib, sent / mib)
    assert after - before < 12 * mib, (before / mib, peak / mib, after / mib, sent / mib)
    with served.client() as client:
        assert client.get("/healthz").status_code == 200


def test_the_head_limit_is_exact(served: Collector) -> None:
    """A head of exactly `max_header_bytes` (request line, fields, blank line) is served; one
    byte more is 431, whichever way the bytes arrive."""

    def sized(total: int) -> bytes:
        bare = head(b"Host: 127.0.0.1", b"Connection: close", b"X-Pad: ")
        return head(
            b"Host: 127.0.0.1", b"Connection: close", b"X-Pad: " + b"p" * (total - len(bare))
        )

    exact, over = sized(HEAD_LIMIT), sized(HEAD_LIMIT + 1)
    assert (len(exact), len(over)) == (HEAD_LIMIT, HEAD_LIMIT + 1)
    assert ask(served, exact).status == 200
    assert ask(served, over).status == 431
    assert ask(served, exact + b"GET").status == 200  # the next request's bytes are not the head's
    with served.tls() as sock:  # ... even when the limit cuts a read just where the request ends
        sock.sendall(exact[:-100])
        time.sleep(0.2)
        sock.sendall(exact[-100:] + b"GET")
        assert read_answer(sock).status == 200
    with served.tls() as sock:  # in small pieces
        for at in range(0, len(over), 1000):
            sock.sendall(over[at : at + 1000])
        assert read_answer(sock).status == 431
    long_target = head(b"Host: 127.0.0.1", target=b"/healthz?" + b"q" * HEAD_LIMIT)
    assert ask(served, long_target).status == 431


def test_too_many_header_fields_are_refused(served: Collector) -> None:
    fields = [b"Host: 127.0.0.1", b"Connection: close"]
    allowed = fields + [b"X-F%d: v" % i for i in range(FIELD_LIMIT - len(fields))]
    assert ask(served, head(*allowed)).status == 200
    refused = ask(served, head(*allowed, b"X-One-More: v"))
    assert refused.status == 431
    assert refused.error == "too_many_header_fields"


# --------------------------------------------------------------------------- time


def _trickle(sock: ssl.SSLSocket, text: bytes, started: float) -> tuple[Answer, float]:
    """Send `text` one byte a second until the server answers (a few seconds past the limit at
    most); its answer and when."""
    for byte in text[: SLOW_TIMEOUT + 4]:
        sock.sendall(bytes([byte]))
        if select.select([sock], [], [], 1.0)[0]:
            return read_answer(sock), time.monotonic() - started
    raise AssertionError("the server waited for the whole trickled head")


def test_a_slow_client_is_cut_off(impatient: Collector) -> None:
    """A head sent one byte a second is answered 408 after `header_timeout_seconds`; so is the
    next request of a kept-alive connection (timed from its first byte), and a connection that
    never even starts TLS is closed as soon."""

    def slow_head() -> tuple[Answer, float]:
        started = time.monotonic()
        with impatient.tls() as sock:
            sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n")
            return _trickle(sock, b"X-Slow: " + b"s" * 60, started)

    def slow_second_request() -> tuple[Answer, float]:
        with impatient.tls() as sock:
            sock.sendall(head(b"Host: 127.0.0.1"))
            assert read_answer(sock).status == 200
            time.sleep(SLOW_TIMEOUT + 0.5)  # idle time between requests is not counted
            return _trickle(
                sock,
                head(b"Host: 127.0.0.1", b"X-Slow: " + b"s" * 60),
                time.monotonic(),
            )

    def silent() -> float:
        started = time.monotonic()
        with socket.create_connection(("127.0.0.1", impatient.port), timeout=20) as raw:
            assert raw.recv(1) == b""
        return time.monotonic() - started

    with ThreadPoolExecutor(3) as pool:
        first, second, quiet = (
            pool.submit(slow_head),
            pool.submit(slow_second_request),
            pool.submit(silent),
        )
        for answer, seconds in (first.result(), second.result()):
            assert answer.status == 408
            assert answer.error == "request_timeout"
            assert SLOW_TIMEOUT - 0.2 < seconds < SLOW_TIMEOUT + 3, seconds
        assert SLOW_TIMEOUT - 0.2 < quiet.result() < SLOW_TIMEOUT + 3
    with impatient.client() as client:  # one that is quick is served
        assert client.get("/healthz").status_code == 200


# --------------------------------------------------------------------------- connections


def test_connections_per_address_are_bounded(served: Collector) -> None:
    """With `max_connections_per_address` connections open from 127.0.0.1 — bare TCP, not even
    in TLS yet — one more is closed at once; when they close, the address is served again, and
    may open as many as before."""

    def hold() -> list[socket.socket]:
        held = [socket.create_connection(("127.0.0.1", served.port)) for _ in range(PER_ADDRESS)]
        time.sleep(0.3)  # all accepted
        for sock in held:  # none of them was closed
            assert not select.select([sock], [], [], 0)[0]
        return held

    held = hold()
    try:
        with socket.create_connection(("127.0.0.1", served.port), timeout=5) as extra:
            started = time.monotonic()
            assert extra.recv(1) == b""
            assert time.monotonic() - started < 5  # not the 10 s of a head never sent
    finally:
        for sock in held:
            sock.close()
    deadline = time.monotonic() + 10
    while True:  # the server sees them close as soon as the kernel tells it
        try:
            with served.client() as client:
                assert client.get("/healthz").status_code == 200
            break
        except httpx.TransportError:
            assert time.monotonic() < deadline, "the address stayed refused after it closed"
            time.sleep(0.1)
    for sock in hold():
        sock.close()


# --------------------------------------------------------------------------- nobody else notices


def test_agents_and_readers_are_served_as_before(served: Collector) -> None:
    """An agent enrols and reports over one kept-alive connection, twenty more report at once
    from their own connections, and an operator reads the hosts back: all within the limits."""
    template = agent_report()
    mse = medsec("agents", "enroll", "his-db-01", "--config", served.config).lines[-1]
    key = env.generate_private_key("ed25519")
    with served.client() as client:
        enrolled = client.post(
            "/api/v1/enroll",
            json={
                "token": mse,
                "name": "his-db-01",
                "alg": "ed25519",
                "public_key": env.public_key_pem(key, "ed25519"),
            },
        )
    assert enrolled.status_code == 201, enrolled.text
    token = enrolled.json()["api_token"]

    def report(host: str) -> bytes:
        return env.seal(make_report(template, host=host), "his-db-01", key, "ed25519")

    with served.client(token) as client:
        assert [
            client.post("/api/v1/reports", content=report(f"ward-{i}")).status_code
            for i in range(3)
        ] == [201] * 3

    def post(i: int) -> int:
        with served.client(token) as client:
            return client.post("/api/v1/reports", content=report(f"bed-{i}")).status_code

    with ThreadPoolExecutor(8) as pool:
        assert list(pool.map(post, range(20))) == [201] * 20
    reader = medsec("users", "add", "olga", "--role", "operator", "--config", served.config)
    with served.client(reader.lines[-1]) as client:
        page = client.get("/api/v1/hosts", params={"limit": 100})
    assert page.status_code == 200, page.text
    names = {host["hostname"] for host in page.json()["items"]}
    assert {f"ward-{i}" for i in range(3)} | {f"bed-{i}" for i in range(20)} <= names


@pytest.mark.parametrize(
    ("limit", "value", "said"),
    [
        ("max_header_bytes", 100, "between 1024 and 1048576"),
        ("max_header_fields", 5, "between 16 and 1000"),
        ("header_timeout_seconds", 0, "between 1 and 300"),
        ("max_connections_per_address", 0, "between 1 and 100000"),
        ("max_connections_per_address", "many", "Expected `int`"),
    ],
)
def test_a_limit_out_of_range_is_one_line(
    served: Collector, tmp_path: Path, limit: str, value: object, said: str
) -> None:
    settings = yaml.safe_load(served.config.read_text(encoding="utf-8"))
    settings["limits"][limit] = value
    candidate = tmp_path / "collector.yaml"
    candidate.write_text(yaml.safe_dump(settings), encoding="utf-8")
    assert_usage_error(medsec("check-config", candidate), f"limits.{limit}", said)
