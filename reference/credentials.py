"""Where a legacy client put its credentials, tried in the legacy code's order.

Pure: takes the offered subprotocols, headers and query, returns what was found.
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Final

TOKEN_QUERY_KEYS: Final = ("token", "jwt", "auth_token", "access_token")
TICKET_QUERY_KEYS: Final = ("ticket", "auth_ticket", "ticket_id")


@dataclass(frozen=True)
class Credential:
    """A JWT or a ticket id, and where it came from (never log ``value``)."""

    kind: str  # "jwt" or "ticket"
    source: str  # "subprotocol", "header", "query" or "ticket"
    value: str


def decode_jwt_subprotocol(value: str) -> str:
    """Decode the ``jwt.`` value: base64url without padding, or a raw JWT."""
    try:
        decoded = base64.urlsafe_b64decode(value + "=" * (-len(value) % 4)).decode("ascii")
    except (binascii.Error, UnicodeDecodeError, ValueError):
        return value
    # Only a three-part result is a JWT; anything else means the value was sent raw.
    if decoded.count(".") == 2 and all(decoded.split(".")):
        return decoded
    return value


def find_credential(
    protocols: Sequence[str],
    headers: Mapping[str, str],
    query: Mapping[str, str],
) -> Credential | None:
    """The first credential found: subprotocol, Authorization header, query, ticket."""
    for entry in protocols:
        if entry.startswith("jwt.") and len(entry) > len("jwt."):
            return Credential("jwt", "subprotocol", decode_jwt_subprotocol(entry[len("jwt.") :]))
        for prefix in ("jwt-auth.", "bearer."):
            if entry.startswith(prefix) and len(entry) > len(prefix):
                return Credential("jwt", "subprotocol", entry[len(prefix) :])
    bearer = bearer_token(headers.get("Authorization"))
    if bearer:
        return Credential("jwt", "header", bearer)
    for key in TOKEN_QUERY_KEYS:
        if query.get(key):
            return Credential("jwt", "query", query[key])
    for key in TICKET_QUERY_KEYS:
        if query.get(key):
            return Credential("ticket", "ticket", query[key])
    return None


def bearer_token(authorization: str | None) -> str | None:
    """The token of an ``Authorization: Bearer <token>`` header, if that is what it is."""
    if not authorization:
        return None
    scheme, _, token = authorization.strip().partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        return None
    return token.strip()
