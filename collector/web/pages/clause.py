"""A clause (`/clauses/{standard}/{clause_id}`): its text as the standard words it and where that
text comes from, its status and conformity, the status of every object it is held against (hosts,
network objects, agents that never reported) with the results behind each, and the people's
attestations on it. Objects that did not pass come first; a page lists `PAGE` of them, so a
clause held against ten thousand hosts stays one readable page. An unknown standard or clause is
the 404 page.
"""

# No `from __future__ import annotations`: FastAPI reads the routes' annotations at runtime.
from collections import Counter, defaultdict
from dataclasses import dataclass
from typing import Annotated

from fastapi import APIRouter, Depends, Request
from fastapi.responses import HTMLResponse

from collector.compliance.aggregate import ScopeError
from collector.compliance.model import (
    STATUSES,
    AttestationEvidence,
    AttestationOut,
    ClauseVerdict,
    EvidenceItem,
    ObjectVerdict,
)
from collector.compliance.render.html import PROVENANCE
from collector.compliance.service import STANDARDS, ComplianceError
from collector.models import Attestation, Role
from collector.web.auth import page_user
from collector.web.context import WebContext, WebUser
from collector.web.pages import shared
from collector.web.render import error_page, render

PAGE = 50
"""Objects listed per page."""
_ORDER = {status: n for n, status in enumerate(("fail", "error", "not_covered", "manual", "pass"))}


@dataclass(frozen=True)
class ObjectRow:
    object: ObjectVerdict
    evidence: list[EvidenceItem]


def router(ctx: WebContext) -> APIRouter:
    routes = APIRouter()
    Auditor = Annotated[WebUser, Depends(page_user(ctx, Role.AUDITOR))]

    @routes.get("/clauses/{standard}/{clause_id}", response_class=HTMLResponse)
    def clause_page(request: Request, user: Auditor, standard: str, clause_id: str) -> HTMLResponse:
        """The clause, its objects and their evidence, its attestations."""
        if standard not in STANDARDS:
            return error_page(
                request, user, 404, f"没有标准 {standard!r}", f"no standard {standard!r}"
            )
        params = request.query_params
        status = params.get("status") or None
        if status is not None and status not in STATUSES:
            return error_page(
                request,
                user,
                400,
                f"未知的状态 {status!r}",
                f"unknown status {status!r}: use one of {', '.join(STATUSES)}",
            )
        page = _page_number(params.get("page"))
        if page is None:
            return error_page(
                request, user, 400, "页码须为正整数", "page: a whole number from 1 on"
            )
        try:
            made = shared(ctx).compliance(standard)
        except (ComplianceError, ScopeError) as exc:
            return error_page(request, user, 503, str(exc), str(exc))
        compliance = made.compliance
        clause = next((c for c in compliance.clauses if c.id == clause_id), None)
        if clause is None:
            return error_page(
                request,
                user,
                404,
                f"{compliance.standard_id} 中没有条款 {clause_id!r}",
                f"{compliance.standard_id} has no clause {clause_id!r}",
            )
        objects = [o for o in clause.objects if o.kind != "attestation"]
        counts = Counter(o.status for o in objects)
        chosen = sorted(
            (o for o in objects if status is None or o.status == status),
            key=lambda o: (_ORDER.get(o.status, len(_ORDER)), o.name, o.id),
        )
        pages = max(1, -(-len(chosen) // PAGE))
        listed = chosen[(page - 1) * PAGE : page * PAGE]
        return render(
            request,
            user,
            "clause.html",
            section="overview",
            standard=standard,
            compliance=compliance,
            made_at=made.made_at,
            clause=clause,
            provenance=PROVENANCE["en" if user.locale == "en" else "zh"],
            counts=[(s, counts[s]) for s in STATUSES if counts[s]],
            total=len(objects),
            chosen_status=status,
            rows=_rows(clause, listed),
            matching=len(chosen),
            page=page,
            pages=pages,
            counted=_counted(clause),
            history=_history(ctx, compliance.standard_id, clause.id),
        )

    return routes


def _page_number(text: str | None) -> int | None:
    if text is None or text == "":
        return 1
    if not text.isdigit() or len(text) > 9 or int(text) < 1:
        return None
    return int(text)


def _rows(clause: ClauseVerdict, listed: list[ObjectVerdict]) -> list[ObjectRow]:
    wanted = {o.id for o in listed}
    evidence: dict[str, list[EvidenceItem]] = defaultdict(list)
    for item in clause.evidence:
        if isinstance(item, EvidenceItem) and item.object in wanted:
            evidence[item.object].append(item)
    return [ObjectRow(o, evidence.get(o.id, [])) for o in listed]


def _counted(clause: ClauseVerdict) -> AttestationOut | None:
    """The attestation the clause's verdict stands on, if any."""
    return next(
        (e.attestation for e in clause.evidence if isinstance(e, AttestationEvidence)), None
    )


def _history(ctx: WebContext, standard_id: str, clause_id: str) -> list[Attestation]:
    """Every attestation on the clause, newest first."""
    found = [a for a in ctx.store.list_attestations(standard_id) if a.clause == clause_id]
    return sorted(found, key=lambda a: (a.created_at, a.id), reverse=True)
