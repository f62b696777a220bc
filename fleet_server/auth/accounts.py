"""Dashboard accounts, sessions, roles and the failed-login limiter.

Accounts live in :class:`fleet_server.store.models.User`; passwords are argon2id hashes
(argon2-cffi's ``PasswordHasher`` defaults, re-hashed on login when those defaults change).

Sessions use NiceGUI's ``app.storage.user``: server-side storage keyed by a signed, ``httponly``
session cookie (Starlette ``SessionMiddleware``, signed with the secret from :func:`session_secret`).
A logged-in session holds only ``{"username": ..., "auth_ms": ...}``; the role, the ``disabled``
flag and password changes are re-read from the database on every :func:`current_user` call, so
disabling a user or changing a password ends their sessions at their next request or page check.

Failed logins are limited by :class:`fleet_server.auth.ratelimit.LoginRateLimiter` (state in the
database, :mod:`fleet_server.auth.lockout`).

Two roles: ``"admin"`` may change things, ``"viewer"`` is read-only. Pages use :func:`require_admin`
to render admin-only content, event handlers use :func:`admin_only` (or :func:`is_admin`).

The login page, logout, and the gate in front of every route are in
:mod:`fleet_server.auth.gate`.
"""

from __future__ import annotations

import functools
import inspect
import logging
import os
import re
import secrets
import threading
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar
from urllib.parse import urlsplit

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError

from fleet_server.store.models import User
from shared.clock import now_ms
from shared.private_files import make_private, open_private

log = logging.getLogger("clawfleet.auth")

ROLES = ("admin", "viewer")
MIN_PASSWORD_LENGTH = 12
USERNAME_RE = re.compile(r"^[a-z0-9][a-z0-9._-]{0,63}$")
SESSION_MAX_AGE_S = 14 * 24 * 3600
"""Absolute session lifetime, seconds: both the cookie's Max-Age and the server-side check."""
SESSION_USER = "username"
SESSION_AUTH_MS = "auth_ms"

_hasher = PasswordHasher()  # argon2id, RFC 9106 low-memory profile (64 MiB, t=3, p=4)
_verify_slots = threading.BoundedSemaphore(4)  # each verification takes 64 MiB: bound concurrent ones
_dummy_hash: str | None = None


class AuthError(ValueError):
    """A bad username, password or role, an unknown user, or a duplicate one (message says which)."""


# --- passwords and accounts ---------------------------------------------------------------------


def hash_password(password: str) -> str:
    """argon2id PHC string (``$argon2id$v=19$m=…``) of ``password``, with a fresh random salt."""
    return _hasher.hash(password)


def verify_password(password_hash: str, password: str) -> bool:
    """True when ``password`` matches ``password_hash``; False on mismatch or a malformed hash.

    Slow on purpose (tens of ms, 64 MiB); at most four run at once, the others wait.
    """
    with _verify_slots:
        try:
            return _hasher.verify(password_hash, password)
        except (VerificationError, InvalidHashError):
            return False


def generate_password() -> str:
    """A random 24-character URL-safe password (144 bits)."""
    return secrets.token_urlsafe(18)


def normalize_username(username: str) -> str:
    """``username`` stripped and lower-cased.

    Raises:
        AuthError: unless it is 1–64 of ``a-z 0-9 . _ -``, starting with a letter or digit.
    """
    name = (username or "").strip().lower()
    if not USERNAME_RE.match(name):
        raise AuthError("usernames are 1-64 characters of a-z, 0-9, '.', '_', '-', starting with a letter or digit")
    return name


def check_password_policy(password: str) -> None:
    """Raises :class:`AuthError` when ``password`` is shorter than :data:`MIN_PASSWORD_LENGTH`."""
    if len(password or "") < MIN_PASSWORD_LENGTH:
        raise AuthError(f"passwords need at least {MIN_PASSWORD_LENGTH} characters")


def get_user(username: str) -> User:
    """The user called ``username`` (normalized). Raises :class:`AuthError` if there is none."""
    user = User.get_or_none(User.username == normalize_username(username))
    if user is None:
        raise AuthError(f"no user {username!r}")
    return user


def create_user(username: str, password: str, role: str = "viewer") -> User:
    """Create an account. Returns the new :class:`User`.

    Raises:
        AuthError: bad username, short password, unknown role, or the username is taken.
    """
    name = normalize_username(username)
    check_password_policy(password)
    if role not in ROLES:
        raise AuthError(f"role must be one of {', '.join(ROLES)}")
    if User.get_or_none(User.username == name) is not None:
        raise AuthError(f"user {name!r} exists already")
    t = now_ms()
    return User.create(username=name, password_hash=hash_password(password), role=role, created_ms=t,
                       password_changed_ms=t)


