"""Alerts end to end with real processes and real delivery: a real Mosquitto, the real server,
a real agent process SIGKILLed and restarted, a webhook receiver and an SMTP server on loopback;
a channel that never answers while a canary device keeps reporting; a server restart in the
middle of an incident."""

from __future__ import annotations

import os
import signal
import time

from alert_helpers import SilentServer, WebhookReceiver, mail_text, smtp_server, smtp_url
from e2e_helpers import start_agent, stop_agent, wait_for, write_agent_config
from mqtt_helpers import free_port
from payload_helpers import DeviceConn, batch, now_ms, status, telemetry, usage_record

from fleet_server.alerts.channels import add_channel
from fleet_server.alerts.rules import save_rule
from fleet_server.devices.registry import add_device
from fleet_server.server import FleetServer, ServerOptions
from fleet_server.store.alert_models import AlertAttempt, AlertDelivery, AlertIncident
from fleet_server.store.models import Sample
from shared.topics import Channel


def server(tmp_path, mqtt_port: int | None = None) -> FleetServer:
    s = FleetServer(ServerOptions(data_dir=tmp_path / "server", mqtt_port=mqtt_port or free_port(),
                                  local_agent=False, alert_settle_s=1.0))
    s.start()
    assert s.ingest is not None and s.ingest.connected.wait(10)
    return s


def test_sigkilled_agent_is_reported_by_webhook_and_smtp_and_its_return_with_the_duration(tmp_path):
    srv = server(tmp_path)
    agent = None
    try:
        save_rule("offline", "fleet", "critical", {"for_s": 3, "clear_s": 2}, name="Agent offline")
        srv.alerts.engine.request_reload()
        with WebhookReceiver() as hook, smtp_server() as (port, mails):
            add_channel(srv.opts.data_dir, "hook", hook.url, "test")
            add_channel(srv.opts.data_dir, "mail", smtp_url(port), "test")
            new = add_device(srv.dynsec, "worker-1", srv.broker_url)
            cfg = write_agent_config(tmp_path, "worker-1", new.api_key, srv.opts.mqtt_port)
            agent = start_agent(cfg, tmp_path / "agent.log")
            wait_for(lambda: getattr(srv.state.get("worker-1"), "status", None) == "online", 30, what="agent online")
            killed = time.monotonic()
            os.kill(agent.pid, signal.SIGKILL)
            agent.wait(10)
            wait_for(lambda: hook.posts and mails, 40, what="the offline message at both receivers")
            took = hook.posts[0]["received"] - killed
            print(f"SIGKILL -> offline message at the webhook after {took:.1f} s (keepalive 5 s: last will "
                  f"after ~7.5 s + broker sweep; rule 'offline for 3 s'; grouping window 2 s)")
            assert hook.posts[0]["title"].startswith("[CRITICAL] worker-1: offline (last-will) for ")
            assert "worker-1: offline (last-will)" in mail_text(mails[0])
            agent = start_agent(cfg, tmp_path / "agent2.log")
            wait_for(lambda: len(hook.posts) >= 2 and len(mails) >= 2, 40, what="the recovery message")
            recovery = hook.posts[1]
            assert recovery["title"].startswith("[RESOLVED] worker-1: resolved after ")
            assert "Duration: " in recovery["message"] and "resolved after" in mail_text(mails[1])
            time.sleep(3)
            assert len(hook.posts) == 2 and len(mails) == 2  # exactly once each
    finally:
        if agent is not None:
            stop_agent(agent)
        srv.stop()


