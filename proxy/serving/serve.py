"""Serving one admitted connection: the byte tunnel or the per-frame relay, the shadow
tee in the comparison modes, and what its end tells the metrics and the flag's guard.

The tunnel is chosen whenever the primary's bytes may pass untouched (it speaks the
client's dialect): in shadow and live modes too, with the tee fed copies of the text
messages. Everything else goes frame by frame, translated where the client's dialect is
not the serving backend's, and tapped for the tee in shadow and live modes.
"""

from __future__ import annotations

import functools
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import replace
from typing import Any

import aiohttp
from aiohttp import hdrs, web
from multidict import CIMultiDict
from prometheus_client import Counter as PromCounter

from strangler.flags.evaluate import Decision
from strangler.flags.model import UNIFIED_ERROR_RATIO, Mode
from strangler.legacy_adapters.base import Context
from strangler.legacy_adapters.registry import adapter, connection_mode, needs_translation
from strangler.legacy_adapters.translate import Translated, Translator
from strangler.proxy.config import AuthStyle, Config, Route
from strangler.proxy.edge.identity import Identity
from strangler.proxy.relay.client_socket import ClientSocket
from strangler.proxy.relay.connections import Connection, OpenConnections
from strangler.proxy.relay.frame_relay import (
    CLOSE_GOING_AWAY,
    CLOSE_INTERNAL_ERROR,
    IDENTITY,
    Filters,
    Meters,
    Outcome,
    relay,
)
from strangler.proxy.relay.tunnel import accept as accept_tunnel
from strangler.proxy.relay.turnbook import TurnBook
from strangler.proxy.relay.turns import TurnWatch, left_by_client
from strangler.proxy.release.control import ReleaseControl
from strangler.proxy.serving.backends import PRIMARY, Backends
from strangler.proxy.shadow.hub import ShadowHub
from strangler.proxy.shadow.redact import connection_identities
from strangler.proxy.shadow.tee import Tee
from strangler.proxy.shadow.verdict import Side
from strangler.proxy.telemetry.metrics import Metrics


