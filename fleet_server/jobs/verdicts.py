"""The server's own verdict about each device, published retained on ``clawfleet/v1/<id>/availability``
so integrations (Home Assistant's availability topic, Node-RED) see what the dashboard sees: a hung
agent whose broker connection is still up is ``stale``, a paused one ``paused``, not ``online``.

Every second the job asks the fleet cache what changed (:meth:`FleetState.changes_since`) and
publishes a device's verdict when it differs from the one published last (QoS 1, retained, with
ingest's MQTT client; the broker lets only the server account publish there). After ingest
reconnects (the broker may have lost its retained messages) and every :data:`FULL_EVERY_S` it
publishes them all again; a deleted device's topic is cleared.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable

import paho.mqtt.client as mqtt
from peewee import Database

from fleet_server.jobs.periodic import PeriodicJob
from fleet_server.jobs.stale import STALE_REASON
from fleet_server.state import DeviceView, FleetState
from shared import schemas
from shared.clock import now_ms
from shared.topics import Channel, device_topic

log = logging.getLogger("clawfleet.jobs.verdicts")

CHECK_S = 1.0
FULL_EVERY_S = 3600.0


def verdict(v: DeviceView) -> tuple[str, str | None, int | None]:
    """``(state, reason, since_ms)``: revoked, stale (offline by the server's own clock), or the status."""
    if v.revoked_ms:
        return "revoked", None, v.revoked_ms
    if v.status == "offline" and v.status_reason == STALE_REASON:
        return "stale", v.status_reason, v.status_since_ms
    return v.status, v.status_reason, v.status_since_ms


def payload(device_id: str, state: str, reason: str | None, since_ms: int | None) -> bytes:
    """The retained JSON (:class:`shared.schemas.Availability`)."""
    return schemas.encode(schemas.Availability(device_id=device_id, ts=now_ms(), state=state,
                                               online=state == "online", since_ms=since_ms, reason=reason))


class VerdictPublisher:
    """Publishes changed verdicts; see the module docstring.

    Args:
        state: the fleet cache.
        client: ``() -> (paho client, connected)`` (ingest's client), or (None, False) when not running.
    """

    def __init__(self, state: FleetState, client: Callable[[], tuple[mqtt.Client | None, bool]]) -> None:
        self.state = state
        self.client = client
        self._version = -1
        self._sent: dict[str, tuple] = {}
        self._was_connected = False
        self._full_at = 0.0

    def run_once(self) -> int:
        """One round; returns how many verdicts were published."""
        client, connected = self.client()
        if client is None or not connected:
            self._was_connected = False
            return 0
        full = not self._was_connected or time.monotonic() >= self._full_at
        self._was_connected = True
        version, changed = self.state.changes_since(-1 if full else self._version)
        self._version = version
        if full or changed is None:
            self._full_at = time.monotonic() + FULL_EVERY_S
            views = self.state.views()
            gone = set(self._sent) - {v.device_id for v in views}
            for device_id in gone:
                client.publish(device_topic(device_id, Channel.AVAILABILITY), b"", qos=1, retain=True)
                self._sent.pop(device_id, None)
            if full:
                self._sent.clear()
        else:
            views = [v for d in changed if (v := self.state.get(d)) is not None]
        n = 0
        for v in views:
            now = verdict(v)
            if self._sent.get(v.device_id) == now:
                continue
            client.publish(device_topic(v.device_id, Channel.AVAILABILITY), payload(v.device_id, *now), qos=1,
                           retain=True)
            self._sent[v.device_id] = now
            n += 1
        if n > 20:
            log.info("published %d device verdicts", n)
        return n


def verdict_job(state: FleetState, client: Callable[[], tuple[mqtt.Client | None, bool]],
                database: Database) -> PeriodicJob:
    """The periodic job (every :data:`CHECK_S` seconds) publishing :class:`VerdictPublisher`'s verdicts."""
    return PeriodicJob("device-verdicts", CHECK_S, VerdictPublisher(state, client).run_once, database,
                       first_delay_s=CHECK_S)
