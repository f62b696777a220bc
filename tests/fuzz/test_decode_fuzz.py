"""Property: :func:`shared.schemas.decode` raises nothing but PayloadError, whatever the bytes,
and whatever it accepts fits the store (finite numbers, 64-bit integers, no NUL, total = parts)."""

from __future__ import annotations

import json

import pytest
from fuzz_helpers import JSON_VALUES, POISON, model_violations, mutated
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from payload_helpers import now_ms, telemetry

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


def _outcome(fn, channel: Channel, raw: bytes) -> object:
    schema = schemas.SCHEMA_BY_CHANNEL[channel]
    try:
        model = fn(schema, raw, "fuzz-dev", {"now_ms": now_ms()})
    except schemas.PayloadError as exc:
        return ("rejected", exc.reason)
    return None if model is None else ("accepted", model.model_dump())


def _fast_agrees(channel: Channel, raw: bytes) -> None:
    """The one-pass fast path accepts only what the reference path accepts, with the same result."""
    if channel not in schemas.SCHEMA_BY_CHANNEL or len(raw) > schemas.MAX_PAYLOAD_BYTES:
        return
    fast = _outcome(schemas._fast_decode, channel, raw)
    if fast is not None:
        assert fast == _outcome(schemas._reference_decode, channel, raw)


@FUZZ
@given(st.sampled_from(DEVICE_PUBLISH_CHANNELS).flatmap(lambda ch: st.tuples(st.just(ch), mutated(ch, "fuzz-dev"))))
def test_the_fast_path_accepts_only_what_the_reference_path_accepts(case):
    _fast_agrees(*case)


@FUZZ
@given(CHANNELS, JSON_VALUES)
def test_the_fast_path_agrees_on_random_json(channel, value):
    _fast_agrees(channel, json.dumps(value).encode())


@settings(FUZZ, max_examples=50)
@given(CHANNELS, POISON)
def test_the_fast_path_agrees_on_poison(channel, raw):
    _fast_agrees(channel, raw)


def test_the_fast_path_leaves_non_finite_numbers_and_a_missing_version_to_the_reference_path():
    data = telemetry("fuzz-dev")
    good = json.dumps(data).encode()
    no_version = json.dumps({k: v for k, v in data.items() if k != "v"}).encode()
    assert schemas._fast_decode(schemas.Telemetry, good, "fuzz-dev", {"now_ms": now_ms()}) is not None
    for raw, reason in ((good[:-1] + b',"x":NaN}', "not_json"), (good[:-1] + b',"x":-Infinity}', "not_json"),
                        (no_version, "bad_version")):
        assert schemas._fast_decode(schemas.Telemetry, raw, "fuzz-dev", {"now_ms": now_ms()}) is None
        with pytest.raises(schemas.PayloadError) as exc:
            schemas.decode(Channel.TELEMETRY, raw, expected_device_id="fuzz-dev", now_ms=now_ms())
        assert exc.value.reason == reason