class Serving:
    """Relays admitted connections to the backend their decision names."""

    def __init__(
        self,
        config: Config,
        metrics: Metrics,
        backends: Backends,
        connections: OpenConnections,
        shadow: ShadowHub,
        release: ReleaseControl,
    ) -> None:
        self._config = config
        self._metrics = metrics
        self._backends = backends
        self._connections = connections
        self._shadow = shadow
        self._release = release
        # Every connection's turns, counted per route, mode and serving backend.
        self._turns = TurnBook(metrics, config.relay.turn_timeout, release.turn_ended)
        # Meters are immutable and their tallies shared: one per (route, backend, direction)
        # serves every connection, instead of two built per handshake.
        self._meter_sets: dict[tuple[str, str, str], Meters] = {}

    def serve(
        self,
        request: web.Request,
        route: Route,
        dialect: str,
        style: AuthStyle,
        identity: Identity | None,
        decision: Decision,
        offered: list[str],
        ticket: bool = False,
    ) -> Awaitable[web.StreamResponse]:
        """The byte tunnel or the per-frame relay; a plain function, so no frame of its own
        stays alive (and holds memory) for the connection's life. `ticket`: the client
        came with a ticket (re-evaluated under the ticket rule when the flags change)."""
        user_id = identity.user_id if identity else None
        claims = identity.claims if identity else {}
        headers = self._backends.headers(request, route, style)
        if self._tunnels(route, dialect, decision):
            return self._tunnel(
                request, route, dialect, style, decision, offered, headers, user_id, claims, ticket
            )
        return self._frames(
            request, route, dialect, style, decision, offered, headers, user_id, claims, ticket
        )

    def _tunnels(self, route: Route, dialect: str, decision: Decision) -> bool:
        """Whether the primary's bytes may pass untouched: it speaks the client's dialect.
        A compared connection (shadow, live) rides the tunnel too, its comparison fed
        with copies of the text messages (proxy/relay/messages.py)."""
        if self._config.relay.tunnel != "auto":
            return False
        return not needs_translation(dialect, PRIMARY[decision.mode], route.greeting)

    async def _frames(
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
        ticket: bool,
    ) -> web.StreamResponse:
        """The per-frame relay: aiohttp WebSockets on both sides, frames filtered and tapped."""
        backends = self._backends
        opened = await backends.open_primary(
            request, route, decision, offered, headers, backends.connect
        )
        del headers  # sent: not kept for the connection's life
        if isinstance(opened, web.Response):
            return opened
        backend_name, decision, upstream_ws = opened

        client_ws: web.WebSocketResponse[Any] = ClientSocket(
            protocols=(upstream_ws.protocol,) if upstream_ws.protocol else (),
            autoclose=False,
            autoping=True,
            compress=False,
            max_msg_size=self._config.relay.max_message_bytes,
            decode_text=False,
            timeout=self._config.relay.close_timeout,
        )
        try:
            await client_ws.prepare(request)
        except (ConnectionError, aiohttp.ClientConnectionResetError):
            await upstream_ws.close(code=CLOSE_GOING_AWAY, message=b"client went away")
            return client_ws

        translator = _translator(route, dialect, user_id)
        filters = IDENTITY
        if translator is not None and backend_name == "unified":
            filters = Filters(
                inbound=_counting_rejects(
                    translator.client_frame,
                    self._metrics.bad_input.labels(route.name, "invalid_json"),
                ),
                outbound=translator.backend_frame,
            )
        tee = self._start_tee(
            request, route, dialect, style, decision, offered, translator, user_id
        )
        if tee is not None:
            filters = replace(filters, inbound_tap=tee.client_tap, outbound_tap=tee.primary_tap)
        conn = Connection(
            route,
            decision.mode,
            client_ws,
            upstream_ws,
            user_id=user_id,
            ticket=ticket,
            claims=claims,
            client_protocol=request.protocol,
        )
        logged = self._connections.opened(conn, decision, backend_name, dialect)
        outcome_label = "client_gone"
        bad_input = None
        turns = TurnWatch(
            self._turns.meters(route.name, decision.mode.value, backend_name, decision.flag)
        )
        try:
            outcome = await relay(
                client_ws,
                upstream_ws,
                inbound=self._meters(route, backend_name, "client_to_backend"),
                outbound=self._meters(route, backend_name, "backend_to_client"),
                filters=filters,
                backend_lost_code=route.upstream_lost_close_code
                or self._config.relay.upstream_lost_close_code,
                turns=turns,
            )
            outcome_label, bad_input = outcome.label, outcome.bad_input
            self._relayed(conn, decision, backend_name, outcome)
        finally:
            outcome_label = self._connections.forget(conn, outcome_label)
            turns.ended(left_by_client(outcome_label, bad_input))
            logged.closed(outcome_label, client_ws.close_code)
            if tee is not None:
                tee.primary_closed()
            if not upstream_ws.closed:
                await upstream_ws.close(code=CLOSE_GOING_AWAY, message=b"client went away")
        return client_ws

    async def _tunnel(
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
        ticket: bool,
    ) -> web.StreamResponse:
        """The byte tunnel (relay/tunnel.py): the same handshake, then bytes, not frames."""
        compared = decision.mode in (Mode.SHADOW, Mode.LIVE)
        if not compared:
            # Extensions (permessage-deflate) are agreed end to end: the bytes are not
            # ours. A compared connection's are read, so none is agreed there.
            for value in request.headers.getall(hdrs.SEC_WEBSOCKET_EXTENSIONS, ()):
                headers.add(hdrs.SEC_WEBSOCKET_EXTENSIONS, value)
        backends = self._backends
        opened = await backends.open_primary(
            request, route, decision, offered, headers, backends.connect_raw
        )
        del headers  # sent: not kept for the connection's life
        if isinstance(opened, web.Response):
            return opened
        backend_name, decision, raw = opened
        tee = (
            self._start_tee(
                request,
                route,
                dialect,
                style,
                decision,
                offered,
                _translator(route, dialect, user_id),
                user_id,
            )
            if compared
            else None
        )
        # The turns' meters first, while the stack is shallow, and no local for the relay
        # settings: this coroutine's frame is kept for the connection's life.
        response, tunnel = await accept_tunnel(
            request,
            raw,
            self._turns.meters(route.name, decision.mode.value, backend_name, decision.flag),
            tap=tee,
            max_message_bytes=self._config.relay.max_message_bytes,
            close_timeout=self._config.relay.close_timeout,
            inbound=self._meters(route, backend_name, "client_to_backend"),
            outbound=self._meters(route, backend_name, "backend_to_client"),
            backend_lost_code=route.upstream_lost_close_code
            or self._config.relay.upstream_lost_close_code,
        )
        if tunnel is None:
            if tee is not None:
                tee.primary_closed()
            return response
        conn = Connection(
            route,
            decision.mode,
            None,
            user_id=user_id,
            ticket=ticket,
            claims=claims,
            client_protocol=request.protocol,
            tunnel=tunnel,
        )
        logged = self._connections.opened(conn, decision, backend_name, dialect)
        label = "client_gone"
        try:
            outcome = await tunnel.run()
            label = outcome.label
            self._relayed(conn, decision, backend_name, outcome)
        finally:
            label = self._connections.forget(conn, label)
            logged.closed(label, tunnel.client_close_code)
            if tee is not None:
                tee.primary_closed()
        return response

    def _meters(self, route: Route, backend: str, direction: str) -> Meters:
        key = (route.name, backend, direction)
        meters = self._meter_sets.get(key)
        if meters is None:
            m = self._metrics
            meters = self._meter_sets[key] = Meters(
                m.tally(m.messages, *key), m.tally(m.bytes, *key)
            )
        return meters

    def _relayed(
        self, conn: Connection, decision: Decision, backend_name: str, outcome: Outcome
    ) -> None:
        """What a finished relay or tunnel tells the bad-input count and the flag's guard."""
        if outcome.bad_input is not None:
            self._metrics.bad_input.labels(conn.route.name, outcome.bad_input).inc()
        if backend_name == "unified" and not conn.ending:
            # The unified router failed the client mid-session: it sent 1011, or
            # vanished (the client then got the route's backend-lost code).
            failed = outcome.client_code == CLOSE_INTERNAL_ERROR or outcome.label == "backend_gone"
            self._release.observe(decision.flag, UNIFIED_ERROR_RATIO, failed)

    def _start_tee(
        self,
        request: web.Request,
        route: Route,
        dialect: str,
        style: AuthStyle,
        decision: Decision,
        offered: list[str],
        translator: Translator | None,
        user_id: str | None,
    ) -> Tee | None:
        """In shadow and live modes, the compared secondary; None when not admitted."""
        mode = decision.mode
        if mode not in (Mode.SHADOW, Mode.LIVE) or not self._shadow.admit(route.name):
            return None
        secondary = "unified" if mode is Mode.SHADOW else "legacy"
        to_secondary = None
        if secondary == "unified" and translator is not None:
            to_secondary = _peer_frames(translator)
        tee = Tee(
            self._shadow,
            route=route.name,
            mode=mode.value,
            dialect=dialect,
            primary=Side.LEGACY if mode is Mode.SHADOW else Side.UNIFIED,
            client_to_secondary=to_secondary,
            observe=functools.partial(self._release.observe, decision.flag),
            # What its stored transcripts must not contain; passed, never a label.
            identities=connection_identities(user_id, route.path, request.path),
        )
        backends = self._backends
        tee.start(
            backends.session(secondary),
            backends.url(secondary, request),
            protocols=offered,
            headers=backends.headers(request, route, style),
            timeout=self._config.backend(secondary).connect_timeout,
            max_message_bytes=self._config.relay.max_message_bytes,
            backend=secondary,
        )
        return tee


def _translator(route: Route, dialect: str, user_id: str | None) -> Translator | None:
    """The unified router speaks canonical: a client of another dialect (or of a route set
    up with another greeting) needs its frames translated, on the primary path or for
    the shadow copy; None when it needs none."""
    if not needs_translation(dialect, "unified", route.greeting):
        return None
    return Translator(
        adapter(dialect),
        Context(route.name, user_id, connection_mode(dialect), greeting=route.greeting),
    )


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
