"""Security headers on every response of the dashboard, the API and ``/metrics``: one policy, here.

``Content-Security-Policy`` (:data:`CONTENT_SECURITY_POLICY`): scripts, styles, fonts, images and
connections from this server only — no CDN, no other site (every asset is served from an installed
package). NiceGUI needs inline scripts (each page carries its element tree in one) and ``eval`` (Vue
templates and the JavaScript functions of chart options), hence ``'unsafe-inline' 'unsafe-eval'``
for scripts; what the policy takes away is loading code or sending data anywhere else, framing
the dashboard, plugins, and ``<base>``/form targets elsewhere.
"""

from __future__ import annotations

CONTENT_SECURITY_POLICY = "; ".join((
    "default-src 'self'",
    "script-src 'self' 'unsafe-inline' 'unsafe-eval'",
    "style-src 'self' 'unsafe-inline'",
    "img-src 'self' data: blob:",
    "font-src 'self' data:",
    "connect-src 'self'",
    "worker-src 'self' blob:",
    "object-src 'none'",
    "base-uri 'self'",
    "form-action 'self'",
    "frame-ancestors 'none'",
))
"""The dashboard's Content-Security-Policy (pages served from installed packages need nothing more)."""

SECURITY_HEADERS: dict[str, str] = {
    "Content-Security-Policy": CONTENT_SECURITY_POLICY,
    "X-Frame-Options": "DENY",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "same-origin",
    "Cross-Origin-Opener-Policy": "same-origin",
    "Permissions-Policy": "camera=(), microphone=(), geolocation=(), payment=(), usb=()",
}
"""Sent with every response (:class:`fleet_server.auth.gate.AuthGate`)."""

HSTS = "max-age=31536000"
"""``Strict-Transport-Security`` of responses over HTTPS (directly, or from a trusted proxy)."""
