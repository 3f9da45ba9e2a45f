"""Who may open a connection: the connection limits, then the client's verified identity.

The edge's two questions about a WebSocket handshake, asked before any backend is
dialled: is there room for one more connection from this peer, and who is the client
(a verified JWT, a ticket the issuer vouches for, anonymous, or a refusal with the
route's reason)? What follows from the answer (the mode, the refusal's style) is decided
elsewhere.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable

import aiohttp

from strangler.proxy.config import AuthStyle, Config, Route
from strangler.proxy.edge.identity import (
    AuthError,
    Credentials,
    Identity,
    JwtVerifier,
    TokenSource,
)
from strangler.proxy.edge.tickets import TicketResolver
from strangler.proxy.telemetry.metrics import Metrics


class Admission:
    """The connection limits and identity verification shared by every handshake."""

    __slots__ = ("_admitted", "_config", "_metrics", "_per_peer", "_session", "tickets", "verifier")

    def __init__(
        self, config: Config, metrics: Metrics, session: Callable[[], aiohttp.ClientSession]
    ) -> None:
        """`session` gives the HTTP client session that ticket introspection uses."""
        self._config = config
        self._metrics = metrics
        self._session = session
        self.verifier = JwtVerifier(config.jwt)
        t = config.tickets
        self.tickets = (
            TicketResolver(t.introspection_url, ttl=t.cache_ttl, timeout=t.timeout)
            if t.introspection_url
            else None
        )
        self._admitted = 0  # handshakes in progress plus open connections
        self._per_peer: Counter[str] = Counter()

    # Enter and leave are plain calls, not a context manager: a generator frame would
    # stay alive (and hold memory) for the whole life of every connection.

    def enter(self, peer: str) -> str | None:
        """Count one more connection from `peer`, or name the limit it would break."""
        limits = self._config.limits
        if self._admitted >= limits.max_connections:
            return "too_many_connections"
        if self._per_peer[peer] >= limits.max_connections_per_ip:
            return "too_many_from_client"
        self._admitted += 1
        self._per_peer[peer] += 1
        return None

    def leave(self, peer: str) -> None:
        """The connection `enter` counted has ended (or was refused after admission)."""
        self._admitted -= 1
        self._per_peer[peer] -= 1
        if not self._per_peer[peer]:
            del self._per_peer[peer]

    async def identify(
        self, route: Route, style: AuthStyle, credentials: Credentials
    ) -> Identity | AuthError | None:
        """The verified identity, None for anonymous, or why the route refuses the client."""
        if credentials.source is TokenSource.CONFLICT:
            self._metrics.auth_failures.labels(route.name, "ambiguous").inc()
            if style is AuthStyle.NONE:
                return None  # the backend authenticates nobody here; route as anonymous
            return AuthError("ambiguous", "the request presents more than one credential")
        if credentials.token is None:
            if credentials.ticket is not None and style is not AuthStyle.NONE:
                # Only the issuer redeems a ticket; the backend decides. Introspection,
                # when configured, lets the flags route the user it stands for.
                if self.tickets is None:
                    return None
                user_id = await self.tickets.user_id(self._session(), credentials.ticket)
                return Identity(user_id, {}) if user_id else None
            if style is AuthStyle.NONE or route.anonymous:
                return None
            self._metrics.auth_failures.labels(route.name, "missing").inc()
            return AuthError("missing")
        try:
            return self.verifier.verify(credentials.token)
        except AuthError as exc:
            self._metrics.auth_failures.labels(route.name, exc.reason).inc()
            if style is AuthStyle.NONE:
                return None  # the route never authenticated; a bad token is just anonymous
            return exc
