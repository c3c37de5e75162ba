"""The HTML report: one self-contained page (inline CSS and SVG, no script, no URL) from the
Jinja2 template `templates/report.html`, which the PDF renderer prints as well. Everything that
came from a host or a person (names, messages, notes) is escaped by the template's autoescape.

A clause with more than `OBJECT_LIMIT` objects is summarised: counts per status and the first
objects that did not pass (fail before error before no evidence), with a line pointing to the
XLSX/JSON reports for the rest, so the page stays usable at ten thousand hosts.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import jinja2

from collector.compliance.model import (
    STATUSES,
    AttestationEvidence,
    AttestationOut,
    ClauseVerdict,
    Compliance,
    EvidenceItem,
    FamilyCounts,
    ObjectVerdict,
)
from collector.compliance.render import charts
from collector.compliance.render.text import (
    conformity_word,
    kind_word,
    message,
    reason,
    status_word,
)

OBJECT_LIMIT = 20
"""Objects listed per clause before it is summarised (counts and the first not passing)."""
NOT_PASSING = ("fail", "error", "not_covered")
"""Object statuses a summarised clause lists, in this order of priority."""

LABELS: dict[str, dict[str, str]] = {
    "zh": {
        "report": "符合性测评报告",
        "standard": "标准",
        "edition": "版本",
        "catalog": "条款目录 SHA-256",
        "generated": "生成时间",
        "evaluated": "判定时刻",
        "scope": "范围",
        "all": "全部",
        "site": "站点",
        "zone": "区域",
        "host": "主机",
        "as_of": "截至",
        "hosts": "主机数",
        "scans": "扫描数",
        "stale": "报告过期的主机",
        "missing": "从未报告的代理",
        "summary": "摘要",
        "by_status": "条款状态",
        "by_conformity": "符合情况",
        "count": "条款数",
        "rate": "符合率",
        "grade": "参考等级（仅供参考，非测评结论）",
        "score": "得分",
        "rule": "规则",
        "undecided": "未计入的条款（需人工、无法判定、无证据）",
        "family": "安全类",
        "clauses": "条款",
        "id": "条款",
        "control": "控制点",
        "requirement": "测评指标",
        "status": "状态",
        "conformity": "符合情况",
        "objects": "测评对象",
        "object": "对象",
        "kind": "类型",
        "reason": "说明",
        "evidence": "证据",
        "check": "检查项",
        "message": "结果",
        "target": "目标",
        "details": "证据明细",
        "attestation": "人工声明",
        "attestation_mark": "人员的声明，非自动采集的证据",
        "by": "声明人",
        "at": "声明时间",
        "valid_until": "有效期至",
        "no_expiry": "无期限",
        "note": "说明",
        "file": "附件",
        "provenance": "条款文本来源标记",
        "may": "可",
        "catalog_note": "目录注释",
        "changes": "与上次报告相比的变化",
        "since": "上次报告",
        "before": "之前",
        "after": "现在",
        "none": "无",
        "more_changes": "另有 {n} 处变化未列出；完整列表见 JSON 报告。",
        "summarised": (
            "共 {total} 个对象（{flagged} 个未通过），"
            "仅列出前 {shown} 个未通过对象及其未通过的结果；完整证据见 XLSX/JSON 报告。"
        ),
        "summarised_all": (
            "共 {total} 个对象，仅列出其中 {flagged} 个未通过对象及其未通过的结果；"
            "完整证据见 XLSX/JSON 报告。"
        ),
    },
    "en": {
        "report": "Compliance report",
        "standard": "Standard",
        "edition": "Edition",
        "catalog": "Clause catalog SHA-256",
        "generated": "Generated",
        "evaluated": "Evaluated at",
        "scope": "Scope",
        "all": "all",
        "site": "site",
        "zone": "zone",
        "host": "host",
        "as_of": "as of",
        "hosts": "Hosts",
        "scans": "Scans",
        "stale": "Hosts with stale reports",
        "missing": "Agents that never reported",
        "summary": "Summary",
        "by_status": "Clause status",
        "by_conformity": "Conformity",
        "count": "Clauses",
        "rate": "Conformity rate",
        "grade": "Indicative grade (not an assessor's conclusion)",
        "score": "Score",
        "rule": "Rule",
        "undecided": "Clauses left out (manual, error, not covered)",
        "family": "Family",
        "clauses": "Clauses",
        "id": "Clause",
        "control": "Control",
        "requirement": "Requirement",
        "status": "Status",
        "conformity": "Conformity",
        "objects": "Objects",
        "object": "Object",
        "kind": "Kind",
        "reason": "Reason",
        "evidence": "Evidence",
        "check": "Check",
        "message": "Result",
        "target": "Target",
        "details": "Evidence in detail",
        "attestation": "Attestation",
        "attestation_mark": "a person's statement, not gathered automatically",
        "by": "By",
        "at": "At",
        "valid_until": "Valid until",
        "no_expiry": "no expiry",
        "note": "Note",
        "file": "File",
        "provenance": "Clause text provenance marks",
        "may": "may",
        "catalog_note": "Catalog note",
        "changes": "Changes since the previous report",
        "since": "Previous report",
        "before": "Before",
        "after": "Now",
        "none": "none",
        "more_changes": "{n} more changes not listed; the JSON report has them all.",
        "summarised": (
            "{total} objects ({flagged} not passing); only the first {shown} not passing are "
            "listed, with their results that did not pass; the full evidence is in the "
            "XLSX/JSON report."
        ),
        "summarised_all": (
            "{total} objects; only the {flagged} not passing are listed, with their results "
            "that did not pass; the full evidence is in the XLSX/JSON report."
        ),
    },
}
PROVENANCE = {
    "zh": {
        "V": "逐字核对",
        "C": "多来源交叉核对",
        "C1": "单一来源",
        "U": "未核实",
        "given": "按提供的文本",
    },
    "en": {
        "V": "verbatim-reviewed",
        "C": "cross-checked",
        "C1": "one source",
        "U": "unverified",
        "given": "as supplied",
    },
}
GRADE_EN = {"优": "excellent", "良": "good", "中": "fair", "差": "poor"}
CHANGE_LIMIT = 200


@dataclass(frozen=True, slots=True)
class ObjectRow:
    object: ObjectVerdict
    evidence: Sequence[EvidenceItem]


@dataclass(frozen=True, slots=True)
class ClauseView:
    clause: ClauseVerdict
    counts: Sequence[tuple[str, int]]
    """(status, objects) for each status present, in `STATUSES` order."""
    rows: Sequence[ObjectRow]
    attestations: Sequence[AttestationOut]
    total: int
    flagged: int
    """Objects not passing (`NOT_PASSING`)."""
    summarised: bool


@dataclass(frozen=True, slots=True)
class FamilyView:
    family: str
    counts: FamilyCounts | None
    clauses: Sequence[ClauseView]


def render_html(compliance: Compliance, lang: str = "zh", *, limit: int = OBJECT_LIMIT) -> bytes:
    """The report page; `limit` is the objects listed per clause before it is summarised."""
    lang = "en" if lang == "en" else "zh"
    families = _families(compliance, limit)
    template = _environment(lang).get_template("report.html")
    page = template.render(
        c=compliance,
        lang=lang,
        w=LABELS[lang],
        provenance=PROVENANCE[lang],
        families=families,
        statuses=STATUSES,
        rate_chart=charts.rate_chart(compliance.summary.families, lang),
        status_chart=charts.status_chart(compliance.summary.families, lang),
        colours=charts.COLOURS,
        grade_en=GRADE_EN,
        changes=(compliance.changes or [])[:CHANGE_LIMIT],
        more_changes=max(0, len(compliance.changes or []) - CHANGE_LIMIT),
    )
    return page.encode("utf-8")


def _environment(lang: str) -> jinja2.Environment:
    env = jinja2.Environment(
        loader=jinja2.PackageLoader("collector.compliance", "templates"),
        autoescape=True,
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    words: dict[str, Callable[..., str]] = {
        "status": lambda value: status_word(value, lang),
        "conformity": lambda value: conformity_word(value, lang),
        "kind": lambda value: kind_word(value, lang),
        "message": lambda item: message(item.message, item.message_zh, lang),
        "reason": lambda obj: reason(obj, lang),
    }
    env.filters.update(words)
    return env


def _families(compliance: Compliance, limit: int) -> list[FamilyView]:
    counts = {family.family: family for family in compliance.summary.families}
    grouped: dict[str, list[ClauseView]] = defaultdict(list)
    for clause in compliance.clauses:
        grouped[clause.family].append(_clause(clause, limit))
    return [FamilyView(name, counts.get(name), views) for name, views in grouped.items()]


def _clause(clause: ClauseVerdict, limit: int) -> ClauseView:
    # Attestations are shown as statements beside the clause, not as objects with evidence.
    objects = [obj for obj in clause.objects if obj.kind != "attestation"]
    attestations = [
        item.attestation for item in clause.evidence if isinstance(item, AttestationEvidence)
    ]
    by_status = Counter(obj.status for obj in objects)
    counts = [(status, by_status[status]) for status in STATUSES if by_status[status]]
    flagged = sorted(
        (obj for obj in objects if obj.status in NOT_PASSING),
        key=lambda obj: NOT_PASSING.index(obj.status),
    )
    summarised = len(objects) > limit
    listed = flagged[:limit] if summarised else objects
    wanted = {obj.id for obj in listed}
    evidence: dict[str, list[EvidenceItem]] = defaultdict(list)
    for item in clause.evidence:
        if isinstance(item, EvidenceItem) and item.object in wanted:
            evidence[item.object].append(item)
    if summarised:
        # A summarised clause lists what failed: each flagged object's results that did not
        # pass (all of them when none stands out); the XLSX and JSON hold the rest.
        evidence = {
            name: [i for i in items if i.status != "pass"] or items
            for name, items in evidence.items()
        }
    rows = [ObjectRow(obj, evidence.get(obj.id, ())) for obj in listed]
    return ClauseView(clause, counts, rows, attestations, len(objects), len(flagged), summarised)
