"""The HTML and PDF compliance reports: golden HTML in both languages, a page that stands alone
(no URL, no script, inline SVG) and escapes what hosts and people wrote, large clauses summarised
with a pointer to the full evidence, and PDFs read back with poppler's tools (text, fonts, page
size, a rendered page). Golden files are rewritten only with MEDSEC_UPDATE_GOLDEN=1."""

from __future__ import annotations

import logging
import os
import re
import shutil
import socket
import subprocess
from pathlib import Path

import msgspec
import pytest
from markupsafe import escape

from collector.compliance.model import (
    AttestationEvidence,
    Change,
    Compliance,
    Counts,
    EvidenceItem,
    FamilyCounts,
    Scope,
)
from collector.compliance.render import charts, render
from collector.compliance.render.html import OBJECT_LIMIT, render_html
from tests.compliance.sample import sample_compliance

GOLDEN = Path(__file__).parent / "golden"
POPPLER = ("pdftotext", "pdffonts", "pdfinfo", "pdftoppm")
needs_poppler = pytest.mark.skipif(
    any(shutil.which(tool) is None for tool in POPPLER),
    reason="needs poppler-utils (pdftotext, pdffonts, pdfinfo, pdftoppm)",
)
HOSTILE = "<script>alert(1)</script>"


@pytest.fixture(scope="module")
def sample() -> Compliance:
    return sample_compliance()


@pytest.mark.parametrize("lang", ["zh", "en"])
def test_html_matches_golden(sample: Compliance, lang: str) -> None:
    page = render_html(sample, lang)
    golden = GOLDEN / f"report.{lang}.html"
    if os.environ.get("MEDSEC_UPDATE_GOLDEN") == "1":
        golden.parent.mkdir(exist_ok=True)
        golden.write_bytes(page)
    assert golden.exists(), f"{golden} missing: run with MEDSEC_UPDATE_GOLDEN=1 to create it"
    assert page == golden.read_bytes(), (
        f"report.{lang}.html differs from its golden file; if the change is intended, "
        "regenerate with MEDSEC_UPDATE_GOLDEN=1 and review the diff"
    )


@pytest.mark.parametrize("lang", ["zh", "en"])
def test_html_stands_alone(sample: Compliance, lang: str) -> None:
    page = render(sample, "html", lang).decode("utf-8")
    assert "http://" not in page
    assert "https://" not in page
    assert "<script" not in page.lower()
    assert "url(" not in page
    assert "@import" not in page
    assert "src=" not in page
    assert all(link.startswith("#") for link in re.findall(r'href="([^"]*)"', page))
    assert page.count("<svg") >= 2
    assert "@page" in page
    assert "size: A4" in page


def test_html_zh_content(sample: Compliance) -> None:
    page = render_html(sample, "zh").decode("utf-8")
    for text in (
        sample.title_zh,
        "GB/T 22239-2019",
        sample.catalog_edition.sha256[:12],
        "部分符合",
        "未判定",
        "8.1.4.8 b",
        "数据保密性",
        "his-app-02",
        "aes-cbc-essiv 128 位密钥",
        "disk.cipher_strength",
        "/var/lib/his",
        "证据过期：最近报告于 2026-12-01T05:00:00Z",
        # the attestation, marked as a person's statement, with its file's digest
        "人工声明",
        "人员的声明",
        "auditor-li",
        "门禁系统验收报告",
        "access-control.pdf",
        "ab" * 32,
        "2027-11-28T08:00:00Z",
        str(escape(sample.summary.grade.rule_zh)),
        '第 " counter(page) " 页 / 共 " counter(pages) " 页',
    ):
        assert text in page, text
    # Chinese requirement texts, never the English titles, in the Chinese report
    clause = next(c for c in sample.clauses if c.id == "8.1.4.8 b")
    assert clause.text_zh in page
    assert clause.title_en not in page


def test_html_en_content(sample: Compliance) -> None:
    page = render_html(sample, "en").decode("utf-8")
    clause = next(c for c in sample.clauses if c.id == "8.1.4.8 b")
    for text in (
        sample.title_en,
        clause.title_en,
        "partly conforms",
        "undecided",
        "aes-cbc-essiv 128-bit key",
        "Attestation",
    ):
        assert str(escape(text)) in page, text
    assert 'content: "Page " counter(page) " of " counter(pages);' in page
    assert "aes-cbc-essiv 128 位密钥" not in page


