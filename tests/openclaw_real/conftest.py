"""Fixtures that run the REAL OpenClaw gateway (installed from the npm registry) against a stub LLM.

- ``real_openclaw`` (session): a running :class:`RealOpenClaw` (``.gateway``, ``.stub``, ``.install``).
  The first run installs Node 24 + OpenClaw into ``$CLAWFLEET_TEST_CACHE`` (default
  ``~/.cache/clawfleet-tests``): ~30 s cold (650 MB on disk), ~0.1 s warm. Skips ONLY when npm cannot
  reach the registry; every other install or start-up failure is a test error.
- Every test in this directory gets the ``openclaw`` mark; tests that use ``real_openclaw`` also
  get ``timeout(900)`` (unless they set their own) because the first one pays for the install.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from .harness import (
    PINNED_NODE,
    PINNED_OPENCLAW,
    OpenClawGateway,
    OpenClawInstall,
    RegistryUnreachable,
    default_cache_dir,
    ensure_openclaw,
)
from .stub_llm import StubLLM

_HERE = Path(__file__).parent
INSTALL_TIMEOUT_S = 900


@dataclass
class RealOpenClaw:
    install: OpenClawInstall
    gateway: OpenClawGateway
    stub: StubLLM


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    for item in items:
        if _HERE not in item.path.parents:
            continue
        item.add_marker(pytest.mark.openclaw)
        if "real_openclaw" in getattr(item, "fixturenames", ()) and item.get_closest_marker("timeout") is None:
            item.add_marker(pytest.mark.timeout(INSTALL_TIMEOUT_S))


def _progress(config: pytest.Config):
    """Print progress even while pytest captures output, so a CI log shows where the time went."""
    capman = config.pluginmanager.getplugin("capturemanager")
    reporter = config.pluginmanager.getplugin("terminalreporter")

    def say(msg: str) -> None:
        line = f"[openclaw] {msg}"
        if capman is not None and reporter is not None:
            with capman.global_and_fixture_disabled():
                reporter.write_line(line)
        else:
            print(line, flush=True)

    return say


@pytest.fixture(scope="session")
def openclaw_say(request: pytest.FixtureRequest):
    """``say(msg)``: a line on the terminal even under output capture (for numbers a CI log should show)."""
    return _progress(request.config)


@pytest.fixture(scope="session")
def openclaw_install(request: pytest.FixtureRequest) -> OpenClawInstall:
    """Node 24 + OpenClaw in the test cache (installed on first use)."""
    say = _progress(request.config)
    cache = default_cache_dir()
    say(f"ensure Node {PINNED_NODE} + openclaw@{PINNED_OPENCLAW} in {cache}")
    try:
        install = ensure_openclaw(cache, PINNED_OPENCLAW, node_version=PINNED_NODE, progress=say)
    except RegistryUnreachable as exc:
        pytest.skip(f"npm registry unreachable: {exc.reason}")
    say(
        f"{install.version_line}: {'reused cache' if install.reused else 'installed'} in {install.seconds:.1f}s "
        f"(node {install.timings.get('node', 0):.1f}s, openclaw {install.timings.get('openclaw', 0):.1f}s)"
    )
    return install


@pytest.fixture(scope="session")
def real_openclaw(
    request: pytest.FixtureRequest, openclaw_install: OpenClawInstall, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[RealOpenClaw]:
    """A running real OpenClaw gateway on loopback, onboarded against a fresh :class:`StubLLM`."""
    say = _progress(request.config)
    root = tmp_path_factory.mktemp("openclaw")
    t0 = time.monotonic()
    with StubLLM() as stub:
        say(f"stub LLM on {stub.base_url}; starting gateway in {root}")
        with OpenClawGateway(openclaw_install, stub.base_url, root, progress=say) as gateway:
            say(f"gateway ready in {time.monotonic() - t0:.1f}s; file log {gateway.log_file}")
            yield RealOpenClaw(openclaw_install, gateway, stub)
