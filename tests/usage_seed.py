"""Seed a real SQLite fleet database with the OpenClaw fixtures' usage and logs (collected by the
agent's own collectors, stored by the server's own insert path), and with bulk synthetic logs."""

from __future__ import annotations

import dataclasses
import random
from collections.abc import Callable
from pathlib import Path

from fixtures_openclaw import EXPECTED, make_latest_state, make_legacy_state, make_log_dir

from agent_tray.collectors.logs import LogCollector
from agent_tray.collectors.openclaw import locate_openclaw
from agent_tray.collectors.sessions import SessionIndexCollector
from agent_tray.collectors.usage import UsageCollector
from fleet_server.store.models import Device, LogRecord, db
from fleet_server.store.sessions.ingest import store_activity
from fleet_server.store.usage.ledger import insert_usage

DEVICES = {"oc-latest": ("latest", "main"), "oc-legacy": ("legacy", "research")}
"""device id -> (fixture era, OpenClaw agent id it is stored under)."""


def expected_by_agent() -> dict[str, dict[str, int]]:
    """design/openclaw.md's table summed per agent of :data:`DEVICES`; ``failed_turns``: every fixture session
    has exactly one failed turn (its error messages are 1, or 4 for the 2026.7 429 that was retried)."""
    out: dict[str, dict[str, int]] = {}
    for era, agent in DEVICES.values():
        s = out.setdefault(agent, {"messages": 0, "input_tokens": 0, "output_tokens": 0, "cache_read_tokens": 0,
                                   "total_tokens": 0, "error_messages": 0, "failed_turns": 0})
        for (e, _), (_, assistants, inp, out_, cr, total, errors) in EXPECTED.items():
            if e == era:
                s["messages"] += assistants
                s["input_tokens"] += inp
                s["output_tokens"] += out_
                s["cache_read_tokens"] += cr
                s["total_tokens"] += total
                s["error_messages"] += errors
                s["failed_turns"] += 1
    return out


def add_device(device_id: str, name: str | None = None) -> None:
    """An enrolled device row (no broker involved)."""
    Device.insert(id=device_id, name=name or device_id, key_hash="0" * 64, key_hint="abcd", created_ms=1,
                  status="online").on_conflict_ignore().execute()


def seed_fixture_usage(tmp: Path, with_logs: bool = True,
                       place: Callable[[int], int] | None = None) -> list[dict]:
    """Store the fixtures' usage (and gateway + failed-turn logs) for the devices in :data:`DEVICES`.

    ``place(i)``: the timestamp (epoch ms) to give the i-th usage record instead of its own (records
    of both devices counted together), to spread the fixture fleet over chosen hours. Returns the
    usage record rows stored."""
    stored: list[dict] = []
    for device, (era, agent) in DEVICES.items():
        add_device(device)
        make = make_latest_state if era == "latest" else make_legacy_state
        state = make(tmp / device, agent=agent)
        result = UsageCollector(state, device).collect({})
        index = SessionIndexCollector(locate_openclaw({"OPENCLAW_STATE_DIR": str(state), "PATH": ""})).collect({})
        logs = list(result.logs)
        if with_logs:
            logs += LogCollector([make_log_dir(tmp / device, era)], device).collect({}).logs
        rows = [{"device": device, **dataclasses.asdict(r)} for r in result.usage]
        if place is not None:
            rows = [{**r, "ts": place(len(stored) + i)} for i, r in enumerate(rows)]
        stored += rows
        with db.atomic():
            insert_usage(rows)
            rows = [{"device": device, **dataclasses.asdict(r)} for r in logs]
            for i in range(0, len(rows), 200):
                LogRecord.insert_many(rows[i:i + 200]).on_conflict_ignore().execute()
            store_activity(*([{"device": device, **dataclasses.asdict(r)} for r in records]
                             for records in (index.sessions, result.runs, result.tool_calls)))
    return stored


MESSAGES = ("lane task error: lane=session:agent:main:{n} durationMs={d} error=\"HTTP 500\"",
            "[model-fetch] error provider=stubllm model=stub-model causeCode=ECONNREFUSED attempt {n}",
            "transient same-model retry {n}/8 for stubllm/stub-model reason=rate_limit: delayMs={d}",
            "gateway slow event loop lag {d}ms")


def seed_bulk_logs(n: int, devices: int = 20, start_ms: int = 1_795_000_000_000, step_ms: int = 1000,
                   seed: int = 1) -> None:
    """Insert ``n`` synthetic warn/error records over ``devices`` devices, one per ``step_ms``."""
    rnd = random.Random(seed)
    for d in range(devices):
        add_device(f"bulk-{d:03d}")
    batch = []
    with db.atomic():
        for i in range(n):
            k = rnd.randrange(len(MESSAGES))
            batch.append({"id": f"bulk{i:012d}", "device": f"bulk-{i % devices:03d}", "ts": start_ms + i * step_ms,
                          "level": "error" if k < 2 else "warn", "subsystem": ("agent/embedded", "model-fetch",
                                                                                 "model-fallback", "gateway")[k],
                          "message": MESSAGES[k].format(n=rnd.randrange(1, 9), d=rnd.randrange(100, 90000)),
                          "fingerprint": f"fp{k}", "source": "gateway-log",
                          "agent_id": "main" if k == 0 else None, "session_id": None})
            if len(batch) == 500:
                LogRecord.insert_many(batch).execute()
                batch = []
        if batch:
            LogRecord.insert_many(batch).execute()
