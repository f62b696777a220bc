"""Fleet overview page (``/``): counts, token and cost tiles, and one table row per device.

The table is a Quasar table in server mode: search (name, id, host name), the status and tag
filters, sorting (click a column header) and paging all run on the server over
:meth:`fleet_server.state.FleetState.snapshot`, and the browser only ever gets one page of rows
(25/50/100). Live updates: every second the page asks :meth:`FleetState.changes_since` which
devices changed and rebuilds only their rows; a row whose device did not change is the same
object, so nothing is sent when nothing on the page changed. Relative times ("12s ago") are
refreshed every :data:`FULL_EVERY_S` seconds.
"""

from __future__ import annotations

import time

from nicegui import events, ui

from fleet_server.dashboard.pages.overview.rows import (
    DEFAULT_PAGE_SIZE,
    PAGE_SIZES,
    STATUS_FILTERS,
    Query,
    all_tags,
    row,
    row_text,
    select,
)
from fleet_server.dashboard.pages.overview.tiles import render_tiles
from fleet_server.dashboard.parts.alerts_badge import alerts_banner
from fleet_server.dashboard.parts.format import count_h
from fleet_server.dashboard.parts.timezone import Viewer, follow_browser_zone, initial_zone, zone_note
from fleet_server.dashboard.parts.usage_view import devices_today_and_total
from fleet_server.state import DeviceView, FleetState
from fleet_server.store.usage.sums import UsageSums

CHECK_S = 1.0
"""How often an open overview asks the cache what changed, seconds."""
FULL_EVERY_S = 10.0
"""Rows, counts and tiles are rebuilt at least this often (relative times, token days), seconds."""

_COL = {"align": "left", "headerClasses": "text-xs uppercase text-gray-500"}
COLUMNS = [
    {"name": "status", "label": "Status", "field": "status_text", "sortable": True, **_COL},
    {"name": "name", "label": "Device", "field": "name", "sortable": True, **_COL},
    {"name": "openclaw", "label": "OpenClaw", "field": "openclaw", "sortable": True, **_COL},
    {"name": "tags", "label": "Tags", "field": "tags", **_COL},
    {"name": "cpu", "label": "CPU", "field": "cpu", "sortable": True, **_COL},
    {"name": "mem", "label": "Memory", "field": "mem", "sortable": True, **_COL},
    {"name": "disk", "label": "Disk", "field": "disk", "sortable": True, **_COL},
    {"name": "swap", "label": "Swap", "field": "swap", "sortable": True, **_COL},
    {"name": "net", "label": "Net ↓ / ↑", "field": "net", **_COL},
    {"name": "uptime", "label": "Uptime", "field": "uptime", "sortable": True, **_COL},
    {"name": "tokens", "label": "Tokens today / total", "field": "tokens", **_COL},
    {"name": "last_seen", "label": "Last seen", "field": "last_seen", "sortable": True, **_COL},
]

# Cell templates (Vue; interpolation escapes, nothing is rendered as HTML). A tag chip emits "tag".
_STATUS_CELL = r"""<q-td :props="props">
  <q-badge :color="props.row.status_color" :label="props.row.status_text" class="text-sm px-2"
           :data-testid="'status-' + props.row.status" :title="props.row.reason_tip" />
  <div class="text-xs text-gray-500"><span v-if="props.row.reason" data-testid="status-reason">{{ props.row.reason }}
    · </span>{{ props.row.since }}</div>
</q-td>"""
_NAME_CELL = r"""<q-td :props="props" :data-device="props.row.id">
  <a :href="'/device/' + props.row.id" class="font-medium">{{ props.row.name }}</a>
  <div class="text-xs text-gray-500">{{ props.row.sub }}</div>
  <div v-if="props.row.error" :title="props.row.error_full" class="text-xs whitespace-normal"
       :class="props.row.error_old ? 'text-gray-500' : 'text-red-700'">⚠ {{ props.row.error }}</div>
</q-td>"""
_OPENCLAW_CELL = r"""<q-td :props="props">
  <q-badge v-if="props.row.openclaw_state !== 'none'"
           :color="props.row.openclaw_state === 'up' ? 'positive' : 'negative'"
           :label="props.row.openclaw" :data-testid="'openclaw-' + props.row.openclaw_state" />
  <span v-else class="text-gray-500">{{ props.row.openclaw }}</span>
</q-td>"""
_TAGS_CELL = r"""<q-td :props="props">
  <q-chip v-for="t in props.row.tags" :key="t" dense outline clickable size="sm" :label="t"
          @click="() => $parent.$emit('tag', t)" :data-testid="'tag-' + t" />
</q-td>"""
_VALUE_CELL = r"""<q-td :props="props" :class="props.row.stale ? 'text-gray-400 italic' : ''"
      :title="props.row.stale ? props.row.stale_tip : (props.col.name === 'tokens' ? props.row.tokens_tip : '')"
      :data-testid="props.row.stale ? 'stale-value' : null">{{ props.value }}</q-td>"""
