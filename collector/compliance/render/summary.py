"""The one-screen summary a terminal shows: the indicative grade, each control family's counts
and conformity rate, and the clauses that fail or could not be decided with their first objects."""

from __future__ import annotations

import unicodedata

from collector.compliance.model import Compliance
from collector.compliance.render.text import conformity_word, status_word

_SHOWN_CLAUSES = 12
_SHOWN_OBJECTS = 3
_ORDER = {"fail": 0, "error": 1, "not_covered": 2}
_SHOWN_CHANGES = 10


def _width(text: str) -> int:
    return sum(2 if unicodedata.east_asian_width(ch) in "WF" else 1 for ch in text)


def _pad(text: str, width: int) -> str:
    return text + " " * max(0, width - _width(text))


def render_summary(compliance: Compliance, lang: str = "zh") -> bytes:
    en = lang == "en"
    summary = compliance.summary
    title = compliance.title_en if en else compliance.title_zh
    lines = [f"{compliance.standard_id} — {title}"]
    scope = [
        f"{k}={v}"
        for k, v in (
            ("site", compliance.scope.site),
            ("zone", compliance.scope.zone),
            ("host", compliance.scope.host),
            ("as_of", compliance.scope.as_of),
        )
        if v
    ]
    lines.append(
        (
            "hosts {h}, stale {s}, missing agents {m}, scans {n}"
            if en
            else "主机 {h}，过期 {s}，未报告代理 {m}，扫描 {n}"
        ).format(h=summary.hosts, s=summary.stale_hosts, m=summary.missing_agents, n=summary.scans)
        + (f"  ({', '.join(scope)})" if scope else "")
    )
    counts = summary.clauses.by_status
    lines.append(
        ("clauses: " if en else "条款：")
        + ", ".join(f"{status_word(s, lang)} {n}" for s, n in counts.items() if n)
    )
    grade = summary.grade
    if grade.score is not None:
        lines.append(
            (
                f"indicative grade {grade.grade} (conformity {grade.score}%; "
                f"{grade.undecided} clauses undecided)"
            )
            if en
            else (
                f"参考等级 {grade.grade}（符合率 {grade.score}%，{grade.undecided} 个条款未判定；"
                "仅供参考）"
            )
        )
    lines.append("")
    width = max(_width(f.family) for f in summary.families) if summary.families else 10
    for family in summary.families:
        by = family.counts.by_status
        rate = "—" if family.counts.rate is None else f"{family.counts.rate:5.1f}%"
        lines.append(
            f"  {_pad(family.family, width)}  {rate:>6}  "
            + " ".join(f"{status_word(s, lang)}:{n}" for s, n in by.items() if n)
        )
    open_ = [c for c in compliance.clauses if c.status in ("fail", "error", "not_covered")]
    if open_:
        lines.append("")
        lines.append("needs attention:" if en else "需要处理：")
    for clause in open_[:_SHOWN_CLAUSES]:
        bad = sorted(
            (o for o in clause.objects if o.status in _ORDER), key=lambda o: _ORDER[o.status]
        )
        shown = ", ".join(o.name for o in bad[:_SHOWN_OBJECTS])
        more = f" +{len(bad) - _SHOWN_OBJECTS}" if len(bad) > _SHOWN_OBJECTS else ""
        lines.append(
            f"  {clause.id:<11} {status_word(clause.status, lang)}"
            f" ({conformity_word(clause.conformity, lang)}): {shown}{more}"
        )
    if len(open_) > _SHOWN_CLAUSES:
        lines.append(
            f"  … {len(open_) - _SHOWN_CLAUSES} more"
            if en
            else f"  …… 另有 {len(open_) - _SHOWN_CLAUSES} 个"
        )
    if compliance.changes is not None:
        lines.append("")
        lines.append(
            f"changes since {compliance.since}: {len(compliance.changes)}"
            if en
            else f"自 {compliance.since} 以来的变化：{len(compliance.changes)} 项"
        )
        for change in compliance.changes[:_SHOWN_CHANGES]:
            what = change.clause + (f" {change.object}" if change.object else "")
            before = "-" if change.before is None else status_word(change.before, lang)
            after = "-" if change.after is None else status_word(change.after, lang)
            lines.append(f"  {what}: {before} → {after}")
    return ("\n".join(lines) + "\n").encode("utf-8")
