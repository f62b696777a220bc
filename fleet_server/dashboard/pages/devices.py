"""Devices page (``/devices``): the device registry, and the admin actions on it.

Everyone logged in sees the table (name, id, tags, status, key hint, created, last seen, reject
counts); admins also get "Add device" and, per row, rename, rotate key, revoke and delete. The
API key and enrollment token of a new or rotated device are shown once, in a dialog that is
deleted when closed (only the key's hash is stored). Actions go through
:class:`fleet_server.devices.actions.DeviceActions` (audit, broker, cache) in a worker thread.
"""

from __future__ import annotations

import base64
import io
import logging
from collections.abc import Callable

import qrcode
from nicegui import run, ui
from qrcode.exceptions import DataOverflowError

from broker.dynsec import DynSecConnectionError, DynSecError
from fleet_server.auth.accounts import admin_only, current_user
from fleet_server.dashboard.parts.format import STATUS_COLORS, ago_h, count_h, date_time_h, status_words
from fleet_server.dashboard.parts.live import redraw_on_change
from fleet_server.dashboard.parts.timezone import follow_browser_zone, initial_zone, zone_note
from fleet_server.devices.actions import DeviceActions, RevokeResult
from fleet_server.devices.registry import DeviceError, NewDevice
from fleet_server.releases.routes import one_liners
from fleet_server.state import DeviceView, FleetState
from shared.enrollment import decode_token
from shared.topics import suggest_device_id

log = logging.getLogger("clawfleet.dashboard")

COLUMNS = ("Status", "Name", "ID", "Tags", "Key", "Created", "Last seen", "Rejects")
REDRAW_S = 5.0
"""The registry table is redrawn at most this often for changes made elsewhere (ingest, the CLI),
seconds; the whole list is rebuilt, so not every second while a fleet reports."""


def qr_data_uri(text: str) -> str | None:
    """A PNG QR code of ``text`` as a ``data:`` URI (kept in memory, never written to disk), or
    None when the text is too long for a QR code (over ~2.9 kB)."""
    qr = qrcode.QRCode(error_correction=qrcode.constants.ERROR_CORRECT_L, box_size=4, border=2)
    try:
        qr.add_data(text)
        qr.make(fit=True)
    except (DataOverflowError, ValueError):
        return None
    buf = io.BytesIO()
    qr.make_image().save(buf, format="PNG")
    return "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode()


AGENT_COMMANDS = ("clawfleet-agent enroll            # paste the token when it asks\n"
                  "clawfleet-agent run               # tray icon\n"
                  "clawfleet-agent install-service   # or headless, as a service")
"""What to run on the device. The token is pasted at the prompt, so it stays out of ``ps`` and the
shell history (``clawfleet-agent enroll -`` reads it from stdin, ``--token-file`` from a file)."""


def status_badge(d: DeviceView) -> ui.badge:
    """Status pill: ``revoked`` for a revoked device, else its status in plain words
    (:func:`fleet_server.dashboard.parts.format.status_words`); the recorded reason as tooltip."""
    status = d.display_status
    badge = ui.badge(status_words(status, None)[0], color=STATUS_COLORS.get(status, "grey")).classes(
        "text-sm px-2").props(f'data-testid="status-{status}"').mark(f"status-{status}")
    badge.tooltip(d.status_reason or status)
    return badge


def _actor() -> str | None:
    user = current_user()
    return user.username if user is not None and user.is_admin else None


async def _call(what: str, fn: Callable[..., object], *args: object) -> object | None:
    """Run a blocking device action in a worker thread; notify and return None on failure."""
    try:
        return await run.io_bound(fn, *args)
    except DeviceError as exc:
        ui.notify(str(exc), type="negative")
    except (DynSecError, DynSecConnectionError) as exc:
        log.warning("%s failed: %s", what, exc)
        ui.notify(f"{what} failed: the broker said: {exc}", type="negative", multi_line=True)
    return None


def _copy_row(label: str, text: str, marker: str) -> None:
    with ui.row().classes("w-full items-start no-wrap gap-2"):
        with ui.column().classes("gap-0 grow min-w-0"):
            ui.label(label).classes("text-xs uppercase text-gray-500")
            ui.label(text).classes("font-mono text-sm break-all select-all").mark(marker)
        ui.button(icon="content_copy", on_click=lambda: (ui.clipboard.write(text), ui.notify(f"{label} copied"))
                  ).props("flat round dense").tooltip(f"copy the {label.lower()}")


