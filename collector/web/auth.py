"""Who is signed in to the dashboard, and the routes that sign people in and out.

A login is kept on the server (`Store.create_login`); the browser holds only its random value in
the cookie `medsec_login` (HttpOnly, Secure, SameSite=Strict, Path=/, ending with the login). The
dashboard accepts that cookie and nothing else: an API bearer token signs no one in here, and the
API (`/api/v1`, bearer tokens only) never reads the cookie. Pages get their user from
`page_user(ctx, role)` (GET) or `csrf_checked(ctx, role)` (POST: the form's `csrf` field must be
the login's token); without a login a GET is sent to `/login?next=…` (303) and a POST is refused
(401); a role too low is the 403 page. Each dashboard request is audited under its user by the
API's audit middleware (`set_principal`); sign-ins, sign-outs, failures and lockouts are also
written as entries of their own, naming the user name tried, never the password.

The sign-in form itself has no login to carry a token, so it is protected by a double submit: the
form page sets a random token in the cookie `__Host-medsec_prelogin` (Secure, Path=/, no Domain:
the `__Host-` prefix keeps a sibling host from planting one; SameSite=Strict: another site's form
never sends it) and repeats it in the form; a POST whose field and cookie differ is refused (403)
before the password is looked at. This works behind proxies that strip `Origin` or `Referer`,
which a header check would not.

A failed sign-in is answered after `dashboard.failure_delay_ms` (an `asyncio.sleep`: the server
keeps serving others); at `max_failures` failures in a row the account is locked for
`lockout_minutes`, and a locked account is refused, even with the right password, with the time
it is locked until. Password checks (Argon2id, 64 MiB each) run in the thread pool, at most one
per core at once, so a burst of sign-ins cannot exhaust memory.
"""

# No `from __future__ import annotations`: FastAPI reads the dependencies' annotations at runtime.
import asyncio
import hmac
import os
import secrets
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta
from urllib.parse import parse_qsl, quote, urlsplit

from fastapi import APIRouter, Request, Response
from fastapi.responses import RedirectResponse
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException as StarletteHTTPException

from collector.api.middleware import one_line, set_principal
from collector.models import Principal, Role
from collector.store.web_auth import LoginRefused, SignedIn, WebAccount
from collector.web.context import Locale, WebContext, WebUser

COOKIE = "medsec_login"
PRELOGIN_COOKIE = "__Host-medsec_prelogin"
MAX_FORM_FIELDS = 200
MAX_NAME = 128
_STATE_USER = "medsec_web_user"
_STATE_FORM = "medsec_web_form"
_FORM_MEDIA = "application/x-www-form-urlencoded"

Dependency = Callable[[Request], Awaitable[WebUser]]


class PageRefused(StarletteHTTPException):
    """A dashboard request answered with a page instead of its route: a redirect to the sign-in
    form (`location`), or an error page (401, 403, 400, 415) for `user` (None: signed out).
    `page_refused` renders it; without that handler the app's own still answers the status."""

    def __init__(
        self,
        status: int,
        detail_zh: str,
        detail_en: str,
        *,
        user: WebUser | None = None,
        location: str | None = None,
        clear_login: bool = False,
    ) -> None:
        headers = {"Location": location} if location else None
        super().__init__(status, detail_en, headers)
        self.detail_zh = detail_zh
        self.detail_en = detail_en
        self.user = user
        self.location = location
        self.clear_login = clear_login


async def page_refused(request: Request, exc: Exception) -> Response:
    """The app's exception handler for `PageRefused`."""
    if not isinstance(exc, PageRefused):
        raise exc
    response: Response
    if exc.location is not None:
        response = RedirectResponse(exc.location, status_code=exc.status_code)
    else:
        from collector.web.render import error_page

        response = error_page(request, exc.user, exc.status_code, exc.detail_zh, exc.detail_en)
    if exc.clear_login:
        clear_login_cookie(response)
    return response


# --------------------------------------------------------------------------- dependencies


def page_user(ctx: WebContext, role: Role) -> Dependency:
    """The dependency of a page (GET): its `WebUser`, who has at least `role`."""

    async def dependency(request: Request) -> WebUser:
        user = await _required(ctx, request)
        _allowed(user, role)
        return user

    return dependency


