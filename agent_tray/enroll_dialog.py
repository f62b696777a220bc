"""The tray's token dialog (Tk): paste an enrollment token, the key is checked with the broker, the
config is written. Runs as ``clawfleet-agent enroll --gui`` in its own process (exit code 0 =
enrolled, 1 = cancelled), so Tk has the main thread to itself on every OS.
"""

from __future__ import annotations

import threading
from pathlib import Path

from agent_tray.enroll import BrokerUnreachable, KeyRefused, enroll
from shared.enrollment import EnrollmentError


def ask_and_enroll(config_path: Path) -> bool:
    """Show the dialog until the machine is enrolled (True) or the user cancels (False).

    Raises:
        RuntimeError: no display / Tk not installed (the message says what to install).
    """
    try:
        import tkinter as tk
        from tkinter import messagebox, ttk
    except ImportError:
        raise RuntimeError("the token dialog needs Tk (Debian/Ubuntu: sudo apt install python3-tk); "
                           "or run: clawfleet-agent enroll --token-file FILE") from None
    try:
        root = tk.Tk()
    except tk.TclError as exc:
        raise RuntimeError(f"cannot open the token dialog: {exc}") from None
    root.title("ClawFleet: add this machine")
    root.resizable(False, False)
    frame = ttk.Frame(root, padding=16)
    frame.grid()
    ttk.Label(frame, text="Paste the enrollment token from the fleet dashboard\n"
                          "(Devices → Add) or from 'clawfleet-server device add':").grid(columnspan=2, sticky="w")
    token = tk.StringVar()
    entry = ttk.Entry(frame, textvariable=token, width=56, show="•")
    entry.grid(row=1, columnspan=2, pady=8, sticky="we")
    message = tk.StringVar()
    ttk.Label(frame, textvariable=message, foreground="#b00020", wraplength=420).grid(row=2, columnspan=2, sticky="w")
    result = {"ok": False}
    button = ttk.Button(frame, text="Enroll")
    button.grid(row=3, column=1, sticky="e")
    ttk.Button(frame, text="Cancel", command=root.destroy).grid(row=3, column=0, sticky="w")

    def finish(outcome: Exception | None, text: str, offline: bool) -> None:
        button.state(["!disabled"])
        if outcome is None:
            result["ok"] = True
            messagebox.showinfo("ClawFleet", f"This machine is enrolled. Config: {config_path}", parent=root)
            root.destroy()
        elif isinstance(outcome, BrokerUnreachable) and not offline:
            if messagebox.askyesno("ClawFleet", f"{outcome}\n\nSave the token anyway? The agent keeps trying to "
                                                "connect and reports once the broker answers.", parent=root):
                submit(offline=True)
            else:
                message.set(str(outcome))
        else:
            message.set(str(outcome))

    def submit(offline: bool = False) -> None:
        text = token.get().strip()
        if not text:
            message.set("paste the token first")
            return
        button.state(["disabled"])
        message.set("checking the key with the broker…" if not offline else "")

        def work() -> None:
            err: Exception | None = None
            try:
                enroll(text, config_path, offline=offline)
            except (EnrollmentError, KeyRefused, BrokerUnreachable, ValueError, OSError) as exc:
                err = exc
            root.after(0, finish, err, text, offline)

        threading.Thread(target=work, daemon=True).start()

    button.configure(command=submit)
    root.bind("<Return>", lambda _e: submit())
    entry.focus_set()
    root.mainloop()
    return result["ok"]
