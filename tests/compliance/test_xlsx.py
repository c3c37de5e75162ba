"""The XLSX assessment record, read back with openpyxl: its sheets, the record sheets' layout
(header, frozen row, filter), what a failing object's and an attested clause's rows say, the
summary's native chart, English, text that looks like a formula, row counts against the document,
a large inventory, sheets past the row limit, and the whole content against golden files
(rewritten only with MEDSEC_UPDATE_GOLDEN=1)."""

from __future__ import annotations

import io
import json
import os
import re
import zipfile
from pathlib import Path
from typing import Any

import msgspec
import openpyxl
import pytest
from openpyxl.worksheet.worksheet import Worksheet

from collector.compliance.model import (
    AttestationEvidence,
    Change,
    ClauseVerdict,
    Compliance,
    EvidenceItem,
)
from collector.compliance.render import render
from collector.compliance.render.xlsx import RECORD_HEADER, render_xlsx, sheet_name
from collector.compliance.render.xlsx_stream import CELL_MAX, display_width
from tests.compliance.sample import sample_compliance

GOLDEN = Path(__file__).parent / "golden"
FIXED_SHEETS = {"zh": ("汇总", "主机清单", "证据"), "en": ("Summary", "Hosts", "Evidence")}


def load(data: bytes) -> openpyxl.Workbook:
    return openpyxl.load_workbook(io.BytesIO(data))


def data_rows(sheet: Worksheet) -> list[tuple[Any, ...]]:
    return list(sheet.iter_rows(min_row=2, values_only=True))


def record_rows(doc: Compliance) -> dict[str, int]:
    """Rows each family's sheet should have: one per clause × object, one for a clause with no
    object."""
    rows: dict[str, int] = {}
    for clause in doc.clauses:
        rows[clause.family] = rows.get(clause.family, 0) + max(1, len(clause.objects))
    return rows


def evidence_items(doc: Compliance) -> list[EvidenceItem | AttestationEvidence]:
    seen: dict[int, EvidenceItem | AttestationEvidence] = {}
    for clause in doc.clauses:
        for item in clause.evidence:
            seen.setdefault(id(item), item)
    return list(seen.values())


@pytest.fixture(scope="module")
def doc() -> Compliance:
    return sample_compliance()


@pytest.fixture(scope="module")
def book(doc: Compliance) -> openpyxl.Workbook:
    return load(render_xlsx(doc))


@pytest.fixture(scope="module")
def book_en(doc: Compliance) -> openpyxl.Workbook:
    return load(render(doc, "xlsx", "en"))


def test_sheets_are_summary_families_hosts_evidence(
    doc: Compliance, book: openpyxl.Workbook
) -> None:
    families = [family.family for family in doc.summary.families]
    assert book.sheetnames == ["汇总", *families, "主机清单", "证据"]
    assert book.active.title == "汇总"


def test_record_sheets_have_the_header_frozen_and_filtered(
    doc: Compliance, book: openpyxl.Workbook
) -> None:
    for family in record_rows(doc):
        sheet = book[family]
        assert [c.value for c in sheet[1]] == list(RECORD_HEADER["zh"])
        assert sheet.freeze_panes == "A2"
        assert sheet.auto_filter.ref == f"A1:G{sheet.max_row}"
        assert all(cell.alignment.wrap_text for cell in sheet[2] if cell.value)
        widths = [sheet.column_dimensions[letter].width for letter in "ABCDEFG"]
        assert all(4 <= width <= 64 for width in widths), widths
        # The requirement column is wider than the conformity column, CJK counted double.
        assert widths[2] > widths[5] >= display_width("部分符合")


def test_row_counts_follow_the_document(doc: Compliance, book: openpyxl.Workbook) -> None:
    for family, rows in record_rows(doc).items():
        assert len(data_rows(book[family])) == rows, family
    assert len(data_rows(book["主机清单"])) == len(doc.hosts) + len(doc.missing)
    items = evidence_items(doc)
    # The same result stands behind several clauses and is written once, naming them all.
    assert len(items) < sum(len(clause.evidence) for clause in doc.clauses)
    assert len(data_rows(book["证据"])) == len(items)


