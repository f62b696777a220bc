#!/usr/bin/env bash
# Build the macOS agent: dist/ClawFleet Agent.app (PyInstaller) and dist/clawfleet-agent-<version>.pkg
# (pkgbuild + productbuild; installs the app into /Applications and links /usr/local/bin/clawfleet-agent).
# Runs on macOS only (pkgbuild, productbuild); used by .github/workflows/agent-macos.yml.
#   installers/macos/build-pkg.sh
set -euo pipefail
root="$(cd "$(dirname "$0")/../.." && pwd)"
[ "$(uname -s)" = "Darwin" ] || { echo "error: build-pkg.sh needs macOS (pkgbuild/productbuild)" >&2; exit 1; }
cd "$root"
py="${PYTHON:-python3}"
version="$("$py" -c 'from shared.version import __version__; print(__version__)')"
"$py" -m pip install -q . pyinstaller
"$py" -m PyInstaller --noconfirm --distpath dist --workpath build/pyinstaller installers/pyinstaller/clawfleet-agent.spec
app="dist/ClawFleet Agent.app"
[ -d "$app" ] || { echo "error: PyInstaller did not make $app" >&2; exit 1; }
"$app/Contents/MacOS/clawfleet-agent" --version

work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
mkdir -p "$work/root/Applications" "$work/scripts"
cp -R "$app" "$work/root/Applications/"
cat > "$work/scripts/postinstall" <<'SH'
#!/bin/sh
mkdir -p /usr/local/bin
ln -sf "/Applications/ClawFleet Agent.app/Contents/MacOS/clawfleet-agent" /usr/local/bin/clawfleet-agent
exit 0
SH
chmod 0755 "$work/scripts/postinstall"
pkgbuild --root "$work/root" --scripts "$work/scripts" --identifier ai.clawfleet.agent --version "$version" \
  --install-location / "$work/clawfleet-agent-component.pkg"
productbuild --package "$work/clawfleet-agent-component.pkg" "dist/clawfleet-agent-$version.pkg"
echo "built dist/clawfleet-agent-$version.pkg ($(du -h "dist/clawfleet-agent-$version.pkg" | cut -f1))"
