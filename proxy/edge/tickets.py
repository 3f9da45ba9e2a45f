"""Routing ticket connections by user: who a ticket stands for, asked without redeeming it.

A ticket (`?ticket=`) is single use and only its issuer can redeem it, so the proxy
never tries. When an introspection URL is configured, the proxy asks it who the ticket
stands for (`GET <url>?ticket=<t>` answering `{"user_id": ...}`, 404 when not valid)
so the flags can route the user; the ticket itself still travels to the backend.
Answers are cached briefly, and a failing introspection only means "anonymous".
"""

from __future__ import annotations

import logging
import time
from collections import OrderedDict

import aiohttp

log = logging.getLogger("strangler.tickets")

_MAX_CACHED = 10_000


class TicketResolver:
    """Resolves tickets to user ids through the issuer's introspection endpoint."""

    def __init__(self, url: str, *, ttl: float, timeout: float) -> None:
        self.url = url
        self.ttl = ttl
        self.timeout = aiohttp.ClientTimeout(total=timeout)
        self._cache: OrderedDict[str, tuple[str | None, float]] = OrderedDict()

    async def user_id(self, session: aiohttp.ClientSession, ticket: str) -> str | None:
        """The user the ticket stands for, or None (unknown, used, expired, or no answer)."""
        now = time.monotonic()
        cached = self._cache.get(ticket)
        if cached is not None and cached[1] > now:
            return cached[0]
        user_id = await self._ask(session, ticket)
        self._cache[ticket] = (user_id, now + self.ttl)
        self._cache.move_to_end(ticket)
        while len(self._cache) > _MAX_CACHED:
            self._cache.popitem(last=False)
        return user_id

    async def _ask(self, session: aiohttp.ClientSession, ticket: str) -> str | None:
        try:
            async with session.get(
                self.url, params={"ticket": ticket}, timeout=self.timeout
            ) as answer:
                if answer.status != 200:
                    return None
                body = await answer.json(content_type=None)
        except (aiohttp.ClientError, TimeoutError, ValueError) as exc:
            log.warning("ticket introspection failed: %s", type(exc).__name__)
            return None
        user_id = body.get("user_id") if isinstance(body, dict) else None
        return str(user_id) if user_id not in (None, "") else None
