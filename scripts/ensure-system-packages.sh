#!/usr/bin/env bash
# Install the OS packages ClawFleet needs when they are missing.
#   scripts/ensure-system-packages.sh server   -> mosquitto (the managed broker)
#   scripts/ensure-system-packages.sh test     -> mosquitto, chromium + chromedriver, xvfb, postgresql, nsis, dpkg,
#                                                 and what the agent's package builds and tray tests use (below)
set -euo pipefail
want="${1:-server}"

need=()
command -v mosquitto >/dev/null 2>&1 || [ -x /usr/sbin/mosquitto ] || need+=(mosquitto)
if [ "$want" = "test" ]; then
  command -v chromium >/dev/null 2>&1 || need+=(chromium)
  command -v chromedriver >/dev/null 2>&1 || need+=(chromium-driver)
  command -v Xvfb >/dev/null 2>&1 || need+=(xvfb)
  # store tests start their own PostgreSQL server (initdb in a temp dir)
  ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 || command -v initdb >/dev/null 2>&1 || need+=(postgresql)
  command -v makensis >/dev/null 2>&1 || need+=(nsis)        # tests/installers: Windows installer script
  command -v dpkg-deb >/dev/null 2>&1 || need+=(dpkg)         # tests/installers: the agent .deb
  command -v rpmbuild >/dev/null 2>&1 || need+=(rpm)          # tests/installers: the agent .rpm
  command -v lintian >/dev/null 2>&1 || need+=(lintian)       # tests/installers: the .deb's lintian check
  command -v objdump >/dev/null 2>&1 || need+=(binutils)      # build-packages.sh: the payload's glibc needs
  command -v curl >/dev/null 2>&1 || need+=(curl)             # tests/installers: curl … | sh
  /usr/bin/python3 -c 'import venv, ensurepip' >/dev/null 2>&1 || need+=(python3-venv)  # the build venv
  /usr/bin/python3 -c 'import tkinter' >/dev/null 2>&1 || need+=(python3-tk)   # the payload's token dialog
  # tests/tray: the GTK tray without a session bus (the distribution's GObject bindings and typelibs)
  dpkg -s python3-gi gir1.2-gtk-3.0 gir1.2-ayatanaappindicator3-0.1 >/dev/null 2>&1 \
    || need+=(python3-gi gir1.2-gtk-3.0 gir1.2-ayatanaappindicator3-0.1)
fi
[ ${#need[@]} -eq 0 ] && exit 0

echo "==> installing OS packages: ${need[*]}"
sudo=""
[ "$(id -u)" -ne 0 ] && sudo="sudo"
if command -v apt-get >/dev/null 2>&1; then
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
  # The Debian package may start its own mosquitto service on port 1883. ClawFleet runs its own
  # broker on another port (18830 by default), so the two never collide; we leave that service alone.
elif command -v brew >/dev/null 2>&1; then
  brew install mosquitto
  if [ "$want" = "test" ]; then
    echo "browser tests need chromium and chromedriver: brew install --cask chromium chromedriver"
  fi
elif command -v dnf >/dev/null 2>&1; then
  $sudo dnf install -y mosquitto
else
  echo "error: cannot install ${need[*]} automatically on this system." >&2
  echo "Install Mosquitto 2.x (https://mosquitto.org/download/) and run this again." >&2
  exit 1
fi
