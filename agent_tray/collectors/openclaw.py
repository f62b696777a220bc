"""Where OpenClaw lives on this machine, and whether its gateway is up.

:func:`locate_openclaw` resolves paths the way OpenClaw does (``design/openclaw.md`` "Where
things are"); :class:`GatewayProbe` answers "installed? up? ready? which pid and version?" for
the telemetry ``openclaw`` block. Neither raises on a machine without OpenClaw, and neither
logs more than debug lines there.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import re
import shutil
import subprocess
import sys
import tempfile
import urllib.error
import urllib.request
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psutil

from agent_tray.collectors.transcripts_sqlite import DB_NAME, read_app_version
from shared.payloads import MAX_SHORT_STR, OpenClawState

log = logging.getLogger(__name__)

DEFAULT_PORT = 18789
DEFAULT_AGENT = "main"
AGENT_ID_RE = re.compile(r"^[a-z0-9][a-z0-9_-]{0,63}$")
VERSION_RE = re.compile(r"(\d{4}\.\d+\.\d+(?:[-.][0-9A-Za-z.]+)?)")
IS_WINDOWS = sys.platform == "win32"


def _uid_suffix() -> str:
    getuid = getattr(os, "getuid", None)
    return f"openclaw-{getuid()}" if getuid is not None else "openclaw"


@dataclass(frozen=True)
class OpenClawPaths:
    """Resolved OpenClaw locations (all absolute paths; nothing here need exist).

    Attributes:
        home: the home the tree hangs from (``$OPENCLAW_HOME`` or the user's home).
        state_dir: ``$OPENCLAW_STATE_DIR``, ``~/.openclaw-<profile>``, ``~/.openclaw`` or legacy
            ``~/.clawdbot``.
        config_path: ``$OPENCLAW_CONFIG_PATH`` or ``<state>/openclaw.json`` (JSON5).
        config: the parsed config (``{}`` when missing or broken).
        config_error: why the config could not be read, ``None`` when fine or absent.
        port: gateway TCP port: ``$OPENCLAW_GATEWAY_PORT``, config ``gateway.port``, or 18789.
        agent_ids: agent ids from config ``agents.list[].id``, ``agents.entries`` keys and
            ``<state>/agents/<id>/`` dirs, sorted; ``("main",)`` when none is found.
        log_dirs: gateway-log candidates: only config ``logging.file`` (a file) when set; else
            ``/tmp/openclaw`` (not on Windows) and ``$TMPDIR/openclaw-<uid>`` when the state dir
            exists; none without a state dir (those shared dirs would hold another instance's lines).
        lock_dirs: where the gateway lock file may be (2026.9: ``<state>/tmp/openclaw-<uid>``;
            2026.7: ``$TMPDIR/openclaw-<uid>``).
        cli_path: the ``openclaw`` executable on ``PATH``, or ``None``.
        profile: the ``--profile`` name in use, or ``None``.
        log_names: name stems of the gateway's default log files in ``log_dirs``: ``("openclaw",)``, and
            with a profile first ``openclaw-<encoded profile>`` (2026.9 names the file
            ``openclaw-<profile>-YYYY-MM-DD.log``; older versions do not).
        log_file_configured: the config names the gateway's log file (``logging.file``, then the only entry
            of ``log_dirs``): that file is this gateway's own. Otherwise ``log_dirs`` are the machine-wide
            dirs that every OpenClaw instance of this user logs to.
    """

    home: Path
    state_dir: Path
    config_path: Path
    config: dict[str, Any] = field(default_factory=dict, compare=False)
    config_error: str | None = None
    port: int = DEFAULT_PORT
    agent_ids: tuple[str, ...] = (DEFAULT_AGENT,)
    log_dirs: tuple[Path, ...] = ()
    lock_dirs: tuple[Path, ...] = ()
    cli_path: Path | None = None
    profile: str | None = None
    log_names: tuple[str, ...] = ("openclaw",)
    log_file_configured: bool = False

    def agent_dir(self, agent_id: str) -> Path:
        """``<state>/agents/<id>/agent``, or the config's ``agentDir`` for that agent when it exists."""
        default = self.state_dir / "agents" / agent_id / "agent"
        configured = _get(self.config, "agents", "entries", agent_id, "agentDir")
        if not isinstance(configured, str) and isinstance(_get(self.config, "agents", "list"), list):
            configured = next((a.get("agentDir") for a in self.config["agents"]["list"]
                               if isinstance(a, dict) and str(a.get("id", "")).strip().lower() == agent_id), None)
        if isinstance(configured, str) and configured.strip():
            path = _expand(configured.strip(), self.home)
            if path.is_dir() and path != default:
                return path
        return default

    def agent_db(self, agent_id: str) -> Path:
        """The agent's SQLite store (2026.8+): ``<agent dir>/openclaw-agent.sqlite``."""
        return self.agent_dir(agent_id) / DB_NAME

    def sessions_dir(self, agent_id: str) -> Path:
        """The agent's legacy JSONL sessions dir: ``<state>/agents/<id>/sessions``."""
        return self.state_dir / "agents" / agent_id / "sessions"

    def discover_agent_ids(self) -> tuple[str, ...]:
        """``agent_ids`` plus any agent dir created since :func:`locate_openclaw` ran."""
        return tuple(sorted(set(self.agent_ids) | set(_agent_dirs(self.state_dir))))


def log_profile_segment(profile: str) -> str:
    """OpenClaw 2026.9's file-name segment for a profile (its ``encodeLogProfileSegment``): ``a-z0-9`` kept,
    ``-`` -> ``--``, ``_`` -> ``-0``, ``A-Z`` -> ``-1`` + lower case, anything else ``-2<hex code point>-``."""
    out = []
    for ch in profile:
        if re.fullmatch(r"[a-z0-9]", ch):
            out.append(ch)
        elif ch == "-":
            out.append("--")
        elif ch == "_":
            out.append("-0")
        elif re.fullmatch(r"[A-Z]", ch):
            out.append("-1" + ch.lower())
        else:
            out.append(f"-2{ord(ch):x}-")
    encoded = "".join(out)
    return encoded if len(encoded) <= 220 else "-3" + hashlib.sha256(profile.encode()).hexdigest()


def _get(obj: Any, *keys: str) -> Any:
    for k in keys:
        obj = obj.get(k) if isinstance(obj, dict) else None
    return obj


def _expand(value: str, home: Path) -> Path:
    if value == "~" or value.startswith(("~/", "~\\")):
        return (home / value[2:]).absolute() if len(value) > 1 else home
    return Path(value).absolute()


def _agent_dirs(state_dir: Path) -> list[str]:
    try:
        return [p.name for p in (state_dir / "agents").iterdir() if p.is_dir() and AGENT_ID_RE.match(p.name)]
    except OSError:
        return []


def _json5(text: str) -> Any:
    """JSON5 text parsed; plain JSON (what OpenClaw's own commands write) by the standard parser,
    so the agent loads ``json5`` (~0.4 MB) only for a hand-edited file with comments or trailing commas."""
    try:
        return json.loads(text)
    except ValueError:
        import json5

        return json5.loads(text)


def load_config(path: Path) -> tuple[dict[str, Any], str | None]:
    """Parse an OpenClaw JSON5 config: ``(config, error)``; a broken file logs one warning."""
    try:
        text = path.read_text(encoding="utf-8-sig")
    except FileNotFoundError:
        return {}, None
    except OSError as exc:
        error = f"cannot read {path}: {exc}"
    else:
        try:
            parsed = _json5(text)
        except Exception as exc:  # json5 raises ValueError subclasses, but be safe
            error = f"{path} is not valid JSON5: {exc}"
        else:
            if isinstance(parsed, dict):
                return parsed, None
            error = f"{path} does not hold a JSON object"
    log.warning("OpenClaw config: %s; using defaults (port %d, agent %r)", error, DEFAULT_PORT, DEFAULT_AGENT)
    return {}, error


def locate_openclaw(env: Mapping[str, str] = os.environ, home: Path | None = None,
                    profile: str | None = None) -> OpenClawPaths:
    """Resolve OpenClaw's state dir, config, port, agents, log and lock dirs.

    Args:
        env: environment to read (``OPENCLAW_HOME``, ``OPENCLAW_STATE_DIR``,
            ``OPENCLAW_CONFIG_PATH``, ``OPENCLAW_GATEWAY_PORT``, ``OPENCLAW_PROFILE``,
            ``TMPDIR``/``TEMP``, ``PATH``).
        home: the user's home (default ``Path.home()``); ``$OPENCLAW_HOME`` replaces it.
        profile: an OpenClaw ``--profile`` name (state dir ``~/.openclaw-<profile>``);
            default ``$OPENCLAW_PROFILE``.
    """
    base = Path(env["OPENCLAW_HOME"]).expanduser() if env.get("OPENCLAW_HOME") else (home or Path.home())
    base = base.absolute()
    profile = (profile or env.get("OPENCLAW_PROFILE") or "").strip() or None
    if profile and profile.lower() == "default":
        profile = None
    if env.get("OPENCLAW_STATE_DIR"):
        state = _expand(env["OPENCLAW_STATE_DIR"].strip(), base)
    elif profile:
        state = base / f".openclaw-{profile}"
    elif not (base / ".openclaw").exists() and (base / ".clawdbot").is_dir():
        state = base / ".clawdbot"
    else:
        state = base / ".openclaw"
    if env.get("OPENCLAW_CONFIG_PATH"):
        config_path = _expand(env["OPENCLAW_CONFIG_PATH"].strip(), base)
    else:
        config_path = state / "openclaw.json"
        if not config_path.exists() and (state / "clawdbot.json").exists():
            config_path = state / "clawdbot.json"
    config, error = load_config(config_path)
    port = _port(env.get("OPENCLAW_GATEWAY_PORT")) or _port(_get(config, "gateway", "port")) or DEFAULT_PORT
    ids: set[str] = set(_agent_dirs(state))
    listed = _get(config, "agents", "list")
    if isinstance(listed, list):
        ids |= {a["id"].strip().lower() for a in listed if isinstance(a, dict) and isinstance(a.get("id"), str)}
    entries = _get(config, "agents", "entries")
    if isinstance(entries, dict):
        ids |= {k.strip().lower() for k in entries if isinstance(k, str)}
    agent_ids = tuple(sorted(i for i in ids if AGENT_ID_RE.match(i))) or (DEFAULT_AGENT,)
    tmp = Path(env.get("TMPDIR") or env.get("TEMP") or env.get("TMP") or tempfile.gettempdir())
    log_dirs: list[Path] = []
    log_file = _get(config, "logging", "file")
    if isinstance(log_file, str) and log_file.strip():
        log_dirs.append(_expand(log_file.strip(), base))  # OpenClaw then writes there only
    elif state.is_dir():  # no state dir: the machine-wide dirs hold another instance's lines, not ours
        if not IS_WINDOWS:
            log_dirs.append(Path("/tmp/openclaw"))  # noqa: S108 - OpenClaw's own default
        log_dirs.append(tmp / _uid_suffix())
    lock_dirs = [state / "tmp" / _uid_suffix(), tmp / _uid_suffix()]
    if not IS_WINDOWS:
        lock_dirs.append(Path("/tmp") / _uid_suffix())  # noqa: S108
    cli = shutil.which("openclaw", path=env.get("PATH"))
    return OpenClawPaths(
        home=base, state_dir=state, config_path=config_path, config=config, config_error=error, port=port,
        agent_ids=agent_ids, log_dirs=tuple(dict.fromkeys(log_dirs)), lock_dirs=tuple(dict.fromkeys(lock_dirs)),
        cli_path=Path(cli) if cli else None, profile=profile,
        log_names=(f"openclaw-{log_profile_segment(profile)}", "openclaw") if profile else ("openclaw",),
        log_file_configured=isinstance(log_file, str) and bool(log_file.strip()),
    )


def _port(value: Any) -> int | None:
    try:
        port = int(str(value).strip()) if value is not None and not isinstance(value, bool) else None
    except ValueError:
        return None
    return port if port is not None and 0 < port < 65536 else None


@dataclass(frozen=True)
class GatewayInfo:
    """What :meth:`GatewayProbe.collect` found.

    ``installed``: state dir or CLI present (or a gateway answered); ``up``: ``GET /health``
    answered ``{"ok": true}``; ``ready``: ``GET /readyz`` ``ready`` (``None`` when not asked,
    i.e. the gateway is down); ``port``: the port probed; ``pid``: the gateway process from its
    lock file when that process is alive; ``start_time``: the lock's ``startTime`` (clock ticks
    since boot, Linux); ``version``: e.g. ``"2026.9.6"``; ``agents``: agent ids.
    """

    installed: bool
    up: bool
    ready: bool | None
    port: int
    pid: int | None
    start_time: int | None
    version: str | None
    agents: tuple[str, ...]
    state_dir: Path

    def to_state(self) -> OpenClawState:
        """The telemetry ``openclaw`` block (:class:`shared.payloads.OpenClawState`)."""
        return OpenClawState(installed=self.installed, up=self.up, ready=self.ready, port=self.port,
                             version=self.version[:MAX_SHORT_STR] if self.version else None, pid=self.pid)


def _proc_start_time(pid: int) -> int | None:
    """Field 22 of ``/proc/<pid>/stat`` (start time in clock ticks), Linux only."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    try:
        return int(stat[stat.rindex(")") + 2:].split()[19])
    except (ValueError, IndexError):
        return None


class GatewayProbe:
    """Probes the local gateway; keeps only a version cache between calls.

    Args:
        paths: from :func:`locate_openclaw`.
        http_timeout_s: timeout of each loopback HTTP request (seconds).
        version_timeout_s: timeout of ``openclaw --version`` (seconds; it takes about 1 s).
    """

    def __init__(self, paths: OpenClawPaths, http_timeout_s: float = 1.0, version_timeout_s: float = 15.0) -> None:
        self.paths = paths
        self.http_timeout_s = http_timeout_s
        self.version_timeout_s = version_timeout_s
        self.version_runs = 0
        self._version_key: tuple[Any, ...] | None = None
        self._version: str | None = None
        self._http = urllib.request.build_opener(urllib.request.ProxyHandler({}))  # never via a proxy

    def collect(self) -> GatewayInfo:
        """Probe once: lock file, ``/health``, ``/readyz`` (when up), version (cached)."""
        p = self.paths
        lock = self.read_lock()
        pid = start = None
        port = p.port
        if lock is not None:
            pid, start = lock.get("pid"), lock.get("startTime")
            if not self._alive(pid, start):
                pid = start = None
            elif _port(lock.get("port")):
                port = _port(lock.get("port")) or port
        status, body = self._get(port, "/health")
        up = status == 200 and isinstance(body, dict) and (body.get("ok") is True or body.get("status") == "live")
        ready = None
        if up:
            _, ready_body = self._get(port, "/readyz")
            ready = bool(ready_body.get("ready")) if isinstance(ready_body, dict) else None
        installed = p.state_dir.is_dir() or p.cli_path is not None or up
        version = self._cached_version(pid, start) if installed else None
        return GatewayInfo(installed=installed, up=up, ready=ready, port=port, pid=pid,
                           start_time=start if isinstance(start, int) else None, version=version,
                           agents=p.discover_agent_ids() if installed else (), state_dir=p.state_dir)

    def read_lock(self) -> dict[str, Any] | None:
        """The gateway lock file's JSON (``pid``, ``startTime``, ``port``, ``configPath``…).

        Looks for ``gateway.<sha256(abs config path)[:8]>.lock`` in each lock dir, then for any
        ``gateway.*.lock`` whose ``configPath`` is this config. JSON followed by padding.
        """
        config = str(self.paths.config_path)
        name = f"gateway.{hashlib.sha256(config.encode()).hexdigest()[:8]}.lock"
        for d in self.paths.lock_dirs:
            exact = _read_lock_file(d / name)
            if exact is not None:
                return exact
            try:
                others = sorted(d.glob("gateway.*.lock"))
            except OSError:
                continue
            for f in others:
                data = _read_lock_file(f)
                if data is not None and str(data.get("configPath", "")) == config:
                    return data
        return None

    @staticmethod
    def _alive(pid: Any, start: Any) -> bool:
        if not isinstance(pid, int) or pid <= 0 or not psutil.pid_exists(pid):
            return False
        if isinstance(start, int) and sys.platform.startswith("linux"):
            now = _proc_start_time(pid)
            return now is None or now == start  # a different start time: the pid was reused
        return True

    def _get(self, port: int, path: str) -> tuple[int | None, Any]:
        url = f"http://127.0.0.1:{port}{path}"
        try:
            with self._http.open(url, timeout=self.http_timeout_s) as resp:
                status, raw = resp.status, resp.read(65536)
        except urllib.error.HTTPError as exc:  # e.g. /readyz 503 with a JSON body
            status, raw = exc.code, exc.read(65536) if exc.fp else b""
        except (OSError, ValueError) as exc:
            log.debug("GET %s: %s", url, exc)
            return None, None
        try:
            return status, json.loads(raw)
        except ValueError:
            return status, None

    def _cached_version(self, pid: int | None, start: Any) -> str | None:
        key = (pid, start, str(self.paths.cli_path))
        if key != self._version_key:
            self._version_key, self._version = key, self._read_version()
        return self._version

    def _read_version(self) -> str | None:
        cli = self.paths.cli_path
        if cli is not None:
            self.version_runs += 1
            try:
                out = subprocess.run([str(cli), "--version"], capture_output=True, text=True, errors="replace",
                                     timeout=self.version_timeout_s, stdin=subprocess.DEVNULL, check=False)
                m = VERSION_RE.search(out.stdout + "\n" + out.stderr)
                if m:
                    return m.group(1)
            except (OSError, subprocess.SubprocessError) as exc:
                log.debug("openclaw --version failed: %s", exc)
        dbs = [self.paths.agent_db(a) for a in self.paths.discover_agent_ids()]
        for db in [*dbs, self.paths.state_dir / "state" / "openclaw.sqlite"]:
            version = read_app_version(db)
            if version:
                m = VERSION_RE.search(version)
                return m.group(1) if m else version
        return None


def _read_lock_file(path: Path) -> dict[str, Any] | None:
    try:
        text = path.read_text(encoding="utf-8", errors="replace")
    except OSError:
        return None
    try:
        data, _ = json.JSONDecoder().raw_decode(text.lstrip())
    except ValueError:
        return None
    return data if isinstance(data, dict) else None
