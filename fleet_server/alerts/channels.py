"""Notification channels: one Apprise URL each (e-mail, Slack, Discord, Telegram, ntfy, Gotify,
Matrix, webhooks… — https://github.com/caronc/apprise/wiki for the URL of each service).

A URL usually holds a secret (a password, a bot token, a webhook key). It is checked with Apprise
when added, stored encrypted with a key kept in the server data dir (``alert-channels.key``,
mode 0600; Fernet: AES-128-CBC + HMAC-SHA256), and shown afterwards only masked (Apprise's
privacy form, with long path parts masked too). The audit log and the server log get the masked
form only; Apprise's and urllib3's own log lines pass a filter that replaces every secret part of
every known channel URL with ``****`` (Apprise logs request URLs at debug level).

:func:`send` is one delivery attempt with a time limit; it returns the real error (secrets
removed) so "send test" can show it.
"""

from __future__ import annotations

import logging
import os
import re
import threading
import time
from pathlib import Path

import apprise
from cryptography.fernet import Fernet, InvalidToken

from fleet_server.alerts.rules import RuleError
from fleet_server.alerts.silences import check_hhmm, check_zone
from fleet_server.store import audit
from fleet_server.store.alert_models import AlertChannel

KEY_FILE = "alert-channels.key"
SEND_TIMEOUT_S = 20.0
"""Longest one delivery attempt may take (Apprise stops waiting then), seconds."""
_SPLIT = re.compile(r"[/:@?&=#,]+")


class ChannelError(ValueError):
    """A channel that cannot be added or used; the message says why (never the secret)."""


class _SecretFilter(logging.Filter):
    """Replaces the secret parts of known channel URLs in log records of Apprise and urllib3."""

    def __init__(self) -> None:
        super().__init__()
        self.secrets: set[str] = set()
        self.lock = threading.Lock()

    def add(self, parts: set[str]) -> None:
        with self.lock:
            self.secrets |= parts

    def filter(self, record: logging.LogRecord) -> bool:
        if self.secrets:
            msg = record.getMessage()
            clean = scrub_parts(msg, self.secrets)
            if clean != msg:
                record.msg, record.args = clean, ()
        return True


_FILTER = _SecretFilter()
for _name in ("apprise", "urllib3"):
    logging.getLogger(_name).addFilter(_FILTER)
logging.getLogger("apprise").setLevel(logging.WARNING)  # its debug lines print request URLs and payloads


def _fernet(data_dir: Path) -> Fernet:
    """The channel key of ``data_dir`` (made on first use, mode 0600)."""
    path = Path(data_dir) / KEY_FILE
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o600)
        with os.fdopen(fd, "wb") as f:
            f.write(Fernet.generate_key())
    return Fernet(path.read_bytes().strip())


def _instantiate(url: str) -> apprise.plugins.NotifyBase:
    url = (url or "").strip()
    if not url or len(url) > 2000 or any(c in url for c in "\r\n\t"):
        raise ChannelError("the URL is empty, too long (over 2000 characters) or spans lines")
    plugin = apprise.Apprise.instantiate(url, suppress_exceptions=True)
    if plugin is None:
        scheme = url.split("://", 1)[0][:20] if "://" in url else ""
        hint = f"'{scheme}://' is not a notification service Apprise knows" if scheme else "it has no scheme://"
        raise ChannelError(f"not a valid Apprise URL ({hint}, or a required part is missing); see "
                           "https://github.com/caronc/apprise/wiki for the URL of each service")
    return plugin


def masked(url: str) -> tuple[str, str]:
    """``(service name, masked URL)`` of a valid URL; raises :class:`ChannelError` otherwise."""
    plugin = _instantiate(url)
    shown = plugin.url(privacy=True)
    shown = re.sub(r"(?<=/)([A-Za-z0-9_\-]{2})[A-Za-z0-9_\-]{14,}", r"\1****", shown)  # long path tokens
    return str(getattr(plugin, "service_name", "") or url.split("://", 1)[0])[:60], shown[:500]


def secret_parts(url: str) -> set[str]:
    """The pieces of ``url`` its masked form hides (passwords, tokens, keys), 4 characters or more."""
    try:
        _, shown = masked(url)
    except ChannelError:
        return {p for p in _SPLIT.split(url) if len(p) >= 4} - {"http", "https"}
    visible = set(_SPLIT.split(shown))
    return {p for p in _SPLIT.split(url.strip()) if len(p) >= 4 and p not in visible}


def scrub_parts(text: str, parts: set[str]) -> str:
    """``text`` with each of ``parts`` replaced by ``****`` (longest first)."""
    for p in sorted(parts, key=len, reverse=True):
        if p in text:
            text = text.replace(p, "****")
    return text


def scrub(text: str, url: str) -> str:
    """``text`` with the URL and its secret parts replaced by ``****``."""
    return scrub_parts(text.replace(url, "****"), secret_parts(url))


