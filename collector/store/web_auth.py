"""The dashboard's side of users: their passwords (Argon2id, `argon2-cffi`), their logins kept on
the server (a row per signed-in browser, keyed by the SHA-256 of the cookie's random value, never
the value itself), their failed logins and lockout, and the language they chose.

A login is refused alike for an unknown user and a wrong password: both cost one Argon2 check
(an unknown name is checked against a decoy hash) and both are told "unknown_user" or
"wrong_password" only in the typed answer the caller audits, never to the person at the form.
Failures count against known users only; at `max_failures` the account is locked for `lockout`,
and a locked account is refused whatever password comes, without the password being checked.
"""

from __future__ import annotations

import functools
import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Literal

import sqlalchemy as sa
from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError

from collector.models import Role
from collector.store.engine import Database
from collector.store.errors import NotFound, StoreError
from collector.store.identity import hash_token
from collector.store.rows import Row
from collector.store.schema import users, web_logins
from collector.store.values import storable, utc

MIN_PASSWORD = 12
MAX_PASSWORD = 1024
"""Argon2 takes any length; a bound keeps a pasted file from being hashed."""
LOCALES = ("zh", "en")
TOUCH_EVERY = timedelta(minutes=1)
"""A login's last use is written at most this often: idle expiry is exact to this much."""
MAX_COOKIE = 256
"""Longer cookie values are not looked up (issued ones have 43 characters)."""

_HASHER = PasswordHasher()
"""Argon2id with argon2-cffi's defaults (RFC 9106's second recommendation: 3 passes, 64 MiB,
4 lanes); hashes made with weaker parameters are rehashed at the next successful login."""

RefusalReason = Literal["unknown_user", "wrong_password", "no_password", "locked"]


class PasswordRefused(StoreError):
    """A password the rules refuse; the message is one line naming the rule."""


@dataclass(frozen=True)
class WebAccount:
    id: int
    name: str
    role: Role
    locale: Literal["zh", "en"]


@dataclass(frozen=True)
class LoginRefused:
    """Why `verify_login` refused, for the audit log; the person at the form is told only
    "wrong user name or password", or that the account is locked until `locked_until`."""

    reason: RefusalReason
    locked_until: datetime | None = None
    """Set while the account is locked, including when this very failure locked it."""
    locked_now: bool = False
    """This failure reached `max_failures` and locked the account."""
    failures: int = 0
    """Failures counted since the last success or lockout, this one included (known users)."""


@dataclass(frozen=True)
class SignedIn:
    """A live dashboard login: whose it is, its CSRF token, and when it ends at the latest."""

    account: WebAccount
    csrf: str
    expires_at: datetime


_ACCOUNT = (
    users.c.id,
    users.c.name,
    users.c.role,
    users.c.locale,
    users.c.password_hash,
    users.c.failed_logins,
    users.c.locked_until,
)


def _account(row: Row) -> WebAccount:
    locale: Literal["zh", "en"] = "en" if row.locale == "en" else "zh"
    return WebAccount(id=row.id, name=row.name, role=Role(row.role), locale=locale)


def check_password(name: str, password: str) -> None:
    """`PasswordRefused` unless `password` may be user `name`'s."""
    if len(password) < MIN_PASSWORD:
        raise PasswordRefused(f"the password must have at least {MIN_PASSWORD} characters")
    if len(password) > MAX_PASSWORD:
        raise PasswordRefused(f"the password must have at most {MAX_PASSWORD} characters")
    if name.casefold() in password.casefold():
        raise PasswordRefused("the password must not contain the user name")


@functools.cache
def _decoy() -> str:
    """A hash no password matches, checked for unknown users so they cost what known ones do."""
    return _HASHER.hash(secrets.token_urlsafe(32))


def _matches(stored: str | None, password: str) -> bool:
    try:
        return _HASHER.verify(stored or _decoy(), password) and stored is not None
    except (VerificationError, InvalidHashError):  # mismatch, or a hash argon2 cannot read
        return False


