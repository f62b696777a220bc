"""``clawfleet-agent`` entry point (console script and ``python -m agent_tray.cli``).

``run --headless`` — how the service unit, the launchd daemon, the scheduled task and the fleet
server's local agent start the agent — goes straight to :func:`agent_tray.runner.run`: typer, its
help formatter and the other commands are never imported by the long-running service. Every
other command line (``--help`` included, also ``run --headless --help``) goes to the typer
application in :mod:`agent_tray.commands`, which defines the same ``run`` options with their help.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

RUN_OPTIONS = frozenset({"--config", "-c", "--headless", "--log-dir", "--no-log-file", "--autostart", "--verbose",
                         "-v"})
"""The ``run`` command's options (``agent_tray.commands.run`` declares the same; a test keeps them equal)."""


def headless_run_args(args: list[str]) -> argparse.Namespace | None:
    """Parsed options when ``args`` is a valid ``run --headless …`` command line, else None
    (then the typer application handles it, with its help and error messages)."""
    if not args or args[0] != "run" or "--headless" not in args or "--help" in args:
        return None
    parser = argparse.ArgumentParser(prog="clawfleet-agent run", add_help=False, exit_on_error=False,
                                     allow_abbrev=False)
    parser.add_argument("--config", "-c", type=Path)
    parser.add_argument("--headless", action="store_true")
    parser.add_argument("--log-dir", type=Path)
    parser.add_argument("--no-log-file", action="store_true")
    parser.add_argument("--autostart", action="store_true")
    parser.add_argument("--verbose", "-v", action="store_true")
    try:
        parsed, extra = parser.parse_known_args(args[1:])
    except argparse.ArgumentError:
        return None
    return None if extra else parsed


def app_bundle_args(args: list[str], executable: str, frozen: bool) -> list[str]:
    """The command line of ``ClawFleet Agent.app`` opened from the Finder or the Dock: no arguments (or
    only the ``-psn_…`` one old macOS versions pass) means "start the tray" (which asks for the token when
    this Mac is not enrolled). Any other command line is returned unchanged."""
    if frozen and ".app/Contents/MacOS/" in executable and all(a.startswith("-psn_") for a in args):
        return ["run"]
    return args


def main(argv: list[str] | None = None) -> None:
    """Console-script entry point; ``argv`` defaults to ``sys.argv[1:]``."""
    args = sys.argv[1:] if argv is None else list(argv)
    args = app_bundle_args(args, sys.executable, getattr(sys, "frozen", False))
    fast = headless_run_args(args)
    if fast is not None:
        from agent_tray.runner import run

        run(fast.config, headless=True, log_dir=fast.log_dir, no_log_file=fast.no_log_file,
            autostart=fast.autostart, verbose=fast.verbose)
        return
    from agent_tray.commands import app

    app(args, prog_name="clawfleet-agent")


if __name__ == "__main__":
    main()
