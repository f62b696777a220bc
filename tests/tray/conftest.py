"""Fixtures for tray tests: a real X server (Xvfb) and pystray's plain-X11 backend."""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Iterator

import pytest


@pytest.fixture(scope="module")
def xdisplay() -> Iterator[str]:
    """A private Xvfb display (``":N"``) set as ``$DISPLAY`` with ``PYSTRAY_BACKEND=xorg``; stopped after."""
    if shutil.which("Xvfb") is None:
        pytest.skip("Xvfb not installed (scripts/ensure-system-packages.sh test installs it)")
    read, write = os.pipe()
    # -noreset: an X server resets when its last client leaves, and refuses clients while it does
    args = ["Xvfb", "-displayfd", str(write), "-nolisten", "tcp", "-noreset", "-screen", "0", "640x480x24"]
    proc = subprocess.Popen(args, pass_fds=(write,), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    os.close(write)
    with os.fdopen(read) as fh:
        number = fh.readline().strip()
    if not number:
        proc.kill()
        pytest.fail("Xvfb did not report a display number")
    _wait_until_it_accepts(f":{number}", proc)
    saved = {k: os.environ.get(k) for k in ("DISPLAY", "PYSTRAY_BACKEND")}
    os.environ["DISPLAY"], os.environ["PYSTRAY_BACKEND"] = f":{number}", "xorg"
    yield f":{number}"
    for k, v in saved.items():
        if v is None:
            os.environ.pop(k, None)
        else:
            os.environ[k] = v
    proc.terminate()
    proc.wait(10)


def _wait_until_it_accepts(display: str, proc: subprocess.Popen, timeout: float = 15.0) -> None:
    """Xvfb reports its display number before a loaded machine lets it accept clients: connect until it does."""
    import time

    import Xlib.display
    import Xlib.error

    deadline = time.monotonic() + timeout
    while True:
        try:
            Xlib.display.Display(display).close()
            return
        except (Xlib.error.DisplayError, Xlib.error.ConnectionClosedError, OSError):
            if proc.poll() is not None or time.monotonic() > deadline:
                proc.kill()
                pytest.fail(f"Xvfb on {display} does not accept connections")
            time.sleep(0.2)
