"""Delivery through Apprise to real receivers on loopback: a webhook (``json://``) and an SMTP
server (aiosmtpd); grouping; quiet hours; a channel that never answers is retried and logged;
secrets never reach the log."""

from __future__ import annotations

import logging
import time

import pytest
from alert_helpers import SilentServer, WebhookReceiver, fire_offline, mail_text, put, smtp_server, smtp_url
from e2e_helpers import wait_for

from fleet_server.alerts.channels import ChannelError, add_channel, channel_url, update_channel
from fleet_server.alerts.dispatch import BACKOFF_S, Dispatcher, send_test, wait_idle
from fleet_server.alerts.engine import AlertEngine
from fleet_server.alerts.rules import save_rule
from fleet_server.store.alert_models import AlertAttempt, AlertChannel, AlertDelivery, AlertEvent
from fleet_server.store.models import AuditEvent


def test_webhook_and_smtp_receive_the_message_and_the_recovery(db, state, clock, tmp_path):
    with WebhookReceiver() as hook, smtp_server() as (port, mails):
        add_channel(tmp_path, "hook", hook.url, "tester")
        add_channel(tmp_path, "mail", smtp_url(port), "tester")
        eng = fire_offline(state, clock, ["web-1"])
        disp = Dispatcher(tmp_path, clock=clock, quiet_s=0)
        assert wait_idle(disp)
        wait_for(lambda: len(hook.posts) == 1 and len(mails) == 1, 10, what="the offline message")
        assert hook.posts[0]["title"] == "[CRITICAL] web-1: offline (last-will) for 1 s"
        assert "Where: web-1" in hook.posts[0]["message"] and "/device/web-1" in hook.posts[0]["message"]
        assert hook.posts[0]["type"] == "failure"
        assert "web-1: offline (last-will)" in mail_text(mails[0])
        put(state, "web-1", clock(), "online")
        clock.advance(125)
        eng.tick()
        assert wait_idle(disp)
        wait_for(lambda: len(hook.posts) == 2 and len(mails) == 2, 10, what="the recovery message")
        assert hook.posts[1]["title"].startswith("[RESOLVED] web-1: resolved after 2 min 6 s")
        assert "Duration: 2 min 6 s" in mail_text(mails[1])
    assert AlertDelivery.select().where(AlertDelivery.state == "sent").count() == 4
    assert AlertAttempt.select().where(AlertAttempt.ok == True).count() == 4  # noqa: E712


def test_a_thousand_devices_offline_together_are_one_message(any_db, state, clock, tmp_path):
    devices = [f"dc1-{i:04d}" for i in range(1000)]
    with WebhookReceiver() as hook:
        add_channel(tmp_path, "hook", hook.url, "tester")
        fire_offline(state, clock, devices)
        assert AlertEvent.select().count() == 1000
        disp = Dispatcher(tmp_path, clock=clock)  # default window: 2 s without new events, at most 30 s
        disp.run_once()
        assert AlertDelivery.select().count() == 0  # the window is still open
        clock.advance(2)
        assert wait_idle(disp)
        wait_for(lambda: hook.posts, 10, what="the grouped message")
        time.sleep(0.5)
        assert len(hook.posts) == 1
        post = hook.posts[0]
        assert post["title"] == "[CRITICAL] 1000 alerts: 1000 firing"
        assert post["message"].startswith("Firing (1000): dc1-0000, dc1-0001")
        assert "… and 980 more" in post["message"]


def test_quiet_hours_defer_warnings_and_let_critical_through(db, state, clock, tmp_path):
    # T0 is 09:46 UTC: quiet 09:00-10:00 UTC
    with WebhookReceiver() as hook:
        ch = add_channel(tmp_path, "night", hook.url, "tester", quiet_start="09:00", quiet_end="10:00")
        save_rule("offline", "tag:crit", "critical", {"for_s": 0, "clear_s": 0})
        save_rule("offline", "tag:warn", "warning", {"for_s": 0, "clear_s": 0})
        put(state, "c", clock(), "online", tags="crit")
        put(state, "w", clock(), "online", tags="warn")
        eng = AlertEngine(state, clock=clock, settle_s=0)
        eng.load()
        eng.tick()
        put(state, "c", clock(), "offline")
        put(state, "w", clock(), "offline")
        clock.advance(1)
        eng.tick()
        disp = Dispatcher(tmp_path, clock=clock, quiet_s=0)
        assert wait_idle(disp)
        wait_for(lambda: hook.posts, 10)
        assert [p["title"] for p in hook.posts] == ["[CRITICAL] c: offline for 1 s"]
        deferred = AlertDelivery.get(AlertDelivery.state == "deferred")
        assert deferred.channel == ch.id and "w: offline" in deferred.title
        clock.ms = deferred.next_ms  # 10:00: quiet hours are over
        assert wait_idle(disp)
        wait_for(lambda: len(hook.posts) == 2, 10)
        assert "w: offline" in hook.posts[1]["title"]
        update_channel(ch.id, "tester", quiet_start="", quiet_end="")


