"""Sessions page and ``/api/v1/sessions|runs|tools`` on a device with 10,000 sessions and 1 million runs.

Run: ``.venv/bin/python benchmarks/bench_sessions.py [--sessions N] [--runs N] [--rounds N] [--no-browser]
[--json PATH]``

Seeds a fresh SQLite database (WAL, as the server opens it) with one device holding ``--sessions``
sessions and ``--runs`` runs spread over them and over 30 days (tool calls: one per 10 runs), plus the
session rows with their sums as ingest keeps them, then starts a real ``clawfleet-server run`` on it
(loopback ports, no local agent) and measures p50/p95 over ``--rounds`` requests:

- REST over HTTP with an API token: the device's sessions sorted by newest activity, cost, tokens and
  failed turns, filtered by status, model and text, a page deep in the list (cursor), the runs of one
  session (its timeline), the device's runs (newest), tool calls per tool;
- the pages: their HTML (``GET`` with a logged-in browser's session cookie, what the server spends building
  the page), then in headless Chromium (Debian's ``chromium`` + ``chromedriver``) from navigation until the
  50 rows are on screen (newest activity, by cost, the default 7 days) and one session's page until its
  run timeline is drawn (this includes the browser's own work: loading NiceGUI's scripts, the websocket).

Target (issue 19): the sessions page < 300 ms p95 at 10,000 sessions and 1 million runs (the page's HTML, as
``bench_dashboard.py`` measures the overview; rendered pages are given too). Prints one table.
"""

from __future__ import annotations

import argparse
import json
import random
import shutil
import statistics
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from benchmarks.local import start_dashboard, stop_dashboard  # noqa: E402
from fleet_server.store.db import open_database  # noqa: E402
from fleet_server.store.models import AgentRun, AgentSession, Device, ToolCall, db  # noqa: E402

DEVICE = "big-host"
PASSWORD = "benchmark password 1"  # noqa: S105 - a throw-away account in a temp data dir
MODELS = (("anthropic", "claude-sonnet-4"), ("openai", "gpt-5"), ("stubllm", "stub-model"))
TOOLS = ("read", "exec", "edit", "write", "web_fetch", "memory_search")


def seed(data: Path, sessions: int, runs: int, now_ms: int) -> float:
    """Insert the runs, tool calls and session rows; returns seconds taken."""
    t0 = time.perf_counter()
    open_database(data)
    Device.insert(id=DEVICE, name=DEVICE, key_hash="0" * 64, key_hint="abcd", created_ms=1,
                  status="online").execute()
    rnd = random.Random(19)
    span = 30 * 86_400_000
    sums: dict[int, dict] = {}
    run_cols = [AgentRun.device, AgentRun.id, AgentRun.agent_id, AgentRun.session_id, AgentRun.run_id,
                AgentRun.started_ms, AgentRun.ended_ms, AgentRun.status, AgentRun.stop_reason, AgentRun.provider,
                AgentRun.model, AgentRun.messages, AgentRun.error_messages, AgentRun.retries, AgentRun.tool_calls,
                AgentRun.tool_errors, AgentRun.input_tokens, AgentRun.output_tokens, AgentRun.cache_read_tokens,
                AgentRun.cache_write_tokens, AgentRun.total_tokens, AgentRun.cost_usd, AgentRun.error, AgentRun.rev]
    tool_cols = [ToolCall.device, ToolCall.id, ToolCall.agent_id, ToolCall.session_id, ToolCall.run, ToolCall.ts,
                 ToolCall.tool, ToolCall.error, ToolCall.duration_s, ToolCall.source]
    batch, tools = [], []
    with db.atomic():
        for i in range(runs):
            s = i % sessions
            agent = "main" if s % 4 else "work"
            start = now_ms - span + (i * span) // runs
            failed = rnd.random() < 0.05
            provider, model = MODELS[s % len(MODELS)]
            inp, out = rnd.randrange(2000, 40000), rnd.randrange(20, 2000)
            cost = None if provider == "stubllm" else round(inp * 3e-6 + out * 15e-6, 6)
            rid = f"r{i:015d}"
            batch.append((DEVICE, rid, agent, f"s{s:06d}", f"run-{i}", start, start + rnd.randrange(500, 60000),
                          "failed" if failed else "ok", "error" if failed else "stop", provider, model, 1 + failed,
                          int(failed), int(failed), int(i % 10 == 0), 0, inp, out, 0, 0, inp + out, cost,
                          "HTTP 500" if failed else "", 3))
            if i % 10 == 0:
                tools.append((DEVICE, f"t{i:015d}", agent, f"s{s:06d}", rid, start + 100, TOOLS[i % len(TOOLS)],
                              rnd.random() < 0.1, rnd.random() * 5, "transcript"))
            agg = sums.setdefault(s, {"agent": agent, "first": start, "last": 0, "turns": 0, "failed": 0, "inp": 0,
                                      "out": 0, "cost": 0.0, "priced": 0, "unpriced": 0, "model": f"{provider}/{model}",
                                      "tools": 0})
            agg["last"] = max(agg["last"], batch[-1][6])
            agg["turns"] += 1
            agg["failed"] += int(failed)
            agg["inp"] += inp
            agg["out"] += out
            agg["tools"] += int(i % 10 == 0)
            if cost is None:
                agg["unpriced"] += inp + out
            else:
                agg["cost"] += cost
                agg["priced"] += 1
            if len(batch) == 5000:
                AgentRun.insert_many(batch, fields=run_cols).execute()
                batch = []
            if len(tools) == 5000:
                ToolCall.insert_many(tools, fields=tool_cols).execute()
                tools = []
        if batch:
            AgentRun.insert_many(batch, fields=run_cols).execute()
        if tools:
            ToolCall.insert_many(tools, fields=tool_cols).execute()
        rows = [{"device": DEVICE, "agent_id": a["agent"], "session_id": f"s{s:06d}",
                 "session_key": f"agent:{a['agent']}:topic-{s}", "label": f"topic {s}", "status": "done",
                 "first_ms": a["first"], "last_ms": a["last"], "updated_ms": a["last"], "turns": a["turns"],
                 "failed_turns": a["failed"], "error_messages": a["failed"], "retries": a["failed"],
                 "tool_calls": a["tools"], "input_tokens": a["inp"], "output_tokens": a["out"],
                 "total_tokens": a["inp"] + a["out"], "cost_usd": a["cost"], "priced_turns": a["priced"],
                 "unpriced_tokens": a["unpriced"], "models": a["model"],
                 "latest_error": "HTTP 500" if a["failed"] else ""} for s, a in sums.items()]
        for i in range(0, len(rows), 500):
            AgentSession.insert_many(rows[i:i + 500]).execute()
    db.close()  # no ANALYZE: a server's database never gets one, so the plans measured are the ones users get
    return time.perf_counter() - t0