_STALE_COLUMNS = ("cpu", "mem", "disk", "swap", "net", "uptime")


class FleetTable(ui.table):
    """``ui.table`` whose rows count as its displayed text (NiceGUI's user simulation searches the
    texts elements display; a Quasar table's rows are props, not child elements)."""

    def _displayed_contents(self, *, only_visible: bool) -> list:
        return [*super()._displayed_contents(only_visible=only_visible), *(t for r in self.rows for t in row_text(r))]


class OverviewTable:
    """The device table of one open overview, with its query and the rows the browser has."""

    def __init__(self, state: FleetState, viewer: dict[str, Viewer]) -> None:
        self.state, self.viewer = state, viewer
        self.query = Query()
        self.seen = -1  # the cache version the rows were built from
        self.built: dict[str, tuple[DeviceView, dict]] = {}  # device id -> (view, its row) on the page
        self.total = 0
        self.table = FleetTable(columns=COLUMNS, rows=[], row_key="id", pagination=self._pagination()).classes(
            "w-full").props("flat bordered dense wrap-cells").mark("fleet-table")  # cells wrap: fits 1280 px
        self.table.props["rows-per-page-options"] = list(PAGE_SIZES)
        for name, template in (("status", _STATUS_CELL), ("name", _NAME_CELL), ("openclaw", _OPENCLAW_CELL),
                               ("tags", _TAGS_CELL), *((c, _VALUE_CELL) for c in (*_STALE_COLUMNS, "tokens"))):
            self.table.add_slot(f"body-cell-{name}", template)
        self.table.on("request", self._on_request)
        self.table.on("tag", lambda e: self.set_filter(tag=str(e.args or "")))
        self.on_filter_change: list = []  # called with the query after a tag chip changed the filter

    def _pagination(self) -> dict:
        q = self.query
        return {"page": q.page, "rowsPerPage": q.per_page, "sortBy": q.sort_by, "descending": q.descending,
                "rowsNumber": self.total}

    def _on_request(self, e: events.GenericEventArguments) -> None:
        p = (e.args or {}).get("pagination") or {}
        q = self.query
        q.page = int(p.get("page") or 1)
        per_page = int(p.get("rowsPerPage") or DEFAULT_PAGE_SIZE)
        q.per_page = per_page if per_page in PAGE_SIZES else DEFAULT_PAGE_SIZE
        q.sort_by = str(p.get("sortBy") or "name")
        q.descending = bool(p.get("descending"))
        self.refresh(force=True)

    def set_filter(self, **changes: str) -> None:
        """Change the search text, status or tag filter (back to page 1) and redraw."""
        for k, v in changes.items():
            setattr(self.query, k, v)
        self.query.page = 1
        self.refresh(force=True)
        for callback in self.on_filter_change:
            callback(self.query)

    def refresh(self, force: bool = False) -> list[DeviceView] | None:
        """Rebuild the rows of the devices that changed since the last call (all rows when ``force``);
        send the table only when a row, the order or the count changed. Returns the snapshot it used,
        or None when nothing in the cache changed (and nothing was done)."""
        version, changed = self.state.changes_since(self.seen)
        if not force and changed is not None and not changed:
            return None
        self.seen = version
        devices = self.state.snapshot()
        self.total, page = select(devices, self.query)
        now_s = time.time()
        today, total = devices_today_and_total(self.state, self.viewer["zone"].tz, (d.device_id for d in page))
        built: dict[str, tuple[DeviceView, dict]] = {}
        for d in page:
            old = self.built.get(d.device_id)
            if old is not None and old[0] is d and not force:
                built[d.device_id] = old  # same view object: the device (its usage too) did not change
                continue
            none = UsageSums()
            built[d.device_id] = (d, row(d, today.get(d.device_id, none), total.get(d.device_id, none), now_s))
        rows = [r for _, r in built.values()]
        same = list(self.built) == list(built) and all(a[1] is b[1] for a, b in zip(self.built.values(),
                                                                                     built.values(), strict=True))
        self.built = built
        pagination = self._pagination()
        if not same or self.table.pagination != pagination:
            self.table.props["pagination"] = pagination
            self.table.rows = rows  # Vue patches rows by key: rows that did not change keep their DOM
        return devices


