"""Agent configuration: one JSON file written by ``clawfleet-agent enroll`` (mode 0600).

Location: ``--config PATH``, else ``$CLAWFLEET_AGENT_CONFIG``, else
``<platformdirs user config dir>/clawfleet/agent.json``. The file holds the device's API key,
so it is created readable by its owner only.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import platformdirs

from agent_tray.checks import Rule
from shared.broker_url import parse_broker_url
from shared.private_files import write_private
from shared.topics import DEVICE_ID_RE

APP = "clawfleet"
DATA_DIR_ENV = "CLAWFLEET_AGENT_DATA_DIR"
"""Environment variable naming the agent's data dir when the config has no ``data_dir``."""
log = logging.getLogger("clawfleet.agent")


class ConfigError(ValueError):
    """The agent config is missing or invalid; the message names the key and the fix."""


def _setting(kind: type, doc: str, default: Any = dataclasses.MISSING, **rule: Any) -> Any:
    optional = default is None
    return field(default=default, metadata={"rule": Rule(kind, optional=optional, doc=doc, **rule)})


@dataclass
class AgentConfig:
    """Everything the agent needs; all durations in seconds, sizes in bytes.

    Checked on construction (plain Python: the agent does not load pydantic). Unknown keys are
    refused by :meth:`from_dict`.

    Raises:
        ConfigError: a setting has the wrong type or is out of range; the message names the
            key(s) and what is accepted.
    """

    device_id: str = _setting(str, "this device's id", pattern=f"^(?:{DEVICE_ID_RE.pattern})$", max_length=63)
    broker_url: str = _setting(str, "mqtt://host:port (loopback) or mqtts://host:port")
    api_key: str = _setting(str, "this device's secret; never logged", min_length=16)
    ca_pem: str | None = _setting(str, "CA certificate (PEM) pinned for mqtts", None)
    insecure: bool = _setting(bool, "skip TLS verification (testing only)", False)
    interval_s: float = _setting(float, "seconds between telemetry samples", 30.0, ge=1, le=3600)
    keepalive_s: int = _setting(int, "MQTT keepalive; the broker publishes the last will after ~1.5x this", 30,
                                ge=5, le=600)
    data_dir: str | None = _setting(str, "where the outbox lives; default per-OS data dir", None)
    outbox_max_bytes: int = _setting(int, "outbox bound; oldest telemetry is dropped, usage and logs wait in "
                                     "OpenClaw's files", 64 * 1024 * 1024, ge=1024 * 1024)
    openclaw_state_dir: str | None = _setting(str, "OpenClaw state dir; default as OpenClaw", None)
    openclaw_profile: str | None = _setting(str, "OpenClaw --profile name, if any", None)
    log_min_level: str = _setting(str, "lowest OpenClaw log level reported", "warn",
                                  pattern="^(trace|debug|info|warn|error|fatal)$")
    bridge_port: int = _setting(int, "local bridge port on 127.0.0.1 (not 18789+N: OpenClaw uses those); 0 = off",
                                17890, ge=0, le=65535)
    bridge_token: str | None = _setting(str, "bearer token the local bridge requires, if set", None)
    dashboard_url: str | None = _setting(str, "fleet dashboard the tray's 'Open dashboard' opens; agent updates "
                                         "are downloaded from it", None, pattern=r"^https?://", max_length=500)
    wss_url: str | None = _setting(str, "wss://host:port/mqtt: MQTT over secure WebSockets, used when the broker "
                                   "URL's port is blocked", None, pattern=r"^wss://\S+$", max_length=300)
    update_public_key: str | None = _setting(str, "Ed25519 key (base64url) that must sign agent updates; none: "
                                             "no self-update", None, pattern=r"^[A-Za-z0-9_-]{43}$")
    self_update: bool = _setting(bool, "install agent updates the fleet server sends", True)

    def __post_init__(self) -> None:
        problems = [f"'{f.name}': {why}" for f in dataclasses.fields(self)
                    if (why := f.metadata["rule"].problem(getattr(self, f.name)))]
        if problems:
            raise ConfigError("; ".join(problems[:5]))
        for f in dataclasses.fields(self):  # JSON numbers: 30 for a float setting, 30.0 for an int one
            kind, value = f.metadata["rule"].kind, getattr(self, f.name)
            if kind in (int, float) and value is not None and type(value) is not kind:
                setattr(self, f.name, kind(value))

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> AgentConfig:
        """Build from a JSON object (the config file).

        Raises:
            ConfigError: an unknown or missing key, or a bad value (the message names them).
        """
        names = {f.name for f in dataclasses.fields(cls)}
        required = {f.name for f in dataclasses.fields(cls) if f.default is dataclasses.MISSING}
        problems = [f"'{k}': unknown setting" for k in data if k not in names]
        problems += [f"'{k}': must be set" for k in sorted(required - set(data))]
        if problems:
            raise ConfigError("; ".join(problems[:5]))
        return cls(**data)

    def to_dict(self, exclude_none: bool = True) -> dict[str, Any]:
        """The settings as a JSON object (what :func:`save_config` writes)."""
        data = dataclasses.asdict(self)
        return {k: v for k, v in data.items() if v is not None} if exclude_none else data

    def model_copy(self, update: dict[str, Any] | None = None) -> AgentConfig:
        """A checked copy with the settings in ``update`` replaced (the name pydantic's models use;
        the server's local agent calls it)."""
        return dataclasses.replace(self, **(update or {}))

    @classmethod
    def default(cls, name: str) -> Any:
        """The default value of setting ``name`` (KeyError for a required or unknown one)."""
        f = cls.__dataclass_fields__[name]
        if f.default is dataclasses.MISSING:
            raise KeyError(name)
        return f.default

    def resolved_data_dir(self) -> Path:
        """Directory for the outbox and collector positions (created on demand): ``data_dir``, else
        ``$CLAWFLEET_AGENT_DATA_DIR`` (the packaged system service sets ``/var/lib/clawfleet-agent``), else
        the per-user data dir."""
        if self.data_dir:
            return Path(self.data_dir)
        env = os.environ.get(DATA_DIR_ENV)
        return Path(env) if env else Path(platformdirs.user_data_dir(APP, appauthor=False))

    def broker(self) -> tuple[str, str, int]:
        """``(scheme, host, port)`` of the broker URL."""
        return parse_broker_url(self.broker_url)