class WebAuth(Database):
    """Dashboard passwords, logins, lockout and language, each method one transaction (a login
    check reads, hashes outside any transaction, then writes what it found)."""

    # -- passwords ---------------------------------------------------------------------------

    def set_password(self, name: str, password: str) -> int:
        """Set user `name`'s dashboard password (`PasswordRefused` names a broken rule), clear
        their failures and lockout, and end their dashboard logins: how many were ended."""
        check_password(name, password)
        if not storable(name):
            raise NotFound(f"no user named {name!r}")
        hashed = _HASHER.hash(password)
        with self._tx(write=True) as conn:
            found = conn.execute(
                sa.update(users)
                .where(users.c.name == name)
                .values(password_hash=hashed, failed_logins=0, locked_until=None)
                .returning(users.c.id)
            ).first()
            if found is None:
                raise NotFound(f"no user named {name!r}")
            ended = conn.execute(sa.delete(web_logins).where(web_logins.c.user_id == found.id))
        return int(ended.rowcount)

    def verify_login(
        self,
        name: str,
        password: str,
        now: datetime,
        *,
        max_failures: int = 5,
        lockout: timedelta = timedelta(minutes=15),
    ) -> WebAccount | LoginRefused:
        """The account `name` signs in to with `password` now, or why not."""
        now = utc(now)
        row = None
        if storable(name):
            with self._tx(write=False) as conn:
                row = conn.execute(sa.select(*_ACCOUNT).where(users.c.name == name)).first()
        if row is None:
            _matches(None, password)
            return LoginRefused("unknown_user")
        if row.locked_until is not None and now < row.locked_until:
            return LoginRefused("locked", row.locked_until)
        if not _matches(row.password_hash, password):
            reason: RefusalReason = "no_password" if row.password_hash is None else "wrong_password"
            return self._failed(row.id, reason, now, max_failures, lockout)
        return self._succeeded(row, password, now)

    def _succeeded(self, row: Row, password: str, now: datetime) -> WebAccount | LoginRefused:
        """The right password for `row` (as read before the check): clear the failures, unless
        the account was removed, given another password or locked meanwhile."""
        rehashed = _HASHER.hash(password) if _HASHER.check_needs_rehash(row.password_hash) else None
        with self._tx(write=True) as conn:
            current = conn.execute(
                sa.select(*_ACCOUNT).where(users.c.id == row.id).with_for_update()
            ).first()
            if current is None:
                return LoginRefused("unknown_user")
            if current.password_hash != row.password_hash:
                return LoginRefused("wrong_password")
            if current.locked_until is not None and now < current.locked_until:
                return LoginRefused("locked", current.locked_until)
            values: dict[str, object] = {"failed_logins": 0, "locked_until": None}
            if rehashed is not None:
                values["password_hash"] = rehashed
            conn.execute(sa.update(users).where(users.c.id == row.id).values(**values))
        return _account(current)

    def _failed(
        self,
        user_id: int,
        reason: RefusalReason,
        now: datetime,
        max_failures: int,
        lockout: timedelta,
    ) -> LoginRefused:
        """Count one failure against the user; at `max_failures`, lock the account."""
        with self._tx(write=True) as conn:
            row = conn.execute(
                sa.select(users.c.failed_logins, users.c.locked_until)
                .where(users.c.id == user_id)
                .with_for_update()
            ).first()
            if row is None:
                return LoginRefused("unknown_user")
            if row.locked_until is not None and now < row.locked_until:  # locked meanwhile
                return LoginRefused("locked", row.locked_until)
            failures = row.failed_logins + 1
            if failures >= max_failures:
                until = now + lockout
                conn.execute(
                    sa.update(users)
                    .where(users.c.id == user_id)
                    .values(failed_logins=0, locked_until=until)
                )
                return LoginRefused(reason, until, locked_now=True, failures=failures)
            conn.execute(
                sa.update(users).where(users.c.id == user_id).values(failed_logins=failures)
            )
        return LoginRefused(reason, failures=failures)

    # -- logins ------------------------------------------------------------------------------

    def create_login(self, user_id: int, now: datetime, lifetime: timedelta) -> tuple[str, str]:
        """A new login for the user, ending `lifetime` from now at the latest: the cookie's
        value (shown once; only its hash is kept) and the login's CSRF token. Logins past
        their end are deleted on the way."""
        now = utc(now)
        value = secrets.token_urlsafe(32)
        csrf = secrets.token_urlsafe(32)
        try:
            with self._tx(write=True) as conn:
                conn.execute(sa.delete(web_logins).where(web_logins.c.expires_at <= now))
                conn.execute(
                    sa.insert(web_logins).values(
                        id=hash_token(value),
                        user_id=user_id,
                        csrf=csrf,
                        created_at=now,
                        last_seen_at=now,
                        expires_at=now + lifetime,
                    )
                )
        except sa.exc.IntegrityError:  # the user was removed meanwhile
            raise NotFound("the user no longer exists") from None
        return value, csrf

    def login_by_cookie(self, value: str, now: datetime, idle: timedelta) -> SignedIn | None:
        """The live login whose cookie is `value`, or None. A login unused for `idle`, or past
        its end, is deleted and is None; a used one is marked used (at most once a minute)."""
        if not value or len(value) > MAX_COOKIE or not storable(value):
            return None
        now = utc(now)
        key = hash_token(value)
        with self._tx(write=False) as conn:
            row = conn.execute(
                sa.select(
                    *_ACCOUNT,
                    web_logins.c.csrf,
                    web_logins.c.last_seen_at,
                    web_logins.c.expires_at,
                )
                .select_from(web_logins.join(users, users.c.id == web_logins.c.user_id))
                .where(web_logins.c.id == key)
            ).first()
        if row is None:
            return None
        if now >= row.expires_at or now - row.last_seen_at >= idle:
            with self._tx(write=True) as conn:
                conn.execute(sa.delete(web_logins).where(web_logins.c.id == key))
            return None
        if now - row.last_seen_at >= TOUCH_EVERY:
            with self._tx(write=True) as conn:
                conn.execute(
                    sa.update(web_logins).where(web_logins.c.id == key).values(last_seen_at=now)
                )
        return SignedIn(_account(row), row.csrf, row.expires_at)

    def end_login(self, value: str) -> bool:
        """End the login whose cookie is `value`; whether there was one."""
        if not value or len(value) > MAX_COOKIE or not storable(value):
            return False
        with self._tx(write=True) as conn:
            gone = conn.execute(sa.delete(web_logins).where(web_logins.c.id == hash_token(value)))
        return bool(gone.rowcount)

    def end_logins_of(self, name: str) -> int:
        """End every dashboard login of user `name`; how many there were."""
        if not storable(name):
            return 0
        with self._tx(write=True) as conn:
            gone = conn.execute(
                sa.delete(web_logins).where(
                    web_logins.c.user_id.in_(sa.select(users.c.id).where(users.c.name == name))
                )
            )
        return int(gone.rowcount)

    # -- language ----------------------------------------------------------------------------

    def set_locale(self, name: str, locale: str) -> None:
        """Remember the dashboard language user `name` chose ('zh' or 'en')."""
        if locale not in LOCALES:
            raise ValueError(f"the language must be one of {', '.join(LOCALES)}")
        with self._tx(write=True) as conn:
            if (
                not storable(name)
                or conn.execute(
                    sa.update(users).where(users.c.name == name).values(locale=locale)
                ).rowcount
                == 0
            ):
                raise NotFound(f"no user named {name!r}")
