"""The harness itself: the stub LLM, npm error classification, and the real gateway end to end.

The real-gateway test proves that the harness and the reference agree: OpenClaw's own
``openclaw gateway usage-cost --json`` totals must equal the assistant-message usage we sum
ourselves from the SQLite transcript store the gateway wrote.
"""

from __future__ import annotations

import json
import shutil
import sqlite3
import urllib.error
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import zstandard

from .harness import (
    OpenClawInstallError,
    RegistryUnreachable,
    ensure_openclaw,
    free_loopback_port,
    is_registry_unreachable,
)
from .stub_llm import StubLLM

USAGE_KEYS = ("input", "output", "cacheRead", "cacheWrite", "totalTokens")
MIRROR_MODELS = {"delivery-mirror", "gateway-injected"}


# ----------------------------------------------------------------------------------------------
# stub LLM (no OpenClaw needed)
# ----------------------------------------------------------------------------------------------
def _post(url: str, body: dict[str, Any]) -> tuple[int, bytes]:
    headers = {"Content-Type": "application/json"}
    req = urllib.request.Request(url, data=json.dumps(body).encode(), headers=headers)  # noqa: S310 (loopback stub)
    try:
        with urllib.request.urlopen(req, timeout=5) as resp:  # noqa: S310 (loopback stub)
            return resp.status, resp.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read()


def test_stub_llm_contract() -> None:
    with StubLLM() as stub:
        url = f"{stub.base_url}/chat/completions"
        with urllib.request.urlopen(f"{stub.base_url}/models", timeout=5) as resp:  # noqa: S310 (loopback stub)
            assert json.load(resp)["data"][0]["id"] == "stub-model"

        messages = [{"role": "system", "content": "x" * 8000}, {"role": "user", "content": "[Mon 10:00 UTC] hi"}]
        status, raw = _post(url, {"model": "stub-model", "messages": messages})
        body = json.loads(raw)
        assert status == 200
        usage = body["usage"]
        assert usage["prompt_tokens"] == 2005 and usage["prompt_tokens_details"]["cached_tokens"] == 128
        assert usage["total_tokens"] == usage["prompt_tokens"] + usage["completion_tokens"]
        assert body["choices"][0]["message"]["content"].endswith("You said: hi")

        req = {"model": "stub-model", "messages": messages, "stream": True, "stream_options": {"include_usage": True}}
        status, raw = _post(url, req)
        events = [ln[6:] for ln in raw.decode().splitlines() if ln.startswith("data: ")]
        assert status == 200 and events[-1] == "[DONE]"
        chunks = [json.loads(e) for e in events[:-1]]
        text = "".join(c["choices"][0]["delta"].get("content", "") for c in chunks if c["choices"])
        assert text.endswith("You said: hi")
        assert chunks[-1]["choices"] == [] and chunks[-1]["usage"]["prompt_tokens"] == 2005
        assert chunks[-2]["choices"][0]["finish_reason"] == "stop"
        # streaming without include_usage: no usage chunk
        status, raw = _post(url, {**req, "stream_options": {}})
        assert b'"usage"' not in raw

        stub.fail_next(2, status=429)
        assert _post(url, req)[0] == 429
        assert _post(url, req)[0] == 429
        assert _post(url, req)[0] == 200
        stub.fail_next(None, status=500)
        assert [_post(url, req)[0] for _ in range(3)] == [500, 500, 500]
        stub.clear_failures()
        assert _post(url, req)[0] == 200
        assert stub.count(status=429) == 2 and stub.count(status=500) == 3 and stub.count(status=200) == 5
        assert stub.usage_served()["prompt_tokens"] == 5 * 2005

        port = stub.port
        stub.go_down()
        with pytest.raises(urllib.error.URLError):
            _post(url, req)
        stub.come_up()
        assert stub.port == port and _post(url, req)[0] == 200


# ----------------------------------------------------------------------------------------------
# npm error classification
# ----------------------------------------------------------------------------------------------
ETARGET_STDERR = """npm error code ETARGET
npm error notarget No matching version found for openclaw@1999.1.1.
"""
ENOTFOUND_STDERR = """npm error code ENOTFOUND
npm error syscall getaddrinfo
npm error network request to https://registry.npmjs.org/openclaw failed, reason: getaddrinfo ENOTFOUND x.invalid
npm error network This is a problem related to network connectivity.
"""


def test_registry_unreachable_classification() -> None:
    assert is_registry_unreachable(ENOTFOUND_STDERR)
    assert not is_registry_unreachable(ETARGET_STDERR)
    assert not is_registry_unreachable("npm error code E404\nnpm error 404 Not Found - GET https://…\n")


