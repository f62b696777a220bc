"""Tokens page (``/tokens``): what the fleet spent on LLM tokens, per device, agent, model and day.

- Filters: device, tag, agent and model (an agent is a device's agent: ``main`` on two machines is
  two agents), all in the URL so a view can be linked.
- Totals of the chosen date range; "Exact numbers" shows exact integers and the cost to 1/10000 of a
  cent (hover any rounded figure for the exact one).
- A chart per day, stacked by device, agent or model (switchable), and a table grouped by device,
  agent, model or day: input, output, cache-read and cache-write tokens, messages, failed turns (turns
  that ended without a reply, counted once), error messages (assistant messages with ``stopReason:
  "error"``, one per failed attempt) and cost; devices show their display name beside
  the id. CSV export of the table.
- Days are calendar days in the viewer's zone (:mod:`fleet_server.dashboard.parts.timezone`;
  ``?tz=`` overrides). Every figure comes from :func:`fleet_server.store.usage.sums.usage`.
- Cost: rule price, else OpenClaw's recorded cost, else "unpriced (N tokens)" — never $0.
- The price table below (admins edit; every change re-prices history).
"""

from __future__ import annotations

from datetime import datetime, timedelta
from urllib.parse import urlencode
from zoneinfo import ZoneInfo

from nicegui import ui

from fleet_server.dashboard.pages.prices import render_prices
from fleet_server.dashboard.parts.format import cost_h, tokens_h
from fleet_server.dashboard.parts.timezone import Viewer, follow_browser_zone, initial_zone, zone_note
from fleet_server.dashboard.parts.usage_csv import to_csv
from fleet_server.state import DeviceView, FleetState
from fleet_server.store.sql import QueryError
from fleet_server.store.usage import sums
from fleet_server.store.usage.sums import UsageSums

GROUPS = {"device": "Device", "agent": "Agent", "model": "Model", "day": "Day"}
TOKEN_COLS = (("input_tokens", "Input"), ("output_tokens", "Output"), ("cache_read_tokens", "Cache read"),
              ("cache_write_tokens", "Cache write"), ("total_tokens", "Total"))
AGENT_SEP = "/"
"""Separator of an agent's URL value: ``<device id>/<agent id>`` (device ids never contain it)."""


def days_note(viewer: Viewer) -> str:
    """``"Days in Asia/Kolkata (your browser's zone)."``"""
    return zone_note(viewer).replace("Times in", "Days in")


def num(n: int, exact: bool) -> str:
    """Exact ``12,345`` or rounded ``12.3k``."""
    return f"{n:,}" if exact else tokens_h(n)


def key_label(r: UsageSums, group: str, names: dict[str, str]) -> str:
    """What a row of ``group`` is called: ``"Alpha box (alpha)"`` for a device, ``"main · Alpha box"`` for
    an agent, the model or the day otherwise (``"(none)"`` when empty)."""
    if group == "device":
        d = r.key.get("device", "")
        return f"{names[d]} ({d})" if names.get(d, d) != d else d or "(none)"
    if group == "agent":
        d = r.key.get("device", "")
        return f"{r.key.get('agent') or '(none)'} · {names.get(d, d)}"
    return r.key.get(group) or "(none)"


def _summary(total: UsageSums, exact: bool) -> None:
    with ui.row().classes("w-full gap-4"):
        for title, text, tip in (
                ("Tokens", num(total.total_tokens, exact), f"{total.total_tokens:,} tokens"),
                ("Cost", cost_h(total, exact), cost_h(total, True)),
                ("Messages", f"{total.messages:,}", "assistant messages"),
                ("Failed turns", f"{total.failed_turns:,}", "turns that ended without a reply (counted once)"),
                ("Error messages", f"{total.error_messages:,}",
                 'assistant messages with stopReason "error": one per failed attempt, retries included')):
            with ui.card().classes("p-3 min-w-0 grow sm:grow-0 sm:min-w-48"):
                ui.label(title).classes("text-xs uppercase text-gray-500")
                ui.label(text).classes("text-xl font-semibold break-words").tooltip(tip).props(
                    f'data-testid="total-{title.lower().replace(" ", "-")}"')
        with ui.card().classes("p-3 min-w-0 grow sm:grow-0 sm:min-w-64"):
            ui.label("Breakdown").classes("text-xs uppercase text-gray-500")
            ui.label(" · ".join(f"{label.lower()} {num(getattr(total, k), exact)}" for k, label in TOKEN_COLS[:4])
                     ).classes("text-sm")


def chart_options(rows: list[UsageSums], stack: str, days: list[str], names: dict[str, str]) -> dict:
    """ECharts options: one stacked bar series per ``stack`` value, x = days, y = total tokens."""
    series: dict[str, dict[str, int]] = {}
    for r in rows:
        series.setdefault(key_label(r, stack, names), {})[r.key["day"]] = r.total_tokens
    top = sorted(series, key=lambda k: -sum(series[k].values()))
    return {
        "tooltip": {"trigger": "axis", "axisPointer": {"type": "shadow"}, "confine": True},
        "legend": {"type": "scroll", "bottom": 0},
        "grid": {"left": 8, "right": 8, "top": 16, "bottom": 48, "containLabel": True},
        "xAxis": {"type": "category", "data": days, "axisLabel": {"hideOverlap": True}},
        "yAxis": {"type": "value", "name": "tokens"},
        "series": [{"name": name, "type": "bar", "stack": "tokens", "emphasis": {"focus": "series"},
                    "data": [series[name].get(d, 0) for d in days]} for name in top],
    }


