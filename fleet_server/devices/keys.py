"""Device API keys: 256-bit random secrets, shown once, stored only as a hash and a hint."""

from __future__ import annotations

import hashlib
import secrets

KEY_PREFIX = "cfk_"


def generate_api_key() -> str:
    """A new API key: ``cfk_`` + 43 URL-safe characters (256 random bits)."""
    return KEY_PREFIX + secrets.token_urlsafe(32)


def hash_api_key(key: str) -> str:
    """SHA-256 hex of the key. Keys carry 256 bits of entropy, so a slow KDF adds nothing."""
    return hashlib.sha256(key.encode()).hexdigest()


def key_hint(key: str) -> str:
    """The last four characters, to tell keys apart in lists (``…AbC9``)."""
    return key[-4:]
