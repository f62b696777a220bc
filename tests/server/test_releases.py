"""What the server offers and to whom: the package catalog (hashes, Ed25519 signatures the agent checks),
the install scripts it fills in, and update policies (scopes, windows, who is due). Real files, real keys,
real SQLite."""

from __future__ import annotations

import datetime as dt
import hashlib
import subprocess
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from fleet_server.releases import signing, updates
from fleet_server.releases.catalog import Catalog
from fleet_server.releases.routes import one_liners, render_install_ps1, render_install_sh, safe_fleet_url
from fleet_server.store.models import UpdateRequest
from shared.packages import Manifest, signed_message, unb64url

UTC = dt.timezone.utc


def _catalog(tmp_path: Path, *names: str) -> Catalog:
    folder = tmp_path / "agent-packages"
    folder.mkdir(parents=True, exist_ok=True)
    for n in names:
        (folder / n).write_bytes(n.encode() * 100)
    return Catalog(tmp_path)


def test_catalog_lists_packages_newest_first_signed_with_the_servers_key(tmp_path: Path) -> None:
    cat = _catalog(tmp_path, "clawfleet-agent_0.1.0_amd64.deb", "clawfleet-agent-0.2.0-linux-x86_64.tar.gz",
                   "clawfleet-agent-0.2.0-1.aarch64.rpm", "clawfleet-agent-0.2.0.dev1-linux-arm64.tar.gz",
                   "README.txt", "clawfleet-agent_latest_amd64.deb")
    m = cat.manifest()
    assert m.offered_version == "0.2.0"
    assert [p.name for p in m.packages] == ["clawfleet-agent-0.2.0-linux-x86_64.tar.gz",
                                            "clawfleet-agent-0.2.0-1.aarch64.rpm",
                                            "clawfleet-agent-0.2.0.dev1-linux-arm64.tar.gz",
                                            "clawfleet-agent_0.1.0_amd64.deb"]
    key = Ed25519PublicKey.from_public_bytes(unb64url(m.update_key))
    for p in m.packages:
        data = (tmp_path / "agent-packages" / p.name).read_bytes()
        assert (p.size, p.sha256) == (len(data), hashlib.sha256(data).hexdigest())
        key.verify(unb64url(p.signature), signed_message(p.name, p.version, p.sha256))  # raises when wrong
    assert m.pick("rpm", "linux", "aarch64") == m.packages[1] and m.pick("deb", "linux", "x86_64") is None
    assert Manifest.from_dict(m.to_dict()) == m
    assert cat.path_of("README.txt") is None and cat.path_of("../server.json") is None
    assert cat.sha256sums().splitlines()[0] == f"{m.packages[0].sha256}  {m.packages[0].name}"
    # a changed file is hashed and signed again
    (tmp_path / "agent-packages" / "clawfleet-agent_0.1.0_amd64.deb").write_bytes(b"other bytes")
    changed = Catalog(tmp_path).manifest().packages[-1]
    assert changed.sha256 == hashlib.sha256(b"other bytes").hexdigest()


def test_signing_key_is_private_and_stable(tmp_path: Path) -> None:
    first = signing.load_or_create(tmp_path)
    path = signing.key_path(tmp_path)
    assert path.stat().st_mode & 0o777 == 0o600
    assert signing.load_or_create(tmp_path).public_b64 == first.public_b64 == signing.public_key(tmp_path)
    assert signing.public_key(tmp_path / "none") is None and not (tmp_path / "none").exists()
    path.write_text("not a key")
    with pytest.raises(ValueError, match="package-signing key"):
        signing.load_or_create(tmp_path)


