"""CSV: one row per clause × object (a clause with no object, e.g. a manual one, is one row
with the object columns empty). UTF-8 with a byte-order mark, so spreadsheet programs open the
Chinese text as UTF-8."""

from __future__ import annotations

import csv
import io

from collector.compliance.model import Compliance
from collector.compliance.render.text import conformity_word, kind_word, reason, status_word

HEADER = {
    "zh": (
        "标准",
        "条款",
        "安全类",
        "控制点",
        "条款状态",
        "符合情况",
        "对象类型",
        "对象",
        "对象标识",
        "对象状态",
        "对象符合情况",
        "说明",
    ),
    "en": (
        "standard",
        "clause",
        "family",
        "control",
        "clause status",
        "clause conformity",
        "object kind",
        "object",
        "object id",
        "object status",
        "object conformity",
        "reason",
    ),
}


def render_csv(compliance: Compliance, lang: str = "zh") -> bytes:
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\r\n")
    writer.writerow(HEADER["en" if lang == "en" else "zh"])
    for clause in compliance.clauses:
        head = (
            compliance.standard_id,
            clause.id,
            clause.family,
            clause.control,
            status_word(clause.status, lang),
            conformity_word(clause.conformity, lang),
        )
        if not clause.objects:
            writer.writerow((*head, "", "", "", "", "", ""))
        for obj in clause.objects:
            writer.writerow(
                (
                    *head,
                    kind_word(obj.kind, lang),
                    _safe(obj.name),
                    _safe(obj.id),
                    status_word(obj.status, lang),
                    conformity_word(obj.conformity, lang),
                    _safe(reason(obj, lang)),
                )
            )
    return ("\ufeff" + out.getvalue()).encode("utf-8")


def _safe(cell: str) -> str:
    """A cell a spreadsheet will not run as a formula (names come from hosts and scans)."""
    return "'" + cell if cell[:1] in ("=", "+", "-", "@", "\t", "\r") else cell
