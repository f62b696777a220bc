"""Devices page and device page (NiceGUI user simulation) with a real broker and real SQLite."""

from __future__ import annotations

import time
from collections.abc import Iterator

import pytest
from mqtt_helpers import connect_probe
from nicegui import ui
from nicegui.testing import User
from nicegui.testing.user_simulation import user_simulation

from broker.mosquitto import ManagedMosquitto
from fleet_server.dashboard import register_pages
from fleet_server.dashboard.pages.devices import qr_data_uri
from fleet_server.devices.actions import DeviceActions, server_session
from fleet_server.devices.keys import hash_api_key
from fleet_server.state import FleetState
from fleet_server.state.registry import sync_registry
from fleet_server.store.models import AuditEvent, Device, RejectCount
from fleet_server.store.models import User as UserRow
from shared.enrollment import decode_token


@pytest.fixture
def actions(db, dynsec, managed_broker: ManagedMosquitto) -> Iterator[DeviceActions]:
    """DeviceActions on the module's broker, a fresh database and cache, a server-account session."""
    from fleet_server.endpoints.broker_link import AgentEndpoint

    state = FleetState()
    state.load_from_db()
    admin = managed_broker.admin
    with server_session("127.0.0.1", managed_broker.cfg.port, admin.username, admin.password) as client:
        assert client is not None
        yield DeviceActions(dynsec, lambda: AgentEndpoint(f"mqtt://127.0.0.1:{managed_broker.cfg.port}"), state,
                            publisher=client)


def _text(user: User, marker: str) -> str:
    [el] = user.find(marker=marker).elements
    return el.text


def _audit(action: str) -> list[AuditEvent]:
    return list(AuditEvent.select().where(AuditEvent.action == action))


async def _click(user: User, marker: str) -> None:
    await user.should_see(marker=marker, retries=50)
    user.find(marker=marker).click()


async def test_admin_adds_a_device_and_sees_key_and_token_once(actions: DeviceActions, log_in):
    async with user_simulation() as user:
        register_pages(actions.state, devices=actions)
        await log_in(user)
        await user.open("/devices")
        await user.should_see("No devices yet")
        await _click(user, "add-device")
        await user.should_see(marker="add-name", retries=20)
        user.find(marker="add-name").type("Build Box")
        user.find(marker="add-tags").type("lab, arm64")
        await user.should_see("device id: build-box")
        user.find(marker="add-submit").click()
        await user.should_see(marker="api-key", retries=100)
        key, token = _text(user, "api-key"), _text(user, "enrollment-token")
        assert key.startswith("cfk_") and Device.get_by_id("build-box").key_hash == hash_api_key(key)
        enr = decode_token(token)
        assert (enr.device_id, enr.api_key) == ("build-box", key)
        commands = _text(user, "agent-commands")
        assert "clawfleet-agent enroll " in commands and token not in commands  # pasted at the prompt, not in ps
        [qr] = user.find(marker="token-qr").elements
        assert qr.source.startswith("data:image/png;base64,")
        await user.should_see("Build Box")  # the table behind the dialog has the new row
        user.find(marker="secret-done").click()
        await user.should_not_see(marker="api-key")
        await user.should_not_see(key)
        await user.open("/devices")  # reload: nothing of the secret is left
        await user.should_see("build-box")
        await user.should_see("…" + key[-4:])
        await user.should_not_see(key)
        await user.should_not_see(token)
    [row] = _audit("device.add")
    assert (row.actor, row.target) == ("admin", "build-box") and key not in row.detail
    assert Device.get_by_id("build-box").tags == "lab,arm64"


async def test_viewer_sees_the_list_without_actions(actions: DeviceActions, log_in):
    actions.add("admin", "Viewer Target")
    async with user_simulation() as user:
        register_pages(actions.state, devices=actions)
        await log_in(user, "vera", role="viewer")
        await user.open("/devices")
        await user.should_see("Viewer Target")
        await user.should_see("viewer-target")
        for marker in ("add-device", "rename-viewer-target", "rotate-viewer-target", "revoke-viewer-target",
                       "delete-viewer-target"):
            await user.should_not_see(marker=marker)


async def test_revoke_and_rename_through_the_page(actions: DeviceActions, managed_broker: ManagedMosquitto, log_in):
    new = actions.add("admin", "Page Box", tags="one")
    probe, rc = connect_probe("127.0.0.1", managed_broker.cfg.port, "page-box", new.api_key)
    assert rc.value == 0
    try:
        async with user_simulation() as user:
            register_pages(actions.state, devices=actions)
            await log_in(user)
            await user.open("/devices")
            await _click(user, "rename-page-box")
            await user.should_see(marker="rename-name", retries=20)
            user.find(marker="rename-name").clear().type("Renamed Box")
            user.find(marker="rename-tags").clear().type("two,three")
            user.find(marker="rename-submit").click()
            await user.should_see("Renamed Box", retries=50)
            await user.should_see("three")
            await _click(user, "revoke-page-box")
            await _click(user, "confirm-action")
            await user.should_see(marker="status-revoked", retries=50)
            disc = probe.wait_disconnect(5)
    finally:
        probe.close()
    assert disc.reason.value == 0x98
    dev = Device.get_by_id("page-box")
    assert dev.name == "Renamed Box" and dev.tags == "two,three" and dev.revoked_ms is not None
    assert [e.detail for e in _audit("device.rename")] == ["name 'Page Box' -> 'Renamed Box'; tags 'one' -> "
                                                           "'two,three'"]
    assert [(e.actor, e.target) for e in _audit("device.revoke")] == [("admin", "page-box")]


