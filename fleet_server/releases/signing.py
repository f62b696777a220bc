"""The server's package-signing key (Ed25519, ``cryptography``).

``<data_dir>/agent-signing.key``: the private key, PEM PKCS#8, mode 0600, made on first use. Its
public half (32 bytes, base64url) goes into every enrollment token as ``update_key``; agents accept
an update only when its signature over :func:`shared.packages.signed_message` checks out with it.
Losing the file means enrolled agents accept no update until they are enrolled again with a new
token: back it up with the rest of the data dir.
"""

from __future__ import annotations

import os
from pathlib import Path

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from shared.packages import b64url, signed_message
from shared.private_files import write_private

KEY_FILE = "agent-signing.key"
"""Name of the signing key in the server's data dir."""


class SigningKey:
    """The loaded key: :meth:`sign` packages, :attr:`public_b64` for tokens and the manifest."""

    def __init__(self, key: Ed25519PrivateKey) -> None:
        self._key = key
        raw = key.public_key().public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
        self.public_b64 = b64url(raw)
        """The public key, 32 bytes base64url (43 characters)."""

    def sign(self, name: str, version: str, sha256: str) -> str:
        """Signature (base64url, 64 bytes) of package ``name`` of ``version`` whose SHA-256 is ``sha256``."""
        return b64url(self._key.sign(signed_message(name, version, sha256)))


def key_path(data_dir: Path) -> Path:
    """``<data_dir>/agent-signing.key``."""
    return Path(data_dir) / KEY_FILE


def load_or_create(data_dir: Path) -> SigningKey:
    """Read the key, or make it (mode 0600) when the data dir has none.

    Raises:
        ValueError: the file exists but is not an Ed25519 private key (the message names it).
    """
    path = key_path(data_dir)
    if path.exists():
        try:
            key = serialization.load_pem_private_key(path.read_bytes(), password=None)
        except (OSError, ValueError, TypeError) as exc:
            raise ValueError(f"cannot read the package-signing key {path}: {exc}") from None
        if not isinstance(key, Ed25519PrivateKey):
            raise ValueError(f"{path} is not an Ed25519 private key")
        if os.name == "posix" and path.stat().st_mode & 0o077:
            os.chmod(path, 0o600)
        return SigningKey(key)
    key = Ed25519PrivateKey.generate()
    pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                            serialization.NoEncryption()).decode()
    Path(data_dir).mkdir(parents=True, exist_ok=True)
    write_private(path, pem)
    return SigningKey(key)


def public_key(data_dir: Path) -> str | None:
    """The public key (base64url) when the data dir has a signing key, else None (nothing is created)."""
    return load_or_create(data_dir).public_b64 if key_path(data_dir).exists() else None