def csrf_checked(ctx: WebContext, role: Role) -> Dependency:
    """The dependency of a form's POST: its `WebUser`, whose form carried the login's CSRF token
    (403 otherwise, before the role is looked at) and who has at least `role`. The form's
    fields are then `await form_fields(request)`."""

    async def dependency(request: Request) -> WebUser:
        user = await _required(ctx, request)
        fields = await form_fields(request)
        if not _same(fields.get("csrf", ""), user.csrf):
            raise PageRefused(
                403,
                "表单已失效（缺少或错误的 CSRF 令牌）。请返回并刷新页面后重试。",
                "The form is no longer valid (missing or wrong CSRF token). Go back, reload "
                "the page and try again.",
                user=user,
            )
        _allowed(user, role)
        return user

    return dependency


async def signed_in(ctx: WebContext, request: Request) -> WebUser | None:
    """The request's signed-in user, or None; remembered for its audit entry. Only the login
    cookie counts: an `Authorization` header is not looked at."""
    state = request.state
    if hasattr(state, _STATE_USER):
        known: WebUser | None = getattr(state, _STATE_USER)
        return known
    value = request.cookies.get(COOKIE)
    login: SignedIn | None = None
    if value:
        idle = timedelta(minutes=ctx.settings.dashboard.idle_minutes)
        login = await run_in_threadpool(ctx.store.login_by_cookie, value, ctx.clock(), idle)
    user = None
    if login is not None:
        account = login.account
        user = WebUser(account.name, account.role, account.locale, login.csrf)
        set_principal(request.scope, Principal(kind="user", name=user.name, role=user.role))
    setattr(state, _STATE_USER, user)
    return user


async def _required(ctx: WebContext, request: Request) -> WebUser:
    user = await signed_in(ctx, request)
    if user is not None:
        return user
    stale = COOKIE in request.cookies
    if request.method in ("GET", "HEAD"):
        target = request.url.path + (f"?{request.url.query}" if request.url.query else "")
        raise PageRefused(
            303,
            "请先登录。",
            "Please sign in.",
            location="/login?next=" + quote(target, safe="/"),
            clear_login=stale,
        )
    raise PageRefused(
        401,
        "您尚未登录，或登录已过期。请重新登录后再提交。",
        "You are not signed in, or your sign-in expired. Sign in again, then resubmit.",
        clear_login=stale,
    )


def _allowed(user: WebUser, role: Role) -> None:
    if not user.can(role):
        raise PageRefused(
            403,
            f"此操作需要{_ROLE_ZH[role]}角色。",
            f"This needs the {role.value} role.",
            user=user,
        )


_ROLE_ZH = {Role.AUDITOR: "审计员", Role.OPERATOR: "操作员", Role.ADMIN: "管理员"}


def _same(given: str, expected: str) -> bool:
    return bool(expected) and hmac.compare_digest(
        given.encode("utf-8", "surrogatepass"), expected.encode("utf-8")
    )


async def form_fields(request: Request) -> dict[str, str]:
    """The POSTed form's fields (`application/x-www-form-urlencoded`; the first value of a
    repeated name), read once per request. A body that is not such a form is a 415 page, one
    that does not decode (not UTF-8, too many fields) a 400 page."""
    if hasattr(request.state, _STATE_FORM):
        known: dict[str, str] = getattr(request.state, _STATE_FORM)
        return known
    user: WebUser | None = getattr(request.state, _STATE_USER, None)
    media = request.headers.get("content-type", "").split(";", 1)[0].strip().lower()
    if not media and not await request.body():  # a POST with no body: a form with no fields
        media = _FORM_MEDIA
    if media != _FORM_MEDIA:
        raise PageRefused(
            415,
            "表单格式不受支持。",
            f"The form must be sent as {_FORM_MEDIA}.",
            user=user,
        )
    body = await request.body()
    try:
        pairs = parse_qsl(
            body.decode("utf-8"),
            keep_blank_values=True,
            max_num_fields=MAX_FORM_FIELDS,
            encoding="utf-8",
            errors="strict",
        )
    except ValueError:  # UnicodeDecodeError included
        raise PageRefused(
            400, "表单内容无法读取。", "The form's content cannot be read.", user=user
        ) from None
    fields: dict[str, str] = {}
    for name, value in pairs:
        fields.setdefault(name, value)
    setattr(request.state, _STATE_FORM, fields)
    return fields


