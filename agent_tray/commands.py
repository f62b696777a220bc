"""``clawfleet-agent``'s commands (typer): enroll this machine into a fleet, run the agent (tray or
headless), show its status, and install it as a service or a login item.

The console script's entry point is :func:`agent_tray.cli.main`, which runs ``run --headless``
without loading this module (typer and its help formatter are not needed to run the service)."""

from __future__ import annotations

import datetime as dt
import getpass
import json
import os
import sys
from pathlib import Path
from typing import Annotated, Any

import typer

from agent_tray.config import AgentConfig, ConfigError, default_config_path, load_config
from shared.enrollment import EnrollmentError
from shared.version import __version__

app = typer.Typer(help="ClawFleet agent: reports this machine and its OpenClaw gateway to a fleet server.",
                  no_args_is_help=True, add_completion=False,
                  rich_markup_mode=None)  # plain help: long option names wrap instead of being cut off

ConfigOpt = Annotated[Path | None, typer.Option("--config", "-c", help="agent config file "
                      "(default: $CLAWFLEET_AGENT_CONFIG or the per-user config dir)")]
EXIT_NOT_RUNNING = 3
"""``status`` exit code when no agent answers (as LSB ``status`` actions)."""


def _version(value: bool) -> None:
    if value:
        typer.echo(f"clawfleet-agent {__version__}")
        raise typer.Exit()


@app.callback()
def _main(version: Annotated[bool, typer.Option("--version", callback=_version, is_eager=True,
                                                help="print the version and exit")] = False) -> None:
    """ClawFleet agent: reports this machine and its OpenClaw gateway to a fleet server."""


def _fail(message: str, code: int = 2) -> typer.Exit:
    typer.echo(f"error: {message}", err=True)
    return typer.Exit(code)


def _load(config: Path | None) -> AgentConfig:
    try:
        return load_config(config or default_config_path())
    except ConfigError as exc:
        raise _fail(str(exc)) from None


@app.command()
def enroll(
    token: Annotated[str | None, typer.Argument(
        help="enrollment token from 'clawfleet-server device add' or the dashboard; '-' reads it from stdin "
             "(a token on the command line shows in 'ps'; prefer '-' or --token-file)")] = None,
    token_file: Annotated[Path | None, typer.Option(help="read the token from this file")] = None,
    config: ConfigOpt = None,
    offline: Annotated[bool, typer.Option(help="write the config without checking the key with the broker")] = False,
    interval: Annotated[float | None, typer.Option(help="seconds between telemetry samples [kept; default 30]")] = None,
    data_dir: Annotated[Path | None, typer.Option(help="where the outbox lives [kept; default per-user dir]")] = None,
    bridge_port: Annotated[int | None, typer.Option(help="local bridge port, 0 = off [kept; default 17890]")] = None,
    openclaw_state_dir: Annotated[Path | None, typer.Option(help="OpenClaw state dir [kept; default: as OpenClaw]")
                                  ] = None,
    openclaw_profile: Annotated[str | None, typer.Option(help="OpenClaw --profile name [kept]")] = None,
    dashboard_url: Annotated[str | None, typer.Option(help="dashboard URL the tray opens [kept]")] = None,
    insecure: Annotated[bool | None, typer.Option("--insecure/--verify-tls",
                                                  help="skip / do TLS verification (testing only) [kept]")] = None,
    gui: Annotated[bool, typer.Option(help="ask for the token in a small window (used by the tray)",
                                      hidden=True)] = False,
    system: Annotated[bool, typer.Option("--system", help="enroll the system service of the .deb/.rpm: config "
                                         "/etc/clawfleet-agent/agent.json, readable by its group clawfleet-agent "
                                         "(needs root)")] = False,
) -> None:
    """Write this machine's agent config from an enrollment token (file mode 0600).

    Settings of an existing config (interval, bridge port, OpenClaw state dir, data dir, …) are kept
    unless given here; only the identity (device, broker, key, CA) comes from the token. The key is
    checked with the broker first, so a revoked or mistyped token writes nothing.
    """
    from agent_tray.enroll import BrokerUnreachable, KeyRefused
    from agent_tray.enroll import enroll as do_enroll

    group = None
    if system:
        from agent_tray.platform import system_config_path
        from agent_tray.platform.linux import SERVICE_USER

        path = config or system_config_path()
        group = _group_id(SERVICE_USER) if sys.platform.startswith("linux") else None
    else:
        path = config or default_config_path()
    if gui:
        from agent_tray.enroll_dialog import ask_and_enroll

        try:
            enrolled = ask_and_enroll(path)
        except RuntimeError as exc:  # no display or no Tk (typer.Exit is a RuntimeError too: raised below)
            raise _fail(str(exc)) from None
        raise typer.Exit(0 if enrolled else 1)
    overrides: dict[str, Any] = {
        "interval_s": interval, "data_dir": str(data_dir) if data_dir else None, "bridge_port": bridge_port,
        "openclaw_state_dir": str(openclaw_state_dir) if openclaw_state_dir else None,
        "openclaw_profile": openclaw_profile, "dashboard_url": dashboard_url, "insecure": insecure,
    }
    try:
        from agent_tray.enroll import read_token

        if token is None and token_file is None and sys.stdin.isatty():
            token = getpass.getpass("enrollment token: ")
        result = do_enroll(read_token(token, token_file), path, overrides, offline=offline, group=group)
    except EnrollmentError as exc:
        raise _fail(str(exc)) from None
    except KeyRefused as exc:
        raise _fail(f"{exc}; nothing was written", 3) from None
    except BrokerUnreachable as exc:
        raise _fail(f"{exc}; nothing was written (--offline writes the config without this check)", 4) from None
    except ValueError as exc:  # ConfigError: a bad option value
        raise _fail(f"invalid setting: {exc}") from None
    except PermissionError as exc:
        raise _fail(f"cannot write {path}: {exc.strerror}{' (--system needs root: sudo)' if system else ''}") from None
    cfg = result.config
    typer.echo(f"enrolled as device '{cfg.device_id}' with broker {cfg.broker_url}"
               f"{' (key accepted)' if result.checked else ' (key not checked: --offline)'}; config written to {path}")
    if result.kept:
        typer.echo("kept from the previous config: " + ", ".join(result.kept))
    typer.echo("an agent already running with this config switches to it within a few seconds; otherwise start it "
               "with: clawfleet-agent run   (tray)   or   clawfleet-agent run --headless   (service)")