def _counts(devices: list[DeviceView]) -> tuple[str, str, str]:
    """The summary badges' texts: ``("3 online", "1 not online", "4 devices")``."""
    online = sum(d.status == "online" and not d.revoked_ms for d in devices)
    return f"{online:,} online", f"{len(devices) - online:,} not online", count_h(len(devices), "device")


def render_overview(state: FleetState) -> None:
    """Build the overview into the current page."""
    with ui.row().classes("items-center w-full px-4 pt-4 gap-2"):
        ui.label("Fleet overview").classes("text-2xl font-semibold")
        ui.space()
        with ui.row().classes("gap-2"):
            badges = (ui.badge("", color="positive").mark("count-online"),
                      ui.badge("", color="grey").mark("count-not-online"),
                      ui.badge("", color="primary").mark("count-devices"))

    viewer = {"zone": initial_zone()}
    with ui.column().classes("w-full px-4 gap-2"):
        alerts_banner()  # alerts: what is firing, or that alerts have nowhere to go
        @ui.refreshable
        def tiles() -> None:
            render_tiles(state, viewer["zone"].tz)

        tiles()
        note = ui.label(zone_note(viewer["zone"])).classes("text-xs text-gray-500").mark("zone-note")
        empty = ui.label("No devices yet. Add one with: clawfleet-server device add NAME").classes(
            "text-gray-500")
        with ui.row().classes("w-full items-end gap-2") as controls:
            search = ui.input(placeholder="Search name, id or host").props(
                'dense clearable debounce=300 type=search').classes("grow min-w-48").mark("fleet-search")
            status = ui.select(STATUS_FILTERS, value="", label="Status").props("dense").classes("w-40").mark(
                "fleet-status")
            tag = ui.select({"": "any tag"}, value="", label="Tag").props("dense").classes("w-40").mark("fleet-tag")
        view = OverviewTable(state, viewer)
    search.on_value_change(lambda e: view.set_filter(text=e.value or ""))
    status.on_value_change(lambda e: view.set_filter(status=e.value or ""))
    tag.on_value_change(lambda e: view.set_filter(tag=e.value or "") if e.value != view.query.tag else None)

    def tag_chosen(q: Query) -> None:
        if q.tag not in tag.options:
            tag.set_options({**tag.options, q.tag: q.tag})
        tag.value = q.tag

    view.on_filter_change.append(tag_chosen)

    def redraw(force: bool) -> None:
        devices = view.refresh(force)
        if devices is not None:
            for badge, text in zip(badges, _counts(devices), strict=True):
                if badge.text != text:
                    badge.set_text(text)
            empty.set_visibility(not devices)
            controls.set_visibility(bool(devices))
            view.table.set_visibility(bool(devices))
            tags = {"": "any tag", **{t: t for t in all_tags(devices)}}
            if view.query.tag:
                tags.setdefault(view.query.tag, view.query.tag)
            if tags != tag.options:
                tag.set_options(tags)

    ticks = {"n": 0}

    def tick() -> None:
        ticks["n"] += 1
        full = ticks["n"] % int(FULL_EVERY_S / CHECK_S) == 0
        redraw(full)
        if full:
            tiles.refresh()

    redraw(True)
    ui.timer(CHECK_S, tick)
    follow_browser_zone(viewer, lambda: (tiles.refresh(), redraw(True)), note)
