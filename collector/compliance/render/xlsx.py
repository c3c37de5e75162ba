"""The XLSX report, laid out as an assessment record (测评记录): a summary sheet (counts per
status, conformity and control family, the indicative grade, a native chart of the conformity
rate per family), one sheet per control family with a row per clause × assessed object (安全类,
控制点, 测评指标, 测评对象, 结果记录, 符合情况, 证据), the host inventory, and every piece of
evidence once (with the clauses it stands behind).

XlsxWriter makes the workbook: the summary, its chart, the styles, every sheet with its header
row, frozen panes and filter. The data rows of the large sheets (hundreds of thousands at 10,000
hosts) are then streamed into those sheets' XML as inline strings: XlsxWriter spends about 14 µs
on each cell, which is 30 s for the 2 million cells of 10,000 hosts, while the rows written here
cost about 1 µs a cell. Every text is an inline string, so a host named `=cmd|...` is never a
formula. A sheet that would pass Excel's row limit continues on a next sheet with the header.
"""

from __future__ import annotations

import functools
import io
from collections.abc import Iterable, Iterator, Sequence
from datetime import datetime

import msgspec
import xlsxwriter
from xlsxwriter.workbook import Workbook
from xlsxwriter.worksheet import Worksheet

from collector.compliance.model import (
    CONFORMITIES,
    STATUSES,
    AttestationEvidence,
    AttestationOut,
    ClauseVerdict,
    Compliance,
    Counts,
    EvidenceItem,
    ObjectVerdict,
)
from collector.compliance.render.text import (
    STATUS_WORDS,
    conformity_word,
    kind_word,
    message,
    reason,
    status_word,
)
from collector.compliance.render.xlsx_stream import (
    Row,
    _fill,
    _Formats,
    _Styles,
    _Table,
    display_width,
)

EXCEL_ROWS = 1_048_576
_SHEET_NAME_MAX = 31
_SHEET_FORBIDDEN = str.maketrans("", "", "[]:*?/\\")

Evidence = EvidenceItem | AttestationEvidence

"""A data row: its cells' texts and their style ids (XlsxWriter's xf index of each format)."""

