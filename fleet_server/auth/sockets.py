"""The dashboard's Socket.IO connection (NiceGUI's ``/_nicegui_ws``), bound to the browser session
that opened the page, and refused to other sites.

NiceGUI 3.18 dispatches a socket's ``event`` (a click, an input), ``javascript_response``, ``ack``
and ``log`` messages by the page's client id named *in the message*, whatever socket sends it;
its Socket.IO server allows every origin (``cors_allowed_origins='*'``). So a script with no
cookie, or a page on another site, that learns a page's client id could click an admin's buttons
(create an API token, audited as that admin). :func:`install_socket_guard` closes that:

- Origin: a socket whose ``Origin`` header is not this dashboard (scheme ``http``/``https`` and the
  request's ``Host``; behind ``--behind-proxy`` also ``X-Forwarded-Host``) is refused by the
  Engine.IO server (HTTP 400) before any Socket.IO packet. (A request with no ``Origin`` is no
  browser's cross-site request; it still has to pass the session check.)
- Session: a socket may hand-shake a page only with the session cookie of the request that built
  that page (the signed session's ``id``, which ``/login/finish`` renews at every login); with the
  implicit handshake of the connect request it is refused as "Implicit handshake failed", which
  makes a real browser reload the page under its current session.
- Messages: a socket's ``event``, ``javascript_response``, ``ack`` and ``log`` messages reach only the
  page it hand-shook (NiceGUI puts a hand-shaken socket in a room named after its client id);
  anything else is dropped.

The hooks are NiceGUI's own Socket.IO server (``nicegui.core.sio``): its handlers are wrapped,
not replaced, so NiceGUI's behaviour is otherwise unchanged. NiceGUI's test ``User`` simulation
calls the handlers directly and is not affected.
"""

from __future__ import annotations

import inspect
import logging
import urllib.parse
from collections.abc import Awaitable, Callable
from typing import Any

import socketio
from nicegui import Client, core

log = logging.getLogger("clawfleet.auth")

PAGE_MESSAGES = ("event", "javascript_response", "ack", "log")
"""Socket.IO messages that act on a page: accepted only from the socket that hand-shook it."""
_GUARD = "_clawfleet_guarded"
_settings = {"forwarded_host": False}


def _first(value: str) -> str:
    return value.split(",")[0].strip().lower()


def same_origin(origin: str | None, environ: dict[str, Any]) -> bool:
    """True when ``origin`` (the ``Origin`` header) is this dashboard: ``http``/``https`` and the host
    (with port) the request was sent to; behind a proxy also the ``X-Forwarded-Host`` it names.
    No ``Origin`` at all is allowed here (no browser omits it cross-site; the session check applies)."""
    if not origin:
        return True
    parts = urllib.parse.urlsplit(origin)
    hosts = {_first(environ.get("HTTP_HOST", ""))}
    if _settings["forwarded_host"] and environ.get("HTTP_X_FORWARDED_HOST"):
        hosts.add(_first(environ["HTTP_X_FORWARDED_HOST"]))
    return parts.scheme in ("http", "https") and parts.netloc.lower() in hosts - {""}


def session_id(environ: dict[str, Any] | None) -> str | None:
    """The signed session's ``id`` of the request behind a socket (None without a valid cookie)."""
    scope = (environ or {}).get("asgi.scope") or {}
    session = scope.get("session")
    value = session.get("id") if isinstance(session, dict) else None
    return value if isinstance(value, str) and value else None


def same_session(client: Client, environ: dict[str, Any] | None) -> bool:
    """True when the socket's request carries the session of the request that built ``client``'s page."""
    try:
        page = client.request.session.get("id")
    except (RuntimeError, AssertionError):  # no request, or no session middleware
        return False
    return isinstance(page, str) and bool(page) and page == session_id(environ)


def _query(environ: dict[str, Any]) -> dict[str, str]:
    return {k: v[0] for k, v in urllib.parse.parse_qs(environ.get("QUERY_STRING", "")).items()}


def install_socket_guard(*, behind_proxy: bool = False) -> None:
    """Bind NiceGUI's sockets to the page's session and refuse other origins (see the module
    docstring). Idempotent: a second call only updates ``behind_proxy`` (trust ``X-Forwarded-Host``
    for the origin check, as set by the reverse proxy in front)."""
    _settings["forwarded_host"] = behind_proxy
    sio: socketio.AsyncServer = core.sio
    sio.eio.cors_allowed_origins = same_origin
    handlers = sio.handlers.setdefault("/", {})
    if getattr(handlers.get("connect"), _GUARD, False):
        return

    connect = handlers["connect"]

    async def guarded_connect(sid: str, environ: dict[str, Any], auth: Any = None) -> Any:
        query = _query(environ)
        client = Client.instances.get(query.get("client_id", ""))
        if query.get("implicit_handshake") == "true" and client is not None and not same_session(client, environ):
            log.warning("refused a socket for page %s: not the session that opened the page (from %s)",
                        client.id, environ.get("REMOTE_ADDR", "?"))
            raise socketio.exceptions.ConnectionRefusedError("Implicit handshake failed")  # the browser reloads
        return await connect(sid, environ, auth)

    handshake = handlers["handshake"]

    async def guarded_handshake(sid: str, data: dict[str, Any]) -> bool:
        client = Client.instances.get(data.get("client_id", "")) if isinstance(data, dict) else None
        if client is not None and not same_session(client, sio.get_environ(sid)):
            log.warning("refused a handshake for page %s: not the session that opened the page", client.id)
            return False  # the browser reloads
        return await handshake(sid, data)

    for wrapper in (guarded_connect, guarded_handshake):
        setattr(wrapper, _GUARD, True)
    handlers["connect"], handlers["handshake"] = guarded_connect, guarded_handshake
    for name in PAGE_MESSAGES:
        handlers[name] = _bound(sio, name, handlers[name])


def _bound(sio: socketio.AsyncServer, name: str, inner: Callable[[str, dict], Any]) -> Callable[..., Awaitable[Any]]:
    """``inner`` for messages whose ``client_id`` is a page this socket hand-shook; others dropped."""

    async def handler(sid: str, msg: Any) -> Any:
        client_id = msg.get("client_id") if isinstance(msg, dict) else None
        if not isinstance(client_id, str) or client_id not in sio.rooms(sid):
            log.debug("dropped a %r message for page %s from a socket that did not open it", name, client_id)
            return None
        result = inner(sid, msg)
        return await result if inspect.isawaitable(result) else result

    return handler
