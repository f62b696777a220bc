"""Alert rules: kinds, settings, scopes, validation, and the rules a fresh install starts with.

A rule has a ``kind``, a ``scope`` (``fleet``, ``tag:<tag>`` or ``device:<id>``), a ``severity``
(``warning`` or ``critical``), the channels it notifies (none listed: every channel), an optional
reminder interval while firing, and kind-specific settings (:data:`PARAMS`):

============  ===========================================================================
kind          settings (durations in seconds, values in the metric's unit)
============  ===========================================================================
offline       ``for_s`` (300); ``include_planned`` (False: a shutdown or sleep does not fire);
              ``clear_s`` (30: back online this long before it resolves, so a flapping
              connection resolves once)
metric        ``metric`` (cpu, memory, disk, swap: percent 0-100; load: 1-min load average;
              net_rx, net_tx: bytes per second), ``op`` above/below, ``value``, ``clear``
              (hysteresis; default = ``value``), ``for_s`` (300)
gateway       ``for_s`` (300), ``clear_s`` (30): the OpenClaw gateway is installed but not answering
error_new     ``per_device`` (False: new to the whole fleet; True: new to that device)
error_rate    ``per_hour`` (a fingerprint's occurrences in the last hour), ``clear``
budget        ``unit`` tokens/usd, ``amount``, ``period`` day/month, ``zone`` (IANA),
              ``steps`` ([80, 90, 100] percent), ``per_device`` (False: the scope's total)
server        ``check`` broker/ingest/disk, ``value`` (disk: percent used, 90), ``for_s`` (60)
============  ===========================================================================

Override: for one device, a device rule replaces a tag rule, which replaces a fleet rule, of the
same :meth:`RuleDef.override_key` (kind, metric/check/budget unit and period, severity).
"""

from __future__ import annotations

import json
import re
import time
from dataclasses import dataclass, field
from typing import Annotated, Any, Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from fleet_server.store.alert_models import AlertRule, AlertSetting
from shared.topics import is_valid_device_id

KINDS = ("offline", "metric", "gateway", "error_new", "error_rate", "budget", "server")
SEVERITIES = ("warning", "critical")
METRICS: dict[str, tuple[str, str]] = {
    "cpu": ("cpu_pct", "%"), "memory": ("mem_pct", "%"), "disk": ("disk_pct", "%"), "swap": ("swap_pct", "%"),
    "load": ("load1", ""), "net_rx": ("net_rx_bps", "B/s"), "net_tx": ("net_tx_bps", "B/s"),
}
"""Metric name → (telemetry field / rollup column, unit shown in messages)."""
MAX_FOR_S = 7 * 86400


class RuleError(ValueError):
    """A rule that cannot be saved; the message names the field and the fix."""


_CFG = ConfigDict(extra="forbid", frozen=True)
Duration = Annotated[int, Field(ge=0, le=MAX_FOR_S)]


class OfflineParams(BaseModel):
    """``offline``: the device lost its connection, stopped reporting or was revoked."""

    model_config = _CFG
    for_s: Duration = 300
    include_planned: bool = False
    clear_s: Duration = 30


class MetricParams(BaseModel):
    """``metric``: a telemetry value above (or below) ``value`` for ``for_s``; clears at ``clear``."""

    model_config = _CFG
    metric: Literal["cpu", "memory", "disk", "swap", "load", "net_rx", "net_tx"]
    op: Literal["above", "below"] = "above"
    value: float = Field(ge=0, le=1e15)
    clear: float | None = Field(default=None, ge=0, le=1e15)
    for_s: Duration = 300

    @model_validator(mode="after")
    def _clear_side(self) -> MetricParams:
        if self.clear is not None and (self.clear > self.value if self.op == "above" else self.clear < self.value):
            side = "at or below" if self.op == "above" else "at or above"
            raise ValueError(f"clear ({self.clear:g}) must be {side} value ({self.value:g}) for op {self.op!r}")
        return self

    @property
    def clear_value(self) -> float:
        """The value at which a firing alert resolves (hysteresis)."""
        return self.value if self.clear is None else self.clear


class GatewayParams(BaseModel):
    """``gateway``: OpenClaw is installed on the device but its gateway does not answer."""

    model_config = _CFG
    for_s: Duration = 300
    clear_s: Duration = 30


