"""A tiny OpenAI-compatible model server for driving the real OpenClaw gateway in tests.

Standard library only. Listens on 127.0.0.1 (never on other interfaces) and implements what
OpenClaw 2026.9.x calls on a custom "openai" provider:

- ``GET  /v1/models``
- ``POST /v1/chat/completions`` non-streaming, and streaming (SSE); with
  ``stream_options.include_usage`` the stream ends with a chunk carrying ``usage``
  ``{prompt_tokens, completion_tokens, total_tokens, prompt_tokens_details.cached_tokens}``.

Token counts are deterministic functions of the request (see :func:`usage_for`), so a test can
predict them. Controls for tests:

- :meth:`StubLLM.fail_next` — the next N chat-completion requests answer HTTP 500 / 429 / …
  (``n=None``: every request until :meth:`StubLLM.clear_failures`);
- :meth:`StubLLM.go_down` / :meth:`StubLLM.come_up` — stop listening (connection refused,
  "endpoint down") and listen again on the same port;
- tool calls: a user message containing ``USE-TOOLS ls,read:missing.txt`` gets one assistant reply asking
  for those tool calls (OpenAI ``tool_calls``; ``name:arg`` passes ``arg`` as the tool's ``path``), and once
  the tool results are in the conversation, a plain text reply (see :func:`tool_calls_wanted`);
- :attr:`StubLLM.records` / :meth:`StubLLM.count` / :meth:`StubLLM.usage_served` — every request
  seen, with what was answered;
- the same from another process: ``POST /_stub/fail {"n": 3|null, "status": 500}``,
  ``POST /_stub/clear``, ``POST /_stub/reset``, ``GET /_stub/stats``.

Every response carries ``Connection: close`` so no keep-alive connection survives ``go_down``.

Run standalone: ``python -m tests.openclaw_real.stub_llm --port 18999``.
"""

from __future__ import annotations

import argparse
import json
import math
import re
import threading
import time
import uuid
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

LOOPBACK = "127.0.0.1"
DEFAULT_MODEL = "stub-model"
CACHED_TOKENS = 128  # reported as prompt_tokens_details.cached_tokens when the prompt is big enough
CACHE_MIN_PROMPT = 1024  # prompts smaller than this report no cached tokens

_ERROR_BODIES: dict[int, tuple[str, str, str]] = {
    500: ("stub upstream exploded (simulated internal error)", "server_error", "internal_error"),
    429: ("Rate limit reached for stub-model (simulated)", "rate_limit_error", "rate_limit_exceeded"),
    503: ("stub upstream overloaded (simulated)", "server_error", "overloaded"),
    401: ("invalid api key (simulated)", "invalid_request_error", "invalid_api_key"),
}


@dataclass
class RequestRecord:
    """One request the stub saw."""

    method: str
    path: str
    status: int
    stream: bool = False
    model: str | None = None
    usage: dict[str, Any] | None = None
    include_usage: bool = False
    at: float = field(default_factory=time.time)


def _text_of(content: Any) -> str:
    """Flatten an OpenAI message ``content`` (string or list of parts) to text."""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        parts = []
        for part in content:
            if isinstance(part, dict):
                parts.append(str(part.get("text") or part.get("content") or ""))
            else:
                parts.append(str(part))
        return "".join(parts)
    return "" if content is None else str(content)


_INTERNAL_CONTEXT = "<<<BEGIN_OPENCLAW_INTERNAL_CONTEXT>>>"
_STAMP_RE = re.compile(r"^\[[^\]]{6,40}\]\s*")


def _user_said(request: dict[str, Any]) -> str:
    """First line of the last real user message (OpenClaw appends internal-context user messages and
    prefixes the user's text with ``[Sat 2026-11-21 05:16 UTC]``)."""
    for m in reversed(request.get("messages") or []):
        if not isinstance(m, dict) or m.get("role") != "user":
            continue
        text = _text_of(m.get("content")).strip()
        if not text or text.startswith(_INTERNAL_CONTEXT):
            continue
        return _STAMP_RE.sub("", text.splitlines()[0]).strip()
    return ""