def failing_objects(doc: Compliance) -> list[tuple[ClauseVerdict, str, str, list[str]]]:
    """(clause, how its object cell ends, conformity, Chinese messages of its failed results)."""
    found = []
    for clause in doc.clauses:
        for obj in clause.objects:
            if obj.conformity in ("部分符合", "不符合"):
                messages = [
                    item.message_zh or item.message
                    for item in clause.evidence
                    if isinstance(item, EvidenceItem)
                    and item.object == obj.id
                    and item.status == "fail"
                ]
                found.append((clause, "：" + obj.name, obj.conformity, messages))
    return found


def test_a_failing_object_row_says_so_with_its_chinese_message(
    doc: Compliance, book: openpyxl.Workbook
) -> None:
    failing = failing_objects(doc)
    assert {conformity for _, _, conformity, _ in failing} == {"部分符合", "不符合"}
    for clause, name, conformity, messages in failing:
        sheet = book[clause.family]
        rows = [
            row
            for row in sheet.iter_rows(min_row=2)
            if str(row[2].value).startswith(clause.id + " ") and str(row[3].value).endswith(name)
        ]
        assert len(rows) == 1, (clause.id, name)
        row = rows[0]
        assert row[5].value == conformity
        assert row[5].fill.fgColor.rgb.endswith("FFC7CE" if conformity == "不符合" else "FFEB9C")
        assert str(row[4].value).startswith("不通过")
        assert messages
        assert all(message in row[4].value for message in messages)
        assert "报告：" in row[6].value


def test_the_partly_conforming_disk_host_is_on_the_computing_environment_sheet(
    book: openpyxl.Workbook,
) -> None:
    rows = [
        row
        for row in data_rows(book["8.1.4 安全计算环境"])
        if str(row[2]).startswith("8.1.4.8 b") and row[3] == "主机：his-app-02"
    ]
    assert len(rows) == 1
    assert rows[0][5] == "部分符合"
    assert "aes-cbc-essiv 128 位密钥" in rows[0][4]
    assert "disk.cipher_strength" in rows[0][6]


def test_an_attested_clause_says_it_is_a_persons_statement(book: openpyxl.Workbook) -> None:
    rows = [r for r in data_rows(book["8.1.1 安全物理环境"]) if str(r[2]).startswith("8.1.1.2 ")]
    assert len(rows) == 1
    _, _, _, who, record, conformity, evidence = rows[0]
    assert who == "人工声明：auditor-li"
    assert conformity == "符合"
    assert "门禁系统验收报告" in record
    assert "有效期至" in record
    assert "人工声明 a-1" in evidence
    assert "个人陈述" in evidence
    assert "ab" * 32 in evidence
    # The evidence sheet carries it too, marked the same way.
    statement = [r for r in data_rows(book["证据"]) if str(r[2]).startswith("人工声明 a-1")]
    assert len(statement) == 1
    assert statement[0][0] == "人工声明：auditor-li"
    assert statement[0][1] == "8.1.1.2"
    assert "个人陈述" in statement[0][2]
    assert json.loads(statement[0][6])["file_sha256"] == "ab" * 32


def test_a_manual_clause_without_statement_needs_a_person(book: openpyxl.Workbook) -> None:
    rows = [r for r in data_rows(book["8.1.1 安全物理环境"]) if str(r[2]).startswith("8.1.1.3 a")]
    assert len(rows) == 1
    assert rows[0][3].startswith("需人工测评")
    assert rows[0][4] == "需人工"
    assert rows[0][5] == "未判定"


