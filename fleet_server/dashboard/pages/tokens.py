"""Tokens page (``/tokens``): what the fleet spent on LLM tokens, per device, agent, model and day.

- Totals of the chosen date range; "Exact numbers" shows exact integers and the cost to 1/10000 of a
  cent (hover any rounded figure for the exact one).
- A chart per day, stacked by device, agent or model (switchable), and a table grouped by device,
  agent, model or day: input, output, cache-read and cache-write tokens, messages, failed turns
  (assistant messages with ``stopReason: "error"``) and cost. CSV export of the table.
- Days are calendar days in the viewer's time zone (the browser's, read once per page; ``?tz=`` overrides).
- Cost: rule price, else OpenClaw's recorded cost, else "unpriced (N tokens)" — never $0.
- The price table below (admins edit; every change re-prices history).
"""

from __future__ import annotations

from datetime import datetime, timedelta

from nicegui import ui

from fleet_server.dashboard.pages.prices import render_prices
from fleet_server.dashboard.parts.format import tokens_h
from fleet_server.dashboard.parts.usage_csv import to_csv
from fleet_server.state import FleetState
from fleet_server.store.usage import summary as queries
from fleet_server.store.usage.summary import UsageRow

GROUPS = {"device": "Device", "agent": "Agent", "model": "Model", "day": "Day"}
TOKEN_COLS = (("input_tokens", "Input"), ("output_tokens", "Output"), ("cache_read_tokens", "Cache read"),
              ("cache_write_tokens", "Cache write"), ("total_tokens", "Total"))


def cost_text(r: UsageRow, exact: bool = False) -> str:
    """``"$1.23"``, ``"unpriced (12,345 tokens)"`` or ``"$1.23 + unpriced (45 tokens)"``; never "$0" for unpriced."""
    parts = []
    if r.priced_messages and (r.cost_usd > 0 or not r.unpriced_tokens):  # a $0 beside unpriced tokens says nothing
        parts.append(f"${r.cost_usd:,.6f}" if exact else f"${r.cost_usd:,.2f}")
    if r.unpriced_tokens:
        parts.append(f"unpriced ({r.unpriced_tokens:,} tokens)")
    return " + ".join(parts) if parts else ("$0.000000" if exact else "$0.00")


def num(n: int, exact: bool) -> str:
    """Exact ``12,345`` or rounded ``12.3k``."""
    return f"{n:,}" if exact else tokens_h(n)


def _summary(total: UsageRow, exact: bool) -> None:
    with ui.row().classes("w-full gap-4"):
        for title, text, tip in (
                ("Tokens", num(total.total_tokens, exact), f"{total.total_tokens:,} tokens"),
                ("Cost", cost_text(total, exact), cost_text(total, True)),
                ("Messages", f"{total.messages:,}", "assistant messages"),
                ("Failed turns", f"{total.failed_turns:,}", 'assistant messages with stopReason "error"')):
            with ui.card().classes("p-3 min-w-48"):
                ui.label(title).classes("text-xs uppercase text-gray-500")
                ui.label(text).classes("text-xl font-semibold").tooltip(tip).props(
                    f'data-testid="total-{title.lower().replace(" ", "-")}"')
        with ui.card().classes("p-3 min-w-64"):
            ui.label("Breakdown").classes("text-xs uppercase text-gray-500")
            ui.label(" · ".join(f"{label.lower()} {num(getattr(total, k), exact)}" for k, label in TOKEN_COLS[:4])
                     ).classes("text-sm")


def chart_options(rows: list[UsageRow], stack: str, days: list[str]) -> dict:
    """ECharts options: one stacked bar series per ``stack`` value, x = days, y = total tokens."""
    series: dict[str, dict[str, int]] = {}
    for r in rows:
        series.setdefault(r.key.get(stack, "") or "(none)", {})[r.key["day"]] = r.total_tokens
    top = sorted(series, key=lambda k: -sum(series[k].values()))
    return {
        "tooltip": {"trigger": "axis", "axisPointer": {"type": "shadow"}},
        "legend": {"type": "scroll", "bottom": 0},
        "grid": {"left": 60, "right": 16, "top": 16, "bottom": 48},
        "xAxis": {"type": "category", "data": days},
        "yAxis": {"type": "value", "name": "tokens"},
        "series": [{"name": name, "type": "bar", "stack": "tokens", "emphasis": {"focus": "series"},
                    "data": [series[name].get(d, 0) for d in days]} for name in top],
    }


def _days(start: str, end: str) -> list[str]:
    d0, d1 = datetime.strptime(start, "%Y-%m-%d"), datetime.strptime(end, "%Y-%m-%d")
    return [(d0 + timedelta(days=i)).strftime("%Y-%m-%d") for i in range((d1 - d0).days + 1)]


