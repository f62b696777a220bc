"""``clawfleet-server alerts channel …``: where notifications go (Apprise URLs).

A channel's URL holds a secret, so it is never an argument (argv is visible to other users and
lands in shell history): ``add`` reads it from standard input (``--url-stdin``) or asks for it
without echoing. Afterwards only the masked form is shown. ``test`` sends a message now and
prints the real error if it fails.
"""

from __future__ import annotations

import sys
from typing import Annotated

import typer

from fleet_server.cli.options import DataDirOpt, DbUrlOpt, fail

channel_app = typer.Typer(help="Notification channels (Apprise URLs: e-mail, Slack, Discord, Telegram, ntfy, "
                          "Gotify, Matrix, webhooks…).", no_args_is_help=True)


def _open(data_dir, database_url):
    from fleet_server.cli.alerts import open_db

    return open_db(data_dir, database_url)


def _actor() -> str:
    from fleet_server.store import audit

    return audit.cli_actor()


@channel_app.command("add")
def add(name: Annotated[str, typer.Argument(help="e.g. ops-slack")],
        url_stdin: Annotated[bool, typer.Option("--url-stdin", help="read the Apprise URL from standard input")]
        = False,
        quiet: Annotated[str | None, typer.Option(help="quiet hours HH:MM-HH:MM (warnings wait; critical "
                         "alerts still go out)")] = None,
        zone: Annotated[str, typer.Option(help="IANA time zone of the quiet hours")] = "UTC",
        test: Annotated[bool, typer.Option("--test/--no-test", help="send a test message after adding")] = True,
        data_dir: DataDirOpt = None, database_url: DbUrlOpt = None) -> None:
    """Add a channel. The URL is read from stdin or asked for (never an argument), then masked."""
    from fleet_server.alerts.channels import ChannelError, add_channel
    from fleet_server.alerts.dispatch import send_test
    from fleet_server.alerts.rules import RuleError

    path = _open(data_dir, database_url)
    url = sys.stdin.readline().strip() if url_stdin else typer.prompt("Apprise URL", hide_input=True)
    start, _, end = (quiet or "").partition("-")
    try:
        row = add_channel(path, name, url, _actor(), quiet_start=start, quiet_end=end, quiet_zone=zone)
    except (ChannelError, RuleError) as exc:
        fail(str(exc))
    typer.echo(f"channel {row.id} added: {row.name} ({row.service}) {row.url_masked}")
    if test:
        ok, error = send_test(path, row.id, _actor())
        typer.echo("test message sent" if ok else f"test message FAILED: {error}")
        if not ok:
            raise typer.Exit(1)


@channel_app.command("list")
def list_cmd(data_dir: DataDirOpt = None, database_url: DbUrlOpt = None) -> None:
    """Channels with their masked URL, quiet hours and last delivery."""
    from fleet_server.alerts.views import channel_rows

    _open(data_dir, database_url)
    rows = channel_rows()
    if not rows:
        typer.echo("no channels: alerts have nowhere to go (add one with 'alerts channel add')")
    for r in rows:
        typer.echo(f"{r['id']:>4}  {'on ' if r['enabled'] else 'off'}  {r['name']:<20} {r['service']:<12} "
                   f"{r['url_masked']}\n      quiet hours: {r['quiet']}; last: {r['last']}")


@channel_app.command("test")
def test_cmd(channel_id: int, data_dir: DataDirOpt = None, database_url: DbUrlOpt = None) -> None:
    """Send a test message now; prints the real error when it fails (exit 1)."""
    from fleet_server.alerts.dispatch import send_test

    path = _open(data_dir, database_url)
    ok, error = send_test(path, channel_id, _actor())
    if not ok:
        fail(f"test message failed: {error}", 1)
    typer.echo("test message sent")


@channel_app.command("quiet")
def quiet_cmd(channel_id: int,
              hours: Annotated[str, typer.Argument(help="HH:MM-HH:MM, or 'off'")],
              zone: Annotated[str, typer.Option(help="IANA time zone")] = "UTC",
              data_dir: DataDirOpt = None, database_url: DbUrlOpt = None) -> None:
    """Set a channel's quiet hours (non-critical messages wait until they end), or turn them off."""
    from fleet_server.alerts.channels import update_channel
    from fleet_server.alerts.rules import RuleError

    _open(data_dir, database_url)
    start, _, end = ("" if hours == "off" else hours).partition("-")
    try:
        row = update_channel(channel_id, _actor(), quiet_start=start, quiet_end=end, quiet_zone=zone)
    except RuleError as exc:
        fail(str(exc))
    typer.echo(f"channel {row.id}: quiet hours {row.quiet_start or 'off'}{'-' + row.quiet_end if row.quiet_end else ''}"
               f" {row.quiet_zone if row.quiet_start else ''}".rstrip())


def _enable(channel_id: int, on: bool, data_dir, database_url) -> None:
    from fleet_server.alerts.channels import update_channel
    from fleet_server.alerts.rules import RuleError

    _open(data_dir, database_url)
    try:
        update_channel(channel_id, _actor(), enabled=on)
    except RuleError as exc:
        fail(str(exc))
    typer.echo(f"channel {channel_id} {'on' if on else 'off'}")


@channel_app.command("enable")
def enable(channel_id: int, data_dir: DataDirOpt = None, database_url: DbUrlOpt = None) -> None:
    """Turn a channel on."""
    _enable(channel_id, True, data_dir, database_url)


@channel_app.command("disable")
def disable(channel_id: int, data_dir: DataDirOpt = None, database_url: DbUrlOpt = None) -> None:
    """Turn a channel off (its queued messages are given up)."""
    _enable(channel_id, False, data_dir, database_url)


@channel_app.command("remove")
def remove(channel_id: int, data_dir: DataDirOpt = None, database_url: DbUrlOpt = None) -> None:
    """Delete a channel (its notification log stays)."""
    from fleet_server.alerts.channels import remove_channel
    from fleet_server.alerts.rules import RuleError

    _open(data_dir, database_url)
    try:
        remove_channel(channel_id, _actor())
    except RuleError as exc:
        fail(str(exc))
    typer.echo(f"channel {channel_id} removed")
