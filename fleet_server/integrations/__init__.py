"""Read-only MQTT accounts for other tools (Home Assistant, Node-RED, scripts)."""
