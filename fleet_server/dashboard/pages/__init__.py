"""One module (or package) per dashboard page; :func:`fleet_server.dashboard.register_pages` adds them."""