WORDS: dict[str, dict[str, str]] = {
    "zh": {
        "summary": "汇总",
        "hosts": "主机清单",
        "evidence": "证据",
        "changes": "变化",
        "record": "测评记录",
        "standard": "标准",
        "edition": "版本",
        "generated": "生成时间",
        "evaluated": "评估时刻",
        "scope": "范围",
        "unfiltered": "全部（未筛选）",
        "site": "站点",
        "zone": "区域",
        "host": "主机",
        "as_of": "时点",
        "hosts_read": "已读取报告的主机",
        "stale_hosts": "其中报告过期",
        "missing_agents": "已登记但从未报告的代理",
        "scans": "扫描",
        "status": "状态",
        "conformity": "符合情况",
        "clauses": "条款数",
        "rate": "符合率",
        "no_rate": "无已判定条款",
        "grade": "等级（参考）",
        "grade_line": "{grade}（得分 {score}；{undecided} 条未判定的条款未计入）",
        "no_grade": "无法估计（无已判定条款）",
        "rule": "估计规则",
        "provenance": "文本来源标记",
        "provenance_text": (
            "V 逐字核对，C 交叉核对，C1 单一来源，U 未核实，given 取自所提供的标准文本"
        ),
        "families": "各安全类",
        "family": "安全类",
        "chart": "各安全类符合率",
        "manual_object": "需人工测评：无有效的人工声明（medsec attest）",
        "no_object": "无评估对象",
        "colon": "：",
        "attested": "人工声明（{by}，{at}）：{note}",
        "valid_until": "有效期至 {at}",
        "evidence_checks": "检查：",
        "evidence_reports": "报告：",
        "statement": "人工声明 {id}（{by}，{at}），个人陈述而非自动化证据",
        "file": "附件 {name}，SHA-256 {sha}",
        "no_file": "无附件",
        "truncated": "…〔已截断，原长 {n} 字符〕",
        "current": "正常",
        "stale": "过期（最新报告超过时限）",
        "missing": "缺失：{at} 登记，从未报告",
        "since": "与 {since} 的报告相比",
        "continued": "续",
    },
    "en": {
        "summary": "Summary",
        "hosts": "Hosts",
        "evidence": "Evidence",
        "changes": "Changes",
        "record": "Assessment record",
        "standard": "Standard",
        "edition": "Edition",
        "generated": "Generated at",
        "evaluated": "Evaluated at",
        "scope": "Scope",
        "unfiltered": "everything (no filter)",
        "site": "site",
        "zone": "zone",
        "host": "host",
        "as_of": "as of",
        "hosts_read": "Hosts with a report read",
        "stale_hosts": "of which stale",
        "missing_agents": "Enrolled agents never reported",
        "scans": "Scans",
        "status": "Status",
        "conformity": "Conformity",
        "clauses": "Clauses",
        "rate": "Conformity rate",
        "no_rate": "no decided clause",
        "grade": "Grade (indicative)",
        "grade_line": "{grade} (score {score}; {undecided} undecided clauses left out)",
        "no_grade": "cannot be estimated (no decided clause)",
        "rule": "Rule",
        "provenance": "Text provenance marks",
        "provenance_text": (
            "V verbatim-reviewed, C cross-checked, C1 one source, U unverified, "
            "given taken from the supplied standard text"
        ),
        "families": "Control families",
        "family": "Family",
        "chart": "Conformity rate per family",
        "manual_object": "needs a person: no attestation in force (medsec attest)",
        "no_object": "no assessed object",
        "colon": ": ",
        "attested": "attested by {by} at {at}: {note}",
        "valid_until": "valid until {at}",
        "evidence_checks": "checks: ",
        "evidence_reports": "reports: ",
        "statement": (
            "attestation {id} by {by} at {at}: a person's statement, not automated evidence"
        ),
        "file": "file {name}, SHA-256 {sha}",
        "no_file": "no file attached",
        "truncated": "…[truncated, {n} characters in full]",
        "current": "current",
        "stale": "stale (newest report past the limit)",
        "missing": "missing: enrolled at {at}, never reported",
        "since": "compared with the report of {since}",
        "continued": "cont.",
    },
}
# Headers of the tables, `|`-separated, with the width cap of each column (the text wraps).
RECORD_HEADER = {
    "zh": ["安全类", "控制点", "测评指标", "测评对象", "结果记录", "符合情况", "证据"],
    "en": [
        "Family",
        "Control point",
        "Requirement",
        "Assessed object",
        "Result record",
        "Conformity",
        "Evidence",
    ],
}
RECORD_CAPS = (22, 18, 50, 36, 60, 12, 44)
HOST_HEADER = {
    "zh": [
        "主机名",
        "主机标识",
        "代理",
        "站点",
        "区域",
        "地址",
        "最新报告",
        "报告生成时间",
        "报告接收时间",
        "状态",
    ],
    "en": [
        "Hostname",
        "Host id",
        "Agent",
        "Site",
        "Zones",
        "Addresses",
        "Newest report",
        "Generated at",
        "Received at",
        "State",
    ],
}
HOST_CAPS = (30, 40, 30, 16, 30, 40, 38, 22, 22, 40)
EVIDENCE_HEADER = {
    "zh": [
        "对象",
        "条款",
        "检查项",
        "状态",
        "消息",
        "目标",
        "证据（JSON）",
        "报告编号",
        "接收时间",
    ],
    "en": [
        "Object",
        "Clauses",
        "Check",
        "Status",
        "Message",
        "Target",
        "Evidence (JSON)",
        "Report id",
        "Received at",
    ],
}
EVIDENCE_CAPS = (30, 30, 28, 10, 50, 30, 60, 38, 22)
CHANGE_HEADER = {
    "zh": ["条款", "对象", "对象标识", "之前", "之后"],
    "en": ["Clause", "Object", "Object id", "Before", "After"],
}
CHANGE_CAPS = (16, 30, 40, 14, 14)
_SUMMARY_COLUMNS = 2 + len(STATUSES) + len(CONFORMITIES) + 1
"""Family, clauses, a count per status and per conformity, the rate."""


