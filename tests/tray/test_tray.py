"""The tray icon under a real X server (Xvfb, pystray's xorg backend) over a real agent core and a
real Mosquitto: colour follows broker up/down, OpenClaw up/down and a revoked key; menu actions
report, pause and quit.

The xorg backend has no menus (and Xvfb no system-tray host to dock into), so the tests call the
same action functions the menu items call; the icon image checked is the one pystray holds.
Per-state icon images are saved to ``$CLAWFLEET_SCREENSHOT_DIR`` (default: the test's tmp dir).
"""

from __future__ import annotations

import json
import os
import sys
import threading
from pathlib import Path

import pytest
from collectors.test_gateway_probe import Gateway
from e2e_helpers import wait_for, write_agent_config
from mqtt_helpers import make_device, unique_device_id
from PIL import Image, ImageDraw

from agent_tray.status import AgentStatus, Health
from agent_tray.tray import COLOURS, TrayApp, icon_image, tooltip

pytestmark = [pytest.mark.skipif(sys.platform != "linux", reason="Xvfb is Linux-only"),
              # pystray's xorg Icon closes its X connection in __del__, which may run after Xvfb stopped
              pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning")]


def _centre(img: Image.Image) -> tuple[int, int, int]:
    """Colour of a pixel of the icon's disc (away from any text drawn in the middle)."""
    return img.convert("RGB").getpixel((img.width // 2, img.height // 6))


def _status(health: Health, waiting: int = 0, paused: bool = False) -> AgentStatus:
    base = AgentStatus.config_error("x")
    return AgentStatus(**{**base.__dict__, "health": health, "outbox_messages": waiting, "paused": paused,
                          "device_id": "build-box", "summary": health.value})


def _screenshot_dir(tmp_path: Path) -> Path:
    d = Path(os.environ.get("CLAWFLEET_SCREENSHOT_DIR") or tmp_path)
    d.mkdir(parents=True, exist_ok=True)
    return d


def test_icon_colour_per_state_and_saved_images(tmp_path: Path) -> None:
    states = [("green-connected", _status(Health.OK)), ("amber-openclaw-down", _status(Health.OPENCLAW_DOWN)),
              ("grey-offline-12-waiting", _status(Health.CONNECTING, waiting=12)),
              ("red-key-refused", _status(Health.REFUSED)), ("green-paused", _status(Health.OK, paused=True))]
    out = _screenshot_dir(tmp_path)
    strip = Image.new("RGB", (len(states) * 140, 110), (32, 33, 36))
    draw = ImageDraw.Draw(strip)
    for i, (name, st) in enumerate(states):
        img = icon_image(st)
        assert img.size == (64, 64)
        assert _centre(img) == COLOURS[st.health]
        img.save(out / f"tray-icon-{name}.png")
        strip.paste(img, (i * 140 + 38, 10), img)
        draw.text((i * 140 + 6, 84), name, fill=(230, 230, 230))
    strip.save(out / "tray-icons.png")
    # the grey icon carries the outbox count: it differs from a grey icon with nothing waiting
    assert icon_image(_status(Health.CONNECTING, 12)).tobytes() != icon_image(_status(Health.CONNECTING)).tobytes()
    assert tooltip(_status(Health.OK)) == "ClawFleet: build-box - ok"
    assert len(tooltip(AgentStatus.config_error("x" * 300))) <= 127


def _openclaw_state(tmp_path: Path, port: int) -> Path:
    state = tmp_path / "openclaw-state"
    state.mkdir()
    (state / "openclaw.json").write_text(json.dumps({"gateway": {"port": port}}))
    return state


def _start(app: TrayApp) -> threading.Thread:
    t = threading.Thread(target=app.run, name="tray", daemon=True)
    t.start()
    return t


def _shows(app: TrayApp, health: Health, save_to: Path | None = None) -> bool:
    """The running icon shows ``health`` (state and image colour); its image is saved to ``save_to``."""
    ok = app.shown.health is health and _centre(app.icon.icon) == COLOURS[health]
    if ok and save_to is not None:
        app.icon.icon.save(save_to / f"tray-live-{health.value}.png")
    return ok


def test_tray_follows_broker_openclaw_and_key(xdisplay: str, broker_factory, tmp_path: Path,
                                              monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("OPENCLAW_GATEWAY_PORT", raising=False)
    broker = broker_factory()
    device = unique_device_id("tray")
    with broker.admin_client() as dynsec:
        dynsec.ensure_server_role()
        key = make_device(dynsec, device)
    gateway = Gateway()
    cfg_path = write_agent_config(tmp_path, device, key, broker.cfg.port,
                                  openclaw_state_dir=str(_openclaw_state(tmp_path, gateway.port)))
    app = TrayApp(cfg_path, tmp_path / "logs", poll_s=0.2)
    shots = _screenshot_dir(tmp_path)
    tray = _start(app)
    try:
        wait_for(lambda: app.icon.visible, 10, what="icon shown")
        wait_for(lambda: _shows(app, Health.OK, shots), 15, what="green: connected, OpenClaw up")
        assert app.icon.title == f"ClawFleet: {device} - connected"

        gateway.close()  # OpenClaw's gateway stops
        wait_for(lambda: _shows(app, Health.OPENCLAW_DOWN, shots), 15, what="amber: OpenClaw down")

        broker.stop()  # the broker goes away: grey, with the messages waiting in the outbox
        wait_for(lambda: _shows(app, Health.CONNECTING, shots), 15, what="grey: offline")
        wait_for(lambda: app.shown.outbox_messages >= 2, 15, what="samples waiting in the outbox")
        assert "waiting" in app.icon.title
        broker.start()
        wait_for(lambda: _shows(app, Health.OPENCLAW_DOWN), 60, what="connected again")
        wait_for(lambda: app.current_status().outbox_messages == 0, 15, what="outbox flushed")

        # Pause stops publishing: no new samples, no new PUBACKs
        app.toggle_pause()
        assert app.shown.paused and "paused" in app.icon.title
        service = app.service
        wait_for(lambda: service.outbox.stats()["messages"] == 0, 10, what="queue drained")
        taken, acked = service.samples_taken, service.publisher.last_publish_ms
        threading.Event().wait(3 * service.cfg.interval_s)
        assert (service.samples_taken, service.publisher.last_publish_ms) == (taken, acked)
        # Report now publishes even while paused
        app.report_now()
        wait_for(lambda: service.samples_taken == taken + 1, 10, what="one sample taken")
        wait_for(lambda: (service.publisher.last_publish_ms or 0) > (acked or 0), 10, what="sample acknowledged")
        app.toggle_pause()
        assert not app.shown.paused

        with broker.admin_client() as dynsec:  # the admin revokes the device: red
            dynsec.disable_device(device)
        wait_for(lambda: _shows(app, Health.REFUSED, shots), 30, what="red: key refused")
        assert "key refused" in app.icon.title
    finally:
        app.quit()
        tray.join(20)
        gateway.close()
    assert not tray.is_alive(), "Quit did not stop the tray"
    assert service is not None and not any(t.name == "clawfleet-agent-core" and t.is_alive()
                                           for t in threading.enumerate())


def test_not_enrolled_is_red_and_enroll_starts_the_agent(xdisplay: str, broker_factory, tmp_path: Path) -> None:
    broker = broker_factory()
    device = unique_device_id("tray")
    with broker.admin_client() as dynsec:
        dynsec.ensure_server_role()
        key = make_device(dynsec, device)
    ready = write_agent_config(tmp_path, device, key, broker.cfg.port)
    target = tmp_path / "cfg" / "agent.json"
    # stands in for the token dialog's process: its contract is "exit 0 once the config is written"
    dialog = [sys.executable, "-c", f"import shutil, pathlib; pathlib.Path({str(target.parent)!r}).mkdir(); "
                                    f"shutil.copy({str(ready)!r}, {str(target)!r})"]
    app = TrayApp(target, tmp_path / "logs", enroll_command=dialog, poll_s=0.2)
    tray = _start(app)
    try:
        wait_for(lambda: app.service is not None, 15, what="enrolled through the dialog at start")
        wait_for(lambda: _shows(app, Health.OK), 15, what="green after enrolling")
    finally:
        app.quit()
        tray.join(20)
    assert not tray.is_alive()

    target.write_text("{}")  # a broken config: red, and the status line names the problem
    app = TrayApp(target, tmp_path / "logs", enroll_command=[sys.executable, "-c", "raise SystemExit(1)"], poll_s=0.2)
    tray = _start(app)
    try:
        wait_for(lambda: _shows(app, Health.ERROR), 10, what="red: configuration error")
        assert "invalid agent config" in app.shown.summary
    finally:
        app.quit()
        tray.join(20)


def test_token_dialog_opens_and_cancel_writes_nothing(xdisplay: str, tmp_path: Path) -> None:
    """The real Tk dialog (``enroll --gui``) draws its window on the X display; closing it is a cancel."""
    import subprocess

    from e2e_helpers import stop_agent
    from PIL import ImageGrab

    target = tmp_path / "agent.json"
    proc = subprocess.Popen([sys.executable, "-m", "agent_tray.cli", "enroll", "--gui", "--config", str(target)],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT)

    def drawn() -> tuple | None:
        shot = ImageGrab.grab(xdisplay=xdisplay)
        box = shot.convert("L").point(lambda v: 255 if v else 0).getbbox()
        if box and box[2] - box[0] > 200:
            shot.crop(box).save(_screenshot_dir(tmp_path) / "enroll-dialog.png")
            return box
        return None

    try:
        wait_for(drawn, 15, interval=0.3, what="the token window")
    finally:
        code = stop_agent(proc)  # SIGTERM stands in for closing the window
    assert code != 0 and not target.exists()
