"""The `admin` routes: the agents (listing, revoking) and the users, for the admin role."""

# No `from __future__ import annotations`: FastAPI reads the routes' annotations at runtime, and
# the role alias (Admin) is local to the function that registers the routes.
from typing import Annotated

from fastapi import APIRouter

from collector.api.auth import Auth
from collector.api.errors import ERRORS, ERRORS_OR_NOT_FOUND, ApiError
from collector.api.middleware import Clock
from collector.api.schemas import API, AgentName, AgentOut, UserOut, to_out
from collector.models import Principal
from collector.store import NotFound, Store


def router(store: Store, auth: Auth, clock: Clock) -> APIRouter:
    routes = APIRouter(tags=["admin"])
    Admin = Annotated[Principal, auth.admin]

    @routes.get(f"{API}/agents", response_model=list[AgentOut], responses=ERRORS)
    def list_agents(_: Admin) -> list[AgentOut]:
        return [to_out(AgentOut, a) for a in store.list_agents()]

    @routes.post(
        f"{API}/agents/{{name}}/revoke", response_model=AgentOut, responses=ERRORS_OR_NOT_FOUND
    )
    def revoke_agent(_: Admin, name: AgentName) -> AgentOut:
        """Revoke an agent: its token stops working at once; its reports stay."""
        try:
            return to_out(AgentOut, store.revoke_agent(name, clock()))
        except NotFound:
            raise ApiError(404, "not_found", f"no agent named {name}") from None

    @routes.get(f"{API}/users", response_model=list[UserOut], responses=ERRORS)
    def list_users(_: Admin) -> list[UserOut]:
        return [to_out(UserOut, u) for u in store.list_users()]

    return routes
