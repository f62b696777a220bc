"""Property: :func:`shared.schemas.decode` raises nothing but PayloadError, whatever the bytes,
and whatever it accepts fits the store (finite numbers, 64-bit integers, no NUL, total = parts)."""

from __future__ import annotations

import json

from fuzz_helpers import JSON_VALUES, POISON, model_violations, mutated
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from payload_helpers import now_ms

from shared import schemas
from shared.topics import DEVICE_PUBLISH_CHANNELS, Channel

FUZZ = settings(max_examples=300, deadline=None, database=None, suppress_health_check=[HealthCheck.too_slow])
CHANNELS = st.sampled_from(list(Channel))


def decode_or_reject(channel: Channel, raw: bytes) -> schemas.BaseModel | None:
    try:
        return schemas.decode(channel, raw, expected_device_id="fuzz-dev", now_ms=now_ms())
    except schemas.PayloadError as exc:
        assert exc.reason in {"too_large", "not_json", "not_object", "bad_version", "invalid", "ts_out_of_window",
                              "device_mismatch", "bad_channel"}
        return None


@FUZZ
@given(CHANNELS, st.binary(max_size=2000))
def test_random_bytes(channel, raw):
    decode_or_reject(channel, raw)


@FUZZ
@given(CHANNELS, JSON_VALUES)
def test_random_json(channel, value):
    decode_or_reject(channel, json.dumps(value).encode())


@settings(FUZZ, max_examples=50)
@given(CHANNELS, POISON)
def test_poison(channel, raw):
    decode_or_reject(channel, raw)


@FUZZ
@given(st.sampled_from(DEVICE_PUBLISH_CHANNELS).flatmap(lambda ch: st.tuples(st.just(ch), mutated(ch, "fuzz-dev"))))
def test_mutated_valid_payloads_are_rejected_or_within_bounds(case):
    channel, raw = case
    model = decode_or_reject(channel, raw)
    if model is not None:
        assert model_violations(model) == []