def test_an_undecided_object_says_why_in_chinese(doc: Compliance, book: openpyxl.Workbook) -> None:
    clause, obj = next(
        (clause, obj)
        for clause in doc.clauses
        for obj in clause.objects
        if obj.kind == "host" and obj.status == "error" and obj.reason_zh
    )
    rows = [
        r
        for r in data_rows(book[clause.family])
        if str(r[2]).startswith(clause.id + " ") and r[3] == "主机：" + obj.name
    ]
    assert len(rows) == 1
    assert rows[0][4].split("\n")[0] == "无法判定：" + obj.reason_zh


def test_stale_and_missing_hosts_are_marked(doc: Compliance, book: openpyxl.Workbook) -> None:
    states = {row[0]: row[9] for row in data_rows(book["主机清单"])}
    for host in doc.hosts:
        assert states[host.hostname].startswith("过期" if host.stale else "正常")
    assert any(host.stale for host in doc.hosts)
    assert states["lis-db-01"].startswith("缺失")


def test_evidence_rows_carry_the_checks_record(doc: Compliance, book: openpyxl.Workbook) -> None:
    names = {obj.id: obj.name for clause in doc.clauses for obj in clause.objects}
    rows = {(r[0], r[2]): r for r in data_rows(book["证据"])}
    for item in evidence_items(doc):
        if isinstance(item, EvidenceItem):
            row = rows[names[item.object], item.check_id]
            clauses = [c.id for c in doc.clauses if any(e is item for e in c.evidence)]
            assert row[1] == ", ".join(clauses)
            assert row[3] == {"pass": "通过", "fail": "不通过"}[item.status]
            assert row[4] == (item.message_zh or item.message)
            assert row[5] == item.target
            assert json.loads(row[6]) == msgspec.json.decode(item.evidence)
            assert (row[7], row[8]) == (item.report_id, item.received_at)


def test_the_summary_has_a_native_chart_of_conformity_per_family(
    doc: Compliance, book: openpyxl.Workbook
) -> None:
    sheet = book["汇总"]
    assert len(sheet._charts) == 1
    series = sheet._charts[0].series
    assert len(series) == 1
    # The rates charted are the summary table's, one per family.
    reference = series[0].val.numRef.f
    column, first, last = re.fullmatch(
        r"'?汇总'?!\$([A-Z]+)\$(\d+):\$[A-Z]+\$(\d+)", reference
    ).groups()
    rates = [sheet[f"{column}{n}"].value for n in range(int(first), int(last) + 1)]
    expected = [f.counts.rate for f in doc.summary.families]
    assert [None if isinstance(r, str) else round(r * 100, 1) for r in rates] == expected
    values = [c for row in sheet.iter_rows(values_only=True) for c in row if c is not None]
    assert doc.summary.grade.rule_zh in values  # the Chinese record says the rule in Chinese
    assert any(str(v).startswith(str(doc.summary.grade.grade)) for v in values)


def test_english(doc: Compliance, book_en: openpyxl.Workbook) -> None:
    families = [family.family for family in doc.summary.families]
    assert book_en.sheetnames == ["Summary", *families, "Hosts", "Evidence"]
    sheet = book_en[families[0]]
    header = [c.value for c in sheet[1]]
    assert header == [
        "Family",
        "Control point",
        "Requirement",
        "Assessed object",
        "Result record",
        "Conformity",
        "Evidence",
    ]
    first = doc.clauses[0]
    assert sheet["C2"].value == f"{first.id} [{first.provenance}]\n{first.title_en}"
    rows = [r for r in data_rows(book_en["8.1.1 安全物理环境"]) if str(r[2]).startswith("8.1.1.2 ")]
    assert rows[0][5] == "conforms"
    assert "a person's statement" in rows[0][6]


