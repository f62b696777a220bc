"""Prometheus text exposition at ``/metrics`` (``prometheus_client``), off unless ``run --metrics``.

A custom collector reads the in-memory latest state, the ingest counters and one GROUP BY over the
usage table at scrape time; nothing is kept twice. Protected like the API: an API token as
``Authorization: Bearer cft_…`` (what Prometheus' ``authorization`` / ``bearer_token_file`` send), or
a dashboard session. Names follow Prometheus conventions: base units (bytes, seconds, ratios 0-1),
``_total`` for counters.

Series (labels in braces):

- ``clawfleet_device_up{device}`` 1 when online; ``clawfleet_device_last_seen_timestamp_seconds{device}``
- ``clawfleet_device_cpu_usage_ratio``, ``…_memory_used_bytes``, ``…_memory_total_bytes``,
  ``…_disk_used_bytes``, ``…_disk_total_bytes``, ``…_swap_usage_ratio``,
  ``…_network_receive_bytes_per_second``, ``…_network_transmit_bytes_per_second``,
  ``…_uptime_seconds``, ``…_openclaw_up`` (all ``{device}``, from the latest sample)
- ``clawfleet_tokens_total{device,agent,model,type}`` (type: input, output, cache_read, cache_write)
- ``clawfleet_messages_total``, ``clawfleet_failed_turns_total``, ``clawfleet_error_messages_total``,
  ``clawfleet_cost_usd_total``
  (priced messages only), ``clawfleet_unpriced_tokens_total`` (all ``{device,agent,model}``)
- ``clawfleet_alerts_firing{rule,severity}`` firing incidents per alert rule (0 for a quiet enabled rule)
- ``clawfleet_ingest_messages_received_total``, ``clawfleet_ingest_messages_stored_total{channel}``,
  ``clawfleet_ingest_messages_rejected_total{reason}``, ``clawfleet_ingest_batch_duration_seconds``
  (summary: ``_count``, ``_sum``), ``clawfleet_ingest_receipts_published_total`` (delivery receipts sent
  to agents)
- ``clawfleet_broker_dropped_messages_total``: messages the broker dropped (a subscriber's queue was
  full) since the broker started, from its ``$SYS`` tree (absent when the broker does not report it)
- ``clawfleet_usage_label_sets_folded`` (gauge): ``{device,agent,model}`` label sets summed into the
  ``(other)`` series

Bounded: the usage families carry at most :data:`MAX_USAGE_SERIES` ``{device,agent,model}`` label
sets, the ones with the most tokens; the rest are summed into one series labelled ``(other)``
(devices choose their agent and model names). The whole exposition is computed at most once per
:data:`CACHE_S` seconds, however many scrapers ask.
"""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Callable, Iterator

from fastapi import FastAPI
from fastapi.responses import Response
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric, SummaryMetricFamily
from prometheus_client.registry import Collector

from fleet_server.api.alert_metrics import alert_metrics
from fleet_server.ingest import Ingest
from fleet_server.state import FleetState
from fleet_server.store.usage import sums
from fleet_server.store.usage.sums import UsageSums

TOKEN_TYPES = ("input", "output", "cache_read", "cache_write")
MAX_USAGE_SERIES = 1000
"""``{device,agent,model}`` label sets per usage family at most; the rest become one ``(other)`` series."""
CACHE_S = 5.0
"""Seconds a computed exposition is served again (Prometheus scrapes every 15-60 s)."""
OTHER = "(other)"
_DEVICE_GAUGES = (
    ("cpu_usage_ratio", "CPU busy over the last interval, all cores (0-1)", lambda t: t.cpu_pct / 100),
    ("memory_used_bytes", "memory in use", lambda t: t.mem_used_bytes),
    ("memory_total_bytes", "physical memory", lambda t: t.mem_total_bytes),
    ("disk_used_bytes", "used on the system volume", lambda t: t.disk_used_bytes),
    ("disk_total_bytes", "size of the system volume", lambda t: t.disk_total_bytes),
    ("swap_usage_ratio", "swap in use (0-1)", lambda t: t.swap_pct / 100),
    ("network_receive_bytes_per_second", "received over the last interval, all NICs but loopback",
     lambda t: t.net_rx_bps),
    ("network_transmit_bytes_per_second", "sent over the last interval, all NICs but loopback",
     lambda t: t.net_tx_bps),
    ("uptime_seconds", "time since boot", lambda t: t.uptime_s),
    ("openclaw_up", "1 when the OpenClaw gateway answered its health check",
     lambda t: None if t.openclaw is None else float(t.openclaw.up)),
)


