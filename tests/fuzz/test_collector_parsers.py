"""The collector's and the agent's parsers of outside text, fed arbitrary text and real documents
damaged (`tests.fuzz.mutate`): nmap's XML (also fed in arbitrary chunks, as the runner streams
it), the zones file, the agent's config, the collector's settings and the report JSON the
collector ingests. Each returns a value or raises its one documented error with a one-line
message: `NmapError`, `ZonesError`, `ConfigError`, `SettingsError`, `ReportInvalid`.

Each bug they found is fixed and its input kept, as an @example or a test of its own.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest
from hypothesis import example, given
from hypothesis import strategies as st

from agent.config import ConfigError, load_config
from checks import envelope as env
from checks.registry import Registry, builtin_registry
from checks.report import ReportInvalid, parse_report
from collector.api.errors import ApiError
from collector.api.ingest import Ingest
from collector.models import Agent, SignatureAlg
from collector.scan.nmap import NmapError, NmapXmlParser, parse_nmap_xml
from collector.scan.zones import ZonesError, load_zones
from collector.settings import CollectorSettings, SettingsError, TlsSettings, load_settings
from collector.store import Store
from collector.store.values import utc
from tests.fuzz.budget import BUDGET, FUZZ
from tests.fuzz.mutate import REPO, fixture_texts, outside_text

HUGE_INT = "9" * 5000
DEEP_JSON = "[" * 5000 + "]" * 5000
SUPERSCRIPT_2 = "\u00b2"  # str.isdigit() says yes; int() refuses it


def refused_clearly(exc: BaseException) -> None:
    message = str(exc)
    assert message.strip(), f"{type(exc).__name__} without a message"
    assert "\n" not in message, f"a message of several lines: {message!r}"


@pytest.fixture(scope="module")
def folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A folder with the TLS files the settings name (they are checked to exist)."""
    base = tmp_path_factory.mktemp("fuzz-config")
    (base / "tls").mkdir()
    (base / "tls" / "cert.pem").write_text("cert\n", encoding="utf-8")
    (base / "tls" / "key.pem").write_text("key\n", encoding="utf-8")
    (base / "tls" / "key.pem").chmod(0o600)
    (base / "ssh").mkdir()
    for name in ("probe_key", "known_hosts"):
        (base / "ssh" / name).write_text("-\n", encoding="utf-8")
        (base / "ssh" / name).chmod(0o600)
    return base


def _write(folder: Path, text: str) -> Path:
    path = folder / "under-test.yaml"
    path.write_text(text, encoding="utf-8", errors="surrogatepass")
    return path


# --------------------------------------------------------------------------- nmap XML

NMAP_SEEDS = fixture_texts("raw/nmap/*.xml")
_FINISHED = '<runstats><finished time="1" elapsed="{}" exit="success"/></runstats>'
_PORT = (
    '<host><status state="up" reason="user-set"/><address addr="198.18.0.1" addrtype="ipv4"/>'
    '<ports><port protocol="tcp" portid="{}"><state state="open" reason="syn-ack" '
    'reason_ttl="{}"/></port></ports></host>'
)
_FOLDED = (
    '<nmaprun><host><status state="up" reason="user-set"/><ports><extraports state="closed" '
    'count="3"><extrareasons reason="resets" count="3" proto="tcp" ports="{}"/></extraports>'
    "</ports></host></nmaprun>"
)


@FUZZ
@given(outside_text(NMAP_SEEDS))
@example(f"<nmaprun>{_FINISHED.format('0.cess')}</nmaprun>")
@example("<nmaprun>" + _PORT.format("22", SUPERSCRIPT_2) + "</nmaprun>")
@example("<nmaprun>" + _PORT.format(SUPERSCRIPT_2, "64") + "</nmaprun>")
@example(f"<nmaprun>{_PORT.format(HUGE_INT, HUGE_INT)}</nmaprun>")
@example(f'<nmaprun><host><extraports state="closed" count="{SUPERSCRIPT_2}"/></host></nmaprun>')
@example(_FOLDED.format("1-999999999"))
@example(_FOLDED.format(f"1,{SUPERSCRIPT_2},3-x"))
@example('<?xml version="1.0" encoding="UTF-99999"?><nmaprun></nmaprun>')  # once a LookupError
def test_nmap_xml_is_read_or_refused(text: str) -> None:
    """Parsed, and usable: the folded port lists expand (to ports that exist)."""
    if BUDGET.spent():
        return
    try:
        run = parse_nmap_xml(text)
    except NmapError as exc:
        refused_clearly(exc)
        return
    for host in run.hosts:
        assert all(0 <= port.port <= 65_535 for port in host.all_ports())


