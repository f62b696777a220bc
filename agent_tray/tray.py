"""The tray icon: a thin view over the same :class:`agent_tray.service.AgentService` that runs headless.

Icon colour = :class:`agent_tray.status.Health`: green (connected; OpenClaw up or not installed),
amber (connected; OpenClaw installed but its gateway down), grey (connecting or offline; the
number of messages waiting in the outbox is drawn on it), red (key refused, or no usable config).
Two white bars on the icon mean reporting is paused. The tooltip names the device and its state.

Menu: status line, tokens today, Open dashboard, Report now, Pause/Resume reporting, Snooze alerts for
this machine (1 hour / until tomorrow 08:00), Enroll…,
Open log folder, Quit. Without a config the tray asks for an enrollment token first (a small Tk
dialog, run as ``clawfleet-agent enroll --gui`` in its own process so Tk never shares a thread
with the tray's event loop).

Backends (pystray): Windows and macOS native; on Linux AppIndicator when its GObject bindings are
importable (``python3-gi`` + ``gir1.2-ayatanaappindicator3-0.1``), else plain X11 (``xorg``), which
has no menu: there a click opens the dashboard, or reports now when no dashboard URL is set.
``$PYSTRAY_BACKEND`` forces one.
"""

from __future__ import annotations

import datetime as dt
import logging
import os
import subprocess
import sys
import threading
import webbrowser
from collections.abc import Callable
from pathlib import Path
from typing import Any

from PIL import Image, ImageDraw, ImageFont

from agent_tray.config import AgentConfig, ConfigError, ConfigWatch, config_stamp, load_config
from agent_tray.platform import agent_command, current
from agent_tray.status import AgentStatus, Health

log = logging.getLogger("clawfleet.agent.tray")

COLOURS: dict[Health, tuple[int, int, int]] = {
    Health.OK: (46, 160, 67),
    Health.OPENCLAW_DOWN: (222, 150, 20),
    Health.CONNECTING: (130, 138, 148),
    Health.REFUSED: (210, 45, 45),
    Health.ERROR: (210, 45, 45),
}
"""Icon fill colour per state (RGB)."""
POLL_S = 1.0
"""How often the tray re-reads the agent's status, seconds."""
TOOLTIP_MAX = 127
"""Windows truncates tray tooltips at 128 characters."""


