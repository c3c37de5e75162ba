"""The XLSX record's large tables — clause × object rows, hosts, evidence — streamed into the
sheets XlsxWriter made, as inline-string XML: about 1 µs a cell, where XlsxWriter's cell API
takes 14 µs (its floor alone was ~30 s at 10,000 hosts). XlsxWriter still writes everything
else: styles, headers, panes, filters, the summary and its chart."""

from __future__ import annotations

import io
import re
import shutil
import tempfile
import zipfile
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import IO
from xml.etree import ElementTree

from xlsxwriter.format import Format
from xlsxwriter.utility import xl_col_to_name
from xlsxwriter.workbook import Workbook

CELL_MAX = 32_767
"""Excel's limit on the characters (UTF-16 units) of one cell."""

Row = tuple[Sequence[str], Sequence[str]]

_CONFORMITY_COLOURS = {
    "符合": "#C6EFCE",
    "部分符合": "#FFEB9C",
    "不符合": "#FFC7CE",
    "不适用": "#EDEDED",
}


def display_width(text: str) -> int:
    """The widest line of `text` in Excel column units: a CJK character counts double (it is
    three bytes in UTF-8, Latin text one), which is all a column width needs."""
    if "\n" in text:
        return max(map(display_width, text.split("\n")))
    if text.isascii():
        return len(text)
    return (len(text) + len(text.encode("utf-8", "replace"))) // 2


def clip(text: str, marker: str) -> str:
    """`text` within one cell's limit; when cut, `marker` ({n}: the full length) says so."""
    if len(text) <= CELL_MAX // 2 or len(text.encode("utf-16-le", "replace")) <= 2 * CELL_MAX:
        return text
    tail = marker.format(n=len(text))
    # Characters beyond the Basic Multilingual Plane take two UTF-16 units: cut by units.
    units = text.encode("utf-16-le", "replace")[: 2 * (CELL_MAX - len(tail))]
    return units.decode("utf-16-le", "ignore") + tail


# -- the large tables, streamed into the sheets XlsxWriter made ----------------------------------


class _Formats:
    """The few cell formats of the workbook, made once and shared by every cell."""

    def __init__(self, book: Workbook) -> None:
        add = book.add_format
        self.title = add({"bold": True, "font_size": 14})
        self.label = add({"bold": True, "valign": "top"})
        self.header = add(
            {"bold": True, "text_wrap": True, "valign": "vcenter", "bg_color": "#D9E1F2"}
        )
        self.cell = add({"text_wrap": True, "valign": "top"})
        self.plain = add({"valign": "top"})
        self.number = add({"valign": "top", "num_format": "0"})
        self.rate = add({"valign": "top", "num_format": "0.0%"})
        self.stale = add({"text_wrap": True, "valign": "top", "bg_color": "#FCE4D6"})
        self.missing = add({"text_wrap": True, "valign": "top", "bg_color": "#F4B084"})
        self.conformity = {
            word: add({"text_wrap": True, "valign": "top", "bg_color": colour})
            for word, colour in _CONFORMITY_COLOURS.items()
        }


class _Styles:
    """The style ids of the formats the streamed rows use, known once XlsxWriter has written the
    workbook (it numbers the formats its cells used; the summary sheet uses each of these)."""

    def __init__(self, formats: _Formats) -> None:
        self.cell = _xf(formats.cell)
        self.stale = _xf(formats.stale)
        self.missing = _xf(formats.missing)
        self.conformity = {word: _xf(fmt) for word, fmt in formats.conformity.items()}


def _xf(fmt: Format) -> str:
    # XlsxWriter numbers a format when a cell uses it, and leaves unnumbered a format equal to
    # one numbered before: each of these is used on the summary sheet and differs from the rest.
    index = fmt.xf_index
    if index is None:
        raise RuntimeError("a format of the streamed rows is unused or equal to another")
    return str(index)


