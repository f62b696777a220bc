"""Receipts on the agent side without a broker: parsing hostile receipts, merging them, what the
outbox keeps (real SQLite outbox files)."""

from __future__ import annotations

import json
import sqlite3

import pytest

from agent_tray.outbox import Outbox, OutMessage
from agent_tray.receipts import Confirmed, Unconfirmed
from shared import payloads, schemas
from shared.payloads import Coverage, Receipt
from shared.topics import Channel

TS = 1_795_234_253_457
OUTBOX = "0123456789abcdef"


def receipt(outbox: str = OUTBOX, **channels: Coverage) -> Receipt:
    return Receipt(ts=TS, outbox=outbox, channels=dict(channels))


def raw(channels: object, outbox: object = OUTBOX, **extra: object) -> bytes:
    return json.dumps({"v": 1, "ts": TS, "outbox": outbox, "channels": channels, **extra}).encode()


def test_receipts_parse_strictly():
    r = payloads.parse_receipt(raw({"usage": {"upto": 4, "ranges": [[6, 7], [9, 9]]}, "logs": {"upto": 1},
                                    "future-channel": {"upto": "x"}}, extra=1))
    assert r.channels == {"usage": Coverage(4, ((6, 7), (9, 9))), "logs": Coverage(1)}
    for bad, why in ((raw({}, outbox="../x"), "outbox"), (raw({}, outbox=None), "outbox"),
                     (raw([]), "channels"), (raw({"usage": {"upto": -1}}), "upto"),
                     (raw({"usage": {"upto": True}}), "upto"), (raw({"usage": {"upto": 2**53}}), "upto"),
                     (raw({"usage": {"upto": 4, "ranges": [[4, 5]]}}), "ascending"),
                     (raw({"usage": {"upto": 4, "ranges": [[7, 6]]}}), "ascending"),
                     (raw({"usage": {"upto": 1, "ranges": [[3, 5], [5, 8]]}}), "ascending"),
                     (raw({"usage": {"upto": 1, "ranges": [[3, 3]] * 40}}), "at most"),
                     (raw({"usage": {"upto": 1, "ranges": [[3]]}}), "first, last"),
                     (b'{"v":2,"ts":1795234253457}', "protocol version"), (b"\xff", "not UTF-8")):
        with pytest.raises(ValueError, match=why):
            payloads.parse_receipt(bad)


def test_confirmed_ignores_other_outboxes_going_backwards_and_the_future():
    c = Confirmed(OUTBOX)
    last = {"usage": 10, "logs": 3, "telemetry": 50}
    assert c.merge(receipt(usage=Coverage(5, ((7, 8),))), last) == {"usage": Coverage(5, ((7, 8),))}
    assert c.merge(receipt("fedcba9876543210", usage=Coverage(10)), last) == {}  # a recreated outbox's
    assert c.merge(receipt(usage=Coverage(3)), last) == {}  # a replayed older receipt
    assert c.merge(receipt(usage=Coverage(6)), last) == {"usage": Coverage(8)}  # ranges are kept, gap closes
    assert c.merge(receipt(logs=Coverage(99)), last) == {"logs": Coverage(3)}  # no more than was ever assigned
    assert c.covers("usage", 8) and not c.covers("usage", 9) and not c.covers("telemetry", 1)


def test_unconfirmed_messages_come_due_counted_from_the_server_birth():
    u = Unconfirmed()
    u.sent(11, "usage", 1, now=100.0)
    u.sent(12, "usage", 2, now=110.0)
    assert u.due(now=125.0, since=0.0, after_s=20) == [11]
    assert u.due(now=125.0, since=120.0, after_s=20) == []  # the server came online at 120 s
    c = Confirmed(OUTBOX)
    c.merge(receipt(usage=Coverage(1)), {"usage": 2})
    assert u.settle(c) == [11] and len(u) == 1 and 12 in u


def test_outbox_numbers_each_kind_and_deletes_what_a_receipt_confirms(tmp_path):
    ob = Outbox(tmp_path / "o.sqlite")
    ob.put([OutMessage("usage", "t/u", b'{"v":1}') for _ in range(3)]
           + [OutMessage("telemetry", "t/t", b'{"v":1}', retain=True) for _ in range(2)])
    ob.put([OutMessage("usage", "t/u", b'{"v":1}')])
    assert [(m.kind, m.chan_seq) for m in ob.pending()] == [("usage", 1), ("usage", 2), ("usage", 3),
                                                            ("telemetry", 1), ("telemetry", 2), ("usage", 4)]
    assert ob.floors() == {"usage": 1, "telemetry": 1} and ob.last_seq("usage") == 4
    assert ob.confirm("usage", 1, [(3, 3)]) == 2
    assert ob.floors() == {"usage": 2, "telemetry": 1}
    assert ob.stats()["bytes"] == 4 * len(b'{"v":1}')
    outbox_id = ob.outbox_id
    ob.close()
    ob = Outbox(tmp_path / "o.sqlite")  # reopened: same id, numbering goes on
    ob.put([OutMessage("usage", "t/u", b'{"v":1}')])
    assert ob.outbox_id == outbox_id and ob.last_seq("usage") == 5
    ob.close()
    for name in ("o.sqlite", "o.sqlite-wal", "o.sqlite-shm"):
        (tmp_path / name).unlink(missing_ok=True)
    ob = Outbox(tmp_path / "o.sqlite")  # recreated: a new id, numbers start again
    assert ob.outbox_id != outbox_id and ob.last_seq("usage") == 0
    ob.close()


