"""Single-use WebSocket tickets, as ``POST /api/websocket/ticket`` hands them out."""

from __future__ import annotations

import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Final

TICKET_TTL_S: Final = 60.0


@dataclass(frozen=True)
class _Entry:
    user_id: str
    expires_at: float


class TicketStore:
    """Issues and redeems tickets; each redeems once, within its time to live."""

    def __init__(
        self, ttl: float = TICKET_TTL_S, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self._ttl = ttl
        self._clock = clock
        self._entries: dict[str, _Entry] = {}

    @property
    def ttl(self) -> float:
        """Seconds a ticket stays redeemable."""
        return self._ttl

    def issue(self, user_id: str) -> str:
        """A new ticket standing for ``user_id``."""
        self._forget_expired()
        ticket = secrets.token_urlsafe(24)
        self._entries[ticket] = _Entry(user_id, self._clock() + self._ttl)
        return ticket

    def redeem(self, ticket: str) -> str | None:
        """The ticket's user id, consuming the ticket; None if unknown, used or expired."""
        entry = self._entries.pop(ticket, None)
        if entry is None or entry.expires_at < self._clock():
            return None
        return entry.user_id

    def peek(self, ticket: str) -> str | None:
        """The ticket's user id without consuming it (introspection); None if not valid."""
        entry = self._entries.get(ticket)
        if entry is None or entry.expires_at < self._clock():
            return None
        return entry.user_id

    def _forget_expired(self) -> None:
        # Issuing is rare, so sweeping here keeps the store bounded without a timer task.
        now = self._clock()
        for ticket in [t for t, e in self._entries.items() if e.expires_at < now]:
            del self._entries[ticket]
