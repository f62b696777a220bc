"""``clawfleet-agent``: enroll this machine into a fleet and run the agent."""

from __future__ import annotations

import logging
import signal
import sys
from pathlib import Path
from typing import Annotated

import typer

from agent_tray.config import AgentConfig, ConfigError, default_config_path, load_config, save_config
from shared.enrollment import EnrollmentError, decode_token

app = typer.Typer(help="ClawFleet agent: reports this machine and its OpenClaw gateway to a fleet server.",
                  no_args_is_help=True, add_completion=False)

ConfigOpt = Annotated[Path | None, typer.Option("--config", "-c", help="agent config file "
                      "(default: $CLAWFLEET_AGENT_CONFIG or the per-user config dir)")]


def _setup_logging(verbose: bool) -> None:
    logging.basicConfig(level=logging.DEBUG if verbose else logging.INFO,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")


@app.command()
def enroll(
    token: Annotated[str, typer.Argument(help="enrollment token printed by 'clawfleet-server device add'")],
    config: ConfigOpt = None,
    interval: Annotated[float, typer.Option(help="seconds between telemetry samples")] = 30.0,
    data_dir: Annotated[Path | None, typer.Option(help="where the outbox lives (default: per-user data dir)")] = None,
    insecure: Annotated[bool, typer.Option(help="do not verify the broker's TLS certificate (testing only)")] = False,
) -> None:
    """Write this machine's agent config from an enrollment token (file mode 0600)."""
    path = config or default_config_path()
    try:
        enr = decode_token(token)
    except EnrollmentError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(2) from None
    cfg = AgentConfig(device_id=enr.device_id, broker_url=enr.url, api_key=enr.api_key, ca_pem=enr.ca_pem,
                      interval_s=interval, insecure=insecure, data_dir=str(data_dir) if data_dir else None)
    save_config(cfg, path)
    typer.echo(f"enrolled as device '{cfg.device_id}' with broker {cfg.broker_url}; config written to {path}")
    typer.echo("start it with: clawfleet-agent run --headless")


@app.command()
def run(
    config: ConfigOpt = None,
    headless: Annotated[bool, typer.Option(help="run without a tray icon (servers, services)")] = False,
    verbose: Annotated[bool, typer.Option("--verbose", "-v", help="debug logging")] = False,
) -> None:
    """Run the agent until Ctrl-C / SIGTERM (publishes a retained 'shutdown' status on the way out)."""
    from agent_tray.service import AgentService

    _setup_logging(verbose)
    try:
        cfg = load_config(config or default_config_path())
    except ConfigError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(2) from None
    if not headless:
        logging.getLogger("clawfleet.agent").info("tray icon not available in this version; running headless")
    service = AgentService(cfg)

    def _stop(signum: int, _frame: object) -> None:
        logging.getLogger("clawfleet.agent").info("received %s, stopping", signal.Signals(signum).name)
        service.stop()

    signal.signal(signal.SIGTERM, _stop)
    signal.signal(signal.SIGINT, _stop)
    service.run()


@app.command()
def show_config(config: ConfigOpt = None) -> None:
    """Print the agent config with the API key hidden."""
    try:
        cfg = load_config(config or default_config_path())
    except ConfigError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(2) from None
    data = cfg.model_dump(exclude_none=True)
    data["api_key"] = "…" + cfg.api_key[-4:]
    if "ca_pem" in data:
        data["ca_pem"] = "(pinned CA certificate)"
    for k, v in data.items():
        typer.echo(f"{k}: {v}")


def main() -> None:
    """Console-script entry point."""
    app()


if __name__ == "__main__":
    sys.exit(main())
