"""Fetching an update from the agent's own fleet and checking it before anything is installed.

The manifest comes from ``<dashboard_url>/agent/packages.json``; the package from the URL it names on
the same server. A package is accepted only when its size and SHA-256 match the manifest and the
manifest entry's Ed25519 signature over :func:`shared.packages.signed_message` verifies with the key
from the enrollment token (``update_public_key``): a server that was not the one that enrolled this
machine, or a file changed anywhere on the way, is refused.
"""

from __future__ import annotations

import hashlib
import json
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path

from shared.packages import Manifest, Package, signed_message, unb64url

MAX_MANIFEST_BYTES = 1 << 20
MAX_PACKAGE_BYTES = 1 << 30
"""Largest package the agent downloads (1 GiB)."""
TIMEOUT_S = 60.0


class UpdateRefused(Exception):
    """The package failed a check (signature, hash, size, version, origin); nothing was installed."""


class UpdateFailed(Exception):
    """The update could not be fetched or installed (network, disk, installer); the message says why."""


def fetch_manifest(fleet_url: str, timeout: float = TIMEOUT_S) -> Manifest:
    """The server's package manifest.

    Raises:
        UpdateFailed: the server cannot be reached or answers with something else than a manifest.
    """
    url = fleet_url.rstrip("/") + "/agent/packages.json"
    try:
        with urllib.request.urlopen(url, timeout=timeout) as resp:  # noqa: S310 - http(s) URL from the config
            data = json.loads(resp.read(MAX_MANIFEST_BYTES + 1)[:MAX_MANIFEST_BYTES])
        return Manifest.from_dict(data)
    except (OSError, ValueError) as exc:
        raise UpdateFailed(f"cannot read the fleet's package list {url}: {exc}") from None


def verify_signature(pkg: Package, public_key: str) -> None:
    """Check ``pkg``'s signature with ``public_key`` (base64url Ed25519).

    Raises:
        UpdateRefused: a bad or missing signature, or a bad key.
    """
    from cryptography.exceptions import InvalidSignature
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

    try:
        key = Ed25519PublicKey.from_public_bytes(unb64url(public_key))
        key.verify(unb64url(pkg.signature), signed_message(pkg.name, pkg.version, pkg.sha256))
    except (InvalidSignature, ValueError):
        raise UpdateRefused(f"{pkg.name}: the signature does not match this fleet's key (the package was not made "
                            "available by the server that enrolled this machine, or it was changed)") from None


def download(fleet_url: str, pkg: Package, dest_dir: Path, timeout: float = TIMEOUT_S) -> Path:
    """Download ``pkg`` from the fleet into ``dest_dir`` and check its size and SHA-256 on the way.

    Raises:
        UpdateRefused: the bytes are not the ones the manifest describes, or the URL leaves the fleet.
        UpdateFailed: network or disk errors.
    """
    base = urllib.parse.urlsplit(fleet_url.rstrip("/") + "/")
    url = urllib.parse.urljoin(fleet_url.rstrip("/") + "/", pkg.url.lstrip("/"))
    there = urllib.parse.urlsplit(url)
    if (there.scheme, there.netloc) != (base.scheme, base.netloc):
        raise UpdateRefused(f"{pkg.name}: the package URL {url[:200]} is not on this fleet's server")
    if pkg.size > MAX_PACKAGE_BYTES:
        raise UpdateRefused(f"{pkg.name}: {pkg.size} bytes is more than an agent package can be")
    dest_dir.mkdir(parents=True, exist_ok=True)
    dest = dest_dir / pkg.name
    part = dest.with_name(dest.name + ".part")
    h, size = hashlib.sha256(), 0
    try:
        with urllib.request.urlopen(url, timeout=timeout) as resp, open(part, "wb") as out:  # noqa: S310
            while block := resp.read(1 << 20):
                size += len(block)
                if size > pkg.size:
                    raise UpdateRefused(f"{pkg.name}: the download is larger than the {pkg.size} bytes announced")
                h.update(block)
                out.write(block)
    except UpdateRefused:
        part.unlink(missing_ok=True)
        raise
    except OSError as exc:
        part.unlink(missing_ok=True)
        raise UpdateFailed(f"cannot download {url}: {exc}") from None
    if size != pkg.size or h.hexdigest() != pkg.sha256:
        part.unlink(missing_ok=True)
        raise UpdateRefused(f"{pkg.name}: SHA-256 {h.hexdigest()} ({size} bytes) is not the announced {pkg.sha256} "
                            f"({pkg.size} bytes): damaged or tampered with")
    part.replace(dest)
    return dest


def check_file(path: Path, pkg: Package, public_key: str) -> None:
    """Check a package file already on disk (root's second look, :mod:`.system`): signature, size, SHA-256.

    Raises:
        UpdateRefused: any of them does not match.
    """
    verify_signature(pkg, public_key)
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    if path.stat().st_size != pkg.size or h.hexdigest() != pkg.sha256:
        raise UpdateRefused(f"{path.name}: the file is not the package the fleet signed")
