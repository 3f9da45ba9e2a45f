"""The admin port: /metrics for Prometheus, /healthz and /readyz for orchestrators,
/shadow for the compared secondary (state, recent mismatches, the global switch),
/status for release managers (an HTML page, proxy/admin/status_page.py)."""

from __future__ import annotations

import asyncio
import hmac
import logging
import time
from collections import Counter
from collections.abc import Awaitable, Callable
from dataclasses import asdict

from aiohttp import web
from aiohttp.typedefs import Middleware
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from strangler.flags.load import FlagFileError, parse_flags
from strangler.proxy.admin import turn_page
from strangler.proxy.admin.status_page import FlagView, MismatchView, StatusSnapshot, render
from strangler.proxy.admin.trust import AdminTrust, trust_middleware
from strangler.proxy.admin.turn_diff import turn_view
from strangler.proxy.app import Proxy
from strangler.proxy.release.plan import rollout_percent

log = logging.getLogger("strangler.admin")

# How many reloads and mismatches the status page lists (the endpoints keep more).
STATUS_RECENT = 20


def status_snapshot(proxy: Proxy) -> StatusSnapshot:
    """What the status page shows, read from the running proxy. Targets are counted
    and mismatch samples reduced to route, turn and categories: no user ids."""
    watcher = proxy.flags
    connections: dict[str, Counter[str]] = {}
    drift: Counter[str] = Counter()
    for conn in proxy.connections:
        connections.setdefault(conn.route.name, Counter())[conn.mode.value] += 1
        drift[conn.route.name] += conn.drifted
    flags = tuple(
        FlagView(
            key=key,
            routes=flag.routes,
            default=flag.default.value,
            anonymous=flag.anonymous.value,
            kill_switch=flag.kill_switch,
            shares=rollout_percent(flag),
            targets=dict(Counter(mode.value for mode in flag.targets.values())),
            rules=tuple(rule.name for rule in flag.rules),
            drain_rate=flag.drain_rate,
            guard=asdict(flag.guard) if flag.guard is not None else None,
            effective_at=flag.effective_at,
        )
        for key, flag in sorted(watcher.current.flags.items())
    )
    hub = proxy.shadow
    mismatches = tuple(
        MismatchView(
            at=sample.at,
            route=sample.route,
            mode=sample.mode,
            turn=sample.turn,
            request_type=sample.request_type,
            outcome=sample.outcome,
            categories=tuple(sorted({category for category, _ in sample.differences})),
            id=sample.id,
        )
        for sample in list(reversed(hub.samples))[:STATUS_RECENT]
    )
    return StatusSnapshot(
        generated_at=time.time(),
        flags_hash=watcher.current.digest[:12],
        flags_source=str(proxy.config.flags.file),
        loaded_at=watcher.loaded_at,
        last_error=str(watcher.last_error) if watcher.last_error else None,
        flags=flags,
        routes=tuple(route.name for route in proxy.config.routes),
        connections={route: dict(modes) for route, modes in connections.items()},
        drift=dict(drift),
        audit=tuple(list(reversed(proxy.audit))[:STATUS_RECENT]),
        mismatches=mismatches,
        guards=proxy.guard_states(),
        draining=proxy.draining,
        shadow_enabled=hub.enabled,
        secondary_connections=hub.active,
        shadow_shed=hub.shed_summary(),
        reliability=proxy.release.reliability(),
    )


