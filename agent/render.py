"""Renderers over the one report model: each is `(report, catalogs, options) -> bytes`.

The table is for a sysadmin at a terminal: status in colour (only on a terminal, and never when
NO_COLOR is set), check title in Chinese or English, the target, and a one-line message.
"""

from __future__ import annotations

import json
import unicodedata
from collections.abc import Callable
from dataclasses import dataclass

from agent.report import Report, rfc3339
from checks.catalog import Catalogs
from checks.model import Status


@dataclass(frozen=True)
class RenderOptions:
    lang: str = "en"
    color: bool = False


Renderer = Callable[[Report, Catalogs, RenderOptions], bytes]

_LABELS = {
    "en": {
        Status.PASS: "PASS",
        Status.FAIL: "FAIL",
        Status.ERROR: "ERROR",
        Status.NOT_APPLICABLE: "N/A",
        Status.MANUAL: "MANUAL",
    },
    "zh": {
        Status.PASS: "通过",
        Status.FAIL: "不符合",
        Status.ERROR: "无法判定",
        Status.NOT_APPLICABLE: "不适用",
        Status.MANUAL: "人工核查",
    },
}
_HEADINGS = {
    "en": ("STATUS", "CHECK", "TARGET", "MESSAGE", "host report", "summary"),
    "zh": ("状态", "检查项", "对象", "说明", "主机合规报告", "汇总"),
}
_COLOURS = {
    Status.PASS: "32",
    Status.FAIL: "31",
    Status.ERROR: "33",
    Status.NOT_APPLICABLE: "2",
    Status.MANUAL: "36",
}
_MAX_MESSAGE = 100


def render_json(report: Report, catalogs: Catalogs, options: RenderOptions) -> bytes:
    doc = report.to_dict(catalogs)
    return (json.dumps(doc, ensure_ascii=False, indent=2) + "\n").encode("utf-8")


def _width(text: str) -> int:
    """Terminal columns: CJK characters take two."""
    return sum(2 if unicodedata.east_asian_width(ch) in "WF" else 1 for ch in text)


def _pad(text: str, width: int) -> str:
    return text + " " * max(0, width - _width(text))


def _clip(text: str, limit: int) -> str:
    line = " ".join(text.split())
    if _width(line) <= limit:
        return line
    out, used = [], 0
    for ch in line:
        w = _width(ch)
        if used + w > limit - 1:
            break
        out.append(ch)
        used += w
    return "".join(out) + "…"


def render_table(report: Report, catalogs: Catalogs, options: RenderOptions) -> bytes:
    lang = options.lang if options.lang in _LABELS else "en"
    labels, head = _LABELS[lang], _HEADINGS[lang]
    rows = []
    for r in report.results:
        title = r.title_zh if lang == "zh" else r.title_en
        rows.append(
            (
                r.status,
                labels[r.status],
                f"{r.check_id}  {title}",
                r.target or "-",
                _clip(r.message, _MAX_MESSAGE),
            )
        )
    widths = [max([_width(head[i])] + [_width(row[i + 1]) for row in rows]) for i in range(3)]
    lines = [
        f"medsec {head[4]}: {report.hostname} ({report.host_id[:19]}…) "
        f"{rfc3339(report.generated_at)}",
        "",
        "  ".join(_pad(head[i], widths[i]) for i in range(3)) + "  " + head[3],
    ]
    for status, label, check_col, target, message in rows:
        cell = _pad(label, widths[0])
        if options.color:
            cell = f"\x1b[{_COLOURS[status]}m{cell}\x1b[0m"
        lines.append(f"{cell}  {_pad(check_col, widths[1])}  {_pad(target, widths[2])}  {message}")
    counts = report.counts()
    summary = ", ".join(f"{labels[s]} {counts[s.value]}" for s in Status if counts[s.value])
    lines += ["", f"{head[5]}: {summary or '-'}"]
    return ("\n".join(lines) + "\n").encode("utf-8")


RENDERERS: dict[str, Renderer] = {"json": render_json, "table": render_table}
