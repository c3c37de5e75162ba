"""Renderers of one `Compliance` document: each is `(compliance, lang) -> bytes`, Chinese by
default. A format's module is imported only when asked for (WeasyPrint and XlsxWriter are heavy).
"""

from __future__ import annotations

import importlib
from typing import Protocol

from collector.compliance.model import Compliance

LANGS = ("zh", "en")
FORMATS = {
    "json": ("collector.compliance.render.json", "render_json"),
    "csv": ("collector.compliance.render.csv", "render_csv"),
    "html": ("collector.compliance.render.html", "render_html"),
    "pdf": ("collector.compliance.render.pdf", "render_pdf"),
    "xlsx": ("collector.compliance.render.xlsx", "render_xlsx"),
    "summary": ("collector.compliance.render.summary", "render_summary"),
}
"""`summary` is the one-screen text a terminal shows, not a report to hand over."""


class Renderer(Protocol):
    def __call__(self, compliance: Compliance, lang: str = "zh") -> bytes: ...


def renderer(fmt: str) -> Renderer:
    """The renderer of `fmt` (one of `FORMATS`); KeyError otherwise."""
    module, name = FORMATS[fmt]
    found: Renderer = getattr(importlib.import_module(module), name)
    return found


def render(compliance: Compliance, fmt: str, lang: str = "zh") -> bytes:
    return renderer(fmt)(compliance, lang)