def test_ensure_openclaw_raises_registry_unreachable(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A real npm run against a registry URL nobody listens on (no internet access needed)."""
    monkeypatch.setenv("npm_config_registry", f"http://127.0.0.1:{free_loopback_port()}/")
    monkeypatch.setenv("npm_config_cache", str(tmp_path / "npm-cache"))
    monkeypatch.setenv("npm_config_fetch_retries", "0")
    with pytest.raises(RegistryUnreachable) as info:
        ensure_openclaw(tmp_path / "cache", progress=None)
    assert "ECONNREFUSED" in info.value.reason
    assert isinstance(info.value, OpenClawInstallError)


# ----------------------------------------------------------------------------------------------
# real gateway
# ----------------------------------------------------------------------------------------------
@dataclass
class TranscriptSums:
    total: dict[str, int] = field(default_factory=lambda: dict.fromkeys(USAGE_KEYS, 0))
    by_session: dict[str, dict[str, int]] = field(default_factory=dict)
    assistant: dict[str, int] = field(default_factory=dict)  # session_id -> assistant messages
    errors: dict[str, list[dict[str, Any]]] = field(default_factory=dict)  # session_id -> error messages


def sum_assistant_usage(db_paths: list[Path]) -> TranscriptSums:
    """Sum assistant-message usage from OpenClaw SQLite stores, as /work/shared/design/openclaw.md says.

    Reads ``transcript_events`` (``event_json`` or zstd ``event_zstd``) read-only, counts each entry
    id once, skips mirror rows, and keeps ``stopReason == "error"`` messages apart (zero usage).
    """
    sums = TranscriptSums()
    seen: set[tuple[str, str]] = set()
    dctx = zstandard.ZstdDecompressor()
    for db in db_paths:
        con = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
        try:
            tables = {r[0] for r in con.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
            if "transcript_events" not in tables:
                continue
            rows = con.execute("SELECT session_id, seq, event_json, event_zstd FROM transcript_events ORDER BY 1, 2")
            for session_id, _seq, event_json, event_zstd in rows:
                if event_json is None and event_zstd is not None:
                    event_json = dctx.decompress(event_zstd).decode()
                if not event_json:
                    continue
                entry = json.loads(event_json)
                msg = entry.get("message") or {}
                if entry.get("type") != "message" or msg.get("role") != "assistant":
                    continue
                if msg.get("provider") == "openclaw" and msg.get("model") in MIRROR_MODELS:
                    continue
                key = (session_id, str(entry.get("id")))
                if key in seen:
                    continue
                seen.add(key)
                sums.assistant[session_id] = sums.assistant.get(session_id, 0) + 1
                if msg.get("stopReason") == "error":
                    sums.errors.setdefault(session_id, []).append(msg)
                usage = msg.get("usage") or {}
                per = sums.by_session.setdefault(session_id, dict.fromkeys(USAGE_KEYS, 0))
                for k in USAGE_KEYS:
                    value = usage.get(k)
                    if k == "totalTokens" and value is None:
                        value = sum(int(usage.get(x) or 0) for x in ("input", "output", "cacheRead", "cacheWrite"))
                    per[k] += int(value or 0)
                    sums.total[k] += int(value or 0)
        finally:
            con.close()
    return sums


def _turn_usage(turns: list[Any]) -> dict[str, int]:
    out = dict.fromkeys(USAGE_KEYS, 0)
    for t in turns:
        u = t.usage
        out["input"] += u["input"]
        out["output"] += u["output"]
        out["cacheRead"] += u["cacheRead"]
        out["cacheWrite"] += u["cacheWrite"]
        out["totalTokens"] += u["total"]
    return out


def test_usage_cost_matches_sqlite_transcripts(
    real_openclaw: Any, tmp_path: Path, openclaw_say: Callable[[str], None]
) -> None:
    gw, stub = real_openclaw.gateway, real_openclaw.stub
    say = openclaw_say
    assert gw.version() == real_openclaw.install.version
    stub.clear_failures()
    served_before = stub.usage_served()

    alpha1 = gw.turn("harness-alpha", "first message for alpha")
    beta1 = gw.turn("harness-beta", "first message for beta")
    alpha2 = gw.turn("harness-alpha", "second message for alpha")
    for t in (alpha1, beta1, alpha2):
        assert t.ok, f"turn failed (exit {t.returncode}): {t.error_message}\n{t.stderr}"
        assert t.usage["input"] > 0 and t.usage["output"] > 0, t.usage
    assert alpha1.session_id == alpha2.session_id != beta1.session_id
    served_good = stub.usage_served()

    failed_before = stub.count(status=500)
    stub.fail_next(None, status=500)  # every attempt fails until cleared
    try:
        failed = gw.turn("harness-beta", "this one fails upstream")
    finally:
        stub.clear_failures()
    assert failed.returncode != 0 and failed.get("ok") is False, dict(failed)
    assert "HTTP 500" in (failed.error_message or ""), failed.error_message
    attempts = stub.count(status=500) - failed_before
    assert attempts == 1 + gw.max_retries, f"{attempts} upstream attempts; settings.json maxRetries not applied?"

    say(
        "turn times: "
        + ", ".join(f"{t.session_key.rsplit(':', 1)[-1]}={t.elapsed_s:.1f}s" for t in (alpha1, beta1, alpha2, failed))
        + f" (failed turn: {attempts} upstream attempts)"
    )

    usage = gw.usage_cost()
    dbs = [gw.snapshot_agent_db(tmp_path / "db" / "main")]
    for other in sorted((gw.state_dir / "agents").glob("*/agent/openclaw-agent.sqlite")):
        if other != gw.agent_db:  # later tests may add agents; usage-cost --all-agents covers them all
            dbs.append(_copy_db(other.parent, tmp_path / "db" / other.parent.parent.name))
    sums = sum_assistant_usage(dbs)
    totals = {k: usage["totals"][k] for k in USAGE_KEYS}
    say(f"usage-cost totals : {json.dumps(totals)}")
    say(f"SQLite assistant Σ: {json.dumps(sums.total)}")
    say(f"cacheStatus       : {json.dumps(usage.get('cacheStatus'))}")

    # the reference agrees with the transcripts, and is not trivially zero
    assert totals["input"] > 0 and totals["output"] > 0 and totals["totalTokens"] > 0
    assert totals == sums.total
    daily_sum = {k: sum(d[k] for d in usage["daily"]) for k in USAGE_KEYS}
    assert daily_sum == totals
    assert set(usage) >= {"updatedAt", "days", "daily", "totals", "cacheStatus"}

    # per session: the CLI's per-turn usage equals what the transcript recorded
    alpha_sid, beta_sid = alpha1.session_id, beta1.session_id
    assert sums.by_session[alpha_sid] == _turn_usage([alpha1, alpha2])
    assert sums.by_session[beta_sid] == _turn_usage([beta1])
    assert sums.assistant[alpha_sid] == 2 and alpha_sid not in sums.errors
    # the failed turn: one assistant message with stopReason "error" and zero usage
    assert sums.assistant[beta_sid] == 2
    (err,) = sums.errors[beta_sid]
    assert "500" in (err.get("errorMessage") or ""), err
    assert all(not (err.get("usage") or {}).get(k) for k in USAGE_KEYS), err.get("usage")

    # and it is what the stub served: OpenClaw's input = prompt - cached, cacheRead = cached
    served = {k: served_good[k] - served_before[k] for k in served_good}
    mine = _turn_usage([alpha1, beta1, alpha2])
    assert mine["cacheRead"] == served["cached_tokens"]
    assert mine["input"] == served["prompt_tokens"] - served["cached_tokens"]
    assert mine["output"] == served["completion_tokens"]

    # the gateway file log went where the harness pointed it
    log_text = gw.log_file.read_text(errors="replace")
    assert gw.log_file.parent == gw.log_dir and '"logLevelName"' in log_text
    say(f"gateway file log: {gw.log_file} ({gw.log_file.stat().st_size} bytes); timings {json.dumps(gw.timings)}")


def _copy_db(agent_dir: Path, dest: Path) -> Path:
    dest.mkdir(parents=True, exist_ok=True)
    for src in agent_dir.glob("openclaw-agent.sqlite*"):
        if src.name.endswith((".sqlite", ".sqlite-wal", ".sqlite-shm")):
            shutil.copy2(src, dest / src.name)
    return dest / "openclaw-agent.sqlite"


def test_endpoint_down_turn_fails_cleanly(real_openclaw: Any, openclaw_say: Callable[[str], None]) -> None:
    gw, stub = real_openclaw.gateway, real_openclaw.stub
    stub.go_down()
    try:
        result = gw.turn("harness-down", "the model endpoint is down")
    finally:
        stub.come_up()
    openclaw_say(f"endpoint-down turn: exit {result.returncode} in {result.elapsed_s:.1f}s: {result.error_message}")
    assert result.returncode != 0 and result.get("ok") is False
    assert result.error_message
    ok = gw.turn("harness-down", "and it is back")
    assert ok.ok, ok.error_message


def test_usage_cost_default_range_agrees(real_openclaw: Any, openclaw_say: Callable[[str], None]) -> None:
    """The cache-sidestepping fast path gives the same totals as plain ``usage-cost --json`` (30 days)."""
    gw = real_openclaw.gateway
    fast = gw.usage_cost()
    slow = gw.usage_cost(days=30)
    openclaw_say(f"usage-cost --days 30 fresh after {gw.timings['usage_cost_wait']:.1f}s: {json.dumps(slow['totals'])}")
    assert slow["days"] == 30 and len(slow["daily"]) == 30
    assert {k: slow["totals"][k] for k in USAGE_KEYS} == {k: fast["totals"][k] for k in USAGE_KEYS}
