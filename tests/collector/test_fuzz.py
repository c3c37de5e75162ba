"""Fuzzing: schemathesis drives the live collector (real uvicorn over TLS, SQLite and PostgreSQL)
from its own OpenAPI schema, with data that fits the schema and data that does not, and no answer
may be a 5xx or a non-JSON error; hypothesis feeds the envelope and report parsers arbitrary bytes
and structurally plausible but wrong JSON, and the only exception allowed out is `EnvelopeError`.
"""

from __future__ import annotations

import base64
import contextlib
import json
from collections.abc import Iterator
from typing import Any

import pytest
import requests
import schemathesis
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from schemathesis import GenerationMode

from checks import envelope as env
from collector.models import Role
from collector.store import Store
from tests.collector.fixtures_api import (
    Server,
    TlsFiles,
    agent_report,
    enrol,
    make_report,
    make_server_tls,
    serving,
)

REPORTS = "/api/v1/reports"


@pytest.fixture(scope="module")
def server_tls(tmp_path_factory: pytest.TempPathFactory) -> TlsFiles:
    return make_server_tls(tmp_path_factory.mktemp("tls"))


@pytest.fixture(scope="module")
def report_template() -> dict[str, Any]:
    return agent_report()


@pytest.fixture
def api_server(store: Store, server_tls: TlsFiles) -> Iterator[Server]:
    with serving(store, server_tls) as server:
        yield server


# --------------------------------------------------------------------------- the API


@pytest.mark.parametrize("mode", [GenerationMode.POSITIVE, GenerationMode.NEGATIVE])
def test_no_server_error_from_schema_driven_requests(
    api_server: Server, report_template: dict[str, Any], mode: GenerationMode
) -> None:
    server = api_server
    admin = server.user(Role.ADMIN, "fuzz-admin")
    agent = enrol(server, "fuzz-agent")
    stored = server.client(agent.token).post(
        REPORTS, content=agent.seal(make_report(report_template))
    )
    assert stored.status_code == 201  # so host, report and result reads find something
    document = server.client().get("/openapi.json").json()
    schema = schemathesis.openapi.from_dict(document)
    # A snapshot request with valid filters makes a whole snapshot (two PDFs: seconds each), and
    # every field is optional, so even "negative" cases make them: the snapshot route's inputs are
    # tested in tests/compliance/test_compliance_api.py instead.
    schema = schema.exclude(method="POST", path="/api/v1/snapshots")
    session = requests.Session()
    seen: dict[str, set[int]] = {}

    @settings(
        max_examples=300,
        deadline=None,
        database=None,
        suppress_health_check=list(HealthCheck),
    )
    @given(case=schema.as_strategy(mode))
    def run(case: schemathesis.Case) -> None:
        token = agent.token if case.path == REPORTS else admin
        response = case.call(
            base_url=server.url,
            session=session,
            headers={"Authorization": f"Bearer {token}"},
            verify=str(server.tls.ca),  # per request: schemathesis would otherwise send True
            timeout=30,
        )
        where = f"{case.method} {case.formatted_path}"
        assert response.status_code < 500, (where, response.status_code, response.text)
        seen.setdefault(f"{case.method} {case.path}", set()).add(response.status_code)
        if response.status_code >= 400:
            body = json.loads(response.content)
            assert isinstance(body["error"], str), (where, body)
            assert isinstance(body["message"], str), (where, body)

    try:
        run()
    finally:
        session.close()
    assert len(seen) >= 10, seen  # most operations were exercised
    verdict = server.store.verify_audit()
    assert verdict.ok, verdict


# --------------------------------------------------------------------------- the parsers


def _only_envelope_errors(body: bytes) -> None:
    try:
        envelope, report, signature = env.open_envelope(body)
    except env.EnvelopeError:
        return
    assert isinstance(envelope, env.Envelope)
    assert isinstance(report, bytes)
    assert isinstance(signature, bytes)
    try:
        env.parse_report(report)
    except env.EnvelopeError:
        return


