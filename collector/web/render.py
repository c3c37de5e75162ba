"""Dashboard pages as HTML: one Jinja2 environment over `collector/web/templates/` with autoescape
on, so every value a host, a scan or a person sent (host names, messages, evidence, notes) is
escaped wherever a template prints it; no template marks data `|safe`. Words are picked by the
user's locale (`t(zh, en)`, and filters for statuses, conformity and object kinds), Chinese by
default. Every page goes out with headers that keep it from being framed, sniffed, cached or
made to run a script that is not the collector's own.
"""

from __future__ import annotations

import functools
import json
from collections.abc import Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlencode

import jinja2
import msgspec
from fastapi import Request
from fastapi.responses import HTMLResponse

from collector.compliance.render.text import conformity_word, kind_word, status_word
from collector.web.context import Locale, WebUser

TEMPLATES = Path(__file__).resolve().parent / "templates"
STATIC = Path(__file__).resolve().parent / "static"
"""The stylesheet (and any vendored file) the collector serves under `/static`."""
HEADERS = {
    # Scripts, styles, images and forms only from the collector itself: the dashboard runs
    # air-gapped and loads nothing from elsewhere. Inline style attributes are allowed (SVG
    # charts and templates use a few); inline scripts are not.
    "Content-Security-Policy": (
        "default-src 'self'; script-src 'self'; style-src 'self' 'unsafe-inline'; "
        "img-src 'self' data:; font-src 'self'; connect-src 'self'; form-action 'self'; "
        "frame-ancestors 'none'; base-uri 'none'; object-src 'none'"
    ),
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "same-origin",
    # Compliance evidence is confidential: never kept by a shared cache or the browser's disk.
    "Cache-Control": "no-store",
}


@functools.cache
def environment() -> jinja2.Environment:
    """The dashboard's one template environment (made on first use, never at import)."""
    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(TEMPLATES),
        autoescape=True,
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.filters.update(
        status=_status,
        conformity=_conformity,
        kind=_kind,
        message=_message,
        reason=_reason,
        when=_when,
        number=_number,
        bytes=_bytes,
        pretty=_pretty,
    )
    env.globals.update(url=url)
    return env


def render(
    request: Request,
    user: WebUser | None,
    template: str,
    status: int = 200,
    **values: Any,
) -> HTMLResponse:
    """`template` rendered for `user` (None: signed out, as on the login page) with `values`.

    Every template sees `t(zh, en)`, `lang`, `user`, `csrf` (the login's token, for forms),
    `path` (the page's own path with its query), `request_path` (without), `url(path,
    **query)`, and `switch_lang` (this
    page in the other language, for signed-out pages: `?lang=`). A signed-out page may pass
    `lang` and `csrf` itself."""
    lang: Locale = values.pop("lang", None) or (user.locale if user is not None else "zh")
    if lang not in ("zh", "en"):
        lang = "zh"
    csrf = values.pop("csrf", None) or (user.csrf if user is not None else "")
    here = quote(request.url.path)  # the path as the server decoded it, made a URL again
    query = request.url.query
    other = {k: v for k, v in request.query_params.items() if k != "lang"}
    page = (
        environment()
        .get_template(template)
        .render(
            t=_chooser(lang),
            lang=lang,
            user=user,
            csrf=csrf,
            path=here + (f"?{query}" if query else ""),
            request_path=here,
            switch_lang=url(here, **other, lang="zh" if lang == "en" else "en"),
            **values,
        )
    )
    return HTMLResponse(page, status_code=status, headers=HEADERS)


def error_page(
    request: Request,
    user: WebUser | None,
    status: int,
    detail_zh: str | None = None,
    detail_en: str | None = None,
) -> HTMLResponse:
    """The 404 or 403 page (`error.html`), saying in the user's language what was not found or
    not allowed; never a traceback."""
    return render(
        request,
        user,
        "error.html",
        status=status,
        code=status,
        detail_zh=detail_zh,
        detail_en=detail_en or detail_zh,
    )


def url(path: str, **query: Any) -> str:
    """`path` with the query parameters that have a value (None and '' are left out)."""
    kept = {k: v for k, v in query.items() if v is not None and v != ""}
    return f"{path}?{urlencode(kept)}" if kept else path


def _chooser(lang: Locale) -> Any:
    if lang == "en":
        return lambda zh, en: en
    return lambda zh, en: zh


# --------------------------------------------------------------------------- filters


@jinja2.pass_context
def _status(context: jinja2.runtime.Context, value: str) -> str:
    return status_word(value, context["lang"])


@jinja2.pass_context
def _conformity(context: jinja2.runtime.Context, value: str | None) -> str:
    return conformity_word(value, context["lang"])


@jinja2.pass_context
def _kind(context: jinja2.runtime.Context, value: str) -> str:
    return kind_word(value, context["lang"])


@jinja2.pass_context
def _message(context: jinja2.runtime.Context, item: Any) -> str:
    """A result's message in the language (its Chinese one when it has one)."""
    chinese = getattr(item, "message_zh", None)
    if chinese is None and isinstance(item, Mapping):
        chinese = item.get("message_zh")
    english = getattr(item, "message", None)
    if english is None and isinstance(item, Mapping):
        english = item.get("message")
    return str((chinese if context["lang"] != "en" and chinese else english) or "")


@jinja2.pass_context
def _reason(context: jinja2.runtime.Context, obj: Any) -> str:
    english = getattr(obj, "reason", None)
    chinese = getattr(obj, "reason_zh", None)
    return (chinese if context["lang"] != "en" and chinese else english) or ""


def _when(value: datetime | str | None) -> str:
    """A time as `2026-12-07 05:02 UTC` (the store keeps UTC; so does every page); '—' for
    none; text that is not a time as it is."""
    if value is None or value == "":
        return "—"
    if isinstance(value, str):
        try:
            moment = datetime.fromisoformat(value.replace("Z", "+00:00"))
        except ValueError:
            return value
    else:
        moment = value
    if moment.tzinfo is not None:
        moment = moment.astimezone(UTC)
    return moment.strftime("%Y-%m-%d %H:%M UTC")


def _number(value: float | int | None, digits: int = 0) -> str:
    if value is None:
        return "—"
    return f"{value:,.{digits}f}"


def _bytes(value: int | None) -> str:
    """Bytes in binary units as storage tools print them (`256 GiB`)."""
    if not isinstance(value, int) or isinstance(value, bool):
        return "—"
    size = float(value)
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if size < 1024 or unit == "TiB":
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1024
    return f"{value} B"


def _pretty(value: Any) -> str:
    """JSON evidence indented for reading (the template escapes it)."""
    if isinstance(value, msgspec.Raw | bytes | bytearray | memoryview):
        value = json.loads(bytes(value))
    elif isinstance(value, str):
        try:
            value = json.loads(value)
        except ValueError:
            return str(value)
    return str(json.dumps(value, ensure_ascii=False, indent=1, sort_keys=True))