def test_a_schema_1_outbox_gets_numbers_for_what_it_holds(tmp_path):
    path = tmp_path / "outbox.sqlite"
    ob = Outbox(path)
    ob.put([OutMessage("usage", "t/u", b"{}"), OutMessage("telemetry", "t/t", b"{}"),
            OutMessage("usage", "t/u", b"{}")])
    ob.close()
    con = sqlite3.connect(path)  # back to what the release before receipts wrote
    con.executescript("DROP INDEX outbox_chan; ALTER TABLE outbox DROP COLUMN chan_seq; DROP TABLE info; "
                      "PRAGMA user_version = 1;")
    con.close()
    ob = Outbox(path)
    assert [(m.kind, m.chan_seq) for m in ob.pending()] == [("usage", 1), ("telemetry", 1), ("usage", 2)]
    assert ob.last_seq("usage") == 2 and len(ob.outbox_id) == 16
    ob.close()


def test_stamped_payloads_decode_with_their_delivery_fields():
    body = payloads.encode(payloads.LogBatch(device_id="d", ts=TS, records=[]))
    stamped = payloads.stamp(body, OUTBOX, 7, 5)
    model = schemas.decode(Channel.LOGS, stamped, "d", now_ms=TS)
    assert (model.outbox, model.seq, model.seq_floor) == (OUTBOX, 7, 5)
    assert payloads.stamp(b"{}", OUTBOX, 1, 1) == b'{"outbox":"0123456789abcdef","seq":1,"seq_floor":1}'
    assert schemas.delivery_fields(b'{"outbox":"0123456789abcdef","seq":3,"seq_floor":9,"ts":"bad"}') == (
        OUTBOX, 3, 3)  # a floor above the message's own number is capped at it
    assert schemas.delivery_fields(b'{"outbox":"0123456789abcdef","seq":3}') == (OUTBOX, 3, 1)  # no floor: no jump
    for bad in (b"[]", b"not json", b'{"outbox":"x","seq":1}', b'{"outbox":"0123456789abcdef","seq":0}',
                b'{"outbox":"0123456789abcdef","seq":1.5}'):
        assert schemas.delivery_fields(bad) is None


def test_resends_go_in_batches_paced_by_receipt_progress():
    from agent_tray.receipts import RESEND_BATCH, RESEND_PAUSE_S, ResendPacer

    pacer = ResendPacer()
    due = list(range(100))
    assert pacer.take(due, now=1000.0) == due[:RESEND_BATCH]  # oldest first, one batch
    assert pacer.take(due[RESEND_BATCH:], now=1001.0) == []  # no receipt progress: pause
    pacer.progress()  # a receipt confirmed something: the server keeps up
    assert pacer.take(due[RESEND_BATCH:], now=1002.0) == due[RESEND_BATCH:2 * RESEND_BATCH]
    assert pacer.take(due, now=1002.0 + RESEND_PAUSE_S * 1.5) != []  # after the first pause
    assert pacer.take(due, now=1002.0 + RESEND_PAUSE_S * 3.1) == []  # the pause doubled
    assert pacer.backoff == 4


def test_a_message_overtaken_by_a_confirmed_later_one_is_due_at_once_a_slow_server_gets_nothing_twice():
    u = Unconfirmed()
    for k, at in enumerate((100.0, 110.0, 120.0, 130.0), start=1):
        u.sent(k, "telemetry", k, now=at)
    c = Confirmed(OUTBOX)
    c.merge(receipt(telemetry=Coverage(1)), {"telemetry": 4})  # a server 40 s behind, still confirming in order
    u.settle(c, now=140.0)
    assert u.due(now=160.0, since=0.0, after_s=30) == []  # waiting 40-50 s, yet receipts keep coming
    c.merge(receipt(telemetry=Coverage(1, ((3, 4),))), {"telemetry": 4})  # 2 was lost on the way
    u.settle(c, now=161.0)
    assert u.due(now=161.0, since=0.0, after_s=30) == [2]
    assert u.due(now=161.0 + 30, since=0.0, after_s=30) == [2]  # and still, until it is confirmed


def test_a_message_published_while_the_connection_was_down_does_not_stop_the_sender(tmp_path):
    """paho returns rc NO_CONN for a publish made while the connection is down, keeps the message and
    sends it after the reconnect; its ``is_published`` raised for it ever after, which stopped the
    sender (seen in the chaos test after a broker kill: the outbox never drained again)."""
    import paho.mqtt.client as mqtt

    from agent_tray.sender import OutboxSender

    class DownClient:
        """A paho client whose connection just went down (what ``publish`` answers then)."""

        def __init__(self) -> None:
            self.infos: list[mqtt.MQTTMessageInfo] = []

        def publish(self, topic: str, payload: bytes, qos: int, retain: bool) -> mqtt.MQTTMessageInfo:
            info = mqtt.MQTTMessageInfo(len(self.infos) + 1)
            info.rc = mqtt.MQTT_ERR_NO_CONN
            self.infos.append(info)
            return info

    ob = Outbox(tmp_path / "o.sqlite")
    ob.put([OutMessage("usage", "t/u", b'{"v":1}') for _ in range(3)])
    client = DownClient()
    sender = OutboxSender(ob, client, "t/receipt", lambda: None)  # type: ignore[arg-type]
    sender.drain(connected=True)
    assert len(client.infos) == 3
    sender.drain(connected=True)  # raised RuntimeError("Message publish failed: ... not currently connected")
    for info in client.infos:
        info._set_as_published()  # what paho does on each PUBACK after the reconnect
    sender.drain(connected=True)
    assert ob.stats()["messages"] == 0  # no receipts from this server: deleted on PUBACK
    ob.close()
