"""The dashboard's charts, drawn on the server as inline SVG (no chart service, no script): the
clause heat map of a standard (its control families × the six statuses, each cell the number of
clauses, shaded by their share of the family and linking to those clauses), and the conformity
rate per family (the compliance report's own chart, so both show the same picture).

Fragments are `Markup` templates whose arguments markupsafe escapes: a family name or a link is
never read as markup.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

from markupsafe import Markup

from collector.compliance.model import STATUSES, FamilyCounts
from collector.compliance.render import charts as report_charts
from collector.compliance.render.text import status_word

COLOURS = report_charts.COLOURS
FONT = report_charts.FONT
_LABEL = 200
"""Room on the left for a family's name."""
_CELL_W = 74
_CELL_H = 30
_HEAD = 34
"""Room at the top for the status names."""
_GAP = 3
_EMPTY = "#f1f3f6"


def heat_map(
    families: Sequence[FamilyCounts],
    lang: str,
    link: Callable[[str, str], str],
    title: str,
) -> Markup:
    """Rows: the families; columns: the statuses; a cell: how many of the family's clauses have
    that status, its colour the status's, stronger the larger their share. `link(family,
    status)` is where a cell with clauses leads (the clauses it counts)."""
    width = _LABEL + len(STATUSES) * (_CELL_W + _GAP)
    height = _HEAD + len(families) * (_CELL_H + _GAP) + 4
    parts = [
        Markup(
            '<svg class="chart heat" viewBox="0 0 {0} {1}" width="{0}" height="{1}" '
            'role="img" aria-label="{2}" xmlns="http://www.w3.org/2000/svg"><title>{2}</title>'
        ).format(width, height, title)
    ]
    for column, status in enumerate(STATUSES):
        x = _LABEL + column * (_CELL_W + _GAP) + _CELL_W / 2
        parts.append(_text(x, _HEAD - 10, status_word(status, lang), anchor="middle", size=11.5))
    for row, family in enumerate(families):
        y = _HEAD + row * (_CELL_H + _GAP)
        parts.append(
            Markup(
                '<text x="{:.1f}" y="{:.1f}" font-family="{}" font-size="12" '
                'text-anchor="end" fill="#1f2933"><title>{}</title>{}</text>'
            ).format(
                _LABEL - 8,
                y + _CELL_H / 2 + 4,
                FONT,
                family.family,
                _clip(family.family, 15.5),
            )
        )
        total = family.clauses or 1
        for column, status in enumerate(STATUSES):
            x = _LABEL + column * (_CELL_W + _GAP)
            count = family.counts.by_status.get(status, 0)
            label = f"{family.family} · {status_word(status, lang)}: {count}"
            if not count:
                parts.append(
                    Markup(
                        '<rect x="{}" y="{}" width="{}" height="{}" rx="2" fill="{}">'
                        "<title>{}</title></rect>"
                    ).format(x, y, _CELL_W, _CELL_H, _EMPTY, label)
                )
                continue
            share = count / total
            opacity = 0.35 + 0.65 * share
            ink = "#1f2933" if status == "not_covered" or opacity < 0.6 else "#ffffff"
            parts.append(
                Markup(
                    '<a href="{}" aria-label="{}"><rect x="{}" y="{}" width="{}" height="{}" '
                    'rx="2" fill="{}" fill-opacity="{:.2f}"><title>{}</title></rect>{}</a>'
                ).format(
                    link(family.family, status),
                    label,
                    x,
                    y,
                    _CELL_W,
                    _CELL_H,
                    COLOURS[status],
                    opacity,
                    label,
                    _text(
                        x + _CELL_W / 2,
                        y + _CELL_H / 2 + 5,
                        str(count),
                        anchor="middle",
                        fill=ink,
                        size=13,
                        bold=True,
                    ),
                )
            )
    parts.append(Markup("</svg>"))
    return Markup("").join(parts)


def rate_chart(families: Sequence[FamilyCounts], lang: str) -> Markup:
    """Each family's conformity rate as a bar (the report's chart); a family with no decided
    clause shows a dash, not a bar of 0."""
    return report_charts.rate_chart(families, lang)


def _text(
    x: float,
    y: float,
    text: str,
    *,
    anchor: str = "start",
    fill: str = "#1f2933",
    size: float = 12,
    bold: bool = False,
) -> Markup:
    return Markup(
        '<text x="{:.1f}" y="{:.1f}" font-family="{}" font-size="{}" font-weight="{}" '
        'text-anchor="{}" fill="{}">{}</text>'
    ).format(x, y, FONT, size, "700" if bold else "400", anchor, fill, text)


def _units(text: str) -> float:
    """Width in half-ems: a CJK character is about twice a Latin one."""
    return sum(2.0 if ord(ch) > 0x2E7F else 1.0 for ch in text)


def _clip(text: str, ems: float) -> str:
    """`text` cut to `ems` with an ellipsis (the label's tooltip has it whole)."""
    if _units(text) <= ems * 2:
        return text
    out = ""
    for ch in text:
        if _units(out + ch + "…") > ems * 2:
            break
        out += ch
    return out + "…"
