"""Background jobs of the server process: rollups, retention, stale-device detection."""
