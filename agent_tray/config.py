"""Agent configuration: one JSON file written by ``clawfleet-agent enroll`` (mode 0600).

Location: ``--config PATH``, else ``$CLAWFLEET_AGENT_CONFIG``, else
``<platformdirs user config dir>/clawfleet/agent.json``. The file holds the device's API key,
so it is created readable by its owner only.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import platformdirs
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from shared.enrollment import parse_broker_url
from shared.topics import DEVICE_ID_RE

APP = "clawfleet"


class ConfigError(ValueError):
    """The agent config is missing or invalid; the message names the key and the fix."""


class AgentConfig(BaseModel):
    """Everything the agent needs; all durations in seconds, sizes in bytes."""

    model_config = ConfigDict(extra="forbid")

    device_id: str = Field(pattern=DEVICE_ID_RE.pattern, max_length=63, description="this device's id")
    broker_url: str = Field(description="mqtt://host:port (loopback) or mqtts://host:port")
    api_key: str = Field(min_length=16, description="this device's secret; never logged")
    ca_pem: str | None = Field(default=None, description="CA certificate (PEM) pinned for mqtts")
    insecure: bool = Field(default=False, description="skip TLS verification (testing only)")
    interval_s: float = Field(default=30.0, ge=1, le=3600, description="seconds between telemetry samples")
    keepalive_s: int = Field(default=30, ge=5, le=600,
                             description="MQTT keepalive; the broker publishes the last will after ~1.5x this")
    data_dir: str | None = Field(default=None, description="where the outbox lives; default per-OS data dir")
    outbox_max_bytes: int = Field(default=64 * 1024 * 1024, ge=1024 * 1024,
                                  description="outbox bound; oldest telemetry is dropped, usage and logs wait in "
                                  "OpenClaw's files")
    openclaw_state_dir: str | None = Field(default=None, description="OpenClaw state dir; default as OpenClaw")
    openclaw_profile: str | None = Field(default=None, description="OpenClaw --profile name, if any")
    log_min_level: str = Field(default="warn", pattern="^(trace|debug|info|warn|error|fatal)$",
                               description="lowest OpenClaw log level reported")
    bridge_port: int = Field(default=17890, ge=0, le=65535,
                             description="local bridge port on 127.0.0.1 (not 18789+N: OpenClaw uses those); 0 = off")
    bridge_token: str | None = Field(default=None, description="bearer token the local bridge requires, if set")
    dashboard_url: str | None = Field(default=None, pattern=r"^https?://", max_length=500,
                                      description="fleet dashboard the tray's 'Open dashboard' opens")

    def resolved_data_dir(self) -> Path:
        """Directory for the outbox and collector positions (created on demand)."""
        return Path(self.data_dir) if self.data_dir else Path(platformdirs.user_data_dir(APP, appauthor=False))

    def broker(self) -> tuple[str, str, int]:
        """``(scheme, host, port)`` of the broker URL."""
        return parse_broker_url(self.broker_url)


KEPT_ON_REENROLL = ("interval_s", "keepalive_s", "data_dir", "outbox_max_bytes", "openclaw_state_dir",
                    "openclaw_profile", "log_min_level", "bridge_port", "bridge_token", "dashboard_url", "insecure")
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
    try:
        cfg = AgentConfig.model_validate(data)
        cfg.broker()
    except ValidationError as exc:
        problems = "; ".join(
            f"'{'.'.join(map(str, e['loc'])) or '(file)'}': {e['msg']}" for e in exc.errors()[:5]
        )
        raise ConfigError(f"invalid agent config {path}: {problems}. Fix the key or enroll again.") from None
    except ValueError as exc:
        raise ConfigError(f"invalid agent config {path}: 'broker_url': {exc}") from None
    return cfg


def save_config(cfg: AgentConfig, path: Path) -> None:
    """Write the config atomically with mode 0600 (owner read/write only)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as fh:
        fh.write(cfg.model_dump_json(indent=2, exclude_none=True))
    os.chmod(tmp, 0o600)
    os.replace(tmp, path)
