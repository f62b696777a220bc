"""Two real gateways of different state dirs write the same day's log file (OpenClaw's default file in
``/tmp/openclaw``, shared by every instance of a user); each ClawFleet agent stores only its own gateway's
lines, and none from before its state dir existed.

Real OpenClaw 2026.9.6 x 2 (one profile name, so both use ``/tmp/openclaw/openclaw-<profile>-<date>.log``
and no other test's lines mix in) → two real agents → managed Mosquitto → ingest → SQLite. Who wrote a line
is known from when it was written: the gateways take turns (gateway A's turns, then B is set up and takes
turns, then A again, then B), and the file's size is noted between the phases.
"""

from __future__ import annotations

import contextlib
import datetime
import json
import secrets
import sqlite3
import threading
import time
from pathlib import Path

import pytest
import zstandard
from e2e_helpers import wait_for

import agent_tray.collectors.logs as log_collector
from agent_tray.collectors import follow
from agent_tray.collectors.logs import parse_log_line
from agent_tray.collectors.result import stable_id
from agent_tray.config import AgentConfig
from agent_tray.service import AgentService
from fleet_server.devices.registry import add_device
from fleet_server.server import FleetServer
from fleet_server.store.models import LogRecord

from .harness import OpenClawGateway
from .stub_llm import StubLLM


def _own_ids(gw: OpenClawGateway) -> set[str]:
    """Session and run ids in a gateway's own transcripts (read directly)."""
    ids: set[str] = set()
    con = sqlite3.connect(f"file:{gw.agent_db}?mode=ro", uri=True)
    try:
        for sid, ev, packed in con.execute("SELECT session_id, event_json, event_zstd FROM transcript_events"):
            ids.add(sid)
            e = json.loads(ev if ev is not None else zstandard.ZstdDecompressor().decompressobj().decompress(packed))
            if e.get("type") == "custom" and isinstance(e.get("data"), dict) and e["data"].get("runId"):
                ids.add(e["data"]["runId"])
    finally:
        con.close()
    return ids


def _names_own_id(raw: str, ids: set[str]) -> bool:
    body = raw.split('"_meta"')[0] + raw.split('"time"')[-1]  # not the code location in _meta
    return any(i in body for i in ids)


