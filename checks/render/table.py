"""The report as a terminal table, for a sysadmin: status (in colour only when asked, which the
CLI does only on a terminal without NO_COLOR), the check's title and message in Chinese or
English, the target. CJK characters take two columns."""

from __future__ import annotations

import unicodedata
from collections.abc import Mapping
from typing import Any

from checks.catalog import Catalogs
from checks.model import Status
from checks.report import counts

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


def width(text: str) -> int:
    """Terminal columns: CJK characters take two."""
    return sum(2 if unicodedata.east_asian_width(ch) in "WF" else 1 for ch in text)


def _pad(text: str, columns: int) -> str:
    return text + " " * max(0, columns - width(text))


def clip(text: str, limit: int) -> str:
    """`text` on one line, cut to `limit` columns with an ellipsis."""
    line = " ".join(text.split())
    if width(line) <= limit:
        return line
    out, used = [], 0
    for ch in line:
        w = width(ch)
        if used + w > limit - 1:
            break
        out.append(ch)
        used += w
    return "".join(out) + "…"


def message_in(item: Mapping[str, Any], lang: str) -> str:
    """A result item's message for a reader of `lang` (English where no Chinese was recorded)."""
    if lang == "zh" and item.get("message_zh"):
        return str(item["message_zh"])
    return str(item.get("message", ""))


def render_table(
    report: Mapping[str, Any], catalogs: Catalogs, lang: str = "en", *, color: bool = False
) -> bytes:
    del catalogs  # the table shows no clause ids
    lang = lang if lang in _LABELS else "en"
    labels, head = _LABELS[lang], _HEADINGS[lang]
    rows = []
    for item in report["results"]:
        status = Status(item["status"])
        title = item["title"][lang]
        rows.append(
            (
                status,
                labels[status],
                f"{item['check_id']}  {title}",
                item.get("target") or "-",
                clip(message_in(item, lang), _MAX_MESSAGE),
            )
        )
    widths = [max([width(head[i])] + [width(row[i + 1]) for row in rows]) for i in range(3)]
    host = report["host"]
    lines = [
        f"medsec {head[4]}: {host['hostname']} ({host['id'][:19]}…) {report['generated_at']}",
        "",
        "  ".join(_pad(head[i], widths[i]) for i in range(3)) + "  " + head[3],
    ]
    for status, label, check_col, target, message in rows:
        cell = _pad(label, widths[0])
        if color:
            cell = f"\x1b[{_COLOURS[status]}m{cell}\x1b[0m"
        lines.append(f"{cell}  {_pad(check_col, widths[1])}  {_pad(target, widths[2])}  {message}")
    tally = counts(item["status"] for item in report["results"])
    summary = ", ".join(f"{labels[s]} {tally[s.value]}" for s in Status if tally[s.value])
    lines += ["", f"{head[5]}: {summary or '-'}"]
    return ("\n".join(lines) + "\n").encode("utf-8")
