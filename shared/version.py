"""Version numbers of the product and of the wire protocol."""

__version__ = "0.1.0"
"""Version of the ClawFleet distribution (agent and server ship together)."""

PROTOCOL_VERSION = 1
"""Value of the ``"v"`` field in every payload and the ``v1`` in every topic."""