def test_html_shows_scope_and_changes() -> None:
    base = sample_compliance("mnds")
    assert "全部" in render_html(base).decode("utf-8")
    changed = msgspec.structs.replace(
        base,
        scope=Scope(site="dc1", zone="his", as_of="2026-12-01T07:00:00Z"),
        changes=[
            Change("4.3.1", "his-app-02", "pass", "fail"),
            Change("6.2", None, None, "manual"),
        ],
        since="2026-11-01T00:00:00Z",
    )
    page = render_html(changed).decode("utf-8")
    assert "站点 dc1；区域 his；截至 2026-12-01T07:00:00Z" in page
    assert "与上次报告相比的变化（上次报告 2026-11-01T00:00:00Z）" in page
    row = page[page.index("<td>4.3.1</td>") :]
    assert row.index("通过") < row.index("不通过") < row.index("</tr>")
    english = render_html(changed, "en").decode("utf-8")
    assert "site dc1" in english
    assert "Changes since the previous report" in english


def _hostile(compliance: Compliance) -> Compliance:
    """The sample with a host name, a check message and an attestation note holding markup."""
    clauses = []
    for clause in compliance.clauses:
        objects = [
            msgspec.structs.replace(obj, name=HOSTILE) if obj.name == "his-app-02" else obj
            for obj in clause.objects
        ]
        evidence: list[EvidenceItem | AttestationEvidence] = []
        for item in clause.evidence:
            if isinstance(item, EvidenceItem) and item.status == "fail":
                evidence.append(msgspec.structs.replace(item, message_zh=HOSTILE, message=HOSTILE))
            elif isinstance(item, AttestationEvidence):
                note = msgspec.structs.replace(item.attestation, note=f"</style>{HOSTILE}")
                evidence.append(msgspec.structs.replace(item, attestation=note))
            else:
                evidence.append(item)
        clauses.append(msgspec.structs.replace(clause, objects=objects, evidence=evidence))
    return msgspec.structs.replace(compliance, clauses=clauses)


@pytest.mark.parametrize("lang", ["zh", "en"])
def test_html_escapes_what_hosts_and_people_wrote(sample: Compliance, lang: str) -> None:
    page = render_html(_hostile(sample), lang).decode("utf-8")
    assert "<script" not in page.lower()
    assert "</style><" not in page
    assert page.count(str(escape(HOSTILE))) >= 3


def test_chart_escapes_family_names() -> None:
    counts = Counts(by_status={"pass": 1}, by_conformity={"符合": 1}, rate=100.0)
    family = FamilyCounts(family='<b onload="x">&', clauses=1, counts=counts)
    for chart in (charts.rate_chart([family], "zh"), charts.status_chart([family], "en")):
        assert "<b " not in chart
        assert "&lt;b onload=&#34;x&#34;&gt;&amp;" in chart
        assert chart.startswith("<svg")
        assert "http" not in chart


@pytest.fixture(scope="module")
def hundreds() -> Compliance:
    return sample_compliance(hosts=300)


@pytest.mark.parametrize(
    ("lang", "line"),
    [
        (
            "zh",
            "共 301 个对象（3 个未通过），仅列出前 2 个未通过对象及其未通过的结果；"
            "完整证据见 XLSX/JSON 报告",
        ),
        ("en", "301 objects (3 not passing); only the first 2 not passing are listed"),
    ],
)
def test_large_clause_lists_first_failing_objects(
    hundreds: Compliance, lang: str, line: str
) -> None:
    page = render_html(hundreds, lang, limit=2).decode("utf-8")
    assert line in page
    assert "XLSX/JSON" in page
    detail = page[page.index('id="d-8.1.4.8-b"') :]
    detail = detail[: detail.index("</table>")]
    # failing before erring, in the document's order: his-app-02 fails, his-app-300 is stale;
    # the missing agent (third not passing) and the passing hosts are left out
    assert "his-app-02" in detail
    assert "his-app-300" in detail
    assert "lis-db-01" not in detail
    assert "his-app-150" not in detail
    assert "aes-cbc-essiv" in detail
    # of the failing host, the result that failed, not its disk results that passed
    failing_host = detail[detail.index("his-app-02") : detail.index("his-app-300")]
    assert "aes-cbc-essiv" in failing_host
    assert "swap" not in failing_host
    assert "交换分区" not in failing_host


def test_large_report_is_bounded(hundreds: Compliance) -> None:
    summarised = render_html(hundreds)
    listing_all = render_html(hundreds, limit=10**6)
    assert "仅列出其中 3 个未通过对象" in summarised.decode("utf-8")
    assert len(summarised) * 5 < len(listing_all)
    # more hosts do not make a longer page once clauses are summarised
    thousand = render_html(sample_compliance(hosts=1000))
    assert len(thousand) < len(summarised) * 1.01
    # below the limit every object is listed and nothing points elsewhere
    small = sample_compliance()
    assert max(len(clause.objects) for clause in small.clauses) <= OBJECT_LIMIT
    assert "XLSX/JSON" not in render_html(small).decode("utf-8")


