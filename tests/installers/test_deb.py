"""The agent's .deb, for real: built by installers/linux/build-packages.sh (PyInstaller payload), installed
with dpkg, enrolled, upgraded to a bumped version, purged; and root's side of its self-update.

Needs root and dpkg (CI runs as root); it really installs into /opt, /usr and /etc and removes
everything again. No systemd runs on this machine (PID 1 is not systemd), so "enabled" is what
``systemctl is-enabled`` reads from the unit links (the same links systemd boots from), and the
running service is played by starting the unit's ExecStart as its user; that the service keeps
running across an upgrade under a real systemd is checked by .github/workflows/agent-linux.yml."""

from __future__ import annotations

import grp
import os
import pwd
import shlex
import shutil
import subprocess
import time
from pathlib import Path

import pytest
from e2e_helpers import wait_for
from package_helpers import built_packages, bumped_version, one

from shared.enrollment import Enrollment, encode_token
from shared.version import __version__

pytestmark = [
    pytest.mark.installers,
    pytest.mark.skipif(shutil.which("dpkg-deb") is None or shutil.which("dpkg") is None, reason="needs dpkg"),
    pytest.mark.skipif(not hasattr(os, "geteuid") or os.geteuid() != 0, reason="dpkg -i needs root (CI is root)"),
    pytest.mark.timeout(1500),
]
UNIT = Path("/usr/lib/systemd/system/clawfleet-agent.service")
CONFIG = Path("/etc/clawfleet-agent/agent.json")
DATA = Path("/var/lib/clawfleet-agent")


def _installed_version() -> str | None:
    res = subprocess.run(["dpkg-query", "-W", "-f=${Status} ${Version}", "clawfleet-agent"], capture_output=True,
                         text=True)
    return res.stdout.split()[-1] if "install ok installed" in res.stdout else None


def _enabled() -> str:
    return subprocess.run(["systemctl", "is-enabled", "clawfleet-agent.service"], capture_output=True,
                          text=True).stdout.strip()


def _exec_start() -> list[str]:
    line = next(ln for ln in UNIT.read_text().splitlines() if ln.startswith("ExecStart="))
    return shlex.split(line.split("=", 1)[1])