@dataclass
class _Table:
    """A header and its data rows, on as many sheets as the row limit asks for."""

    title: str
    header: Sequence[str]
    caps: Sequence[int]
    marker: str
    """Ends a text cut to Excel's cell limit ({n}: its full length)."""
    count: int
    rows: Callable[[_Styles], Iterator[Row]]
    """Made after the workbook is written, when the style ids are known."""
    sheets: list[tuple[str, int]] = field(default_factory=list)
    """Each sheet's name and its number of data rows."""


_CONTROL_BYTES = bytes(range(0x20)).translate(None, b"\t\n")
_LITERAL_ESCAPE = re.compile(rb"_x[0-9a-fA-F]{4}_")
_CONTROL = re.compile(rb"[\x00-\x08\x0b-\x1f]")
_FLUSH_PARTS = 16_000
_ZIP_EPOCH = (1980, 1, 1, 0, 0, 0)
"""The members' time, as XlsxWriter stamps its own."""
_LEVEL = 3
"""zlib's: the text repeats a lot, so 3 packs nearly as well as 6 in a quarter of the time."""
_MEASURE_ALL = 10_000
_MEASURE_EVERY = 16
_SPACE = " \t\n\r"
"""Kept at either end of a text only when marked to be (xml:space)."""
_NOT_XML = (b"\xef\xbf\xbe", b"\xef\xbf\xbf")
"""U+FFFE and U+FFFF in UTF-8: characters XML 1.0 does not allow."""


def _write_rows(
    out: IO[bytes], rows: Iterator[Row], first: int, count: int, table: _Table
) -> list[int]:
    """`count` rows from `rows` as SpreadsheetML, numbered from `first` (1-based); returns the
    widths they need per column (capped), measured on every row of the first
    `_MEASURE_ALL` and on one in `_MEASURE_EVERY` after."""
    caps = table.caps
    widths = [min(display_width(h), cap) for h, cap in zip(table.header, caps, strict=True)]
    letters = [xl_col_to_name(col) for col in range(len(caps))]
    marker = table.marker
    # The markup around each column's text, for each tuple of styles (a sheet has a few).
    markup: dict[Sequence[str], list[tuple[str, str]]] = {}
    parts: list[str] = []
    append = parts.append
    # Cells repeated down a column (a clause's text on each of its objects' rows) are the same
    # object: measured once.
    last: list[str | None] = [None] * len(caps)
    for number in range(first, first + count):
        cells, styles = next(rows)
        around = markup.get(styles)
        if around is None:
            around = markup[styles] = [
                (f'<c r="{letter}', f'" s="{style}" t="inlineStr"><is><t')
                for letter, style in zip(letters, styles, strict=True)
            ]
        r = str(number)
        append(f'<row r="{r}">')
        measure = number < _MEASURE_ALL or number % _MEASURE_EVERY == 0
        for col, given in enumerate(cells):
            if not given:
                continue
            text = clip(given, marker) if len(given) > CELL_MAX // 2 else given
            if measure and widths[col] < caps[col] and given is not last[col]:
                last[col] = given
                width = display_width(text)
                if width > widths[col]:
                    widths[col] = min(width, caps[col])
            if "&" in text or "<" in text or ">" in text:
                text = text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
            opening, middle = around[col]
            if text[0] in _SPACE or text[-1] in _SPACE:
                append(f'{opening}{r}{middle} xml:space="preserve">{text}</t></is></c>')
            else:
                append(f"{opening}{r}{middle}>{text}</t></is></c>")
        append("</row>")
        if len(parts) > _FLUSH_PARTS:
            out.write(_xml_bytes(parts))
            parts.clear()
    out.write(_xml_bytes(parts))
    return widths


def _xml_bytes(parts: list[str]) -> bytes:
    """Rows' XML as UTF-8. The markup has no control characters nor `_xHHHH_`, so the batch is
    escaped as a whole, the way Excel reads them back: a control character (or another that XML
    cannot hold) as `_xHHHH_`, a literal `_xHHHH_` with its underscore escaped."""
    data = "".join(parts).encode("utf-8", "replace")
    # Both are rare: look for them quickly first. Working on UTF-8 is safe: no byte of a
    # multi-byte character is below 0x80.
    if b"_x" in data:
        data = _LITERAL_ESCAPE.sub(lambda found: b"_x005F" + found.group(), data)
    if len(data.translate(None, _CONTROL_BYTES)) != len(data):
        data = _CONTROL.sub(lambda found: b"_x%04X_" % found.group()[0], data)
    for bad, escaped in zip(_NOT_XML, (b"_xFFFE_", b"_xFFFF_"), strict=True):
        if bad in data:
            data = data.replace(bad, escaped)
    return data