def set_password(username: str, password: str) -> User:
    """Replace a user's password; their existing sessions end. Raises :class:`AuthError`."""
    user = get_user(username)
    check_password_policy(password)
    user.password_hash = hash_password(password)
    user.password_changed_ms = now_ms()
    user.save()
    return user


def set_disabled(username: str, disabled: bool) -> User:
    """Disable (no login, sessions end) or re-enable a user. Raises :class:`AuthError` if unknown."""
    user = get_user(username)
    user.disabled = disabled
    user.save()
    return user


def list_users() -> list[User]:
    """All users, by username."""
    return list(User.select().order_by(User.username))


def ensure_first_admin() -> str | None:
    """On first run (no user at all) create ``admin`` with a random password and return that password.

    Returns ``None`` when any user exists. The caller shows the password once; it is not stored.
    """
    if User.select().exists():
        return None
    password = generate_password()
    create_user("admin", password, role="admin")
    return password


def check_credentials(username: str, password: str) -> User | None:
    """The enabled user whose password matches, else ``None``. Updates ``last_login_ms``.

    Takes about as long for an unknown or disabled user as for a wrong password (no user
    enumeration by timing). Re-hashes the password when the hasher's parameters have changed.
    Blocking (tens of ms): call it from a worker thread in async code.
    """
    global _dummy_hash
    try:
        name = normalize_username(username)
    except AuthError:
        name = ""
    user = User.get_or_none(User.username == name) if name else None
    if user is None or user.disabled:
        if _dummy_hash is None:
            _dummy_hash = hash_password(secrets.token_urlsafe(16))
        verify_password(_dummy_hash, password)
        return None
    if not verify_password(user.password_hash, password):
        return None
    fields: list[Any] = [User.last_login_ms]
    if _hasher.check_needs_rehash(user.password_hash):
        user.password_hash = hash_password(password)
        fields.append(User.password_hash)
    user.last_login_ms = now_ms()
    user.save(only=fields)
    return user


@dataclass(frozen=True)
class UserSettings:
    """A user's dashboard settings: ``time_zone`` (IANA name; None: the browser's) and ``dark_mode``."""

    time_zone: str | None = None
    dark_mode: bool = False


def user_settings(username: str) -> UserSettings:
    """The settings of ``username`` (defaults for an unknown user)."""
    row = User.select(User.time_zone, User.dark_mode).where(User.username == username).first()
    return UserSettings() if row is None else UserSettings(row.time_zone or None, bool(row.dark_mode))


def save_user_settings(username: str, **changes: object) -> None:
    """Store some of a user's :class:`UserSettings` fields (``time_zone=None`` goes back to the
    browser's zone). Raises AuthError for an unknown field."""
    unknown = set(changes) - {"time_zone", "dark_mode"}
    if unknown:
        raise AuthError(f"unknown user setting(s): {', '.join(sorted(unknown))}")
    User.update(**changes).where(User.username == username).execute()


# --- sessions and roles -------------------------------------------------------------------------


@dataclass(frozen=True)
class SessionUser:
    """The logged-in user of the current request or page: ``username`` and ``role``."""

    username: str
    role: str

    @property
    def is_admin(self) -> bool:
        """True for the ``"admin"`` role."""
        return self.role == "admin"


def session_user_from(data: dict[str, Any], now: int | None = None) -> SessionUser | None:
    """Validate a session's stored data against the database (see :func:`current_user`)."""
    username, auth_ms = data.get(SESSION_USER), data.get(SESSION_AUTH_MS)
    if not isinstance(username, str) or not isinstance(auth_ms, int):
        return None
    if (now if now is not None else now_ms()) - auth_ms > SESSION_MAX_AGE_S * 1000:
        return None
    user = User.get_or_none(User.username == username)
    if user is None or user.disabled or (user.password_changed_ms or 0) > auth_ms:
        return None
    return SessionUser(user.username, user.role)


def current_user() -> SessionUser | None:
    """The logged-in user of the current NiceGUI page, event handler or HTTP route, or ``None``.

    ``None`` when not logged in, outside a request/UI context, when the session is older than
    :data:`SESSION_MAX_AGE_S`, or when the user has since been deleted, disabled or had their
    password changed. Reads the ``User`` row on each call (role changes apply at once).
    """
    from nicegui import app

    try:
        data = app.storage.user
    except (RuntimeError, AssertionError):  # no request context, or storage not (yet) set up
        return None
    return session_user_from(dict(data))


