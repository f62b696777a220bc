"""Is a TCP port free to listen on? Asked before a server writes anything, so a port in use ends the
start with a message that names the port and the option that changes it."""

from __future__ import annotations

import errno
import os
import socket


def bind_error(host: str, port: int) -> OSError | None:
    """None when ``host:port`` can be bound now, else the error binding it raised. Binds the way the
    servers here do (``SO_REUSEADDR`` on POSIX, so a port in TIME_WAIT counts as free) and releases
    it at once. ``host`` ``""`` or ``0.0.0.0``: all interfaces."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family) as s:
        if os.name == "posix":  # on Windows SO_REUSEADDR would allow taking a port in use
            s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind((host, port))
        except OSError as exc:
            return exc
    return None


def why_not(exc: OSError) -> str:
    """``"is already in use"`` or ``"needs privileges (ports below 1024)"`` for a :func:`bind_error`."""
    return "needs privileges (ports below 1024)" if exc.errno in (errno.EACCES, errno.EPERM) else "is already in use"