def _group_id(name: str) -> int | None:
    """Group id of ``name``, None when there is no such group (or no groups: Windows)."""
    try:
        import grp

        return grp.getgrnam(name).gr_gid
    except (ImportError, KeyError):
        return None


@app.command()
def run(
    config: ConfigOpt = None,
    headless: Annotated[bool, typer.Option(help="run without a tray icon (servers, services)")] = False,
    log_dir: Annotated[Path | None, typer.Option(help="where agent.log goes (default: per-user log dir, "
                                                      "$CLAWFLEET_AGENT_LOG_DIR)")] = None,
    no_log_file: Annotated[bool, typer.Option("--no-log-file", help="log to stderr only")] = False,
    autostart: Annotated[bool, typer.Option(help="started at login: exit quietly when not enrolled",
                                            hidden=True)] = False,
    verbose: Annotated[bool, typer.Option("--verbose", "-v", help="debug logging")] = False,
) -> None:
    """Run the agent until Quit / Ctrl-C / SIGTERM (publishes a retained 'shutdown' status on the way out).

    Without --headless it shows a tray icon (green connected, amber OpenClaw down, grey offline, red key
    refused or not enrolled) and asks for a token when this machine is not enrolled yet.
    """
    from agent_tray.runner import run as run_agent

    run_agent(config, headless=headless, log_dir=log_dir, no_log_file=no_log_file, autostart=autostart,
              verbose=verbose)


def _when(ms: int | None) -> str:
    if not ms:
        return "never"
    at = dt.datetime.fromtimestamp(ms / 1000)
    ago = max(0, int(dt.datetime.now().timestamp() - ms / 1000))
    return f"{at:%Y-%m-%d %H:%M:%S} ({ago} s ago)"


