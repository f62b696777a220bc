"""Per-device budgets: token buckets per (device, channel) with a fake clock, and the option's
parser (bad values name the option and the fix)."""

from __future__ import annotations

import paho.mqtt.client as mqtt
import pytest

from fleet_server.ingest.limits import (
    DEFAULT_BUDGETS,
    MIB,
    OPTION,
    Budget,
    DeviceLimits,
    LimitError,
    parse_budgets,
)
from shared.topics import Channel, device_topic


class Clock:
    def __init__(self) -> None:
        self.t = 1000.0

    def __call__(self) -> float:
        return self.t


def message(device_id: str, channel: Channel, size: int) -> mqtt.MQTTMessage:
    msg = mqtt.MQTTMessage(mid=7, topic=device_topic(device_id, channel).encode())
    msg.payload, msg.qos = b"x" * size, 1
    return msg


def test_a_burst_then_the_sustained_rate_per_device_and_channel():
    clock = Clock()
    limits = DeviceLimits({Channel.TELEMETRY: Budget(2, 5)}, clock)
    assert [limits.allow("a", Channel.TELEMETRY, 100) for _ in range(7)] == [True] * 5 + [False] * 2
    assert limits.allow("b", Channel.TELEMETRY, 100), "another device has its own budget"
    assert limits.allow("a", Channel.USAGE, 10**6), "a channel without a budget is not limited"
    clock.t += 1.0  # 2 messages/s
    assert [limits.allow("a", Channel.TELEMETRY, 100) for _ in range(3)] == [True, True, False]
    clock.t += 100.0
    assert sum(limits.allow("a", Channel.TELEMETRY, 100) for _ in range(10)) == 5, "the bucket holds the burst only"


def test_bytes_bound_what_a_device_pushes_through():
    clock = Clock()
    limits = DeviceLimits({Channel.USAGE: Budget(1000, 1000, 1000, 3000)}, clock)
    assert [limits.allow("a", Channel.USAGE, 1000) for _ in range(4)] == [True, True, True, False]
    clock.t += 1.0
    assert limits.allow("a", Channel.USAGE, 1000) and not limits.allow("a", Channel.USAGE, 1)


def test_check_rejects_as_not_received_with_a_reason_that_says_why():
    from fleet_server.ingest.receipts import counts_as_received

    limits = DeviceLimits({Channel.USAGE: Budget(1, 1)}, Clock())
    assert limits.check(message("a", Channel.USAGE, 10)) is None
    reject = limits.check(message("a", Channel.USAGE, 10))
    assert reject is not None and reject.reason == "rate_limited" and reject.device_id == "a"
    assert not counts_as_received(reject), "no receipt covers it: the agent sends it again"
    assert "usage budget of 1 messages/s" in reject.error and OPTION in reject.error
    bad = mqtt.MQTTMessage(mid=1, topic=b"not/a/device/topic")
    assert limits.check(bad) is None, "the validation judges other topics"


def test_defaults_are_far_above_a_real_agent():
    # an agent sampling every second sends 1 telemetry message/s and at most one usage and one logs batch per
    # interval (<= 256 KiB each)
    assert DEFAULT_BUDGETS[Channel.TELEMETRY].per_s >= 10 and DEFAULT_BUDGETS[Channel.TELEMETRY].burst >= 600
    for ch in (Channel.USAGE, Channel.LOGS):
        assert DEFAULT_BUDGETS[ch].per_s >= 10 and DEFAULT_BUDGETS[ch].burst_bytes >= 4 * 256 * 1024


def test_option_values():
    budgets = parse_budgets(["telemetry=20/s:2000", "usage=2MiB/s:32MiB", "logs=5/s"])
    assert budgets[Channel.TELEMETRY] == Budget(20, 2000)
    assert budgets[Channel.USAGE].bytes_per_s == 2 * MIB and budgets[Channel.USAGE].burst_bytes == 32 * MIB
    assert budgets[Channel.LOGS].per_s == 5 and budgets[Channel.LOGS].burst == 300
    assert budgets[Channel.STATUS] == DEFAULT_BUDGETS[Channel.STATUS]
    assert parse_budgets([]) == DEFAULT_BUDGETS and parse_budgets(["off"]) is None
    for bad, says in (("telemetry", "CHANNEL=RATE/s"), ("cmd=5/s", "the channel is one of"),
                      ("telemetry=1MiB/s", "usage and logs only"), ("usage=0/s", "above 0"),
                      ("usage=5parsecs/s", "B, KiB, MiB"), ("usage=1.2.3/s", "not a number")):
        with pytest.raises(LimitError, match=OPTION) as err:
            parse_budgets([bad])
        assert says in str(err.value), bad


def test_every_channel_a_device_publishes_has_a_default_budget_the_option_can_change():
    from shared.topics import DEVICE_PUBLISH_CHANNELS

    assert set(DEVICE_PUBLISH_CHANNELS) <= set(DEFAULT_BUDGETS)
    budgets = parse_budgets(["snooze=1/s:5"])
    assert budgets is not None and budgets[Channel.SNOOZE] == Budget(1, 5)
