"""One open client connection, as the rest of the proxy reaches it.

Kept in the proxy's set while it relays, so shutdown, drain, plan, drift and the stall
watchdog can find it; closing it closes both sides with one code, whichever relay
(byte tunnel or per-frame) carries it.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import aiohttp
from aiohttp import web
from aiohttp.base_protocol import BaseProtocol

from strangler.flags.model import Mode
from strangler.proxy.config import Route
from strangler.proxy.relay.frame_relay import close_both
from strangler.proxy.relay.tunnel import Tunnel


@dataclass(eq=False, slots=True)
class Connection:
    """One open client connection, kept so shutdown, drain and plan can reach it."""

    route: Route
    mode: Mode
    client: web.WebSocketResponse[Any] | None  # None when tunnelled
    backend: aiohttp.ClientWebSocketResponse[Any] | None = None
    user_id: str | None = None  # kept in memory for re-evaluation; never logged
    claims: Mapping[str, Any] = field(default_factory=dict)
    ending: str | None = None  # "shutdown", "drained" or "stalled" when the proxy ends it
    drifted: bool = False  # its mode differs from what the flags now say
    client_protocol: BaseProtocol | None = None  # to see whether the client reads
    stalled_since: float | None = None
    tunnel: Tunnel | None = None  # the byte tunnel carrying it, if any

    async def close(self, code: int, reason: str) -> None:
        """Close both sides with one code (shutdown, drain, stall)."""
        if self.tunnel is not None:
            await self.tunnel.close(code, reason)
        elif self.client is not None:
            await close_both(self.client, self.backend, code, reason)
