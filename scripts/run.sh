#!/usr/bin/env bash
# Set up and run the main job: server + managed Mosquitto + dashboard + a local agent.
# Extra arguments go to `clawfleet-server run` (see --help).
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/ensure-system-packages.sh server
scripts/ensure-venv.sh
exec .venv/bin/clawfleet-server run "$@"