def add_channel(data_dir: Path, name: str, url: str, actor: str, *, quiet_start: str = "", quiet_end: str = "",
                quiet_zone: str = "UTC") -> AlertChannel:
    """Check and store a channel (URL encrypted). Raises :class:`ChannelError` or :class:`RuleError`."""
    name = (name or "").strip()
    if not name or len(name) > 100:
        raise ChannelError("name: 1-100 characters")
    if AlertChannel.get_or_none(AlertChannel.name == name) is not None:
        raise ChannelError(f"a channel named {name!r} exists already")
    service, shown = masked(url)
    _check_quiet(quiet_start, quiet_end, quiet_zone)
    row = AlertChannel.create(name=name, url_secret=_fernet(data_dir).encrypt(url.strip().encode()).decode(),
                              url_masked=shown, service=service, quiet_start=quiet_start, quiet_end=quiet_end,
                              quiet_zone=quiet_zone or "UTC", created_ms=int(time.time() * 1000),
                              created_by=actor[:100])
    _FILTER.add(secret_parts(url))
    audit.record(actor, "alert_channel.add", target=name, detail=f"{service}: {shown}")
    return row


def _check_quiet(start: str, end: str, zone: str) -> None:
    if start or end:
        check_hhmm(start, "quiet hours start")
        check_hhmm(end, "quiet hours end")
    check_zone(zone or "UTC")


def update_channel(channel_id: int, actor: str, *, enabled: bool | None = None, quiet_start: str | None = None,
                   quiet_end: str | None = None, quiet_zone: str | None = None) -> AlertChannel:
    """Turn a channel on/off or change its quiet hours (``""`` start and end: none). Raises RuleError."""
    row = get_channel(channel_id)
    qs = row.quiet_start if quiet_start is None else quiet_start
    qe = row.quiet_end if quiet_end is None else quiet_end
    qz = row.quiet_zone if quiet_zone is None else (quiet_zone or "UTC")
    _check_quiet(qs, qe, qz)
    on = row.enabled if enabled is None else enabled
    AlertChannel.update(enabled=on, quiet_start=qs, quiet_end=qe, quiet_zone=qz).where(
        AlertChannel.id == channel_id).execute()
    audit.record(actor, "alert_channel.update", target=row.name,
                 detail=f"{'on' if on else 'off'}; quiet hours {qs or '-'}-{qe or '-'} {qz}")
    return get_channel(channel_id)


def remove_channel(channel_id: int, actor: str) -> None:
    """Delete a channel (its log stays). Raises :class:`RuleError` for an unknown id."""
    row = get_channel(channel_id)
    row.delete_instance()
    audit.record(actor, "alert_channel.remove", target=row.name)


def get_channel(channel_id: int) -> AlertChannel:
    """A channel by id, or :class:`RuleError`."""
    row = AlertChannel.get_or_none(AlertChannel.id == channel_id)
    if row is None:
        raise RuleError(f"no alert channel {channel_id}")
    return row


def channel_url(data_dir: Path, row: AlertChannel) -> str:
    """The decrypted URL (for sending only; never show or log it). Raises :class:`ChannelError`."""
    try:
        url = _fernet(data_dir).decrypt(row.url_secret.encode()).decode()
    except (InvalidToken, ValueError):
        raise ChannelError(f"channel {row.name!r} cannot be decrypted with {KEY_FILE} in the data dir (restored "
                           "without its key?): remove it and add it again") from None
    _FILTER.add(secret_parts(url))
    return url


def send(url: str, title: str, body: str, severity: str = "warning",
         timeout_s: float = SEND_TIMEOUT_S) -> tuple[bool, str, float]:
    """One delivery attempt: ``(ok, error with secrets removed, seconds taken)``."""
    started = time.monotonic()
    try:
        obj = apprise.Apprise()
        if not obj.add(url):
            return False, "not a valid Apprise URL", time.monotonic() - started
        kind = {"critical": apprise.NotifyType.FAILURE, "ok": apprise.NotifyType.SUCCESS}.get(
            severity, apprise.NotifyType.WARNING)
        result = obj.notify(body=body, title=title, notify_type=kind, body_format=apprise.NotifyFormat.TEXT,
                            timeout=timeout_s)
        if result:
            return True, "", time.monotonic() - started
        lines = [e.message for e in result.logs() if e.level in ("WARNING", "ERROR", "CRITICAL")]
        error = "; ".join(dict.fromkeys(lines)) or f"delivery failed ({result.status.name.lower()})"
        return False, scrub(error, url)[:1000], time.monotonic() - started
    except Exception as exc:  # a plugin bug must not end the dispatcher
        return False, scrub(f"{type(exc).__name__}: {exc}", url)[:1000], time.monotonic() - started
