#!/usr/bin/env bash
# Create .venv (Python >= 3.10) and install ClawFleet into it, with extras given as $1:
#   scripts/ensure-venv.sh          -> server + agent (".[server]")
#   scripts/ensure-venv.sh test     -> server + agent + test tools (".[server,test]")
#   scripts/ensure-venv.sh agent    -> the agent only (".")
set -euo pipefail
cd "$(dirname "$0")/.."
case "${1:-server}" in
  agent) extras="" ;;
  server) extras="server" ;;
  test) extras="server,test" ;;
  *) extras="$1" ;;
esac
py="${PYTHON:-python3}"
"$py" -c 'import sys; sys.exit(0 if sys.version_info >= (3, 10) else 1)' || {
  echo "error: ClawFleet needs Python 3.10 or newer ($py is $("$py" --version 2>&1))" >&2; exit 1; }
if [ ! -x .venv/bin/python ]; then
  echo "==> creating .venv"
  "$py" -m venv .venv
fi
spec="."
[ -n "$extras" ] && spec=".[$extras]"
stamp=".venv/.installed-${extras:-base}"
if [ ! -f "$stamp" ] || [ pyproject.toml -nt "$stamp" ]; then
  echo "==> installing python packages ($spec)"
  .venv/bin/python -m pip install -q --disable-pip-version-check -U pip
  .venv/bin/python -m pip install -q --disable-pip-version-check -e "$spec"
  touch "$stamp"
fi