_USE_TOOLS_RE = re.compile(r"USE-TOOLS (\S+)")


def tool_calls_wanted(request: dict[str, Any]) -> list[tuple[str, dict[str, Any]]]:
    """``[(tool name, arguments)]`` the stub should ask for: those named by ``USE-TOOLS a,b:arg`` in the last
    real user message, when the request offers them and no tool result followed that message yet."""
    messages = [m for m in request.get("messages") or [] if isinstance(m, dict)]
    offered = {t.get("function", {}).get("name") for t in request.get("tools") or [] if isinstance(t, dict)}
    for i in range(len(messages) - 1, -1, -1):
        m = messages[i]
        if m.get("role") != "user":
            continue
        text = _text_of(m.get("content"))
        if text.startswith(_INTERNAL_CONTEXT):
            continue
        found = _USE_TOOLS_RE.search(text)
        if not found or any(x.get("role") == "tool" for x in messages[i + 1:]):
            return []
        out = []
        for spec in found.group(1).split(","):
            name, _, arg = spec.partition(":")
            if name in offered:
                out.append((name, {"path": arg} if arg else {}))
        return out
    return []


def _tokens(text: str) -> int:
    """Deterministic "tokenizer": one token per 4 characters, at least 1."""
    return max(1, math.ceil(len(text) / 4))


def usage_for(request: dict[str, Any], reply: str) -> dict[str, Any]:
    """OpenAI ``usage`` for a request/reply pair.

    prompt_tokens = ceil((characters of all message contents + of the JSON tool definitions) / 4);
    cached_tokens = 128 when prompt_tokens >= 1024 (so OpenClaw records a non-zero ``cacheRead``);
    completion_tokens = ceil(len(reply) / 4). OpenClaw stores ``input = prompt - cached``.
    """
    chars = sum(len(_text_of(m.get("content"))) for m in request.get("messages") or [] if isinstance(m, dict))
    if request.get("tools"):
        chars += len(json.dumps(request["tools"], separators=(",", ":")))
    prompt = max(1, math.ceil(chars / 4))
    cached = CACHED_TOKENS if prompt >= CACHE_MIN_PROMPT else 0
    completion = _tokens(reply)
    return {
        "prompt_tokens": prompt,
        "completion_tokens": completion,
        "total_tokens": prompt + completion,
        "prompt_tokens_details": {"cached_tokens": cached},
    }


