#!/usr/bin/env bash
# Build the agent's one-folder program with PyInstaller: OUT_DIR/clawfleet-agent/clawfleet-agent (Linux,
# macOS; on Windows also clawfleet-agent-tray.exe). It carries its own Python, so the packages made from
# it (installers/linux/build-packages.sh, installers/macos/build-pkg.sh, the Windows installer) do not
# depend on the host's Python.
#   installers/pyinstaller/build.sh OUT_DIR
# Environment:
#   PYTHON    the Python that PyInstaller bundles (default python3). Its glibc and OpenSSL are what the
#             build needs at run time: build on the oldest distribution you support (CI: ubuntu-22.04).
#   VERSION   stamp this version into the build instead of shared/version.py's (release builds, tests).
#   CLAWFLEET_BUILD_CACHE   where the build venv is kept (default ~/.cache/clawfleet-build).
set -euo pipefail
root="$(cd "$(dirname "$0")/../.." && pwd)"
out="${1:?usage: build.sh OUT_DIR}"
mkdir -p "$out" && out="$(cd "$out" && pwd)"
py="${PYTHON:-python3}"
cache="${CLAWFLEET_BUILD_CACHE:-$HOME/.cache/clawfleet-build}"
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT

# the sources (uncommitted changes included), with the version stamped in when asked
src="$work/src"
mkdir -p "$src"
(cd "$root" && tar --exclude=__pycache__ -cf - agent_tray shared pyproject.toml README.md installers/pyinstaller) \
  | tar -xf - -C "$src"
if [ -n "${VERSION:-}" ]; then
  "$py" - "$src" "$VERSION" <<'PY'
import re, sys
from pathlib import Path
src, version = Path(sys.argv[1]), sys.argv[2]
if not re.fullmatch(r"\d+\.\d+\.\d+([.+~-][0-9A-Za-z.+~-]+)?", version):
    sys.exit(f"error: VERSION {version!r} is not MAJOR.MINOR.PATCH[suffix]")
for path, pattern, repl in ((src / "shared/version.py", r'^__version__ = ".*"$', f'__version__ = "{version}"'),
                            (src / "pyproject.toml", r'^version = ".*"$', f'version = "{version}"')):
    text, n = re.subn(pattern, repl, path.read_text(), count=1, flags=re.M)
    if n != 1:
        sys.exit(f"error: no version line in {path}")
    path.write_text(text)
PY
fi
version="$(cd "$src" && "$py" -c 'from shared.version import __version__; print(__version__)')"

# build venv: the agent's dependencies only (no server packages), kept between builds
pytag="$("$py" -c 'import sys, platform; print(f"{sys.implementation.name}{sys.version_info[0]}{sys.version_info[1]}-{platform.machine()}")')"
venv="$cache/venv-$pytag"
if [ ! -x "$venv/bin/python" ] && [ ! -x "$venv/Scripts/python.exe" ]; then
  echo "==> build venv $venv"
  "$py" -m venv "$venv"
fi
vpy="$venv/bin/python"; [ -x "$vpy" ] || vpy="$venv/Scripts/python.exe"
echo "==> installing the agent $version and PyInstaller into the build venv"
"$vpy" -m pip install -q --disable-pip-version-check "pyinstaller>=6.10" "$src"  # the agent's dependencies
# (PyInstaller reads the agent's code from $src itself: the spec puts it first on the path)
echo "==> PyInstaller"
"$vpy" -m PyInstaller --noconfirm --log-level WARN --distpath "$out" --workpath "$work/build" \
  "$src/installers/pyinstaller/clawfleet-agent.spec"
exe="$out/clawfleet-agent/clawfleet-agent"; [ -x "$exe" ] || exe="$exe.exe"
got="$("$exe" --version)"
[ "$got" = "clawfleet-agent $version" ] || { echo "error: the build says '$got', expected $version" >&2; exit 1; }
echo "built $out/clawfleet-agent ($got, $(du -sh "$out/clawfleet-agent" | cut -f1))"
