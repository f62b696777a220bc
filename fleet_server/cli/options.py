"""Options and helpers every ``clawfleet-server`` command group shares."""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Annotated

import platformdirs
import typer


def default_data_dir() -> Path:
    """``$CLAWFLEET_DATA_DIR`` or the per-user data dir (e.g. ``~/.local/share/clawfleet/server``)."""
    env = os.environ.get("CLAWFLEET_DATA_DIR")
    return Path(env) if env else Path(platformdirs.user_data_dir("clawfleet", appauthor=False)) / "server"


PLAIN_HELP = {"rich_markup_mode": None}
"""``typer.Typer`` settings of every command group: click's plain help, which wraps long option names
and help texts to the terminal instead of cutting them off ("--local-agent-br…") at 80 columns."""

DataDirOpt = Annotated[Path | None, typer.Option("--data-dir", help="server data dir: database, broker config "
                       "and state (default: $CLAWFLEET_DATA_DIR or the per-user data dir)")]
MqttPortOpt = Annotated[int, typer.Option("--mqtt-port", help="loopback port of the managed Mosquitto "
                        "(not 1883, so it never collides with a distribution's own mosquitto service)")]
DbUrlOpt = Annotated[str | None, typer.Option("--database-url", envvar="CLAWFLEET_DATABASE_URL",
                     help="postgresql://user:pass@host/db for PostgreSQL; default SQLite in the data dir")]


def setup_logging(verbose: bool) -> None:
    """Log to stderr: INFO, or DEBUG with ``verbose``."""
    logging.basicConfig(level=logging.DEBUG if verbose else logging.INFO,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")


def fail(msg: str, code: int = 2) -> None:
    """Print ``error: msg`` to stderr and exit with ``code`` (raises :class:`typer.Exit`)."""
    typer.echo(f"error: {msg}", err=True)
    raise typer.Exit(code)
