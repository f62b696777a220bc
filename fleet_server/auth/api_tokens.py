"""Read-only API tokens for the REST API (``/api/v1/…``) and ``/metrics``.

A token is ``cft_`` + 43 URL-safe base64 characters (256 random bits), shown once when created;
only its SHA-256 (hex) is stored (:class:`fleet_server.store.models.ApiToken`). Clients send it as
``Authorization: Bearer cft_…``. Tokens may only read (GET); a revoked token is refused at its
next request, because every request looks the hash up in the database. Creating and revoking are
audited (``api_token.create``, ``api_token.revoke``); the token itself is never logged.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets

from fleet_server.auth.accounts import SessionUser
from fleet_server.store.models import ApiToken
from shared.clock import now_ms

PREFIX = "cft_"
ROLE = "api"
"""The role of a request authenticated by a token: read-only, like a viewer."""
LAST_USED_RESOLUTION_MS = 60_000


class TokenError(ValueError):
    """A bad token name, or no such token (message says which)."""


def _hash(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def create_token(name: str, created_by: str) -> tuple[ApiToken, str]:
    """Make a token called ``name``. Returns (the row, the token text — show it once, never store it).

    Raises:
        TokenError: empty or too long name (1-100 printable characters).
    """
    name = (name or "").strip()
    if not name or len(name) > 100 or not name.isprintable():
        raise TokenError("token names are 1-100 printable characters, e.g. 'grafana' or 'ci-report'")
    token = PREFIX + secrets.token_urlsafe(32)
    row = ApiToken.create(name=name, token_hash=_hash(token), hint=token[-4:], created_ms=now_ms(),
                          created_by=created_by[:100])
    return row, token


def list_tokens(include_revoked: bool = True) -> list[ApiToken]:
    """Tokens, newest first."""
    q = ApiToken.select().order_by(ApiToken.created_ms.desc(), ApiToken.id.desc())
    if not include_revoked:
        q = q.where(ApiToken.revoked_ms.is_null())
    return list(q)


def revoke_token(token_id: int) -> ApiToken:
    """Revoke token ``token_id`` (refused from its next request on). Raises TokenError when unknown."""
    row = ApiToken.get_or_none(ApiToken.id == token_id)
    if row is None:
        raise TokenError(f"no API token {token_id}")
    if row.revoked_ms is None:
        row.revoked_ms = now_ms()
        row.save(only=[ApiToken.revoked_ms])
    return row


def user_for_token(token: str) -> SessionUser | None:
    """The read-only identity of a valid, unrevoked token (``token:<name>``, role ``api``), else None.

    Updates ``last_used_ms`` at most once a minute.
    """
    if not token.startswith(PREFIX) or len(token) > 100:
        return None
    digest = _hash(token)
    row = ApiToken.get_or_none(ApiToken.token_hash == digest)
    if row is None or row.revoked_ms is not None or not hmac.compare_digest(row.token_hash, digest):
        return None
    now = now_ms()
    if row.last_used_ms is None or now - row.last_used_ms > LAST_USED_RESOLUTION_MS:
        ApiToken.update(last_used_ms=now).where(ApiToken.id == row.id).execute()
    return SessionUser(f"token:{row.name}", ROLE)


def bearer(authorization: str | None) -> str | None:
    """The token of an ``Authorization: Bearer …`` header value, else None."""
    if not authorization:
        return None
    scheme, _, value = authorization.partition(" ")
    return value.strip() if scheme.lower() == "bearer" and value.strip() else None
