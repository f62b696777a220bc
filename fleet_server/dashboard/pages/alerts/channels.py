"""The Alerts page's channels tab: add an Apprise URL (shown once as typed, masked afterwards),
send a test that shows the real error, quiet hours, on/off, remove; and the alert settings."""

from __future__ import annotations

from nicegui import run, ui

from fleet_server.alerts.channels import ChannelError, add_channel, remove_channel, update_channel
from fleet_server.alerts.dispatch import send_test
from fleet_server.alerts.rules import RuleError
from fleet_server.alerts.settings import DEFAULT_URL, get_setting, set_setting
from fleet_server.alerts.views import channel_rows
from fleet_server.auth.accounts import admin_only, current_user, is_admin
from fleet_server.jobs.alerts import AlertJobs


def _actor() -> str:
    user = current_user()
    return user.username if user else "?"


def render_channels(alerts: AlertJobs | None) -> None:
    """Channels and settings. Without the server's alert jobs (``alerts`` None) nothing can be added."""
    ui.markdown("A channel is an [Apprise URL](https://github.com/caronc/apprise/wiki): `mailto://`, `slack://`, "
                "`discord://`, `tgram://`, `ntfy://`, `gotify://`, `matrix://`, `json://` (webhook)… The URL is "
                "stored encrypted and shown masked after it is added.").classes("text-sm")
    if is_admin() and alerts is not None:
        with ui.card().classes("w-full p-3 gap-2"):
            with ui.row().classes("w-full gap-2 items-end"):
                name = ui.input("Name (e.g. ops-slack)").classes("w-48").mark("channel-name")
                url = ui.input("Apprise URL", password=True, password_toggle_button=True).classes("grow min-w-64").mark(
                    "channel-url")
            with ui.row().classes("w-full gap-2 items-end"):
                q_start = ui.input("Quiet from (HH:MM)").classes("w-36")
                q_end = ui.input("Quiet until (HH:MM)").classes("w-36")
                q_zone = ui.input("Time zone", value="UTC").classes("w-44")
                ui.button("Add and send a test", on_click=lambda: add()).mark("channel-add")
            ui.label("Quiet hours: warnings wait until they end (not dropped); critical alerts still go out.").classes(
                "text-xs text-gray-500")

        @admin_only
        async def add() -> None:
            try:
                row = add_channel(alerts.data_dir, name.value or "", url.value or "", _actor(),
                                  quiet_start=(q_start.value or "").strip(), quiet_end=(q_end.value or "").strip(),
                                  quiet_zone=(q_zone.value or "UTC").strip())
            except (ChannelError, RuleError) as exc:
                ui.notify(str(exc), type="negative", multi_line=True)
                return
            name.value, url.value = "", ""
            listing.refresh()
            await test(row.id)

    results: dict[int, str] = {}

    @ui.refreshable
    def listing() -> None:
        rows = channel_rows()
        if not rows:
            ui.label("No channels yet: alerts have nowhere to go.").classes("text-amber-800").mark("no-channels")
        for r in rows:
            with ui.card().classes("w-full p-3 gap-1").mark("channel"):
                with ui.row().classes("items-center gap-2 w-full"):
                    ui.switch(value=r["enabled"], on_change=lambda e, i=r["id"]: toggle(i, e.value)).props("dense")
                    ui.label(r["name"]).classes("font-medium")
                    ui.label(r["service"]).classes("text-xs text-gray-500")
                    ui.space()
                    ui.button("Send test", on_click=lambda _e, i=r["id"]: test(i)).props("flat dense").mark(
                        "channel-test")
                    ui.button(icon="delete", on_click=lambda _e, i=r["id"]: remove(i)).props(
                        "flat dense round color=negative")
                ui.label(r["url_masked"]).classes("font-mono text-xs break-all")
                ui.label(f"quiet hours: {r['quiet']} · last message: {r['last']}").classes("text-xs text-gray-500")
                if r["id"] in results:
                    ok = results[r["id"]] == ""
                    ui.label("test message sent" if ok else f"test failed: {results[r['id']]}").classes(
                        "text-sm " + ("text-green-700" if ok else "text-red-700")).mark("channel-test-result")

    @admin_only
    async def test(channel_id: int) -> None:
        if alerts is None:
            ui.notify("sending needs the running server", type="warning")
            return
        ok, error = await run.io_bound(send_test, alerts.data_dir, channel_id, _actor())
        results[channel_id] = "" if ok else (error or "failed")
        listing.refresh()

    @admin_only
    def toggle(channel_id: int, on: bool) -> None:
        update_channel(channel_id, _actor(), enabled=on)

    @admin_only
    def remove(channel_id: int) -> None:
        remove_channel(channel_id, _actor())
        listing.refresh()

    listing()
    render_settings()


def render_settings() -> None:
    """The dashboard address messages link to, and the time zone of times in messages."""
    ui.label("Settings").classes("text-lg font-medium pt-2")
    with ui.row().classes("w-full gap-2 items-end"):
        url = ui.input("Dashboard address in messages", value=get_setting("dashboard_url") or DEFAULT_URL).classes(
            "grow min-w-64")
        zone = ui.input("Time zone of messages", value=get_setting("zone") or "UTC").classes("w-48")
        ui.button("Save", on_click=lambda: save())

    @admin_only
    def save() -> None:
        try:
            set_setting("dashboard_url", url.value or "", _actor())
            set_setting("zone", zone.value or "UTC", _actor())
        except RuleError as exc:
            ui.notify(str(exc), type="negative")
            return
        ui.notify("settings saved (the server uses them within 30 s)", type="positive")
