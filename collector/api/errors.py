"""The API's error body, `{"error": code, "message": message}`, in every form it takes: the
exception a route raises (`ApiError`), the response the app's exception handlers answer, the bytes
the ASGI middleware sends before the app runs, the model the OpenAPI document describes, and the
code read back out of an answered body for the audit entry.
"""

from __future__ import annotations

import json
import logging
import re
from typing import Any, NoReturn

from fastapi import FastAPI, Request, Response
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel, Field
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.types import Send

from collector.store import StoreError, StoreUnavailable

logger = logging.getLogger("medsec.collector")

CHALLENGE = {"WWW-Authenticate": "Bearer"}


class ApiError(Exception):
    """An error answered as {"error": code, "message": message} with `status`."""

    def __init__(
        self, status: int, code: str, message: str, headers: dict[str, str] | None = None
    ) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.headers = headers


def unauthenticated(message: str = "a valid bearer token is required") -> NoReturn:
    raise ApiError(401, "unauthenticated", message, CHALLENGE)


class ErrorOut(BaseModel):
    error: str = Field(description="Stable error code, e.g. `bad_signature`.")
    message: str = Field(description="What went wrong, for a person.")


ERRORS: dict[int | str, dict[str, Any]] = {
    401: {"model": ErrorOut, "description": "No valid token"},
    403: {"model": ErrorOut, "description": "The token's role may not do this"},
    422: {"model": ErrorOut, "description": "Invalid parameters"},
    503: {"model": ErrorOut, "description": "The database is unreachable"},
}
"""The answers every authenticated route may give, for the OpenAPI document."""
ERRORS_OR_NOT_FOUND: dict[int | str, dict[str, Any]] = {
    **ERRORS,
    404: {"model": ErrorOut, "description": "not_found"},
}


def error_response(
    status: int, code: str, message: str, headers: dict[str, str] | None = None
) -> JSONResponse:
    return JSONResponse({"error": code, "message": message}, status_code=status, headers=headers)


async def send_error(send: Send, status: int, code: str, message: str) -> None:
    """Answer an error straight on the ASGI channel (middleware, before or instead of the app);
    the connection is closed because the request's body may not have been read."""
    body = json.dumps({"error": code, "message": message}).encode("utf-8")
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(body)).encode("ascii")),
                (b"connection", b"close"),
            ],
        }
    )
    await send({"type": "http.response.body", "body": body, "more_body": False})


def error_code(body: bytes) -> str | None:
    """The error code of an answered error body, or None when the body is not one of ours."""
    try:
        doc = json.loads(body)
    except (ValueError, UnicodeDecodeError):
        return None
    code = doc.get("error") if isinstance(doc, dict) else None
    return code if isinstance(code, str) and re.fullmatch(r"[a-z_]{1,64}", code) else None


def install_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(ApiError)
    async def on_api_error(request: Request, exc: ApiError) -> Response:
        return error_response(exc.status, exc.code, exc.message, exc.headers)

    @app.exception_handler(RequestValidationError)
    async def on_validation(request: Request, exc: RequestValidationError) -> Response:
        first = exc.errors()[0] if exc.errors() else {}
        where = ".".join(str(p) for p in first.get("loc", ()))
        what = str(first.get("msg", "invalid"))
        # Never echo the input: it may be a token.
        return error_response(422, "invalid_request", f"{where}: {what}" if where else what)

    @app.exception_handler(StarletteHTTPException)
    async def on_http(request: Request, exc: StarletteHTTPException) -> Response:
        codes = {400: "invalid_request", 404: "not_found", 405: "method_not_allowed"}
        code = codes.get(exc.status_code, "http_error")
        message = "no such resource" if exc.status_code == 404 else str(exc.detail)
        return error_response(exc.status_code, code, message, dict(exc.headers or {}) or None)

    @app.exception_handler(StoreUnavailable)
    async def on_unavailable(request: Request, exc: StoreUnavailable) -> Response:
        logger.error("%s", exc)
        return error_response(503, "database_unavailable", "the database is unreachable")

    @app.exception_handler(StoreError)
    async def on_store_error(request: Request, exc: StoreError) -> Response:
        from collector.api.middleware import one_line  # the middleware imports this module

        # The path as asked, escaped: a %1b or U+2028 in it must not break the log line.
        asked = one_line(f"{request.method} {request.scope['path']}")
        logger.error("store error on %s: %s", asked, one_line(str(exc)))
        return error_response(500, "internal_error", "internal error; see the server log")
