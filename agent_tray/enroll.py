"""Enrollment: turn a token into an agent config, keep this machine's settings, and check the key
with the broker before anything is written. Used by ``clawfleet-agent enroll`` and the tray's
token dialog.
"""

from __future__ import annotations

import logging
import sys
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
from paho.mqtt.reasoncodes import ReasonCode

from agent_tray.config import KEPT_ON_REENROLL, AgentConfig, ConfigError, load_config, save_config
from agent_tray.publisher import describe_connect_error, tls_context
from agent_tray.status import REFUSED_REASON_CODES
from agent_tray.transport import Route, picker_for
from shared.enrollment import EnrollmentError, decode_token
from shared.mqtt_client import mqtt5_client

log = logging.getLogger("clawfleet.agent.enroll")

CHECK_TIMEOUT_S = 10.0
"""How long the broker check waits for a CONNACK, seconds."""


class KeyRefused(Exception):
    """The broker answered and refused the device's key (revoked, rotated, or mistyped)."""


class BrokerUnreachable(Exception):
    """The broker could not be reached (or TLS failed) within the timeout; the message says why."""


@dataclass(frozen=True)
class EnrollResult:
    """What :func:`enroll` did: the config written, where, and the settings kept from the old one."""

    config: AgentConfig
    path: Path
    kept: tuple[str, ...]
    checked: bool


def read_token(arg: str | None, token_file: Path | None) -> str:
    """The token from ``--token-file``, from stdin (``arg == "-"``) or the argument itself.

    Raises:
        EnrollmentError: no token given, or the file cannot be read.
    """
    if token_file is not None:
        try:
            text = token_file.read_text(encoding="utf-8")
        except OSError as exc:
            raise EnrollmentError(f"cannot read the token file {token_file}: {exc.strerror or exc}") from None
    elif arg == "-":
        text = sys.stdin.read()
    elif arg:
        text = arg
    else:
        raise EnrollmentError("no token: pass it as an argument, '-' to read stdin, or --token-file PATH")
    token = text.strip()
    if not token:
        raise EnrollmentError("the token is empty")
    return token


def build_config(token: str, existing: AgentConfig | None, overrides: dict[str, Any]) -> tuple[AgentConfig, tuple]:
    """The new config: identity from ``token``, settings from ``existing`` (see
    :data:`agent_tray.config.KEPT_ON_REENROLL`), then ``overrides`` (None values ignored).

    Returns ``(config, names of settings kept from existing)``.

    Raises:
        EnrollmentError: the token is damaged; ConfigError (a ValueError) for a bad override value.
    """
    enr = decode_token(token)
    settings: dict[str, Any] = {}
    kept: list[str] = []
    if existing is not None:
        old = existing.to_dict()
        for key in KEPT_ON_REENROLL:
            if key in old and key not in {k for k, v in overrides.items() if v is not None}:
                settings[key] = old[key]
                if old[key] != AgentConfig.default(key):
                    kept.append(key)
    if enr.fleet_url:  # the fleet this token comes from; an override still wins
        settings["dashboard_url"] = enr.fleet_url
        kept = [k for k in kept if k != "dashboard_url"]
    settings.update({k: v for k, v in overrides.items() if v is not None})
    cfg = AgentConfig(device_id=enr.device_id, broker_url=enr.url, api_key=enr.api_key, ca_pem=enr.ca_pem,
                      wss_url=enr.wss_url, update_public_key=enr.update_key, **settings)
    return cfg, tuple(kept)


def check_key(cfg: AgentConfig, timeout: float = CHECK_TIMEOUT_S) -> None:
    """Connect once to the broker with the config's device id and key, then disconnect cleanly.
    When the broker URL's port cannot be reached and the config names a WebSockets URL, that one is
    tried next (as the running agent does, :mod:`agent_tray.transport`).

    Raises:
        KeyRefused: CONNACK with "bad user name or password", "not authorized", "banned" or
            "bad authentication method".
        BrokerUnreachable: no connection, TLS failure, another CONNACK failure, or no CONNACK
            within ``timeout`` seconds (on every route).
    """
    picker = picker_for(cfg.broker_url, cfg.wss_url)
    routes = [picker.direct] + ([picker.fallback] if picker.fallback else [])
    problems: list[str] = []
    for route in routes:
        try:
            _check_route(cfg, route, timeout)
            return
        except BrokerUnreachable as exc:
            problems.append(str(exc) if len(routes) == 1 else f"{route.url}: {exc}")
    raise BrokerUnreachable("; ".join(problems))


def _check_route(cfg: AgentConfig, route: Route, timeout: float) -> None:
    client = mqtt5_client(cfg.device_id, cfg.device_id, cfg.api_key, tls_context(cfg), insecure=cfg.insecure,
                          transport=route.transport)
    if route.kind == "wss":
        client.ws_set_options(path=route.path)
    answer: list[ReasonCode] = []
    done = threading.Event()

    def on_connect(_c: mqtt.Client, _u: object, _f: object, reason: ReasonCode, _p: object) -> None:
        answer.append(reason)
        done.set()

    client.on_connect = on_connect
    try:
        client.connect(route.host, route.port, keepalive=int(max(5, timeout)))
    except OSError as exc:
        _level, why = describe_connect_error(exc, route.host, tls=route.tls)
        raise BrokerUnreachable(why) from None
    client.loop_start()
    try:
        if not done.wait(timeout):
            raise BrokerUnreachable(f"no answer from the broker at {route.url} within {timeout:.0f} s")
    finally:
        client.disconnect()
        client.loop_stop()
    reason = answer[0]
    if reason.is_failure:
        if reason.value in REFUSED_REASON_CODES:
            raise KeyRefused(f"key refused by the broker ({reason}): ask the fleet admin for a new token")
        raise BrokerUnreachable(f"the broker refused the connection: {reason}")


def enroll(token: str, path: Path, overrides: dict[str, Any] | None = None, offline: bool = False,
           timeout: float = CHECK_TIMEOUT_S, group: int | None = None) -> EnrollResult:
    """Decode ``token``, merge with the config at ``path`` (if valid), check the key with the broker
    (unless ``offline``), then write the config (mode 0600, or 0640 for group id ``group``: the packaged
    system service's group). Nothing is written when a step fails.

    Raises:
        EnrollmentError: damaged token. ValueError: bad setting. KeyRefused, BrokerUnreachable: see
        :func:`check_key`.
    """
    try:
        existing = load_config(path) if path.exists() else None
    except ConfigError as exc:
        log.warning("ignoring the existing config: %s", exc)
        existing = None
    cfg, kept = build_config(token, existing, overrides or {})
    if not offline:
        check_key(cfg, timeout)
    save_config(cfg, path, group=group)
    return EnrollResult(cfg, path, kept, checked=not offline)
