"""``clawfleet-server device revoke`` while the broker is frozen (a real Mosquitto stopped with
SIGSTOP, the real CLI as its own process, a running FleetServer): the revocation is stored with its
audit row, the command says the broker did not confirm, and once the broker runs again the running
server disables the key (it used to end in a traceback with nothing stored and the key still working)."""

from __future__ import annotations

import os
import signal
import time

from e2e_helpers import server_cli, wait_for
from mqtt_helpers import connect_probe
from payload_helpers import DeviceConn

from fleet_server.cli.tls import save_settings
from fleet_server.server import FleetServer
from fleet_server.store.models import AuditEvent, Device

KICKED = 0x98


def test_cli_revoke_with_a_frozen_broker_is_stored_and_applied_when_it_answers(fleet: FleetServer):
    assert fleet.broker is not None and fleet.broker.pid is not None
    data_dir, port = fleet.opts.data_dir, fleet.opts.mqtt_port
    save_settings(data_dir, port, 8883, None, None, None)
    with DeviceConn(fleet, "frozen box") as dev:
        os.kill(fleet.broker.pid, signal.SIGSTOP)
        try:
            started = time.monotonic()
            res = server_cli("device", "revoke", dev.device_id, "--data-dir", str(data_dir))
            took = time.monotonic() - started
        finally:
            os.kill(fleet.broker.pid, signal.SIGCONT)
        assert res.exit_code == 0, res.output
        assert "Traceback" not in res.output
        assert "the broker did not confirm" in res.output and f"device {dev.device_id} revoked" in res.output
        assert took < 30
        assert Device.get_by_id(dev.device_id).revoked_ms is not None
        [row] = AuditEvent.select().where(AuditEvent.action == "device.revoke")
        assert row.target == dev.device_id and "broker did not confirm" in row.detail
        # the running server applies it once the broker answers: the live session is kicked ...
        assert dev.probe.wait_disconnect(timeout=30).reason.value == KICKED

    # ... and the key is refused from then on
    probe, rc = connect_probe("127.0.0.1", port, dev.device_id, dev.api_key)
    probe.close()
    assert rc.is_failure
    wait_for(lambda: not fleet.revocations.pending, 10, what="nothing left to disable")