@FUZZ
@given(st.sampled_from(NMAP_SEEDS), st.lists(st.integers(0, 100_000), max_size=8))
def test_nmap_xml_read_in_chunks_is_read_whole(text: str, cuts: list[int]) -> None:
    """The runner feeds nmap's stdout as it arrives: where the pipe splits it changes nothing."""
    if BUDGET.spent():
        return
    data = text.encode()
    parser = NmapXmlParser()
    edges = [0, *sorted(c % (len(data) + 1) for c in cuts), len(data)]
    for start, end in itertools.pairwise(edges):
        parser.feed(data[start:end])
    assert parser.close() == parse_nmap_xml(data)


# --------------------------------------------------------------------------- YAML files

LAB_ZONES = (REPO / "collector" / "lab" / "zones.yaml").read_text("utf-8")
ZONES_SEEDS = [
    "zones:\n"
    '  - {name: servers, cidrs: ["127.0.0.1/32"], critical: true, vantage: {kind: local}}\n'
    '  - {name: office, cidrs: ["127.0.0.2/32"], users: true, vantage: {kind: local}}\n'
    'scan: {extra_ports: ["tcp/22", "tcp/5432"], timing: 4, min_rate: 3000}\n',
]
AGENT_SEEDS = [(REPO / "examples" / "agent.yaml").read_text("utf-8")]
SETTINGS_SEEDS = [
    "tls: {cert_file: tls/cert.pem, key_file: tls/key.pem}\ndatabase: sqlite:///medsec.db\n",
    "listen: 0.0.0.0:8443\nworkers: 4\ntls: {cert_file: tls/cert.pem, key_file: tls/key.pem}\n"
    "database: postgresql+psycopg://medsec:secret@db:5432/medsec\n"
    "limits: {max_report_bytes: 2097152, max_future_skew_seconds: 60}\n"
    "enrollment: {token_ttl_minutes: 30}\naudit: {retention_days: 400}\n"
    "reports: {retention_days: 800, stale_after_minutes: 120}\n"
    "snapshots: {dir: snapshots, crypto: sm}\nscans: {zones: {}, timeout_seconds: 600}\n",
]


def zones_seeds(folder: Path) -> list[str]:
    """The lab's zones file as `medsec lab up` writes it (LAB/ made absolute), and a small one."""
    return [LAB_ZONES.replace("LAB/", f"{folder}/"), *ZONES_SEEDS]


@pytest.fixture(scope="module")
def registry() -> Registry:
    return builtin_registry()


def test_the_seeds_are_valid(folder: Path, registry: Registry) -> None:
    """Damage starts from valid documents, so what is damaged is the parts past the syntax."""
    for text in zones_seeds(folder):
        load_zones(_write(folder, text))
    for text in AGENT_SEEDS:
        load_config(_write(folder, text), registry)
    for text in SETTINGS_SEEDS:
        load_settings(_write(folder, text))


def _yaml_file_refused_clearly(error: type[Exception], load: object, path: Path) -> None:
    assert callable(load)
    try:
        load(path)
    except error as exc:
        refused_clearly(exc)


def test_zones_file_is_read_or_refused(folder: Path) -> None:
    @FUZZ
    @given(outside_text(zones_seeds(folder)))
    @example("zones: " + "[" * 5000 + "]" * 5000)
    def run(text: str) -> None:
        if not BUDGET.spent():
            _yaml_file_refused_clearly(ZonesError, load_zones, _write(folder, text))

    run()


def test_agent_config_is_read_or_refused(folder: Path, registry: Registry) -> None:
    @FUZZ
    @given(outside_text(AGENT_SEEDS))
    @example("checks: {parameters: {" + "{" * 5000 + "}" * 5000 + "}}")
    def run(text: str) -> None:
        if not BUDGET.spent():
            path = _write(folder, text)
            _yaml_file_refused_clearly(ConfigError, lambda p: load_config(p, registry), path)

    run()


