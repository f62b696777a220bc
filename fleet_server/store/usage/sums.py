"""The one place that sums token usage: every view that shows tokens or cost asks :func:`usage`.

The overview tiles and rows, the device page, the tokens page and its CSV, the REST API
(``/api/v1/usage`` and the devices' ``tokens_total``), ``/metrics`` and budget alerts all call
:func:`usage`, so they show the same figure for the same question.

**The question**: usage summed by any of ``device`` / ``agent`` / ``model`` / ``session`` / ``day``
over ``[start_ms, end_ms)``, with ``day`` meaning a calendar day in a named IANA zone, optionally
restricted to some devices, agents or models::

    usage()                                          # all time, one row: the fleet
    usage(["device"], start, end)                    # one row per device with usage in the range
    usage(["agent"], start, end, devices=["alpha"])  # agents of one device
    usage(["day"], start, end, "Asia/Kolkata")       # one row per local day
    usage((), start, end, agents=[("alpha", "main")])  # one agent's total (e.g. a budget)

**Identity**: an agent is ``(device, agent id)`` — two machines' ``main`` agents are two agents — so
grouping by ``agent`` (or ``session``) always groups by ``device`` too, and rows carry both keys.
``model`` is ``provider/model`` (or ``model`` when the provider is empty).

**Units**: tokens; ``cost_usd`` US dollars of the *priced* messages (a price rule, else the cost
OpenClaw recorded); ``unpriced_tokens`` are tokens of messages with neither — unpriced is never
$0. Times are epoch milliseconds UTC; ranges are half-open.

**Exactness**: usage is stored per message (``UsageRecord``, kept 400 days by default), per device
and UTC hour (``UsageHourly``) and per device for all time (``UsageTotal``), all written in one
transaction. Sums by device and/or day read the hourly rollup for every UTC hour that lies wholly
inside the range and inside one local day, and the records for the rest (the partial hours at the
range's ends, and the hour a local midnight cuts in half-hour and 45-minute zones such as
Asia/Kolkata or America/St_Johns). All-time sums by device read ``UsageTotal``. Sums by agent,
model or session read the records (the rollups do not keep those keys), so they reach back as far
as usage records are kept. Local days come from :mod:`zoneinfo`: a DST day is 23 or 25 hours.
Record-level day buckets are 15-minute slots, exact for every UTC offset in use since 1972.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass, field, fields
from datetime import datetime, timedelta
from decimal import Decimal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from peewee import SQL, Case, fn

from fleet_server.store.models import AgentRun, UsageHourly, UsageRecord, UsageTotal
from fleet_server.store.sql import QueryError, total

HOUR_MS = 3_600_000
SLOT_MS = 15 * 60_000
GROUP_KEYS = ("device", "agent", "model", "session", "day")
"""What usage can be grouped by."""


@dataclass
class UsageSums:
    """Summed usage of one group (``key``: its group values, ``{}`` for a grand total).

    ``messages`` counts assistant messages, ``error_messages`` those with ``stopReason: "error"`` (one per
    failed model-call attempt); token fields are token counts; ``cost_usd`` is USD of the
    ``priced_messages``; ``unpriced_tokens`` are tokens with no price (never counted as $0).
    ``failed_turns`` counts the turns (OpenClaw runs started in the range) that ended without a reply,
    once per turn however many error messages it left, from the runs the agents report
    (:mod:`fleet_server.store.sessions`); agents that report no runs add none.
    """

    messages: int = 0
    input_tokens: int = 0
    output_tokens: int = 0
    cache_read_tokens: int = 0
    cache_write_tokens: int = 0
    total_tokens: int = 0
    error_messages: int = 0
    cost_usd: float = 0.0
    priced_messages: int = 0
    unpriced_tokens: int = 0
    failed_turns: int = 0
    key: dict[str, str] = field(default_factory=dict)

    def add(self, other: UsageSums) -> UsageSums:
        """Add ``other``'s sums into self (in place; the key stays) and return self."""
        for name in ALL_SUMS:
            setattr(self, name, getattr(self, name) + getattr(other, name))
        return self

    @property
    def cost_or_none(self) -> float | None:
        """``cost_usd``, or None when tokens were used and nothing was priced (unpriced, not $0)."""
        return None if not self.priced_messages and self.total_tokens else self.cost_usd

    def as_json(self) -> dict:
        """The REST API / CSV form: key fields first, then the sums (``cost_usd`` as :attr:`cost_or_none`)."""
        d = asdict(self)
        key = d.pop("key")
        d["cost_usd"] = self.cost_or_none
        return {**key, **d}

    @classmethod
    def of_record(cls, r: dict, cost: float | None) -> UsageSums:
        """Sums of one usage record row (as stored in ``UsageRecord``) whose cost is ``cost``
        (None: unpriced)."""
        return cls(1, r["input_tokens"], r["output_tokens"], r["cache_read_tokens"], r["cache_write_tokens"],
                   r["total_tokens"], int(bool(r.get("failed"))), cost or 0.0, int(cost is not None),
                   0 if cost is not None else r["total_tokens"])

    @classmethod
    def of_stored(cls, values: Iterable[object]) -> UsageSums:
        """Sums from SQL values in :data:`SUM_FIELDS` order, whatever the database returns: NULL, a
        float (SQLite's ``TOTAL``), a Decimal (PostgreSQL's ``SUM``); non-finite values count 0."""
        out = [_finite(v) for v in values]
        return cls(*[v if name == "cost_usd" else int(v) for name, v in zip(SUM_FIELDS, out, strict=True)])


