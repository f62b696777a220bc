"""The headless agent as a real Windows service (pywin32's service framework).

``clawfleet-agent install-service --system`` registers the service "ClawFleet Agent" (automatic
start, restarted by the Service Control Manager after a failure) whose command line is
``clawfleet-agent.exe service-run --config <path>``; the SCM starts it at boot without anyone logged
on, and ``sc stop`` / the installer's upgrade and uninstall stop it cleanly (the agent publishes its
final status). Unlike a scheduled task it is not stopped after 72 hours, nor kept off on battery.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from agent_tray.platform import Written

SERVICE = "ClawFleetAgent"
"""The service's key name (``sc query ClawFleetAgent``)."""
DISPLAY_NAME = "ClawFleet Agent"
DESCRIPTION = "Reports this machine and its OpenClaw gateway to a ClawFleet fleet server."


def _framework():
    import servicemanager
    import win32event
    import win32service
    import win32serviceutil

    class AgentWindowsService(win32serviceutil.ServiceFramework):
        """SvcDoRun runs the same core as ``run --headless``; SvcStop stops it (final status, clean disconnect)."""

        _svc_name_ = SERVICE
        _svc_display_name_ = DISPLAY_NAME
        _svc_description_ = DESCRIPTION
        config_path: Path | None = None

        def __init__(self, args: list[str]) -> None:
            super().__init__(args)
            self._stopped = win32event.CreateEvent(None, 0, 0, None)
            self.agent = None

        def SvcStop(self) -> None:
            self.ReportServiceStatus(win32service.SERVICE_STOP_PENDING)
            if self.agent is not None:
                self.agent.stop()
            win32event.SetEvent(self._stopped)

        def SvcDoRun(self) -> None:
            from agent_tray.config import load_config
            from agent_tray.runner import setup_logging
            from agent_tray.service import AgentService

            setup_logging(False, service_log_dir())
            servicemanager.LogInfoMsg(f"{DISPLAY_NAME} starting")
            self.agent = AgentService(load_config(self.config_path or service_config_path()))
            self.ReportServiceStatus(win32service.SERVICE_RUNNING)
            self.agent.run()

    return AgentWindowsService, servicemanager


def service_config_path() -> Path:
    """``%ProgramData%\\ClawFleet\\agent.json``: the system config (``enroll --system``)."""
    import os

    return Path(os.environ.get("ProgramData", r"C:\ProgramData")) / "ClawFleet" / "agent.json"


def service_log_dir() -> Path:
    """``%ProgramData%\\ClawFleet\\Logs``."""
    return service_config_path().parent / "Logs"


def run_as_service(config: Path | None) -> None:
    """Entry point when the SCM starts ``clawfleet-agent.exe service-run``: hand the process to the dispatcher."""
    cls, servicemanager = _framework()
    cls.config_path = config
    servicemanager.Initialize()
    servicemanager.PrepareToHostSingle(cls)
    servicemanager.StartServiceCtrlDispatcher()


def install(command: list[str], enable: bool = True) -> list[Written]:
    """Register (or re-register) the service to run ``command`` (``clawfleet-agent.exe service-run --config …``),
    automatic start, restarted 5 s after a failure; start it with ``enable``.

    Raises:
        OSError: not Windows, not an administrator, or the SCM refused.
    """
    if sys.platform != "win32":
        raise OSError("a Windows service exists only on Windows")
    import win32service
    import win32serviceutil

    exe, args = command[0], subprocess.list2cmdline(command[1:])
    try:
        try:
            win32serviceutil.InstallService(None, SERVICE, DISPLAY_NAME, startType=win32service.SERVICE_AUTO_START,
                                            exeName=exe, exeArgs=args, description=DESCRIPTION)
        except Exception as exc:  # pywintypes.error 1073: it exists: point it at this command line
            if getattr(exc, "winerror", None) != 1073:
                raise
            win32serviceutil.ChangeServiceConfig(None, SERVICE, startType=win32service.SERVICE_AUTO_START,
                                                 exeName=exe, exeArgs=args, displayName=DISPLAY_NAME,
                                                 description=DESCRIPTION)
        subprocess.run(["sc", "failure", SERVICE, "reset=", "86400", "actions=", "restart/5000/restart/5000/"
                        "restart/60000"], capture_output=True, check=False)
        done = [Written(f"service {SERVICE} ({DISPLAY_NAME})", "Windows service")]
        if enable:
            try:
                win32serviceutil.RestartService(SERVICE)
            except Exception:  # not running yet
                win32serviceutil.StartService(SERVICE)
            done.append(Written(f"service {SERVICE}", "started"))
        return done
    except Exception as exc:
        raise OSError(f"the Service Control Manager refused: {exc} (run as administrator)") from None


def uninstall(enable: bool = True) -> list[Written]:
    """Stop (with ``enable``) and remove the service; nothing when it is not installed."""
    if sys.platform != "win32":
        raise OSError("a Windows service exists only on Windows")
    import win32serviceutil

    done: list[Written] = []
    try:
        if enable:
            try:
                win32serviceutil.StopService(SERVICE)
                win32serviceutil.WaitForServiceStatus(SERVICE, 1, 30)  # SERVICE_STOPPED
                done.append(Written(f"service {SERVICE}", "stopped"))
            except Exception:  # noqa: S110 - not running: nothing to stop
                pass
        win32serviceutil.RemoveService(SERVICE)
        done.append(Written(f"service {SERVICE}", "removed"))
    except Exception as exc:
        if getattr(exc, "winerror", None) != 1060:  # does not exist
            raise OSError(f"cannot remove the service: {exc}") from None
    return done
