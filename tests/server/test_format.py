"""Dashboard number formatting: any value, however absurd, becomes short text without raising."""

from __future__ import annotations

import math
from zoneinfo import ZoneInfo

import pytest

from fleet_server.dashboard.parts.format import ago_h, bytes_h, date_time_h, duration_h, pct_h, rate_h, tokens_h, usd_h

ODD = [None, math.inf, -math.inf, math.nan, 10**30, -(10**30), 1e300, -5, 0, 2**63, 1.5]


@pytest.mark.parametrize("fmt", [bytes_h, rate_h, pct_h, duration_h, tokens_h, usd_h, ago_h, date_time_h])
@pytest.mark.parametrize("value", ODD, ids=repr)
def test_formatters_never_raise(fmt, value):
    text = fmt(value, ZoneInfo("Asia/Kolkata")) if fmt is date_time_h else fmt(value)
    assert isinstance(text, str) and text and len(text) < 40, text


def test_formatters_say_when_a_value_is_not_a_number():
    assert bytes_h(math.inf) == "–" and pct_h(math.nan) == "–" and duration_h(math.inf) == "–"
    assert tokens_h(10**30) == "1.0e+30" and tokens_h(1234) == "1.2k" and tokens_h(2**63) == "9.2e+18"
    assert usd_h(math.inf) == "–" and usd_h(1.234) == "$1.23"
    assert date_time_h(10**20, ZoneInfo("UTC")) == "–"


def test_times_are_shown_in_the_zone_given():
    assert date_time_h(1_765_000_000_000, ZoneInfo("Asia/Kolkata")) == "2025-12-06 11:16:40"
    assert date_time_h(1_765_000_000_000, ZoneInfo("UTC")) == "2025-12-06 05:46:40"
