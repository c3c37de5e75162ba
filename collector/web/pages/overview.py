"""The overview (`/`): both standards at a glance — the clause heat map (family × status) and the
conformity rate per family of each, the clauses a heat-map cell counts, the hosts with the most
failed results, stale hosts and agents that never reported, ZTNA coverage from the newest scan,
the last scans, and what changed since the newest snapshot.

The aggregation comes from the context's compliance cache (made again in the background when the
evidence changes; the page says when it was made); the rest is a few small store reads.
"""

# No `from __future__ import annotations`: FastAPI reads the routes' annotations at runtime.
from collections import Counter
from dataclasses import dataclass
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Request
from fastapi.responses import HTMLResponse

from collector.compliance.aggregate import ScopeError
from collector.compliance.model import STATUSES, ClauseVerdict, Compliance, HostEntry
from collector.compliance.service import STANDARDS, ComplianceError
from collector.models import Role
from collector.web import charts
from collector.web.auth import page_user
from collector.web.context import WebContext, WebUser
from collector.web.pages import Aggregation, shared
from collector.web.render import error_page, render, url

WORST_HOSTS = 10
STALE_LISTED = 20
SCANS_LISTED = 5
ZTNA_CHECK = "net.ztna_coverage"
DEFAULT_STATUSES = ("fail", "error")
"""What the clause list shows before a heat-map cell is chosen."""


@dataclass(frozen=True)
class StandardView:
    key: str
    compliance: Compliance
    heat: Any
    rate: Any
    changes: Any


def clause_link(standard: str, clause_id: str) -> str:
    return url(f"/clauses/{standard}/{_segment(clause_id)}")


def _segment(text: str) -> str:
    from urllib.parse import quote

    return quote(text, safe="")


def router(ctx: WebContext) -> APIRouter:
    routes = APIRouter()
    Auditor = Annotated[WebUser, Depends(page_user(ctx, Role.AUDITOR))]

    @routes.get("/", response_class=HTMLResponse)
    def overview(request: Request, user: Auditor) -> HTMLResponse:
        """Both standards at a glance (the module's docstring)."""
        params = request.query_params
        chosen_standard = params.get("standard") or None
        chosen_family = params.get("family") or None
        chosen_status = params.get("status") or None
        if chosen_standard is not None and chosen_standard not in STANDARDS:
            return error_page(
                request,
                user,
                400,
                f"未知的标准 {chosen_standard!r}：可选 {', '.join(STANDARDS)}",
                f"unknown standard {chosen_standard!r}: use one of {', '.join(STANDARDS)}",
            )
        if chosen_status is not None and chosen_status not in STATUSES:
            return error_page(
                request,
                user,
                400,
                f"未知的状态 {chosen_status!r}",
                f"unknown status {chosen_status!r}: use one of {', '.join(STATUSES)}",
            )
        source = shared(ctx)
        try:
            made = {standard: source.compliance(standard) for standard in STANDARDS}
        except (ComplianceError, ScopeError) as exc:
            return render(
                request, user, "overview.html", section="overview", problem=str(exc), views=[]
            )
        views = [
            _standard_view(ctx, key, aggregation, user.locale) for key, aggregation in made.items()
        ]
        first = next(iter(made.values()))
        clauses = _clauses(made, chosen_standard, chosen_family, chosen_status)
        documents = tuple(a.compliance for a in made.values())
        worst = source.derived("worst-hosts", documents, lambda: worst_hosts(documents))
        now = ctx.clock()
        stale: list[HostEntry] = [
            h for h in first.compliance.hosts if h.stale and not h.id.startswith("scan:")
        ]
        return render(
            request,
            user,
            "overview.html",
            section="overview",
            problem=None,
            views=views,
            made_at=min(a.made_at for a in made.values()),
            refreshing=any(a.refreshing for a in made.values()),
            summary=first.compliance.summary,
            clauses=clauses,
            chosen=(chosen_standard, chosen_family, chosen_status),
            default_statuses=DEFAULT_STATUSES,
            worst=worst[:WORST_HOSTS],
            worst_total=len(worst),
            stale=stale[:STALE_LISTED],
            stale_total=len(stale),
            missing=first.compliance.missing,
            ztna=ctx.store.newest_scan_results([ZTNA_CHECK]),
            scans=ctx.store.list_scans(SCANS_LISTED, 0, now),
            clause_link=clause_link,
            standard_ids={k: a.compliance.standard_id for k, a in made.items()},
        )

    return routes


@dataclass(frozen=True)
class WorstHost:
    id: str
    name: str
    failing: int
    """Clauses (of both standards) the host fails."""
    errors: int
    """Clauses it could not be judged on (stale, a fact not gathered)."""


def worst_hosts(documents: tuple[Compliance, ...]) -> list[WorstHost]:
    """Hosts failing at least one clause, most failed clauses first (then most in error, then
    by name): made once per aggregation, not per page."""
    failing: Counter[str] = Counter()
    errors: Counter[str] = Counter()
    names: dict[str, str] = {}
    for document in documents:
        for clause in document.clauses:
            for obj in clause.objects:
                if obj.kind != "host":
                    continue
                if obj.status == "fail":
                    failing[obj.id] += 1
                    names[obj.id] = obj.name
                elif obj.status == "error":
                    errors[obj.id] += 1
    return sorted(
        (WorstHost(i, names[i], failing[i], errors[i]) for i in failing),
        key=lambda h: (-h.failing, -h.errors, h.name, h.id),
    )


def _standard_view(ctx: WebContext, key: str, made: Aggregation, lang: str) -> StandardView:
    compliance = made.compliance
    families = compliance.summary.families

    def link(family: str, status: str) -> str:
        return url("/", standard=key, family=family, status=status) + "#clauses"

    title = (
        f"{compliance.standard_id}：条款状态热力图（安全类 × 状态）"
        if lang != "en"
        else f"{compliance.standard_id}: clause heat map (family × status)"
    )
    return StandardView(
        key=key,
        compliance=compliance,
        heat=charts.heat_map(families, lang, link, title),
        rate=charts.rate_chart(families, lang),
        changes=shared(ctx).changes.since_newest(ctx, compliance),
    )


def _clauses(
    made: dict[str, Aggregation],
    standard: str | None,
    family: str | None,
    status: str | None,
) -> list[tuple[str, ClauseVerdict]]:
    """(standard, clause) of the chosen heat-map cell, or the clauses failing or in error."""
    chosen = []
    for key, aggregation in made.items():
        if standard is not None and key != standard:
            continue
        for clause in aggregation.compliance.clauses:
            if family is not None and clause.family != family:
                continue
            if status is not None and clause.status != status:
                continue
            if status is None and clause.status not in DEFAULT_STATUSES:
                continue
            chosen.append((key, clause))
    return chosen