def test_collector_settings_are_read_or_refused(folder: Path) -> None:
    @FUZZ
    @given(outside_text(SETTINGS_SEEDS))
    @example(SETTINGS_SEEDS[0] + f"listen: 127.0.0.1:{HUGE_INT}\n")
    def run(text: str) -> None:
        if not BUDGET.spent():
            _yaml_file_refused_clearly(SettingsError, load_settings, _write(folder, text))

    run()


@pytest.mark.parametrize("kind", ["agent", "zones", "settings"])
def test_a_huge_yaml_integer_is_a_config_error(folder: Path, registry: Registry, kind: str) -> None:
    if kind == "agent":
        path = _write(folder, f"site: dc1\nlogs: {{min_retention_days: {HUGE_INT}}}\n")
        with pytest.raises(ConfigError):
            load_config(path, registry)
    elif kind == "zones":
        with pytest.raises(ZonesError):
            load_zones(_write(folder, ZONES_SEEDS[0] + f"x: {HUGE_INT}\n"))
    else:
        with pytest.raises(SettingsError):
            load_settings(_write(folder, SETTINGS_SEEDS[0] + f"workers: {HUGE_INT}\n"))


def test_a_tls_path_too_long_is_a_settings_error(folder: Path) -> None:
    text = f"tls: {{cert_file: tls/cert.pem, key_file: {'k' * 300}}}\ndatabase: sqlite:///m.db\n"
    with pytest.raises(SettingsError):
        load_settings(_write(folder, text))


# --------------------------------------------------------------------------- report JSON

REPORT_SEEDS = [(REPO / "tests" / "checks" / "golden" / "report.json").read_text("utf-8")]
RECEIVED_AT = datetime(2026, 11, 28, 10, 0, tzinfo=UTC)
"""Half an hour after the golden report was made."""
HOLE_1 = REPORT_SEEDS[0].replace("2026-11-28T09:30:00Z", "0001-01-01T00:00:00+01:00")


@FUZZ
@given(outside_text(REPORT_SEEDS, is_json=True))
@example(HOLE_1)
@example(REPORT_SEEDS[0].replace('"inventory": {', '"inventory": {"x": ' + DEEP_JSON + ", ", 1))
def test_report_json_is_read_or_refused(text: str) -> None:
    """What `POST /api/v1/reports` hands to `parse_report` after the envelope and signature."""
    if BUDGET.spent():
        return
    try:
        parse_report(text.encode("utf-8", "surrogatepass"))
    except ReportInvalid as exc:
        refused_clearly(exc)


@pytest.fixture(scope="module")
def ingest(folder: Path) -> Iterator[Ingest]:
    """The collector's report pipeline (its checks need no database)."""
    settings = CollectorSettings(
        tls=TlsSettings(cert_file="cert.pem", key_file="key.pem"),
        database=f"sqlite:///{folder / 'unused.db'}",
    )
    store = Store.open(settings.database)
    try:
        yield Ingest(settings, store, lambda: RECEIVED_AT)
    finally:
        store.close()


AGENT_KEY = env.generate_private_key("ed25519")
AGENT = Agent(
    id=1,
    name="his-db-01",
    alg=SignatureAlg.ED25519,
    public_key_pem=env.public_key_pem(AGENT_KEY, "ed25519"),
    enrolled_at=RECEIVED_AT,
    revoked_at=None,
)


def test_a_report_the_collector_accepts_can_be_stored(ingest: Ingest) -> None:
    """Every report the ingest checks pass (signed by its enrolled agent) has values the store
    can keep — its time in UTC; every one they refuse is a 4xx with a one-line message. The
    first example is issue 15's hole 1: a year-1 time with a positive offset, which the store
    could not convert to UTC (OverflowError: the whole group-commit batch answered 500)."""

    @FUZZ
    @given(outside_text(REPORT_SEEDS, is_json=True))
    @example(HOLE_1)
    def run(text: str) -> None:
        if BUDGET.spent():
            return
        body = env.seal(text.encode("utf-8", "surrogatepass"), AGENT.name, AGENT_KEY, "ed25519")
        try:
            report, _, _ = ingest.check(AGENT, body, RECEIVED_AT)
        except ApiError as exc:
            refused: ApiError = exc
        else:
            assert utc(report.generated_at).tzinfo is UTC
            return
        assert 400 <= refused.status < 500, (refused.status, refused.code)
        refused_clearly(refused)

    run()