# --------------------------------------------------------------------------- cookies


def set_login_cookie(response: Response, value: str, max_age: int) -> None:
    response.set_cookie(
        COOKIE, value, max_age=max_age, path="/", secure=True, httponly=True, samesite="strict"
    )


def clear_login_cookie(response: Response) -> None:
    response.delete_cookie(COOKIE, path="/", secure=True, httponly=True, samesite="strict")


def _prelogin_token(request: Request) -> str:
    """The browser's pre-login token when it holds a well-formed one, else a new one."""
    held = request.cookies.get(PRELOGIN_COOKIE, "")
    if 20 <= len(held) <= 64 and held.replace("-", "").replace("_", "").isalnum():
        return held
    return secrets.token_urlsafe(32)


def _set_prelogin_cookie(response: Response, token: str) -> None:
    # No Max-Age: it lasts as long as the browser runs, so a form left open still submits.
    response.set_cookie(
        PRELOGIN_COOKIE, token, path="/", secure=True, httponly=True, samesite="strict"
    )


def safe_next(value: str | None) -> str:
    """Where to go after signing in or switching the language: a path on this collector, never
    another site (`//host`, `/\\host`, a scheme) and never the sign-in routes; else `/`."""
    if not value or len(value) > 2048 or not value.startswith("/") or value.startswith("//"):
        return "/"
    if "\\" in value or any(ord(c) < 0x20 or ord(c) == 0x7F for c in value):
        return "/"
    parts = urlsplit(value)
    if parts.scheme or parts.netloc or parts.path in ("/login", "/logout"):
        return "/"
    return value


# --------------------------------------------------------------------------- routes


def router(ctx: WebContext) -> APIRouter:
    """`/login` (GET the form, POST the sign-in), `/logout` and `/ui/locale` (POST, CSRF)."""
    sign_in = _SignIn(ctx)
    routes = APIRouter(include_in_schema=False)
    routes.add_api_route("/login", sign_in.form, methods=["GET"], name="web_login")
    routes.add_api_route("/login", sign_in.login, methods=["POST"], name="web_login_post")
    routes.add_api_route("/logout", sign_in.logout, methods=["POST"], name="web_logout")
    routes.add_api_route("/ui/locale", sign_in.locale, methods=["POST"], name="web_locale")
    return routes


_WRONG = ("用户名或密码错误。", "Wrong user name or password.")


