"""``clawfleet-server api-token …``: read-only tokens for the REST API and ``/metrics``.

``create`` prints the token once (only its SHA-256 is stored); ``revoke`` refuses it from its next
request on. Every change is audited with the actor ``cli:<os user>``.
"""

from __future__ import annotations

from datetime import datetime, timezone
from pathlib import Path
from typing import Annotated

import typer

from fleet_server.auth import api_tokens
from fleet_server.cli.options import PLAIN_HELP, DataDirOpt, DbUrlOpt, default_data_dir, fail
from fleet_server.store import audit

api_token_app = typer.Typer(help="Read-only API tokens for /api/v1 and /metrics (Authorization: Bearer).",
                            no_args_is_help=True, **PLAIN_HELP)


def _open(data_dir: Path | None, database_url: str | None) -> None:
    from fleet_server.store.db import open_database

    open_database(data_dir or default_data_dir(), database_url)


def _when(ts_ms: int | None) -> str:
    if ts_ms is None:
        return "never"
    return datetime.fromtimestamp(ts_ms / 1000, tz=timezone.utc).strftime("%Y-%m-%d %H:%M UTC")


@api_token_app.command("create")
def create(name: Annotated[str, typer.Argument(help="what the token is for, e.g. 'grafana'")],
           data_dir: DataDirOpt = None, database_url: DbUrlOpt = None) -> None:
    """Create a token and print it once (copy it now; it cannot be shown again)."""
    _open(data_dir, database_url)
    actor = audit.cli_actor()
    try:
        row, token = api_tokens.create_token(name, actor)
    except api_tokens.TokenError as exc:
        fail(str(exc))
    audit.record(actor, "api_token.create", target=row.name, detail=f"…{row.hint}")
    typer.echo(f"API token {row.id} ({row.name}), shown once:\n\n  {token}\n\n"
               "Use it as: curl -H 'Authorization: Bearer <token>' http://127.0.0.1:8080/api/v1/devices")


@api_token_app.command("list")
def list_cmd(data_dir: DataDirOpt = None, database_url: DbUrlOpt = None) -> None:
    """List tokens: id, name, last characters, created, last used, state."""
    _open(data_dir, database_url)
    rows = api_tokens.list_tokens()
    if not rows:
        typer.echo("no API tokens")
        return
    typer.echo(f"{'ID':>4}  {'NAME':<24} {'TOKEN':<8} {'CREATED':<21} {'LAST USED':<21} STATE")
    for t in rows:
        typer.echo(f"{t.id:>4}  {t.name[:24]:<24} …{t.hint:<7} {_when(t.created_ms):<21} {_when(t.last_used_ms):<21} "
                   f"{'revoked ' + _when(t.revoked_ms) if t.revoked_ms else 'active'}")


@api_token_app.command("revoke")
def revoke(token_id: Annotated[int, typer.Argument(help="the ID shown by 'api-token list'")],
           data_dir: DataDirOpt = None, database_url: DbUrlOpt = None) -> None:
    """Revoke a token; requests with it are refused at once."""
    _open(data_dir, database_url)
    try:
        row = api_tokens.revoke_token(token_id)
    except api_tokens.TokenError as exc:
        fail(str(exc))
    audit.record(audit.cli_actor(), "api_token.revoke", target=row.name)
    typer.echo(f"API token {row.id} ({row.name}) revoked")
