"""One truth for tokens and cost: the overview tiles and rows, the device page, the tokens page and its
CSV, the REST API and /metrics give the same figures for the fixture fleet, in UTC, in half-hour and
45-minute-style zones (Asia/Kolkata, America/St_Johns) and on a Europe/Berlin DST day.

The fixture fleet's records (collected from the OpenClaw fixtures by the agent's collectors, stored
by the server's insert path) are spread over the hours around the viewer's local midnight, so a
view that sums whole UTC hours, or the wrong zone, is off. The expected figures are summed here
from the stored rows themselves (real SQLite, NiceGUI user simulation).
"""

from __future__ import annotations

import csv
import io
from datetime import datetime
from zoneinfo import ZoneInfo

import pytest
from nicegui import app
from nicegui.testing.user_simulation import user_simulation
from prometheus_client.parser import text_string_to_metric_families
from usage_seed import DEVICES, seed_fixture_usage

from fleet_server.api.metrics import install_metrics
from fleet_server.auth import api_tokens
from fleet_server.auth.accounts import create_user, save_user_settings
from fleet_server.dashboard import register_pages
from fleet_server.state import FleetState
from fleet_server.store.usage.sums import day_bounds_ms
from shared.clock import now_ms

MINUTE = 60_000


def _sum(rows: list[dict], lo: int, hi: int, device: str | None = None) -> int:
    return sum(r["total_tokens"] for r in rows if lo <= r["ts"] < hi and device in (None, r["device"]))


def _unpriced(rows: list[dict], lo: int, hi: int) -> int:
    return sum(r["total_tokens"] for r in rows if lo <= r["ts"] < hi and r.get("cost_usd") is None)


def _fleet(tmp_path, first_ms: int, step_ms: int) -> tuple[FleetState, list[dict], str]:
    # the 21 fixture records, both devices' interleaved (11 is coprime with 21: a permutation)
    rows = seed_fixture_usage(tmp_path, place=lambda i: first_ms + (i * 11 % 21) * step_ms)
    create_user("admin", "correct horse battery staple", role="admin")
    state = FleetState()
    state.load_from_db()
    _, token = api_tokens.create_token("truth", "test")
    return state, rows, token


async def _tokens_page_and_csv(user, day: str, total: int, per_device: dict[str, int]) -> None:
    """The tokens page's total for one day (exact, in its tooltip) and the CSV it exports."""
    await user.open(f"/tokens?start={day}&end={day}")
    await user.should_see(f"{total:,} tokens", retries=30)
    user.find("Export CSV").click()
    response = await user.download.next(timeout=5)
    exported = {r["device"]: int(r["total_tokens"]) for r in csv.DictReader(io.StringIO(response.text))}
    assert exported == {d: n for d, n in per_device.items() if n}
    assert all(r["device_name"] for r in csv.DictReader(io.StringIO(response.text)))


async def _api_days(user, token: str, tz: str, since: int, until: int) -> dict[str, int]:
    r = await user.http_client.get(f"/api/v1/usage?group_by=day&tz={tz}&since={since}&until={until}",
                                   headers={"Authorization": f"Bearer {token}"})
    assert r.status_code == 200, r.text
    return {row["day"]: row["total_tokens"] for row in r.json()["rows"]}


