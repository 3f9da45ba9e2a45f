"""The two backends as the proxy dials them: URLs, forwarded headers, and the fallback.

The client must see what the serving backend said (DESIGN.md), so a failed handshake
becomes the refusal the client gets: the backend's own status, headers and body when it
answered, 502 or 504 when it could not be reached. When the unified router cannot be
reached and the configuration says so, the user is served by legacy instead (reason
`fallback`): a migration must never be the reason a user cannot chat.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import aiohttp
from aiohttp import web
from multidict import CIMultiDict
from prometheus_client import Histogram

from strangler.flags.evaluate import Decision
from strangler.flags.model import UNIFIED_ERROR_RATIO, Mode, Reason
from strangler.proxy.config import AuthStyle, Config, Route
from strangler.proxy.edge.target import origin_form, raw_query
from strangler.proxy.relay import passthrough, upstream
from strangler.proxy.relay.handshake import RawUpstream, open_upstream
from strangler.proxy.telemetry.metrics import Metrics

log = logging.getLogger("strangler.proxy")

# Headers that travel end to end to the backend (everything else is per hop).
FORWARDED_HEADERS = ("Authorization", "Cookie", "Origin", "User-Agent", "Accept-Language")

ROUTE_HEADER = "X-Strangler-Route"
# Tells the unified router a route never authenticated (docs/PROTOCOL.md).
AUTH_HEADER = "X-Strangler-Auth"

# The mode's primary backend: the one that answers the client.
PRIMARY = {
    Mode.LEGACY: "legacy",
    Mode.SHADOW: "legacy",
    Mode.LIVE: "unified",
    Mode.UNIFIED: "unified",
}

# What answers for the backend: an aiohttp WebSocket, or the byte tunnel's raw socket.
BackendSocket = TypeVar("BackendSocket")
Connect = Callable[[str, web.Request, list[str], CIMultiDict[str]], Awaitable[BackendSocket]]
# A flag's guard sample: (flag, what is watched, whether this sample is bad).
Observe = Callable[[str | None, str, bool], None]

_Failure = upstream.UpstreamRefused | upstream.UpstreamUnavailable


class Backends:
    """The client sessions to each backend, and opening the backend that answers."""

    def __init__(self, config: Config, metrics: Metrics, observe: Observe) -> None:
        """`observe` takes the unified router's handshake outcomes for the flag's guard."""
        self._config = config
        self._metrics = metrics
        self._observe = observe
        self._sessions: dict[str, aiohttp.ClientSession] = {}
        # Each backend's connect-time series, looked up once rather than on every handshake.
        self._connect_seconds: dict[str, Histogram] = {}

    def start(self) -> None:
        for backend in (self._config.legacy, self._config.unified):
            self._sessions[backend.name] = upstream.new_session(backend.connect_timeout)
        self._sessions["http"] = passthrough.new_session()

    async def stop(self) -> None:
        await asyncio.gather(*(s.close() for s in self._sessions.values()))
        self._sessions.clear()

    def session(self, backend_name: str) -> aiohttp.ClientSession:
        """The session for `legacy`, `unified`, or `http` (passthrough and introspection)."""
        return self._sessions[backend_name]

    def http(self) -> aiohttp.ClientSession:
        return self._sessions["http"]

    def url(self, backend_name: str, request: web.Request) -> str:
        """The backend's configured URL with the client's path (legacy) and query.

        Only the origin-form target is used (`edge.target`); `Proxy.handle` refused
        any request without one before a backend is dialled."""
        target = origin_form(request) or "/"
        if backend_name == "legacy":
            # The legacy backend keeps every route's own path and query.
            return self._config.legacy.url + target
        query = raw_query(target)
        return self._config.unified.url + (f"?{query}" if query else "")

    def headers(self, request: web.Request, route: Route, style: AuthStyle) -> CIMultiDict[str]:
        """What the backend is told of the client: end-to-end headers and the route."""
        headers: CIMultiDict[str] = CIMultiDict()
        for name in FORWARDED_HEADERS:
            for value in request.headers.getall(name, ()):
                headers.add(name, value)
        headers.update(passthrough.forwarded_for(request))
        headers[ROUTE_HEADER] = route.name
        if style is AuthStyle.NONE:
            headers[AUTH_HEADER] = "none"
        return headers

    async def open_primary(
        self,
        request: web.Request,
        route: Route,
        decision: Decision,
        offered: list[str],
        headers: CIMultiDict[str],
        connect: Connect[BackendSocket],
    ) -> tuple[str, Decision, BackendSocket] | web.Response:
        """The answering backend's socket (and the decision that stands), or the refusal
        the client must see."""
        backend_name = PRIMARY[decision.mode]
        unified = backend_name == "unified"
        try:
            sock = await connect(backend_name, request, offered, headers)
        except (upstream.UpstreamRefused, upstream.UpstreamUnavailable) as failure:
            self._count_failure(route, backend_name, failure)
            if unified and _server_side(failure):
                self._observe(decision.flag, UNIFIED_ERROR_RATIO, True)
            if not (unified and self._config.unified.fallback and _gateway(failure)):
                return self._refusal(route, backend_name, failure)
        else:
            if unified:
                self._observe(decision.flag, UNIFIED_ERROR_RATIO, False)
            return backend_name, decision, sock
        self._metrics.fallbacks.labels(route.name).inc()
        fallback = decision._replace(mode=Mode.LEGACY, reason=Reason.FALLBACK)
        try:
            return "legacy", fallback, await connect("legacy", request, offered, headers)
        except (upstream.UpstreamRefused, upstream.UpstreamUnavailable) as failure:
            self._count_failure(route, "legacy", failure)
            return self._refusal(route, "legacy", failure)

    def _count_failure(self, route: Route, backend_name: str, failure: _Failure) -> None:
        reason = failure.reason if isinstance(failure, upstream.UpstreamUnavailable) else "status"
        self._metrics.upstream_connect_failures.labels(backend_name, reason).inc()
        if isinstance(failure, upstream.UpstreamUnavailable):
            log.warning(
                "backend %s unavailable for route %s: %s", backend_name, route.name, failure
            )

    def _refusal(self, route: Route, backend_name: str, failure: _Failure) -> web.Response:
        """What the client sees: the backend's refusal mirrored, or 502/504."""
        if isinstance(failure, upstream.UpstreamRefused):
            self._metrics.handshake_refusals.labels(route.name, "upstream_refused").inc()
            return web.Response(status=failure.status, body=failure.body, headers=failure.headers)
        self._metrics.handshake_refusals.labels(route.name, "upstream_unavailable").inc()
        status = 504 if failure.reason == "handshake_timeout" else 502
        return web.Response(status=status, text=f"backend {backend_name} unavailable\n")

    async def connect_raw(
        self, backend_name: str, request: web.Request, offered: list[str], headers: CIMultiDict[str]
    ) -> RawUpstream:
        """The backend's raw socket after its 101, for the byte tunnel."""
        started = time.perf_counter()
        raw = await open_upstream(
            self.url(backend_name, request),
            protocols=offered,
            headers=headers,
            timeout=self._config.backend(backend_name).connect_timeout,
        )
        self._connect_time(backend_name).observe(time.perf_counter() - started)
        return raw

    async def connect(
        self, backend_name: str, request: web.Request, offered: list[str], headers: CIMultiDict[str]
    ) -> aiohttp.ClientWebSocketResponse[Any]:
        """The backend's aiohttp WebSocket, for the per-frame relay."""
        started = time.perf_counter()
        ws = await upstream.connect(
            self._sessions[backend_name],
            self.url(backend_name, request),
            protocols=offered,
            headers=headers,
            timeout=self._config.backend(backend_name).connect_timeout,
            max_message_bytes=self._config.relay.max_message_bytes,
        )
        self._connect_time(backend_name).observe(time.perf_counter() - started)
        return ws

    def _connect_time(self, backend_name: str) -> Histogram:
        series = self._connect_seconds.get(backend_name)
        if series is None:
            series = self._connect_seconds[backend_name] = (
                self._metrics.upstream_connect_seconds.labels(backend_name)
            )
        return series


def _server_side(failure: _Failure) -> bool:
    """Whether the backend failed, rather than refused this user (a 4xx is the router
    refusing the user, as legacy would): what the unified error guard counts."""
    return isinstance(failure, upstream.UpstreamUnavailable) or failure.status >= 500


def _gateway(failure: _Failure) -> bool:
    """Whether the backend is down or unreachable, so legacy may serve instead."""
    return isinstance(failure, upstream.UpstreamUnavailable) or failure.status in (502, 503, 504)