def show_secret(host: ui.element, title: str, new: NewDevice) -> ui.dialog:
    """The once-only dialog with a device's API key, enrollment token (text and QR code) and the agent
    commands. Persistent (no accidental dismiss); "Done" deletes it, and with it the secrets."""
    with host, ui.dialog().props("persistent") as dialog, ui.card().classes("w-[46rem] max-w-full gap-3"):
        ui.label(title).classes("text-lg font-semibold")
        ui.label("Copy these now: they are shown once. The server stores only a hash of the key; "
                 "closing this dialog forgets them.").classes("text-sm text-orange-800")
        url = decode_token(new.token).url
        if url.startswith("mqtt://"):
            ui.label(f"This token points at {url} (no TLS): only this machine, or one with an SSH tunnel to it, "
                     "can use it. For devices elsewhere run 'clawfleet-server tls init --host NAME', restart the "
                     "server and rotate the key.").classes("text-xs text-gray-600").mark("loopback-note")
        _copy_row("Device ID", new.device.id, "new-device-id")
        _copy_row("API key", new.api_key, "api-key")
        _copy_row("Enrollment token", new.token, "enrollment-token")
        fleet_url = decode_token(new.token).fleet_url
        if fleet_url:  # releases: the one-line installs from this server
            lines = one_liners(fleet_url)
            ui.label("Install the agent with one line (it asks for the token, so it stays out of the shell "
                     "history; running it again upgrades):").classes("text-sm")
            _copy_row("Linux, as a service", lines["linux"], "install-linux")
            _copy_row("macOS or Linux, for this user", lines["macos"], "install-macos")
            _copy_row("Windows, admin PowerShell", lines["windows"], "install-windows")
        with ui.row().classes("w-full items-start gap-4 no-wrap"):
            uri = qr_data_uri(new.token)
            if uri:
                ui.image(uri).classes("w-56 shrink-0").props('alt="enrollment token QR code"').mark("token-qr")
            else:
                ui.label("The token is too long for a QR code; copy the text.").classes("text-sm text-gray-600")
            with ui.column().classes("gap-1 min-w-0"):
                ui.label("Or, with the agent installed, run:" if fleet_url else "On the device run:").classes(
                    "text-sm")
                ui.label(AGENT_COMMANDS).classes(
                    "font-mono text-xs whitespace-pre-wrap break-all bg-gray-100 p-2 rounded").mark("agent-commands")
                ui.button("Copy commands", icon="content_copy",
                          on_click=lambda: (ui.clipboard.write(AGENT_COMMANDS),
                                            ui.notify("commands copied"))).props("flat dense")
        with ui.row().classes("w-full justify-end"):
            ui.button("Done, I saved it", on_click=dialog.delete).mark("secret-done")
    dialog.open()
    return dialog


async def _confirm(host: ui.element, title: str, text: str, action: str, *, color: str = "negative",
                   type_to_confirm: str | None = None, keep_data: bool = False) -> dict | None:
    """A confirm dialog; returns ``{"keep_data": bool}`` when confirmed, None when cancelled.

    With ``type_to_confirm`` the action button is enabled only once that text is typed; with
    ``keep_data`` a "keep its data" checkbox is shown.
    """
    with host, ui.dialog() as dialog, ui.card().classes("w-[32rem] max-w-full"):
        ui.label(title).classes("text-lg font-semibold")
        ui.label(text).classes("text-sm")
        keep = ui.checkbox("Keep its data (samples, usage, logs) for reports").mark("keep-data") if keep_data else None
        typed = None
        if type_to_confirm:
            typed = ui.input(f"Type {type_to_confirm} to confirm").classes("w-full").mark("confirm-id")
        with ui.row().classes("w-full justify-end"):
            ui.button("Cancel", on_click=lambda: dialog.submit(None)).props("flat")
            go = ui.button(action, color=color,
                           on_click=lambda: dialog.submit({"keep_data": bool(keep and keep.value)})).mark(
                "confirm-action")
        if typed is not None:
            go.disable()
            typed.on_value_change(lambda e: go.set_enabled((e.value or "").strip() == type_to_confirm))
    result = await dialog
    dialog.delete()
    return result