class _Warnings(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.messages: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.messages.append(record.getMessage())


@pytest.fixture(scope="module")
def pdfs(
    sample: Compliance, tmp_path_factory: pytest.TempPathFactory
) -> tuple[dict[str, Path], list[str]]:
    """The sample printed in both languages, and what WeasyPrint warned about meanwhile."""
    from collector.compliance.render.pdf import render_pdf

    folder = tmp_path_factory.mktemp("pdf")
    handler = _Warnings()
    logger = logging.getLogger("weasyprint")
    logger.addHandler(handler)
    try:
        paths = {}
        for lang in ("zh", "en"):
            paths[lang] = folder / f"report.{lang}.pdf"
            paths[lang].write_bytes(render_pdf(sample, lang))
    finally:
        logger.removeHandler(handler)
    return paths, handler.messages


def _run(*argv: str | Path) -> str:
    return subprocess.run(
        [str(arg) for arg in argv],
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
        env={**os.environ, "LC_ALL": "C.UTF-8"},
    ).stdout


def _pages(pdf: Path) -> int:
    match = re.search(r"^Pages:\s+(\d+)", _run("pdfinfo", pdf), re.M)
    assert match
    return int(match.group(1))


def test_pdf_prints_without_complaint(pdfs: tuple[dict[str, Path], list[str]]) -> None:
    # CSS WeasyPrint ignores, or a resource it tried to fetch, would show here. The notice that
    # fonts are subset with fontTools (no libharfbuzz-subset) is about speed, not the page.
    _, warnings = pdfs
    assert [w for w in warnings if "HarfBuzz" not in w] == []


@needs_poppler
def test_pdf_zh_text(pdfs: tuple[dict[str, Path], list[str]], sample: Compliance) -> None:
    pdf = pdfs[0]["zh"]
    text = _run("pdftotext", "-layout", pdf, "-")
    flat = re.sub(r"\s+", "", text)
    for words in (
        sample.title_zh,
        "部分符合",
        "未判定",
        "his-app-02",
        "aes-cbc-essiv128位密钥",
        "人工声明",
        "auditor-li",
        "数据保密性",
    ):
        assert re.sub(r"\s+", "", words) in flat, words
    pages = _pages(pdf)
    assert pages > 5
    assert f"第1页/共{pages}页" in flat
    assert f"第{pages}页/共{pages}页" in flat


@needs_poppler
def test_pdf_en_text(pdfs: tuple[dict[str, Path], list[str]], sample: Compliance) -> None:
    pdf = pdfs[0]["en"]
    flat = re.sub(r"\s+", " ", _run("pdftotext", "-layout", pdf, "-"))
    for words in ("Compliance report", "partly conforms", "aes-cbc-essiv 128-bit key", "Summary"):
        assert words in flat, words
    pages = _pages(pdf)
    assert f"Page 1 of {pages}" in flat
    assert "128 位密钥" not in flat


@needs_poppler
@pytest.mark.parametrize("lang", ["zh", "en"])
def test_pdf_embeds_cjk_font_on_a4(pdfs: tuple[dict[str, Path], list[str]], lang: str) -> None:
    pdf = pdfs[0][lang]
    fonts = _run("pdffonts", pdf).splitlines()[2:]
    cjk = [line.split() for line in fonts if "CJK" in line]
    assert cjk, fonts
    # columns end with: emb sub uni object-id generation
    assert all(cols[-5] == "yes" for cols in cjk), cjk
    assert all(line.split()[-5] == "yes" for line in fonts), "every font embedded"
    size = re.search(r"^Page size:\s+([\d.]+) x ([\d.]+) pts", _run("pdfinfo", pdf), re.M)
    assert size
    assert abs(float(size.group(1)) - 595.28) < 1
    assert abs(float(size.group(2)) - 841.89) < 1


@needs_poppler
def test_pdf_first_page_renders(pdfs: tuple[dict[str, Path], list[str]], tmp_path: Path) -> None:
    from PIL import Image

    _run("pdftoppm", "-r", "50", "-png", "-f", "1", "-l", "1", pdfs[0]["zh"], tmp_path / "p")
    (png,) = tmp_path.glob("p*.png")
    with Image.open(png) as image:
        histogram = image.convert("L").histogram()
    # a blank page is all white (255); text, rules and charts put dark pixels on it
    assert sum(histogram[:128]) > 500


def test_pdf_never_fetches_a_url() -> None:
    """A page that references a URL is refused, and nothing connects to it."""
    from collector.compliance.render.pdf import URLRefused, html_to_pdf

    with socket.socket() as server:
        server.bind(("127.0.0.1", 0))
        server.listen(1)
        server.setblocking(False)
        port = server.getsockname()[1]
        page = f'<p>x</p><img src="http://127.0.0.1:{port}/logo.png">'.encode()
        with pytest.raises(URLRefused, match="refused to fetch"):
            html_to_pdf(page)
        with pytest.raises(BlockingIOError):
            server.accept()
