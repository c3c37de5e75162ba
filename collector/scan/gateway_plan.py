"""What a ZTNA gateway is asked, and how the answers become facts: every credential a client
without access might hold (none, a certificate from the scanner's own throwaway CA, an expired
one from it) on several paths (the published one, `/api/`, a random one, one with `..` that
normalises to `api/` under the published path), and — when the zones file gives the site's client
certificate and the vantage runs here — the same paths with it, so an answer can be compared
with what a legitimate client gets. All sent at once by the probe helper in one vantage.
"""

from __future__ import annotations

import secrets
from collections.abc import Callable, Mapping
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from checks.facts.network import GatewayAttempt, HttpExchange
from collector.scan.client_certs import stranger_certs, subject_of

REFUSED_CREDENTIALS = ("none", "untrusted", "expired")
"""Credentials no gateway may let through, in the order results are reported."""
CONFIGURED = "configured"


def probe_paths(url: str, token: str | None = None) -> tuple[str, ...]:
    """The published path, `/api/`, a random path, and a path with `..` (distinct, in order)."""
    published = urlsplit(url).path or "/"
    base = published if published.endswith("/") else published.rsplit("/", 1)[0] + "/"
    word = f"medsec-{token or secrets.token_hex(4)}"
    return tuple(dict.fromkeys((published, "/api/", f"/{word}", f"{base}{word}/../api/")))


def _with_path(url: str, path: str) -> str:
    parts = urlsplit(url)
    return urlunsplit((parts.scheme, parts.netloc, path, "", ""))


def attempt_id(credential: str, path: str) -> str:
    return f"{credential} {path}"


def gateway_requests(
    url: str,
    connect: tuple[str, int],
    *,
    timeout: float,
    cert_file: str | None,
    key_file: str | None,
    paths: tuple[str, ...],
) -> list[dict[str, Any]]:
    """The helper's requests: `anonymous` (the published URL, no certificate; kept for the
    existing facts), every refused credential on every path, and `configured` on every path
    when `cert_file` is given (None: not usable from the vantage)."""
    strangers = stranger_certs(subject_of(cert_file))
    pems = {"none": None, "untrusted": strangers.untrusted, "expired": strangers.expired}
    address, port = connect
    common = {"connect": [address, port], "timeout": timeout}
    requests: list[dict[str, Any]] = [{"id": "anonymous", "url": url, **common}]
    for credential in REFUSED_CREDENTIALS:
        pem = pems[credential]
        for path in paths:
            request: dict[str, Any] = {
                "id": attempt_id(credential, path),
                "url": _with_path(url, path),
                **common,
            }
            if pem is not None:
                request["client_pem"] = pem
            requests.append(request)
    if cert_file is not None and key_file is not None:
        requests.append(
            {"id": "authenticated", "url": url, **common,
             "client_cert": cert_file, "client_key": key_file}
        )  # fmt: skip
        requests += [
            {"id": attempt_id(CONFIGURED, path), "url": _with_path(url, path), **common,
             "client_cert": cert_file, "client_key": key_file}
            for path in paths
        ]  # fmt: skip
    return requests


def gateway_attempts(
    raw: Mapping[Any, Mapping[str, Any]],
    paths: tuple[str, ...],
    exchange: Callable[[Mapping[str, Any]], HttpExchange],
) -> tuple[GatewayAttempt, ...]:
    """The answers to `gateway_requests`, by credential then path; missing ones left out."""
    return tuple(
        GatewayAttempt(path, credential, exchange(raw[attempt_id(credential, path)]))
        for credential in (*REFUSED_CREDENTIALS, CONFIGURED)
        for path in paths
        if attempt_id(credential, path) in raw
    )
