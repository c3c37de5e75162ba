"""Who is calling: the bearer token (`msu_…` a user, `msa_…` an agent) → a `Principal`, and the
role each route needs, as FastAPI dependencies. The caller is remembered for the request's audit
entry as soon as it is known, so a refused request is logged under its caller's name too.
"""

# No `from __future__ import annotations`: FastAPI reads the dependencies' annotations at runtime.
from collections.abc import Callable
from typing import Annotated

from fastapi import Depends, Request, Security
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from collector.api.errors import CHALLENGE, ApiError, unauthenticated
from collector.api.middleware import set_principal
from collector.api.schemas import MAX_TOKEN_LENGTH
from collector.models import Agent, Principal, Role
from collector.store import Store

_bearer = HTTPBearer(
    auto_error=False,
    description="`msu_…` user token (auditor, operator, admin) or `msa_…` agent token.",
)
Credentials = Annotated[HTTPAuthorizationCredentials | None, Security(_bearer)]


def bearer_token(credentials: HTTPAuthorizationCredentials | None) -> str | None:
    if credentials is None or credentials.scheme.lower() != "bearer":
        return None
    token = credentials.credentials
    return token if 0 < len(token) <= MAX_TOKEN_LENGTH else None


def agent_principal(agent: Agent) -> Principal:
    return Principal(kind="agent", name=agent.name, role=None, agent_id=agent.id)


class Auth:
    """Bearer token → principal, and the role each route needs (FastAPI dependencies)."""

    def __init__(self, store: Store) -> None:
        self.store = store
        self.auditor = Depends(self.require(Role.AUDITOR))
        self.operator = Depends(self.require(Role.OPERATOR))
        self.admin = Depends(self.require(Role.ADMIN))

    def authenticate(self, request: Request, credentials: Credentials) -> Principal:
        """The user or agent the bearer token belongs to; 401 unless there is one."""
        token = bearer_token(credentials)
        if token is None:
            unauthenticated()
        if token.startswith("msu_"):
            user = self.store.user_by_token(token)
            if user is not None:
                principal = Principal(kind="user", name=user.name, role=user.role)
                set_principal(request.scope, principal)
                return principal
        elif token.startswith("msa_"):
            agent = self.store.agent_by_token(token)
            if agent is not None:
                set_principal(request.scope, agent_principal(agent))
                if agent.revoked_at is not None:
                    raise ApiError(401, "agent_revoked", "this agent was revoked", CHALLENGE)
                return agent_principal(agent)
        unauthenticated()

    def require(self, role: Role) -> Callable[..., Principal]:
        def dependency(principal: Annotated[Principal, Depends(self.authenticate)]) -> Principal:
            if principal.role is None or not principal.role.allows(role):
                raise ApiError(403, "forbidden", f"this needs the {role.value} role")
            return principal

        return dependency
