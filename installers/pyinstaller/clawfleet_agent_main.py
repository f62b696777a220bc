"""PyInstaller entry point: the ``clawfleet-agent`` command (tray, headless, enroll, status, …)."""

from agent_tray.cli import main

if __name__ == "__main__":
    main()
