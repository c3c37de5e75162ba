"""Snapshots and reports: the signed auditor snapshots kept by the collector (list, make one,
download its zip exactly as signed) and the clause-by-clause report of either standard as a file
(`/reports/{standard}.{xlsx|pdf|json}`), made by the same service calls as `medsec report`,
`medsec snapshot create` and the API, so the dashboard, the command line and the API hand out the
same documents. Auditors and above may do all of it.
"""

# No `from __future__ import annotations`: FastAPI reads the routes' annotations at runtime, and
# the user aliases are local to the function that registers the routes.
import logging
import tempfile
from collections.abc import Iterator
from typing import IO, Annotated, BinaryIO, cast

from fastapi import APIRouter, Depends, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response, StreamingResponse
from starlette.background import BackgroundTask
from starlette.concurrency import run_in_threadpool

from collector.compliance.aggregate import ScopeError
from collector.compliance.model import Scope
from collector.compliance.service import (
    STANDARDS,
    ComplianceError,
    as_of_instant,
    build,
    catalog_for,
)
from collector.models import Role
from collector.store import NotFound
from collector.web.auth import csrf_checked, form_fields, page_user
from collector.web.context import WebContext, WebUser
from collector.web.pages.network import UUID
from collector.web.render import error_page, render

logger = logging.getLogger("medsec.collector.web")

REPORT_TYPES = {
    "xlsx": "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet",
    "pdf": "application/pdf",
    "json": "application/json",
}
"""The report files the dashboard offers, with their media types."""
SCOPE_FIELDS = ("site", "zone", "host", "as_of")
MAX_FIELD = 300
"""As the API's snapshot body: a filter longer than this names nothing."""
_SPOOL_BYTES = 16 * 1024 * 1024
"""A JSON report up to this size is kept in memory while sent; a larger one (hundreds of MB at
10,000 hosts) goes to a temporary file first."""
_CHUNK = 1024 * 1024


def _scope(form: dict[str, str]) -> tuple[Scope | None, tuple[str, str] | None]:
    """The snapshot's scope from the form, or the problem (zh, en) with it."""
    values: dict[str, str | None] = {}
    for name in SCOPE_FIELDS:
        value = form.get(name, "").strip()
        if len(value) > MAX_FIELD:
            return None, (
                f"“{name}”过长（最多 {MAX_FIELD} 个字符）。",
                f"{name}: longer than {MAX_FIELD} characters",
            )
        if any(ord(c) < 32 for c in value):
            return None, (f"“{name}”含有控制字符。", f"{name}: holds control characters")
        values[name] = value or None
    return Scope(**values), None


def _attachment(name: str) -> dict[str, str]:
    """A download's headers: saved under `name`, kept by no cache (evidence is confidential)."""
    return {"Content-Disposition": f'attachment; filename="{name}"', "Cache-Control": "no-store"}


def _chunks(spool: IO[bytes]) -> Iterator[bytes]:
    """The spooled file from its start, a megabyte at a time; closed (and deleted) after."""
    try:
        spool.seek(0)
        while chunk := spool.read(_CHUNK):
            yield chunk
    finally:
        spool.close()


def report_file(ctx: WebContext, standard: str, fmt: str, lang: str) -> Response:
    """The report of `standard` as a `fmt` file over every host's newest evidence, now, as
    `medsec report` makes it; `ComplianceError` or `ScopeError` when it cannot be made."""
    now = ctx.clock()
    compliance = build(ctx.store, ctx.settings, [standard], Scope(), now, catalogs=ctx.catalogs)[
        standard
    ]
    name = f"medsec-{standard}-{now.strftime('%Y%m%dT%H%M%SZ')}.{fmt}"
    headers = _attachment(name)
    if fmt == "json":  # hundreds of MB at scale: written a clause at a time, then streamed
        from collector.compliance.render.json import write_json

        spool = tempfile.SpooledTemporaryFile(max_size=_SPOOL_BYTES)  # noqa: SIM115
        try:
            write_json(compliance, cast(BinaryIO, spool))
        except BaseException:
            spool.close()
            raise
        return StreamingResponse(
            _chunks(spool),
            media_type=REPORT_TYPES[fmt],
            headers=headers,
            background=BackgroundTask(spool.close),  # also when the client went away early
        )
    from collector.compliance.render import render as render_report

    return Response(
        render_report(compliance, fmt, lang), media_type=REPORT_TYPES[fmt], headers=headers
    )


