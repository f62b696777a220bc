"""From events to messages on channels: the grouping window, the notification queue, retries
with backoff, and the notification log.

:meth:`Dispatcher.run_once` (twice a second, on its own thread, never on the ingest path):

1. **Group.** Events (:class:`AlertEvent`, written by the engine with the incident change) wait
   until none has arrived for :data:`QUIET_S` seconds, or the first has waited :data:`GROUP_MAX_S`
   (timed from when this dispatcher saw them); then every channel gets one message with all the
   events meant for it ("12 alerts: 12 firing"), so an outage of 500 devices is one notification.
   A channel in its quiet hours gets the critical events now and the rest as a second message
   deferred to the end of the quiet hours. The events are deleted in the transaction that queues
   the messages.
2. **Send.** Each due message (:class:`AlertDelivery`) goes to a small thread pool, one message
   per channel at a time, so a channel that hangs delays only itself. An attempt is limited to
   :data:`fleet_server.alerts.channels.SEND_TIMEOUT_S`.
3. **Log.** Every attempt is an :class:`AlertAttempt` row (ok, duration, error without secrets);
   a failed message is retried after :data:`BACKOFF_S` and given up after the last step.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path

from fleet_server.alerts import messages
from fleet_server.alerts.channels import SEND_TIMEOUT_S, ChannelError, channel_url, send
from fleet_server.alerts.silences import quiet_until
from fleet_server.store.alert_models import AlertAttempt, AlertChannel, AlertDelivery, AlertEvent
from fleet_server.store.locks import write_transaction
from fleet_server.store.models import db
from shared.clock import now_ms

log = logging.getLogger("clawfleet.alerts")

QUIET_S = 2.0
"""Events are sent once no new one has come for this long, seconds (the grouping window closes)."""
GROUP_MAX_S = 30.0
"""…or once the oldest has waited this long, seconds."""
BACKOFF_S = (5, 15, 45, 120, 300, 600, 900, 900, 900)
"""Wait after the 1st, 2nd, … failed attempt, seconds; after the last step the message is given up."""
WATCHDOG_S = SEND_TIMEOUT_S + 15
"""An attempt not finished after this long counts as failed ("no answer"), seconds."""
OPEN_STATES = ("queued", "deferred", "failed")


class Dispatcher:
    """Groups events, queues and sends messages; see the module docstring.

    Args:
        data_dir: the server data dir (the channel key).
        clock: epoch-ms clock.
        quiet_s, group_max_s: the grouping window (tests shorten it).
        workers: sending threads.
    """

    def __init__(self, data_dir: Path, *, clock: Callable[[], int] = now_ms, quiet_s: float = QUIET_S,
                 group_max_s: float = GROUP_MAX_S, workers: int = 4) -> None:
        self.data_dir = data_dir
        self.clock = clock
        self.quiet_ms, self.group_max_ms = int(quiet_s * 1000), int(group_max_s * 1000)
        self._pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="clawfleet-notify")
        self._inflight: dict[int, tuple[int, Future, int]] = {}  # channel -> (delivery, future, started ms)
        self._window: tuple[int, int, frozenset[int]] | None = None  # (first seen, last change, event ids)

    def run_once(self) -> None:
        """One round: close the grouping window if due, collect finished sends, start due ones."""
        now = self.clock()
        self.flush_events(now)
        self._collect(now)
        self._send_due(now)

    def close(self, wait_s: float = 5.0) -> None:
        """Record the sends that finish within ``wait_s`` seconds (so a stop right after a send does not
        send it again after the restart), then stop the sending threads. Needs a database connection."""
        deadline = time.monotonic() + wait_s
        while self._inflight and time.monotonic() < deadline:
            self._collect(self.clock())
            time.sleep(0.05)
        self._pool.shutdown(wait=False, cancel_futures=True)

    # ---- 1. group -----------------------------------------------------------------------------
    def flush_events(self, now: int, force: bool = False) -> int:
        """Turn waiting events into messages when the grouping window has closed (or ``force``).
        Returns the number of messages queued.

        The window is timed by this dispatcher's clock from when it saw the events (not by their
        stored times), so events stamped by a clock that ran ahead, or before a jump back of the
        system clock, cannot hold the window open."""
        events = list(AlertEvent.select().order_by(AlertEvent.created_ms, AlertEvent.subject, AlertEvent.id))
        if not events:
            self._window = None
            return 0
        ids = frozenset(e.id for e in events)
        first, last, seen = self._window or (now, now, frozenset())
        if ids != seen or now < last:
            last = now
        first = min(first, now)
        self._window = (first, last, ids)
        if not force and now - last < self.quiet_ms and now - first < self.group_max_ms:
            return 0
        self._window = None
        queued = 0
        with write_transaction(db.obj):
            for ch in AlertChannel.select().where(AlertChannel.enabled == True):  # noqa: E712 - SQL
                mine = [e for e in events if not e.channels or str(ch.id) in e.channels.split(",")]
                if not mine:
                    continue
                until = quiet_until(ch, now)
                now_part = mine if until is None else [e for e in mine if e.severity == "critical"]
                later = [] if until is None else [e for e in mine if e.severity != "critical"]
                for part, state, due in ((now_part, "queued", 0), (later, "deferred", until or 0)):
                    if part:
                        self._queue(ch.id, part, state, due, now)
                        queued += 1
            ids = [e.id for e in events]
            for k in range(0, len(ids), 500):
                AlertEvent.delete().where(AlertEvent.id.in_(ids[k:k + 500])).execute()
        if queued:
            log.info("alerts: %d event(s) grouped into %d message(s)", len(events), queued)
        return queued

    @staticmethod
    def _queue(channel_id: int, events: list[AlertEvent], state: str, due: int, now: int) -> AlertDelivery:
        parts = [(e.kind, e.severity, messages.EventText(e.headline, e.text, e.subject)) for e in events]
        title, body = messages.compose(parts)
        kinds = {e.kind for e in events}
        kind = kinds.pop() if len(kinds) == 1 else "mixed"
        severity = "critical" if any(e.severity == "critical" for e in events) else "warning"
        incidents = "," + ",".join(str(e.incident) for e in events) + ","
        return AlertDelivery.create(channel=channel_id, created_ms=now, kind=kind, severity=severity, title=title,
                                    body=body, incidents=incidents, state=state, next_ms=due)

    # ---- 2. send ------------------------------------------------------------------------------
    def _send_due(self, now: int) -> None:
        rows = list(AlertDelivery.select().where(AlertDelivery.state.in_(OPEN_STATES) & (AlertDelivery.next_ms <= now))
                    .order_by(AlertDelivery.id).limit(500))
        channels = {c.id: c for c in AlertChannel.select()} if rows else {}
        for row in rows:
            if row.channel in self._inflight:
                continue
            ch = channels.get(row.channel)
            if ch is None or not ch.enabled:
                self._finish(row, False, "the channel was removed or turned off", 0.0, now, give_up=True)
                continue
            until = quiet_until(ch, now)
            if until is not None and row.severity != "critical":
                AlertDelivery.update(state="deferred", next_ms=until).where(AlertDelivery.id == row.id).execute()
                continue
            try:
                url = channel_url(self.data_dir, ch)
            except ChannelError as exc:
                self._finish(row, False, str(exc), 0.0, now, give_up=True)
                continue
            future = self._pool.submit(send, url, row.title, row.body, row.severity)
            self._inflight[row.channel] = (row.id, future, now)

    # ---- 3. log ------------------------------------------------------------------------------
    def _collect(self, now: int) -> None:
        for channel, (delivery_id, future, started) in list(self._inflight.items()):
            if future.done():
                try:
                    ok, error, took = future.result()
                except Exception as exc:
                    ok, error, took = False, f"{type(exc).__name__}", (now - started) / 1000
            elif now - started > WATCHDOG_S * 1000:
                ok, error, took = False, f"no answer within {WATCHDOG_S:.0f} s", (now - started) / 1000
            else:
                continue
            del self._inflight[channel]
            row = AlertDelivery.get_or_none(AlertDelivery.id == delivery_id)
            if row is not None:
                self._finish(row, ok, error, took, now)

    def _finish(self, row: AlertDelivery, ok: bool, error: str, took_s: float, now: int,
                give_up: bool = False) -> None:
        attempts = row.attempts + 1
        if ok:
            fields = {"state": "sent", "sent_ms": now, "error": ""}
        elif give_up or attempts > len(BACKOFF_S):
            fields = {"state": "gave_up", "error": error[:1000]}
        else:
            fields = {"state": "failed", "next_ms": now + BACKOFF_S[attempts - 1] * 1000, "error": error[:1000]}
        with write_transaction(db.obj):
            AlertAttempt.create(delivery=row.id, ts_ms=now, ok=ok, duration_ms=int(took_s * 1000), error=error[:1000])
            AlertDelivery.update(attempts=attempts, **fields).where(AlertDelivery.id == row.id).execute()
        if ok:
            log.info("alerts: message %d sent to channel %d in %.1f s", row.id, row.channel, took_s)
        else:
            log.warning("alerts: message %d to channel %d failed (attempt %d): %s%s", row.id, row.channel, attempts,
                        error[:300], "; giving up" if fields["state"] == "gave_up" else
                        f"; retrying in {BACKOFF_S[attempts - 1]} s")


def send_test(data_dir: Path, channel_id: int, actor: str) -> tuple[bool, str]:
    """Send a test message to a channel now (in the caller's thread) and log it like any message.
    Returns ``(ok, the real error with secrets removed)``."""
    ch = AlertChannel.get_or_none(AlertChannel.id == channel_id)
    if ch is None:
        return False, f"no alert channel {channel_id}"
    try:
        url = channel_url(data_dir, ch)
    except ChannelError as exc:
        return False, str(exc)
    now = now_ms()
    title = "ClawFleet test notification"
    body = f"This is a test from ClawFleet, sent by {actor} to the channel {ch.name!r}. Alerts will arrive like this."
    ok, error, took = send(url, title, body, "ok")
    with write_transaction(db.obj):
        row = AlertDelivery.create(channel=ch.id, created_ms=now, kind="test", severity="warning", title=title,
                                   body=body, state="sent" if ok else "gave_up", attempts=1,
                                   sent_ms=now if ok else None, error=error[:1000])
        AlertAttempt.create(delivery=row.id, ts_ms=now, ok=ok, duration_ms=int(took * 1000), error=error[:1000])
    return ok, error


def wait_idle(dispatcher: Dispatcher, timeout_s: float = 30.0) -> bool:
    """Run rounds until nothing is in flight or queued now (tests and the CLI). Returns True when idle."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        dispatcher.run_once()
        busy = dispatcher._inflight or AlertDelivery.select().where(
            (AlertDelivery.state == "queued") & (AlertDelivery.next_ms <= dispatcher.clock())).exists()
        if not busy and not AlertEvent.select().exists():
            return True
        time.sleep(0.05)
    return False
