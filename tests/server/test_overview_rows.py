"""The overview's rows (pure): search, filters, sort and paging over the cache; plain status words."""

from __future__ import annotations

import time

from fleet_server.dashboard.pages.overview.rows import Query, all_tags, openclaw_cell, row, select
from fleet_server.dashboard.parts.format import count_h, status_words
from fleet_server.state import DeviceView
from fleet_server.store.usage.sums import UsageSums
from shared import schemas


def _meta(host: str, openclaw: str | None = None) -> schemas.Meta:
    now = int(time.time() * 1000)
    return schemas.Meta(device_id="x", ts=now, hostname=host, os="Linux", arch="x86_64", agent_version="0.1",
                        cpu_count=2, mem_total_bytes=1, disk_total_bytes=1, boot_time_ms=now - 1000,
                        openclaw_version=openclaw)


def _tel(cpu: float, up: bool | None = None) -> schemas.Telemetry:
    oc = schemas.OpenClawState(installed=True, up=up, version="2026.9.6") if up is not None else None
    return schemas.Telemetry(device_id="x", ts=int(time.time() * 1000), cpu_pct=cpu, mem_used_bytes=1,
                             mem_total_bytes=2, mem_pct=50, disk_used_bytes=1, disk_total_bytes=2, disk_pct=50,
                             swap_pct=0, net_rx_bps=0, net_tx_bps=0, uptime_s=1, openclaw=oc)


FLEET = [DeviceView(f"d{i:03d}", f"Box {i:03d}", status="online" if i % 3 else "offline",
                    tags="prod,eu" if i % 2 else "lab", meta=_meta(f"host{i:03d}.example"),
                    telemetry=_tel(float(i % 100))) for i in range(250)]


def test_select_pages_searches_filters_and_sorts():
    total, page = select(FLEET, Query())
    assert total == 250 and [d.device_id for d in page[:2]] == ["d000", "d001"] and len(page) == 50
    q = Query(page=99)
    total, page = select(FLEET, q)
    assert q.page == 5 and [d.device_id for d in page] == [f"d{i}" for i in range(200, 250)]  # the last page
    assert [d.device_id for d in select(FLEET, Query(text="HOST017"))[1]] == ["d017"]  # host name, any case
    assert [d.device_id for d in select(FLEET, Query(text="box 01"))[1]][:2] == ["d010", "d011"]  # name
    assert select(FLEET, Query(status="offline"))[0] == 84 and select(FLEET, Query(status="not-online"))[0] == 84
    assert select(FLEET, Query(status="online", tag="lab"))[0] == sum(i % 3 != 0 and i % 2 == 0 for i in range(250))
    top = select(FLEET, Query(sort_by="cpu", descending=True, per_page=25))[1]
    assert [d.telemetry.cpu_pct for d in top[:2]] == [99.0, 99.0] and len(top) == 25
    assert all_tags(FLEET) == ["eu", "lab", "prod"]


def test_status_words_are_plain_and_never_repeat_the_pill():
    assert status_words("offline", "last-will") == ("offline", "lost connection")
    assert status_words("shutdown", "agent stopped") == ("shut down", "stopped")
    assert status_words("revoked", "revoked") == ("revoked", "")  # not "revoked revoked"
    assert status_words("offline", "revoked") == ("offline", "key revoked")
    assert status_words("online", "data resumed") == ("online", "")
    assert status_words("offline", "needs new key") == ("offline", "needs a new key")
    assert status_words("offline", "cable unplugged") == ("offline", "cable unplugged")  # a device's own words
    assert status_words("unknown", None) == ("no data yet", "")


def test_counts_in_good_english():
    assert count_h(0, "device") == "0 devices"
    assert count_h(1, "device") == "1 device"
    assert count_h(1234, "device") == "1,234 devices"
    assert count_h(2, "entry", "entries") == "2 entries"


def test_row_has_openclaw_tags_and_greyed_values_of_a_device_that_stopped_reporting():
    d = DeviceView("gw", "Gateway", status="offline", status_reason="last-will", tags="prod, eu",
                   telemetry=_tel(42, up=False), meta=_meta("gw.local", "2026.9.6"))
    r = row(d, UsageSums(), UsageSums())
    assert (r["status_text"], r["reason"], r["openclaw_state"]) == ("offline", "lost connection", "down")
    assert r["openclaw"] == "down · 2026.9.6" and r["tags"] == ["prod", "eu"]
    assert r["stale"] and r["cpu"] == "42%" and "offline" in r["stale_tip"]
    assert openclaw_cell(DeviceView("n", "n", meta=_meta("n", None))) == ("none", "–")
    assert openclaw_cell(DeviceView("v", "v", meta=_meta("v", "2026.1.1"))) == ("none", "2026.1.1")