def router(ctx: WebContext) -> APIRouter:
    routes = APIRouter()
    Auditor = Annotated[WebUser, Depends(page_user(ctx, Role.AUDITOR))]
    AuditorPost = Annotated[WebUser, Depends(csrf_checked(ctx, Role.AUDITOR))]

    def snapshots_page(
        request: Request,
        user: WebUser,
        *,
        status: int = 200,
        problem: tuple[str, str] | None = None,
        form: dict[str, str] | None = None,
        made: str | None = None,
    ) -> HTMLResponse:
        return render(
            request,
            user,
            "snapshots.html",
            status=status,
            section="snapshots",
            snapshots=ctx.store.list_snapshots(),
            standards=[(k, catalog_for(k, ctx.catalogs).standard) for k in STANDARDS],
            formats=tuple(REPORT_TYPES),
            problem=problem,
            form=form or {},
            made=made,
        )

    @routes.get("/snapshots", response_class=HTMLResponse)
    def snapshots(request: Request, user: Auditor, made: str | None = None) -> HTMLResponse:
        return snapshots_page(request, user, made=made if made and UUID.match(made) else None)

    @routes.post("/snapshots", response_model=None)
    async def create_snapshot(request: Request, user: AuditorPost) -> Response:
        """Make a snapshot of the form's scope (empty: everything); back to the list."""
        from collector.compliance.snapshot import SnapshotUnavailable
        from collector.compliance.snapshot_cli import store_snapshot

        form = await form_fields(request)
        shown = {k: form.get(k, "")[:MAX_FIELD] for k in SCOPE_FIELDS}
        scope, problem = _scope(form)
        if scope is not None and scope.as_of is not None:
            try:
                as_of_instant(scope.as_of, ctx.clock())
            except ComplianceError as exc:
                problem = (f"“截至时间”无效：{exc}", str(exc))
        if scope is None or problem is not None:
            return await run_in_threadpool(
                snapshots_page, request, user, status=400, problem=problem, form=shown
            )
        try:
            made = await run_in_threadpool(
                store_snapshot, ctx.store, ctx.settings, scope, user.name, ctx.clock()
            )
        except SnapshotUnavailable as exc:
            logger.error("snapshot refused: %s", exc)
            return await run_in_threadpool(
                snapshots_page,
                request,
                user,
                status=503,
                problem=(
                    f"收集器当前无法制作快照：{exc}",
                    f"the collector cannot make snapshots: {exc}",
                ),
                form=shown,
            )
        except (ComplianceError, ScopeError) as exc:
            return await run_in_threadpool(
                snapshots_page,
                request,
                user,
                status=400,
                problem=(f"快照范围无效：{exc}", f"the snapshot's scope: {exc}"),
                form=shown,
            )
        return RedirectResponse(f"/snapshots?made={made.id}", status_code=303)

    @routes.get("/snapshots/{snapshot_id}/download", response_model=None)
    def download_snapshot(request: Request, user: Auditor, snapshot_id: str) -> Response:
        """The snapshot's zip exactly as signed (its SHA-256 checked before it is sent)."""
        from collector.compliance.snapshot_cli import read_snapshot

        try:
            if not UUID.match(snapshot_id):
                raise NotFound(snapshot_id)
            kept = ctx.store.get_snapshot(snapshot_id)
        except NotFound:
            shown = snapshot_id[:64]
            return error_page(
                request, user, 404, f"没有编号为 {shown} 的快照。", f"There is no snapshot {shown}."
            )
        try:
            data = read_snapshot(ctx.settings, kept)
        except ComplianceError as exc:
            logger.error("snapshot %s: %s", kept.id, exc)
            return error_page(
                request,
                user,
                500,
                f"快照文件已不是制作时的文件：{exc}",
                f"The snapshot's file is not the one made: {exc}",
            )
        return Response(data, media_type="application/zip", headers=_attachment(kept.file_name))

    @routes.get("/reports/{file_name}", response_model=None)
    def download_report(request: Request, user: Auditor, file_name: str) -> Response:
        """`{standard}.{xlsx|pdf|json}`: the report of every host's newest evidence, now."""
        standard, _, fmt = file_name.rpartition(".")
        if standard not in STANDARDS or fmt not in REPORT_TYPES:
            shown = file_name[:80]
            return error_page(
                request,
                user,
                404,
                f"没有报告“{shown}”：可下载 {'、'.join(STANDARDS)} 的 xlsx、pdf 或 json。",
                f"There is no report {shown!r}: reports are {', '.join(STANDARDS)} as "
                "xlsx, pdf or json.",
            )
        try:
            return report_file(ctx, standard, fmt, user.locale)
        except (ComplianceError, ScopeError) as exc:
            return error_page(
                request, user, 500, f"无法生成报告：{exc}", f"The report cannot be made: {exc}"
            )

    return routes


__all__ = ["REPORT_TYPES", "router"]