@pytest.mark.parametrize("tz_name", ["UTC", "Asia/Kolkata", "America/St_Johns"])
async def test_every_view_shows_the_same_figures_today(db, tmp_path, log_in, tz_name):
    tz = ZoneInfo(tz_name)
    start, end = day_bounds_ms(tz, 0, now_ms())
    # a record every 13 minutes from 2 h 10 min before local midnight: yesterday and today, across the
    # UTC hours that a half-hour zone's midnight cuts in two
    state, rows, token = _fleet(tmp_path, start - 130 * MINUTE, 13 * MINUTE)
    today, yesterday = _sum(rows, start, end), _sum(rows, start - 86_400_000, start)
    everything = _sum(rows, 0, 2**62)
    assert 0 < today < everything and yesterday > 0 and all(_sum(rows, start, end, d) for d in DEVICES)
    per_device = {d: _sum(rows, start, end, d) for d in DEVICES}
    save_user_settings("admin", time_zone=None if tz_name == "UTC" else tz_name)
    day = datetime.fromtimestamp(start / 1000, tz).strftime("%Y-%m-%d")
    async with user_simulation() as user:
        register_pages(state)
        install_metrics(app, state, lambda: None)
        await log_in(user, password="correct horse battery staple")
        # overview: the tiles (exact figures in their tooltips), the cost tile, every device's row
        await user.open("/")
        await user.should_see(f"Times in {tz_name}")
        for n in (today, yesterday, everything):
            await user.should_see(f"{n:,} tokens")
        await user.should_see(f"unpriced ({_unpriced(rows, start, end):,} tokens)")
        table = user.find(marker="fleet-table").elements.pop()
        tips = {r["id"]: r["tokens_tip"] for r in table.rows}
        for d, n in per_device.items():
            assert tips[d].startswith(f"today: {n:,} tokens"), (d, tips[d])
            assert f"all time: {_sum(rows, 0, 2**62, d):,} tokens" in tips[d]
        # device page
        for d, n in per_device.items():
            await user.open(f"/device/{d}")
            await user.should_see(f"{n:,} tokens")
            await user.should_see(f"{_sum(rows, 0, 2**62, d):,} tokens")
        # tokens page and its CSV
        await _tokens_page_and_csv(user, day, today, per_device)
        # REST API: days in the zone, and every device's all-time total
        days = await _api_days(user, token, tz_name, start - 86_400_000, end)
        assert days[day] == today and sum(days.values()) == today + yesterday
        devices = (await user.http_client.get("/api/v1/devices", headers={"Authorization": f"Bearer {token}"})).json()
        assert {d["device_id"]: d["tokens_total"]["total_tokens"] for d in devices} == {
            d: _sum(rows, 0, 2**62, d) for d in DEVICES}
        # /metrics: all-time counters per device
        text = (await user.http_client.get("/metrics", headers={"Authorization": f"Bearer {token}"})).text
    metric = {f.name: f for f in text_string_to_metric_families(text)}["clawfleet_tokens"]
    by_device: dict[str, float] = {}
    for s in metric.samples:
        by_device[s.labels["device"]] = by_device.get(s.labels["device"], 0) + s.value
    assert by_device == {d: _sum(rows, 0, 2**62, d) - _cache_free(rows, d) for d in DEVICES}


def _cache_free(rows: list[dict], device: str) -> int:
    """Tokens of a device that are none of input, output, cache read or cache write (``total_tokens``
    as OpenClaw counts it is their sum in the fixtures: 0)."""
    return sum(r["total_tokens"] - r["input_tokens"] - r["output_tokens"] - r["cache_read_tokens"]
               - r["cache_write_tokens"] for r in rows if r["device"] == device)


async def test_every_view_shows_the_same_figures_on_a_dst_day(db, tmp_path, log_in):
    berlin = ZoneInfo("Europe/Berlin")
    start, end = day_bounds_ms(berlin, 0, int(datetime(2026, 10, 25, 12, tzinfo=berlin).timestamp() * 1000))
    assert end - start == 25 * 3_600_000
    # one record every 83 minutes from 2 h before the 25-hour day: some before it, the rest in it and after
    state, rows, token = _fleet(tmp_path, start - 120 * MINUTE, 83 * MINUTE)
    day_total = _sum(rows, start, end)
    assert 0 < day_total < _sum(rows, 0, 2**62)
    per_device = {d: _sum(rows, start, end, d) for d in DEVICES}
    save_user_settings("admin", time_zone="Europe/Berlin")
    async with user_simulation() as user:
        register_pages(state)
        await log_in(user, password="correct horse battery staple")
        await _tokens_page_and_csv(user, "2026-10-25", day_total, per_device)
        days = await _api_days(user, token, "Europe/Berlin", start - 86_400_000, end + 86_400_000)
        assert days["2026-10-25"] == day_total
        assert days["2026-10-24"] == _sum(rows, start - 86_400_000, start)
