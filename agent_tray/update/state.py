"""An update's progress: ``<data dir>/update.json`` (written atomically), read by the new version at
start (to confirm it) and by the watchdog (to roll back), and reported in ``meta`` (``update``).

Fields: ``state`` (:data:`shared.payloads.UPDATE_STATES`), ``version`` (the one being installed),
``previous`` (the one that ran before), ``detail`` (one line), ``ts`` and ``deadline_ms`` (epoch ms:
when the new version must have reported by), ``kind`` (how it was installed, :mod:`.layout`).
"""

from __future__ import annotations

import json
import os
import time
from dataclasses import asdict, dataclass, replace
from pathlib import Path

from shared.payloads import MAX_UPDATE_DETAIL, UPDATE_STATES, UpdateInfo

STATE_FILE = "update.json"


def now_ms() -> int:
    """Current time, epoch milliseconds UTC."""
    return int(time.time() * 1000)


@dataclass(frozen=True)
class UpdateState:
    """One update's progress (see the module docstring)."""

    state: str
    version: str | None = None
    previous: str | None = None
    detail: str | None = None
    ts: int = 0
    deadline_ms: int | None = None
    kind: str | None = None

    def moved(self, state: str, detail: str | None = None, **changes: object) -> UpdateState:
        """This update in ``state`` now (``detail`` cut to one line of :data:`MAX_UPDATE_DETAIL` characters)."""
        if state not in UPDATE_STATES:
            raise ValueError(f"unknown update state {state!r}")
        line = " ".join(str(detail).split())[:MAX_UPDATE_DETAIL] if detail else None
        return replace(self, state=state, detail=line, ts=now_ms(), **changes)  # type: ignore[arg-type]

    def info(self) -> UpdateInfo:
        """The ``meta.update`` block."""
        return UpdateInfo(state=self.state, version=self.version, detail=self.detail, ts=self.ts)


def state_path(data_dir: Path) -> Path:
    """``<data_dir>/update.json``."""
    return Path(data_dir) / STATE_FILE


def load(data_dir: Path) -> UpdateState | None:
    """The last update's state, None when there is none (or the file is unreadable)."""
    try:
        data = json.loads(state_path(data_dir).read_text(encoding="utf-8"))
        return UpdateState(**{k: data.get(k) for k in UpdateState.__dataclass_fields__})
    except (OSError, ValueError, TypeError):
        return None


def save(data_dir: Path, state: UpdateState, owner: tuple[int, int] | None = None) -> UpdateState:
    """Write ``state`` atomically (mode 0600; ``owner`` (uid, gid) when root writes it for the service user)."""
    path = state_path(data_dir)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as fh:
        json.dump(asdict(state), fh)
    if owner is not None:
        os.chown(tmp, *owner)
    os.replace(tmp, path)
    return state