@settings(max_examples=400, deadline=None)
@given(st.binary(max_size=4096))
def test_arbitrary_bytes(body: bytes) -> None:
    _only_envelope_errors(body)
    with contextlib.suppress(env.EnvelopeError):
        env.parse_report(body)


_json = st.recursive(
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats(allow_nan=False)
    | st.text(max_size=40)
    | st.sampled_from(["medsec.envelope/v1", "medsec.report/v1", "ed25519", "sm2-sm3", "pass"]),
    lambda children: (
        st.lists(children, max_size=5) | st.dictionaries(st.text(max_size=12), children, max_size=5)
    ),
    max_leaves=30,
)


@st.composite
def _envelopes(draw: st.DrawFn) -> bytes:
    """Envelope-shaped objects: the right keys, each maybe given a wrong value or dropped."""
    fields: dict[str, Any] = {
        "schema": "medsec.envelope/v1",
        "agent": draw(st.text(min_size=1, max_size=200)),
        "alg": draw(st.sampled_from(["ed25519", "sm2-sm3", "rsa"])),
        "report": base64.b64encode(draw(st.binary(max_size=300))).decode(),
        "signature": draw(st.sampled_from(["", "!!", "AAAA", "===="])),
    }
    for key in list(fields):
        action = draw(st.sampled_from(["keep", "keep", "replace", "drop"]))
        if action == "replace":
            fields[key] = draw(_json)
        elif action == "drop":
            del fields[key]
    if draw(st.booleans()):
        fields[draw(st.text(max_size=8))] = draw(_json)
    return json.dumps(fields).encode()


@settings(max_examples=400, deadline=None)
@given(_envelopes())
def test_envelope_shaped_json(body: bytes) -> None:
    _only_envelope_errors(body)


@pytest.fixture(scope="module")
def valid_report(report_template: dict[str, Any]) -> dict[str, Any]:
    doc: dict[str, Any] = json.loads(make_report(report_template))
    return doc


def _paths(value: Any, prefix: tuple[Any, ...] = ()) -> Iterator[tuple[Any, ...]]:
    yield prefix
    if isinstance(value, dict):
        for key, child in value.items():
            yield from _paths(child, (*prefix, key))
    elif isinstance(value, list):
        for index, child in enumerate(value[:3]):
            yield from _paths(child, (*prefix, index))


@settings(
    max_examples=400,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
@given(data=st.data())
def test_report_shaped_json(valid_report: dict[str, Any], data: st.DataObject) -> None:
    """A real report with one value anywhere replaced by other JSON (or removed)."""
    doc = json.loads(json.dumps(valid_report))
    paths = [p for p in _paths(doc) if p]
    path = data.draw(st.sampled_from(paths))
    parent = doc
    for key in path[:-1]:
        parent = parent[key]
    if data.draw(st.booleans()) and isinstance(parent, dict):
        del parent[path[-1]]
    else:
        parent[path[-1]] = data.draw(_json)
    with contextlib.suppress(env.EnvelopeError):
        env.parse_report(json.dumps(doc).encode())


@pytest.mark.parametrize(
    "alg",
    [
        "ed25519",
        "sm2-sm3",
    ],
)
def test_verify_refuses_garbage_signatures_with_signature_invalid(alg: env.Alg) -> None:
    public = env.public_key_pem(env.generate_private_key(alg), alg)

    @settings(max_examples=150, deadline=None)
    @given(data=st.binary(max_size=256), signature=st.binary(max_size=160))
    def run(data: bytes, signature: bytes) -> None:
        with pytest.raises(env.SignatureInvalid):
            env.verify(data, signature, public, alg)

    run()


def test_deeply_nested_report_is_an_envelope_error(valid_report: dict[str, Any]) -> None:
    deep = json.dumps(valid_report).replace(
        '"inventory": {', '"inventory": {"x": ' + "[" * 100_000 + "]" * 100_000 + ", ", 1
    )
    with pytest.raises(env.EnvelopeError):
        env.parse_report(deep.encode())