def is_admin() -> bool:
    """True when the current user is a logged-in admin."""
    user = current_user()
    return user is not None and user.is_admin


def require_admin() -> SessionUser | None:
    """For page builders: the current admin, or ``None`` after rendering an "admins only" notice.

    Use at the top of an admin page or section, and render nothing else when it returns ``None``::

        if not require_admin():
            return

    The middleware already ensures someone is logged in; this checks the role. Event handlers of
    admin actions must check again (:func:`admin_only`), since a page can outlive a session.
    """
    from nicegui import ui

    user = current_user()
    if user is not None and user.is_admin:
        return user
    with ui.card().classes("m-4"):
        ui.label("admins only").classes("text-lg font-medium")
        ui.label("This page is for admin accounts. Ask an admin if you need access.").classes("text-gray-600")
    return None


F = TypeVar("F", bound=Callable[..., Any])


def admin_only(handler: F) -> F:
    """Decorator for event handlers of admin actions (sync or async).

    When the current user is not a logged-in admin (any more), shows an "admins only" notification
    and does not call ``handler`` (returns ``None``). NiceGUI still sees the handler's own signature.
    """

    @functools.wraps(handler)
    async def wrapper(*args: Any, **kwargs: Any) -> Any:
        from nicegui import ui

        if not is_admin():
            log.warning("blocked admin action %s by %s", getattr(handler, "__name__", handler), current_user())
            ui.notify("admins only", type="negative")
            return None
        result = handler(*args, **kwargs)
        if inspect.isawaitable(result):
            result = await result
        return result

    return wrapper  # type: ignore[return-value]


def safe_redirect_target(target: str | None, default: str = "/") -> str:
    """``target`` if it is a local absolute path (``/…``, no scheme, host or backslash), else ``default``.

    Guards the ``redirect_to`` of the login page against open redirects (``//evil``, ``https://…``,
    ``/\\evil``) and against looping back to ``/login`` or ``/logout``.
    """
    if not target or not target.startswith("/") or target.startswith("//") or "\\" in target:
        return default
    if any(ord(ch) < 0x20 or ord(ch) == 0x7F for ch in target):
        return default
    parts = urlsplit(target)
    if parts.scheme or parts.netloc or parts.path in ("/login", "/login/finish", "/logout"):
        return default
    return target


# --- session cookie -----------------------------------------------------------------------------


def session_secret(data_dir: Path) -> str:
    """The secret that signs session cookies: 32 random bytes (hex) kept in ``<data_dir>/session-secret``.

    Created on first use with mode 0600 and reused afterwards, so sessions survive restarts.
    Deleting the file logs everyone out at the next start.

    Raises:
        OSError: when the file cannot be read or created.
    """
    path = data_dir / "session-secret"
    if not path.exists():
        data_dir.mkdir(parents=True, exist_ok=True)
        try:
            with open_private(path, exclusive=True) as f:
                f.write(secrets.token_hex(32) + "\n")
        except FileExistsError:  # another process won the race
            pass
    if make_private(path):
        log.warning("%s was readable by others; set mode 0600", path)
    secret = path.read_text(encoding="ascii").strip()
    if len(secret) < 32:
        raise OSError(f"{path} holds no usable secret; delete it to make a new one")
    return secret


def configure_session_storage(data_dir: Path) -> None:
    """Keep NiceGUI's server-side session files in ``<data_dir>/sessions`` (directory 0700, files 0600).

    NiceGUI's default is ``./.nicegui`` in the working directory. NiceGUI writes the files itself,
    with the process umask, so this sets the umask to 0077: everything the server creates from
    then on (session files, database, broker files) is readable by its owner only. Existing
    session files are tightened to 0600. Call before ``ui.run``.
    """
    from nicegui.storage import Storage

    if os.name == "posix":
        os.umask(0o077)
    path = data_dir / "sessions"
    path.mkdir(parents=True, exist_ok=True, mode=0o700)
    if os.name == "posix":
        path.chmod(0o700)
        make_private(*path.glob("storage-*.json*"))
    Storage.path = path


def session_cookie_options(https_only: bool = False) -> dict[str, Any]:
    """Keyword args for Starlette's ``SessionMiddleware`` (``ui.run(session_middleware_kwargs=...)``).

    The cookie is always ``httponly`` and ``SameSite=Lax``. ``https_only=True`` adds ``Secure`` so
    browsers send it over HTTPS only: turn it on whenever the dashboard is reached over HTTPS
    (directly or through a TLS proxy); over plain HTTP it would make login impossible.
    """
    return {"session_cookie": "clawfleet_session", "max_age": SESSION_MAX_AGE_S, "same_site": "lax",
            "https_only": https_only}