class ErrorNewParams(BaseModel):
    """``error_new``: a log fingerprint never seen before on the fleet (or on that device)."""

    model_config = _CFG
    per_device: bool = False


class ErrorRateParams(BaseModel):
    """``error_rate``: one fingerprint logged more than ``per_hour`` times in the last hour on a device."""

    model_config = _CFG
    per_hour: float = Field(gt=0, le=1e9)
    clear: float | None = Field(default=None, ge=0, le=1e9)

    @property
    def clear_value(self) -> float:
        """Occurrences per hour at or below which a firing alert resolves."""
        return self.per_hour if self.clear is None else min(self.clear, self.per_hour)


class BudgetParams(BaseModel):
    """``budget``: tokens or cost (USD) per day or month in ``zone``, warned at each of ``steps`` percent."""

    model_config = _CFG
    unit: Literal["tokens", "usd"] = "tokens"
    amount: float = Field(gt=0, le=1e15)
    period: Literal["day", "month"] = "day"
    zone: str = "UTC"
    steps: list[int] = Field(default_factory=lambda: [80, 90, 100], min_length=1, max_length=10)
    per_device: bool = False

    @field_validator("zone")
    @classmethod
    def _zone(cls, v: str) -> str:
        try:
            ZoneInfo(v)
        except (ZoneInfoNotFoundError, ValueError):
            raise ValueError(f"unknown time zone {v!r}: use an IANA name such as Europe/Berlin or UTC") from None
        return v

    @field_validator("steps")
    @classmethod
    def _steps(cls, v: list[int]) -> list[int]:
        if any(s < 1 or s > 1000 for s in v):
            raise ValueError("steps are percentages of the budget between 1 and 1000, e.g. [80, 90, 100]")
        return sorted(set(v))


class ServerParams(BaseModel):
    """``server``: the fleet server itself: broker connection lost, ingest unhealthy, data dir disk full."""

    model_config = _CFG
    check: Literal["broker", "ingest", "disk"]
    value: float = Field(default=90.0, ge=0, le=100)
    for_s: Duration = 60


PARAMS: dict[str, type[BaseModel]] = {
    "offline": OfflineParams, "metric": MetricParams, "gateway": GatewayParams, "error_new": ErrorNewParams,
    "error_rate": ErrorRateParams, "budget": BudgetParams, "server": ServerParams,
}
DEVICE_KINDS = ("offline", "metric", "gateway")
"""Kinds evaluated per device from the fleet cache (one incident per rule and device)."""


@dataclass(frozen=True)
class Scope:
    """``fleet``, ``tag:<tag>`` or ``device:<id>``; ``rank`` 0, 1, 2 (more specific wins)."""

    kind: str
    value: str = ""

    @property
    def rank(self) -> int:
        """0 fleet, 1 tag, 2 device."""
        return {"fleet": 0, "tag": 1, "device": 2}[self.kind]

    def __str__(self) -> str:
        return "fleet" if self.kind == "fleet" else f"{self.kind}:{self.value}"

    def matches(self, device_id: str, tags: tuple[str, ...]) -> bool:
        """Does this scope cover a device with these tags?"""
        return self.kind == "fleet" or (self.kind == "tag" and self.value in tags) or (
            self.kind == "device" and self.value == device_id)


def parse_scope(text: str) -> Scope:
    """``fleet`` | ``tag:<tag>`` | ``device:<id>`` → :class:`Scope`. Raises :class:`RuleError`."""
    text = (text or "fleet").strip()
    if text == "fleet":
        return Scope("fleet")
    kind, _, value = text.partition(":")
    value = value.strip()
    if kind == "tag" and value and len(value) <= 100 and "," not in value:
        return Scope("tag", value)
    if kind == "device" and is_valid_device_id(value):
        return Scope("device", value)
    raise RuleError(f"scope {text[:60]!r}: use 'fleet', 'tag:<tag>' or 'device:<device id>'")