def render_devices(state: FleetState, actions: DeviceActions | None) -> None:
    """Build the devices page into the current page. ``actions`` None: read-only (no broker)."""
    user = current_user()
    admin = user is not None and user.is_admin and actions is not None
    host = ui.element("div")  # dialogs live here, outside the table that is redrawn
    viewer = {"zone": initial_zone()}  # "Created" is a date in the viewer's zone
    with ui.row().classes("items-center w-full px-4 pt-4"):
        ui.label("Devices").classes("text-2xl font-semibold")
        count = ui.badge("", color="primary")
        ui.space()
        if admin:
            ui.button("Add device", icon="add", on_click=lambda: add_dialog()).mark("add-device")
    if user is not None and user.is_admin and actions is None:
        ui.label("Device actions need the running server's broker connection.").classes("px-4 text-gray-500")

    @admin_only
    async def add_dialog() -> None:
        with host, ui.dialog() as dialog, ui.card().classes("w-[28rem] max-w-full"):
            ui.label("Add a device").classes("text-lg font-semibold")
            name = ui.input("Name", placeholder="e.g. Build box").classes("w-full").mark("add-name")
            tags = ui.input("Tags (optional, comma-separated)").classes("w-full").mark("add-tags")
            preview = ui.label("").classes("text-xs text-gray-500")
            name.on_value_change(lambda e: preview.set_text(_id_preview(e.value)))
            error = ui.label("").classes("text-sm text-red-700").mark("add-error")
            with ui.row().classes("w-full justify-end"):
                ui.button("Cancel", on_click=lambda: dialog.submit(None)).props("flat")
                add = ui.button("Add").mark("add-submit")

        async def submit() -> None:
            """Add the device; a refused name or tags (or a broker error) is shown in the dialog, which
            stays open with what was typed."""
            actor = _actor()
            if actor is None or actions is None:
                dialog.submit(None)
                return
            add.disable()
            try:
                dialog.submit(await run.io_bound(actions.add, actor, name.value or "", tags.value or ""))
            except DeviceError as exc:
                error.set_text(str(exc))
            except (DynSecError, DynSecConnectionError) as exc:
                log.warning("adding the device failed: %s", exc)
                error.set_text(f"adding the device failed: the broker said: {exc}")
            finally:
                add.enable()

        add.on_click(submit)
        new = await dialog
        dialog.delete()
        if isinstance(new, NewDevice):
            table.refresh()
            show_secret(host, f"Device {new.device.name} added", new)

    @admin_only
    async def rename_dialog(d: DeviceView) -> None:
        with host, ui.dialog() as dialog, ui.card().classes("w-[28rem] max-w-full"):
            ui.label(f"Rename {d.device_id}").classes("text-lg font-semibold")
            name = ui.input("Name", value=d.name).classes("w-full").mark("rename-name")
            tags = ui.input("Tags (comma-separated)", value=d.tags).classes("w-full").mark("rename-tags")
            ui.label("The device id, key and data stay the same.").classes("text-xs text-gray-500")
            with ui.row().classes("w-full justify-end"):
                ui.button("Cancel", on_click=lambda: dialog.submit(None)).props("flat")
                ui.button("Save", on_click=lambda: dialog.submit((name.value or "", tags.value or ""))).mark(
                    "rename-submit")
        result = await dialog
        dialog.delete()
        actor = _actor()
        if result is None or actor is None or actions is None:
            return
        if await _call("renaming", actions.rename, actor, d.device_id, result[0], result[1]) is not None:
            ui.notify(f"{d.device_id} renamed", type="positive")
            table.refresh()

    @admin_only
    async def rotate(d: DeviceView) -> None:
        text = (f"{d.name} ({d.device_id}) gets a new API key. Its agent is disconnected at once and stays "
                "offline until it is enrolled with the new token." + (" This re-enables the revoked device."
                                                                       if d.revoked_ms else ""))
        if await _confirm(host, "Rotate the API key?", text, "Rotate key", color="primary") is None:
            return
        actor = _actor()
        if actor is None or actions is None:
            return
        new = await _call("rotating the key", actions.rotate_key, actor, d.device_id)
        if isinstance(new, NewDevice):
            table.refresh()
            show_secret(host, f"New key for {new.device.name}", new)

    @admin_only
    async def revoke(d: DeviceView) -> None:
        text = (f"{d.name} ({d.device_id}) is disconnected at once and can no longer log in. Its data stays. "
                "To let it back in later, rotate its key.")
        if await _confirm(host, "Revoke this device?", text, "Revoke") is None:
            return
        actor = _actor()
        if actor is None or actions is None:
            return
        res = await _call("revoking", actions.revoke, actor, d.device_id)
        if isinstance(res, RevokeResult):
            if res.broker_confirmed:
                ui.notify(f"{d.device_id} is revoked: its session was closed and its key is refused", type="warning")
            else:
                ui.notify(f"{d.device_id} is revoked in the fleet database, but the broker did not confirm "
                          f"({res.broker_error}). The broker applies it once it answers again; the server also "
                          "disables the device there at its next start.", type="warning", multi_line=True,
                          timeout=0, close_button=True)
            table.refresh()

    @admin_only
    async def delete(d: DeviceView) -> None:
        text = (f"{d.name} ({d.device_id}) is disconnected, its key and broker account are removed and its "
                "retained state is cleared on the broker. Its history is deleted too unless you keep it.")
        answer = await _confirm(host, "Delete this device?", text, "Delete", type_to_confirm=d.device_id,
                                keep_data=True)
        actor = _actor()
        if answer is None or actor is None or actions is None:
            return
        res = await _call("deleting", actions.delete, actor, d.device_id, answer["keep_data"])
        if res is not None:
            ui.notify(f"{d.device_id} deleted" + (" (data kept)" if answer["keep_data"] else ""), type="warning")
            table.refresh()

    def row(d: DeviceView) -> None:
        with ui.row().classes("items-center gap-1 no-wrap"):
            status_badge(d)
            reason = status_words(d.display_status, d.status_reason)[1]
            if reason and d.status != "online":
                ui.label(reason).classes("text-xs text-gray-500").mark("status-reason")
        ui.link(d.name, f"/device/{d.device_id}").classes("font-medium")
        ui.label(d.device_id).classes("font-mono text-sm")
        with ui.row().classes("gap-1"):
            for tag in filter(None, d.tags.split(",")):
                ui.badge(tag, color="blue-grey-2", text_color="black").props("outline")
        ui.label(f"…{d.key_hint}" if d.key_hint else "–").classes("font-mono text-sm")
        ui.label(date_time_h(d.created_ms, viewer["zone"].tz, "%Y-%m-%d") if d.created_ms else "–").tooltip(
            zone_note(viewer["zone"]))
        ui.label(ago_h(d.last_seen_ms))
        total = sum(d.rejects.values())
        lbl = ui.label(str(total)).classes("text-red-700" if total else "text-gray-500").mark(f"rejects-{d.device_id}")
        if total:
            lbl.tooltip(", ".join(f"{k}: {v}" for k, v in sorted(d.rejects.items())))
        if admin:
            with ui.row().classes("gap-0 no-wrap"):
                ui.button(icon="edit", on_click=lambda d=d: rename_dialog(d)).props("flat round dense").tooltip(
                    "rename / tags").mark(f"rename-{d.device_id}")
                ui.button(icon="key", on_click=lambda d=d: rotate(d)).props("flat round dense").tooltip(
                    "rotate key" + (" (re-enables)" if d.revoked_ms else "")).mark(f"rotate-{d.device_id}")
                b = ui.button(icon="block", on_click=lambda d=d: revoke(d)).props("flat round dense").tooltip(
                    "revoke").mark(f"revoke-{d.device_id}")
                if d.revoked_ms:
                    b.disable()
                ui.button(icon="delete", color="negative", on_click=lambda d=d: delete(d)).props(
                    "flat round dense").tooltip("delete").mark(f"delete-{d.device_id}")

    @ui.refreshable
    def table() -> None:
        devices = state.snapshot()
        count.set_text(count_h(len(devices), "device"))
        if not devices:
            ui.label("No devices yet." + (" Add one with the button above." if admin else "")).classes(
                "px-4 text-gray-500")
            return
        cols = "auto 2fr 2fr 2fr auto auto auto auto" + (" auto" if admin else "")
        with ui.element("div").classes("w-full overflow-x-auto px-4").mark("devices-scroll"), ui.grid(
                columns=cols).classes("w-full min-w-[56rem] items-center gap-x-4 gap-y-2"):
            for col in COLUMNS + (("Actions",) if admin else ()):
                ui.label(col).classes("text-xs uppercase text-gray-500")
            for d in devices:
                row(d)

    table()
    redraw_on_change(state, table, check_s=REDRAW_S, full_every=1)  # actions on this page redraw at once
    follow_browser_zone(viewer, table.refresh)


def _id_preview(name: str | None) -> str:
    try:
        return f"device id: {suggest_device_id(name or '')}" if (name or "").strip() else ""
    except ValueError:
        return ""