def build_admin_app(proxy: Proxy) -> web.Application:
    """Routes of the admin listener; never exposed on the client port."""

    async def metrics(_: web.Request) -> web.Response:
        proxy.metrics.flush()  # what the relays have tallied since the last tick
        body = generate_latest(proxy.metrics.registry)
        return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE_LATEST})

    async def healthz(_: web.Request) -> web.Response:
        # Alive as long as the event loop answers.
        return web.json_response({"status": "ok"})

    async def readyz(_: web.Request) -> web.Response:
        # Not ready while draining, so a load balancer stops sending new clients here.
        flags = proxy.flags
        body = {
            "ready": not proxy.draining,
            "draining": proxy.draining,
            "flags_hash": flags.current.digest[:12],
            "flags_error": str(flags.last_error) if flags.last_error else None,
            "open_connections": len(proxy.connections),
        }
        return web.json_response(body, status=503 if proxy.draining else 200)

    async def shadow_state(_: web.Request) -> web.Response:
        hub = proxy.shadow
        return web.json_response(
            {
                "enabled": hub.enabled,
                "secondary_connections": hub.active,
                "max_secondary_connections": hub.settings.max_secondary_connections,
                "recent_mismatches": [asdict(sample) for sample in reversed(hub.samples)],
                # Fields that differed within their rule, per path: counts, never values.
                "noise": hub.noise.snapshot(),
            }
        )

    async def shadow_switch(request: web.Request) -> web.Response:
        # The global switch: off, new shadow/live connections run without a secondary.
        value = request.query.get("enabled", "").lower()
        if value not in ("true", "false"):
            raise web.HTTPBadRequest(text="enabled must be true or false\n")
        proxy.shadow.enabled = value == "true"
        log.warning("shadow switch set to %s", value)
        return await shadow_state(request)

    async def flags_status(_: web.Request) -> web.Response:
        flags = proxy.flags
        by_route_mode: dict[str, dict[str, int]] = {}
        drift: dict[str, int] = {}
        for conn in proxy.connections:
            modes = by_route_mode.setdefault(conn.route.name, {})
            modes[conn.mode.value] = modes.get(conn.mode.value, 0) + 1
            drift[conn.route.name] = drift.get(conn.route.name, 0) + conn.drifted
        return web.json_response(
            {
                "hash": flags.current.digest[:12],
                "source": str(proxy.config.flags.file),
                "loaded_at": flags.loaded_at,
                "last_error": str(flags.last_error) if flags.last_error else None,
                "flags": sorted(flags.current.flags),
                "open_connections": by_route_mode,
                "drift": drift,
                "guards": proxy.guard_states(),
                # Golden-path reliability per route and backend, last hour, this process.
                "reliability": proxy.release.reliability(),
            }
        )

    async def flags_audit(_: web.Request) -> web.Response:
        # Newest first. Rollout values are in percent, the flag file's unit; targets are
        # counts (proxy/release/plan.py audit_changes).
        return web.json_response({"records": list(reversed(proxy.audit))})

    async def flags_plan(request: web.Request) -> web.Response:
        # The candidate file is validated exactly as a reload would, never applied.
        data = await request.read()
        try:
            # In a thread, as a reload parses: a large file must not stall the relays.
            candidate = await asyncio.to_thread(
                parse_flags, data, "candidate", proxy.config.route_names
            )
        except FlagFileError as exc:
            return web.json_response({"error": str(exc)}, status=400)
        return web.json_response(asdict(proxy.plan(candidate)))

    async def status_page(_: web.Request) -> web.Response:
        return web.Response(
            text=render(status_snapshot(proxy)),
            content_type="text/html",
            headers={"Cache-Control": "no-store"},
        )

    async def shadow_turn(request: web.Request) -> web.Response:
        # One recorded turn side by side (proxy/admin/turn_page.py), already redacted.
        turn_id = request.match_info["turn_id"]
        sample = proxy.shadow.sample(turn_id)
        if sample is None:
            kept = proxy.shadow.settings.mismatch_samples
            text, status = turn_page.render_missing(turn_id, kept), 404
        else:
            text, status = turn_page.render(turn_view(asdict(sample))), 200
        headers = {"Cache-Control": "no-store"}
        return web.Response(text=text, status=status, content_type="text/html", headers=headers)

    async def to_status(_: web.Request) -> web.Response:
        raise web.HTTPFound("/status")

    config = proxy.config
    trust = AdminTrust.configured(config.admin_listen.host, config.admin_allowed_hosts)
    refusals = proxy.metrics.admin_refusals
    app = web.Application(
        client_max_size=64 * 1024 * 1024,
        # Host and origin first: a request for another Host never reaches the token check.
        middlewares=[
            trust_middleware(trust, lambda reason: refusals.labels(reason.value).inc()),
            token_middleware(config.admin_token),
        ],
    )
    app.router.add_get("/status", status_page)
    app.router.add_get("/", to_status)
    app.router.add_get("/flags/status", flags_status)
    app.router.add_get("/flags/audit", flags_audit)
    app.router.add_post("/flags/plan", flags_plan)
    app.router.add_get("/shadow", shadow_state)
    app.router.add_post("/shadow", shadow_switch)
    app.router.add_get("/shadow/turns/{turn_id}", shadow_turn)
    app.router.add_get("/metrics", metrics)
    app.router.add_get("/healthz", healthz)
    app.router.add_get("/readyz", readyz)
    return app


Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def token_middleware(token: str | None) -> Middleware:
    """The admin port's guard: with a token configured, every path but the probes needs
    ``Authorization: Bearer <token>`` (compared in constant time)."""
    expected = f"Bearer {token}".encode()

    @web.middleware
    async def require_token(request: web.Request, handler: Handler) -> web.StreamResponse:
        # Liveness and readiness stay open for orchestrators; the rest needs the token.
        if token is not None and request.path not in ("/healthz", "/readyz"):
            # Header text is surrogate-escaped bytes: encode it back the same way, so
            # bytes that are not UTF-8 are a wrong token (401), not an error (500).
            given = request.headers.get("Authorization", "").encode("utf-8", "surrogateescape")
            if not hmac.compare_digest(given, expected):
                raise web.HTTPUnauthorized(
                    text="admin token required\n", headers={"WWW-Authenticate": "Bearer"}
                )
        return await handler(request)

    return require_token
