"""The words of notifications: one event (what, where, since when, value and threshold, a link to
the device page) and a group of events sent as one message ("12 devices offline: …").

Plain functions over plain values; times are shown in the zone given (the alert settings' zone).
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from datetime import datetime
from zoneinfo import ZoneInfo

from fleet_server.alerts.rules import METRICS, RuleDef, duration_text

MAX_BLOCKS = 20
"""A grouped message shows at most this many events in full; the rest are listed by subject."""
MAX_LIST_CHARS = 3000
"""The list of further subjects is cut at about this many characters."""


@dataclass(frozen=True)
class EventText:
    """A notification's part for one event: ``headline`` (one line), ``text`` (detail lines),
    ``subject`` (who, for the group summary)."""

    headline: str
    text: str
    subject: str


def when(ms: int, zone: ZoneInfo) -> str:
    """``2026-03-29 14:02:10 CEST``."""
    return datetime.fromtimestamp(ms / 1000, zone).strftime("%Y-%m-%d %H:%M:%S %Z")


def clock(ms: int, zone: ZoneInfo) -> str:
    """``15:40 CEST`` (``Mon 15:40 CEST`` if not within 24 h of now is the caller's business)."""
    return datetime.fromtimestamp(ms / 1000, zone).strftime("%H:%M %Z")


def value_text(rule: RuleDef, value: float | None) -> str:
    """A value in the rule's unit: ``93.2 %``, ``1.8 MB/s``, ``4.1``."""
    if value is None:
        return "n/a"
    if rule.kind == "metric":
        unit = METRICS[rule.params.metric][1]
        if unit == "B/s":
            return _rate(value)
        return f"{value:.1f}{' ' + unit if unit else ''}"
    if rule.kind in ("offline", "gateway") or rule.kind == "server" and rule.params.check != "disk":
        return duration_text(value)
    if rule.kind == "server":
        return f"{value:.1f} %"
    return f"{value:g}"


def threshold_text(rule: RuleDef) -> str:
    """The rule's threshold in words: ``> 90 % for 10 min``, ``offline ≥ 5 min``."""
    p = rule.params
    if rule.kind == "metric":
        unit = METRICS[p.metric][1]
        v = _rate(p.value) if unit == "B/s" else f"{p.value:g}{' ' + unit if unit else ''}"
        return f"{'>' if p.op == 'above' else '<'} {v} for {duration_text(p.for_s)}"
    if rule.kind == "server" and p.check == "disk":
        return f"> {p.value:g} % for {duration_text(p.for_s)}"
    if rule.kind == "error_rate":
        return f"> {p.per_hour:g} per hour"
    return f"≥ {duration_text(rule.for_s)}"


def firing(rule: RuleDef, label: str, what: str, since_ms: int, now: int, value: float | None, zone: ZoneInfo,
           link: str | None) -> EventText:
    """A rule started firing for ``label`` (a device name, "fleet", "fleet server")."""
    held = duration_text((now - since_ms) / 1000)
    headline = f"{label}: {what} for {held}" if rule.kind != "error_new" else f"{label}: {what}"
    lines = [f"What: {rule.name} ({rule.describe()}), {rule.severity}",
             f"Where: {label}",
             f"Since: {when(since_ms, zone)} ({held})"]
    if rule.kind in ("metric", "error_rate") or rule.kind == "server" and rule.params.check == "disk":
        lines.append(f"Value: {value_text(rule, value)} · threshold {threshold_text(rule)}")
    elif rule.kind in ("offline", "gateway", "server"):
        lines.append(f"Value: {held} · threshold {threshold_text(rule)}")
    if link:
        lines.append(link)
    return EventText(headline, "\n".join(lines), label)


def resolved(rule: RuleDef, label: str, what: str, fired_ms: int, started_ms: int, now: int, zone: ZoneInfo,
             link: str | None) -> EventText:
    """A firing rule resolved: says for how long it fired (and since the condition began)."""
    lasted = duration_text((now - started_ms) / 1000)
    headline = f"{label}: resolved after {lasted} ({rule.name})"
    lines = [f"Resolved: {rule.name} ({rule.describe()})", f"Where: {label}",
             f"Duration: {lasted} (from {when(started_ms, zone)} to {when(now, zone)}; "
             f"notified at {when(fired_ms, zone)})"]
    if what:
        lines.append(f"Now: {what}")
    if link:
        lines.append(link)
    return EventText(headline, "\n".join(lines), label)


def reminder(rule: RuleDef, label: str, what: str, started_ms: int, now: int, zone: ZoneInfo,
             link: str | None) -> EventText:
    """Still firing (sent every ``reminder_s`` while not acknowledged)."""
    held = duration_text((now - started_ms) / 1000)
    headline = f"{label}: still {what} after {held}"
    lines = [f"Reminder: {rule.name} ({rule.describe()}) is still firing, not acknowledged",
             f"Where: {label}", f"Since: {when(started_ms, zone)} ({held})"]
    if link:
        lines.append(link)
    return EventText(headline, "\n".join(lines), label)


def budget(rule: RuleDef, label: str, step: int, used: float, pct: float, period_text: str, projection: str,
           link: str | None) -> EventText:
    """A budget passed a step (80 / 90 / 100 %)."""
    p = rule.params
    amount = _money(used) + " of " + _money(p.amount) if p.unit == "usd" else \
        f"{used:,.0f} of {p.amount:,.0f} tokens"
    word = "daily" if p.period == "day" else "monthly"
    headline = f"{label}: {word} {'cost' if p.unit == 'usd' else 'token'} budget at {pct:.0f} % (passed {step} %)"
    lines = [f"Budget: {rule.name} ({rule.describe()})", f"Where: {label}", f"Used: {amount} ({pct:.1f} %) "
             f"in {period_text}", projection]
    if link:
        lines.append(link)
    return EventText(headline, "\n".join(lines), label)


def compose(events: list[tuple[str, str, EventText]]) -> tuple[str, str]:
    """Title and body of one message for ``[(kind, severity, EventText), …]`` (oldest first).

    One event: ``[CRITICAL] web-1: offline (last-will) for 5 min`` and its details. Several: a
    title counting them (``[CRITICAL] 12 alerts: 12 firing``), a summary line per kind listing
    the subjects (``Firing (12): web-1, web-2, …``), then up to :data:`MAX_BLOCKS` full blocks.
    """
    sev = "CRITICAL" if any(s == "critical" for _, s, _ in events) else "WARNING"
    if len(events) == 1:
        kind, s, e = events[0]
        tag = "RESOLVED" if kind == "resolved" else ("REMINDER" if kind == "reminder" else s.upper())
        return f"[{tag}] {e.headline}"[:300], e.text
    counts = Counter(k for k, _, _ in events)
    words = {"firing": "firing", "resolved": "resolved", "reminder": "still firing", "budget": "budget"}
    title = f"[{sev}] {len(events)} alerts: " + ", ".join(f"{n} {words.get(k, k)}" for k, n in counts.items())
    lines = []
    for kind in counts:
        subjects = sorted(e.subject for k, _, e in events if k == kind)
        lines.append(f"{words.get(kind, kind).capitalize()} ({len(subjects)}): {_list(subjects)}")
    blocks = [f"— {e.headline}\n{e.text}" for _, _, e in events[:MAX_BLOCKS]]
    more = len(events) - MAX_BLOCKS
    tail = [f"… and {more} more (see the Alerts page)"] if more > 0 else []
    return title[:300], "\n".join(lines) + "\n\n" + "\n\n".join(blocks) + ("\n\n" + tail[0] if tail else "")


def _list(names: list[str]) -> str:
    out, size = [], 0
    for i, n in enumerate(names):
        if size + len(n) > MAX_LIST_CHARS:
            return ", ".join(out) + f", … (+{len(names) - i} more)"
        out.append(n)
        size += len(n) + 2
    return ", ".join(out)


def _rate(bps: float) -> str:
    for unit, div in (("GB/s", 1e9), ("MB/s", 1e6), ("kB/s", 1e3)):
        if bps >= div:
            return f"{bps / div:.1f} {unit}"
    return f"{bps:.0f} B/s"


def _money(usd: float) -> str:
    return f"${usd:,.2f}"