def render_tokens(state: FleetState, tz: str = "", start_day: str = "", end_day: str = "") -> None:
    """Build the tokens page into the current page. ``tz``: IANA zone (default: the browser's);
    ``start_day``/``end_day``: ``YYYY-MM-DD`` (default: the last 7 days)."""
    today = end_day or datetime.now().strftime("%Y-%m-%d")
    week_ago = start_day or (datetime.now() - timedelta(days=6)).strftime("%Y-%m-%d")
    opts = {"tz": tz or "UTC", "from": week_ago, "to": today, "group": "device", "stack": "device", "exact": False}

    with ui.column().classes("w-full p-4 gap-3"):
        with ui.row().classes("items-center w-full gap-3"):
            ui.label("Tokens and cost").classes("text-2xl font-semibold")
            ui.space()
            tz_label = ui.label().classes("text-xs text-gray-500").props('data-testid="tz-label"')
        with ui.row().classes("items-end gap-3 w-full"):
            start = ui.input("From", value=opts["from"]).props('type=date data-testid="from"').classes("w-40")
            end = ui.input("To", value=opts["to"]).props('type=date data-testid="to"').classes("w-40")
            for label, back in (("Today", 0), ("7 days", 6), ("30 days", 29)):
                ui.button(label, on_click=lambda _e, b=back: preset(b)).props("flat dense")
            ui.switch("Exact numbers", on_change=lambda e: (opts.update(exact=e.value), body.refresh())).props(
                'data-testid="exact"')
        body_box = ui.column().classes("w-full gap-3")
        render_prices(lambda _n: (state.load_from_db(), body.refresh()))

    def preset(back: int) -> None:
        now = datetime.now(queries.zone(opts["tz"]))
        start.value = (now - timedelta(days=back)).strftime("%Y-%m-%d")
        end.value = now.strftime("%Y-%m-%d")

    @ui.refreshable
    def body() -> None:
        tzinfo = queries.zone(opts["tz"])
        tz_label.text = f"Days in {opts['tz']}"
        try:
            since = queries.day_start_ms(start.value, tzinfo)
            until = queries.day_start_ms((datetime.strptime(end.value, "%Y-%m-%d") + timedelta(days=1))
                                         .strftime("%Y-%m-%d"), tzinfo)
        except (queries.QueryError, ValueError, TypeError):
            ui.label("Pick a valid date range.").classes("text-red-700")
            return
        if until <= since:
            ui.label("'To' is before 'From'.").classes("text-red-700")
            return
        exact = opts["exact"]
        (total,) = queries.usage_summary([], since, until, tz=opts["tz"])
        _summary(total, exact)
        with ui.card().classes("w-full p-3"):
            with ui.row().classes("items-center gap-2"):
                ui.label("Tokens per day, stacked by").classes("text-xs uppercase text-gray-500")
                ui.toggle({k: GROUPS[k] for k in ("device", "agent", "model")}, value=opts["stack"],
                          on_change=lambda e: (opts.update(stack=e.value), body.refresh())).props("dense")
            per_day = queries.usage_summary(["day", opts["stack"]], since, until, tz=opts["tz"])
            ui.echart(chart_options(per_day, opts["stack"], _days(start.value, end.value))).classes(
                "w-full h-72").props('data-testid="tokens-chart"')
        group = opts["group"]
        rows = queries.usage_summary([group], since, until, tz=opts["tz"])
        with ui.card().classes("w-full p-3 gap-2"):
            with ui.row().classes("items-center gap-2 w-full"):
                ui.label("Grouped by").classes("text-xs uppercase text-gray-500")
                ui.toggle(GROUPS, value=group, on_change=lambda e: (opts.update(group=e.value), body.refresh())
                          ).props('dense data-testid="group-toggle"')
                ui.space()
                ui.button("Export CSV", on_click=lambda: ui.download.content(
                    to_csv(rows, [group]), f"clawfleet-tokens-{group}-{start.value}-{end.value}.csv",
                    "text/csv")).props('flat dense icon=download data-testid="csv"')
            columns = [{"name": "key", "label": GROUPS[group], "field": "key", "align": "left", "sortable": True}]
            columns += [{"name": k, "label": label, "field": k, "sortable": True} for k, label in TOKEN_COLS]
            columns += [{"name": "messages", "label": "Messages", "field": "messages", "sortable": True},
                        {"name": "failed_turns", "label": "Failed turns", "field": "failed_turns", "sortable": True},
                        {"name": "cost", "label": "Cost", "field": "cost", "sortable": False}]
            table_rows = [{"key": r.key.get(group) or "(none)",
                           **{k: num(getattr(r, k), exact) for k, _ in TOKEN_COLS},
                           "messages": f"{r.messages:,}", "failed_turns": f"{r.failed_turns:,}",
                           "cost": cost_text(r, exact)} for r in rows]
            ui.table(columns=columns, rows=table_rows, row_key="key", pagination=50).classes("w-full").props(
                'dense flat data-testid="tokens-table"')
            if not rows:
                ui.label("No token usage in this range.").classes("text-gray-500")

    start.on_value_change(lambda _e: body.refresh())
    end.on_value_change(lambda _e: body.refresh())
    with body_box:
        body()

    if not tz:
        async def use_browser_zone() -> None:
            try:
                name = await ui.run_javascript("Intl.DateTimeFormat().resolvedOptions().timeZone", timeout=5)
                queries.zone(name)
            except Exception:  # no answer or an unknown zone: stay on UTC, the label says so
                return
            if name and name != opts["tz"]:
                opts["tz"] = name
                body.refresh()

        ui.timer(0.1, use_browser_zone, once=True)