def icon_image(status: AgentStatus, size: int = 64) -> Image.Image:
    """The tray icon for ``status``: a filled circle in the state's colour (RGBA, ``size`` px square),
    with the outbox count when grey and messages wait, "!" when red, two bars when paused."""
    img = Image.new("RGBA", (size, size), (0, 0, 0, 0))
    draw = ImageDraw.Draw(img)
    pad = max(1, size // 16)
    draw.ellipse((pad, pad, size - pad - 1, size - pad - 1), fill=(*COLOURS[status.health], 255),
                 outline=(255, 255, 255, 255), width=max(1, size // 24))
    white = (255, 255, 255, 255)
    if status.paused:
        w, h = size // 8, size * 2 // 5
        for x in (size // 2 - w * 3 // 2, size // 2 + w // 2):
            draw.rectangle((x, (size - h) // 2, x + w, (size + h) // 2), fill=white)
        return img
    text = None
    if status.health in (Health.REFUSED, Health.ERROR):
        text = "!"
    elif status.health is Health.CONNECTING and status.outbox_messages:
        text = str(status.outbox_messages) if status.outbox_messages < 100 else "99+"
    if text:
        font = ImageFont.load_default(size=size * (5 if len(text) == 1 else 2 if len(text) == 3 else 3) // 8)
        draw.text((size / 2, size / 2), text, fill=white, font=font, anchor="mm")
    return img


def tooltip(status: AgentStatus) -> str:
    """``"ClawFleet: <device> - <state>"``, at most :data:`TOOLTIP_MAX` characters."""
    text = f"ClawFleet: {status.device_id or 'not enrolled'} - {status.summary}"
    return text if len(text) <= TOOLTIP_MAX else text[: TOOLTIP_MAX - 3] + "..."


def tokens_line(status: AgentStatus) -> str:
    """The menu's tokens line, saying since when it counts when the agent started today."""
    if status.tokens_since_ms is None:
        return "Tokens today: –"
    since = dt.datetime.fromtimestamp(status.tokens_since_ms / 1000)
    note = "" if since.time() == dt.time() else f" (since {since:%H:%M})"
    return f"Tokens today: {status.tokens_today:,}{note}"


class TrayApp:
    """Runs the agent core in a thread and shows it as a tray icon until :meth:`quit`.

    Args:
        config_path: the agent config (the tray enrolls into it when missing).
        log_dir: opened by "Open log folder".
        service_factory: builds the agent core from a config (default :class:`AgentService`).
        enroll_command: command line of the token dialog (default ``clawfleet-agent enroll --gui``).
        poll_s: status refresh period, seconds.
    """

    def __init__(self, config_path: Path, log_dir: Path, service_factory: Callable[[AgentConfig], Any] | None = None,
                 enroll_command: list[str] | None = None, poll_s: float = POLL_S) -> None:
        if sys.platform.startswith("linux") and not os.environ.get("PYSTRAY_BACKEND"):
            from agent_tray.platform.linux import tray_backend

            os.environ["PYSTRAY_BACKEND"] = tray_backend()
        import pystray  # here: importing it picks a backend and may open the X display

        self._pystray = pystray
        self.config_path = config_path
        self.log_dir = log_dir
        self.poll_s = poll_s
        self._factory = service_factory or _default_service
        self._enroll_command = enroll_command or agent_command("enroll", "--gui", "--config", str(config_path),
                                                               gui=True)
        self.service: Any = None
        self.cfg: AgentConfig | None = None
        self._watch: ConfigWatch | None = None
        self._tried: tuple[int, int] | None = None  # the config file state start_agent last failed on
        self._restart_lock = threading.RLock()  # the Enroll… dialog and follow_config never restart at once
        self._thread: threading.Thread | None = None
        self._error: str | None = None
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._refresh_lock = threading.Lock()  # pystray's xorg backend mixes up concurrent calls
        self._refresher_done = threading.Event()
        self._ended = threading.Event()
        self.shown: AgentStatus = AgentStatus.without_agent(Health.CONNECTING, "starting")
        """The status the icon currently shows."""
        self._latin1 = pystray.Icon.__module__.endswith("_xorg")  # X11's WM_NAME is a Latin-1 STRING
        if self._latin1:
            logging.getLogger("pystray._base").addFilter(_NoTrayHostOnce())
        self.icon = pystray.Icon("clawfleet-agent", icon_image(self.shown), self._title(self.shown), menu=self._menu())

    # ---- core lifecycle ----------------------------------------------------------------------
    def start_agent(self) -> bool:
        """Load the config and start the agent core in a thread; False (and a red icon) when the
        config is missing or invalid."""
        self._tried = config_stamp(self.config_path)
        try:
            cfg = load_config(self.config_path)
        except ConfigError as exc:
            self._error = str(exc)
            log.error("%s", exc)
            return False
        with self._lock:
            self.cfg, self._error = cfg, None
            self._watch = ConfigWatch(self.config_path, cfg)
            self.service = self._factory(cfg)
            if hasattr(self.service, "restart_hook"):  # an update restarts the whole tray, not only the core
                self.service.restart_hook = self.quit
            self._thread = threading.Thread(target=self.service.run, name="clawfleet-agent-core", daemon=True)
            self._thread.start()
        return True

    def stop_agent(self) -> None:
        """Stop the agent core (it publishes a retained ``shutdown`` status) and wait for it."""
        with self._lock:
            service, thread, self.service = self.service, self._thread, None
        if service is not None:
            service.stop()
        if thread is not None:
            thread.join(timeout=20)

    def follow_config(self) -> bool:
        """Restart the agent core when its config file was rewritten with another valid config
        (``clawfleet-agent enroll`` in a terminal), or start it once a config appears. True when it
        (re)started."""
        with self._restart_lock:
            if self.service is None:  # not enrolled or a bad config: try again when the file changes
                stamp = config_stamp(self.config_path)
                if stamp is None or stamp == self._tried:
                    return False
                self._tried = stamp
                return self.start_agent()
            if self._watch is None or self._watch.changed() is None:
                return False
            log.info("the agent config changed; restarting the agent with it")
            self.stop_agent()
            return self.start_agent()

    def current_status(self) -> AgentStatus:
        """The core's status, or a configuration error when it is not running."""
        service = self.service
        if service is None:
            return AgentStatus.config_error(self._error or "not running")
        return service.status()

    def refresh(self) -> AgentStatus:
        """Re-read the status and update the icon image, tooltip and menu when they changed."""
        with self._refresh_lock:
            return self._refresh()

    def _refresh(self) -> AgentStatus:
        status = self.current_status()
        old = self.shown
        if (status.health, status.paused, status.outbox_messages if status.health is Health.CONNECTING else 0) != (
                old.health, old.paused, old.outbox_messages if old.health is Health.CONNECTING else 0):
            self.icon.icon = icon_image(status)
            if status.health is not old.health:
                log.info("tray: %s", status.summary)
        title = self._title(status)
        if title != self.icon.title:
            self.icon.title = title
        self.shown = status
        self.icon.update_menu()
        return status

    # ---- menu actions ------------------------------------------------------------------------
    def open_dashboard(self) -> None:
        """Open the fleet dashboard in the default browser (``dashboard_url`` in the config)."""
        if self.cfg and self.cfg.dashboard_url:
            webbrowser.open(self.cfg.dashboard_url)

    def report_now(self) -> None:
        """Sample and publish at once (also while paused)."""
        if self.service is not None:
            self.service.report_now()

    def toggle_pause(self) -> None:
        """Pause or resume reporting."""
        if self.service is not None:
            self.service.set_paused(not self.service.paused)
            self.refresh()

    def snooze_alerts(self, seconds: float | None) -> None:
        """Snooze this machine's alerts for ``seconds``, or until tomorrow morning (None)."""
        if self.service is not None and self.service.snooze_alerts(seconds) is None:
            log.warning("not connected to the fleet server: alerts were not snoozed")

    def enroll(self) -> bool:
        """Ask for a token (dialog process); on success restart the core with the new config."""
        log.info("asking for an enrollment token")
        try:
            done = subprocess.run(self._enroll_command, check=False).returncode == 0
        except OSError as exc:
            log.error("cannot open the enrollment dialog: %s", exc)
            return False
        if done:
            with self._restart_lock:
                self.stop_agent()
                self.start_agent()
            self.refresh()
        return done

    def open_log_folder(self) -> None:
        """Open the log folder in the file manager."""
        self.log_dir.mkdir(parents=True, exist_ok=True)
        try:
            current().open_folder(self.log_dir)
        except OSError as exc:
            log.error("cannot open %s: %s", self.log_dir, exc)

    def quit(self) -> None:
        """Stop the core and the icon; :meth:`run` returns."""
        self._stop.set()
        self.stop_agent()
        if threading.current_thread() is not getattr(self.icon, "_setup_thread", None):
            self._refresher_done.wait(10)  # no icon update may be in flight while the icon stops
        self.icon.stop()
        if threading.current_thread() is not getattr(self.icon, "_thread", None) and not self._ended.wait(5):
            self._force_end()

    def _force_end(self) -> None:
        """pystray's X11 loop sometimes misses its own stop request on a loaded machine (seen under
        Xvfb) and waits for X events forever; closing its display connection ends that loop."""
        display = getattr(self.icon, "_display", None)
        if self._latin1 and display is not None:
            log.warning("the tray's X11 event loop did not stop; closing its display connection")
            try:
                display.close()
            except Exception:  # already closed or broken: the loop ends either way
                log.debug("closing the X display failed", exc_info=True)

    # ---- pystray -----------------------------------------------------------------------------
    def _menu(self) -> Any:
        item, menu = self._pystray.MenuItem, self._pystray.Menu
        running = lambda _i: self.service is not None  # noqa: E731
        return menu(
            item("Activate", self._call(self.activate), default=True, visible=False),  # a click on the icon
            item(lambda _i: self.shown.summary, None, enabled=False),
            item(lambda _i: tokens_line(self.shown), None, enabled=False),
            menu.SEPARATOR,
            item("Open dashboard", self._call(self.open_dashboard),
                 enabled=lambda _i: bool(self.cfg and self.cfg.dashboard_url)),
            item("Report now", self._call(self.report_now), enabled=running),
            item(lambda _i: "Resume reporting" if self.shown.paused else "Pause reporting",
                 self._call(self.toggle_pause), enabled=running),
            item("Snooze alerts for this machine", menu(
                item("1 hour", self._call(lambda: self.snooze_alerts(3600))),
                item("Until tomorrow", self._call(lambda: self.snooze_alerts(None)))),
                enabled=lambda _i: self.service is not None and self.shown.connected),
            item("Enroll…", self._call(self.enroll, background=True)),
            item("Open log folder", self._call(self.open_log_folder)),
            menu.SEPARATOR,
            item("Quit", self._call(self.quit)),
        )

    def _title(self, status: AgentStatus) -> str:
        text = tooltip(status)
        return text.encode("latin-1", "replace").decode("latin-1") if self._latin1 else text

    def activate(self) -> None:
        """A click on the icon: open the dashboard, or report now when no dashboard URL is configured."""
        if self.cfg and self.cfg.dashboard_url:
            self.open_dashboard()
        else:
            self.report_now()

    @staticmethod
    def _call(fn: Callable[[], Any], background: bool = False) -> Callable[..., None]:
        def action(_icon: Any = None, _item: Any = None) -> None:
            if background:  # a dialog must not block the tray's event loop
                threading.Thread(target=fn, daemon=True).start()
            else:
                fn()
        return action

    def _setup(self, icon: Any) -> None:
        try:
            icon.visible = True
            if not self.start_agent() and not self.config_path.exists():
                self.enroll()
            while not self._stop.wait(self.poll_s):
                try:
                    self.follow_config()
                    self.refresh()
                except Exception:  # a drawing glitch must not stop the refresh
                    log.exception("tray refresh failed")
        finally:
            self._refresher_done.set()

    def run(self) -> None:
        """Show the icon and run until Quit (blocks; call from the main thread on macOS)."""
        try:
            self.icon.run(setup=self._setup)
        finally:
            self._ended.set()
            self._stop.set()
            self.stop_agent()


class _NoTrayHostOnce(logging.Filter):
    """pystray's X11 backend logs "Failed to dock icon" with a traceback on every icon update when the
    display has no system-tray host; say it once, plainly."""

    def __init__(self) -> None:
        super().__init__()
        self.said = False

    def filter(self, record: logging.LogRecord) -> bool:
        if not str(record.msg).startswith("Failed to dock icon"):
            return True
        if self.said:
            return False
        self.said = True
        record.msg, record.args, record.exc_info, record.exc_text = (
            "this X display has no system tray (no tray host running): the icon cannot be shown", None, None, None)
        record.levelno, record.levelname = logging.WARNING, "WARNING"
        return True


def _default_service(cfg: AgentConfig) -> Any:
    from agent_tray.service import AgentService

    return AgentService(cfg)
