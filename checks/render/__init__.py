"""Renderers over the one report document (`medsec.report/v1`): each is a function
`(report, catalogs, lang, *, color) -> bytes`, shared by the agent, the scanner and the collector.

Renderers read the document, never the objects it was built from, so whatever renders a stored
report renders a fresh one the same way; they join clauses from the reader's catalogs.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Protocol

from checks.catalog import Catalogs
from checks.render.json import render_json
from checks.render.table import render_table

LANGS = ("en", "zh")


class Renderer(Protocol):
    def __call__(
        self,
        report: Mapping[str, Any],
        catalogs: Catalogs,
        lang: str = "en",
        *,
        color: bool = False,
    ) -> bytes: ...


RENDERERS: dict[str, Renderer] = {"json": render_json, "table": render_table}

__all__ = ["LANGS", "RENDERERS", "Renderer", "render_json", "render_table"]
