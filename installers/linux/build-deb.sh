#!/usr/bin/env bash
# Build the agent's Debian/Ubuntu package (agent only: no server dependencies).
#   installers/linux/build-deb.sh [OUT_DIR]     -> OUT_DIR/clawfleet-agent_<version>_<arch>.deb (default dist/)
# Payload: the ClawFleet wheel and its agent dependencies installed with pip into
# /opt/clawfleet-agent/lib, run by the system's /usr/bin/python3 (so python3-gi from the distribution
# is importable and the tray uses AppIndicator). The compiled dependencies (psutil, pydantic-core,
# zstandard, Pillow) are built for the Python that runs this script: the package depends on that
# python3 minor version. Set PYTHON to choose it (default: .venv/bin/python, else python3).
# Also installs: /usr/bin/clawfleet-agent, a systemd system unit and user unit (not enabled), an XDG
# autostart entry for the tray (it does nothing until the user has enrolled) and a menu entry.
set -euo pipefail
root="$(cd "$(dirname "$0")/../.." && pwd)"
out="$(mkdir -p "${1:-$root/dist}" && cd "${1:-$root/dist}" && pwd)"
py="${PYTHON:-}"
[ -z "$py" ] && { [ -x "$root/.venv/bin/python" ] && py="$root/.venv/bin/python" || py=python3; }
command -v dpkg-deb >/dev/null || { echo "error: dpkg-deb not found (Debian/Ubuntu: apt install dpkg)" >&2; exit 1; }

version="$("$py" -c 'import sys; sys.path.insert(0, sys.argv[1]); from shared.version import __version__; print(__version__)' "$root")"
pyver="$("$py" -c 'import sys; print("%d.%d" % sys.version_info[:2])')"
pynext="$("$py" -c 'import sys; print("%d.%d" % (sys.version_info[0], sys.version_info[1] + 1))')"
arch="$(dpkg --print-architecture)"
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
stage="$work/clawfleet-agent"
lib="$stage/opt/clawfleet-agent/lib"

echo "==> building the wheel"
"$py" -m pip wheel -q --disable-pip-version-check --no-deps -w "$work/wheel" "$root"
echo "==> installing the agent and its dependencies into /opt/clawfleet-agent/lib (Python $pyver)"
"$py" -m pip install -q --disable-pip-version-check --no-compile --target "$lib" "$work"/wheel/clawfleet-*.whl
rm -rf "$lib/bin"                      # console scripts with this machine's interpreter path; we ship our own
"$py" -m compileall -q -j 0 "$lib" >/dev/null || true   # byte-code in the package, none written at run time

install -d "$stage/usr/bin" "$stage/lib/systemd/system" "$stage/usr/lib/systemd/user" "$stage/etc/xdg/autostart" \
  "$stage/usr/share/applications" "$stage/etc/clawfleet-agent" "$stage/DEBIAN"
cat > "$stage/usr/bin/clawfleet-agent" <<'SH'
#!/bin/sh
# ClawFleet agent (Debian package): the payload in /opt/clawfleet-agent/lib, the system's Python 3.
PYTHONPATH="/opt/clawfleet-agent/lib${PYTHONPATH:+:$PYTHONPATH}" exec /usr/bin/python3 -s -m agent_tray.cli "$@"
SH
chmod 0755 "$stage/usr/bin/clawfleet-agent"

# unit files and desktop entries: the same generators as 'clawfleet-agent install-service' / 'autostart on'
PYTHONPATH="$lib" "$py" - "$stage" <<'PY'
import sys
from pathlib import Path

from agent_tray.platform.linux import autostart_entry, service_unit

stage = Path(sys.argv[1])
exe = "/usr/bin/clawfleet-agent"
system = [exe, "run", "--headless", "--config", "/etc/clawfleet-agent/agent.json",
          "--log-dir", "/var/log/clawfleet-agent"]
(stage / "lib/systemd/system/clawfleet-agent.service").write_text(service_unit(system, system=True))
(stage / "usr/lib/systemd/user/clawfleet-agent.service").write_text(service_unit([exe, "run", "--headless"],
                                                                                  system=False))
(stage / "etc/xdg/autostart/clawfleet-agent.desktop").write_text(autostart_entry([exe, "run", "--autostart"]))
menu = autostart_entry([exe, "run"]).replace("X-GNOME-Autostart-enabled=true\n", "")
(stage / "usr/share/applications/clawfleet-agent.desktop").write_text(menu)
PY

size_kb="$(du -sk "$stage" | cut -f1)"
cat > "$stage/DEBIAN/control" <<CTL
Package: clawfleet-agent
Version: $version
Architecture: $arch
Maintainer: ClawFleet <clawfleet@localhost>
Installed-Size: $size_kb
Depends: python3 (>= $pyver), python3 (<< $pynext)
Recommends: python3-tk, python3-gi, gir1.2-ayatanaappindicator3-0.1
Section: admin
Priority: optional
Description: ClawFleet agent: reports this machine and its OpenClaw gateway to a fleet
 Samples CPU, memory, disk, network and the OpenClaw gateway's state, token usage and errors,
 and publishes them over MQTT 5 to a ClawFleet fleet server. Shows a tray icon at login
 (after 'clawfleet-agent enroll'), or runs headless as the clawfleet-agent systemd service.
CTL
cat > "$stage/DEBIAN/postinst" <<'SH'
#!/bin/sh
set -e
if [ "$1" = "configure" ]; then
  mkdir -p /var/log/clawfleet-agent
  [ -d /run/systemd/system ] && systemctl daemon-reload >/dev/null 2>&1 || true
  cat <<'MSG'
ClawFleet agent installed.
  Desktop: start "ClawFleet Agent" from the menu (it asks for the enrollment token); it starts at login.
  Server:  sudo clawfleet-agent enroll --config /etc/clawfleet-agent/agent.json   (paste the token)
           sudo systemctl enable --now clawfleet-agent
MSG
fi
SH
cat > "$stage/DEBIAN/prerm" <<'SH'
#!/bin/sh
set -e
if [ -d /run/systemd/system ]; then
  systemctl disable --now clawfleet-agent.service >/dev/null 2>&1 || true
fi
SH
cat > "$stage/DEBIAN/postrm" <<'SH'
#!/bin/sh
set -e
case "$1" in
  remove|purge) rm -rf /opt/clawfleet-agent ;;   # byte-code Python may have written at run time
esac
if [ "$1" = "purge" ]; then
  rm -rf /etc/clawfleet-agent /var/log/clawfleet-agent
fi
[ -d /run/systemd/system ] && systemctl daemon-reload >/dev/null 2>&1 || true
SH
chmod 0755 "$stage/DEBIAN/postinst" "$stage/DEBIAN/prerm" "$stage/DEBIAN/postrm"

deb="$out/clawfleet-agent_${version}_${arch}.deb"
dpkg-deb --root-owner-group --build "$stage" "$deb" >/dev/null
echo "built $deb ($(du -h "$deb" | cut -f1), installed size $((size_kb / 1024)) MiB)"
