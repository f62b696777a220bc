#!/usr/bin/env bash
# Compile the Windows installer with NSIS (works on Linux with Debian's 'nsis' package, and on Windows).
#   installers/windows/build-installer.sh PAYLOAD_DIR [OUT_FILE]
# PAYLOAD_DIR: the PyInstaller one-folder build containing clawfleet-agent.exe (made on Windows by
# .github/workflows/agent-windows.yml). Prints the installer's path and size.
set -euo pipefail
root="$(cd "$(dirname "$0")/../.." && pwd)"
payload="${1:?usage: build-installer.sh PAYLOAD_DIR [OUT_FILE]}"
command -v makensis >/dev/null || { echo "error: makensis not found (Debian/Ubuntu: apt install nsis; Windows: choco install nsis)" >&2; exit 1; }
[ -f "$payload/clawfleet-agent.exe" ] || { echo "error: $payload/clawfleet-agent.exe missing (build it with PyInstaller first)" >&2; exit 1; }
# the version without Python (Windows runners have 'python', not 'python3'; Git Bash has sed)
version="$(sed -n 's/^__version__ = "\(.*\)"$/\1/p' "$root/shared/version.py")"
[ -n "$version" ] || { echo "error: no __version__ in shared/version.py" >&2; exit 1; }
out="${2:-$root/dist/clawfleet-agent-$version-setup-win64.exe}"
mkdir -p "$(dirname "$out")"
out="$(cd "$(dirname "$out")" && pwd)/$(basename "$out")"  # makensis changes into the script's folder first
makensis -V2 -DVERSION="$version" -DPAYLOAD_DIR="$(cd "$payload" && pwd)" -DOUT_FILE="$out" \
  "$root/installers/windows/clawfleet-agent.nsi"
echo "built $out ($(du -h "$out" | cut -f1))"
