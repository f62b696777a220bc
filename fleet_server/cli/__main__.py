"""``python -m fleet_server.cli``: the same as ``clawfleet-server``."""

from fleet_server.cli.main import main

main()
