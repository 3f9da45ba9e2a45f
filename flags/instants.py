"""Instants in a flag file (``effective_at``, ``--at``): ISO 8601 with a timezone, or Unix
seconds; read and written the same way by every replica."""

from __future__ import annotations

import datetime


def parse_instant(text: str) -> float:
    """Unix time of an ISO 8601 timestamp with a timezone; ValueError says what is wrong."""
    try:
        when = datetime.datetime.fromisoformat(text.strip())
    except ValueError:
        raise ValueError(
            "is not an ISO 8601 timestamp (e.g. 2025-03-01T09:00:00Z or 2025-03-01T10:00:00+01:00)."
        ) from None
    return unix_time(when)


def format_instant(timestamp: float) -> str:
    """A Unix time as ISO 8601 in UTC (``2025-03-01T09:00:00Z``), for messages."""
    when = datetime.datetime.fromtimestamp(timestamp, datetime.UTC)
    return when.isoformat().replace("+00:00", "Z")


def unix_time(when: datetime.datetime) -> float:
    """Unix time of ``when``, which must carry a timezone; ValueError says why if not."""
    if when.tzinfo is None or when.utcoffset() is None:
        # A naive time would switch each replica at its own local clock's idea of it.
        raise ValueError(
            "needs a timezone (Z or an offset such as +01:00): without one, replicas in "
            "different zones would switch at different moments."
        )
    return when.timestamp()
