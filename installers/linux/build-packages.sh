#!/usr/bin/env bash
# Build the agent's Linux packages from one PyInstaller one-folder payload (its own Python inside, so
# one package serves Debian 12/13 and Ubuntu 22.04/24.04 alike, whatever their python3):
#   clawfleet-agent_<version>_<amd64|arm64>.deb         (dpkg-deb)
#   clawfleet-agent-<version>-1.<x86_64|aarch64>.rpm    (rpmbuild; Debian's 'rpm' package has it)
#   clawfleet-agent-<version>-linux-<x86_64|arm64>.tar.gz  (install.sh's user and non-dpkg/rpm installs)
#
#   installers/linux/build-packages.sh [--payload DIR] [--formats deb,rpm,tar.gz] [OUT_DIR]   (default dist/)
#
# --payload: an existing build (OUT/clawfleet-agent from installers/pyinstaller/build.sh, same version);
# without it, build.sh runs first (PYTHON and VERSION are passed on). The architecture is this machine's:
# arm64 packages are built on an arm64 machine (CI: .github/workflows/agent-linux.yml).
#
# Layout: /opt/clawfleet-agent (the payload), /usr/bin/clawfleet-agent, the system unit (dedicated user
# clawfleet-agent, config /etc/clawfleet-agent/agent.json, data /var/lib/clawfleet-agent, logs
# /var/log/clawfleet-agent; enabled at install, does nothing until enrolled), the self-update path unit,
# a menu entry. Upgrades keep the config, data and the service's enabled/running state; purge removes
# all of it and the user.
set -euo pipefail
root="$(cd "$(dirname "$0")/../.." && pwd)"
payload=""; formats="deb,rpm,tar.gz"
while [ $# -gt 0 ]; do
  case "$1" in
    --payload) payload="$2"; shift 2 ;;
    --formats) formats="$2"; shift 2 ;;
    -*) echo "error: unknown option $1" >&2; exit 2 ;;
    *) break ;;
  esac
done
out="$(mkdir -p "${1:-$root/dist}" && cd "${1:-$root/dist}" && pwd)"
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
py="${PYTHON:-python3}"

if [ -z "$payload" ]; then
  "$root/installers/pyinstaller/build.sh" "$work/payload"
  payload="$work/payload/clawfleet-agent"
fi
payload="$(cd "$payload" && pwd)"
[ -x "$payload/clawfleet-agent" ] || { echo "error: $payload/clawfleet-agent missing (installers/pyinstaller/build.sh)" >&2; exit 1; }
version="$("$payload/clawfleet-agent" --version | awk '{print $2}')"
machine="$(uname -m)"
case "$machine" in
  x86_64|amd64) arch=x86_64; deb_arch=amd64; rpm_arch=x86_64 ;;
  aarch64|arm64) arch=arm64; deb_arch=arm64; rpm_arch=aarch64 ;;
  *) echo "error: no package architecture for $machine" >&2; exit 1 ;;
esac
# the newest glibc symbol version the payload needs: the packages' only dependency
glibc="$(find "$payload" -type f \( -name '*.so*' -o -perm -u+x \) -exec objdump -T {} + 2>/dev/null \
  | grep -o 'GLIBC_[0-9.]*' | sed 's/GLIBC_//' | sort -uV | tail -1)"
[ -n "$glibc" ] || { echo "error: cannot read the payload's glibc needs (objdump from binutils)" >&2; exit 1; }
echo "==> clawfleet-agent $version for $arch (needs glibc >= $glibc)"

# --- the file tree every package shares --------------------------------------------------------------
stage="$work/stage"
install -d "$stage/opt" "$stage/usr/bin" "$stage/usr/lib/systemd/system" "$stage/usr/share/applications" \
  "$stage/usr/share/doc/clawfleet-agent" "$stage/usr/share/man/man1"
cp -a "$payload" "$stage/opt/clawfleet-agent"
find "$stage/opt/clawfleet-agent" -type f -name '*.so*' -exec chmod 0644 {} +   # libraries are not programs
ln -s /opt/clawfleet-agent/clawfleet-agent "$stage/usr/bin/clawfleet-agent"
PYTHONPATH="$root" "$py" - "$stage" <<'PY'
import sys
from pathlib import Path

from agent_tray.platform.linux import SERVICE_NAME, autostart_entry, packaged_service_unit, update_units

stage = Path(sys.argv[1])
units = stage / "usr/lib/systemd/system"
(units / f"{SERVICE_NAME}.service").write_text(packaged_service_unit())
for name, text in update_units().items():
    (units / name).write_text(text)
