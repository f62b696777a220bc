#!/usr/bin/env bash
# Build the macOS agent: OUT/ClawFleet Agent.app (PyInstaller; opening it starts the tray, which asks for the
# token when this Mac is not enrolled), OUT/clawfleet-agent-<version>-macos-<arch>.pkg (installs the app into
# /Applications, not relocatable, and links /usr/local/bin/clawfleet-agent) and
# OUT/clawfleet-agent-<version>-macos-<arch>.tar.gz (the one-folder build, for install.sh's user installs).
# Runs on macOS only (pkgbuild, productbuild); .github/workflows/agent-macos.yml runs it on an Intel and an
# Apple-silicon runner: one package per architecture (see docs/install.md for why not universal2).
#   installers/macos/build-pkg.sh [OUT_DIR]      (default dist/)
# Signing (all optional; without them the build says UNSIGNED and Gatekeeper will ask the user):
#   MACOS_APP_IDENTITY        "Developer ID Application: …" (codesign, hardened runtime)
#   MACOS_INSTALLER_IDENTITY  "Developer ID Installer: …"   (productbuild --sign)
# Notarization is a separate step in the workflow (xcrun notarytool, then stapler).
set -euo pipefail
root="$(cd "$(dirname "$0")/../.." && pwd)"
[ "$(uname -s)" = "Darwin" ] || { echo "error: build-pkg.sh needs macOS (pkgbuild/productbuild)" >&2; exit 1; }
out="$(mkdir -p "${1:-$root/dist}" && cd "${1:-$root/dist}" && pwd)"
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
"$root/installers/pyinstaller/build.sh" "$work/build"
app="$work/build/ClawFleet Agent.app"
[ -d "$app" ] || { echo "error: PyInstaller did not make ClawFleet Agent.app" >&2; exit 1; }
version="$("$app/Contents/MacOS/clawfleet-agent" --version | awk '{print $2}')"
case "$(uname -m)" in arm64) arch=arm64 ;; *) arch=x86_64 ;; esac

if [ -n "${MACOS_APP_IDENTITY:-}" ]; then
  echo "==> signing the app ($MACOS_APP_IDENTITY)"
  codesign --force --deep --timestamp --options runtime --sign "$MACOS_APP_IDENTITY" "$app"
  codesign --verify --deep --strict "$app"
else
  echo "warning: UNSIGNED app (set MACOS_APP_IDENTITY to sign it)"
fi

tar -C "$work/build" -czf "$out/clawfleet-agent-$version-macos-$arch.tar.gz" clawfleet-agent

mkdir -p "$work/root/Applications" "$work/scripts"
cp -R "$app" "$work/root/Applications/"
cat > "$work/scripts/preinstall" <<'SH'
#!/bin/sh
# an upgrade: stop the daemon and running trays first (the new files replace the old ones)
launchctl bootout system/ai.clawfleet.agent 2>/dev/null || true
pkill -f "ClawFleet Agent.app/Contents/MacOS/clawfleet-agent run" 2>/dev/null || true
exit 0
SH
cat > "$work/scripts/postinstall" <<'SH'
#!/bin/sh
mkdir -p /usr/local/bin
ln -sf "/Applications/ClawFleet Agent.app/Contents/MacOS/clawfleet-agent" /usr/local/bin/clawfleet-agent
# enrolled for the daemon: start it again on the new version
if [ -f "/Library/LaunchDaemons/ai.clawfleet.agent.plist" ]; then
  launchctl bootstrap system /Library/LaunchDaemons/ai.clawfleet.agent.plist 2>/dev/null || true
fi
exit 0
SH
chmod 0755 "$work/scripts/preinstall" "$work/scripts/postinstall"
# not relocatable: the installer must put the app into /Applications even when a copy exists elsewhere
pkgbuild --analyze --root "$work/root" "$work/component.plist"
plutil -replace 0.BundleIsRelocatable -bool NO "$work/component.plist"
pkgbuild --root "$work/root" --component-plist "$work/component.plist" --scripts "$work/scripts" \
  --identifier ai.clawfleet.agent --version "$version" --install-location / "$work/component.pkg"
pkg="$out/clawfleet-agent-$version-macos-$arch.pkg"
if [ -n "${MACOS_INSTALLER_IDENTITY:-}" ]; then
  productbuild --sign "$MACOS_INSTALLER_IDENTITY" --package "$work/component.pkg" "$pkg"
else
  echo "warning: UNSIGNED installer package (set MACOS_INSTALLER_IDENTITY to sign it)"
  productbuild --package "$work/component.pkg" "$pkg"
fi
rm -rf "$out/ClawFleet Agent.app"
cp -R "$app" "$out/"
echo "built $pkg ($(du -h "$pkg" | cut -f1)) and $out/clawfleet-agent-$version-macos-$arch.tar.gz"
