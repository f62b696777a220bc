"""Files the server hands out for other programs to open (CSV exports)."""