def _days(start: str, end: str) -> list[str]:
    d0, d1 = datetime.strptime(start, "%Y-%m-%d"), datetime.strptime(end, "%Y-%m-%d")
    return [(d0 + timedelta(days=i)).strftime("%Y-%m-%d") for i in range((d1 - d0).days + 1)]


def selected_devices(devices: list[DeviceView], device: str, tag: str) -> list[str] | None:
    """The device ids the device and tag filters leave (None: no filter)."""
    if not device and not tag:
        return None
    return [d.device_id for d in devices if (not device or d.device_id == device)
            and (not tag or tag in [t.strip() for t in d.tags.split(",")])]


def render_tokens(state: FleetState, tz: str = "", start_day: str = "", end_day: str = "", device: str = "",
                  tag: str = "", agent: str = "", model: str = "") -> None:
    """Build the tokens page into the current page. ``tz``: IANA zone (default: the viewer's);
    ``start_day``/``end_day``: ``YYYY-MM-DD`` (default: the last 7 days); the filters as in the URL."""
    viewer = {"zone": initial_zone()}
    if tz:
        try:
            viewer["zone"] = Viewer(sums.zone(tz), "url")
        except QueryError as exc:
            ui.notify(f"{exc}; showing {viewer['zone'].tz.key}", type="warning")
    now = datetime.now(viewer["zone"].tz)
    opts = {"from": start_day or (now - timedelta(days=6)).strftime("%Y-%m-%d"),
            "to": end_day or now.strftime("%Y-%m-%d"), "device": device, "tag": tag, "agent": agent,
            "model": model, "group": "device", "stack": "device", "exact": False}
    snapshot = state.snapshot()
    names = {d.device_id: d.name for d in snapshot}
    tags = sorted({t.strip() for d in snapshot for t in d.tags.split(",") if t.strip()}, key=str.lower)

    with ui.column().classes("w-full p-4 gap-3 min-w-0"):
        with ui.row().classes("items-center w-full gap-3"):
            ui.label("Tokens and cost").classes("text-2xl font-semibold")
            ui.link("by session →", "/sessions?sort=cost").classes("text-sm").mark("tokens-sessions")
            ui.space()
            tz_label = ui.label().classes("text-xs text-gray-500").props('data-testid="tz-label"')
        with ui.row().classes("items-end gap-3 w-full"):
            start = ui.input("From", value=opts["from"]).props('type=date data-testid="from"').classes("w-40")
            end = ui.input("To", value=opts["to"]).props('type=date data-testid="to"').classes("w-40")
            for label, back in (("Today", 0), ("7 days", 6), ("30 days", 29)):
                ui.button(label, on_click=lambda _e, b=back: preset(b)).props("flat dense")
            ui.switch("Exact numbers", on_change=lambda e: (opts.update(exact=e.value), body.refresh())).props(
                'data-testid="exact"')
        with ui.row().classes("items-end gap-3 w-full"):
            device_opts = {d.device_id: key_label(UsageSums(key={"device": d.device_id}), "device", names)
                           for d in snapshot}
            filters = {
                "device": ui.select({"": "all devices", **device_opts}, value=device if device in names else "",
                                    label="Device").classes("w-56"),
                "tag": ui.select({"": "any tag", **{t: t for t in tags}}, value=tag if tag in tags else "",
                                 label="Tag").classes("w-40"),
                "agent": ui.select({"": "all agents"}, value="", label="Agent").classes("w-56"),
                "model": ui.select({"": "all models"}, value="", label="Model").classes("w-56"),
            }
            for k, sel in filters.items():
                sel.props(f'dense data-testid="filter-{k}"')
        body_box = ui.column().classes("w-full gap-3 min-w-0")
        render_prices(lambda _n: (state.note_usage(None), body.refresh()))

    def preset(back: int) -> None:
        today = datetime.now(viewer["zone"].tz)
        start.value = (today - timedelta(days=back)).strftime("%Y-%m-%d")
        end.value = today.strftime("%Y-%m-%d")

    def range_ms(tzinfo: ZoneInfo) -> tuple[int, int]:
        since = sums.day_start_ms(start.value, tzinfo)
        until = sums.day_start_ms(end.value, tzinfo)
        return since, sums.day_bounds_ms(tzinfo, 0, until)[1]

    def query(group_by: list[str], since: int, until: int) -> list[UsageSums]:
        agents = None
        if opts["agent"]:
            dev, _, agent_id = opts["agent"].partition(AGENT_SEP)
            agents = [(dev, agent_id)]
        return sums.usage(group_by, since, until, viewer["zone"].tz,
                          devices=selected_devices(snapshot, opts["device"], opts["tag"]), agents=agents,
                          models=[opts["model"]] if opts["model"] else None)

    def update_url() -> None:
        params = {k: v for k, v in (("start", start.value), ("end", end.value), ("device", opts["device"]),
                                    ("tag", opts["tag"]), ("agent", opts["agent"]), ("model", opts["model"])) if v}
        ui.run_javascript(f"history.replaceState(null, '', '/tokens?' + {urlencode(params)!r})")

    def choices(since: int, until: int) -> None:
        """Agent and model options of the range (under the device and tag filters)."""
        devs = selected_devices(snapshot, opts["device"], opts["tag"])
        agent_opts = {"": "all agents", **{f"{r.key['device']}{AGENT_SEP}{r.key['agent']}": key_label(r, "agent", names)
                                           for r in sums.usage(["agent"], since, until, devices=devs)}}
        model_opts = {"": "all models", **{r.key["model"]: r.key["model"] or "(none)"
                                           for r in sums.usage(["model"], since, until, devices=devs)}}
        for k, options in (("agent", agent_opts), ("model", model_opts)):
            if opts[k] and opts[k] not in options:
                options[opts[k]] = opts[k]
            if filters[k].options != options:
                filters[k].set_options(options, value=opts[k])

    @ui.refreshable
    def body() -> None:
        tzinfo = viewer["zone"].tz
        tz_label.text = days_note(viewer["zone"])
        try:
            since, until = range_ms(tzinfo)
        except QueryError as exc:
            ui.label(f"Pick a valid date range ({exc}).").classes("text-red-700")
            return
        if until <= since:
            ui.label("'To' is before 'From'.").classes("text-red-700")
            return
        update_url()
        choices(since, until)
        exact = opts["exact"]
        (total,) = query([], since, until)
        _summary(total, exact)
        with ui.card().classes("w-full p-3 min-w-0"):
            with ui.row().classes("items-center gap-2"):
                ui.label("Tokens per day, stacked by").classes("text-xs uppercase text-gray-500")
                ui.toggle({k: GROUPS[k] for k in ("device", "agent", "model")}, value=opts["stack"],
                          on_change=lambda e: (opts.update(stack=e.value), body.refresh())).props("dense")
            per_day = query(["day", opts["stack"]], since, until)
            ui.echart(chart_options(per_day, opts["stack"], _days(start.value, end.value), names)).classes(
                "w-full h-72").props('data-testid="tokens-chart"')
        group = opts["group"]
        rows = query([group], since, until)
        with ui.card().classes("w-full p-3 gap-2 min-w-0"):
            with ui.row().classes("items-center gap-2 w-full"):
                ui.label("Grouped by").classes("text-xs uppercase text-gray-500")
                ui.toggle(GROUPS, value=group, on_change=lambda e: (opts.update(group=e.value), body.refresh())
                          ).props('dense data-testid="group-toggle"').mark("group-toggle")
                ui.space()
                ui.button("Export CSV", on_click=lambda: ui.download.content(
                    to_csv(rows, list(rows[0].key) if rows else [group], names).encode(),
                    f"clawfleet-tokens-{group}-{start.value}-{end.value}.csv", "text/csv")).props(
                    'flat dense icon=download data-testid="csv"')
            columns = [{"name": "key", "label": GROUPS[group], "field": "key", "align": "left", "sortable": True}]
            columns += [{"name": k, "label": label, "field": k, "sortable": True} for k, label in TOKEN_COLS]
            columns += [{"name": "messages", "label": "Messages", "field": "messages", "sortable": True},
                        {"name": "failed_turns", "label": "Failed turns", "field": "failed_turns", "sortable": True},
                        {"name": "error_messages", "label": "Error messages", "field": "error_messages",
                         "sortable": True},
                        {"name": "cost", "label": "Cost", "field": "cost", "sortable": False}]
            table_rows = [{"id": "\x1f".join(r.key.values()), "key": key_label(r, group, names),
                           **{k: num(getattr(r, k), exact) for k, _ in TOKEN_COLS},
                           "messages": f"{r.messages:,}", "failed_turns": f"{r.failed_turns:,}",
                           "error_messages": f"{r.error_messages:,}",
                           "cost": cost_h(r, exact)} for r in rows]
            with ui.element("div").classes("w-full overflow-x-auto"):
                ui.table(columns=columns, rows=table_rows, row_key="id", pagination=50).classes("w-full").props(
                    'dense flat data-testid="tokens-table"').mark("tokens-table")
            if not rows:
                ui.label("No token usage in this range.").classes("text-gray-500")

    def set_filter(key: str, value: str | None) -> None:
        if opts[key] != (value or ""):
            opts[key] = value or ""
            body.refresh()

    for k, sel in filters.items():
        sel.on_value_change(lambda e, k=k: set_filter(k, e.value))
    opts["agent"], opts["model"] = agent, model  # kept even before the range's options are known
    start.on_value_change(lambda _e: body.refresh())
    end.on_value_change(lambda _e: body.refresh())
    with body_box:
        body()

    follow_browser_zone(viewer, body.refresh, tz_label, days_note)
