"""Read queries the dashboard pages and the REST API share (tokens, samples, status events).

Units: tokens; USD; timestamps epoch ms UTC. Day buckets are calendar days in a named IANA time
zone (``zoneinfo``): records are summed per 15-minute UTC slot in SQL (every real UTC offset is a
multiple of 15 minutes) and the slots are put into local days in Python, so it works the same on
SQLite and PostgreSQL.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from datetime import datetime, timezone
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from peewee import OP, SQL, Case, Expression, fn

from fleet_server.store.models import Sample, StatusEvent, UsageHourly, UsageRecord

SLOT_MS = 15 * 60 * 1000
GROUP_KEYS = ("device", "agent", "model", "session", "day")
"""What usage can be grouped by (``model`` is ``provider/model``)."""


class QueryError(ValueError):
    """A bad query parameter (unknown group, time zone or window); the message names it."""


@dataclass
class UsageRow:
    """Sums of one group. Tokens are counts, ``cost_usd`` USD of the priced records (rule price,
    else OpenClaw's recorded cost); ``unpriced_tokens`` are tokens with neither (not $0).
    ``messages`` counts assistant messages, ``failed_turns`` those with ``stopReason: "error"``."""

    key: dict[str, str]
    input_tokens: int = 0
    output_tokens: int = 0
    cache_read_tokens: int = 0
    cache_write_tokens: int = 0
    total_tokens: int = 0
    messages: int = 0
    failed_turns: int = 0
    cost_usd: float = 0.0
    priced_messages: int = 0
    unpriced_tokens: int = 0

    def add(self, other: UsageRow) -> None:
        """Add another row's sums into this one (in place)."""
        for k, v in asdict(other).items():
            if k != "key":
                setattr(self, k, getattr(self, k) + v)

    def as_json(self) -> dict:
        """The row as the API returns it: group key fields first, then the sums. ``cost_usd`` is
        None (unpriced, not $0) when tokens were used and no record had a price."""
        d = asdict(self)
        if not self.priced_messages and self.total_tokens:
            d["cost_usd"] = None
        return {**d.pop("key"), **d}


def zone(name: str | None) -> ZoneInfo | timezone:
    """The IANA zone ``name`` (``Europe/Berlin``); UTC for None/"UTC". Raises QueryError if unknown."""
    if not name or name.upper() == "UTC":
        return timezone.utc
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        raise QueryError(f"unknown time zone {name!r}; use an IANA name such as 'Europe/Berlin'") from None


def local_day(ts_ms: int, tz: ZoneInfo | timezone) -> str:
    """``YYYY-MM-DD`` of an epoch-ms instant in ``tz``."""
    return datetime.fromtimestamp(ts_ms / 1000, tz).strftime("%Y-%m-%d")


def day_start_ms(day: str, tz: ZoneInfo | timezone) -> int:
    """Epoch ms of local midnight starting ``day`` (``YYYY-MM-DD``) in ``tz``. Raises QueryError."""
    try:
        d = datetime.strptime(day, "%Y-%m-%d").replace(tzinfo=tz)
    except ValueError:
        raise QueryError(f"bad date {day!r}; use YYYY-MM-DD") from None
    return int(d.timestamp() * 1000)


def usage_summary(group_by: list[str] | tuple[str, ...], since_ms: int | None = None, until_ms: int | None = None,
                  device: str | None = None, tz: str | None = None) -> list[UsageRow]:
    """Token usage summed per group, over records with ``since_ms <= ts < until_ms``.

    Args:
        group_by: one or more of :data:`GROUP_KEYS` (empty: one row, the grand total).
        since_ms, until_ms: time range, epoch ms UTC (None: unbounded).
        device: only this device id.
        tz: IANA zone for ``day`` keys (default UTC).

    Returns:
        Rows sorted by key; key values are strings (``day`` is ``YYYY-MM-DD``).

    Raises:
        QueryError: unknown group key or time zone.
    """
    bad = [g for g in group_by if g not in GROUP_KEYS]
    if bad:
        raise QueryError(f"group_by must be among {', '.join(GROUP_KEYS)}; got {', '.join(bad)}")
    tzinfo = zone(tz)
    cols = {"device": UsageRecord.device, "agent": UsageRecord.agent_id, "session": UsageRecord.session_id}
    select, group = [], []
    for g in group_by:
        if g == "model":
            select += [UsageRecord.provider, UsageRecord.model]
            group += [UsageRecord.provider, UsageRecord.model]
        elif g == "day":
            slot = UsageRecord.ts - Expression(UsageRecord.ts, OP.MOD, SLOT_MS)  # peewee's % means LIKE
            select.append(slot.alias("slot"))
            group.append(SQL("slot"))
        else:
            select.append(cols[g])
            group.append(cols[g])
    cost = fn.COALESCE(UsageRecord.priced_usd, UsageRecord.cost_usd)
    sums = [fn.SUM(UsageRecord.input_tokens), fn.SUM(UsageRecord.output_tokens),
            fn.SUM(UsageRecord.cache_read_tokens), fn.SUM(UsageRecord.cache_write_tokens),
            fn.SUM(UsageRecord.total_tokens), fn.COUNT(UsageRecord.id),
            fn.SUM(Case(None, [(UsageRecord.failed == True, 1)], 0)),  # noqa: E712 - peewee expression
            fn.SUM(fn.COALESCE(cost, 0)), fn.SUM(Case(None, [(cost.is_null(False), 1)], 0)),
            fn.SUM(Case(None, [(cost.is_null(), UsageRecord.total_tokens)], 0))]
    q = UsageRecord.select(*select, *sums)
    if since_ms is not None:
        q = q.where(UsageRecord.ts >= since_ms)
    if until_ms is not None:
        q = q.where(UsageRecord.ts < until_ms)
    if device:
        q = q.where(UsageRecord.device == device)
    if group:
        q = q.group_by(*group)
    out: dict[tuple, UsageRow] = {}
    for row in q.tuples():
        key, i = {}, 0
        for g in group_by:
            if g == "model":
                provider, model = row[i] or "", row[i + 1] or ""
                key["model"] = f"{provider}/{model}" if provider else model
                i += 2
            elif g == "day":
                key["day"] = local_day(int(row[i]), tzinfo)
                i += 1
            else:
                key[g] = row[i] or ""
                i += 1
        vals = [v or 0 for v in row[i:]]
        r = UsageRow(key, *[int(v) for v in vals[:7]], float(vals[7]), int(vals[8]), int(vals[9]))
        k = tuple(key.values())
        if k in out:
            out[k].add(r)
        else:
            out[k] = r
    if not group_by and not out:
        out[()] = UsageRow({})
    return [out[k] for k in sorted(out)]


@dataclass(frozen=True)
class CostTotals:
    """Fleet cost over a time range: USD of priced records, and tokens left unpriced."""

    cost_usd: float
    priced_records: int
    unpriced_tokens: int
    total_tokens: int


def cost_between(start_ms: int, end_ms: int) -> CostTotals:
    """Cost of the hours starting in ``[start_ms, end_ms)`` (the hourly rollup; cheap)."""
    q = UsageHourly.select(fn.SUM(UsageHourly.cost_usd), fn.SUM(UsageHourly.priced_records),
                           fn.SUM(UsageHourly.unpriced_tokens), fn.SUM(UsageHourly.total_tokens)).where(
        (UsageHourly.hour_ms >= start_ms) & (UsageHourly.hour_ms < end_ms))
    usd, priced, unpriced, total = q.tuples().get()
    return CostTotals(float(usd or 0.0), int(priced or 0), int(unpriced or 0), int(total or 0))


WINDOWS_MS = {"1h": 3_600_000, "6h": 6 * 3_600_000, "24h": 86_400_000, "7d": 7 * 86_400_000,
              "30d": 30 * 86_400_000}
"""Sample windows the API accepts (name -> milliseconds back from now)."""

SAMPLE_FIELDS = ("ts", "cpu_pct", "mem_used_bytes", "mem_total_bytes", "mem_pct", "disk_used_bytes",
                 "disk_total_bytes", "disk_pct", "swap_pct", "net_rx_bps", "net_tx_bps", "load1", "load5",
                 "load15", "uptime_s", "openclaw_up")


def samples_window(device_id: str, window: str, now_ms: int, limit: int = 5000) -> dict:
    """Samples of one device over a window back from ``now_ms``.

    Reads raw samples for now; the charts' tier chooser (rollups) will answer here once it exists,
    so the API and the charts pick the same tier.

    Returns:
        ``{"device_id", "window", "tier": "raw", "since_ms", "samples": [{field: value}]}``
        with the fields of :data:`SAMPLE_FIELDS` (units as in ``shared.schemas.Telemetry``), oldest first,
        at most ``limit`` (the newest).

    Raises:
        QueryError: unknown window.
    """
    if window not in WINDOWS_MS:
        raise QueryError(f"window must be one of {', '.join(WINDOWS_MS)}")
    since = now_ms - WINDOWS_MS[window]
    cols = [getattr(Sample, f) for f in SAMPLE_FIELDS]
    rows = list(Sample.select(*cols).where((Sample.device == device_id) & (Sample.ts >= since))
                .order_by(Sample.ts.desc()).limit(limit).dicts())
    rows.reverse()
    return {"device_id": device_id, "window": window, "tier": "raw", "since_ms": since, "samples": rows}


def status_events(device_id: str, limit: int = 200, before_ms: int | None = None) -> list[dict]:
    """A device's availability changes, newest first: ``[{"ts", "state", "reason"}]`` (ts epoch ms)."""
    q = StatusEvent.select(StatusEvent.ts, StatusEvent.state, StatusEvent.reason).where(StatusEvent.device == device_id)
    if before_ms is not None:
        q = q.where(StatusEvent.ts < before_ms)
    return list(q.order_by(StatusEvent.ts.desc(), StatusEvent.id.desc()).limit(limit).dicts())