def _fill(workbook: bytes, tables: Sequence[_Table], styles: _Styles) -> bytes:
    """XlsxWriter's workbook with the tables' rows written into their sheets."""
    source = zipfile.ZipFile(io.BytesIO(workbook))
    parts = _sheet_parts(source)
    filled = {parts[name] for table in tables for name, _ in table.sheets}
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED, compresslevel=_LEVEL) as target:
        for info in source.infolist():
            if info.filename not in filled:
                target.writestr(info, source.read(info.filename))
        with tempfile.TemporaryFile() as scratch:
            for table in tables:
                rows = table.rows(styles)
                for name, count in table.sheets:
                    scratch.seek(0)
                    scratch.truncate()
                    widths = _write_rows(scratch, rows, 2, count, table)
                    size = scratch.tell()
                    scratch.seek(0)
                    head, tail = _sheet_around_rows(
                        source.read(parts[name]).decode("utf-8"), widths, count + 1
                    )
                    member = zipfile.ZipInfo(parts[name], date_time=_ZIP_EPOCH)
                    member.compress_type = zipfile.ZIP_DEFLATED
                    # A ZipInfo brings its own level (zlib's default, 6, when unset); the
                    # attribute has no public name before Python 3.13 and keeps this one after.
                    member._compresslevel = _LEVEL  # type: ignore[attr-defined]
                    with target.open(member, "w", force_zip64=size > 1 << 30) as stream:
                        stream.write(head)
                        shutil.copyfileobj(scratch, stream, 1 << 20)
                        stream.write(tail)
    return out.getvalue()


_NS = {
    "main": "http://schemas.openxmlformats.org/spreadsheetml/2006/main",
    "rel": "http://schemas.openxmlformats.org/package/2006/relationships",
}
_R_ID = "{http://schemas.openxmlformats.org/officeDocument/2006/relationships}id"


def _sheet_parts(package: zipfile.ZipFile) -> dict[str, str]:
    """Sheet name -> its part in the package, as the workbook and its relationships say."""
    # XlsxWriter's own output of a moment ago, not outside input.
    workbook = ElementTree.fromstring(package.read("xl/workbook.xml"))  # noqa: S314
    rels = ElementTree.fromstring(package.read("xl/_rels/workbook.xml.rels"))  # noqa: S314
    targets = {
        rel.get("Id"): rel.get("Target", "") for rel in rels.iterfind("rel:Relationship", _NS)
    }
    parts = {}
    for sheet in workbook.iterfind("main:sheets/main:sheet", _NS):
        target = targets[sheet.get(_R_ID)]
        parts[sheet.get("name", "")] = (
            target.lstrip("/") if target.startswith("/") else "xl/" + target
        )
    return parts


def _sheet_around_rows(xml: str, widths: Sequence[int], last_row: int) -> tuple[bytes, bytes]:
    """A sheet's XML (its header row only) cut where the data rows go, with the dimension
    covering them and the column widths they need."""
    head, found, tail = xml.partition("</sheetData>")
    if not found or "<cols>" in head:
        raise RuntimeError("unexpected sheet XML from XlsxWriter")
    last = xl_col_to_name(len(widths) - 1)
    head = re.sub(
        r'<dimension ref="[^"]*"/>', f'<dimension ref="A1:{last}{last_row}"/>', head, count=1
    )
    cols = "".join(
        f'<col min="{n}" max="{n}" width="{width + 2}" customWidth="1"/>'
        for n, width in enumerate(widths, start=1)
    )
    head = head.replace("<sheetData>", f"<cols>{cols}</cols><sheetData>", 1)
    return head.encode("utf-8"), (found + tail).encode("utf-8")