@dataclass(frozen=True)
class RuleDef:
    """A validated rule, as the engine uses it."""

    id: int
    name: str
    kind: str
    scope: Scope
    severity: str
    params: Any
    channels: tuple[int, ...] = ()
    reminder_s: int = 0
    enabled: bool = True
    extra: dict = field(default_factory=dict)

    @property
    def for_s(self) -> int:
        """How long the condition must hold before the rule fires, seconds (0 for event kinds)."""
        return int(getattr(self.params, "for_s", 0))

    @property
    def clear_s(self) -> int:
        """How long a firing condition must stay clear before the incident resolves, seconds."""
        return int(getattr(self.params, "clear_s", 0))

    def override_key(self) -> tuple[str, str, str]:
        """Rules with the same key override each other by scope (device > tag > fleet)."""
        p = self.params
        sub = {"metric": lambda: p.metric, "server": lambda: p.check,
               "budget": lambda: f"{p.unit}/{p.period}"}.get(self.kind, lambda: "")()
        return self.kind, sub, self.severity

    def describe(self) -> str:
        """One line: what the rule checks, e.g. ``disk above 90 % for 10 min``."""
        p = self.params
        if self.kind == "offline":
            return f"device offline for {duration_text(p.for_s)}" + (" (also shutdown/sleep)" if p.include_planned
                                                                      else "")
        if self.kind == "metric":
            unit = METRICS[p.metric][1]
            clear = f", clears at {p.clear_value:g}{unit and ' ' + unit}" if p.clear is not None else ""
            return f"{p.metric} {p.op} {p.value:g}{unit and ' ' + unit} for {duration_text(p.for_s)}{clear}"
        if self.kind == "gateway":
            return f"OpenClaw gateway down for {duration_text(p.for_s)}"
        if self.kind == "error_new":
            return "a log fingerprint never seen before " + ("on that device" if p.per_device else "on the fleet")
        if self.kind == "error_rate":
            return f"a log fingerprint more than {p.per_hour:g} times per hour on a device"
        if self.kind == "budget":
            amount = f"${p.amount:,.2f}" if p.unit == "usd" else f"{p.amount:,.0f} tokens"
            each = " per device" if p.per_device else ""
            return (f"{amount} per {p.period}{each} ({p.zone}), warn at "
                    + "/".join(str(s) for s in p.steps) + " %")
        if self.kind == "server":
            what = {"broker": "broker connection lost", "ingest": "ingest unhealthy",
                    "disk": f"data dir disk above {p.value:g} %"}[p.check]
            return f"fleet server: {what} for {duration_text(p.for_s)}"
        return self.kind