def test_text_that_looks_like_a_formula_stays_text(doc: Compliance) -> None:
    hostile = ("=cmd|' /C calc'!A0", "+1+1", "-2+3", "@SUM(A1)")
    hosts = [
        msgspec.structs.replace(host, hostname=name)
        for host, name in zip(doc.hosts, hostile, strict=False)
    ]
    target = doc.hosts[0].id

    def renamed(clause: ClauseVerdict) -> ClauseVerdict:
        objects = [
            msgspec.structs.replace(o, name=hostile[0]) if o.id == target else o
            for o in clause.objects
        ]
        return msgspec.structs.replace(clause, objects=objects)

    clauses = [renamed(clause) for clause in doc.clauses]
    data = render_xlsx(msgspec.structs.replace(doc, hosts=hosts, clauses=clauses))
    with zipfile.ZipFile(io.BytesIO(data)) as package:
        sheets = [n for n in package.namelist() if n.startswith("xl/worksheets/sheet")]
        assert not any(b"<f>" in package.read(name) for name in sheets)
    book = load(data)
    cells = {c.value: c for row in book["主机清单"].iter_rows(min_row=2) for c in row}
    for name in hostile:
        assert cells[name].data_type == "s"
    evidence = {c.value: c for row in book["证据"].iter_rows(min_row=2) for c in row}
    assert evidence[hostile[0]].data_type == "s"
    record = {c.value: c for row in book["8.1.4 安全计算环境"].iter_rows(min_row=2) for c in row}
    assert "主机：" + hostile[0] in record


def test_text_excel_cannot_hold_is_escaped_or_cut(doc: Compliance) -> None:
    clause = next(c for c in doc.clauses if any(isinstance(e, EvidenceItem) for e in c.evidence))
    item = next(e for e in clause.evidence if isinstance(e, EvidenceItem))
    odd = msgspec.structs.replace(
        item,
        message_zh="bell\x07 and _x0041_ <b>&\ufffe",
        target="  /srv  ",
        evidence=msgspec.Raw(msgspec.json.encode({"blob": "x" * 40_000})),
    )
    swapped = msgspec.structs.replace(clause, evidence=[odd, *clause.evidence[1:]])
    clauses = [swapped if c is clause else c for c in doc.clauses]
    data = render_xlsx(msgspec.structs.replace(doc, clauses=clauses))
    with zipfile.ZipFile(io.BytesIO(data)) as package:
        xml = b"".join(package.read(n) for n in package.namelist() if "worksheets/sheet" in n)
    # Excel trims a text's ends unless told not to.
    assert b'<t xml:space="preserve">  /srv  </t>' in xml
    book = load(data)
    row = next(r for r in data_rows(book["证据"]) if r[4] and r[4].startswith("bell"))
    # Excel's own escapes: a control character as _xHHHH_, a literal _xHHHH_ kept as such.
    assert row[4] == "bell_x0007_ and _x005F_x0041_ <b>&_xFFFE_"
    assert len(row[6]) <= CELL_MAX
    assert "已截断" in row[6]
    assert row[6].startswith('{"blob":"xxx')


def test_three_hundred_hosts_are_all_in_the_inventory() -> None:
    doc = sample_compliance(hosts=300)
    # Read-only: a sheet is parsed only when its rows are read (the inventory's here); the
    # others give their extent from the dimension written with them.
    book = openpyxl.load_workbook(io.BytesIO(render_xlsx(doc)), read_only=True)
    names = [row[0] for row in book["主机清单"].iter_rows(min_row=2, values_only=True)]
    assert names == [h.hostname for h in doc.hosts] + [m.agent for m in doc.missing]
    assert len(set(names)) == 300 + 1 + 1  # agents, the scan, the missing agent
    for family, rows in record_rows(doc).items():
        assert book[family].max_row == rows + 1
    assert book["证据"].max_row == len(evidence_items(doc)) + 1


