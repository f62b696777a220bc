"""The agent packages this server offers: files found in its package folders, hashed and signed.

Folders: ``<data_dir>/agent-packages`` (``clawfleet-server release add FILE`` copies files there)
and any release folder the admin points ``run --agent-packages DIR`` at (read only; e.g. where the
project's build scripts or a CI download put them). Files whose names are not package names
(:func:`shared.packages.parse_package_name`) are ignored. SHA-256 sums are cached in
``<data_dir>/agent-packages.index.json`` by path, size and modification time, so a 40 MB package is
hashed once; signatures are made with :mod:`fleet_server.releases.signing` on every scan (fast).
The offered version is the newest version present.
"""

from __future__ import annotations

import hashlib
import json
import logging
import threading
from pathlib import Path

from fleet_server.releases.signing import SigningKey, load_or_create
from shared.packages import Manifest, Package, parse_package_name, version_key
from shared.private_files import write_private

log = logging.getLogger("clawfleet.releases")

PACKAGE_DIR = "agent-packages"
"""The data dir's own package folder."""
INDEX_FILE = "agent-packages.index.json"
FILES_URL = "/agent/files/"
"""URL prefix of package downloads."""


def file_sha256(path: Path) -> str:
    """SHA-256 (hex) of a file, read in 1 MiB blocks."""
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


class Catalog:
    """Scans the package folders (again when one of them changed) and answers for the HTTP routes.

    Args:
        data_dir: the server's data dir (its package folder, the hash index, the signing key).
        extra_dirs: release folders to read as well (files there win over same-named ones in the data dir).
    """

    def __init__(self, data_dir: Path, extra_dirs: tuple[Path, ...] = ()) -> None:
        self.data_dir = Path(data_dir)
        self.dirs = (self.data_dir / PACKAGE_DIR, *(Path(d) for d in extra_dirs))
        self._key: SigningKey | None = None
        self._lock = threading.Lock()
        self._stamp: tuple | None = None
        self._manifest: Manifest | None = None
        self._paths: dict[str, Path] = {}

    @property
    def key(self) -> SigningKey:
        """The signing key (made on first use)."""
        if self._key is None:
            self._key = load_or_create(self.data_dir)
        return self._key

    def _dir_stamp(self) -> tuple:
        stamp = []
        for d in self.dirs:
            try:
                stamp.append((str(d), d.stat().st_mtime_ns))
            except OSError:
                stamp.append((str(d), None))
        return tuple(stamp)

    def manifest(self) -> Manifest:
        """The current :class:`~shared.packages.Manifest` (rescanned when a folder changed)."""
        with self._lock:
            stamp = self._dir_stamp()
            if self._manifest is None or stamp != self._stamp:
                self._manifest, self._paths = self._scan()
                self._stamp = stamp
            return self._manifest

    def path_of(self, name: str) -> Path | None:
        """The file behind package ``name``; None for any name not in the manifest (no path is built
        from the request)."""
        self.manifest()
        return self._paths.get(name)

    def sha256sums(self) -> str:
        """``SHA256SUMS`` text (``<hex>  <name>`` per line, as ``sha256sum -c`` reads it)."""
        return "".join(f"{p.sha256}  {p.name}\n" for p in self.manifest().packages)

    def _scan(self) -> tuple[Manifest, dict[str, Path]]:
        index_path = self.data_dir / INDEX_FILE
        try:
            index = json.loads(index_path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            index = {}
        found: dict[str, Path] = {}
        for d in self.dirs:
            if d.is_dir():
                for f in sorted(d.iterdir()):
                    if f.is_file() and parse_package_name(f.name):
                        found[f.name] = f
        packages: list[Package] = []
        new_index: dict[str, dict] = {}
        for name, path in found.items():
            fmt, os_name, arch, version = parse_package_name(name)  # type: ignore[misc]
            st = path.stat()
            key = str(path.resolve())
            cached = index.get(key)
            if cached and cached.get("size") == st.st_size and cached.get("mtime_ns") == st.st_mtime_ns:
                sha = cached["sha256"]
            else:
                sha = file_sha256(path)
                log.info("agent package %s: %d bytes, sha256 %s", name, st.st_size, sha)
            new_index[key] = {"size": st.st_size, "mtime_ns": st.st_mtime_ns, "sha256": sha}
            packages.append(Package(name=name, format=fmt, os=os_name, arch=arch, version=version, size=st.st_size,
                                    sha256=sha, signature=self.key.sign(name, version, sha), url=FILES_URL + name))
        if new_index != index:
            try:
                write_private(index_path, json.dumps(new_index, indent=1) + "\n")
            except OSError as exc:
                log.warning("cannot save the package hash index %s: %s", index_path, exc)
        packages.sort(key=lambda p: (version_key(p.version), p.name), reverse=True)
        offered = packages[0].version if packages else None
        return Manifest(offered, self.key.public_b64, packages), found