@app.command()
def status(
    config: ConfigOpt = None,
    as_json: Annotated[bool, typer.Option("--json", help="print one JSON object")] = False,
    system: Annotated[bool, typer.Option("--system", help="the machine-wide service's agent (enroll --system; "
                                         "reading its config needs root or its group)")] = False,
) -> None:
    """Show the agent's state: connection, broker, device, outbox size, last publish, OpenClaw.

    Asks the running agent through its local bridge (127.0.0.1:bridge_port). Exit code 0 when an agent
    answers, 3 when none runs, 2 when this machine is not enrolled.
    """
    from agent_tray.platform import system_config_path
    from agent_tray.status import ask_running_agent, outbox_size, recorded_bridge_port

    cfg = _load(config or (system_config_path() if system else None))
    if system and sys.platform.startswith("linux"):
        from agent_tray.config import DATA_DIR_ENV
        from agent_tray.platform.linux import SYSTEM_DATA_DIR

        os.environ.setdefault(DATA_DIR_ENV, str(SYSTEM_DATA_DIR))  # as the packaged unit sets it
    port = recorded_bridge_port(cfg.resolved_data_dir(), cfg.device_id) or cfg.bridge_port
    other = None
    try:
        live = ask_running_agent(port, cfg.bridge_token) if port else None
    except PermissionError as exc:
        raise _fail(str(exc)) from None
    if live is not None and live.get("device_id") != cfg.device_id:  # another agent's bridge answered
        other, live = str(live.get("device_id")), None
    if as_json:
        waiting = outbox_size(cfg.resolved_data_dir() / "outbox.sqlite")
        typer.echo(json.dumps(live or {"health": "not-running", "device_id": cfg.device_id,
                                       "broker_url": cfg.broker_url, "outbox_messages": waiting,
                                       **({"bridge_answered_for": other} if other else {})}))
        raise typer.Exit(0 if live else EXIT_NOT_RUNNING)
    rows: list[tuple[str, str]] = []
    if live:
        rows += [("state", f"{live['health']}: {live['summary']}"), ("device", str(live["device_id"])),
                 ("broker", str(live["broker_url"])),
                 ("outbox", f"{live['outbox_messages']} messages waiting ({live['outbox_bytes']} bytes)"),
                 ("last publish", _when(live.get("last_publish_ms"))),
                 ("OpenClaw", {"up": "gateway up", "down": "installed, gateway down", "absent": "not installed",
                               None: "not probed yet"}.get(live.get("openclaw"), str(live.get("openclaw")))
                  + (f" (version {live['openclaw_version']})" if live.get("openclaw_version") else "")),
                 ("tokens today", f"{live['tokens_today']:,}"),
                 ("agent", str(live.get("agent_version")))]
        if live.get("route"):
            rows.append(("route", str(live["route"])))
        if live.get("update"):
            up = live["update"]
            rows.append(("update", f"{up.get('state')} {up.get('version') or ''}".rstrip()
                         + (f": {up['detail']}" if up.get("detail") else "")))
        if live.get("last_error"):
            rows.append(("last error", str(live["last_error"])))
    else:
        waiting = outbox_size(cfg.resolved_data_dir() / "outbox.sqlite")
        why = (f"127.0.0.1:{port} answers for another agent (device {other})" if other
               else f"nothing answers on 127.0.0.1:{port}" if port else "bridge_port is 0 (off)")
        rows += [("state", f"not running ({why})"), ("device", cfg.device_id), ("broker", cfg.broker_url),
                 ("outbox", "empty (no outbox yet)" if waiting is None else f"{waiting} messages waiting")]
    width = max(len(k) for k, _ in rows)
    for k, v in rows:
        typer.echo(f"{k.ljust(width)}  {v}")
    if not live:
        raise typer.Exit(EXIT_NOT_RUNNING)


@app.command()
def show_config(config: ConfigOpt = None) -> None:
    """Print the agent config with the API key hidden."""
    cfg = _load(config)
    data = cfg.to_dict()
    data["api_key"] = "…" + cfg.api_key[-4:]
    if "ca_pem" in data:
        data["ca_pem"] = "(pinned CA certificate)"
    if "bridge_token" in data:
        data["bridge_token"] = "(set)"  # noqa: S105 - a placeholder shown instead of the secret
    for k, v in data.items():
        typer.echo(f"{k}: {v}")


SystemOpt = Annotated[bool, typer.Option("--system", help="a system service (needs root or admin; systemd "
                                         "system unit, launchd daemon, Windows service) instead of this user's")]
NoEnableOpt = Annotated[bool, typer.Option("--no-enable", help="only write the files; do not start or stop anything")]


def _service_args(config: Path | None, system: bool = False) -> list[str]:
    from agent_tray.platform import system_config_path

    path = (config or (system_config_path() if system else default_config_path())).resolve()
    logs = ["--log-dir", "/Library/Logs/ClawFleet"] if system and sys.platform == "darwin" else []
    return ["run", "--headless", "--config", str(path), *logs]


def _print_written(done: list) -> None:
    for w in done:
        typer.echo(str(w))


