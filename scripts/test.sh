#!/usr/bin/env bash
# Set up and run the test suite (unit, integration against a real Mosquitto, browser tests).
# Extra arguments go to pytest.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/ensure-system-packages.sh test
scripts/ensure-venv.sh test
exec .venv/bin/python -m pytest "$@"
