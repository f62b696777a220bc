"""The ``clawfleet_alerts_firing{rule,severity}`` series of ``/metrics``."""

from __future__ import annotations

from collections.abc import Iterator

from peewee import fn
from prometheus_client.core import GaugeMetricFamily, Metric

from fleet_server.store.alert_models import AlertIncident, AlertRule


def alert_metrics() -> Iterator[Metric]:
    """Firing incidents per rule (its name) and severity; every enabled rule appears, 0 when quiet."""
    firing = GaugeMetricFamily("clawfleet_alerts_firing", "alert incidents firing now, per rule and severity",
                               labels=["rule", "severity"])
    counts: dict[tuple[int, str], int] = {}
    for rule, sev, n in (AlertIncident.select(AlertIncident.rule, AlertIncident.severity, fn.COUNT(AlertIncident.id))
                         .where(AlertIncident.state == "firing")
                         .group_by(AlertIncident.rule, AlertIncident.severity).tuples()):
        counts[(rule, sev)] = int(n)
    names = {}
    for rid, name, sev, enabled in AlertRule.select(AlertRule.id, AlertRule.name, AlertRule.severity,
                                                    AlertRule.enabled).tuples():
        names[rid] = name
        if enabled:
            counts.setdefault((rid, sev), 0)
    for (rid, sev), n in sorted(counts.items()):
        firing.add_metric([names.get(rid, f"rule {rid} (deleted)"), sev], n)
    yield firing
