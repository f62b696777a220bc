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
    proc = subprocess.Popen(["Xvfb", "-displayfd", str(write), "-nolisten", "tcp", "-screen", "0", "640x480x24"],
                            pass_fds=(write,), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    os.close(write)
    with os.fdopen(read) as fh:
        number = fh.readline().strip()
    if not number:
        proc.kill()
        pytest.fail("Xvfb did not report a display number")
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
