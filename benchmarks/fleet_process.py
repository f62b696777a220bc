"""A ClawFleet server in its own process, with a fleet enrolled in bulk, for benchmarks.

    python benchmarks/fleet_process.py --repo CHECKOUT --data-dir DIR --mqtt-port PORT --devices N \
        --creds-out FILE

Imports the server from ``--repo`` (this checkout by default, or e.g. a worktree of an older
commit, to measure before/after), so its CPU and memory are its own. Before the server starts it
enrolls ``N`` devices directly: rows in the devices table (key hashes only) and clients + roles
in the managed broker's dynamic-security file (which the broker loads at start), because
enrolling 10,000 devices one by one through the broker takes an hour. Only entry points that
exist in older checkouts are used: ``open_database``, ``Device``, ``FleetServer``,
``ServerOptions``, ``broker.config``/``broker.acl`` helpers.

Writes ``{"devices": [[id, key], ...], "account": [user, password], "broker_pid": int,
"server_pid": int}`` to ``--creds-out`` (mode 0600; the bench's temporary directory), then
prints ``READY`` and runs until its stdin closes or it gets SIGTERM.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import resource
import signal
import sys
import threading
import time
from pathlib import Path


def raise_fd_limit() -> int:
    """Soft RLIMIT_NOFILE up to the hard limit (the managed broker inherits it). Returns the new limit."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    return resource.getrlimit(resource.RLIMIT_NOFILE)[0]


def seed_fleet(data_dir: Path, count: int, database_url: str | None = None) -> list[tuple[str, str]]:
    """Enroll ``count`` devices ``bench-00000…`` in the database and the broker's dynsec file
    (broker not running yet). Returns ``[(device_id, api_key), …]``."""
    from broker.acl import DEFAULT_ACL_ACCESS, device_role_acls, device_role_name
    from broker.config import BrokerConfig, pbkdf2_fields
    from fleet_server.devices.keys import generate_api_key, hash_api_key, key_hint
    from fleet_server.store.db import open_database
    from fleet_server.store.models import Device
    from shared.private_files import write_private

    database = open_database(data_dir, database_url)
    creds = [(f"bench-{i:05d}", generate_api_key()) for i in range(count)]
    now = int(time.time() * 1000)
    rows = [{"id": d, "name": f"bench {d[6:]}", "tags": "bench", "key_hash": hash_api_key(k), "key_hint": key_hint(k),
             "created_ms": now} for d, k in creds]
    with database.atomic():
        for i in range(0, len(rows), 500):
            Device.insert_many(rows[i:i + 500]).execute()
    database.close()
    cfg = BrokerConfig(data_dir=data_dir, port=1)  # only its paths are used
    cfg.broker_dir.mkdir(parents=True, exist_ok=True)
    path = cfg.dynsec_path
    data = json.loads(path.read_text()) if path.exists() else {
        "defaultACLAccess": dict(DEFAULT_ACL_ACCESS), "clients": [], "groups": [], "roles": []}
    for d, k in creds:
        role = device_role_name(d)
        data["roles"].append({"rolename": role, "textname": f"ClawFleet device {d}", "acls": device_role_acls(d)})
        data["clients"].append({"username": d, "clientid": d, "textname": f"ClawFleet device {d}",
                                "roles": [{"rolename": role}], **pbkdf2_fields(k)})
    write_private(path, json.dumps(data) + "\n")
    return creds


def main() -> None:
    ap = argparse.ArgumentParser(description="Run a ClawFleet server with a bulk-enrolled fleet (for benchmarks).")
    ap.add_argument("--repo", type=Path, default=Path(__file__).resolve().parents[1],
                    help="checkout whose server code runs (default: this one)")
    ap.add_argument("--data-dir", type=Path, required=True)
    ap.add_argument("--mqtt-port", type=int, required=True)
    ap.add_argument("--devices", type=int, default=100)
    ap.add_argument("--creds-out", type=Path, required=True)
    ap.add_argument("--broker-save", default=None, metavar="HOW",
                    help="instead of the shipped setting, the managed broker saves its persistence file: "
                         "'changes:N' (every N changes), 'interval:S' (every S seconds) or 'off' (no persistence)")
    ap.add_argument("--workers", type=int, default=1, help="ingest processes (more than 1 needs PostgreSQL)")
    args = ap.parse_args()
    database_url = os.environ.get("CLAWFLEET_DATABASE_URL")  # PostgreSQL (never on the command line)
    sys.path.insert(0, str(args.repo.resolve()))
    logging.basicConfig(level=logging.WARNING, format="server: %(levelname)s %(name)s: %(message)s")
    raise_fd_limit()

    from fleet_server.server import FleetServer, ServerOptions
    from shared.private_files import write_private

    if args.broker_save:  # a what-if for benchmarks, not the shipped configuration
        import dataclasses

        import fleet_server.server as server_module
        how, _, n = args.broker_save.partition(":")
        change = {"changes": dict(persistence=True, autosave_on_changes=True, autosave_changes=int(n or 1)),
                  "interval": dict(persistence=True, autosave_on_changes=False, autosave_interval_s=int(n or 60)),
                  "off": dict(persistence=False)}[how]
        shipped = server_module.managed_broker_config
        server_module.managed_broker_config = lambda *a, **kw: dataclasses.replace(shipped(*a, **kw), **change)
    creds = seed_fleet(args.data_dir, args.devices, database_url)
    extra = {"database_url": database_url, "workers": args.workers} if database_url else {}
    opts = ServerOptions(data_dir=args.data_dir, mqtt_port=args.mqtt_port, local_agent=False, **extra)
    if hasattr(opts, "device_budgets"):  # throughput runs offer each device far more than a real agent sends
        opts.device_budgets = None
    server = FleetServer(opts)
    done = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: done.set())
    server.start()
    try:
        assert server.ingest is not None and server.broker is not None
        if not server.ingest.connected.wait(30):
            raise SystemExit("ingest did not connect to the managed broker within 30 s")
        admin = server.broker.admin
        write_private(args.creds_out, json.dumps({
            "devices": creds, "account": [admin.username, admin.password], "broker_pid": server.broker.pid,
            "server_pid": os.getpid()}))
        print("READY", flush=True)
        threading.Thread(target=lambda: (sys.stdin.read(), done.set()), daemon=True).start()
        done.wait()
    finally:
        server.stop()


if __name__ == "__main__":
    main()