def test_a_sheet_past_the_row_limit_continues_on_the_next(doc: Compliance) -> None:
    book = load(render_xlsx(doc, max_rows=20))
    rows = record_rows(doc)
    for family, expected in rows.items():
        names = [family] + [n for n in book.sheetnames if n.startswith(f"{family} 续 ")]
        assert len(names) == -(-expected // 19)
        sheets = [book[name] for name in names]
        assert all(sheet.max_row <= 20 and sheet.freeze_panes == "A2" for sheet in sheets)
        assert all([c.value for c in s[1]] == list(RECORD_HEADER["zh"]) for s in sheets)
        assert sum(len(data_rows(sheet)) for sheet in sheets) == expected
    assert len(evidence_items(doc)) > 19
    assert "证据 续 2" in book.sheetnames


def test_changes_get_their_own_sheet(doc: Compliance) -> None:
    host = doc.hosts[0]
    changes = [Change("8.1.4.8 b", host.id, "pass", "fail"), Change("8.1.1.2", None, None, "pass")]
    book = load(render_xlsx(msgspec.structs.replace(doc, changes=changes, since="2026-11-01")))
    assert book.sheetnames[-1] == "变化"
    assert data_rows(book["变化"]) == [
        ("8.1.4.8 b", host.hostname, host.id, "通过", "不通过"),
        ("8.1.1.2", None, None, None, "通过"),
    ]


def test_the_same_document_gives_the_same_bytes(doc: Compliance) -> None:
    assert render_xlsx(doc) == render_xlsx(doc)


def test_sheet_names_are_ones_excel_accepts() -> None:
    taken: set[str] = set()
    assert sheet_name("a[b]:c*d?e/f\\g", taken) == "abcdefg"
    long = "8.1.4 安全计算环境 with a rather long tail that goes on"
    first = sheet_name(long, taken)
    second = sheet_name(long.upper(), taken)
    assert max(len(first), len(second)) <= 31
    assert second.endswith(" (2)")
    assert first.casefold() != second.casefold()
    assert sheet_name("'quoted'", taken) == "quoted"
    assert sheet_name("History", taken) == "History (2)"


def test_mnds_sheets(doc: Compliance) -> None:
    mnds = sample_compliance("mnds")
    book = load(render_xlsx(mnds))
    families = [family.family for family in mnds.summary.families]
    assert book.sheetnames == ["汇总", *families, "主机清单", "证据"]
    for family, rows in record_rows(mnds).items():
        assert len(data_rows(book[family])) == rows


def test_display_width_counts_cjk_double() -> None:
    assert display_width("ab") == 2
    assert display_width("安全") == 4
    assert display_width("ab\n安全类") == 6


def dump(book: openpyxl.Workbook) -> dict[str, Any]:
    """A workbook's content as JSON: per sheet its cells, filled cells, widths, panes, filter."""
    sheets = {}
    for sheet in book.worksheets:
        fills = {
            cell.coordinate: cell.fill.fgColor.rgb
            for row in sheet.iter_rows()
            for cell in row
            if cell.fill.fill_type == "solid"
        }
        sheets[sheet.title] = {
            "freeze": sheet.freeze_panes,
            "filter": sheet.auto_filter.ref,
            "widths": {k: v.width for k, v in sorted(sheet.column_dimensions.items())},
            "fills": fills,
            "rows": [list(row) for row in sheet.iter_rows(values_only=True)],
        }
    return sheets


@pytest.mark.parametrize("lang", ["zh", "en"])
def test_xlsx_matches_golden(doc: Compliance, lang: str) -> None:
    content = json.dumps(dump(load(render_xlsx(doc, lang))), ensure_ascii=False, indent=1)
    golden = GOLDEN / f"xlsx.{lang}.json"
    if os.environ.get("MEDSEC_UPDATE_GOLDEN") == "1":
        golden.parent.mkdir(exist_ok=True)
        golden.write_text(content + "\n", encoding="utf-8")
    assert golden.exists(), f"{golden} missing: run with MEDSEC_UPDATE_GOLDEN=1 to create it"
    assert content + "\n" == golden.read_text(encoding="utf-8"), (
        f"xlsx.{lang}.json differs from the workbook; if the change is intended, regenerate "
        "with MEDSEC_UPDATE_GOLDEN=1 and review the diff"
    )
