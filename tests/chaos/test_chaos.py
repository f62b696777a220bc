"""Chaos in real processes: ``clawfleet-server run`` (with its managed Mosquitto) and
``clawfleet-agent run --headless`` are killed and stopped while an OpenClaw keeps writing
transcripts. Afterwards every usage record is stored exactly once (rows, token sums and the hourly
rollup agree) and the samples are within the bound the README documents.

Bounded in time: each test runs its chaos for about 20 s and waits at most 90 s for the fleet to
catch up.
"""

from __future__ import annotations

import os
import signal
import stat
import threading
import time
from pathlib import Path

import pytest
from e2e_helpers import ServerProcess, start_agent, stop_agent, wait_for, write_agent_config
from fixtures_openclaw import append_assistant_messages, make_busy_legacy_state
from mqtt_helpers import free_port
from peewee import fn

from broker.config import BrokerAdmin
from broker.dynsec import DynSecClient
from fleet_server.devices.registry import add_device
from fleet_server.store.db import open_database
from fleet_server.store.history.rollups import roll_up_all
from fleet_server.store.models import LogRecord, Sample, SampleRollup5m, UsageHourly, UsageRecord

pytestmark = [pytest.mark.chaos, pytest.mark.timeout(240)]

INITIAL = 2000
LOGS = 100
RATE = 100  # assistant messages per second while the chaos runs