class StubLLM:
    """OpenAI-compatible stub on ``127.0.0.1:<port>``; use as a context manager or start()/stop()."""

    def __init__(self, port: int = 0, model: str = DEFAULT_MODEL, quiet: bool = True) -> None:
        self.model = model
        self.quiet = quiet
        self._port = port
        self._lock = threading.Lock()
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None
        self._fail_remaining: int | None = 0  # None = fail until cleared
        self._fail_status = 500
        self._reply_no = 0
        self.records: list[RequestRecord] = []
        self.last_request: dict[str, Any] | None = None  # body of the last chat-completion request

    # ----- lifecycle -------------------------------------------------------------------------
    @property
    def port(self) -> int:
        return self._port

    @property
    def base_url(self) -> str:
        """The ``baseUrl`` to give OpenClaw (ends in ``/v1``)."""
        return f"http://{LOOPBACK}:{self._port}/v1"

    @property
    def is_up(self) -> bool:
        return self._server is not None

    def start(self) -> StubLLM:
        if self._server is not None:
            return self
        handler = _make_handler(self)
        server = ThreadingHTTPServer((LOOPBACK, self._port), handler)  # loopback only
        server.daemon_threads = True
        self._server = server
        self._port = server.server_address[1]
        self._thread = threading.Thread(target=server.serve_forever, name=f"stub-llm-{self._port}", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        server, self._server = self._server, None
        if server is None:
            return
        server.shutdown()
        server.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5)
            self._thread = None

    def go_down(self) -> None:
        """Stop listening: new connections to :attr:`port` are refused ("endpoint down")."""
        self.stop()

    def come_up(self, timeout: float = 10.0) -> None:
        """Listen again on the same port (retries briefly if the port is in TIME_WAIT)."""
        deadline = time.monotonic() + timeout
        while True:
            try:
                self.start()
                return
            except OSError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.2)

    def __enter__(self) -> StubLLM:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # ----- controls ----------------------------------------------------------------------------
    def fail_next(self, n: int | None = 1, status: int = 500) -> None:
        """Answer the next ``n`` chat-completion requests with HTTP ``status``.

        ``n=None`` fails every request until :meth:`clear_failures`. ``GET /v1/models`` never fails.
        """
        with self._lock:
            self._fail_remaining = n
            self._fail_status = status

    def clear_failures(self) -> None:
        with self._lock:
            self._fail_remaining = 0

    def reset_records(self) -> None:
        with self._lock:
            self.records.clear()

    def count(self, path: str | None = "/v1/chat/completions", status: int | None = None) -> int:
        """Requests seen on ``path`` (``None``: any path), optionally only those answered ``status``."""
        with self._lock:
            return sum(
                1
                for r in self.records
                if (path is None or r.path == path) and (status is None or r.status == status)
            )

    @property
    def request_count(self) -> int:
        """All requests seen (any path, any outcome)."""
        return self.count(None)

    def usage_served(self) -> dict[str, int]:
        """Sum of the ``usage`` the stub reported on successful chat completions."""
        out = {"prompt_tokens": 0, "completion_tokens": 0, "cached_tokens": 0, "total_tokens": 0}
        with self._lock:
            for r in self.records:
                if r.usage and r.status == 200:
                    out["prompt_tokens"] += r.usage["prompt_tokens"]
                    out["completion_tokens"] += r.usage["completion_tokens"]
                    out["total_tokens"] += r.usage["total_tokens"]
                    out["cached_tokens"] += r.usage["prompt_tokens_details"]["cached_tokens"]
        return out

    def stats(self) -> dict[str, Any]:
        """Counters as JSON (also served at ``GET /_stub/stats``)."""
        with self._lock:
            by_status: dict[str, int] = {}
            for r in self.records:
                if r.path == "/v1/chat/completions":
                    by_status[str(r.status)] = by_status.get(str(r.status), 0) + 1
            pending = self._fail_remaining
            fail_status = self._fail_status
        return {
            "requests": self.request_count,
            "chat_completions": self.count(),
            "chat_completions_by_status": by_status,
            "failing": {"remaining": pending, "status": fail_status},
            "usage_served": self.usage_served(),
        }

    # ----- internals ---------------------------------------------------------------------------
    def _take_failure(self) -> int | None:
        with self._lock:
            if self._fail_remaining is None:
                return self._fail_status
            if self._fail_remaining > 0:
                self._fail_remaining -= 1
                return self._fail_status
            return None

    def _next_reply(self, request: dict[str, Any]) -> str:
        with self._lock:
            self._reply_no += 1
            no = self._reply_no
        return f"Hello from the stub model (reply #{no}). You said: {_user_said(request)[:80]}"

    def _record(self, rec: RequestRecord) -> None:
        with self._lock:
            self.records.append(rec)