@pytest.mark.timeout(900)
def test_two_gateways_one_log_file_every_line_on_its_own_device(openclaw_install, fleet: FleetServer, tmp_path: Path,
                                                                openclaw_say, monkeypatch) -> None:
    monkeypatch.setattr(log_collector, "HOLD_MS", 5_000)  # lines that name nobody wait 5 s, not 2 min, for context
    profile = f"cft{secrets.token_hex(4)}"
    phases: list[tuple[int, int, str]] = []
    gateways: dict[str, OpenClawGateway] = {}
    with StubLLM() as stub, contextlib.ExitStack() as stack:
        def gateway(name: str) -> OpenClawGateway:
            gw = OpenClawGateway(openclaw_install, stub.base_url, tmp_path / name, profile=profile, default_log=True,
                                 progress=openclaw_say)
            gateways[name] = stack.enter_context(gw)
            return gw

        shared = Path("/tmp/openclaw") / f"openclaw-{profile}-{datetime.date.today().isoformat()}.log"

        def size() -> int:
            return shared.stat().st_size if shared.exists() else 0

        def phase(owner: str, *steps) -> None:
            start = size()
            for step in steps:
                step()
            time.sleep(1.0)  # let the gateway's last lines reach the file
            phases.append((start, size(), owner))

        stack.callback(lambda: shared.unlink(missing_ok=True))
        a = None

        def start_a() -> None:
            nonlocal a
            a = gateway("a")

        def fail(gw_name: str, status: int, key: str) -> None:
            stub.fail_next(None, status=status)
            try:
                assert not gateways[gw_name].turn(key, f"this fails ({status})").ok
            finally:
                stub.clear_failures()

        phase("a", start_a, lambda: a.turn("alpha", "hello").ok, lambda: fail("a", 500, "alpha"))
        phase("b", lambda: gateway("b"), lambda: gateways["b"].turn("beta", "hello from b").ok,
              lambda: fail("b", 429, "beta"))
        phase("a", lambda: fail("a", 429, "alpha-2"), lambda: a.turn("alpha", "a is fine again").ok)
        phase("b", lambda: fail("b", 500, "beta"), lambda: gateways["b"].turn("beta", "b is fine again").ok)
        log_file = shared
        assert gateways["a"].log_file == gateways["b"].log_file == log_file and log_file.exists()

        services = {}
        for name, gw in gateways.items():
            new = add_device(fleet.dynsec, f"host-{name}", fleet.broker_url)
            cfg = AgentConfig(device_id=f"host-{name}", broker_url=fleet.broker_url, api_key=new.api_key, interval_s=1,
                              data_dir=str(tmp_path / f"agent-{name}"), bridge_port=0,
                              openclaw_state_dir=str(gw.state_dir), openclaw_profile=profile)
            services[name] = AgentService(cfg)
            threading.Thread(target=services[name].run, daemon=True).start()
        try:
            def settled() -> bool:
                counts = [LogRecord.select().where(LogRecord.device == f"host-{n}").count() for n in gateways]
                done = all(s.openclaw.logs.stats["lines"] > 0 for s in services.values())
                now = (counts, done)
                last = settled.__dict__.setdefault("last", (None, 0.0))
                if now != last[0]:
                    settled.last = (now, time.monotonic())
                    return False
                return done and time.monotonic() - last[1] > 8  # nothing new for 8 s (the 5 s hold included)

            wait_for(settled, 120, interval=0.5, what="both agents to have stored their log lines")
            stats = {n: dict(s.openclaw.logs.stats) for n, s in services.items()}
        finally:
            for s in services.values():
                s.stop()
        ids = {n: _own_ids(gw) for n, gw in gateways.items()}

        raw = log_file.read_bytes()  # (the file is removed when the gateways are gone)
    # who wrote each line: the phase its offset falls in
    identity = follow.identity(raw[: raw.index(b"\n") + 1])
    lines, off = [], 0
    for chunk in raw.split(b"\n")[:-1]:
        lines.append((off, chunk.decode("utf-8", "replace")))
        off += len(chunk) + 1
    owner_of = {o: next(p[2] for p in phases if p[0] <= o < p[1]) for o, _ in lines if any(
        p[0] <= o < p[1] for p in phases)}
    warn = {o: text for o, text in lines if (p := parse_log_line(text)) and p.level in ("warn", "error", "fatal")}
    stored = {}
    for name in gateways:
        device = f"host-{name}"
        by_id = {stable_id(device, "log", identity, o): o for o in warn}
        got = [r.id for r in LogRecord.select().where((LogRecord.device == device)
                                                      & (LogRecord.source == "gateway-log"))]
        assert all(i in by_id for i in got), "a stored line that is not in the shared file"
        stored[name] = {by_id[i] for i in got}
    # no line on the wrong machine
    for name, offsets in stored.items():
        wrong = [warn[o][:160] for o in offsets if owner_of.get(o) != name]
        assert not wrong, (name, wrong)
    # every line that names its gateway's sessions or runs (or shares a trace with one) is on its machine
    for name in gateways:
        mine = {o for o, text in warn.items() if owner_of.get(o) == name}
        traces = {json.loads(text).get("traceId") for o, text in lines if owner_of.get(o) == name
                  and _names_own_id(text, ids[name])} - {None}
        expected = {o for o in mine
                    if _names_own_id(warn[o], ids[name]) or json.loads(warn[o]).get("traceId") in traces}
        assert expected <= stored[name], (name, [warn[o][:160] for o in expected - stored[name]])
        openclaw_say(f"shared log, gateway {name}: {len(mine)} warn/error lines written, {len(stored[name])} stored on "
                     f"host-{name}, {len(expected)} name it; collector stats {stats[name]}")
    # the first phase was written before b's state dir existed: none of it is b's
    assert not {o for o in stored["b"] if o < phases[0][1]}
    assert stored["a"] and stored["b"]