class OpenClawWriter:
    """Appends assistant turns to the transcripts in a thread, ``rate`` per second, like a busy gateway."""

    def __init__(self, state: Path, first: int, rate: int = RATE) -> None:
        self.state, self.next, self.input_tokens, self.rate = state, first, 0, rate
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.wait(0.1):
            self.input_tokens += append_assistant_messages(self.state, self.next, self.rate // 10)
            self.next += self.rate // 10

    def __enter__(self) -> OpenClawWriter:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(5)


def _enroll(server: ServerProcess, device_id: str) -> str:
    admin = BrokerAdmin.load(server.data_dir / "mosquitto" / "admin.json")
    with DynSecClient("127.0.0.1", server.mqtt_port, admin.username, admin.password) as dynsec:
        return add_device(dynsec, device_id, f"mqtt://127.0.0.1:{server.mqtt_port}", device_id=device_id).api_key


def _usage(device_id: str) -> tuple[int, int, int, int]:
    """(records, distinct ids, input tokens, records counted in the hourly rollup)."""
    u = UsageRecord
    records, ids, tokens = u.select(fn.COUNT(u.id), fn.COUNT(u.id.distinct()), fn.SUM(u.input_tokens)).where(
        u.device == device_id).tuples()[0]
    rolled = UsageHourly.select(fn.SUM(UsageHourly.records)).where(UsageHourly.device == device_id).scalar()
    return records, ids, tokens or 0, rolled or 0


def _logs(device_id: str) -> int:
    return LogRecord.select().where((LogRecord.device == device_id)
                                    & LogRecord.message.startswith("transient same-model retry")).count()


def _samples(device_id: str, since_ms: int = 0, until_ms: int = 2**62) -> int:
    return Sample.select().where((Sample.device == device_id) & (Sample.ts >= since_ms)
                                 & (Sample.ts < until_ms)).count()


@pytest.fixture
def fleet_proc(tmp_path: Path):
    password_file = tmp_path / "admin-password"
    server = ServerProcess(tmp_path / "server", free_port(), free_port(), tmp_path / "server.log",
                           "--no-local-agent", "--admin-password-file", str(password_file)).start()
    # first run: the admin password went to the file (0600), not to the server's output
    password = password_file.read_text().strip()
    assert len(password) >= 16 and stat.S_IMODE(password_file.stat().st_mode) == 0o600
    assert password not in (tmp_path / "server.log").read_text()
    database = open_database(server.data_dir)
    try:
        yield server
    finally:
        server.stop()
        database.close()


def _expect_all(device_id: str, total: int, input_tokens: int, what: str) -> None:
    def done() -> bool:
        return _usage(device_id) == (total, total, input_tokens, total) and _logs(device_id) == LOGS

    try:
        wait_for(done, 90, interval=0.5, what=what)
    except AssertionError:
        expected = (total, total, input_tokens, total)
        raise AssertionError(f"{what}: stored (records, ids, input tokens, rolled up) = {_usage(device_id)}, "
                             f"expected {expected}; logs {_logs(device_id)}/{LOGS}") from None


def _expect_all_and_samples(device_id: str, writer: OpenClawWriter, initial_input: int, started_ms: int,
                            share: float, what: str) -> None:
    """Every usage and log record exactly once, and at least ``share`` of one sample per second since
    ``started_ms`` (the agents here sample every second)."""
    total, input_tokens = writer.next, initial_input + writer.input_tokens
    _expect_all(device_id, total, input_tokens, f"every usage and log record exactly once {what}")
    elapsed_s = (int(time.time() * 1000) - started_ms) / 1000
    samples = _samples(device_id)
    print(f"{device_id}: {total} usage records exactly once, {samples} samples in {elapsed_s:.0f} s")
    assert samples >= share * elapsed_s, f"{samples} samples in {elapsed_s:.0f} s"


def _busy_agent(server: ServerProcess, tmp_path: Path, device_id: str, **over: object) -> tuple[Path, Path, int]:
    """Enroll ``device_id``, make a busy OpenClaw state and an agent config for it (``over``: more
    config fields); returns (state dir, agent config, the input tokens of the state's first
    :data:`INITIAL` records)."""
    key = _enroll(server, device_id)
    state = make_busy_legacy_state(tmp_path, INITIAL, LOGS)
    cfg = write_agent_config(tmp_path, device_id, key, server.mqtt_port, openclaw_state_dir=str(state), **over)
    return state, cfg, sum(1000 + i % 97 for i in range(INITIAL))


def test_broker_server_and_agent_kills_during_a_burst_lose_and_repeat_nothing(fleet_proc: ServerProcess, tmp_path):
    server = fleet_proc
    state, cfg, initial_input = _busy_agent(server, tmp_path, "chaos-kill")
    agent = start_agent(cfg, tmp_path / "agent.log")
    started_ms = int(time.time() * 1000)
    try:
        with OpenClawWriter(state, INITIAL) as writer:
            wait_for(lambda: _usage("chaos-kill")[0] > 0, 30, what="the burst to start arriving")
            os.kill(server.broker_pid(), signal.SIGKILL)  # broker crash mid-burst; the server restarts it
            time.sleep(4)
            agent.kill()  # agent SIGKILL mid-batch (its outbox and positions are on disk)
            agent.wait(10)
            agent = start_agent(cfg, tmp_path / "agent.log")
            time.sleep(4)
            server.kill()  # server SIGKILL during ingest; its broker keeps queuing for ingest's session
            time.sleep(3)
            server.start()  # reclaims the orphaned broker (which saves on SIGTERM), resumes the session
            time.sleep(4)
        # samples (1 s interval): only while the agent was down (~1 s plus its start-up) none were taken
        _expect_all_and_samples("chaos-kill", writer, initial_input, started_ms, 0.6, "after the kills")
    finally:
        stop_agent(agent)


def test_server_down_with_a_full_outbox_catches_up_without_loss(fleet_proc: ServerProcess, tmp_path):
    server = fleet_proc
    state, cfg, initial_input = _busy_agent(server, tmp_path, "chaos-down", outbox_max_bytes=1024 * 1024)
    agent = start_agent(cfg, tmp_path / "agent.log")
    try:
        wait_for(lambda: _usage("chaos-down")[0] == INITIAL, 60, what="the initial backlog")
        with OpenClawWriter(state, INITIAL, rate=250) as writer:
            server.stop()  # server and its broker down; the agent keeps collecting
            down_from = int(time.time() * 1000)
            time.sleep(20)  # 5,000 new records (~1.5 MB) cannot all fit into the 1 MiB outbox
            down_until = int(time.time() * 1000)
            server.start()
            time.sleep(2)
        total, input_tokens = writer.next, initial_input + writer.input_tokens
        _expect_all("chaos-down", total, input_tokens, "every usage record exactly once after the outage")
        log = (tmp_path / "agent.log").read_text()
        assert "usage records wait in OpenClaw's files" in log and "reading OpenClaw usage records again" in log
        # samples taken while the server was down wait in the outbox (telemetry has a quarter of it)
        down = _samples("chaos-down", down_from, down_until)
        outage_s = (down_until - down_from) / 1000
        print(f"chaos-down: {total} usage records exactly once; {down} samples from {outage_s:.0f} s of outage")
        assert down >= 0.7 * (down_until - down_from) / 1000
        # the samples resent after the outage are older than what was rolled up meanwhile: they reach the
        # rollups too, each once (this pass runs beside the server's own rollup job; they never count twice)
        stop_agent(agent)
        time.sleep(3)
        roll_up_all()
        rolled = SampleRollup5m.select(fn.SUM(SampleRollup5m.n)).where(SampleRollup5m.device == "chaos-down").scalar()
        assert rolled == _samples("chaos-down")
    finally:
        stop_agent(agent)


def test_broker_sigkill_during_a_burst_with_the_shipped_settings_loses_nothing(fleet_proc: ServerProcess, tmp_path):
    """The managed broker saves only every few minutes: what it acknowledged since its last save and
    had not handed to ingest is gone after a SIGKILL. Receipts make the agent send that again: every
    usage and log record is stored exactly once, and samples too (the agent keeps them until
    confirmed). The second time the server dies first (SIGKILL), so the broker queues for ingest's
    session until it is killed too and the server starts a new one: with deletion on PUBACK those
    records were lost (checked: 600 of 5,740)."""
    server = fleet_proc
    conf = (server.data_dir / "mosquitto" / "mosquitto.conf").read_text()
    assert "autosave_on_changes false" in conf and "autosave_interval 300" in conf  # the shipped settings
    state, cfg, initial_input = _busy_agent(server, tmp_path, "chaos-broker")
    agent = start_agent(cfg, tmp_path / "agent.log")
    started_ms = int(time.time() * 1000)
    try:
        with OpenClawWriter(state, INITIAL, rate=200) as writer:
            wait_for(lambda: _usage("chaos-broker")[0] > 0, 30, what="the burst to start arriving")
            for kill in range(3):  # mid-burst, three times
                old = server.broker_pid()
                if kill == 1:
                    server.kill()  # ingest gone: the broker queues for its session, acknowledging the agent
                    time.sleep(3)
                    os.kill(old, signal.SIGKILL)  # nothing saved since it started: the queue is gone
                    server.start()
                else:
                    os.kill(old, signal.SIGKILL)  # the server's supervisor restarts it
                wait_for(lambda old=old: _pid_or_none(server) not in (None, old), 20, what="mosquitto restarted")
                time.sleep(4)
        _expect_all_and_samples("chaos-broker", writer, initial_input, started_ms, 0.8, "after 3 broker kills")
        log = (tmp_path / "agent.log").read_text()
        assert "messages again" in log  # what the broker lost came back as resends
        # resent samples arrive after newer ones were rolled up: they reach the rollups too, each once
        stop_agent(agent)
        time.sleep(3)
        roll_up_all()
        rolled = SampleRollup5m.select(fn.SUM(SampleRollup5m.n)).where(SampleRollup5m.device == "chaos-broker")
        assert rolled.scalar() == _samples("chaos-broker")
    finally:
        stop_agent(agent)


def _pid_or_none(server: ServerProcess) -> int | None:
    try:
        return server.broker_pid()
    except (OSError, ValueError, KeyError):
        return None