def _make_handler(stub: StubLLM) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"
        server_version = "StubLLM/1.0"

        def log_message(self, fmt: str, *args: Any) -> None:
            if not stub.quiet:
                super().log_message(fmt, *args)

        # --- helpers
        def _send_json(self, status: int, body: dict[str, Any], headers: dict[str, str] | None = None) -> None:
            data = json.dumps(body).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.send_header("Connection", "close")
            for k, v in (headers or {}).items():
                self.send_header(k, v)
            self.end_headers()
            self.wfile.write(data)
            self.close_connection = True

        def _path(self) -> str:
            return self.path.split("?", 1)[0].rstrip("/") or "/"

        # --- routes
        def do_GET(self) -> None:
            path = self._path()
            if path in ("/v1/models", "/models"):
                body = {
                    "object": "list",
                    "data": [{"id": stub.model, "object": "model", "created": 0, "owned_by": "stub"}],
                }
                stub._record(RequestRecord("GET", path, 200))
                self._send_json(200, body)
            elif path == "/_stub/stats":
                self._send_json(200, stub.stats())
            elif path in ("/health", "/healthz"):
                stub._record(RequestRecord("GET", path, 200))
                self._send_json(200, {"ok": True})
            else:
                stub._record(RequestRecord("GET", path, 404))
                self._send_json(404, {"error": {"message": f"no route {path}", "type": "not_found"}})

        def do_POST(self) -> None:
            path = self._path()
            length = int(self.headers.get("Content-Length") or 0)
            raw = self.rfile.read(length) if length else b""
            if path.startswith("/_stub/"):
                self._control(path, raw)
                return
            if path not in ("/v1/chat/completions", "/chat/completions"):
                stub._record(RequestRecord("POST", path, 404))
                self._send_json(404, {"error": {"message": f"no route {path}", "type": "not_found"}})
                return
            path = "/v1/chat/completions"
            try:
                request = json.loads(raw or b"{}")
            except json.JSONDecodeError:
                stub._record(RequestRecord("POST", path, 400))
                self._send_json(400, {"error": {"message": "invalid JSON", "type": "invalid_request_error"}})
                return
            stub.last_request = request
            stream = bool(request.get("stream"))
            include_usage = bool((request.get("stream_options") or {}).get("include_usage"))
            model = request.get("model") or stub.model

            status = stub._take_failure()
            if status is not None:
                message, etype, code = _ERROR_BODIES.get(status, (f"simulated HTTP {status}", "server_error", "error"))
                stub._record(RequestRecord("POST", path, status, stream, model, None, include_usage))
                self._send_json(status, {"error": {"message": message, "type": etype, "code": code}})
                return

            calls = tool_calls_wanted(request)
            if calls:
                self._tool_calls(request, model, calls, stream, include_usage)
                return
            reply = stub._next_reply(request)
            usage = usage_for(request, reply)
            stub._record(RequestRecord("POST", path, 200, stream, model, usage, include_usage))
            cid = f"chatcmpl-{uuid.uuid4().hex[:24]}"
            created = int(time.time())
            if not stream:
                self._send_json(
                    200,
                    {
                        "id": cid,
                        "object": "chat.completion",
                        "created": created,
                        "model": model,
                        "choices": [
                            {
                                "index": 0,
                                "message": {"role": "assistant", "content": reply},
                                "finish_reason": "stop",
                            }
                        ],
                        "usage": usage,
                    },
                )
                return
            self._stream(cid, created, model, reply, usage if include_usage else None)

        def _start_sse(self) -> None:
            """Headers of a server-sent-events answer (one per connection)."""
            self.send_response(200)
            self.send_header("Content-Type", "text/event-stream")
            self.send_header("Cache-Control", "no-cache")
            self.send_header("Connection", "close")
            self.end_headers()
            self.close_connection = True

        def _tool_calls(self, request: dict[str, Any], model: str, calls: list[tuple[str, dict[str, Any]]],
                        stream: bool, include_usage: bool) -> None:
            """Answer with one assistant message asking for ``calls`` (finish_reason ``tool_calls``)."""
            items = [{"id": f"call_{uuid.uuid4().hex[:16]}", "type": "function",
                      "function": {"name": name, "arguments": json.dumps(args)}} for name, args in calls]
            usage = usage_for(request, json.dumps(items))
            stub._record(RequestRecord("POST", "/v1/chat/completions", 200, stream, model, usage, include_usage))
            cid, created = f"chatcmpl-{uuid.uuid4().hex[:24]}", int(time.time())
            if not stream:
                self._send_json(200, {"id": cid, "object": "chat.completion", "created": created, "model": model,
                                      "choices": [{"index": 0, "finish_reason": "tool_calls", "message": {
                                          "role": "assistant", "content": None, "tool_calls": items}}],
                                      "usage": usage})
                return
            self._start_sse()
            base = {"id": cid, "object": "chat.completion.chunk", "created": created, "model": model}
            deltas = [{"role": "assistant", "content": None, "tool_calls": [
                {"index": n, "id": c["id"], "type": "function",
                 "function": {"name": c["function"]["name"], "arguments": ""}}]} for n, c in enumerate(items)]
            deltas += [{"tool_calls": [{"index": n, "function": {"arguments": c["function"]["arguments"]}}]}
                       for n, c in enumerate(items)]
            out = [{**base, "choices": [{"index": 0, "delta": d, "finish_reason": None}]} for d in deltas]
            out.append({**base, "choices": [{"index": 0, "delta": {}, "finish_reason": "tool_calls"}]})
            if include_usage:
                out.append({**base, "choices": [], "usage": usage})
            try:
                for chunk in out:
                    self.wfile.write(b"data: " + json.dumps(chunk).encode() + b"\n\n")
                    self.wfile.flush()
                self.wfile.write(b"data: [DONE]\n\n")
            except (BrokenPipeError, ConnectionResetError):
                pass

        def _control(self, path: str, raw: bytes) -> None:
            """Out-of-process controls: POST /_stub/fail {"n": 3|null, "status": 500}, /_stub/clear, /_stub/reset."""
            try:
                body = json.loads(raw or b"{}")
            except json.JSONDecodeError:
                body = {}
            if path == "/_stub/fail":
                stub.fail_next(body.get("n", 1), int(body.get("status", 500)))
            elif path == "/_stub/clear":
                stub.clear_failures()
            elif path == "/_stub/reset":
                stub.clear_failures()
                stub.reset_records()
            else:
                self._send_json(404, {"error": {"message": f"no control {path}"}})
                return
            self._send_json(200, stub.stats())

        def _stream(self, cid: str, created: int, model: str, reply: str, usage: dict[str, Any] | None) -> None:
            self._start_sse()

            def chunk(choices: list[dict[str, Any]], extra: dict[str, Any] | None = None) -> bytes:
                body = {"id": cid, "object": "chat.completion.chunk", "created": created, "model": model}
                body["choices"] = choices
                if extra:
                    body.update(extra)
                return b"data: " + json.dumps(body).encode() + b"\n\n"

            words = reply.split(" ")
            pieces = [w if i == 0 else " " + w for i, w in enumerate(words)]
            out = [chunk([{"index": 0, "delta": {"role": "assistant", "content": ""}, "finish_reason": None}])]
            out += [chunk([{"index": 0, "delta": {"content": p}, "finish_reason": None}]) for p in pieces]
            out.append(chunk([{"index": 0, "delta": {}, "finish_reason": "stop"}]))
            if usage is not None:
                out.append(chunk([], {"usage": usage}))
            out.append(b"data: [DONE]\n\n")
            try:
                for piece in out:
                    self.wfile.write(piece)
                    self.wfile.flush()
            except (BrokenPipeError, ConnectionResetError):
                pass

    return Handler


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description="OpenAI-compatible stub model server on 127.0.0.1")
    ap.add_argument("--port", type=int, default=0)
    ap.add_argument("--model", default=DEFAULT_MODEL)
    args = ap.parse_args(argv)
    stub = StubLLM(port=args.port, model=args.model, quiet=False).start()
    print(f"stub LLM listening on {stub.base_url}", flush=True)
    try:
        while True:
            time.sleep(3600)
    except KeyboardInterrupt:
        stub.stop()


if __name__ == "__main__":
    main()
