"""``clawfleet-server run`` on a dashboard port that is taken: a clear error naming --port before
anything is written (no admin account, no one-time password, no database), so the next run on a
free port still prints the password. ``run --help`` shows every option name whole at 80 columns."""

from __future__ import annotations

import socket

from e2e_helpers import server_cli
from mqtt_helpers import free_port


def test_a_busy_dashboard_port_is_named_before_anything_is_written(tmp_path):
    data_dir = tmp_path / "server"
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", 0))
        holder.listen(1)
        port = holder.getsockname()[1]
        res = server_cli("run", "--data-dir", str(data_dir), "--port", str(port), "--mqtt-port", str(free_port()),
                         "--no-local-agent", timeout=60)
    assert res.exit_code == 2, res.output
    assert f"port {port} on 127.0.0.1 is already in use" in res.output and "--port" in res.output
    assert "Errno" not in res.output and "password" not in res.output.lower()
    assert not data_dir.exists() or not any(data_dir.iterdir())  # nothing written


def test_run_help_shows_whole_option_names_at_80_columns():
    res = server_cli("run", "--help")
    assert res.exit_code == 0
    for option in ("--local-agent-bridge-port", "--broker-admin-password-file", "--no-secure-cookies",
                   "--admin-password-file", "--local-agent-interval"):
        assert option in res.output, option
    assert "…" not in res.output