def _run_as_service(seconds: float) -> None:
    """Run the unit's ExecStart as its user with its environment until it has stored some samples."""
    env = {"PATH": "/usr/bin:/bin", "HOME": str(DATA), "CLAWFLEET_AGENT_DATA_DIR": str(DATA)}
    proc = subprocess.Popen(["setpriv", "--reuid=clawfleet-agent", "--regid=clawfleet-agent", "--init-groups",
                             *_exec_start()], env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    try:
        wait_for(lambda: (DATA / "outbox.sqlite").exists() or proc.poll() is not None, 30, what="the outbox")
        time.sleep(seconds)
        assert proc.poll() is None, proc.stdout.read().decode()[-2000:]
    finally:
        proc.terminate()
        proc.wait(20)


@pytest.fixture
def purge_after() -> None:
    assert _installed_version() is None, "clawfleet-agent is already installed on this machine; purge it first"
    yield
    subprocess.run(["dpkg", "--purge", "clawfleet-agent"], capture_output=True)


def test_deb_installs_enrolls_upgrades_keeping_service_config_and_outbox_then_purges(purge_after: None,
                                                                                   tmp_path: Path) -> None:
    old = one(built_packages(__version__), "*.deb")
    new = one(built_packages(bumped_version()), "*.deb")
    contents = subprocess.run(["dpkg-deb", "-c", str(old)], capture_output=True, text=True, check=True).stdout
    assert "./opt/clawfleet-agent/clawfleet-agent" in contents and "nicegui" not in contents
    assert "/etc/xdg/autostart" not in contents  # 'autostart on' is the one switch for the tray
    control = subprocess.run(["dpkg-deb", "-f", str(old), "Depends"], capture_output=True, text=True).stdout
    assert "python3" not in control and control.startswith("libc6 (>= 2.")  # its own Python inside
    print(f"{old.name}: {old.stat().st_size / 2**20:.1f} MiB, {new.name}: {new.stat().st_size / 2**20:.1f} MiB")

    subprocess.run(["dpkg", "-i", str(old)], check=True, capture_output=True)
    assert _installed_version() == __version__
    assert pwd.getpwnam("clawfleet-agent").pw_dir == str(DATA)
    assert Path("/etc/clawfleet-agent").stat().st_gid == grp.getgrnam("clawfleet-agent").gr_gid
    unit = UNIT.read_text()
    assert "User=clawfleet-agent" in unit and "ConditionPathExists=/etc/clawfleet-agent/agent.json" in unit
    assert _enabled() == "enabled"  # on at install; idle until enrolled (the condition)
    assert subprocess.run(["/usr/bin/clawfleet-agent", "--version"], capture_output=True,
                          text=True).stdout.strip() == f"clawfleet-agent {__version__}"

    token = encode_token(Enrollment(url="mqtt://127.0.0.1:1", device_id="deb-box", api_key="k" * 32))
    res = subprocess.run(["/usr/bin/clawfleet-agent", "enroll", "--system", "--offline", "-"], input=token,
                         capture_output=True, text=True)
    assert res.returncode == 0, res.stderr
    st = CONFIG.stat()
    assert (st.st_uid, st.st_gid, st.st_mode & 0o777) == (0, grp.getgrnam("clawfleet-agent").gr_gid, 0o640)
    _run_as_service(3)  # the broker is unreachable: its samples wait in the outbox
    outbox = DATA / "outbox.sqlite"
    assert outbox.exists() and outbox.stat().st_uid == pwd.getpwnam("clawfleet-agent").pw_uid
    config_before, outbox_before = CONFIG.read_bytes(), outbox.stat().st_size

    subprocess.run(["dpkg", "-i", str(new)], check=True, capture_output=True)
    assert _installed_version() == bumped_version()
    assert subprocess.run(["/usr/bin/clawfleet-agent", "--version"], capture_output=True,
                          text=True).stdout.strip() == f"clawfleet-agent {bumped_version()}"
    assert _enabled() == "enabled"
    assert CONFIG.read_bytes() == config_before and CONFIG.stat().st_mode & 0o777 == 0o640
    assert outbox.stat().st_size >= outbox_before  # the waiting samples are still there
    res = subprocess.run(["/usr/bin/clawfleet-agent", "status", "--config", str(CONFIG)], capture_output=True,
                         text=True, env={**os.environ, "CLAWFLEET_AGENT_DATA_DIR": str(DATA)})
    assert res.returncode == 3 and "deb-box" in res.stdout and "messages waiting" in res.stdout

    subprocess.run(["dpkg", "--purge", "clawfleet-agent"], check=True, capture_output=True)
    assert _installed_version() is None
    for path in ("/usr/bin/clawfleet-agent", "/opt/clawfleet-agent", str(UNIT), "/etc/clawfleet-agent", str(DATA),
                 "/var/log/clawfleet-agent", "/var/cache/clawfleet-agent",
                 "/etc/systemd/system/multi-user.target.wants/clawfleet-agent.service"):
        assert not os.path.lexists(path), path
    with pytest.raises(KeyError):
        pwd.getpwnam("clawfleet-agent")


def test_deb_is_lintian_clean() -> None:
    if shutil.which("lintian") is None:
        pytest.skip("lintian not installed (apt install lintian)")
    deb = one(built_packages(__version__), "*.deb")
    res = subprocess.run(["lintian", "--tag-display-limit", "0", str(deb)], capture_output=True, text=True,
                         timeout=900)
    tags = [ln for ln in res.stdout.splitlines() if ln[:2] in ("E:", "W:")]
    assert not tags, "\n".join(tags)


def test_root_updater_refuses_a_tampered_package_and_rolls_back_one_that_does_not_report(purge_after: None,
                                                                                       tmp_path: Path) -> None:
    """``clawfleet-agent apply-update --system`` as the packages' path unit runs it (as root), with the request
    the unprivileged agent leaves. No systemd here restarts the service on the new version, so it never
    reports: after the deadline root installs the previous package again."""
    import json

    from fleet_server.releases.catalog import Catalog

    old = one(built_packages(__version__), "*.deb")
    new = one(built_packages(bumped_version()), "*.deb")
    releases = tmp_path / "releases"
    releases.mkdir()
    shutil.copy(new, releases)
    catalog = Catalog(tmp_path / "server", (releases,))
    pkg = catalog.manifest().pick("deb", "linux", "x86_64" if "amd64" in new.name else "arm64", bumped_version())
    subprocess.run(["dpkg", "-i", str(old)], check=True, capture_output=True)
    token = encode_token(Enrollment(url="mqtt://127.0.0.1:1", device_id="deb-box", api_key="k" * 32,
                                    update_key=catalog.key.public_b64))
    subprocess.run(["/usr/bin/clawfleet-agent", "enroll", "--system", "--offline", "-"], input=token, text=True,
                   check=True, capture_output=True)
    shutil.copy(old, "/var/cache/clawfleet-agent/")  # what install.sh leaves for a rollback
    update = DATA / "update"

    def request(data: bytes, entry: dict) -> str:
        update.mkdir(exist_ok=True)
        (update / new.name).write_bytes(data)
        (update / "request.json").write_text(json.dumps({"package": entry, "file": str(update / new.name),
                                                         "rollback_after_s": 30}))
        res = subprocess.run(["/usr/bin/clawfleet-agent", "apply-update", "--system"], capture_output=True,
                             text=True, timeout=300)
        return res.stdout + res.stderr

    good = new.read_bytes()
    out = request(good[:-16] + b"\0" * 16, pkg.__dict__)  # changed after the agent checked it
    assert "update: refused" in out and _installed_version() == __version__
    state = json.loads((DATA / "update.json").read_text())
    assert state["state"] == "refused" and "not the package the fleet signed" in state["detail"]
    forged = {**pkg.__dict__, "signature": Catalog(tmp_path / "rogue", (releases,)).manifest().packages[0].signature}
    assert "update: refused" in request(good, forged) and _installed_version() == __version__

    out = request(good, pkg.__dict__)
    assert "update: rolled-back" in out, out
    assert _installed_version() == __version__
    state = json.loads((DATA / "update.json").read_text())
    assert state["state"] == "rolled-back" and f"{bumped_version()} did not report within 30 s" in state["detail"]
    assert (DATA / "update.json").stat().st_uid == pwd.getpwnam("clawfleet-agent").pw_uid  # the agent reads it
