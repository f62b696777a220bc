"""Self-update refuses what it must: a package changed on the way, a server without the enrolling fleet's key,
a package URL off the fleet, a downgrade, a machine that turned self-update off. Real Ed25519 keys and
signatures (the server's own :class:`~fleet_server.releases.catalog.Catalog`), a real HTTP server standing
in for the fleet's ``/agent/`` routes, real files. Nothing is unpacked when a check fails.

The whole update (install.sh's tree, restart into the new version, rollback) runs end to end in
tests/installers/test_install_sh.py; the watchdog's rollback step is also run here on its own."""

from __future__ import annotations

import http.server
import io
import json
import os
import subprocess
import sys
import tarfile
import threading
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from agent_tray.config import AgentConfig
from agent_tray.update import state as update_state
from agent_tray.update import tree
from agent_tray.update.apply import Updater
from agent_tray.update.fetch import UpdateRefused
from agent_tray.update.layout import Install
from fleet_server.releases.catalog import Catalog
from shared.packages import package_name
from shared.version import __version__

NEW = "9.9.9"
NAME = package_name("tar.gz", NEW, "x86_64")


class _Fleet:
    """An HTTP server answering ``/agent/packages.json`` with ``manifest()`` and ``/agent/files/<name>``
    with ``body(name)``: the test decides what a (possibly hostile) server sends."""

    def __init__(self, manifest: Callable[[], dict], body: Callable[[str], bytes]) -> None:
        fleet = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                fleet.requests.append(self.path)
                if self.path == "/agent/packages.json":
                    data = json.dumps(manifest()).encode()
                elif self.path.startswith("/agent/files/"):
                    data = body(self.path.rsplit("/", 1)[1])
                else:
                    self.send_error(404)
                    return
                self.send_response(200)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, *_args: object) -> None:
                pass

        self.requests: list[str] = []
        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


def _tarball(version: str) -> bytes:
    """A package-shaped archive: ``clawfleet-agent/clawfleet-agent`` printing ``clawfleet-agent <version>``."""
    out = io.BytesIO()
    with tarfile.open(fileobj=out, mode="w:gz") as tar:
        script = f"#!/bin/sh\necho clawfleet-agent {version}\n".encode()
        info = tarfile.TarInfo("clawfleet-agent/clawfleet-agent")
        info.size, info.mode = len(script), 0o755
        tar.addfile(info, io.BytesIO(script))
    return out.getvalue()


@pytest.fixture
def release(tmp_path: Path) -> Catalog:
    """The fleet's catalog holding one package of version 9.9.9, signed with its key."""
    folder = tmp_path / "server" / "agent-packages"
    folder.mkdir(parents=True)
    (folder / NAME).write_bytes(_tarball(NEW))
    return Catalog(tmp_path / "server")


@pytest.fixture
def root(tmp_path: Path) -> Path:
    """install.sh's tree with the running version in it."""
    r = tmp_path / "tree"
    (r / "versions" / __version__).mkdir(parents=True)
    (r / "current").symlink_to(Path("versions") / __version__)
    return r


def _updater(tmp_path: Path, root: Path, fleet_url: str, key: str | None, **cfg: object) -> Updater:
    config = AgentConfig(device_id="upd-box", broker_url="mqtt://127.0.0.1:1", api_key="k" * 32,
                         dashboard_url=fleet_url, update_public_key=key, data_dir=str(tmp_path / "agent"), **cfg)
    return Updater(config, tmp_path / "agent", restart=lambda: None, install=Install("tree", root, "tar.gz",
                                                                                    "linux", "x86_64"))


def _run(updater: Updater, version: str = NEW) -> update_state.UpdateState:
    thread = updater.handle(version, 60)
    assert thread is not None
    thread.join(30)
    st = update_state.load(updater.data_dir)
    assert st is not None
    return st


@pytest.fixture
def serve() -> Iterator[Callable[..., _Fleet]]:
    started: list[_Fleet] = []

    def make(manifest: Callable[[], dict], body: Callable[[str], bytes]) -> _Fleet:
        started.append(_Fleet(manifest, body))
        return started[-1]

    yield make
    for f in started:
        f.close()


def _untouched(root: Path) -> None:
    assert sorted(p.name for p in (root / "versions").iterdir()) == [__version__]
    assert os.readlink(root / "current") == f"versions/{__version__}"


def test_a_package_changed_on_the_way_is_refused(tmp_path: Path, release: Catalog, root: Path, serve) -> None:
    good = (release.dirs[0] / NAME).read_bytes()
    fleet = serve(lambda: release.manifest().to_dict(), lambda _n: good[:-10] + b"0123456789")  # same size
    st = _run(_updater(tmp_path, root, fleet.url, release.key.public_b64))
    assert st.state == "refused" and "SHA-256" in st.detail and "tampered" in st.detail
    assert not list((tmp_path / "agent" / "update").glob("*.tar.gz*"))  # nothing left behind
    _untouched(root)


