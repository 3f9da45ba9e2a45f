"""The connection log: one info record when a client connection opens and one when it
closes, on the `strangler.connections` logger.

The fields are bounded facts (route name, mode, reason, flag, backend, dialect; on
close the outcome, close code and duration), never a user id, token, connection id or
raw path, so the records may go to any log store at info level.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from typing import Any

log = logging.getLogger("strangler.connections")


@dataclass(slots=True)
class ConnectionLog:
    """The log of one connection, from the moment the proxy starts relaying it."""

    route: str  # the route's name, never the path (paths may carry user ids)
    mode: str
    reason: str
    flag: str | None
    backend: str  # the backend that answers the client
    dialect: str
    started: float = field(default_factory=time.monotonic)

    def _fields(self) -> dict[str, Any]:
        return {
            "route": self.route,
            "mode": self.mode,
            "reason": self.reason,
            "flag": self.flag,
            "backend": self.backend,
            "dialect": self.dialect,
        }

    def opened(self) -> None:
        log.info("connection opened", extra=self._fields())

    def closed(self, outcome: str, close_code: int | None) -> None:
        """`outcome` is the connection's metric outcome (strangler_connections_total);
        `close_code` the code that ended the client's side: the one it sent when it closed
        first, else the one it was sent (1006 or None when it vanished without one)."""
        log.info(
            "connection closed",
            extra={
                **self._fields(),
                "outcome": outcome,
                "close_code": close_code,
                "duration_s": round(time.monotonic() - self.started, 3),
            },
        )
