"""Redaction of stored transcripts: no credentials, no user ids, no configured fields.

Mismatch samples keep the events of both sides so a person can see what differed;
they must not become a store of tokens or personal data. Pure.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

REDACTED = "[redacted]"

# Keys whose values are credentials or identities wherever they appear.
SECRET_KEYS = frozenset(
    {
        "token",
        "access_token",
        "auth_token",
        "jwt",
        "ticket",
        "authorization",
        "password",
        "secret",
        "api_key",
        "cookie",
        "user_id",
        "email",
    }
)


def redact(event: Any, paths: Iterable[str] = ()) -> Any:
    """A copy of `event` with secret keys anywhere and the dotted `paths` replaced."""
    cleaned = _scrub(event)
    for path in paths:
        _replace(cleaned, path.split("."))
    return cleaned


def _scrub(value: Any) -> Any:
    if isinstance(value, Mapping):
        return {
            k: (REDACTED if str(k).lower() in SECRET_KEYS else _scrub(v)) for k, v in value.items()
        }
    if isinstance(value, list):
        return [_scrub(v) for v in value]
    return value


def _replace(value: Any, parts: list[str]) -> None:
    if not isinstance(value, dict) or not parts or parts[0] not in value:
        return
    if len(parts) == 1:
        value[parts[0]] = REDACTED
    else:
        _replace(value[parts[0]], parts[1:])