class FleetCollector(Collector):
    """Collects the series listed in the module docstring at scrape time."""

    def __init__(self, state: FleetState, ingest: Callable[[], Ingest | None]) -> None:
        self.state = state
        self.ingest = ingest

    def collect(self) -> Iterator[Metric]:
        """Yield every metric family (devices, tokens, ingest)."""
        yield from self._devices()
        yield from self._usage()
        yield from self._ingest()
        yield from alert_metrics()

    def _devices(self) -> Iterator[Metric]:
        up = GaugeMetricFamily("clawfleet_device_up", "1 when the device is online", labels=["device"])
        seen = GaugeMetricFamily("clawfleet_device_last_seen_timestamp_seconds", "newest sample, Unix time",
                                 labels=["device"])
        gauges = [(GaugeMetricFamily(f"clawfleet_device_{n}", h, labels=["device"]), f) for n, h, f in _DEVICE_GAUGES]
        for d in self.state.snapshot():
            up.add_metric([d.device_id], 1.0 if d.display_status == "online" else 0.0)
            if d.last_seen_ms is not None:
                seen.add_metric([d.device_id], d.last_seen_ms / 1000)
            if d.telemetry is not None:
                for family, get in gauges:
                    v = get(d.telemetry)
                    if v is not None:
                        family.add_metric([d.device_id], float(v))
        yield up
        yield seen
        for family, _ in gauges:
            yield family

    def _usage(self) -> Iterator[Metric]:
        labels = ["device", "agent", "model"]
        tokens = CounterMetricFamily("clawfleet_tokens", "LLM tokens used", labels=[*labels, "type"])
        messages = CounterMetricFamily("clawfleet_messages", "assistant messages", labels=labels)
        failed = CounterMetricFamily("clawfleet_failed_turns", "turns that ended without a reply (counted once)",
                                     labels=labels)
        errors = CounterMetricFamily("clawfleet_error_messages", 'assistant messages with stopReason "error"',
                                     labels=labels)
        cost = CounterMetricFamily("clawfleet_cost_usd", "cost of priced messages, US dollars", labels=labels)
        unpriced = CounterMetricFamily("clawfleet_unpriced_tokens", "tokens with no price rule and no recorded cost",
                                       labels=labels)
        rows, folded = fold_usage(sums.usage(["device", "agent", "model"]), MAX_USAGE_SERIES)
        for r in rows:
            key = [r.key["device"], r.key["agent"], r.key["model"]]
            for t in TOKEN_TYPES:
                tokens.add_metric([*key, t], getattr(r, f"{t}_tokens"))
            messages.add_metric(key, r.messages)
            failed.add_metric(key, r.failed_turns)
            errors.add_metric(key, r.error_messages)
            cost.add_metric(key, r.cost_usd)
            unpriced.add_metric(key, r.unpriced_tokens)
        folded_sets = GaugeMetricFamily("clawfleet_usage_label_sets_folded",
                                        "device/agent/model label sets summed into the (other) series")
        folded_sets.add_metric([], folded)
        yield from (tokens, messages, failed, errors, cost, unpriced, folded_sets)

    def _ingest(self) -> Iterator[Metric]:
        ing = self.ingest()
        counters = dict(ing.counters) if ing is not None else {}
        received = CounterMetricFamily("clawfleet_ingest_messages_received",
                                       "MQTT messages received by ingest since the server started")
        received.add_metric([], counters.get("received", 0))
        stored = CounterMetricFamily("clawfleet_ingest_messages_stored", "messages stored, by channel",
                                     labels=["channel"])
        rejected = CounterMetricFamily("clawfleet_ingest_messages_rejected", "messages rejected, by reason",
                                       labels=["reason"])
        for k, v in sorted(counters.items()):
            if k.startswith("stored_"):
                stored.add_metric([k[len("stored_"):]], v)
            elif k.startswith("rejected_"):
                rejected.add_metric([k[len("rejected_"):]], v)
        batch = SummaryMetricFamily("clawfleet_ingest_batch_duration_seconds",
                                    "time to store one batch (database commit and acknowledgements)")
        batch.add_metric([], counters.get("batches", 0), ing.batch_seconds if ing is not None else 0.0)
        receipts = CounterMetricFamily("clawfleet_ingest_receipts_published",
                                       "delivery receipts published to agents since the server started")
        receipts.add_metric([], counters.get("receipts_published", 0))
        yield from (received, stored, rejected, batch, receipts)
        dropped = ing.subscriber.drops.total if ing is not None else None
        if dropped is not None:
            family = CounterMetricFamily("clawfleet_broker_dropped_messages",
                                         "messages the broker dropped because a subscriber's queue was full, since "
                                         "the broker started")
            family.add_metric([], dropped)
            yield family


def fold_usage(rows: list[UsageSums], keep: int) -> tuple[list[UsageSums], int]:
    """The ``keep`` rows with the most tokens (ties: by key), plus one row keyed ``(other)`` summing the
    rest (when there is a rest). Returns ``(rows, number of rows folded)``."""
    if len(rows) <= keep:
        return rows, 0
    ranked = sorted(rows, key=lambda r: (-r.total_tokens, tuple(r.key.values())))
    other = UsageSums(key={k: OTHER for k in rows[0].key})
    for r in ranked[keep:]:
        other.add(r)
    return [*ranked[:keep], other], len(rows) - keep


class CachedExposition:
    """The registry's text exposition, computed at most once per ``ttl_s`` seconds (thread-safe: a
    scrape that arrives while another computes waits for it instead of computing again)."""

    def __init__(self, registry: CollectorRegistry, ttl_s: float = CACHE_S) -> None:
        self.registry, self.ttl_s = registry, ttl_s
        self._lock = threading.Lock()
        self._body, self._at = b"", -math.inf

    def get(self) -> bytes:
        """The exposition bytes (recomputed when older than ``ttl_s``)."""
        with self._lock:
            if time.monotonic() - self._at >= self.ttl_s:
                self._body, self._at = generate_latest(self.registry), time.monotonic()
            return self._body


def install_metrics(app: FastAPI, state: FleetState, ingest: Callable[[], Ingest | None]) -> None:
    """Serve ``/metrics`` from a registry holding only :class:`FleetCollector` (cached :data:`CACHE_S` s)."""
    registry = CollectorRegistry(auto_describe=False)
    registry.register(FleetCollector(state, ingest))
    cached = CachedExposition(registry)

    def metrics() -> Response:
        return Response(cached.get(), media_type=CONTENT_TYPE_LATEST)

    app.add_api_route("/metrics", metrics, methods=["GET"], include_in_schema=False)