def render_xlsx(compliance: Compliance, lang: str = "zh", *, max_rows: int = EXCEL_ROWS) -> bytes:
    """The workbook of `compliance` in `lang` ("en" for English, Chinese otherwise).
    `max_rows` (Excel's limit, header included) is where a sheet continues on the next."""
    if max_rows < 2:
        raise ValueError("max_rows must leave room for a header and one row")
    out = io.BytesIO()
    book = xlsxwriter.Workbook(
        out,
        {
            "in_memory": True,
            "strings_to_formulas": False,
            "strings_to_numbers": False,
            "strings_to_urls": False,
        },
    )
    lang = "en" if lang == "en" else "zh"
    # Dated by the report, not the clock: the same document gives the same bytes.
    title = compliance.title_en if lang == "en" else compliance.title_zh
    created = datetime.fromisoformat(compliance.generated_at)
    book.set_properties({"title": f"{compliance.standard_id} {title}", "created": created})
    record = _Record(book, compliance, lang, max_rows)
    record.lay_out()
    book.close()
    return _fill(out.getvalue(), record.tables, _Styles(record.formats))


def sheet_name(text: str, taken: set[str]) -> str:
    """A name Excel accepts for a sheet, unique in `taken` (compared without case), which it
    joins: no []:*?/\\, no apostrophe at either end, at most 31 characters."""
    base = " ".join(text.translate(_SHEET_FORBIDDEN).split()).strip("'").strip()
    base = base[:_SHEET_NAME_MAX].rstrip().rstrip("'") or "Sheet"
    name, n = base, 1
    while name.casefold() in taken or name.casefold() == "history":
        n += 1
        tail = f" ({n})"
        name = base[: _SHEET_NAME_MAX - len(tail)].rstrip() + tail
    taken.add(name.casefold())
    return name


# -- the record: what each sheet says -----------------------------------------------------------