def test_a_channel_that_never_answers_is_retried_and_logged_while_samples_keep_being_stored(tmp_path):
    srv = server(tmp_path)
    silent = SilentServer()
    try:
        save_rule("offline", "fleet", "critical", {"for_s": 0, "clear_s": 0})
        srv.alerts.engine.request_reload()
        add_channel(srv.opts.data_dir, "black hole", f"json://127.0.0.1:{silent.port}/hook", "test")
        with DeviceConn(srv, "victim") as victim, DeviceConn(srv, "canary") as canary:
            victim.publish(Channel.STATUS, status("victim", "online"), retain=True)
            wait_for(lambda: srv.state.get("victim") and srv.state.get("victim").status == "online", 10)
            victim.publish(Channel.STATUS, status("victim", "offline", reason="last-will"), retain=True)
            sent, started = 0, time.monotonic()
            while time.monotonic() - started < 20:  # the canary reports twice a second through the hang
                canary.publish(Channel.TELEMETRY, telemetry("canary", ts=now_ms()))
                sent += 1
                time.sleep(0.5)
            stored = Sample.select().where(Sample.device == "canary").count()
            attempts = list(AlertAttempt.select())
            print(f"canary: {stored}/{sent} samples stored during the hang; {len(attempts)} failed attempts "
                  f"logged: {[a.error[:60] for a in attempts]}")
            assert stored >= sent - 2  # (the last one or two may still be in the writer's batch)
            assert len(attempts) >= 2 and not any(a.ok for a in attempts)
            assert all(a.error for a in attempts)
            row = AlertDelivery.get()
            assert row.state == "failed" and row.attempts == len(attempts)
            assert srv.health().ok
    finally:
        silent.close()
        srv.stop()


def test_a_server_restart_in_the_middle_of_an_incident_neither_loses_nor_repeats_it(tmp_path):
    port = free_port()
    srv = server(tmp_path, port)
    with WebhookReceiver() as hook:
        try:
            save_rule("offline", "fleet", "critical", {"for_s": 1, "clear_s": 0})
            srv.alerts.engine.request_reload()
            add_channel(srv.opts.data_dir, "hook", hook.url, "test")
            dev = DeviceConn(srv, "db-1")
            dev.publish(Channel.STATUS, status("db-1", "online"), retain=True)
            wait_for(lambda: srv.state.get("db-1") and srv.state.get("db-1").status == "online", 10)
            dev.publish(Channel.STATUS, status("db-1", "offline", reason="last-will"), retain=True)
            wait_for(lambda: hook.posts, 20, what="the firing message")
            dev.close()
        finally:
            srv.stop()
        srv = server(tmp_path, port)  # the restarted server: same data dir and database
        try:
            time.sleep(8)  # settle (1 s) and several evaluation passes
            assert len(hook.posts) == 1, [p["title"] for p in hook.posts]
            assert AlertIncident.select().where(AlertIncident.state == "firing").count() == 1
            dev.reopen()  # the same device comes back (its key survived in the broker's file)
            dev.publish(Channel.STATUS, status("db-1", "online"), retain=True)
            wait_for(lambda: len(hook.posts) == 2, 20, what="the recovery message")
            assert hook.posts[1]["title"].startswith("[RESOLVED] db-1: resolved after ")
            time.sleep(3)
            assert len(hook.posts) == 2
            dev.close()
        finally:
            srv.stop()


def test_a_budget_run_over_is_reported_within_seconds_of_the_usage(tmp_path):
    srv = server(tmp_path)
    try:
        save_rule("budget", "fleet", "critical", {"unit": "tokens", "amount": 10_000, "period": "day",
                                                  "zone": "Europe/Berlin"}, name="Daily tokens")
        srv.alerts.engine.request_reload()
        with WebhookReceiver() as hook, DeviceConn(srv, "bot") as bot:
            add_channel(srv.opts.data_dir, "hook", hook.url, "test")
            time.sleep(3)  # past the settle time: the first budget evaluation (nothing used yet)
            sent = time.monotonic()
            records = [usage_record(ts=now_ms() - 60_000 * i, input_tokens=850, output_tokens=0, cache_read_tokens=0)
                       for i in range(10)]
            bot.publish(Channel.USAGE, batch("bot", records))
            wait_for(lambda: hook.posts, 30, what="the budget message")
            took = hook.posts[0]["received"] - sent
            print(f"usage stored -> budget message at the webhook after {took:.1f} s")
            assert hook.posts[0]["title"] == "[WARNING] Fleet: daily token budget at 85 % (passed 80 %)"
            assert "At this rate the daily budget is reached at" in hook.posts[0]["message"]
            assert took < 15
    finally:
        srv.stop()
