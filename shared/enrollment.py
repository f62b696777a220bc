"""Enrollment tokens: everything an agent needs to join a fleet, in one copy-pasteable string.

Format: ``cfe1.`` + base64url (no padding) of a JSON object
``{"v": 1, "url": "mqtt[s]://host:port", "device_id": str, "api_key": str, "ca_pem": str?,
"wss_url": "wss://host:port/mqtt"?, "fleet_url": "https://host"?, "update_key": str?}``.
The token holds a secret (the API key): it is shown once, like the key itself. The optional fields
came later; an agent that does not know them ignores them, a token without them still works.
"""

from __future__ import annotations

import base64
import binascii
import json

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from shared.broker_url import parse_broker_url  # part of this module's names
from shared.topics import DEVICE_ID_RE

TOKEN_PREFIX = "cfe1."  # noqa: S105 - a format prefix, not a secret


class EnrollmentError(ValueError):
    """The enrollment token is damaged, truncated or not a ClawFleet token."""


class Enrollment(BaseModel):
    """Decoded enrollment token."""

    model_config = ConfigDict(extra="ignore", frozen=True)

    v: int = 1
    url: str = Field(description="broker URL, mqtt://host:port (loopback only) or mqtts://host:port")
    device_id: str = Field(pattern=DEVICE_ID_RE.pattern, max_length=63)
    api_key: str = Field(min_length=16, max_length=200)
    ca_pem: str | None = Field(default=None, description="PEM CA certificate the agent pins for mqtts")
    wss_url: str | None = Field(default=None, pattern=r"^wss://[^\s]+$", max_length=300,
                                description="MQTT over secure WebSockets, the fallback when the mqtts port is blocked")
    fleet_url: str | None = Field(default=None, pattern=r"^https?://[^\s]+$", max_length=300,
                                  description="the fleet server's web address: dashboard and agent packages")
    update_key: str | None = Field(default=None, pattern=r"^[A-Za-z0-9_-]{43}$",
                                   description="Ed25519 public key (32 bytes, base64url) that signs agent packages")


def encode_token(enrollment: Enrollment) -> str:
    """Serialise an :class:`Enrollment` to a ``cfe1.…`` token string."""
    raw = enrollment.model_dump_json(exclude_none=True).encode()
    return TOKEN_PREFIX + base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode_token(token: str) -> Enrollment:
    """Parse a ``cfe1.…`` token.

    Raises:
        EnrollmentError: the text is not a complete, valid token (the message says which part).
    """
    token = "".join(token.split())  # tolerate line breaks from copy-paste
    if not token.startswith(TOKEN_PREFIX):
        raise EnrollmentError(f"an enrollment token starts with {TOKEN_PREFIX!r}; check that you copied all of it")
    body = token[len(TOKEN_PREFIX):]
    try:
        data = json.loads(base64.urlsafe_b64decode(body + "=" * (-len(body) % 4)))
    except (binascii.Error, ValueError):
        raise EnrollmentError("the enrollment token is damaged or truncated; copy it again") from None
    try:
        enrollment = Enrollment.model_validate(data)
        parse_broker_url(enrollment.url)
    except (ValidationError, ValueError) as exc:
        raise EnrollmentError(f"the enrollment token is not valid: {exc}") from None
    return enrollment
