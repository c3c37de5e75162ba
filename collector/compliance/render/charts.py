"""Charts of the HTML and PDF reports, drawn on the server as inline SVG: the conformity rate per
control family and the clause statuses per family as stacked bars. Plain SVG elements only (no
script, no external reference), so the HTML stays self-contained and WeasyPrint draws the same
picture a browser does. Fragments are `Markup` templates whose arguments markupsafe escapes.
"""

from __future__ import annotations

from collections.abc import Sequence

from markupsafe import Markup

from collector.compliance.model import STATUSES, FamilyCounts
from collector.compliance.render.text import status_word

FONT = "'Noto Sans CJK SC', 'Noto Sans CJK', 'Source Han Sans SC', sans-serif"
COLOURS = {
    "pass": "#2e7d32",
    "fail": "#c62828",
    "error": "#ef6c00",
    "not_applicable": "#9e9e9e",
    "manual": "#1565c0",
    "not_covered": "#d7ccc8",
}
_WIDTH = 660
_LABEL = 190
"""Room on the left for a family's name."""
_VALUE = 60
"""Room on the right for a bar's figure."""
_SPAN = _WIDTH - _LABEL - _VALUE
_ROW = 22
_BAR = 14
_RECT = Markup('<rect x="{:.1f}" y="{}" width="{:.1f}" height="{}" fill="{}"/>')


def rate_chart(families: Sequence[FamilyCounts], lang: str) -> Markup:
    """Horizontal bars: each family's conformity rate, 0–100 %; a family with no decided clause
    shows a dash instead of a bar (no rate is not a rate of 0)."""
    title = "符合率（按安全类）" if lang != "en" else "Conformity rate by family"
    parts = [_open(_ROW * len(families) + 24, title)]
    for row, family in enumerate(families):
        y = row * _ROW
        parts.append(_label(family.family, y))
        parts.append(_RECT.format(_LABEL, y + 4, _SPAN, _BAR, "#f1f1f1"))
        rate = family.counts.rate
        if rate is None:
            value = "—"
        else:
            width = _SPAN * max(0.0, min(rate, 100.0)) / 100
            parts.append(_RECT.format(_LABEL, y + 4, width, _BAR, _rate_colour(rate)))
            value = f"{rate:.1f}%"
        parts.append(_text(_LABEL + _SPAN + 6, y + 15, value))
    height = _ROW * len(families)
    for pct in (0, 50, 100):
        x = _LABEL + _SPAN * pct / 100
        parts.append(
            Markup(
                '<line x1="{0:.1f}" y1="0" x2="{0:.1f}" y2="{1}" stroke="#bdbdbd" '
                'stroke-width="0.5"/>'
            ).format(x, height)
        )
        parts.append(_text(x, height + 14, f"{pct}%", anchor="middle", fill="#616161"))
    parts.append(Markup("</svg>"))
    return Markup("").join(parts)


def status_chart(families: Sequence[FamilyCounts], lang: str) -> Markup:
    """One bar per family, its clauses split by status (shares of the family's clauses), with the
    count written in each segment wide enough to hold it, and a legend below."""
    legend_y = _ROW * len(families) + 8
    title = "条款状态（按安全类）" if lang != "en" else "Clause status by family"
    parts = [_open(legend_y + 22, title)]
    for row, family in enumerate(families):
        y = row * _ROW
        parts.append(_label(family.family, y))
        total = family.clauses or 1
        x = float(_LABEL)
        for status in STATUSES:
            count = family.counts.by_status.get(status, 0)
            if not count:
                continue
            width = _SPAN * count / total
            parts.append(_RECT.format(x, y + 4, width, _BAR, COLOURS[status]))
            if width >= 9 * len(str(count)):
                colour = "#000000" if status == "not_covered" else "#ffffff"
                parts.append(_text(x + width / 2, y + 15, str(count), anchor="middle", fill=colour))
            x += width
        parts.append(_text(_LABEL + _SPAN + 6, y + 15, str(family.clauses)))
    x = float(_LABEL)
    for status in STATUSES:
        word = status_word(status, lang)
        parts.append(_RECT.format(x, legend_y + 3, 10, 10, COLOURS[status]))
        parts.append(_text(x + 14, legend_y + 12, word))
        x += 22 + 7 * _text_units(word)
    parts.append(Markup("</svg>"))
    return Markup("").join(parts)


def _open(height: int, title: str) -> Markup:
    return Markup(
        '<svg class="chart" viewBox="0 0 {0} {1}" width="{0}" height="{1}" role="img" '
        'aria-label="{2}"><title>{2}</title>'
    ).format(_WIDTH, height, title)


def _label(name: str, y: int) -> Markup:
    return _text(_LABEL - 6, y + 15, _clip(name, 16), anchor="end")


def _text(x: float, y: float, text: str, *, anchor: str = "start", fill: str = "#212121") -> Markup:
    # The font is named on each text: WeasyPrint does not take it from the svg element.
    return Markup(
        '<text x="{:.1f}" y="{}" font-family="{}" font-size="11" text-anchor="{}" '
        'fill="{}">{}</text>'
    ).format(x, y, FONT, anchor, fill, text)


def _rate_colour(rate: float) -> str:
    if rate >= 90:
        return COLOURS["pass"]
    if rate >= 70:
        return "#f9a825"
    return COLOURS["fail"]


def _text_units(text: str) -> float:
    """Width in half-ems: a CJK character is about twice a Latin one."""
    return sum(2.0 if ord(ch) > 0x2E7F else 1.0 for ch in text)


def _clip(text: str, ems: float) -> str:
    """`text` cut to fit `ems`, with an ellipsis when cut (the table below has the full name)."""
    if _text_units(text) <= ems * 2:
        return text
    out = ""
    for ch in text:
        if _text_units(out + ch + "…") > ems * 2:
            break
        out += ch
    return out + "…"