async def test_rotate_and_delete_through_the_page(actions: DeviceActions, log_in):
    old = actions.add("admin", "Spin Box")
    async with user_simulation() as user:
        register_pages(actions.state, devices=actions)
        await log_in(user)
        await user.open("/devices")
        await _click(user, "rotate-spin-box")
        await _click(user, "confirm-action")
        await user.should_see(marker="api-key", retries=100)
        new_key = _text(user, "api-key")
        assert new_key != old.api_key and Device.get_by_id("spin-box").key_hash == hash_api_key(new_key)
        user.find(marker="secret-done").click()
        await user.should_not_see(new_key)
        await _click(user, "delete-spin-box")
        await user.should_see(marker="confirm-id", retries=20)
        [go] = user.find(marker="confirm-action").elements
        assert not go.enabled  # until the id is typed
        user.find(marker="confirm-id").type("spin-box")
        assert go.enabled
        user.find(marker="keep-data").click()
        user.find(marker="confirm-action").click()
        await user.should_see("No devices yet", retries=50)
    assert Device.get_or_none(Device.id == "spin-box") is None
    [row] = _audit("device.delete")
    assert row.target == "spin-box" and "data kept" in row.detail and "not cleared" not in row.detail
    assert len(_audit("device.rotate_key")) == 1


async def test_admin_action_is_refused_after_demotion(actions: DeviceActions, log_in):
    actions.add("admin", "Guarded")
    async with user_simulation() as user:
        register_pages(actions.state, devices=actions)
        await log_in(user)
        await user.open("/devices")
        await user.should_see(marker="revoke-guarded", retries=20)
        UserRow.update(role="viewer").where(UserRow.username == "admin").execute()
        user.find(marker="revoke-guarded").click()
        await user.should_see("admins only", retries=20)
        await user.should_not_see(marker="confirm-action")
    assert Device.get_by_id("guarded").revoked_ms is None and not _audit("device.revoke")


async def test_device_page_shows_rejects_per_reason_with_the_last_error(actions: DeviceActions, log_in):
    actions.add("admin", "Noisy")
    now = int(time.time() * 1000)
    RejectCount.create(device="noisy", reason="not_json", count=3, last_ms=now, last_error="Expecting value: line 1")
    RejectCount.create(device="noisy", reason="device_mismatch", count=1, last_ms=now,
                       last_error="payload device_id 'other' does not match topic")
    actions.state.load_from_db()
    async with user_simulation() as user:
        register_pages(actions.state, devices=actions)
        await log_in(user, "vera", role="viewer")
        await user.open("/devices")
        await user.should_see(marker="rejects-noisy")
        assert _text(user, "rejects-noisy") == "4"  # total in the table; per reason on the device page
        user.find(kind=ui.link, content="Noisy").click()
        await user.should_see(marker="reject-not_json", retries=20)
        await user.should_see("Expecting value: line 1")
        await user.should_see(marker="reject-device_mismatch")
        await user.should_see("payload device_id 'other' does not match topic")
        await user.should_see("no sample received yet")
        actions.state.count_reject("noisy", "too_large")
        await user.should_see(marker="reject-too_large", retries=30)  # live, no reload
        await user.open("/device/nope")
        await user.should_see("No device 'nope'")


def test_qr_code_fits_a_token_with_a_ca_and_refuses_an_oversized_one():
    assert qr_data_uri("cfe1." + "A" * 1500).startswith("data:image/png;base64,")
    assert qr_data_uri("x" * 5000) is None


def test_registry_sync_applies_changes_made_elsewhere(actions: DeviceActions):
    state = actions.state
    actions.add("admin", "Synced")
    assert sync_registry(state) == []
    Device.update(name="Synced 2", tags="t").where(Device.id == "synced").execute()
    Device.create(id="fresh", name="Fresh", key_hash="x", key_hint="abcd", created_ms=1)
    assert sync_registry(state) == ["fresh", "synced"]
    assert state.get("synced").name == "Synced 2" and state.get("fresh").key_hint == "abcd"
    Device.update(revoked_ms=5, status="offline", status_reason="revoked", status_ms=int(time.time() * 1000)).where(
        Device.id == "fresh").execute()
    assert sync_registry(state) == ["fresh"]
    assert state.get("fresh").display_status == "revoked" and state.get("fresh").status_reason == "revoked"
    Device.delete().where(Device.id == "fresh").execute()
    version = state.version
    assert sync_registry(state) == ["fresh"] and state.get("fresh") is None and state.version > version
    version = state.version
    assert sync_registry(state) == [] and state.version == version  # nothing changed: no redraw
