"""The wire protocol: topics, schemas, enrollment tokens."""

import json

import pytest

from shared import schemas
from shared.enrollment import Enrollment, EnrollmentError, decode_token, encode_token, parse_broker_url
from shared.topics import (
    SERVER_STATUS_TOPIC,
    Channel,
    TopicError,
    device_topic,
    parse_device_topic,
    suggest_device_id,
)

TS = 1_795_234_253_457


def telemetry(**over):
    base = dict(v=1, device_id="dev-1", ts=TS, cpu_pct=12.5, mem_used_bytes=1, mem_total_bytes=2, mem_pct=50,
                disk_used_bytes=3, disk_total_bytes=4, disk_pct=75, swap_pct=0, net_rx_bps=10, net_tx_bps=20,
                load_avg=[0.1, 0.2, 0.3], uptime_s=100)
    base.update(over)
    return json.dumps(base).encode()


def test_topic_round_trip():
    t = device_topic("dev-1", Channel.TELEMETRY)
    assert t == "clawfleet/v1/dev-1/telemetry"
    assert parse_device_topic(t) == ("dev-1", Channel.TELEMETRY)


@pytest.mark.parametrize("topic", [
    "clawfleet/v1/Dev/telemetry", "clawfleet/v1/dev/nope", "clawfleet/v2/dev/status", "clawfleet/v1/dev",
    SERVER_STATUS_TOPIC, "clawfleet/v1/-x/status", "clawfleet/v1/a/b/status",
])
def test_bad_topics_raise(topic):
    with pytest.raises(TopicError):
        parse_device_topic(topic)


def test_device_id_rules():
    assert suggest_device_id("My Laptop.local") == "my-laptop-local"
    with pytest.raises(TopicError, match="invalid device id"):
        device_topic("UPPER", Channel.STATUS)
    with pytest.raises(TopicError):
        suggest_device_id("!!!")


def test_valid_telemetry_decodes():
    t = schemas.decode(Channel.TELEMETRY, telemetry(), "dev-1")
    assert isinstance(t, schemas.Telemetry)
    assert t.load_avg == (0.1, 0.2, 0.3)
    assert schemas.decode(Channel.TELEMETRY, schemas.encode(t), "dev-1") == t


@pytest.mark.parametrize(("raw", "reason", "words"), [
    (b"\xff\xfe", "not_json", "not UTF-8 JSON"),
    (b"[1,2]", "not_object", "JSON object"),
    (telemetry(v=2), "bad_version", "protocol version 2"),
    (telemetry(cpu_pct=101), "invalid", "cpu_pct"),
    (telemetry(ts=5), "invalid", "ts"),
    (telemetry(load_avg=[-1, 0, 0]), "invalid", "load"),
    (telemetry(device_id="other"), "device_mismatch", "differs from the topic"),
    (b"{" + b" " * schemas.MAX_PAYLOAD_BYTES + b"}", "too_large", "limit"),
])
def test_invalid_payloads_name_the_problem(raw, reason, words):
    with pytest.raises(schemas.PayloadError) as exc:
        schemas.decode(Channel.TELEMETRY, raw, "dev-1")
    assert exc.value.reason == reason
    assert words in str(exc.value)


def test_missing_field_is_named():
    data = json.loads(telemetry())
    del data["mem_pct"]
    with pytest.raises(schemas.PayloadError, match="mem_pct: Field required"):
        schemas.decode(Channel.TELEMETRY, json.dumps(data).encode(), "dev-1")


def test_unknown_fields_are_ignored_for_forward_compatibility():
    t = schemas.decode(Channel.TELEMETRY, telemetry(gpu_pct=5), "dev-1")
    assert not hasattr(t, "gpu_pct")


def test_units_are_declared_on_fields():
    fields = schemas.Telemetry.model_json_schema()["properties"]
    assert fields["mem_used_bytes"]["unit"] == "bytes"
    assert fields["cpu_pct"]["unit"] == "percent"
    assert fields["ts"]["unit"] == "epoch_ms"


def test_status_and_batches():
    s = schemas.decode(Channel.STATUS, b'{"v":1,"device_id":"d","ts":%d,"state":"offline","reason":"last-will"}'
                       % TS, "d")
    assert s.state == "offline"
    batch = {"v": 1, "device_id": "d", "ts": TS, "records": [
        {"id": "abcdef0123456789", "ts": TS, "input_tokens": 10, "output_tokens": 2, "total_tokens": 12}]}
    u = schemas.decode(Channel.USAGE, json.dumps(batch).encode(), "d")
    assert u.records[0].cost_usd is None  # "no price" stays distinct from $0
    with pytest.raises(schemas.PayloadError, match="bad_channel|devices do not publish"):
        schemas.decode(Channel.CMD, b"{}", "d")


def test_enrollment_token_round_trip():
    e = Enrollment(url="mqtts://fleet.example:8883", device_id="dev-1", api_key="cfk_" + "x" * 43, ca_pem="PEM")
    tok = encode_token(e)
    assert tok.startswith("cfe1.")
    assert decode_token(tok[:30] + "\n" + tok[30:]) == e  # copy-paste line breaks are fine


@pytest.mark.parametrize(("token", "words"), [
    ("hello", "starts with 'cfe1.'"),
    ("cfe1.!!!", "damaged or truncated"),
    ("cfe1.e30", "not valid"),
])
def test_bad_tokens_say_what_is_wrong(token, words):
    with pytest.raises(EnrollmentError, match=words):
        decode_token(token)


def test_broker_url():
    assert parse_broker_url("mqtts://h") == ("mqtts", "h", 8883)
    assert parse_broker_url("mqtt://127.0.0.1:18830") == ("mqtt", "127.0.0.1", 18830)
    with pytest.raises(ValueError, match="mqtt://host:port"):
        parse_broker_url("http://h")
