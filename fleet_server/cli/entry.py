"""``clawfleet-server`` console script: explains an agent-only install instead of an ImportError."""

from __future__ import annotations

SERVER_PACKAGES = frozenset({"nicegui", "peewee", "playhouse", "cryptography", "qrcode", "argon2", "starlette",
                             "fastapi_offline", "prometheus_client"})
"""Top-level modules of the ``server`` extra."""


def main() -> None:
    """Run :func:`fleet_server.cli.main.main`; exit 1 with the install command when a server package is missing."""
    try:
        from fleet_server.cli.main import main as run_cli

        run_cli()  # commands import some server packages only when they run
    except ModuleNotFoundError as exc:
        if (exc.name or "").split(".")[0] not in SERVER_PACKAGES:
            raise
        raise SystemExit(f"error: the fleet server needs the 'server' extra ({exc.name} is not installed): "
                         "pip install 'clawfleet[server]', or from a checkout: pip install '.[server]'") from None