KEPT_ON_REENROLL = ("interval_s", "keepalive_s", "data_dir", "outbox_max_bytes", "openclaw_state_dir",
                    "openclaw_profile", "log_min_level", "bridge_port", "bridge_token", "dashboard_url", "insecure",
                    "self_update")
"""Settings ``enroll`` carries over from an existing config (everything but the identity from the token)."""


def default_log_dir() -> Path:
    """``$CLAWFLEET_AGENT_LOG_DIR`` or the per-user log dir (``~/.local/state/clawfleet/log`` on Linux,
    ``~/Library/Logs/clawfleet`` on macOS, ``%LOCALAPPDATA%\\clawfleet\\Logs`` on Windows)."""
    env = os.environ.get("CLAWFLEET_AGENT_LOG_DIR")
    return Path(env) if env else Path(platformdirs.user_log_dir(APP, appauthor=False))


def default_config_path() -> Path:
    """``$CLAWFLEET_AGENT_CONFIG`` or ``<user config dir>/clawfleet/agent.json``."""
    env = os.environ.get("CLAWFLEET_AGENT_CONFIG")
    return Path(env) if env else Path(platformdirs.user_config_dir(APP, appauthor=False)) / "agent.json"


def load_config(path: Path) -> AgentConfig:
    """Read and validate the config file.

    Raises:
        ConfigError: the file is missing, not JSON, or a key is wrong (the message names it).
    """
    if not path.exists():
        raise ConfigError(f"no agent config at {path}: run 'clawfleet-agent enroll' first (it asks for the token)")
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as exc:
        raise ConfigError(f"cannot read agent config {path}: {exc}") from None
    if not isinstance(data, dict):
        raise ConfigError(f"invalid agent config {path}: '(file)': must be a JSON object. Enroll again.")
    try:
        cfg = AgentConfig.from_dict(data)
        cfg.broker()
    except ConfigError as exc:
        raise ConfigError(f"invalid agent config {path}: {exc}. Fix the key or enroll again.") from None
    except ValueError as exc:
        raise ConfigError(f"invalid agent config {path}: 'broker_url': {exc}") from None
    return cfg


def save_config(cfg: AgentConfig, path: Path, group: int | None = None) -> None:
    """Write the config atomically with mode 0600 (owner read/write only), or 0640 owned by group id
    ``group`` (the packaged system service reads it as that group; only root may change it)."""
    write_private(path, json.dumps(cfg.to_dict(), indent=2))
    if group is not None:
        os.chown(path, -1, group)
        os.chmod(path, 0o640)


class ConfigWatch:
    """Notices that the config file at ``path`` was rewritten (``clawfleet-agent enroll`` with a new key,
    or into another fleet) while the agent runs with ``current``.

    Cheap to ask often: one ``stat`` when nothing changed. A file that does not load is ignored
    (logged once per change) and the agent keeps its config.
    """

    def __init__(self, path: Path, current: AgentConfig) -> None:
        self.path, self.current = path, current
        self._stamp = config_stamp(path)

    def changed(self) -> AgentConfig | None:
        """The new config when the file now holds a valid config other than :attr:`current`, else None."""
        stamp = config_stamp(self.path)
        if stamp == self._stamp:
            return None
        self._stamp = stamp
        try:
            cfg = load_config(self.path)
        except ConfigError as exc:
            log.warning("the agent config changed but cannot be used, keeping the running one: %s", exc)
            return None
        if cfg.to_dict(exclude_none=False) == self.current.to_dict(exclude_none=False):
            return None
        self.current = cfg
        return cfg


def config_stamp(path: Path) -> tuple[int, int] | None:
    """``(mtime ns, size)`` of the config file, None when it does not exist: changes when it is rewritten."""
    try:
        st = path.stat()
    except OSError:
        return None
    return st.st_mtime_ns, st.st_size