menu = autostart_entry(["/usr/bin/clawfleet-agent", "run"]).replace("X-GNOME-Autostart-enabled=true\n", "")
(stage / "usr/share/applications/clawfleet-agent.desktop").write_text(menu)
PY
chmod 0644 "$stage"/usr/lib/systemd/system/* "$stage/usr/share/applications/clawfleet-agent.desktop"
cat > "$stage/usr/share/doc/clawfleet-agent/copyright" <<'TXT'
Format: https://www.debian.org/doc/packaging-manuals/copyright-format/1.0/
Upstream-Name: clawfleet
Source: https://github.com/clawfleet/clawfleet

Files: *
Copyright: 2025-2026 ClawFleet contributors
License: Apache-2.0
 On Debian systems the full text of the Apache License 2.0 is in
 /usr/share/common-licenses/Apache-2.0.
Comment: /opt/clawfleet-agent is a PyInstaller build: it bundles CPython (PSF-2.0) and the agent's
 Python dependencies (paho-mqtt EPL-2.0/EDL-1.0, psutil BSD-3-Clause, platformdirs MIT, typer MIT,
 json5 Apache-2.0, zstandard BSD-3-Clause, pystray LGPL-3.0, Pillow MIT-CMU, cryptography
 Apache-2.0/BSD-3-Clause, pydantic MIT) with the shared libraries they load; each one's licence
 file is in /opt/clawfleet-agent/_internal/*.dist-info.
TXT

# a short manual page: what the command does and where to read more
cat <<MAN | gzip -9n > "$stage/usr/share/man/man1/clawfleet-agent.1.gz"
.TH CLAWFLEET-AGENT 1 "" "clawfleet-agent $version" "User Commands"
.SH NAME
clawfleet-agent \\- report this machine and its OpenClaw gateway to a ClawFleet fleet
.SH SYNOPSIS
.B clawfleet-agent
.I command
.RI [ options ]
.SH DESCRIPTION
Samples CPU, memory, disk, network and the OpenClaw gateway's state, token usage and errors, and
publishes them over MQTT 5 to a ClawFleet fleet server.
.SH COMMANDS
.TP
.B enroll [\\-\\-system] [\\-]
write the agent config from an enrollment token (asked for, or read from stdin with \\-)
.TP
.B run [\\-\\-headless]
run the agent: a tray icon, or headless (the service)
.TP
.B status
show the running agent's state
.TP
.B install\\-service, uninstall\\-service, autostart on|off
start the agent at boot or login, or stop doing so
.PP
Run
.B clawfleet-agent COMMAND \\-\\-help
for every option.
.SH FILES
/etc/clawfleet-agent/agent.json (system service config), /var/lib/clawfleet-agent (its data),
/var/log/clawfleet-agent/agent.log (its log)
MAN

# maintainer scripts: one set of actions, spelled for dpkg and for rpm below
post_common='
if ! getent group clawfleet-agent >/dev/null; then groupadd --system clawfleet-agent; fi
if ! getent passwd clawfleet-agent >/dev/null; then
  useradd --system --gid clawfleet-agent --home-dir /var/lib/clawfleet-agent --no-create-home \
    --shell /usr/sbin/nologin --comment "ClawFleet agent" clawfleet-agent
fi
install -d -m 0750 -o root -g clawfleet-agent /etc/clawfleet-agent
install -d -m 0750 -o clawfleet-agent -g clawfleet-agent /var/lib/clawfleet-agent /var/log/clawfleet-agent
install -d -m 0700 -o root -g root /var/cache/clawfleet-agent
[ -f /etc/clawfleet-agent/agent.json ] && chgrp clawfleet-agent /etc/clawfleet-agent/agent.json && chmod 0640 /etc/clawfleet-agent/agent.json
'
purge_common='
rm -rf /etc/clawfleet-agent /var/lib/clawfleet-agent /var/log/clawfleet-agent /var/cache/clawfleet-agent \
  /etc/systemd/system/clawfleet-agent.service.d
if getent passwd clawfleet-agent >/dev/null; then userdel clawfleet-agent >/dev/null 2>&1 || true; fi
if getent group clawfleet-agent >/dev/null; then groupdel clawfleet-agent >/dev/null 2>&1 || true; fi
'
units="clawfleet-agent.service clawfleet-agent-update.path"

IFS=, read -r -a want <<< "$formats"
for fmt in "${want[@]}"; do
case "$fmt" in
# --- .tar.gz --------------------------------------------------------------------------------------
tar.gz)
  tgz="$out/clawfleet-agent-$version-linux-$arch.tar.gz"
  mkdir -p "$work/tar"
  cp -a "$payload" "$work/tar/clawfleet-agent"
  tar -C "$work/tar" --owner=0 --group=0 -czf "$tgz" clawfleet-agent
  echo "built $tgz ($(du -h "$tgz" | cut -f1))"
  ;;
# --- .deb -----------------------------------------------------------------------------------------
deb)
  command -v dpkg-deb >/dev/null || { echo "error: dpkg-deb not found (apt install dpkg)" >&2; exit 1; }
  deb_stage="$work/deb"
  cp -a "$stage" "$deb_stage"
  install -d "$deb_stage/DEBIAN"
  printf 'clawfleet-agent (%s) stable; urgency=medium\n\n  * Release %s.\n\n -- ClawFleet <clawfleet@clawfleet.dev>  %s\n' \
    "$version" "$version" "$(date -R -u -d @"${SOURCE_DATE_EPOCH:-$(date +%s)}")" \
    | gzip -9n > "$deb_stage/usr/share/doc/clawfleet-agent/changelog.gz"
  size_kb="$(du -sk --exclude=DEBIAN "$deb_stage" | cut -f1)"
  cat > "$deb_stage/DEBIAN/control" <<CTL
Package: clawfleet-agent
Version: $version
Architecture: $deb_arch
Maintainer: ClawFleet <clawfleet@clawfleet.dev>
Installed-Size: $size_kb
Depends: libc6 (>= $glibc), passwd
Recommends: libayatana-appindicator3-1 | libappindicator3-1
Section: admin
Priority: optional
Homepage: https://github.com/clawfleet/clawfleet
Description: ClawFleet agent: reports this machine and its OpenClaw gateway
 Samples CPU, memory, disk, network and the OpenClaw gateway's state, token
 usage and errors, and publishes them over MQTT 5 (TLS, or secure WebSockets
 through strict firewalls) to a ClawFleet fleet server. Runs headless as the
 clawfleet-agent systemd service once enrolled (sudo clawfleet-agent enroll
 --system), or as a tray icon on a desktop. Carries its own Python runtime.
CTL
  install -d "$deb_stage/usr/share/lintian/overrides"
  cat > "$deb_stage/usr/share/lintian/overrides/clawfleet-agent" <<'TXT'
# A third-party add-on package: FHS puts those in /opt (Debian policy's ban is for the archive).
clawfleet-agent: dir-or-file-in-opt *
# The payload is a PyInstaller build that carries its own Python and the libraries its Python
# packages load, so one package runs on every supported release; none of them is linked from outside.
clawfleet-agent: embedded-library *
clawfleet-agent: shared-library-lacks-prerequisites *
# PyInstaller's bootloader, built by PyInstaller's project, is not PIE.
clawfleet-agent: hardening-no-pie *
TXT
  cat > "$deb_stage/DEBIAN/postinst" <<SH
#!/bin/sh
set -e
if [ "\$1" = configure ]; then
$post_common
  for unit in $units; do
    deb-systemd-helper unmask "\$unit" >/dev/null || true
    if deb-systemd-helper --quiet was-enabled "\$unit"; then
      deb-systemd-helper enable "\$unit" >/dev/null || true    # keeps the admin's choice on upgrades
    else
      deb-systemd-helper update-state "\$unit" >/dev/null || true
      [ -z "\$2" ] && deb-systemd-helper enable "\$unit" >/dev/null || true  # new install: on (idle until enrolled)
      # 0.1.0's prerm disabled the service on every upgrade: an enrolled machine gets it back
      if [ -n "\$2" ] && dpkg --compare-versions "\$2" le 0.1.0 && [ -f /etc/clawfleet-agent/agent.json ]; then
        deb-systemd-helper enable "\$unit" >/dev/null || true
      fi
    fi
  done
  if [ -d /run/systemd/system ]; then
    systemctl --system daemon-reload >/dev/null || true
    deb-systemd-invoke restart clawfleet-agent.service >/dev/null || true   # upgrade: the new version runs now
    deb-systemd-invoke start clawfleet-agent-update.path >/dev/null || true
  fi
  if [ -z "\$2" ]; then
    echo "ClawFleet agent installed. Enroll this machine (asks for the token), and it starts:"
    echo "  sudo clawfleet-agent enroll --system && sudo systemctl restart clawfleet-agent"
  fi
fi
SH
  cat > "$deb_stage/DEBIAN/prerm" <<'SH'
#!/bin/sh
set -e
# only on removal: an upgrade keeps the service running (postinst restarts it on the new version)
if [ "$1" = remove ]; then
  if [ -d /run/systemd/system ]; then
    deb-systemd-invoke stop clawfleet-agent.service clawfleet-agent-update.path >/dev/null || true
  fi
  # agents started without systemd (containers) and trays of logged-in users
  pkill -TERM -f '^/opt/clawfleet-agent/clawfleet-agent run' >/dev/null 2>&1 || true
fi
SH
  cat > "$deb_stage/DEBIAN/postrm" <<SH
#!/bin/sh
set -e
if [ -d /run/systemd/system ]; then systemctl --system daemon-reload >/dev/null || true; fi
if [ "\$1" = remove ]; then
  for unit in $units; do deb-systemd-helper mask "\$unit" >/dev/null || true; done
fi
if [ "\$1" = purge ]; then
  for unit in $units; do
    deb-systemd-helper purge "\$unit" >/dev/null || true
    deb-systemd-helper unmask "\$unit" >/dev/null || true
  done
$purge_common
fi
SH
  chmod 0755 "$deb_stage/DEBIAN/postinst" "$deb_stage/DEBIAN/prerm" "$deb_stage/DEBIAN/postrm"
  deb="$out/clawfleet-agent_${version}_${deb_arch}.deb"
  dpkg-deb --root-owner-group -Zxz --build "$deb_stage" "$deb" >/dev/null
  echo "built $deb ($(du -h "$deb" | cut -f1), installed size $((size_kb / 1024)) MiB)"
  ;;
# --- .rpm -----------------------------------------------------------------------------------------
rpm)
  command -v rpmbuild >/dev/null || { echo "error: rpmbuild not found (Debian/Ubuntu: apt install rpm; Fedora: dnf install rpm-build)" >&2; exit 1; }
  rpm_top="$work/rpm"
  mkdir -p "$rpm_top"/{BUILD,RPMS,SPECS,SRPMS,BUILDROOT}
  rpm_version="${version//-/_}"
  cat > "$rpm_top/SPECS/clawfleet-agent.spec" <<SPEC
Name: clawfleet-agent
Version: $rpm_version
Release: 1
Summary: ClawFleet agent: reports this machine and its OpenClaw gateway to a fleet
License: Apache-2.0
URL: https://github.com/clawfleet/clawfleet
BuildArch: $rpm_arch
AutoReqProv: no
Requires: glibc >= $glibc
Requires(pre): shadow-utils
%global __os_install_post %{nil}
%global debug_package %{nil}
%global _build_id_links none

%description
Samples CPU, memory, disk, network and the OpenClaw gateway's state, token usage and errors, and
publishes them over MQTT 5 to a ClawFleet fleet server. Runs headless as the clawfleet-agent systemd
service once enrolled (sudo clawfleet-agent enroll --system). Carries its own Python runtime.

%install
cp -a "$stage/." %{buildroot}/

%post
$post_common
if [ -d /run/systemd/system ]; then
  systemctl daemon-reload >/dev/null 2>&1 || true
  if [ \$1 -eq 1 ]; then systemctl enable --now $units >/dev/null 2>&1 || true; fi
fi

%preun
if [ \$1 -eq 0 ] && [ -d /run/systemd/system ]; then
  systemctl disable --now $units >/dev/null 2>&1 || true
fi

%postun
if [ -d /run/systemd/system ]; then
  systemctl daemon-reload >/dev/null 2>&1 || true
  if [ \$1 -ge 1 ]; then systemctl try-restart clawfleet-agent.service >/dev/null 2>&1 || true; fi
fi
if [ \$1 -eq 0 ]; then
$purge_common
fi

%files
/opt/clawfleet-agent
/usr/bin/clawfleet-agent
/usr/lib/systemd/system/clawfleet-agent.service
/usr/lib/systemd/system/clawfleet-agent-update.path
/usr/lib/systemd/system/clawfleet-agent-update.service
/usr/share/applications/clawfleet-agent.desktop
/usr/share/man/man1/clawfleet-agent.1.gz
%doc /usr/share/doc/clawfleet-agent/copyright
SPEC
  rpmbuild --quiet -bb --define "_topdir $rpm_top" --define "_binary_payload w6.xzdio" \
    "$rpm_top/SPECS/clawfleet-agent.spec" >/dev/null
  rpm_file="$out/clawfleet-agent-$version-1.$rpm_arch.rpm"
  cp "$rpm_top/RPMS/$rpm_arch/clawfleet-agent-$rpm_version-1.$rpm_arch.rpm" "$rpm_file"
  echo "built $rpm_file ($(du -h "$rpm_file" | cut -f1))"
  ;;
*) echo "error: unknown format $fmt (deb, rpm, tar.gz)" >&2; exit 2 ;;
esac
done