def test_a_channel_that_never_answers_is_retried_and_logged(db, state, clock, tmp_path, monkeypatch):
    from fleet_server.alerts import channels

    monkeypatch.setattr(channels, "SEND_TIMEOUT_S", 2.0)
    silent = SilentServer()
    try:
        with WebhookReceiver() as hook:
            add_channel(tmp_path, "black hole", f"json://127.0.0.1:{silent.port}/hook?rto=1&cto=1", "tester")
            add_channel(tmp_path, "hook", hook.url, "tester")
            fire_offline(state, clock, ["a"])
            disp = Dispatcher(tmp_path, clock=clock, quiet_s=0)
            disp.run_once()
            wait_for(lambda: (disp.run_once() or True) and hook.posts, 10, what="the good channel, not held up")
            hung = AlertDelivery.get(AlertDelivery.channel == 1)
            wait_for(lambda: (disp.run_once() or True) and AlertDelivery.get_by_id(hung.id).attempts == 1, 30,
                     what="the first attempt to time out")
            row = AlertDelivery.get_by_id(hung.id)
            assert row.state == "failed" and row.next_ms == clock() + BACKOFF_S[0] * 1000
            clock.advance(BACKOFF_S[0])
            wait_for(lambda: (disp.run_once() or True) and AlertDelivery.get_by_id(hung.id).attempts == 2, 30,
                     what="the retry")
            attempts = list(AlertAttempt.select().where(AlertAttempt.delivery == hung.id))
            assert len(attempts) == 2 and not any(a.ok for a in attempts)
            assert all(a.error for a in attempts)
    finally:
        silent.close()


def test_send_test_shows_the_real_error_and_no_secret_anywhere(db, tmp_path, caplog):
    caplog.set_level(logging.DEBUG)
    secret = "s3cretTokenValue9876"
    url = f"json://ops:{secret}@127.0.0.1:1/hook"  # nothing listens on port 1
    ch = add_channel(tmp_path, "broken", url, "tester")
    assert secret not in ch.url_masked and secret not in ch.url_secret
    ok, error = send_test(tmp_path, ch.id, "tester")
    assert not ok and "Connection error" in error
    assert secret not in error
    assert channel_url(tmp_path, AlertChannel.get_by_id(ch.id)) == url
    for text in [r.getMessage() for r in caplog.records] + [a.detail for a in AuditEvent.select()] + [
            d.error for d in AlertDelivery.select()] + [a.error for a in AlertAttempt.select()]:
        assert secret not in text
    assert (tmp_path / "alert-channels.key").stat().st_mode & 0o777 == 0o600


def test_a_bad_url_is_refused_with_the_reason(db, tmp_path):
    with pytest.raises(ChannelError, match="'nope://' is not a notification service Apprise knows"):
        add_channel(tmp_path, "x", "nope://host/path", "tester")
    with pytest.raises(ChannelError, match="no scheme"):
        add_channel(tmp_path, "x", "just words", "tester")


def test_events_stamped_ahead_of_the_clock_do_not_hold_the_window_open(db, state, clock, tmp_path):
    with WebhookReceiver() as hook:
        add_channel(tmp_path, "hook", hook.url, "tester")
        clock.advance(3600)  # the engine's clock ran an hour ahead (then the system clock was set back)
        fire_offline(state, clock, ["a"])
        clock.advance(-3600)
        disp = Dispatcher(tmp_path, clock=clock)
        disp.run_once()
        clock.advance(2)
        assert wait_idle(disp)
        wait_for(lambda: hook.posts, 10, what="the message")