def test_a_server_without_the_fleets_key_is_refused_before_downloading(tmp_path: Path, release: Catalog,
                                                                       root: Path, serve) -> None:
    rogue = Catalog(tmp_path / "rogue", (release.dirs[0],))  # same files, its own key
    fleet = serve(lambda: rogue.manifest().to_dict(), lambda n: (release.dirs[0] / n).read_bytes())
    st = _run(_updater(tmp_path, root, fleet.url, release.key.public_b64))
    assert st.state == "refused" and "signature does not match" in st.detail
    assert fleet.requests == ["/agent/packages.json"]
    _untouched(root)


def test_a_package_url_off_the_fleet_is_refused(tmp_path: Path, release: Catalog, root: Path, serve) -> None:
    def manifest() -> dict:
        m = release.manifest().to_dict()
        m["packages"][0]["url"] = "http://203.0.113.7/agent/files/" + NAME
        return m

    fleet = serve(manifest, lambda n: b"")
    st = _run(_updater(tmp_path, root, fleet.url, release.key.public_b64))
    assert st.state == "refused" and "not on this fleet's server" in st.detail
    _untouched(root)


@pytest.mark.parametrize(("key", "cfg", "version", "why"), [
    (None, {}, NEW, "no package-signing key"),
    ("own", {"self_update": False}, NEW, "self-update is off"),
    ("own", {}, "0.0.1", "does not downgrade"),
])
def test_refused_without_asking_the_server(tmp_path: Path, release: Catalog, root: Path, serve, key, cfg, version,
                                           why) -> None:
    fleet = serve(lambda: release.manifest().to_dict(), lambda n: b"")
    st = _run(_updater(tmp_path, root, fleet.url, release.key.public_b64 if key else None, **cfg), version)
    assert st.state == "refused" and why in st.detail and not fleet.requests
    _untouched(root)


def test_a_signed_package_unpacks_next_to_the_running_version(tmp_path: Path, release: Catalog, root: Path,
                                                              serve, monkeypatch: pytest.MonkeyPatch) -> None:
    fleet = serve(lambda: release.manifest().to_dict(), lambda n: (release.dirs[0] / n).read_bytes())
    started: list[list[str]] = []
    monkeypatch.setattr(tree, "start_watchdog", lambda *a, **k: started.append(list(a)))  # no real watchdog here
    restarted = threading.Event()
    updater = _updater(tmp_path, root, fleet.url, release.key.public_b64)
    updater._restart = restarted.set
    st = _run(updater)
    assert st.state == "installed" and st.version == NEW and st.previous == __version__ and st.deadline_ms
    assert os.readlink(root / "current") == f"versions/{NEW}" and restarted.is_set() and started
    assert subprocess.run([str(root / "current" / "clawfleet-agent"), "--version"], capture_output=True,
                          text=True).stdout.strip() == f"clawfleet-agent {NEW}"


def test_an_archive_that_climbs_out_of_its_folder_is_refused(tmp_path: Path, root: Path) -> None:
    out = tmp_path / "evil.tar.gz"
    with tarfile.open(out, "w:gz") as tar:
        info = tarfile.TarInfo("clawfleet-agent/../../escaped")
        info.size = 1
        tar.addfile(info, io.BytesIO(b"x"))
    with pytest.raises(UpdateRefused, match="cannot be unpacked safely"):
        tree.unpack(root, out, NEW)
    assert not (root / "escaped").exists() and not (root.parent / "escaped").exists()


def test_watchdog_goes_back_when_the_deadline_passes(tmp_path: Path, root: Path,
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    (root / "versions" / NEW).mkdir()
    tree.switch(root, NEW)
    data = tmp_path / "agent"
    update_state.save(data, update_state.UpdateState("installed", version=NEW, previous=__version__,
                                                     ts=update_state.now_ms() - 5000,
                                                     deadline_ms=update_state.now_ms() - 1))
    stuck = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])  # the new version, silent
    monkeypatch.setenv("INVOCATION_ID", "test")  # as under systemd: the manager restarts the agent
    try:
        assert tree.run_watchdog(data, root, stuck.pid, ["run", "--headless"], poll_s=0.05) == 0
        assert stuck.wait(20) is not None
    finally:
        stuck.kill()
    assert os.readlink(root / "current") == f"versions/{__version__}"
    st = update_state.load(data)
    assert st.state == "rolled-back" and f"{NEW} did not report within 5 s" in st.detail


def test_watchdog_stands_down_once_the_new_version_confirmed(tmp_path: Path, root: Path) -> None:
    data = tmp_path / "agent"
    update_state.save(data, update_state.UpdateState("confirmed", version=NEW, previous=__version__,
                                                     deadline_ms=update_state.now_ms() - 1))
    assert tree.run_watchdog(data, root, os.getpid(), [], poll_s=0.05) == 0
    assert os.readlink(root / "current") == f"versions/{__version__}"
