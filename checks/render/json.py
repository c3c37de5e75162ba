"""The report as JSON, with clauses joined from the reader's catalogs (the form that is sealed,
pushed and stored). Both languages' messages are kept whatever `lang` is; keys stay English."""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from checks.catalog import Catalogs
from checks.report import rejoin


def render_json(
    report: Mapping[str, Any], catalogs: Catalogs, lang: str = "en", *, color: bool = False
) -> bytes:
    del lang, color  # JSON is for machines: it carries both languages and no colour
    doc = rejoin(report, catalogs)
    return (json.dumps(doc, ensure_ascii=False, indent=2) + "\n").encode("utf-8")