SUM_FIELDS = tuple(f.name for f in fields(UsageSums) if f.name not in ("key", "failed_turns"))
"""The sums the usage ledger stores (records, hourly and all-time rollups), in their column order."""
ALL_SUMS = (*SUM_FIELDS, "failed_turns")
"""Every sum of a row: the stored ones and the failed turns counted from the runs."""
ROLLUP_COLUMNS = {"messages": "records", "priced_messages": "priced_records", "error_messages": "failed_turns"}
"""UsageSums field -> rollup column, where the names differ (a stored record is one message)."""


def rollup_column(name: str) -> str:
    """The ``UsageHourly`` / ``UsageTotal`` column of a :data:`SUM_FIELDS` name."""
    return ROLLUP_COLUMNS.get(name, name)


def _finite(v: object) -> float | int:
    if v is None or isinstance(v, bool):
        return 0
    if isinstance(v, int):
        return v
    if isinstance(v, Decimal):  # PostgreSQL's SUM(bigint): exact
        return int(v) if v.is_finite() and v == v.to_integral_value() else (float(v) if v.is_finite() else 0)
    try:
        f = float(v)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return 0
    return f if math.isfinite(f) else 0


# --- zones and calendar days ---------------------------------------------------------------------


def zone(name: str | ZoneInfo | None) -> ZoneInfo:
    """The IANA zone ``name`` (``"Europe/Berlin"``); UTC for None or ``""``.

    Raises:
        QueryError: an unknown zone name (the message says what is expected).
    """
    if isinstance(name, ZoneInfo):
        return name
    if not name or name.upper() == "UTC":
        return ZoneInfo("UTC")
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        raise QueryError(f"unknown time zone {name!r}; use an IANA name such as 'Europe/Berlin'") from None


def local_day(ts_ms: int, tz: ZoneInfo) -> str:
    """``YYYY-MM-DD`` of an epoch-ms instant in ``tz``."""
    return datetime.fromtimestamp(ts_ms / 1000, tz).strftime("%Y-%m-%d")


def day_start_ms(day: str, tz: ZoneInfo) -> int:
    """Epoch ms of local midnight starting ``day`` (``YYYY-MM-DD``) in ``tz``.

    Raises:
        QueryError: ``day`` is not a ``YYYY-MM-DD`` date.
    """
    try:
        d = datetime.strptime(day, "%Y-%m-%d")
    except (TypeError, ValueError):
        raise QueryError(f"bad date {day!r}; use YYYY-MM-DD, e.g. 2026-12-07") from None
    return int(d.replace(tzinfo=tz).timestamp() * 1000)


