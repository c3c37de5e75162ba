"""The PDF report: the HTML report's page printed by WeasyPrint onto A4, with the CJK font
(Noto Sans CJK, Debian's fonts-noto-cjk) embedded so Chinese prints without the reader's fonts.

Printing never touches the network or the disk for resources: the page is self-contained, and the
URL fetcher given to WeasyPrint refuses every URL, so a stray reference stops the print instead of
fetching. This module is imported only when a PDF is asked for (WeasyPrint is heavy).
"""

from __future__ import annotations

from typing import NoReturn

from weasyprint import HTML
from weasyprint.text.fonts import FontConfiguration
from weasyprint.urls import FatalURLFetchingError, URLFetcher

from collector.compliance.model import Compliance
from collector.compliance.render.html import render_html

BASE_URL = "/nonexistent/medsec-report/"
"""Relative references resolve against a local path that does not exist, never a host; the
fetcher refuses them anyway."""


class URLRefused(ValueError):
    """The page asked for a resource by URL; a report is printed from the page alone."""


class RefusingFetcher(URLFetcher):  # type: ignore[misc]
    """WeasyPrint's fetcher with every fetch refused. `fail_on_errors` makes a refusal stop the
    print rather than leave a hole in the page."""

    def __init__(self) -> None:
        super().__init__(fail_on_errors=True)

    def fetch(self, url: str, headers: object = None) -> NoReturn:
        raise URLRefused(f"refused to fetch {url}")


def render_pdf(compliance: Compliance, lang: str = "zh") -> bytes:
    return html_to_pdf(render_html(compliance, lang))


def html_to_pdf(page: bytes) -> bytes:
    """`page` (UTF-8 HTML) printed by WeasyPrint, refusing every URL it references."""
    try:
        document = HTML(
            string=page.decode("utf-8"), base_url=BASE_URL, url_fetcher=RefusingFetcher()
        )
        pdf: bytes = document.write_pdf(font_config=FontConfiguration())
    except FatalURLFetchingError as refused:
        # WeasyPrint's fatal fetch error is a BaseException; callers expect a ValueError.
        cause = refused.__cause__ if isinstance(refused.__cause__, URLRefused) else refused
        raise URLRefused(f"{cause}: a report must be self-contained") from refused
    return pdf
