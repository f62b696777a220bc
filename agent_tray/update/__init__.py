"""Self-update from the agent's own fleet: fetch the package the server offers, check its SHA-256 and
the Ed25519 signature made with the server's key (the public half came with the enrollment token),
install it the way this copy was installed, and go back to the running version when the new one does
not report within the time the server gave.

- :mod:`.state`    the update's progress, kept in ``<data dir>/update.json`` and reported in ``meta``
- :mod:`.layout`   how this copy was installed (one-folder tree, .deb, .rpm, pip) and where
- :mod:`.fetch`    manifest, download, checks
- :mod:`.apply`    the agent's side: the command from the server, up to the hand-over
- :mod:`.tree`     installs into a ``versions/<v>`` + ``current`` tree (install.sh's layout), the watchdog
- :mod:`.system`   root's side for the .deb/.rpm (``clawfleet-agent apply-update --system``)
"""
