"""``clawfleet-agent run``: logging, signal handling, then the headless service or the tray.

Kept free of typer so that the service (``run --headless``) starts without the CLI framework;
:mod:`agent_tray.cli` calls it directly, :mod:`agent_tray.commands` for the typer command.
"""

from __future__ import annotations

import logging
import logging.handlers
import os
import signal
import sys
from collections.abc import Callable
from pathlib import Path

from agent_tray.config import ConfigError, default_config_path, default_log_dir, load_config

LOG_FILE = "agent.log"
LOG_MAX_BYTES = 5 * 1024 * 1024
LOG_BACKUPS = 3
EXIT_USAGE = 2
"""Exit code for a missing or invalid config, or no tray available (as the CLI's other errors)."""

log = logging.getLogger("clawfleet.agent")


def setup_logging(verbose: bool, log_dir: Path | None) -> Path | None:
    """Log to stderr and to ``<log_dir>/agent.log`` (rotated at 5 MiB, 3 kept); returns the file or None."""
    fmt = logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s")
    root = logging.getLogger()
    root.setLevel(logging.DEBUG if verbose else logging.INFO)
    stream = logging.StreamHandler()
    stream.setFormatter(fmt)
    root.addHandler(stream)
    if log_dir is None:
        return None
    path = log_dir / LOG_FILE
    try:
        log_dir.mkdir(parents=True, exist_ok=True)
        handler = logging.handlers.RotatingFileHandler(path, maxBytes=LOG_MAX_BYTES, backupCount=LOG_BACKUPS,
                                                       encoding="utf-8")
    except OSError as exc:
        log.warning("not logging to %s: %s", path, exc.strerror or exc)
        return None
    handler.setFormatter(fmt)
    root.addHandler(handler)
    return path


def run(config: Path | None = None, *, headless: bool = False, log_dir: Path | None = None,
        no_log_file: bool = False, autostart: bool = False, verbose: bool = False) -> None:
    """Run the agent until SIGTERM/SIGINT (or Quit in the tray).

    Args:
        config: agent config file (default :func:`agent_tray.config.default_config_path`).
        headless: the service loop without a tray icon.
        log_dir: where ``agent.log`` goes (default :func:`agent_tray.config.default_log_dir`).
        no_log_file: log to stderr only.
        autostart: started at login: return quietly when the config does not exist.
        verbose: debug logging.

    Raises:
        SystemExit: code 2 (after printing ``error: …`` to stderr) when the config is missing or
            invalid (headless), or no tray icon can be shown.
    """
    path = config or default_config_path()
    logs = log_dir or default_log_dir()
    log_file = setup_logging(verbose, None if no_log_file else logs)
    if log_file:
        log.info("logging to %s", log_file)
    if autostart and not path.exists():
        log.info("not enrolled (%s missing); the login item does nothing until 'clawfleet-agent enroll'", path)
        return
    if headless:
        _run_headless(path)
    else:
        _run_tray(path, logs)


def _fail(message: str) -> SystemExit:
    print(f"error: {message}", file=sys.stderr)
    return SystemExit(EXIT_USAGE)


def _run_headless(path: Path) -> None:
    try:
        cfg = load_config(path)
    except ConfigError as exc:
        raise _fail(str(exc)) from None
    from agent_tray.service import AgentService

    while True:  # again with the new config when the file is rewritten (re-enrolled) while running
        service = AgentService(cfg, config_path=path)
        on_signals(service.stop)
        service.run()
        if service.next_config is None:
            break
        cfg = service.next_config
    from agent_tray.update.apply import exec_pending

    exec_pending()  # an update installed a new version: become it (same pid, same arguments)


def _run_tray(path: Path, log_dir: Path) -> None:
    try:
        from agent_tray.tray import TrayApp

        tray = TrayApp(path, log_dir)
    except Exception as exc:  # pystray raises plain Exceptions / Xlib errors when there is no display
        raise _fail(f"cannot show a tray icon ({exc}); on a machine without a desktop use "
                    "'clawfleet-agent run --headless'") from None
    on_signals(tray.quit)
    try:
        tray.run()
    except Exception as exc:  # the toolkit failed after start: one line, and out (its threads may never end)
        log.error("the tray icon stopped: %s", exc)
        print(f"error: the tray icon stopped ({exc}); on a machine without a desktop use 'clawfleet-agent run "
              "--headless'", file=sys.stderr, flush=True)
        logging.shutdown()
        os._exit(EXIT_USAGE)
    from agent_tray.update.apply import exec_pending

    exec_pending()


def on_signals(stop: Callable[[], object]) -> None:
    """Call ``stop`` on SIGTERM and SIGINT (logged)."""
    def handler(signum: int, _frame: object) -> None:
        log.info("received %s, stopping", signal.Signals(signum).name)
        stop()

    signal.signal(signal.SIGTERM, handler)
    signal.signal(signal.SIGINT, handler)
