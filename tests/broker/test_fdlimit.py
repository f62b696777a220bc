"""Open-file limits: ``raise_nofile_limit`` lifts soft to hard, and the managed Mosquitto inherits it
and gets a ``max_connections`` it can hold. Limits are changed in child processes only (real
``setrlimit``), so the test run's own limit stays as it was."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from broker.config import BrokerConfig
from broker.fdlimit import RESERVED_FDS, broker_max_connections
from broker.mosquitto import ManagedMosquitto

pytestmark = pytest.mark.skipif(os.name != "posix", reason="RLIMIT_NOFILE is POSIX")

REPO = Path(__file__).resolve().parents[2]


def _run_with_soft_limit(soft: int, code: str) -> dict:
    """Run ``code`` in a fresh interpreter whose soft RLIMIT_NOFILE starts at ``soft``; it prints JSON."""
    prelude = textwrap.dedent(f"""
        import json, resource, sys
        sys.path[:0] = [{str(REPO)!r}, {str(REPO / 'tests')!r}]
        resource.setrlimit(resource.RLIMIT_NOFILE, ({soft}, resource.getrlimit(resource.RLIMIT_NOFILE)[1]))
    """)
    out = subprocess.run([sys.executable, "-c", prelude + textwrap.dedent(code)], capture_output=True, text=True,
                         timeout=60, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def test_soft_limit_is_raised_to_the_hard_limit() -> None:
    import resource

    hard = resource.getrlimit(resource.RLIMIT_NOFILE)[1]
    if hard != resource.RLIM_INFINITY and hard <= 256:
        pytest.skip(f"hard limit {hard} leaves nothing to raise")
    res = _run_with_soft_limit(256, """
        from broker.fdlimit import raise_nofile_limit
        lim = raise_nofile_limit()
        again = raise_nofile_limit()
        print(json.dumps({"before": lim.before, "soft": lim.soft, "hard": lim.hard, "raised": lim.raised,
                          "again": again.raised, "now": resource.getrlimit(resource.RLIMIT_NOFILE)[0]}))
    """)
    assert res["before"] == 256 and res["raised"] and res["soft"] == res["now"] > 256
    assert res["soft"] == res["hard"] or sys.platform == "darwin"
    assert res["again"] is False  # idempotent


def test_managed_broker_inherits_the_raised_limit_and_caps_connections(free_port: int, tmp_path: Path) -> None:
    import resource

    hard = resource.getrlimit(resource.RLIMIT_NOFILE)[1]
    if hard != resource.RLIM_INFINITY and hard <= 256:
        pytest.skip(f"hard limit {hard} leaves nothing to raise")
    res = _run_with_soft_limit(256, f"""
        import psutil
        from broker.config import BrokerConfig
        from broker.mosquitto import ManagedMosquitto
        m = ManagedMosquitto(BrokerConfig(data_dir={str(tmp_path)!r}, port={free_port}))
        m.start()
        try:
            soft = psutil.Process(m.pid).rlimit(psutil.RLIMIT_NOFILE)[0]
            conf = m.cfg.conf_path.read_text()
        finally:
            m.stop()
        print(json.dumps({{"broker_soft": soft, "conf": conf, "own": resource.getrlimit(resource.RLIMIT_NOFILE)[0]}}))
    """)
    assert res["broker_soft"] == res["own"] > 256
    assert f"max_connections {res['own'] - RESERVED_FDS}" in res["conf"].splitlines()


def test_max_connections_follows_the_limit_or_the_config(tmp_path: Path, free_port: int) -> None:
    assert broker_max_connections(None) == -1
    assert broker_max_connections(1024) == 1024 - RESERVED_FDS
    assert broker_max_connections(20) == 16
    m = ManagedMosquitto(BrokerConfig(data_dir=tmp_path, port=free_port, max_connections=3))
    m.start()
    socks: list[socket.socket] = []
    try:
        assert "max_connections 3" in m.cfg.conf_path.read_text().splitlines()
        for _ in range(6):
            socks.append(socket.create_connection(("127.0.0.1", free_port), timeout=5))
            time.sleep(0.2)  # accepted in order
        socks[-1].settimeout(5)
        assert socks[-1].recv(1) == b""  # beyond the limit: closed by the broker at once
        socks[0].settimeout(0.5)
        with pytest.raises(TimeoutError):  # the first ones stay open (waiting for CONNECT)
            socks[0].recv(1)
    finally:
        for s in socks:
            s.close()
        m.stop()