class _Record:
    """The workbook's content in one language: the summary written with XlsxWriter, and the
    tables (family sheets, hosts, evidence, changes) as rows to stream."""

    def __init__(self, book: Workbook, compliance: Compliance, lang: str, max_rows: int) -> None:
        self.book = book
        self.formats = _Formats(book)
        self.doc = compliance
        self.lang = lang
        self.words = WORDS[lang]
        self.max_rows = max_rows
        self.taken: set[str] = set()
        # Every fixed sheet's name is chosen before the families', so no family takes one.
        w = self.words
        self.summary_name = sheet_name(w["summary"], self.taken)
        fixed = {key: sheet_name(w[key], self.taken) for key in ("hosts", "evidence", "changes")}
        self.families = _families(compliance.clauses)
        self.family_sheets = {family: sheet_name(family, self.taken) for family in self.families}
        self.names = {obj.id: obj.name for c in compliance.clauses for obj in c.objects}
        """Object id -> name, for the evidence and change sheets."""
        self.evidence = _evidence_clauses(compliance.clauses)
        self.tables = [
            _Table(
                self.family_sheets[family],
                RECORD_HEADER[lang],
                RECORD_CAPS,
                w["truncated"],
                sum(max(1, len(c.objects)) for c in clauses),
                functools.partial(self._family_rows, clauses),
            )
            for family, clauses in self.families.items()
        ]
        self.tables.append(
            _Table(
                fixed["hosts"],
                HOST_HEADER[lang],
                HOST_CAPS,
                w["truncated"],
                len(compliance.hosts) + len(compliance.missing),
                self._host_rows,
            )
        )
        self.tables.append(
            _Table(
                fixed["evidence"],
                EVIDENCE_HEADER[lang],
                EVIDENCE_CAPS,
                w["truncated"],
                len(self.evidence),
                self._evidence_rows,
            )
        )
        if compliance.changes is not None:
            self.tables.append(
                _Table(
                    fixed["changes"],
                    CHANGE_HEADER[lang],
                    CHANGE_CAPS,
                    w["truncated"],
                    len(compliance.changes),
                    self._change_rows,
                )
            )

    def lay_out(self) -> None:
        """The summary, then each table's sheets with their header, frozen and filtered."""
        book, formats = self.book, self.formats
        self._summary(book.add_worksheet(self.summary_name))
        per_sheet = self.max_rows - 1
        for table in self.tables:
            left, part = table.count, 1
            while True:
                count = min(left, per_sheet)
                name = table.title
                if part > 1:
                    name = sheet_name(f"{table.title} {self.words['continued']} {part}", self.taken)
                sheet = book.add_worksheet(name)
                for col, text in enumerate(table.header):
                    sheet.write_string(0, col, text, formats.header)
                sheet.freeze_panes(1, 0)
                sheet.autofilter(0, 0, count, len(table.header) - 1)
                table.sheets.append((name, count))
                left -= count
                part += 1
                if left <= 0:
                    break

    # -- summary ------------------------------------------------------------------------------

    def _summary(self, sheet: Worksheet) -> None:
        row = self._summary_facts(sheet)
        row = self._summary_counts(sheet, row + 1)
        self._summary_families(sheet, row + 1)
        sheet.activate()

    def _summary_facts(self, sheet: Worksheet) -> int:
        """The title, edition, times, scope and host counts; returns the next free row."""
        doc, w, f = self.doc, self.words, self.formats
        title = doc.title_en if self.lang == "en" else doc.title_zh
        sheet.write_string(0, 0, f"{doc.standard_id} {title} — {w['record']}", f.title)
        facts = [
            (w["standard"], f"{doc.standard_id} {title}"),
            (w["edition"], f"{doc.catalog_edition.edition} (SHA-256 {doc.catalog_edition.sha256})"),
            (w["generated"], doc.generated_at),
            (w["evaluated"], doc.evaluated_at),
            (w["scope"], self._scope_text()),
            (w["provenance"], w["provenance_text"]),
        ]
        if doc.since is not None:
            facts.append((w["changes"], w["since"].format(since=doc.since)))
        row = 2
        for label, value in facts:
            sheet.write_string(row, 0, label, f.label)
            sheet.write_string(row, 1, value, f.plain)
            row += 1
        # The streamed rows colour stale and missing hosts with these formats: used here too.
        summary = doc.summary
        for key, count, fmt in (
            ("hosts_read", summary.hosts, f.number),
            ("stale_hosts", summary.stale_hosts, f.stale),
            ("missing_agents", summary.missing_agents, f.missing),
            ("scans", summary.scans, f.number),
        ):
            sheet.write_string(row, 0, w[key], f.label)
            sheet.write_number(row, 1, count, fmt)
            row += 1
        return row

    def _summary_counts(self, sheet: Worksheet, row: int) -> int:
        """Clauses per status, per conformity with the rate, and the indicative grade."""
        w, f, lang = self.words, self.formats, self.lang
        write, number = sheet.write_string, sheet.write_number
        counts = self.doc.summary.clauses
        write(row, 0, w["status"], f.header)
        write(row, 1, w["clauses"], f.header)
        for status in STATUSES:
            row += 1
            write(row, 0, status_word(status, lang), f.plain)
            number(row, 1, counts.by_status.get(status, 0), f.number)
        row += 2
        write(row, 0, w["conformity"], f.header)
        write(row, 1, w["clauses"], f.header)
        for word in CONFORMITIES:
            row += 1
            write(row, 0, conformity_word(word, lang), f.conformity[word])
            number(row, 1, counts.by_conformity.get(word, 0), f.number)
        row += 1
        write(row, 0, w["rate"], f.label)
        self._rate(sheet, row, 1, counts)
        row += 2
        grade = self.doc.summary.grade
        write(row, 0, w["grade"], f.label)
        if grade.grade is None:
            write(row, 1, w["no_grade"], f.plain)
        else:
            score = "" if grade.score is None else f"{grade.score:.1f}"
            line = w["grade_line"].format(grade=grade.grade, score=score, undecided=grade.undecided)
            write(row, 1, line, f.plain)
        row += 1
        write(row, 0, w["rule"], f.label)
        rule = grade.rule if self.lang == "en" else grade.rule_zh
        sheet.merge_range(row, 1, row, _SUMMARY_COLUMNS - 1, rule, f.cell)
        # A merged cell does not grow with its text in Excel: give the row the lines it needs.
        sheet.set_row(row, 15 * (1 + display_width(rule) // 120))
        return row + 2

    def _summary_families(self, sheet: Worksheet, row: int) -> None:
        """Per family: clauses, counts per status and conformity, the rate; the chart below."""
        w, f, lang = self.words, self.formats, self.lang
        families = self.doc.summary.families
        sheet.write_string(row, 0, w["families"], f.title)
        row += 1
        header = (
            w["family"],
            w["clauses"],
            *(status_word(s, lang) for s in STATUSES),
            *(conformity_word(c, lang) for c in CONFORMITIES),
            w["rate"],
        )
        for col, text in enumerate(header):
            sheet.write_string(row, col, text, f.header)
        first = row + 1
        for family in families:
            row += 1
            link = _internal_link(self.family_sheets.get(family.family))
            if link:
                sheet.write_url(row, 0, link, f.plain, string=family.family)
            else:
                sheet.write_string(row, 0, family.family, f.plain)
            numbers = (
                family.clauses,
                *(family.counts.by_status.get(s, 0) for s in STATUSES),
                *(family.counts.by_conformity.get(c, 0) for c in CONFORMITIES),
            )
            for col, value in enumerate(numbers, start=1):
                sheet.write_number(row, col, value, f.number)
            self._rate(sheet, row, len(header) - 1, family.counts)
        labels = [display_width(w[k]) for k in ("grade", "missing_agents", "provenance")]
        labels += [display_width(x.family) for x in families]
        sheet.set_column(0, 0, min(max(labels), 40) + 2)
        sheet.set_column(1, len(header) - 1, min(max(map(display_width, header[1:])), 14) + 2)
        if not families:
            return
        chart = self.book.add_chart({"type": "bar"})
        name, rate = sheet.get_name(), len(header) - 1
        chart.add_series(
            {
                "name": w["rate"],
                "categories": [name, first, 0, row, 0],
                "values": [name, first, rate, row, rate],
                "fill": {"color": "#4472C4"},
                "data_labels": {"value": True, "num_format": "0.0%"},
            }
        )
        chart.set_title({"name": w["chart"]})
        chart.set_legend({"none": True})
        # Bars: the value axis is horizontal; the family axis reversed keeps the table's order.
        chart.set_x_axis({"min": 0, "max": 1, "num_format": "0%"})
        chart.set_y_axis({"reverse": True})
        chart.set_size({"width": 760, "height": 120 + 28 * len(families)})
        sheet.insert_chart(row + 2, 0, chart)

    def _rate(self, sheet: Worksheet, row: int, col: int, counts: Counts) -> None:
        if counts.rate is None:
            sheet.write_string(row, col, self.words["no_rate"], self.formats.plain)
        else:
            sheet.write_number(row, col, counts.rate / 100, self.formats.rate)

    def _scope_text(self) -> str:
        scope, w = self.doc.scope, self.words
        given = (
            ("site", scope.site),
            ("zone", scope.zone),
            ("host", scope.host),
            ("as_of", scope.as_of),
        )
        parts = [f"{w[key]}={value}" for key, value in given if value is not None]
        return "; ".join(parts) if parts else w["unfiltered"]

    # -- the rows of the tables ---------------------------------------------------------------

    def _family_rows(self, clauses: list[ClauseVerdict], styles: _Styles) -> Iterator[Row]:
        """A row per clause × object; a clause without objects (manual) is one row."""
        w, lang = self.words, self.lang
        cell = styles.cell
        by_conformity = {
            word: (cell, cell, cell, cell, cell, style, cell)
            for word, style in styles.conformity.items()
        }
        undecided = (cell,) * 7
        for clause in clauses:
            head = (clause.family, clause.control, _requirement(clause, lang))
            if not clause.objects:
                what = w["manual_object"] if clause.assessment == "manual" else w["no_object"]
                conformity = conformity_word(clause.conformity, lang)
                cells = (*head, what, status_word(clause.status, lang), conformity, "")
                yield cells, by_conformity.get(clause.conformity or "", undecided)
                continue
            evidence = _by_object(clause.evidence)
            for obj in clause.objects:
                items = evidence.get(obj.id, ())
                cells = (
                    *head,
                    kind_word(obj.kind, lang) + w["colon"] + obj.name,
                    self._result(obj, items),
                    conformity_word(obj.conformity, lang),
                    self._evidence_text(items),
                )
                yield cells, by_conformity.get(obj.conformity or "", undecided)

    def _result(self, obj: ObjectVerdict, items: Sequence[Evidence]) -> str:
        """结果记录: the object's status, why (when not its results' own), and what each result
        or statement said."""
        lang, w = self.lang, self.words
        lines = [status_word(obj.status, lang)]
        why = reason(obj, lang)
        if why and obj.kind != "attestation":
            lines[0] += w["colon"] + why
        for item in items:
            if isinstance(item, EvidenceItem):
                said = message(item.message, item.message_zh, lang)
                lines.append(
                    f"· {status_word(item.status, lang)} {item.check_id}{w['colon']}{said}"
                )
            else:
                att = item.attestation
                lines.append(w["attested"].format(by=att.by, at=att.at, note=att.note))
                if att.valid_until:
                    lines.append(w["valid_until"].format(at=att.valid_until))
        return "\n".join(lines)

    def _evidence_text(self, items: Sequence[Evidence]) -> str:
        """证据: the check ids and short report ids behind the row, or the statement."""
        w = self.words
        checks: dict[str, None] = {}
        reports: dict[str, None] = {}
        lines: list[str] = []
        for item in items:
            if isinstance(item, EvidenceItem):
                checks[item.check_id] = None
                reports[item.report_id[:8]] = None
            else:
                lines.extend(_statement(item.attestation, w))
        if checks:
            lines[:0] = (
                w["evidence_checks"] + ", ".join(checks),
                w["evidence_reports"] + ", ".join(reports),
            )
        return "\n".join(lines)

    def _host_rows(self, styles: _Styles) -> Iterator[Row]:
        w, cell = self.words, styles.cell
        current, stale = (cell,) * 10, (*(cell,) * 9, styles.stale)
        for host in self.doc.hosts:
            cells = (
                host.hostname,
                host.id,
                host.agent,
                host.site or "",
                ", ".join(host.zones),
                ", ".join(host.addresses),
                host.report_id,
                host.generated_at,
                host.received_at,
                w["stale"] if host.stale else w["current"],
            )
            yield cells, stale if host.stale else current
        missing = (*(cell,) * 9, styles.missing)
        for agent in self.doc.missing:
            state = w["missing"].format(at=agent.enrolled_at)
            yield (agent.agent, "", agent.agent, *("",) * 6, state), missing

    def _evidence_rows(self, styles: _Styles) -> Iterator[Row]:
        """Each evidence item once, with every clause it stands behind. The object is named;
        for a host, the report id leads to it on the inventory sheet."""
        w, lang, names = self.words, self.lang, self.names
        words = STATUS_WORDS[lang]
        english = lang == "en"
        formats = (styles.cell,) * len(EVIDENCE_HEADER[lang])
        for item, clause_ids in self.evidence.values():
            clauses = ", ".join(clause_ids)
            if isinstance(item, EvidenceItem):
                said = item.message if english or not item.message_zh else item.message_zh
                yield (
                    (
                        names.get(item.object, item.object),
                        clauses,
                        item.check_id,
                        words.get(item.status, item.status),
                        said,
                        item.target or "",
                        msgspec.json.format(item.evidence, indent=-1).decode("utf-8"),
                        item.report_id,
                        item.received_at,
                    ),
                    formats,
                )
            else:
                att = item.attestation
                yield (
                    (
                        kind_word("attestation", lang) + w["colon"] + att.by,
                        clauses,
                        "\n".join(_statement(att, w)),
                        status_word(att.status, lang),
                        att.note,
                        att.file_name or "",
                        msgspec.json.encode(att).decode("utf-8"),
                        "",
                        att.at,
                    ),
                    formats,
                )

    def _change_rows(self, styles: _Styles) -> Iterator[Row]:
        lang = self.lang
        formats = (styles.cell,) * len(CHANGE_HEADER[lang])
        for change in self.doc.changes or ():
            obj = change.object or ""
            before = "" if change.before is None else status_word(change.before, lang)
            after = "" if change.after is None else status_word(change.after, lang)
            yield (change.clause, self.names.get(obj, obj), obj, before, after), formats


def _families(clauses: Iterable[ClauseVerdict]) -> dict[str, list[ClauseVerdict]]:
    """The clauses of each family, families in the catalog's order."""
    families: dict[str, list[ClauseVerdict]] = {}
    for clause in clauses:
        families.setdefault(clause.family, []).append(clause)
    return families


def _evidence_clauses(
    clauses: Iterable[ClauseVerdict],
) -> dict[tuple[object, ...], tuple[Evidence, list[str]]]:
    """Each piece of evidence (one result stands behind several clauses) with its clauses. By
    content, not identity: a document read back from its JSON holds a copy per clause."""
    found: dict[tuple[object, ...], tuple[Evidence, list[str]]] = {}
    for clause in clauses:
        for item in clause.evidence:
            key = _evidence_key(item)
            seen = found.get(key)
            if seen is None:
                found[key] = (item, [clause.id])
            elif seen[1][-1] != clause.id:
                seen[1].append(clause.id)
    return found


def _evidence_key(item: Evidence) -> tuple[object, ...]:
    if isinstance(item, AttestationEvidence):
        return ("attestation", item.attestation.id)
    return (
        item.object,
        item.report_id,
        item.check_id,
        item.target,
        item.status,
        item.message,
        bytes(item.evidence),
    )


def _by_object(evidence: Iterable[Evidence]) -> dict[str, list[Evidence]]:
    grouped: dict[str, list[Evidence]] = {}
    for item in evidence:
        found = grouped.get(item.object)
        if found is None:
            grouped[item.object] = [item]
        else:
            found.append(item)
    return grouped


def _requirement(clause: ClauseVerdict, lang: str) -> str:
    """测评指标: the clause id with its text-provenance mark, then its text."""
    text = clause.title_en if lang == "en" else clause.text_zh
    return f"{clause.id} [{clause.provenance}]\n{text}"


def _statement(att: AttestationOut, words: dict[str, str]) -> list[str]:
    lines = [words["statement"].format(id=att.id, by=att.by, at=att.at)]
    if att.file_sha256:
        lines.append(words["file"].format(name=att.file_name or "", sha=att.file_sha256))
    else:
        lines.append(words["no_file"])
    return lines


def _internal_link(name: str | None) -> str | None:
    if name is None:
        return None
    return "internal:'" + name.replace("'", "''") + "'!A1"