def day_bounds_ms(tz: ZoneInfo, offset_days: int = 0, now_ms: int | None = None) -> tuple[int, int]:
    """``(start, end)`` epoch ms of a local calendar day in ``tz``: 0 today, -1 yesterday (today as of
    ``now_ms``, default the clock). Midnight to midnight, so a DST day is 23 or 25 hours long."""
    now = datetime.now(tz) if now_ms is None else datetime.fromtimestamp(now_ms / 1000, tz)
    day = (now + timedelta(days=offset_days)).date()
    nxt = day + timedelta(days=1)
    return (int(datetime(day.year, day.month, day.day, tzinfo=tz).timestamp() * 1000),
            int(datetime(nxt.year, nxt.month, nxt.day, tzinfo=tz).timestamp() * 1000))


def month_bounds_ms(tz: ZoneInfo, now_ms: int | None = None) -> tuple[int, int]:
    """``(start, end)`` epoch ms of the local calendar month containing ``now_ms`` in ``tz``."""
    now = datetime.now(tz) if now_ms is None else datetime.fromtimestamp(now_ms / 1000, tz)
    nxt = datetime(now.year + now.month // 12, now.month % 12 + 1, 1, tzinfo=tz)
    return int(datetime(now.year, now.month, 1, tzinfo=tz).timestamp() * 1000), int(nxt.timestamp() * 1000)


def _midnights(start_ms: int, end_ms: int, tz: ZoneInfo) -> list[int]:
    """Local midnights strictly inside ``(start_ms, end_ms)``, ascending."""
    out = []
    t = day_bounds_ms(tz, 0, start_ms)[1]
    while t < end_ms:
        out.append(t)
        t = day_bounds_ms(tz, 0, t)[1]
    return out


# --- the entry point ---------------------------------------------------------------------------------


def usage(group_by: Sequence[str] = (), start_ms: int | None = None, end_ms: int | None = None,
          tz: str | ZoneInfo | None = None, *, devices: Iterable[str] | None = None,
          agents: Iterable[tuple[str, str]] | None = None, models: Iterable[str] | None = None) -> list[UsageSums]:
    """Usage summed per group over the records with ``start_ms <= ts < end_ms``.

    Args:
        group_by: any of :data:`GROUP_KEYS` (empty: one row, the grand total, also when nothing was
            used). ``agent`` and ``session`` imply ``device``.
        start_ms, end_ms: the range, epoch ms UTC (None: unbounded on that side).
        tz: IANA zone of ``day`` keys (default UTC).
        devices: only these device ids (None: all; empty: nothing).
        agents: only these ``(device id, agent id)`` pairs.
        models: only these models (``provider/model`` or ``model``, as the ``model`` key shows them).

    Returns:
        :class:`UsageSums` rows sorted by key, key values strings (``day``: ``YYYY-MM-DD``); groups
        without usage are absent.

    Raises:
        QueryError: an unknown group key or zone name.
    """
    bad = [g for g in group_by if g not in GROUP_KEYS]
    if bad:
        raise QueryError(f"group_by must be among {', '.join(GROUP_KEYS)}; got {', '.join(bad)}")
    keys = [g for g in GROUP_KEYS if g in group_by or (g == "device" and {"agent", "session"} & set(group_by))]
    tzinfo = zone(tz)
    devices = None if devices is None else sorted(set(devices))
    agents = None if agents is None else sorted(set(agents))
    models = None if models is None else sorted(set(models))
    out: dict[tuple, UsageSums] = {}
    if set(keys) <= {"device", "day"} and agents is None and models is None:
        if start_ms is None and end_ms is None and "day" not in keys:
            _from_totals(out, keys, devices)
        else:
            _from_rollup(out, keys, start_ms, end_ms, tzinfo, devices)
    else:
        _from_records(out, keys, [(start_ms, end_ms)], tzinfo, devices, agents, models)
    _add_failed_turns(out, keys, start_ms, end_ms, tzinfo, devices, agents, models)
    if not keys and not out:
        out[()] = UsageSums()
    return [out[k] for k in sorted(out)]


def total_usage(start_ms: int | None = None, end_ms: int | None = None, **filters: object) -> UsageSums:
    """The one row of :func:`usage` without grouping (same arguments as its keywords)."""
    return usage((), start_ms, end_ms, **filters)[0]  # type: ignore[arg-type]


def by_device(start_ms: int | None = None, end_ms: int | None = None,
              devices: Iterable[str] | None = None) -> dict[str, UsageSums]:
    """``{device id: sums}`` of :func:`usage` grouped by device (devices without usage absent)."""
    return {r.key["device"]: r for r in usage(["device"], start_ms, end_ms, devices=devices)}


def _put(out: dict[tuple, UsageSums], key: dict[str, str], sums: UsageSums) -> None:
    k = tuple(key.values())
    if k in out:
        out[k].add(sums)
    else:
        sums.key = key
        out[k] = sums


def _rollup_cols(model: type) -> list:
    return [total(getattr(model, rollup_column(n))) for n in SUM_FIELDS]


def _from_totals(out: dict[tuple, UsageSums], keys: list[str], devices: list[str] | None) -> None:
    q = UsageTotal.select(UsageTotal.device, *_rollup_cols(UsageTotal))
    if devices is not None:
        q = q.where(UsageTotal.device.in_(devices))
    for row in q.group_by(UsageTotal.device).tuples().coerce(False):
        _put(out, {"device": row[0]} if keys else {}, UsageSums.of_stored(row[1:]))


def _from_rollup(out: dict[tuple, UsageSums], keys: list[str], start_ms: int | None, end_ms: int | None,
                 tz: ZoneInfo, devices: list[str] | None) -> None:
    """Whole hours from the hourly rollup, the rest (edges, hours a local midnight cuts) from records."""
    if start_ms is None or end_ms is None:  # open ends: bound them by what is stored
        q = UsageHourly.select(fn.MIN(UsageHourly.hour_ms), fn.MAX(UsageHourly.hour_ms))
        lo, hi = q.tuples().get()
        if lo is None:
            return
        start_ms = int(lo) if start_ms is None else start_ms
        end_ms = int(hi) + HOUR_MS if end_ms is None else end_ms
    if start_ms >= end_ms:
        return
    first = -(-start_ms // HOUR_MS) * HOUR_MS  # first hour starting at or after start
    last = end_ms - end_ms % HOUR_MS  # hours starting before this lie wholly before end
    if first >= last:  # within one or two hours: all from records
        _from_records(out, keys, [(start_ms, end_ms)], tz, devices, None, None)
        return
    cut_hours = sorted({m - m % HOUR_MS for m in _midnights(first, last, tz) if m % HOUR_MS}) if "day" in keys else []
    edges = [(start_ms, first), (last, end_ms)] + [(h, h + HOUR_MS) for h in cut_hours]
    _from_records(out, keys, [(a, b) for a, b in edges if a < b], tz, devices, None, None)
    cols = [UsageHourly.hour_ms] if "day" in keys else []
    if "device" in keys:
        cols.insert(0, UsageHourly.device)
    where = (UsageHourly.hour_ms >= first) & (UsageHourly.hour_ms < last)
    if cut_hours:
        where &= UsageHourly.hour_ms.not_in(cut_hours)
    if devices is not None:
        where &= UsageHourly.device.in_(devices)
    q = UsageHourly.select(*cols, *_rollup_cols(UsageHourly)).where(where)
    if cols:
        q = q.group_by(*cols)
    for row in q.tuples().coerce(False):
        key = {}
        if "device" in keys:
            key["device"] = row[0]
        if "day" in keys:
            key["day"] = local_day(int(row[len(cols) - 1]), tz)
        _put(out, key, UsageSums.of_stored(row[len(cols):]))


def _from_records(out: dict[tuple, UsageSums], keys: list[str], ranges: list[tuple[int | None, int | None]],
                  tz: ZoneInfo, devices: list[str] | None, agents: list[tuple[str, str]] | None,
                  models: list[str] | None) -> None:
    """Sums of the records with ``ts`` in any of ``ranges`` (``(lo, hi)``, None: open), grouped by ``keys``."""
    if not ranges:
        return
    r = UsageRecord
    cols: list = []
    for g in keys:
        if g == "device":
            cols.append(r.device)
        elif g == "agent":
            cols.append(r.agent_id)
        elif g == "session":
            cols.append(r.session_id)
        elif g == "model":
            cols += [r.provider, r.model]
        else:  # day: 15-minute slots (integer division on SQLite and PostgreSQL), put into local days below
            cols.append(((r.ts / SLOT_MS) * SLOT_MS).alias("slot"))
    in_range = None
    for lo, hi in ranges:
        cond = None
        if lo is not None:
            cond = r.ts >= lo
        if hi is not None:
            cond = (r.ts < hi) if cond is None else cond & (r.ts < hi)
        if cond is None:
            in_range = None
            break
        in_range = cond if in_range is None else in_range | cond
    where = [] if in_range is None else [in_range]
    if devices is not None:
        where.append(r.device.in_(devices))
    if agents is not None:
        pairs = [(r.device == d) & (r.agent_id == a) for d, a in agents]
        where.append(_any(pairs))
    if models is not None:
        names = [(r.provider == m.split("/", 1)[0]) & (r.model == m.split("/", 1)[1]) if "/" in m
                 else (r.provider == "") & (r.model == m) for m in models]
        where.append(_any(names))
    cost = fn.COALESCE(r.priced_usd, r.cost_usd)  # as store.usage.prices.effective_cost
    sums = [fn.COUNT(r.id), total(r.input_tokens), total(r.output_tokens), total(r.cache_read_tokens),
            total(r.cache_write_tokens), total(r.total_tokens), total(Case(None, [(r.failed == True, 1)], 0)),  # noqa: E712
            total(fn.COALESCE(cost, 0)), total(Case(None, [(cost.is_null(False), 1)], 0)),
            total(Case(None, [(cost.is_null(), r.total_tokens)], 0))]
    q = r.select(*cols, *sums)
    for w in where:
        q = q.where(w)
    if cols:
        q = q.group_by(*[SQL("slot") if getattr(c, "_alias", None) == "slot" else c for c in cols])
    for row in q.tuples().coerce(False):
        key, n = _row_key(row, keys, tz)
        _put(out, key, UsageSums.of_stored(row[n:]))


def _add_failed_turns(out: dict[tuple, UsageSums], keys: list[str], start_ms: int | None, end_ms: int | None,
                      tz: ZoneInfo, devices: list[str] | None, agents: list[tuple[str, str]] | None,
                      models: list[str] | None) -> None:
    """Add the failed turns (runs started in the range that ended without a reply) to the rows, grouped by
    ``keys`` like the usage (``model``: the run's newest model)."""
    r = AgentRun
    cols: list = []
    for g in keys:
        cols += {"device": [r.device], "agent": [r.agent_id], "session": [r.session_id],
                 "model": [r.provider, r.model]}.get(g, [((r.started_ms / SLOT_MS) * SLOT_MS).alias("slot")])
    q = r.select(*cols, fn.COUNT(r.id)).where(r.status == "failed")
    if start_ms is not None:
        q = q.where(r.started_ms >= start_ms)
    if end_ms is not None:
        q = q.where(r.started_ms < end_ms)
    if devices is not None:
        q = q.where(r.device.in_(devices))
    if agents is not None:
        q = q.where(_any([(r.device == d) & (r.agent_id == a) for d, a in agents]))
    if models is not None:
        q = q.where(_any([(r.provider == m.split("/", 1)[0]) & (r.model == m.split("/", 1)[1]) if "/" in m
                          else (r.provider == "") & (r.model == m) for m in models]))
    if cols:
        q = q.group_by(*[SQL("slot") if getattr(c, "_alias", None) == "slot" else c for c in cols])
    for row in q.tuples():
        key, i = _row_key(row, keys, tz)
        _put(out, key, UsageSums(failed_turns=int(row[i])))


def _row_key(row: tuple, keys: list[str], tz: ZoneInfo) -> tuple[dict[str, str], int]:
    """The group key of a result row whose first columns are the group columns (``model`` takes two,
    provider and model; ``day`` one 15-minute slot), and the index of its first sum column."""
    key, i = {}, 0
    for g in keys:
        if g == "model":
            provider, model = row[i] or "", row[i + 1] or ""
            key["model"] = f"{provider}/{model}" if provider else model
            i += 2
        elif g == "day":
            key["day"] = local_day(int(row[i]), tz)
            i += 1
        else:
            key[g] = row[i] or ""
            i += 1
    return key, i


def _any(conds: list) -> object:
    """OR of peewee conditions (an always-false one for an empty list)."""
    if not conds:
        return SQL("1 = 0")
    out = conds[0]
    for c in conds[1:]:
        out |= c
    return out
