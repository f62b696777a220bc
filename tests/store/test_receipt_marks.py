"""Receipt marks in the database, on SQLite and PostgreSQL: recorded inside a write transaction,
read back (PostgreSQL: ``FOR UPDATE``) and replaced."""

from __future__ import annotations

from fleet_server.ingest.messages import DeliveryMark, Received
from fleet_server.ingest.receipts import DeviceMarks, ReceiptBook
from fleet_server.store.locks import write_transaction
from fleet_server.store.models import ReceiptMark
from fleet_server.store.receipts import load_marks
from shared.payloads import Coverage
from shared.topics import Channel

OUTBOX = "0123456789abcdef"


def record(items: list, now_ms: int) -> dict[str, DeviceMarks]:
    """Record with a fresh book (nothing cached: every mark is read from the database)."""
    return ReceiptBook().record(items, now_ms)


def item(device_id: str, channel: str, seq: int, floor: int = 1, outbox: str = OUTBOX) -> Received:
    return Received(1, 1, device_id, Channel(channel), None, 0, mark=DeliveryMark(channel, outbox, seq, floor))


def test_marks_are_recorded_replaced_and_read_back(store):
    with write_transaction(store):
        out = record([item(f"d{i}", "usage", 1) for i in range(250)] + [item("d0", "usage", 3)], now_ms=1)
    assert len(out) == 250 and out["d0"].channels == {"usage": Coverage(1, ((3, 3),))}
    with write_transaction(store):  # more than one chunk of devices, an update of existing rows
        out = record([item("d0", "usage", 2), item("d0", "logs", 1), item("d249", "telemetry", 5, floor=5)],
                     now_ms=2)
    assert out["d0"].channels == {"usage": Coverage(3), "logs": Coverage(1)}
    assert out["d249"].channels == {"usage": Coverage(1), "telemetry": Coverage(5)}
    with write_transaction(store):
        rows = load_marks([f"d{i}" for i in range(250)])
    assert len(rows) == 250
    assert DeviceMarks.from_row(rows["d0"]).channels == {"usage": Coverage(3), "logs": Coverage(1)}
    assert ReceiptMark.get_by_id("d0").updated_ms == 2 and ReceiptMark.get_by_id("d1").updated_ms == 1


def test_a_new_outbox_replaces_the_marks(store):
    with write_transaction(store):
        record([item("d", "usage", 1), item("d", "usage", 2)], now_ms=1)
    with write_transaction(store):
        out = record([item("d", "usage", 1, outbox="fedcba9876543210")], now_ms=2)
    row = ReceiptMark.get_by_id("d")
    assert (row.outbox, row.prev_outbox) == ("fedcba9876543210", OUTBOX)
    assert out["d"].channels == {"usage": Coverage(1)}


def test_two_writers_recording_one_device_lose_no_mark(store, db_url):
    """Two ingest workers (two connections, two threads) storing messages of the same devices at once:
    on PostgreSQL they take turns on each device's row, also for its first mark."""
    import threading

    from fleet_server.store.models import db

    if db_url.startswith("sqlite"):
        return  # one process, one writer at a time (the write lock at BEGIN)
    errors: list[BaseException] = []

    def worker(parity: int) -> None:
        try:
            with db.connection_context():
                for seq in range(1 + parity, 81, 2):
                    with write_transaction(store):
                        record([item(f"race-{k}", "usage", seq) for k in range(5)], now_ms=seq)
        except BaseException as exc:  # reported by the main thread
            errors.append(exc)

    threads = [threading.Thread(target=worker, args=(p,)) for p in (0, 1)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert not errors, errors
    for k in range(5):
        row = ReceiptMark.get_by_id(f"race-{k}")
        assert DeviceMarks.from_row((row.device, row.outbox, row.prev_outbox, row.channels)).channels == {
            "usage": Coverage(80)}


def test_marks_of_a_rolled_back_batch_are_not_confirmed_later(store):
    book = ReceiptBook()
    with write_transaction(store):
        book.committed(book.record([item("d", "usage", 1)], now_ms=1))
    try:
        with write_transaction(store):
            book.record([item("d", "usage", 2)], now_ms=2)  # stored nothing in the end: no commit
            raise RuntimeError("the batch failed")
    except RuntimeError:
        pass
    with write_transaction(store):
        out = book.record([item("d", "usage", 3)], now_ms=3)
    assert out["d"].channels == {"usage": Coverage(1, ((3, 3),))}  # 2 is not confirmed
