"""``clawfleet-server device import FILE``: enroll many devices from a list, keys into a 0600 file.

With the managed broker stopped (the server not running) every account is written in one step
(:func:`fleet_server.devices.bulk.enroll_offline`: 10,000 devices in seconds). With the broker
running, or an external broker, devices are enrolled one by one through it, with progress; each
costs two rewrites of Mosquitto's credentials file, which grow with the fleet.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from fleet_server.cli.options import DataDirOpt, DbUrlOpt, default_data_dir, fail

if TYPE_CHECKING:
    import io

    from fleet_server.devices.bulk import ImportRow
    from fleet_server.devices.registry import NewDevice

PROGRESS_EVERY_S = 2.0


def _keys_path(source: Path, given: Path | None) -> Path:
    return given if given is not None else source.with_name(source.stem + "-keys.csv")


class _Progress:
    """Progress lines on stderr: done/total, rate, time left; at most every PROGRESS_EVERY_S seconds."""

    def __init__(self, total: int) -> None:
        self.total, self.done, self.start, self.last = total, 0, time.monotonic(), 0.0

    def step(self, final: bool = False) -> None:
        now = time.monotonic()
        if not final and now - self.last < PROGRESS_EVERY_S:
            return
        self.last = now
        rate = self.done / max(now - self.start, 1e-6)
        left = (self.total - self.done) / rate if rate > 0 else 0.0
        eta = f", about {_duration(left)} left" if not final and self.done < self.total else ""
        typer.echo(f"enrolled {self.done}/{self.total} ({rate:.1f} devices/s{eta})", err=True)


def _duration(s: float) -> str:
    return f"{s:.0f} s" if s < 90 else f"{s / 60:.0f} min"


def device_import(
    file: Annotated[Path, typer.Argument(help="the device list: one name per line ('name' or 'name,tag,tag'), "
                                              "or CSV with a header row of name, id, tags", exists=True,
                                         dir_okay=False, readable=True)],
    keys_out: Annotated[Path | None, typer.Option("--keys-out", help="where to write the new API keys and "
                        "enrollment tokens (CSV, created 0600, never overwritten; default: FILE's name + "
                        "'-keys.csv' beside it)")] = None,
    tags: Annotated[str, typer.Option(help="comma-separated tags added to every device")] = "",
    dry_run: Annotated[bool, typer.Option("--dry-run", help="check the list and print what would be enrolled; "
                                                            "change nothing")] = False,
    data_dir: DataDirOpt = None,
    mqtt_port: Annotated[int | None, typer.Option("--mqtt-port", help="loopback port of the managed Mosquitto "
                         "(default: the one 'run' saved)")] = None,
    database_url: DbUrlOpt = None,
) -> None:
    """Enroll many devices from FILE; their keys and tokens go to a new 0600 CSV file, never to the screen.

    FILE holds one device per line: a name, optionally followed by tags ("web-1,prod,eu"); lines
    starting with # are skipped. Or a CSV whose first row names the columns name, id and tags.
    Ids are derived from names unless given. Lines that cannot be enrolled (duplicate, invalid
    name, already enrolled) are listed and skipped; the exit code is then 1.

    Fast path: stop the server first (systemctl stop clawfleet-server). With the managed broker
    stopped, all devices are written in one step (10,000 in seconds). With the server running,
    devices are enrolled one by one through the broker (Mosquitto 2.0 rewrites its credentials
    file on every change, so each takes longer the bigger the fleet: about 0.5 s per device at
    5,000 enrolled here); the running server shows them within seconds.

    Hand each device its token from the keys file (clawfleet-agent enroll), then delete the file.
    """
    from fleet_server.cli.devices import _port_open, mqtt_port_for
    from fleet_server.devices.bulk import existing_ids, parse_import
    from fleet_server.devices.registry import DeviceError
    from fleet_server.endpoints.broker_link import ServerSettings
    from fleet_server.store.db import open_database

    data_dir = data_dir or default_data_dir()
    try:
        rows, errors = parse_import(file.read_text(encoding="utf-8"), tags)
    except (UnicodeDecodeError, DeviceError) as exc:
        fail(f"{file}: {exc}")
    open_database(data_dir, database_url)
    taken = existing_ids(r.device_id for r in rows)
    errors += [_already(r) for r in rows if r.device_id in taken]
    rows = [r for r in rows if r.device_id not in taken]
    for err in sorted(errors, key=lambda e: e.line):
        typer.echo(f"skipped {err}", err=True)
    if dry_run or not rows:
        for r in rows:
            typer.echo(f"would enroll {r.device_id:30} {r.name}" + (f"  [{r.tags}]" if r.tags else ""))
        typer.echo(f"{_count(len(rows))} to enroll, {len(errors)} skipped" + (" (dry run: nothing changed)"
                                                                                   if dry_run else ""))
        raise typer.Exit(1 if errors else 0)
    mqtt_port = mqtt_port_for(data_dir, mqtt_port)
    external = bool(ServerSettings.load(data_dir).broker_url)
    offline = not external and not _port_open("127.0.0.1", mqtt_port)
    path = _keys_path(file, keys_out)
    try:
        from fleet_server.devices.bulk import keys_csv_header, open_keys_file

        out = open_keys_file(path)
    except FileExistsError:
        fail(f"{path} exists; move it away or choose another file with --keys-out (keys are never overwritten)")
    except OSError as exc:
        fail(f"cannot create the keys file {path}: {exc}")
    with out:
        out.write(keys_csv_header())
        if offline:
            done = _import_offline(data_dir, mqtt_port, rows, file, out, path)
        else:
            typer.echo(f"the broker is running: enrolling {_count(len(rows))} one by one through it (stop the server "
                       "first for a much faster import)", err=True)
            done, more = _import_live(data_dir, mqtt_port, database_url, rows, out)
            errors += more
    if done == 0:
        path.unlink(missing_ok=True)
    typer.echo(f"{_count(done)} enrolled, {len(errors)} skipped" + (f"; keys and enrollment tokens (shown once) in "
                                                                       f"{path} (mode 0600): hand each device its "
                                                                       "token, then delete the file" if done else ""))
    if errors:
        raise typer.Exit(1)


def _count(n: int) -> str:
    return f"{n} device" + ("" if n == 1 else "s")


def _already(row: ImportRow):  # -> RowError
    from fleet_server.devices.bulk import RowError

    return RowError(row.line, row.name, f"device {row.device_id!r} is already enrolled")


def _import_offline(data_dir: Path, mqtt_port: int, rows: list[ImportRow], file: Path, out: io.TextIOWrapper,
                    path: Path) -> int:
    from broker.mosquitto import BrokerConfig, BrokerSetupError
    from fleet_server.cli.devices import endpoint_for
    from fleet_server.devices.bulk import enroll_offline, keys_csv_line
    from fleet_server.devices.registry import DeviceError
    from fleet_server.store import audit

    endpoint = endpoint_for(data_dir, mqtt_port)
    typer.echo(f"the managed broker is not running: writing {_count(len(rows))} in one step", err=True)
    start = time.monotonic()

    def write(new: NewDevice) -> None:
        out.write(keys_csv_line(new))

    try:
        done = enroll_offline(BrokerConfig(data_dir=data_dir, port=mqtt_port), rows, endpoint.url, endpoint.ca_pem,
                              audit.cli_actor(), file.name, write, token_extra=endpoint.token_extra())
        out.flush()
    except (DeviceError, BrokerSetupError, OSError) as exc:
        out.close()
        path.unlink(missing_ok=True)
        fail(f"nothing enrolled: {exc}")
    typer.echo(f"enrolled {done}/{len(rows)} in {time.monotonic() - start:.1f} s", err=True)
    return done


def _import_live(data_dir: Path, mqtt_port: int, database_url: str | None, rows: list[ImportRow],
                 out: io.TextIOWrapper) -> tuple[int, list]:
    from broker.dynsec import DynSecConnectionError, DynSecError
    from fleet_server.cli.devices import device_actions
    from fleet_server.devices.bulk import RowError, keys_csv_line
    from fleet_server.devices.registry import DeviceError
    from fleet_server.store import audit

    progress, errors, actor = _Progress(len(rows)), [], audit.cli_actor()
    with device_actions(data_dir, mqtt_port, database_url) as actions:
        for row in rows:
            try:
                new = actions.add(actor, row.name, row.tags, row.device_id)
            except (DeviceError, DynSecError) as exc:
                errors.append(RowError(row.line, row.name, str(exc)))
                typer.echo(f"skipped {errors[-1]}", err=True)
                continue
            except DynSecConnectionError as exc:
                typer.echo(f"the broker stopped answering after {progress.done} devices: {exc}; the rest were not "
                           "enrolled (import them again from a list without the enrolled ones)", err=True)
                errors += [RowError(r.line, r.name, "not attempted") for r in rows[rows.index(row):]]
                break
            out.write(keys_csv_line(new))
            out.flush()
            progress.done += 1
            progress.step()
    progress.step(final=True)
    return progress.done, errors
