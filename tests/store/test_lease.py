"""The jobs lease on SQLite and PostgreSQL: one holder at a time, taken over once expired, given up
at once on release; leadership hands the jobs over when the holder stops renewing."""

from __future__ import annotations

import threading
import time

from fleet_server.jobs.leader import Leadership
from fleet_server.store.lease import holder_of, release, try_acquire


def test_one_holder_until_it_expires_or_is_released(store):
    assert try_acquire(store, "jobs", "a", 60_000)
    assert not try_acquire(store, "jobs", "b", 60_000)
    assert try_acquire(store, "jobs", "a", 60_000)  # renewal
    release(store, "jobs", "b")  # not b's: nothing happens
    assert holder_of("jobs")[0] == "a"
    release(store, "jobs", "a")
    assert try_acquire(store, "jobs", "b", 1)
    time.sleep(0.01)  # b's 1 ms lease expires
    assert try_acquire(store, "jobs", "c", 60_000)
    assert not try_acquire(store, "jobs", "b", 60_000)


def test_leadership_moves_when_the_holder_stops_renewing(store, db_url):
    if db_url.startswith("sqlite"):  # one process: always the leader, no lease
        led = []
        lone = Leadership(store, lambda: led.append(1), lambda: None)
        assert lone.start() and led == [1]
        lone.stop()
        return
    events: list[str] = []
    a = Leadership(store, lambda: events.append("a+"), lambda: events.append("a-"), lease_s=1.5, renew_s=0.3)
    b = Leadership(store, lambda: events.append("b+"), lambda: events.append("b-"), lease_s=1.5, renew_s=0.3)
    assert a.start()
    assert not b.start()
    time.sleep(1.0)
    assert events == ["a+"]  # a renews; b keeps trying
    a._stop.set()  # a freezes: no more renewals, nothing given up (like a process killed with SIGKILL)
    a._thread.join()
    frozen = time.monotonic()
    deadline = frozen + 10
    while "b+" not in events and time.monotonic() < deadline:
        time.sleep(0.05)
    took = time.monotonic() - frozen
    assert "b+" in events and took <= 1.5 + 0.3 + 1.0, took  # within lease + renew (+ a busy machine)
    stopped = threading.Event()
    b._loss = lambda: (events.append("b-"), stopped.set())
    b.stop()  # gives the lease up at once
    assert stopped.is_set() and holder_of("jobs")[1] == 0
