"""The client-facing aiohttp application: one handler for every legacy path.

`Proxy` is the composition root: it builds the collaborators, each with one job, and
`Proxy.handle` runs a WebSocket handshake through the pipeline of DESIGN.md in order:
match the route, admit the client (limits, credentials, identity), let the flags decide
the mode (`ReleaseControl.decide`, over `flags.evaluate`), then serve it (open the
backend, and only then answer the client with what the backend said). Plain HTTP on
the legacy paths is forwarded to the legacy backend.
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Coroutine
from typing import Any

from aiohttp import hdrs, web

from strangler.flags.evaluate import Decision
from strangler.flags.model import FlagSet
from strangler.flags.watch import FlagWatcher, ReloadResult
from strangler.legacy_adapters.registry import select_dialect
from strangler.proxy.config import DIALECT_AUTH, Config, Route
from strangler.proxy.edge.admission import Admission
from strangler.proxy.edge.identity import AuthError, Identity, TokenSource, extract_credentials
from strangler.proxy.edge.refusals import refuse_auth, refuse_over_limit
from strangler.proxy.edge.routes import RouteTable
from strangler.proxy.edge.target import origin_form
from strangler.proxy.edge.upgrade import (
    VERSION,
    is_upgrade,
    offered_subprotocols,
    speaks_version,
    well_formed,
)
from strangler.proxy.relay import passthrough
from strangler.proxy.relay.connections import OpenConnections
from strangler.proxy.release.control import ReleaseControl
from strangler.proxy.release.fleet_watch import FleetWatch
from strangler.proxy.release.guards import Guards
from strangler.proxy.release.plan import Plan
from strangler.proxy.serving.backends import Backends
from strangler.proxy.serving.serve import Serving
from strangler.proxy.shadow.hub import ShadowHub
from strangler.proxy.telemetry.metrics import Metrics


class Proxy:
    """Everything the handlers share, wired once: who does what is named here."""

    def __init__(self, config: Config, flags: FlagWatcher, metrics: Metrics) -> None:
        self.config = config
        self.flags = flags
        self.metrics = metrics
        self.draining = False
        # Background work (tees, drains, closing stalled clients), cancelled at stop.
        self._tasks: set[asyncio.Task[None]] = set()
        self.routes = RouteTable(config.routes)
        self.shadow = ShadowHub(config.shadow, metrics, spawn=self.spawn)
        self.connections = OpenConnections(
            metrics, config.limits, config.relay.close_timeout, self.spawn
        )
        self.release = ReleaseControl(
            flags,
            metrics,
            tuple(config.route_names),
            self.connections,
            self.spawn,
            redeems_tickets=config.unified.redeems_tickets,
            replicas_hint=config.fleet.replicas,
        )
        # Fleet-wide guards and drain rates, from the Prometheus that scrapes every replica.
        self.fleet = (
            FleetWatch(config.fleet, self.release, metrics) if config.fleet.prometheus_url else None
        )
        if self.fleet is not None:
            self.release.replicas = self.fleet.replicas
        self.backends = Backends(config, metrics, self.release.observe)
        self.admission = Admission(config, metrics, self.backends.http)
        self.serving = Serving(
            config, metrics, self.backends, self.connections, self.shadow, self.release
        )

    async def start(self) -> None:
        self.connections.start()
        self.backends.start()
        # Shadow work's budget: sheds it before it delays the primary (proxy/shadow/shed.py).
        self.spawn(self.shadow.watch())
        if self.fleet is not None:
            self.spawn(self.fleet.run())

    async def stop(self) -> None:
        await self.connections.stop()
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        self.shadow.stop()
        await self.backends.stop()

    def spawn(self, work: Coroutine[Any, Any, None]) -> None:
        """Run `work` on a task of its own, kept until it ends or the proxy stops."""
        task = asyncio.create_task(work)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

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

    # -- the handshake pipeline -------------------------------------------------------

    async def handle(self, request: web.Request) -> web.StreamResponse:
        if origin_form(request) is None:
            # An absolute-form target with another scheme or no host: nothing to forward.
            self.metrics.bad_input.labels("none", "bad_target").inc()
            raise web.HTTPBadRequest(text="request target must be a path or an http(s) URL\n")
        route = self.routes.match(request.path)
        if not is_upgrade(request):
            if route is not None or request.path in self.config.http_passthrough:
                return await passthrough.forward(
                    self.backends.http(),
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
        if not speaks_version(request):
            self.metrics.handshake_refusals.labels(route.name, "bad_handshake").inc()
            self.metrics.bad_input.labels(route.name, "bad_version").inc()
            raise web.HTTPUpgradeRequired(
                text="unsupported WebSocket version\n",
                headers={hdrs.SEC_WEBSOCKET_VERSION: VERSION},
            )

        offered = offered_subprotocols(request)
        peer = request.remote or ""
        over = self.admission.enter(peer)
        if over is not None:
            return await refuse_over_limit(
                request, route, offered, over, self.config.limits.over_limit, self.metrics
            )
        try:
            # Inline, not a helper coroutine: every frame on this path lives as long as
            # the connection does.
            dialect = select_dialect(
                route.dialect, request.query.get("mode"), request.headers.get("User-Agent")
            )
            style = route.auth if dialect == route.dialect else DIALECT_AUTH[dialect]
            credentials = extract_credentials(
                offered, request.headers.getall("Authorization", ()), request.query.items()
            )
            identity = await self.admission.identify(route, style, credentials)
            ticket = credentials.source is TokenSource.TICKET
            del credentials  # the raw token is not kept for the connection's life
            if isinstance(identity, AuthError):
                return await refuse_auth(request, route, style, offered, identity, self.metrics)
            decision = self.release.decide(route, identity, ticket=ticket)
            return await self.serving.serve(
                request, route, dialect, style, identity, decision, offered, ticket
            )
        finally:
            self.admission.leave(peer)

    # -- shutdown ---------------------------------------------------------------------

    async def drain(self, grace: float) -> None:
        """Refuse new handshakes, wait up to `grace` s for open ones, close the rest 1001."""
        self.draining = True
        await self.connections.close_all(grace)


PROXY_KEY: web.AppKey[Proxy] = web.AppKey("strangler_proxy")


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
