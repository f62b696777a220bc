"""Alerting settings kept in the database (:class:`AlertSetting`): the dashboard URL that messages
link to, and the time zone messages show times in. Changed with ``clawfleet-server alerts
settings`` or on the Alerts page; the engine re-reads them on each full pass."""

from __future__ import annotations

from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from fleet_server.alerts.rules import RuleError
from fleet_server.store import audit
from fleet_server.store.alert_models import AlertSetting

DEFAULT_URL = "http://127.0.0.1:8080"
KEYS = ("dashboard_url", "zone")


def get_setting(key: str, default: str = "") -> str:
    """A setting's value, or ``default``."""
    row = AlertSetting.get_or_none(AlertSetting.key == key)
    return row.value if row is not None else default


def set_setting(key: str, value: str, actor: str) -> None:
    """Change ``dashboard_url`` (``http(s)://host[:port][/prefix]``) or ``zone`` (IANA). Raises RuleError."""
    value = value.strip()
    if key == "dashboard_url":
        if not value.startswith(("http://", "https://")) or any(c in value for c in " \"'<>") or len(value) > 300:
            raise RuleError("dashboard_url: the address people open the dashboard at, e.g. https://fleet.example.com")
        value = value.rstrip("/")
    elif key == "zone":
        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError):
            raise RuleError(f"zone {value!r}: use an IANA name such as Europe/Berlin or UTC") from None
    else:
        raise RuleError(f"unknown alert setting {key!r}; known: {', '.join(KEYS)}")
    AlertSetting.insert(key=key, value=value).on_conflict(conflict_target=[AlertSetting.key],
                                                          update={AlertSetting.value: value}).execute()
    audit.record(actor, "alert.settings", target=key, detail=value[:200])


class AlertSettings:
    """The settings the engine uses, re-read by :meth:`refresh`."""

    def __init__(self) -> None:
        self.dashboard_url = DEFAULT_URL
        self.zone = ZoneInfo("UTC")

    def refresh(self) -> None:
        """Read them again (one small SELECT)."""
        values = {r.key: r.value for r in AlertSetting.select().where(AlertSetting.key.in_(KEYS))}
        self.dashboard_url = values.get("dashboard_url") or DEFAULT_URL
        try:
            self.zone = ZoneInfo(values.get("zone") or "UTC")
        except (ZoneInfoNotFoundError, ValueError):
            self.zone = ZoneInfo("UTC")
