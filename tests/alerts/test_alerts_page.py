"""The Alerts page (NiceGUI user simulation, real SQLite, a real webhook receiver): incidents with
acknowledge, the header count and overview banner, channels with a real test, the rules editor's
preview; viewers cannot change anything."""

from __future__ import annotations

from alert_helpers import WebhookReceiver, fire_offline, put
from e2e_helpers import wait_for
from nicegui.testing.user_simulation import user_simulation

from fleet_server.dashboard import register_pages
from fleet_server.jobs.alerts import AlertJobs
from fleet_server.store.alert_models import AlertChannel, AlertIncident, AlertRule, AlertSilence
from fleet_server.store.models import StatusEvent


def firing_incident(state, clock) -> None:
    fire_offline(state, clock, ["web-1"], name="Device offline")


async def test_incidents_header_count_banner_and_acknowledge(db, state, clock, log_in, tmp_path):
    firing_incident(state, clock)
    async with user_simulation() as user:
        register_pages(state)
        await log_in(user)
        await user.open("/")
        await user.should_see("1 alert firing (1 critical)")
        await user.should_see("Alerts have nowhere to go")
        await user.should_see(marker="alerts-count")
        await user.open("/alerts")
        await user.should_see("web-1")
        await user.should_see("Device offline")
        user.find(marker="ack").click()
        await user.should_see("acknowledged by admin", retries=50)
        assert AlertIncident.get().acked_by == "admin"


async def test_channel_add_and_test_against_a_real_webhook(db, state, log_in, tmp_path):
    jobs = AlertJobs(db, state, tmp_path)
    with WebhookReceiver() as hook:
        async with user_simulation() as user:
            register_pages(state, alerts=lambda: jobs)
            await log_in(user)
            await user.open("/alerts?tab=channels")
            user.find(marker="channel-name").type("hook")
            user.find(marker="channel-url").type(hook.url)
            user.find(marker="channel-add").click()
            await user.should_see("test message sent", retries=100)
            wait_for(lambda: hook.posts, 5)
            assert hook.posts[0]["title"] == "ClawFleet test notification"
            assert AlertChannel.get().name == "hook"


async def test_rule_editor_previews_seven_days_and_saves(db, state, clock, log_in, tmp_path):
    put(state, "web-1", clock(), "online")
    from shared.clock import now_ms

    now = now_ms()
    StatusEvent.insert_many([{"device": "web-1", "ts": now - 86_400_000, "state": "offline"},
                             {"device": "web-1", "ts": now - 86_400_000 + 20 * 60_000, "state": "online"}]).execute()
    jobs = AlertJobs(db, state, tmp_path)
    n_rules = AlertRule.select().count()
    async with user_simulation() as user:
        register_pages(state, alerts=lambda: jobs)
        await log_in(user)
        await user.open("/alerts?tab=rules")
        user.find(marker="new-rule").click()
        await user.should_see("would have fired once for 1 subject(s)", retries=100)
        field = user.find(marker="field-for_s")
        field.clear()
        field.type("30m")
        await user.should_see("would not have fired in the last 7 days", retries=100)
        user.find(marker="rule-name").type("Offline half an hour")
        user.find(marker="rule-save").click()
        await user.should_see("rule 'Offline half an hour' saved", retries=50)
    assert AlertRule.select().count() == n_rules + 1


async def test_snooze_from_the_page_and_viewers_cannot_change(db, state, clock, log_in):
    firing_incident(state, clock)
    async with user_simulation() as user:
        register_pages(state)
        await log_in(user, "vera", role="viewer")
        await user.open("/alerts")
        await user.should_see("web-1")
        user.find(marker="snooze-1h").click()
        await user.should_see("admins only", retries=50)
        assert AlertSilence.select().count() == 0
    async with user_simulation() as user:
        register_pages(state)
        await log_in(user)
        await user.open("/alerts")
        user.find(marker="snooze-1h").click()
        await user.should_see("snoozed for 1 hour", retries=50)
    assert [s.scope for s in AlertSilence.select()] == ["device:web-1"]