class _SignIn:
    """The sign-in routes over one app's context."""

    def __init__(self, ctx: WebContext) -> None:
        self.ctx = ctx
        self.dashboard = ctx.settings.dashboard
        # Argon2 checks in flight at once (64 MiB each): one per core.
        self.checks = asyncio.Semaphore(max(1, os.cpu_count() or 1))
        self.any_user = csrf_checked(ctx, Role.AUDITOR)

    async def form(self, request: Request) -> Response:
        if await signed_in(self.ctx, request) is not None:
            return RedirectResponse(safe_next(request.query_params.get("next")), 303)
        return _login_page(request, 200, _prelogin_token(request))

    async def login(self, request: Request) -> Response:
        token = request.cookies.get(PRELOGIN_COOKIE, "")
        fields = await form_fields(request)
        name = fields.get("name", "")
        if not token or not _same(fields.get("csrf", ""), token):
            expired = (
                "登录表单已过期或不是从本站提交的，请重新输入。",
                "The sign-in form expired or was not sent from this site; please enter your "
                "user name and password again.",
            )
            return _login_page(
                request, 403, _prelogin_token(request), error=expired, name=name[:MAX_NAME]
            )
        password = fields.get("password", "")
        if not name or not password or len(name) > MAX_NAME:
            empty = ("请输入用户名和密码。", "Enter a user name and a password.")
            return _login_page(request, 400, token, error=empty, name=name[:MAX_NAME])
        async with self.checks:
            outcome = await run_in_threadpool(
                self.ctx.store.verify_login,
                name,
                password,
                self.ctx.clock(),
                max_failures=self.dashboard.max_failures,
                lockout=timedelta(minutes=self.dashboard.lockout_minutes),
            )
        if isinstance(outcome, LoginRefused):
            return await self._refused(request, token, name, outcome)
        return await self._signed_on(request, outcome)

    async def _signed_on(self, request: Request, account: WebAccount) -> Response:
        store = self.ctx.store
        lifetime = timedelta(minutes=self.dashboard.session_minutes)
        earlier = request.cookies.get(COOKIE)
        if earlier:  # a login this browser still held ends: one browser, one login
            await run_in_threadpool(store.end_login, earlier)
        value, _ = await run_in_threadpool(
            store.create_login, account.id, self.ctx.clock(), lifetime
        )
        set_principal(request.scope, Principal(kind="user", name=account.name, role=account.role))
        await self._audit(request, account.name, account.role.value, "dashboard login", "303")
        response = RedirectResponse(safe_next(request.query_params.get("next")), 303)
        set_login_cookie(response, value, int(lifetime.total_seconds()))
        response.delete_cookie(PRELOGIN_COOKIE, path="/", secure=True, httponly=True)
        return response

    async def _refused(
        self, request: Request, token: str, name: str, why: LoginRefused
    ) -> Response:
        until = why.locked_until
        if why.reason == "locked" and until is not None:
            outcome = f"423 locked until {_stamp(until)}"
        else:
            outcome = f"401 {why.reason}"
        await self._audit(request, name, "-", "dashboard login", outcome)
        if why.locked_now and until is not None:
            await self._audit(
                request,
                name,
                "-",
                "dashboard lockout",
                f"locked until {_stamp(until)} after {why.failures} failed logins",
            )
        await asyncio.sleep(self.dashboard.failure_delay_ms / 1000)
        if until is None:
            return _login_page(request, 401, token, error=_WRONG, name=name)
        shown = _shown(until)
        locked = (
            f"该账户因多次登录失败已被锁定，至 {shown} 前无法登录。",
            f"This account is locked after repeated failed sign-ins until {shown}.",
        )
        if why.locked_now:
            locked = (_WRONG[0] + locked[0], f"{_WRONG[1]} {locked[1]}")
        return _login_page(request, 423, token, error=locked, name=name)

    async def logout(self, request: Request) -> Response:
        user = await self.any_user(request)
        await run_in_threadpool(self.ctx.store.end_login, request.cookies.get(COOKIE, ""))
        await self._audit(request, user.name, user.role.value, "dashboard logout", "303")
        response = RedirectResponse("/login", 303)
        clear_login_cookie(response)
        return response

    async def locale(self, request: Request) -> Response:
        user = await self.any_user(request)
        fields = await form_fields(request)
        chosen = fields.get("locale", "")
        if chosen not in ("zh", "en"):
            raise PageRefused(
                400,
                "语言只能是 zh（中文）或 en（英文）。",
                "The language must be zh (Chinese) or en (English).",
                user=user,
            )
        await run_in_threadpool(self.ctx.store.set_locale, user.name, chosen)
        return RedirectResponse(safe_next(fields.get("next")), 303)

    async def _audit(
        self, request: Request, actor: str, role: str, action: str, outcome: str
    ) -> None:
        """An entry of its own for a sign-in event, committed before the answer goes out."""
        client = request.client
        source = client.host if client else "-"
        entry = self.ctx.store.submit_audit(
            one_line(actor, MAX_NAME) or "-", role, action, source, outcome, self.ctx.clock()
        )
        await asyncio.wrap_future(entry)


def _login_page(
    request: Request,
    status: int,
    token: str,
    *,
    error: tuple[str, str] | None = None,
    name: str = "",
) -> Response:
    """The sign-in form in the language asked by `?lang=`, with its pre-login token."""
    from collector.web.render import render

    response = render(
        request,
        None,
        "login.html",
        status=status,
        lang=_lang(request.query_params.get("lang")),
        csrf=token,
        name=name,
        error_zh=error[0] if error else None,
        error_en=error[1] if error else None,
    )
    _set_prelogin_cookie(response, token)
    return response


def _lang(value: str | None) -> Locale:
    return "en" if value == "en" else "zh"


def _stamp(moment: datetime) -> str:
    return moment.astimezone(UTC).isoformat(timespec="seconds").replace("+00:00", "Z")


def _shown(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S UTC")
