"""The Alerts page (``/alerts``): incidents (firing now, then history), the rules editor with its
7-day preview, notification channels, snoozes and maintenance windows, and the notification log."""