def _times(fn, n: int) -> list[float]:
    out = []
    for _ in range(n):
        t0 = time.perf_counter()
        fn()
        out.append((time.perf_counter() - t0) * 1000)
    return out


def _pct(values: list[float], q: float) -> float:
    s = sorted(values)
    return s[min(len(s) - 1, int(round(q * (len(s) - 1))))]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--sessions", type=int, default=10_000)
    ap.add_argument("--runs", type=int, default=1_000_000)
    ap.add_argument("--rounds", type=int, default=30, help="requests per measure (default 30)")
    ap.add_argument("--no-browser", action="store_true", help="skip the Chromium page timings")
    ap.add_argument("--json", type=Path, metavar="PATH", help="also write the figures as JSON")
    args = ap.parse_args()
    work = Path(tempfile.mkdtemp(prefix="clawfleet-bench-sessions-"))
    data = work / "data"
    now = int(time.time() * 1000)
    seed_s = seed(data, args.sessions, args.runs, now)
    server_log = open(work / "server.log", "wb")
    proc, base, token = start_dashboard(data, PASSWORD, server_log)
    rows: list[tuple[str, list[float], str]] = []
    try:
        deadline = time.monotonic() + 600  # a busy machine and a large database: start-up may take a while
        while True:
            try:
                urllib.request.urlopen(f"{base}/healthz", timeout=5)  # noqa: S310 - loopback
                break
            except OSError:
                if proc.poll() is not None or time.monotonic() > deadline:
                    tail = (work / "server.log").read_text()[-3000:]
                    raise SystemExit(f"the server did not start:\n{tail}") from None
                time.sleep(0.5)

        def get(path: str) -> dict | list:
            req = urllib.request.Request(base + path, headers={"Authorization": f"Bearer {token}"})  # noqa: S310
            with urllib.request.urlopen(req, timeout=60) as r:  # noqa: S310 - loopback
                return json.loads(r.read())

        cursor, deep = None, 1
        for _ in range(40):  # page 41 of the newest-activity list (or the last page of a smaller one)
            nxt = get(f"/api/v1/sessions?device={DEVICE}&limit=50" + (f"&cursor={cursor}" if cursor else ""))[
                "next_cursor"]
            if nxt is None:
                break
            cursor, deep = nxt, deep + 1
        week = now - 7 * 86_400_000
        for label, path in (
                ("API sessions, newest activity", f"/api/v1/sessions?device={DEVICE}&limit=50"),
                ("API sessions, by cost", f"/api/v1/sessions?device={DEVICE}&sort=cost&limit=50"),
                ("API sessions, by tokens", f"/api/v1/sessions?device={DEVICE}&sort=tokens&limit=50"),
                ("API sessions, by failed turns", f"/api/v1/sessions?device={DEVICE}&sort=failed&limit=50"),
                ("API sessions, with failed turns", f"/api/v1/sessions?device={DEVICE}&status=has-failed-turns"
                                                    "&limit=50"),
                ("API sessions, model filter", f"/api/v1/sessions?device={DEVICE}&model=gpt-5&limit=50"),
                ("API sessions, text 'topic-777'", f"/api/v1/sessions?device={DEVICE}&q=topic-777&limit=50"),
                ("API sessions, active last 7 days", f"/api/v1/sessions?device={DEVICE}&since={week}&limit=50"),
                (f"API sessions, page {deep} (cursor)", f"/api/v1/sessions?device={DEVICE}&limit=50"
                                                        + (f"&cursor={cursor}" if cursor else "")),
                ("API runs of one session", f"/api/v1/runs?device={DEVICE}&agent=main&session=s000777&limit=500"),
                ("API runs, device newest", f"/api/v1/runs?device={DEVICE}&limit=100"),
                ("API tools per tool, 7 days", f"/api/v1/tools/summary?device={DEVICE}&since={week}"),
        ):
            result = get(path)
            n = len(result) if isinstance(result, list) else len(result["rows"])
            rows.append((label, _times(lambda p=path: get(p), args.rounds), f"{n} rows"))
        if not args.no_browser and shutil.which("chromium") and shutil.which("chromedriver"):
            rows += browser_timings(base, work, args.rounds, args.runs // args.sessions)
    finally:
        stop_dashboard(proc)
    size = sum(f.stat().st_size for f in data.glob("clawfleet.sqlite*")) / 2**20
    print(f"\n{args.sessions:,} sessions and {args.runs:,} runs on one device; seeding took {seed_s:.1f} s; "
          f"database {size:.0f} MiB; {args.rounds} rounds each\n")
    print(f"| {'what':<40} | {'p50 ms':>8} | {'p95 ms':>8} | {'result':<14} |")
    print(f"|{'-' * 42}|{'-' * 10}|{'-' * 10}|{'-' * 16}|")
    for label, times, note in rows:
        print(f"| {label:<40} | {statistics.median(times):>8.1f} | {_pct(times, 0.95):>8.1f} | {note:<14} |")
    print("\ntarget: the sessions page < 300 ms p95 (its HTML; the rendered figures include the browser's work)")
    if args.json:
        args.json.write_text(json.dumps({"sessions": args.sessions, "runs": args.runs, "seed_s": seed_s,
                                         "rows": [{"what": label, "p50_ms": statistics.median(t),
                                                   "p95_ms": _pct(t, 0.95), "result": note}
                                                  for label, t, note in rows]}, indent=2))
    shutil.rmtree(work, ignore_errors=True)


def browser_timings(base: str, work: Path, rounds: int, per_session: int) -> list[tuple[str, list[float], str]]:
    """Page timings in headless Chromium: navigation until the rows (or the timeline) are on screen."""
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    from benchmarks.chromium import logged_in_chromium

    driver = logged_in_chromium(base, work / "chromium", PASSWORD)
    out = []
    try:
        wait = WebDriverWait(driver, 60)

        def page(path: str, css: str, count: int) -> None:
            driver.get(base + path)
            wait.until(lambda d: len(d.find_elements(By.CSS_SELECTOR, css)) >= count)

        cookie = "; ".join(f"{c['name']}={c['value']}" for c in driver.get_cookies())

        def html(path: str) -> None:
            req = urllib.request.Request(base + path, headers={"Cookie": cookie})  # noqa: S310 - loopback
            with urllib.request.urlopen(req, timeout=60) as r:  # noqa: S310
                body = r.read()
            assert b"/login" not in r.url.encode() and len(body) > 1000, r.url

        for label, path in (("GET /sessions of the device (HTML)", f"/sessions?device={DEVICE}&range=all"),
                            ("GET /sessions by cost (HTML)", f"/sessions?device={DEVICE}&range=all&sort=cost"),
                            ("GET /sessions, fleet, 7 days (HTML)", "/sessions"),
                            ("GET /session, one session (HTML)", f"/session/{DEVICE}/main/s000777")):
            html(path)
            out.append((label, _times(lambda p=path: html(p), rounds), "HTML"))
        row = '[data-testid="session-row"]'
        for label, path, css, count in (
                ("page /sessions of the device, rendered", f"/sessions?device={DEVICE}&range=all", row, 50),
                ("page /sessions by cost, rendered", f"/sessions?device={DEVICE}&range=all&sort=cost", row, 50),
                ("page /sessions, 7 days, rendered", f"/sessions?device={DEVICE}", row, 50),
                (f"page /session ({per_session} runs), timeline", f"/session/{DEVICE}/main/s000777",
                 '[data-testid="run-row"]', per_session)):
            page(path, css, count)  # warm-up
            out.append((label, _times(lambda p=path, c=css, n=count: page(p, c, n), rounds), "rendered"))
    finally:
        driver.quit()
    return out


if __name__ == "__main__":
    main()