@app.command("install-service")
def install_service(
    config: ConfigOpt = None,
    system: SystemOpt = False,
    user_name: Annotated[str | None, typer.Option(help="--system: the account it runs as (default: $SUDO_USER, "
                                                       "the user whose ~/.openclaw it reads)")] = None,
    no_enable: NoEnableOpt = False,
    unit_dir: Annotated[Path | None, typer.Option(help="write the unit/plist here instead (packaging)",
                                                  hidden=True)] = None,
) -> None:
    """Run the agent headless at login (or boot): systemd unit, launchd plist, Windows task (--system: service).

    Prints every file it wrote and command it ran. The config must exist first (enroll).
    """
    from agent_tray.platform import agent_command, current, system_config_path

    cfg_path = config or (system_config_path() if system else default_config_path())
    if not cfg_path.exists() and unit_dir is None:
        raise _fail(f"no agent config at {cfg_path}: run 'clawfleet-agent enroll{' --system' if system else ''}' "
                    "first")
    user = user_name or (os.environ.get("SUDO_USER") if system else None)
    try:
        done = current().install_service(agent_command(*_service_args(config, system), gui=True), system=system,
                                         user=user, enable=not no_enable, unit_dir=unit_dir)
    except OSError as exc:
        raise _fail(f"{exc}{' (a system service needs root: sudo)' if system else ''}") from None
    _print_written(done)
    if no_enable:
        typer.echo("not started (--no-enable)")


@app.command("uninstall-service")
def uninstall_service(system: SystemOpt = False, no_enable: NoEnableOpt = False) -> None:
    """Stop the headless agent service and remove what install-service wrote."""
    from agent_tray.platform import current

    try:
        done = current().uninstall_service(system=system, enable=not no_enable)
    except OSError as exc:
        raise _fail(str(exc)) from None
    _print_written(done or [])
    if not done:
        typer.echo("nothing to remove")


@app.command()
def autostart(
    state: Annotated[str, typer.Argument(help="on | off", metavar="on|off")],
    config: ConfigOpt = None,
) -> None:
    """Start the tray at login (XDG autostart entry, macOS LaunchAgent, Windows Run key), or stop doing so."""
    from agent_tray.platform import agent_command, current

    if state not in ("on", "off"):
        raise _fail("say 'on' or 'off'")
    args = ["run", "--autostart"] + (["--config", str(config.resolve())] if config else [])
    try:
        done = current().set_autostart(state == "on", agent_command(*args, gui=True))
    except OSError as exc:
        raise _fail(str(exc)) from None
    _print_written(done)
    if not done:
        typer.echo("autostart was already off")




@app.command("update-watchdog", hidden=True)
def update_watchdog(
    data_dir: Annotated[Path, typer.Option(help="the agent's data dir (update.json)")],
    root: Annotated[Path, typer.Option(help="the install tree (versions/, current)")],
    pid: Annotated[int, typer.Option(help="the agent's process id")],
    argv: Annotated[list[str] | None, typer.Argument(help="the agent's arguments (after --)")] = None,
) -> None:
    """Started by a self-update from the previous version: rolls back when the new one does not report in time."""
    from agent_tray.update.tree import run_watchdog

    raise typer.Exit(run_watchdog(data_dir, root, pid, list(argv or [])))


@app.command("apply-update")
def apply_update(
    system: Annotated[bool, typer.Option("--system", help="the .deb/.rpm's system service (what the packages' "
                                         "clawfleet-agent-update unit runs, as root)")] = False,
) -> None:
    """Install an update the packaged agent downloaded and checked (root; checks it again, rolls back when the
    new version does not report in time). Other installs update themselves."""
    from agent_tray.platform.linux import SYSTEM_CONFIG, SYSTEM_DATA_DIR
    from agent_tray.update.system import apply_system_update

    if not system:
        raise _fail("only the packaged system service needs this (--system); other installs update themselves")
    if hasattr(os, "geteuid") and os.geteuid() != 0:
        raise _fail("apply-update --system needs root")
    result = apply_system_update(SYSTEM_DATA_DIR, SYSTEM_CONFIG)
    typer.echo(f"update: {result}")
    raise typer.Exit(0 if result in ("none", "confirmed") else 1)


@app.command("service-run", hidden=True)
def service_run(config: ConfigOpt = None) -> None:
    """Windows: how the Service Control Manager starts the agent service (install-service --system)."""
    from agent_tray.platform.windows_service import run_as_service

    if sys.platform != "win32":
        raise _fail("service-run is how Windows starts the agent service; elsewhere use 'run --headless'")
    run_as_service(config)
