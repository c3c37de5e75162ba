"""The `read` routes: hosts, their reports, results and the audit log, for any user role.

Results carry the clauses their check evidences joined from the collector's own catalogs when
read, never the list the agent stored: a catalog correction then applies to all stored evidence,
and agents of different versions never disagree.
"""

# No `from __future__ import annotations`: FastAPI reads the routes' annotations at runtime, and
# the role alias (Auditor) is local to the function that registers the routes.
from dataclasses import replace
from typing import Annotated

from fastapi import APIRouter, Query

from checks.catalog import Catalogs
from collector.api.auth import Auth
from collector.api.errors import ERRORS, ERRORS_OR_NOT_FOUND, ApiError
from collector.api.schemas import (
    API,
    RESULT_STATUSES,
    AuditOut,
    HostDetailOut,
    HostId,
    HostOut,
    Limit,
    Offset,
    PageOut,
    ReportOut,
    ResultOut,
    to_out,
)
from collector.models import Page, Principal, ResultRow
from collector.store import Store


def router(store: Store, auth: Auth, catalogs: Catalogs) -> APIRouter:
    routes = APIRouter(tags=["read"])
    Auditor = Annotated[Principal, auth.auditor]

    def joined(row: ResultRow) -> ResultRow:
        return replace(row, clauses=tuple(catalogs.clause_ids(row.check_id)))

    @routes.get(f"{API}/hosts", response_model=PageOut[HostOut], responses=ERRORS)
    def list_hosts(_: Auditor, limit: Limit = 100, offset: Offset = 0) -> PageOut[HostOut]:
        """Hosts with their latest report's result counts."""
        return to_out(PageOut[HostOut], store.list_hosts(limit, offset))

    @routes.get(
        f"{API}/hosts/{{host_id}}", response_model=HostDetailOut, responses=ERRORS_OR_NOT_FOUND
    )
    def get_host(_: Auditor, host_id: HostId) -> HostDetailOut:
        """One host: its latest inventory and the results of its latest report."""
        found = store.get_host(host_id)
        if found is None:
            raise ApiError(404, "not_found", "no such host")
        host, inventory, results = found
        return HostDetailOut(
            host=to_out(HostOut, host),
            inventory=inventory,
            results=[to_out(ResultOut, joined(r)) for r in results],
        )

    @routes.get(
        f"{API}/hosts/{{host_id}}/reports",
        response_model=PageOut[ReportOut],
        responses=ERRORS_OR_NOT_FOUND,
    )
    def host_reports(
        _: Auditor, host_id: HostId, limit: Limit = 100, offset: Offset = 0
    ) -> PageOut[ReportOut]:
        """A host's reports, newest first."""
        page = store.host_reports(host_id, limit, offset)
        if page.total == 0 and store.get_host(host_id) is None:
            raise ApiError(404, "not_found", "no such host")
        return to_out(PageOut[ReportOut], page)

    @routes.get(f"{API}/results", response_model=PageOut[ResultOut], responses=ERRORS)
    def query_results(
        _: Auditor,
        check_id: Annotated[str | None, Query(max_length=200)] = None,
        status: RESULT_STATUSES | None = None,
        limit: Limit = 100,
        offset: Offset = 0,
    ) -> PageOut[ResultOut]:
        """Results of each host's latest report, optionally of one check and one status."""
        page: Page[ResultRow] = store.query_results(check_id, status, limit, offset)
        return to_out(PageOut[ResultOut], replace(page, items=tuple(map(joined, page.items))))

    @routes.get(f"{API}/audit", response_model=PageOut[AuditOut], responses=ERRORS)
    def audit_log(_: Auditor, limit: Limit = 100, offset: Offset = 0) -> PageOut[AuditOut]:
        """The audit log, in sequence order."""
        return to_out(PageOut[AuditOut], store.audit_entries(limit, offset))

    return routes
