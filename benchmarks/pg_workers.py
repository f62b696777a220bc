"""PostgreSQL side of ``bench_ingest.py --postgres-workers``: what the server stored, read from
PostgreSQL instead of the SQLite file, and the CPU of every server process (the ``run`` process
and its ingest workers; not the broker).

A new sample is noticed by polling ``sample`` by its receive-time index every 50 ms (rows stamped
after the newest seen; once a second also the last 3 s again, for a batch of another worker that
was stamped earlier but committed later), so publish→stored latencies are measured the same way as
on SQLite: from the sample's ``ts`` (its publish time) to when the bench first sees the row.
"""

from __future__ import annotations

import threading
import time

import psutil

from benchmarks.bench_ingest import Sampler, ServerProcess


class PgSampler(Sampler):
    """:class:`benchmarks.bench_ingest.Sampler` for a server on PostgreSQL (``url``)."""

    def __init__(self, srv: ServerProcess, usage_records: int, log_records: int, url: str) -> None:
        import psycopg2

        self.srv, self.usage_records, self.log_records = srv, max(1, usage_records), max(1, log_records)
        self.latencies_ms: list[tuple[float, int]] = []
        self.stored: list[tuple[float, float]] = []
        self.cpu: list[tuple[float, float, float]] = []
        self.rss = {"server": 0, "broker": 0}
        self._stop = threading.Event()
        self._pg = psycopg2.connect(url)
        self._pg.autocommit = True
        self._seen: set[tuple[str, int]] = set()
        self._cursor_ms = 0
        self._base = self._counts()
        self._poll_samples(record=False)
        self._base_samples = len(self._seen)
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _counts(self) -> tuple[int, int]:
        cur = self._pg.cursor()
        cur.execute("SELECT (SELECT count(*) FROM usage_record), (SELECT count(*) FROM log_record)")
        return cur.fetchone()

    def _poll_samples(self, record: bool = True, lookback_ms: int = 0) -> None:
        cur = self._pg.cursor()
        cur.execute("SELECT device, ts, received_ms FROM sample WHERE received_ms > %s",
                    (self._cursor_ms - lookback_ms,))
        now = time.time()
        newest = self._cursor_ms
        for device, ts, received in cur.fetchall():
            newest = max(newest, received or 0)
            if (device, ts) not in self._seen:
                self._seen.add((device, ts))
                if record:
                    self.latencies_ms.append((now, int(now * 1000) - ts))
        self._cursor_ms = newest

    def stop(self) -> None:
        self._stop.set()
        self._thread.join()
        self._pg.close()

    def _run(self) -> None:
        k = 0
        while not self._stop.wait(0.05):
            now = time.time()
            self._poll_samples(lookback_ms=3000 if k % 20 == 0 else 0)
            u, lg = self._counts() if k % 4 == 0 else (None, None)
            if u is not None:
                self._last_counts = (u, lg)
            u, lg = getattr(self, "_last_counts", self._base)
            b = self._base
            self.stored.append((now, (len(self._seen) - self._base_samples) + (u - b[0]) / self.usage_records
                                + (lg - b[1]) / self.log_records))
            if k % 5 == 0:
                self._sample_procs(now)
            k += 1

    def _sample_procs(self, now: float) -> None:
        try:
            broker_pid = self.srv.broker.pid
            procs = [self.srv.server, *(p for p in self.srv.server.children(recursive=True) if p.pid != broker_pid)]
            server_cpu, rss = 0.0, 0
            for p in procs:
                try:
                    t = p.cpu_times()
                    server_cpu += t.user + t.system
                    rss += p.memory_info().rss
                except psutil.Error:
                    pass
            bt = self.srv.broker.cpu_times()
            self.cpu.append((now, server_cpu, bt.user + bt.system))
            self.rss["server"] = max(self.rss["server"], rss)
            self.rss["broker"] = max(self.rss["broker"], self.srv.broker.memory_info().rss)
        except psutil.Error:
            pass
