"""The tray started on an X display without a D-Bus session bus (a plain X session, an SSH -X login, a
container): pystray's GTK backends need the bus and used to print a long traceback and then ignore
SIGTERM. Now: one line saying why, the plain X11 icon, and a clean exit on SIGTERM. Real Xvfb, the real
``clawfleet-agent run`` process, the distribution's GTK bindings (python3-gi) when this Python can load them."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import sysconfig
import time
from pathlib import Path

import pytest
from e2e_helpers import write_agent_config

pytestmark = pytest.mark.skipif(sys.platform != "linux", reason="Xvfb and D-Bus are Linux")


def _system_gi() -> str | None:
    """The folder holding the distribution's ``gi`` package when its compiled part fits this Python."""
    for base in ("/usr/lib/python3/dist-packages", f"/usr/lib/python3.{sys.version_info[1]}/dist-packages"):
        gi = Path(base, "gi")
        if any(gi.glob(f"_gi.{sysconfig.get_config_var('SOABI')}*.so")) and Path(
                "/usr/lib/x86_64-linux-gnu/girepository-1.0/Gtk-3.0.typelib").exists():
            return base
    return None


def test_no_session_bus_means_one_line_and_the_x11_icon_and_sigterm_ends_it(xdisplay: str, tmp_path: Path) -> None:
    gi = _system_gi()
    if gi is None:
        pytest.skip("python3-gi with the GTK 3 typelib for this Python is not installed (ensure-system-packages.sh)")
    cfg = write_agent_config(tmp_path, "no-bus", "k" * 32, 1)  # no broker: the tray runs anyway
    env = {k: v for k, v in os.environ.items() if k not in ("DBUS_SESSION_BUS_ADDRESS", "XDG_RUNTIME_DIR",
                                                            "PYSTRAY_BACKEND", "PYTEST_CURRENT_TEST")}
    env.update(DISPLAY=xdisplay, PYTHONPATH=gi)
    log = tmp_path / "tray.log"
    with open(log, "wb") as out:
        proc = subprocess.Popen([sys.executable, "-m", "agent_tray.cli", "run", "--config", str(cfg), "--no-log-file"],
                                env=env, stdout=out, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 30
        while "agent 0" not in log.read_text() and proc.poll() is None and time.monotonic() < deadline:
            time.sleep(0.2)
        text = log.read_text()
        assert proc.poll() is None, text
        assert "no D-Bus session bus" in text and "Traceback" not in text and "dbus-launch" not in text, text
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(20) == 0, log.read_text()
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert "agent stopped" in log.read_text()