def duration_text(seconds: float) -> str:
    """``90`` → ``1 min 30 s``; ``7200`` → ``2 h``."""
    s = int(round(seconds))
    if s < 60:
        return f"{s} s"
    if s < 3600:
        m, r = divmod(s, 60)
        return f"{m} min" + (f" {r} s" if r else "")
    if s < 86400:
        h, r = divmod(s, 3600)
        return f"{h} h" + (f" {r // 60} min" if r // 60 else "")
    d, r = divmod(s, 86400)
    return f"{d} d" + (f" {r // 3600} h" if r // 3600 else "")


_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(s|sec|m|min|h|d)?\s*$")


def parse_duration(text: str | int | float, what: str = "duration") -> int:
    """``"90s"``, ``"5m"``, ``"2h"``, ``"1d"`` or a number of seconds → seconds. Raises :class:`RuleError`."""
    if isinstance(text, (int, float)) and not isinstance(text, bool):
        return int(text)
    m = _DURATION.match(str(text))
    if not m:
        raise RuleError(f"{what} {str(text)[:30]!r}: use a number of seconds or e.g. 90s, 5m, 2h, 1d")
    mult = {"s": 1, "sec": 1, None: 1, "m": 60, "min": 60, "h": 3600, "d": 86400}[m.group(2)]
    return int(float(m.group(1)) * mult)


def validate(kind: str, scope: str, severity: str, params: dict, name: str = "") -> tuple[Scope, BaseModel]:
    """Check a rule before it is stored. Returns ``(scope, params model)``.

    Raises:
        RuleError: unknown kind or severity, bad scope, or a setting that is missing, unknown or out
            of range (the message names it).
    """
    if kind not in KINDS:
        raise RuleError(f"kind {kind!r}: choose one of {', '.join(KINDS)}")
    if severity not in SEVERITIES:
        raise RuleError(f"severity {severity!r}: choose warning or critical")
    if len(name) > 100:
        raise RuleError("name: at most 100 characters")
    sc = parse_scope(scope)
    if kind == "server" and sc.kind != "fleet":
        raise RuleError("scope: server rules are about the fleet server itself; use scope 'fleet'")
    try:
        model = PARAMS[kind].model_validate(params)
    except ValidationError as exc:
        parts = []
        for err in exc.errors(include_url=False, include_input=False)[:3]:
            loc = ".".join(str(p) for p in err["loc"]) or "settings"
            msg = err["msg"].removeprefix("Value error, ")
            parts.append(f"{loc}: {msg}" if loc != "settings" else msg)
        raise RuleError(f"{kind} rule: " + "; ".join(parts)) from None
    return sc, model


def to_def(row: AlertRule) -> RuleDef:
    """The :class:`RuleDef` of a stored rule (raises :class:`RuleError` if it no longer validates)."""
    try:
        params = json.loads(row.params_json or "{}")
    except ValueError:
        raise RuleError(f"rule {row.id}: stored settings are not JSON") from None
    scope, model = validate(row.kind, row.scope, row.severity, params, row.name)
    channels = tuple(int(c) for c in row.channels.split(",") if c.strip().isdigit())
    return RuleDef(row.id, row.name, row.kind, scope, row.severity, model, channels, row.reminder_s, row.enabled)


def save_rule(kind: str, scope: str, severity: str, params: dict, *, name: str = "", channels: list[int] | None = None,
              reminder_s: int = 0, enabled: bool = True, rule_id: int | None = None) -> AlertRule:
    """Validate and store a rule (new, or ``rule_id`` replaced). Raises :class:`RuleError`."""
    sc, model = validate(kind, scope, severity, params, name)
    if reminder_s < 0 or reminder_s > 30 * 86400:
        raise RuleError("reminder: between 0 (off) and 30 days")
    rule = RuleDef(0, name, kind, sc, severity, model)
    now = int(time.time() * 1000)
    fields = {"name": name or rule.describe()[:100], "kind": kind, "scope": str(sc), "severity": severity,
              "params_json": model.model_dump_json(), "channels": ",".join(str(c) for c in channels or []),
              "reminder_s": int(reminder_s), "enabled": enabled, "updated_ms": now}
    if rule_id is None:
        return AlertRule.create(created_ms=now, **fields)
    row = AlertRule.get_or_none(AlertRule.id == rule_id)
    if row is None:
        raise RuleError(f"no alert rule {rule_id}")
    AlertRule.update(**fields).where(AlertRule.id == rule_id).execute()
    return AlertRule.get_by_id(rule_id)


def load_rules() -> list[RuleDef]:
    """Every stored rule that validates (a bad one is skipped), by id."""
    out = []
    for row in AlertRule.select().order_by(AlertRule.id):
        try:
            out.append(to_def(row))
        except RuleError:
            continue
    return out


DEFAULT_RULES: list[dict] = [
    {"kind": "offline", "severity": "critical", "params": {"for_s": 300}, "name": "Device offline > 5 min"},
    {"kind": "metric", "severity": "warning", "params": {"metric": "disk", "op": "above", "value": 90, "clear": 85,
                                                         "for_s": 600}, "name": "Disk > 90 % for 10 min"},
    {"kind": "gateway", "severity": "critical", "params": {"for_s": 300}, "name": "OpenClaw gateway down > 5 min"},
    {"kind": "server", "severity": "critical", "params": {"check": "broker", "for_s": 60},
     "name": "Server lost the broker"},
    {"kind": "server", "severity": "critical", "params": {"check": "ingest", "for_s": 60},
     "name": "Server ingest unhealthy"},
    {"kind": "server", "severity": "warning", "params": {"check": "disk", "value": 90, "for_s": 300},
     "name": "Server data dir disk > 90 %"},
]
"""What a fresh install starts with (and no channel)."""


def ensure_default_rules() -> int:
    """Store :data:`DEFAULT_RULES` once per database (deleting them later does not bring them back).
    Returns how many were added."""
    if AlertSetting.get_or_none(AlertSetting.key == "defaults_seeded") is not None:
        return 0
    added = 0
    if not AlertRule.select().exists():
        for r in DEFAULT_RULES:
            save_rule(r["kind"], "fleet", r["severity"], r["params"], name=r["name"])
            added += 1
    AlertSetting.insert(key="defaults_seeded", value="1").on_conflict_ignore().execute()
    return added
