"""ClawFleet wire protocol: topic names, payload schemas and protocol version.

Both the agent (``agent_tray``) and the server (``fleet_server``) import this package;
nothing here talks to a network or a database.
"""

from shared.version import PROTOCOL_VERSION, __version__

__all__ = ["PROTOCOL_VERSION", "__version__"]
