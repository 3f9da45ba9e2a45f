"""The client-facing aiohttp application: one handler for every legacy path.

A WebSocket handshake goes through the pipeline of DESIGN.md in order: match the
route, read the credentials, verify the identity, let the flags decide the mode
(`flags.evaluate`, the one place a mode is decided), open the backend, and only then
answer the client with what the backend said. Plain HTTP on the legacy paths is
forwarded to the legacy backend.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import time
from collections import Counter, deque
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field, replace
from typing import Any, TypeVar

import aiohttp
from aiohttp import hdrs, web
from multidict import CIMultiDict
from prometheus_client import Counter as PromCounter

from strangler.flags.evaluate import Decision
from strangler.flags.model import UNIFIED_ERROR_RATIO, FlagSet, Mode, Reason
from strangler.flags.watch import FlagWatcher, ReloadResult
from strangler.legacy_adapters.base import Context
from strangler.legacy_adapters.registry import (
    adapter,
    connection_mode,
    needs_translation,
    select_dialect,
)
from strangler.legacy_adapters.translate import Translated, Translator
from strangler.proxy.config import DIALECT_AUTH, AuthStyle, Config, Route
from strangler.proxy.edge.identity import (
    AuthError,
    Credentials,
    Identity,
    JwtVerifier,
    extract_credentials,
)
from strangler.proxy.edge.refusals import refuse_auth, refuse_over_limit
from strangler.proxy.edge.routes import RouteTable
from strangler.proxy.edge.tickets import TicketResolver
from strangler.proxy.edge.upgrade import is_upgrade, offered_subprotocols, well_formed
from strangler.proxy.relay import passthrough, upstream
from strangler.proxy.relay.client_socket import ClientSocket
from strangler.proxy.relay.connections import Connection
from strangler.proxy.relay.frame_relay import (
    CLOSE_GOING_AWAY,
    CLOSE_INTERNAL_ERROR,
    IDENTITY,
    Filters,
    Meters,
    Outcome,
    relay,
)
from strangler.proxy.relay.handshake import RawUpstream, open_upstream
from strangler.proxy.relay.tunnel import accept as accept_tunnel
from strangler.proxy.release.control import ReleaseControl
from strangler.proxy.release.guards import Guards
from strangler.proxy.release.plan import Plan
from strangler.proxy.shadow.compare import Side
from strangler.proxy.shadow.tee import ShadowHub, Tee
from strangler.proxy.telemetry.connection_log import ConnectionLog
from strangler.proxy.telemetry.metrics import Metrics

log = logging.getLogger("strangler.proxy")
# One JSON record per flag reload (applied or rejected); never names a user.
audit_log = logging.getLogger("strangler.audit")

CLOSE_SERVICE_RESTART = 1012

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
# Compared on every handshake: a module constant costs less than an enum class attribute.
_LEGACY = Mode.LEGACY

PROXY_KEY: web.AppKey[Proxy] = web.AppKey("strangler_proxy")

# What answers for the backend: an aiohttp WebSocket, or the byte tunnel's raw socket.
_BackendSocket = TypeVar("_BackendSocket")


@dataclass(eq=False)
class Proxy:
    """Everything the handlers share: configuration, flags, metrics, open connections."""

    config: Config
    flags: FlagWatcher
    metrics: Metrics
    verifier: JwtVerifier = field(init=False)
    routes: RouteTable = field(init=False)
    tickets: TicketResolver | None = field(init=False)
    connections: set[Connection] = field(default_factory=set)
    sessions: dict[str, aiohttp.ClientSession] = field(default_factory=dict)
    draining: bool = False
    idle: asyncio.Event = field(default_factory=asyncio.Event)
    shadow: ShadowHub = field(init=False)
    release: ReleaseControl = field(init=False)
    _admitted: int = 0  # handshakes in progress plus open connections
    _per_peer: Counter[str] = field(default_factory=Counter)
    _watchdog: asyncio.Task[None] | None = None

    def __post_init__(self) -> None:
        self.verifier = JwtVerifier(self.config.jwt)
        self.routes = RouteTable(self.config.routes)
        self.shadow = ShadowHub(self.config.shadow, self.metrics)
        self.release = ReleaseControl(
            self.flags,
            self.metrics,
            tuple(self.config.route_names),
            self.connections,
            self.shadow.spawn,
        )
        t = self.config.tickets
        self.tickets = (
            TicketResolver(t.introspection_url, ttl=t.cache_ttl, timeout=t.timeout)
            if t.introspection_url
            else None
        )

    async def start(self) -> None:
        self._watchdog = asyncio.create_task(self._watch_stalls(), name="strangler-stalls")
        for backend in (self.config.legacy, self.config.unified):
            self.sessions[backend.name] = upstream.new_session(backend.connect_timeout)
        self.sessions["http"] = passthrough.new_session()

    # The release's entry points the server, the admin port and the tools call.

    def decide(self, route: Route, identity: Identity | None) -> Decision:
        """This connection's mode, from the flags in force now (see ReleaseControl)."""
        return self.release.decide(route, identity)

    def on_reload(self, result: ReloadResult) -> None:
        self.release.on_reload(result)

    def guard_states(self) -> dict[str, Any]:
        return self.release.guard_states()

    def plan(self, candidate: FlagSet) -> Plan:
        """What applying `candidate` would do to the connections open now."""
        return self.release.plan(candidate)

    @property
    def audit(self) -> deque[dict[str, Any]]:
        """The last reloads and guard trips, newest last (the admin port shows them)."""
        return self.release.audit

    @property
    def guards(self) -> Guards:
        return self.release.guards

    async def stop(self) -> None:
        if self._watchdog is not None:
            self._watchdog.cancel()
            await asyncio.gather(self._watchdog, return_exceptions=True)
        await self.shadow.stop()
        await asyncio.gather(*(s.close() for s in self.sessions.values()))
        self.sessions.clear()

    # -- the handshake pipeline -------------------------------------------------------

    async def handle(self, request: web.Request) -> web.StreamResponse:
        route = self.routes.match(request.path)
        if not is_upgrade(request):
            if route is not None or request.path in self.config.http_passthrough:
                return await passthrough.forward(
                    self.sessions["http"],
                    self.config.legacy.url,
                    self.metrics.http_requests,
                    request,
                )
            raise web.HTTPNotFound(text="no such route\n")
        if route is None:
            self.metrics.handshake_refusals.labels("none", "no_route").inc()
            raise web.HTTPNotFound(text="no WebSocket route at this path\n")
        if self.draining:
            self.metrics.handshake_refusals.labels(route.name, "shutting_down").inc()
            raise web.HTTPServiceUnavailable(
                text="shutting down, reconnect to another instance\n",
                headers={"Retry-After": "1"},
            )
        if not well_formed(request):
            # A bad Sec-WebSocket-Key or version: refused before any backend is dialled.
            self.metrics.handshake_refusals.labels(route.name, "bad_handshake").inc()
            self.metrics.bad_input.labels(route.name, "bad_handshake").inc()
            raise web.HTTPBadRequest(text="malformed WebSocket handshake\n")

        offered = offered_subprotocols(request)
        peer = request.remote or ""
        over = self._over_limit(peer)
        if over is not None:
            return await refuse_over_limit(
                request, route, offered, over, self.config.limits.over_limit, self.metrics
            )
        self._admitted += 1
        self._per_peer[peer] += 1
        try:
            # Inline, not a helper coroutine: every frame on this path lives as long as
            # the connection does.
            dialect = select_dialect(
                route.dialect, request.query.get("mode"), request.headers.get("User-Agent")
            )
            style = route.auth if dialect == route.dialect else DIALECT_AUTH[dialect]
            credentials = extract_credentials(offered, request.headers, request.query)
            identity = await self._identify(route, style, credentials)
            del credentials  # the raw token is not kept for the connection's life
            if isinstance(identity, AuthError):
                return await refuse_auth(request, route, style, offered, identity, self.metrics)
            decision = self.release.decide(route, identity)
            return await self._serve(request, route, dialect, style, identity, decision, offered)
        finally:
            self._admitted -= 1
            self._per_peer[peer] -= 1
            if not self._per_peer[peer]:
                del self._per_peer[peer]

    def _over_limit(self, peer: str) -> str | None:
        """Which connection limit one more connection from `peer` would break, if any."""
        limits = self.config.limits
        if self._admitted >= limits.max_connections:
            return "too_many_connections"
        if self._per_peer[peer] >= limits.max_connections_per_ip:
            return "too_many_from_client"
        return None

    async def _identify(
        self, route: Route, style: AuthStyle, credentials: Credentials
    ) -> Identity | AuthError | None:
        """The verified identity, None for anonymous, or why the route refuses the client."""
        if credentials.token is None:
            if credentials.ticket is not None and style is not AuthStyle.NONE:
                # Only the issuer redeems a ticket; the backend decides. Introspection,
                # when configured, lets the flags route the user it stands for.
                if self.tickets is None:
                    return None
                user_id = await self.tickets.user_id(self.sessions["http"], credentials.ticket)
                return Identity(user_id, {}) if user_id else None
            if style is AuthStyle.NONE or route.anonymous:
                return None
            self.metrics.auth_failures.labels(route.name, "missing").inc()
            return AuthError("missing")
        try:
            return self.verifier.verify(credentials.token)
        except AuthError as exc:
            self.metrics.auth_failures.labels(route.name, exc.reason).inc()
            if style is AuthStyle.NONE:
                return None  # the route never authenticated; a bad token is just anonymous
            return exc

    def _serve(
        self,
        request: web.Request,
        route: Route,
        dialect: str,
        style: AuthStyle,
        identity: Identity | None,
        decision: Decision,
        offered: list[str],
    ) -> Awaitable[web.StreamResponse]:
        """The byte tunnel or the per-frame relay; a plain function, so no frame of its own
        stays alive (and holds memory) for the connection's life."""
        user_id = identity.user_id if identity else None
        claims = identity.claims if identity else {}
        headers = self._upstream_headers(request, route, style)
        if self._tunnels(dialect, decision):
            return self._serve_tunnel(
                request, route, dialect, decision, offered, headers, user_id, claims
            )
        return self._serve_frames(
            request, route, dialect, style, decision, offered, headers, user_id, claims
        )

    async def _serve_frames(
        self,
        request: web.Request,
        route: Route,
        dialect: str,
        style: AuthStyle,
        decision: Decision,
        offered: list[str],
        headers: CIMultiDict[str],
        user_id: str | None,
        claims: Mapping[str, Any],
    ) -> web.StreamResponse:
        """The per-frame relay: aiohttp WebSockets on both sides, frames filtered and tapped."""
        opened = await self._open_primary(request, route, decision, offered, headers, self._connect)
        del headers  # sent: not kept for the connection's life
        if isinstance(opened, web.Response):
            return opened
        backend_name, decision, upstream_ws = opened

        client_ws: web.WebSocketResponse[Any] = ClientSocket(
            protocols=(upstream_ws.protocol,) if upstream_ws.protocol else (),
            autoclose=False,
            autoping=True,
            compress=False,
            max_msg_size=self.config.relay.max_message_bytes,
            decode_text=False,
            timeout=self.config.relay.close_timeout,
        )
        try:
            await client_ws.prepare(request)
        except (ConnectionError, aiohttp.ClientConnectionResetError):
            await upstream_ws.close(code=CLOSE_GOING_AWAY, message=b"client went away")
            return client_ws

        # The unified router speaks canonical; a client of another dialect needs its
        # frames translated, on the primary path or for the shadow copy.
        translator = (
            Translator(adapter(dialect), Context(route.name, user_id, connection_mode(dialect)))
            if needs_translation(dialect, "unified")
            else None
        )
        filters = IDENTITY
        if translator is not None and backend_name == "unified":
            filters = Filters(
                inbound=_counting_rejects(
                    translator.client_frame,
                    self.metrics.bad_input.labels(route.name, "invalid_json"),
                ),
                outbound=translator.backend_frame,
            )
        tee = self._start_tee(request, route, dialect, style, decision, offered, translator)
        if tee is not None:
            filters = replace(filters, inbound_tap=tee.client_tap, outbound_tap=tee.primary_tap)
        conn = Connection(
            route,
            decision.mode,
            client_ws,
            upstream_ws,
            user_id=user_id,
            claims=claims,
            client_protocol=request.protocol,
        )
        logged = self._opened(conn, decision, backend_name, dialect)
        outcome_label = "client_gone"
        try:
            outcome = await relay(
                client_ws,
                upstream_ws,
                inbound=self._meters(route, backend_name, "client_to_backend"),
                outbound=self._meters(route, backend_name, "backend_to_client"),
                filters=filters,
                backend_lost_code=route.upstream_lost_close_code
                or self.config.relay.upstream_lost_close_code,
            )
            outcome_label = outcome.label
            self._relayed(conn, decision, backend_name, outcome)
        finally:
            outcome_label = self._forget(conn, outcome_label)
            logged.closed(outcome_label, client_ws.close_code)
            if tee is not None:
                tee.primary_closed()
            if not upstream_ws.closed:
                await upstream_ws.close(code=CLOSE_GOING_AWAY, message=b"client went away")
        return client_ws

    def _meters(self, route: Route, backend: str, direction: str) -> Meters:
        m = self.metrics
        return Meters(
            m.tally(m.messages, route.name, backend, direction),
            m.tally(m.bytes, route.name, backend, direction),
        )

    def _tunnels(self, dialect: str, decision: Decision) -> bool:
        """Whether the connection's bytes may pass untouched: no translation, no secondary."""
        if self.config.relay.tunnel != "auto" or decision.mode not in (Mode.LEGACY, Mode.UNIFIED):
            return False
        return not needs_translation(dialect, PRIMARY[decision.mode])

    async def _serve_tunnel(
        self,
        request: web.Request,
        route: Route,
        dialect: str,
        decision: Decision,
        offered: list[str],
        headers: CIMultiDict[str],
        user_id: str | None,
        claims: Mapping[str, Any],
    ) -> web.StreamResponse:
        """The byte tunnel (proxy/relay/tunnel.py): the same handshake, then bytes, not frames."""
        # Extensions (permessage-deflate) are agreed end to end: the bytes are not ours.
        for value in request.headers.getall(hdrs.SEC_WEBSOCKET_EXTENSIONS, ()):
            headers.add(hdrs.SEC_WEBSOCKET_EXTENSIONS, value)
        opened = await self._open_primary(
            request, route, decision, offered, headers, self._connect_raw
        )
        del headers  # sent: not kept for the connection's life
        if isinstance(opened, web.Response):
            return opened
        backend_name, decision, raw = opened
        relay_settings = self.config.relay
        response, tunnel = await accept_tunnel(
            request,
            raw,
            max_message_bytes=relay_settings.max_message_bytes,
            close_timeout=relay_settings.close_timeout,
            inbound=self._meters(route, backend_name, "client_to_backend"),
            outbound=self._meters(route, backend_name, "backend_to_client"),
            backend_lost_code=route.upstream_lost_close_code
            or relay_settings.upstream_lost_close_code,
        )
        if tunnel is None:
            return response
        conn = Connection(
            route,
            decision.mode,
            None,
            user_id=user_id,
            claims=claims,
            client_protocol=request.protocol,
            tunnel=tunnel,
        )
        logged = self._opened(conn, decision, backend_name, dialect)
        label = "client_gone"
        try:
            outcome = await tunnel.run()
            label = outcome.label
            self._relayed(conn, decision, backend_name, outcome)
        finally:
            label = self._forget(conn, label)
            logged.closed(label, tunnel.client_close_code)
        return response

    def _opened(
        self, conn: Connection, decision: Decision, backend_name: str, dialect: str
    ) -> ConnectionLog:
        """Keep a connection that starts relaying, count it open and log that it opened."""
        self.connections.add(conn)
        self.idle.clear()
        route = conn.route.name
        self.metrics.connections_open.labels(route, decision.mode.value).inc()
        logged = ConnectionLog(
            route, decision.mode.value, decision.reason.value, decision.flag, backend_name, dialect
        )
        logged.opened()
        return logged

    def _relayed(
        self, conn: Connection, decision: Decision, backend_name: str, outcome: Outcome
    ) -> None:
        """What a finished relay or tunnel tells the bad-input count and the flag's guard."""
        if outcome.bad_input is not None:
            self.metrics.bad_input.labels(conn.route.name, outcome.bad_input).inc()
        if backend_name == "unified" and not conn.ending:
            # The unified router failed the client mid-session: it sent 1011, or
            # vanished (the client then got the route's backend-lost code).
            failed = outcome.client_code == CLOSE_INTERNAL_ERROR or outcome.label == "backend_gone"
            self.release.observe(decision.flag, UNIFIED_ERROR_RATIO, failed)

    def _forget(self, conn: Connection, label: str) -> str:
        """Drop an ended connection and count how it ended; returns the outcome counted."""
        m = self.metrics
        route, mode = conn.route.name, conn.mode.value
        self.connections.discard(conn)
        if conn.drifted:
            m.drift.labels(route).dec()
        if not self.connections:
            self.idle.set()
        m.connections_open.labels(route, mode).dec()
        # The proxy's own reason wins: the relay may have ended by being cut off.
        label = conn.ending or label
        m.connections.labels(route, mode, label).inc()
        return label

    async def _open_primary(
        self,
        request: web.Request,
        route: Route,
        decision: Decision,
        offered: list[str],
        headers: CIMultiDict[str],
        connect: Callable[
            [str, web.Request, list[str], CIMultiDict[str]], Awaitable[_BackendSocket]
        ],
    ) -> tuple[str, Decision, _BackendSocket] | web.Response:
        """The answering backend's socket, or the refusal the client must see.

        When the unified router cannot be reached and the configuration says so, the
        user is served by legacy instead (reason `fallback`): a migration must never
        be the reason a user cannot chat.
        """
        backend_name = PRIMARY[decision.mode]
        unified = backend_name == "unified"
        try:
            ws = await connect(backend_name, request, offered, headers)
            if unified:
                self.release.observe(decision.flag, UNIFIED_ERROR_RATIO, False)
            return backend_name, decision, ws
        except upstream.UpstreamRefused as refusal:
            self.metrics.upstream_connect_failures.labels(backend_name, "status").inc()
            if unified and refusal.status >= 500:
                # A 4xx is the router refusing this user, as legacy would; not an outage.
                self.release.observe(decision.flag, UNIFIED_ERROR_RATIO, True)
            if not self._falls_back(backend_name, refusal.status):
                self.metrics.handshake_refusals.labels(route.name, "upstream_refused").inc()
                return web.Response(
                    status=refusal.status, body=refusal.body, headers=refusal.headers
                )
        except upstream.UpstreamUnavailable as exc:
            self.metrics.upstream_connect_failures.labels(backend_name, exc.reason).inc()
            if unified:
                self.release.observe(decision.flag, UNIFIED_ERROR_RATIO, True)
            log.warning("backend %s unavailable for route %s: %s", backend_name, route.name, exc)
            if not self._falls_back(backend_name, None):
                self.metrics.handshake_refusals.labels(route.name, "upstream_unavailable").inc()
                status = 504 if exc.reason == "handshake_timeout" else 502
                return web.Response(status=status, text=f"backend {backend_name} unavailable\n")
        self.metrics.fallbacks.labels(route.name).inc()
        fallback = decision._replace(mode=Mode.LEGACY, reason=Reason.FALLBACK)
        try:
            return "legacy", fallback, await connect("legacy", request, offered, headers)
        except upstream.UpstreamRefused as refusal:
            self.metrics.upstream_connect_failures.labels("legacy", "status").inc()
            self.metrics.handshake_refusals.labels(route.name, "upstream_refused").inc()
            return web.Response(status=refusal.status, body=refusal.body, headers=refusal.headers)
        except upstream.UpstreamUnavailable as exc:
            self.metrics.upstream_connect_failures.labels("legacy", exc.reason).inc()
            self.metrics.handshake_refusals.labels(route.name, "upstream_unavailable").inc()
            status = 504 if exc.reason == "handshake_timeout" else 502
            return web.Response(status=status, text="backend legacy unavailable\n")

    def _falls_back(self, backend_name: str, status: int | None) -> bool:
        """Whether a failed unified handshake is served by legacy instead."""
        return (
            backend_name == "unified"
            and self.config.unified.fallback
            and (status is None or status in (502, 503, 504))
        )

    async def _connect_raw(
        self, backend_name: str, request: web.Request, offered: list[str], headers: CIMultiDict[str]
    ) -> RawUpstream:
        """The backend's raw socket after its 101, for the byte tunnel."""
        started = time.perf_counter()
        raw = await open_upstream(
            self._upstream_url(backend_name, request),
            protocols=offered,
            headers=headers,
            timeout=self.config.backend(backend_name).connect_timeout,
        )
        self.metrics.upstream_connect_seconds.labels(backend_name).observe(
            time.perf_counter() - started
        )
        return raw

    async def _connect(
        self, backend_name: str, request: web.Request, offered: list[str], headers: CIMultiDict[str]
    ) -> aiohttp.ClientWebSocketResponse[Any]:
        backend = self.config.backend(backend_name)
        started = time.perf_counter()
        ws = await upstream.connect(
            self.sessions[backend_name],
            self._upstream_url(backend_name, request),
            protocols=offered,
            headers=headers,
            timeout=backend.connect_timeout,
            max_message_bytes=self.config.relay.max_message_bytes,
        )
        self.metrics.upstream_connect_seconds.labels(backend_name).observe(
            time.perf_counter() - started
        )
        return ws

    def _start_tee(
        self,
        request: web.Request,
        route: Route,
        dialect: str,
        style: AuthStyle,
        decision: Decision,
        offered: list[str],
        translator: Translator | None,
    ) -> Tee | None:
        """In shadow and live modes, the compared secondary; None when not admitted."""
        mode = decision.mode
        if mode not in (Mode.SHADOW, Mode.LIVE) or not self.shadow.admit(route.name):
            return None
        secondary = "unified" if mode is Mode.SHADOW else "legacy"
        to_secondary = None
        if secondary == "unified" and translator is not None:
            to_secondary = _peer_frames(translator)
        tee = Tee(
            self.shadow,
            route=route.name,
            mode=mode.value,
            dialect=dialect,
            primary=Side.LEGACY if mode is Mode.SHADOW else Side.UNIFIED,
            client_to_secondary=to_secondary,
            observe=functools.partial(self.release.observe, decision.flag),
        )
        backend = self.config.backend(secondary)
        tee.start(
            self.sessions[secondary],
            self._upstream_url(secondary, request),
            protocols=offered,
            headers=self._upstream_headers(request, route, style),
            timeout=backend.connect_timeout,
            max_message_bytes=self.config.relay.max_message_bytes,
            backend=secondary,
        )
        return tee

    def _upstream_url(self, backend_name: str, request: web.Request) -> str:
        if backend_name == "legacy":
            # The legacy backend keeps every route's own path and query.
            return self.config.legacy.url + request.raw_path
        query = request.query_string
        return self.config.unified.url + (f"?{query}" if query else "")

    def _upstream_headers(
        self, request: web.Request, route: Route, style: AuthStyle
    ) -> CIMultiDict[str]:
        headers: CIMultiDict[str] = CIMultiDict()
        for name in FORWARDED_HEADERS:
            for value in request.headers.getall(name, ()):
                headers.add(name, value)
        headers.update(passthrough.forwarded_for(request))
        headers[ROUTE_HEADER] = route.name
        if style is AuthStyle.NONE:
            headers[AUTH_HEADER] = "none"
        return headers

    async def _watch_stalls(self) -> None:
        """Close connections whose client stopped reading for longer than allowed.

        Backpressure already keeps such a client from costing memory; this frees the
        backend connection it holds. A paused transport is the sign: aiohttp pauses
        writing when the client's socket buffer is full.
        """
        limits = self.config.limits
        period = min(1.0, limits.stalled_timeout / 4)
        while True:
            await asyncio.sleep(period)
            now = time.monotonic()
            for conn in list(self.connections):
                protocol = conn.client_protocol
                if protocol is None or not protocol.writing_paused:
                    conn.stalled_since = None
                    continue
                if conn.stalled_since is None:
                    conn.stalled_since = now
                elif now - conn.stalled_since >= limits.stalled_timeout and not conn.ending:
                    conn.ending = "stalled"
                    log.info("closing a stalled connection on route %s", conn.route.name)
                    self.shadow.spawn(self._force_close(conn, limits.stalled_close_code))

    async def _force_close(self, conn: Connection, code: int) -> None:
        """Close both sides; a client that cannot take even a close frame is cut off."""
        try:
            await asyncio.wait_for(
                conn.close(code, "client not reading"),
                self.config.relay.close_timeout,
            )
        except TimeoutError:
            protocol = conn.client_protocol
            if protocol is not None and protocol.transport is not None:
                protocol.transport.abort()

    # -- shutdown ---------------------------------------------------------------------

    async def drain(self, grace: float) -> None:
        """Refuse new handshakes, wait up to `grace` s for open ones, close the rest 1001."""
        self.draining = True
        if self.connections:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.idle.wait(), grace)
        remaining = list(self.connections)
        for conn in remaining:
            conn.ending = "shutdown"
        await asyncio.gather(
            *(c.close(CLOSE_GOING_AWAY, "server shutting down") for c in remaining)
        )
        # Let the relays count how their connections ended before the loop stops.
        if self.connections:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.idle.wait(), 1.0)


def _counting_rejects(
    translate: Callable[[bytes], Translated], rejected: PromCounter
) -> Callable[[bytes], Translated]:
    """`translate`, counting the client frames it rejects (not JSON, not a typed object)."""

    def inbound(data: bytes) -> Translated:
        result = translate(data)
        if result.problem is not None:
            rejected.inc()
        return result

    return inbound


def _peer_frames(translator: Translator) -> Callable[[bytes], tuple[str, ...]]:
    """The canonical frames a client frame becomes (an unparseable one becomes none)."""

    def frames(data: bytes) -> tuple[str, ...]:
        return translator.client_frame(data).to_peer

    return frames


def build_app(proxy: Proxy) -> web.Application:
    """The client-facing application: every path goes through `Proxy.handle`."""
    app = web.Application(client_max_size=proxy.config.relay.max_message_bytes)
    app[PROXY_KEY] = proxy
    app.router.add_route("*", "/{tail:.*}", proxy.handle)

    async def on_startup(_: web.Application) -> None:
        await proxy.start()

    async def on_cleanup(_: web.Application) -> None:
        await proxy.stop()

    app.on_startup.append(on_startup)
    app.on_cleanup.append(on_cleanup)
    return app