def test_install_scripts_are_filled_in_and_refuse_unsafe_addresses(tmp_path: Path) -> None:
    m = _catalog(tmp_path, "clawfleet-agent_0.3.0_amd64.deb", "clawfleet-agent-0.3.0-linux-x86_64.tar.gz",
                 "clawfleet-agent-0.2.0-linux-x86_64.tar.gz", "clawfleet-agent-0.3.0-setup-win64.exe").manifest()
    sh = render_install_sh("https://fleet.example.test:8443/", m)
    assert "FLEET_URL='https://fleet.example.test:8443'" in sh and "OFFERED='0.3.0'" in sh
    assert "tar.gz x86_64 clawfleet-agent-0.3.0-linux-x86_64.tar.gz" in sh and "0.2.0" not in sh
    path = tmp_path / "install.sh"
    path.write_text(sh)
    assert subprocess.run(["sh", "-n", str(path)]).returncode == 0
    ps1 = render_install_ps1("https://fleet.example.test", m)
    assert "$ExeName = 'clawfleet-agent-0.3.0-setup-win64.exe'" in ps1
    for bad in ("https://x'; rm -rf / #", "ftp://fleet", "https://fleet/$(id)", "https://fleet\n"):
        with pytest.raises(ValueError):
            safe_fleet_url(bad)
    linux = one_liners("https://fleet.example.test")["linux"]
    assert linux == "curl -fsSL https://fleet.example.test/install.sh | sudo sh"


def test_windows_wrap_past_midnight_and_follow_the_time_zone() -> None:
    at = dt.datetime(2026, 7, 1, 1, 30, tzinfo=UTC)  # 03:30 in Berlin (summer time)
    assert updates.in_window(None, "UTC", at)
    assert updates.in_window("01:00-02:00", "UTC", at) and not updates.in_window("02:00-04:00", "UTC", at)
    assert updates.in_window("02:00-04:00", "Europe/Berlin", at)
    assert updates.in_window("22:00-02:00", "UTC", at) and not updates.in_window("22:00-01:00", "UTC", at)


def test_policies_most_specific_wins_and_bad_input_is_named(db) -> None:
    updates.set_policy("admin", "fleet", "auto", "02:00-04:00", "UTC", 900)
    updates.set_policy("admin", "tag:lab", "manual")
    updates.set_policy("admin", "device:pinned", "manual")
    assert updates.effective_policy("any", "").scope == "fleet"
    assert updates.effective_policy("any", "office,lab").mode == "manual"
    assert updates.effective_policy("pinned", "").scope == "device:pinned"
    for args, why in ((("cluster", "auto"), "say fleet, tag:<tag> or device:<id>"),
                      (("fleet", "sometimes"), "say manual or auto"),
                      (("fleet", "auto", "2-4"), "HH:MM-HH:MM"),
                      (("fleet", "auto", None, "Mars/Olympus"), "time zone"),
                      (("fleet", "auto", None, "UTC", 5), "rollback time")):
        with pytest.raises(updates.UpdateError, match=why):
            updates.set_policy("admin", *args)
    assert updates.delete_policy("admin", "tag:lab") and not updates.delete_policy("admin", "tag:lab")


def test_auto_updates_go_to_online_older_devices_in_the_window_once(db) -> None:
    updates.set_policy("admin", "fleet", "auto", "02:00-04:00", "UTC")
    updates.set_policy("admin", "tag:frozen", "manual")
    table = {p.scope: p for p in updates.policies()}
    devices = [updates.Candidate("old", "", True, "0.1.0"), updates.Candidate("current", "", True, "0.2.0"),
               updates.Candidate("asleep", "", False, "0.1.0"), updates.Candidate("frozen", "frozen", True, "0.1.0")]
    night, noon = dt.datetime(2026, 1, 5, 3, 0, tzinfo=UTC), dt.datetime(2026, 1, 5, 12, 0, tzinfo=UTC)
    assert [d for d, _ in updates.due_auto_updates(devices, "0.2.0", night, {}, table)] == ["old"]
    assert updates.due_auto_updates(devices, "0.2.0", noon, {}, table) == []
    sent: list[tuple[str, bytes]] = []
    updates.request_update(lambda t, p: sent.append((t, p)) or True, "old", "0.2.0", "auto")
    assert sent[0][0] == "clawfleet/v1/old/cmd" and b'"command":"update"' in sent[0][1]
    assert updates.due_auto_updates(devices, "0.2.0", night, updates.last_requests(), table) == []  # sent already
    assert UpdateRequest.get_by_id("old").actor == "auto"
    with pytest.raises(updates.UpdateError, match="did not take"):
        updates.request_update(lambda t, p: False, "old", "0.2.0", "admin")
