"""The shadow tee: a compared secondary backend beside a client's primary one.

In `shadow` mode legacy answers the client and the unified router gets a copy of every
client message; in `live` mode the reverse. The secondary's frames never reach the
client. Design rule: **the primary never waits on the secondary.** The relay only
calls the two taps below, which do one `put_nowait` each; everything else (connecting
the secondary, writing to it, reading it, parsing and comparing) runs on this module's
own tasks behind bounded queues. When a queue is full the frame is dropped, counted,
and the turn is marked so its verdict says the comparison was incomplete.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import logging.handlers
import time
from collections.abc import Callable, Mapping
from typing import Any

import aiohttp
from aiohttp import WSMsgType
from multidict import CIMultiDict

from strangler.flags.model import MISMATCH_RATIO, UNIFIED_ERROR_RATIO
from strangler.legacy_adapters.base import Adapter
from strangler.legacy_adapters.registry import adapter as dialect_adapter
from strangler.proxy.relay import upstream
from strangler.proxy.shadow.hub import MismatchSample, ShadowHub
from strangler.proxy.shadow.redact import Redactor
from strangler.proxy.shadow.turns import Comparator
from strangler.proxy.shadow.verdict import Outcome, Side, Verdict

log = logging.getLogger("strangler.shadow")

SHADOW_HEADER = "X-Strangler-Shadow"
_POLL_SECONDS = 0.25


# Items of the comparison queue: who sent it, the raw frame, when it passed.
_CLIENT = "client"


class Tee:
    """One connection's secondary and comparison; the relay sees only the two taps."""

    def __init__(
        self,
        hub: ShadowHub,
        *,
        route: str,
        mode: str,
        dialect: str,
        primary: Side,
        client_to_secondary: Callable[[bytes], tuple[str, ...]] | None,
        observe: Callable[[str, bool], None] | None = None,
        identities: tuple[str, ...] = (),
    ) -> None:
        self.hub = hub
        # Stored transcripts lose the configured paths, secret keys and this
        # connection's user ids (proxy/shadow/redact.py); the ids stay in this object.
        self._redact = Redactor(hub.settings.redact, identities)
        # Feeds the flag's guard (proxy/release/guards.py): what it watches, and whether it failed.
        self._observe = observe or _ignore
        self.route = route
        self.mode = mode
        self.primary = primary
        self.secondary = Side.LEGACY if primary is Side.UNIFIED else Side.UNIFIED
        # Legacy speaks the client's dialect; its frames are made canonical to compare.
        self._legacy_adapter: Adapter = dialect_adapter(dialect)
        self._client_adapter: Adapter = self._legacy_adapter
        self._to_secondary_frames = client_to_secondary
        n = hub.settings.queue_frames
        self._outbox: asyncio.Queue[bytes | str] = asyncio.Queue(n)
        self._compare: asyncio.Queue[tuple[str, bytes, float]] = asyncio.Queue(4 * n)
        self._dropped = False
        self._primary_closed = asyncio.Event()
        self._ws: aiohttp.ClientWebSocketResponse[Any] | None = None
        self.comparator = Comparator(primary, hub.settings.compare)
        m = hub.metrics
        self._drop_outbox = m.secondary_dropped.labels(route, "to_secondary").inc
        self._drop_compare = m.secondary_dropped.labels(route, "compare").inc

    # -- taps: called by the relay on the primary path; must never block --------------

    def client_tap(self, data: bytes, kind: WSMsgType) -> None:
        """A client frame: copy it to the secondary and to the comparison."""
        if kind is not WSMsgType.TEXT:
            return
        now = time.monotonic()
        try:
            self._outbox.put_nowait(data)
        except asyncio.QueueFull:
            self._dropped = True
            self._drop_outbox()
        self._enqueue(_CLIENT, data, now)

    def primary_tap(self, data: bytes, kind: WSMsgType) -> None:
        """A frame the primary sent the client: compare it."""
        if kind is WSMsgType.TEXT:
            self._enqueue(self.primary.value, data, time.monotonic())

    def _enqueue(self, source: str, data: bytes, now: float) -> None:
        try:
            self._compare.put_nowait((source, data, now))
        except asyncio.QueueFull:
            self._dropped = True
            self._drop_compare()

    # -- the tee's own tasks ----------------------------------------------------------

    def start(
        self,
        session: aiohttp.ClientSession,
        url: str,
        *,
        protocols: list[str],
        headers: CIMultiDict[str],
        timeout: float,
        max_message_bytes: int,
        backend: str,
    ) -> None:
        """Open the secondary and start comparing, without delaying the caller."""
        self.hub.active += 1
        self.hub.metrics.secondary_open.labels(self.route, backend).inc()
        headers = CIMultiDict(headers)
        headers[SHADOW_HEADER] = "1"
        self.hub.spawn(
            self._run(session, url, protocols, headers, timeout, max_message_bytes, backend)
        )

    def primary_closed(self) -> None:
        """The client's connection ended; the tee winds down on its own time."""
        self._primary_closed.set()

    async def _run(
        self,
        session: aiohttp.ClientSession,
        url: str,
        protocols: list[str],
        headers: CIMultiDict[str],
        timeout: float,
        max_message_bytes: int,
        backend: str,
    ) -> None:
        comparing = asyncio.create_task(self._compare_loop())
        io: list[asyncio.Task[None]] = []
        try:
            try:
                self._ws = await upstream.connect(
                    session,
                    url,
                    protocols=protocols,
                    headers=headers,
                    timeout=timeout,
                    max_message_bytes=max_message_bytes,
                )
            except upstream.UpstreamRefused:
                self._secondary_failed(backend, "refused")
            except upstream.UpstreamUnavailable:
                self._secondary_failed(backend, "unavailable")
                if self.secondary is Side.UNIFIED:
                    self._observe(UNIFIED_ERROR_RATIO, True)
            else:
                if self.secondary is Side.UNIFIED:
                    self._observe(UNIFIED_ERROR_RATIO, False)
                io = [
                    asyncio.create_task(self._write_loop(self._ws, backend)),
                    asyncio.create_task(self._read_loop(self._ws, backend)),
                ]
            await comparing
        finally:
            for task in (comparing, *io):
                task.cancel()
            await asyncio.gather(comparing, *io, return_exceptions=True)
            if self._ws is not None and not self._ws.closed:
                with contextlib.suppress(aiohttp.ClientError, ConnectionError, TimeoutError):
                    await self._ws.close(code=1000, message=b"client left")
            self.hub.active -= 1
            self.hub.metrics.secondary_open.labels(self.route, backend).dec()

    def _secondary_failed(self, backend: str, reason: str) -> None:
        self.hub.metrics.secondary_failures.labels(self.route, backend, reason).inc()
        self._enqueue("failed", reason.encode(), time.monotonic())

    async def _write_loop(self, ws: aiohttp.ClientWebSocketResponse[Any], backend: str) -> None:
        translate = self._to_secondary_frames
        while True:
            data = await self._outbox.get()
            frames: tuple[bytes | str, ...] = (
                (data,) if translate is None or isinstance(data, str) else translate(data)
            )
            try:
                for frame in frames:
                    payload = frame.encode() if isinstance(frame, str) else frame
                    await ws.send_frame(payload, WSMsgType.TEXT)
            except (ConnectionError, aiohttp.ClientError, RuntimeError):
                return  # the read loop sees the end and reports it

    async def _read_loop(self, ws: aiohttp.ClientWebSocketResponse[Any], backend: str) -> None:
        while True:
            msg = await ws.receive()
            if msg.type is WSMsgType.TEXT:
                self._enqueue(self.secondary.value, msg.data, time.monotonic())
            elif msg.type is WSMsgType.BINARY:
                continue
            else:
                # The tee closes its secondary only after this task is cancelled, so any
                # end seen here is the secondary's own doing.
                reason = "protocol_error" if msg.type is WSMsgType.ERROR else "died"
                self._secondary_failed(backend, reason)
                return

    async def _compare_loop(self) -> None:
        comparator = self.comparator
        deadline: float | None = None
        while True:
            try:
                source, data, at = await asyncio.wait_for(self._compare.get(), _POLL_SECONDS)
            except TimeoutError:
                source = ""
            now = time.monotonic()
            if self._dropped:
                self._dropped = False
                comparator.secondary_dropped(now)
            verdicts: list[Verdict] = []
            if source == _CLIENT:
                message = _parse(data)
                if message is not None:
                    comparator.client_message(self._client_adapter.client_to_canonical(message), at)
            elif source == "failed":
                verdicts = comparator.secondary_failed(data.decode(), at)
            elif source:
                frame = _parse(data)
                if frame is not None:
                    side = Side(source)
                    event = (
                        self._legacy_adapter.event_to_canonical(frame)
                        if side is Side.LEGACY
                        else frame
                    )
                    verdicts = comparator.event(side, event, at)
            verdicts += comparator.poll(now)
            self._report(verdicts)
            if self._primary_closed.is_set() and self._compare.empty():
                # Turns the primary finished may still complete on the secondary, up to
                # the comparison floor; then whatever is open is settled for good.
                if deadline is None:
                    deadline = now + self.hub.settings.compare.timeout_floor
                if comparator.open_turns == 0 or now >= deadline:
                    self._report(comparator.primary_closed(now))
                    return

    def _report(self, verdicts: list[Verdict]) -> None:
        m = self.hub.metrics
        for v in verdicts:
            m.comparisons.labels(self.route, self.mode, v.outcome.value).inc()
            self._guard(v)
            for d in v.differences:
                m.mismatches.labels(self.route, self.mode, d.category.value).inc()
            for side, duration, first in (
                (Side.LEGACY, v.legacy_duration, v.legacy_first_event),
                (Side.UNIFIED, v.unified_duration, v.unified_first_event),
            ):
                role = "primary" if side is self.primary else "secondary"
                if duration is not None:
                    m.turn_seconds.labels(self.route, side.value, role).observe(duration)
                if first is not None:
                    m.first_event_seconds.labels(self.route, side.value, role).observe(first)
            if v.outcome is not Outcome.MATCH:
                redact = self._redact
                self.hub.record(
                    MismatchSample(
                        at=time.time(),
                        route=self.route,
                        mode=self.mode,
                        turn=v.turn,
                        request_type=redact.text(v.request_type),
                        outcome=v.outcome.value,
                        differences=tuple(
                            (d.category.value, redact.text(d.detail)) for d in v.differences
                        ),
                        legacy=tuple(redact(e) for e in v.legacy_events),
                        unified=tuple(redact(e) for e in v.unified_events),
                    )
                )
                log.info(
                    "turn %s route=%s mode=%s turn=%d %s",
                    v.outcome.value,
                    self.route,
                    self.mode,
                    v.turn,
                    ",".join(sorted({d.category.value for d in v.differences})),
                )

    def _guard(self, v: Verdict) -> None:
        """What one verdict tells the flag's guard."""
        if v.outcome in (Outcome.MATCH, Outcome.MISMATCH):
            self._observe(MISMATCH_RATIO, v.outcome is Outcome.MISMATCH)
            # An agent_error only on the unified side is the router failing a turn that
            # legacy served; the same error on both sides is the request's own fault.
            self._observe(
                UNIFIED_ERROR_RATIO,
                _agent_error(v.unified_events) and not _agent_error(v.legacy_events),
            )
        elif (
            self.secondary is Side.UNIFIED
            and not v.dropped
            and v.outcome in (Outcome.SHADOW_TIMEOUT, Outcome.SHADOW_ERROR)
        ):
            # The unified secondary never finished the turn, or failed: as an outage.
            self._observe(UNIFIED_ERROR_RATIO, True)


def _ignore(watched: str, bad: bool) -> None:
    pass


def _agent_error(events: tuple[Mapping[str, Any], ...]) -> bool:
    return any(e.get("type") == "agent_error" for e in events)


def _parse(data: bytes) -> dict[str, Any] | None:
    try:
        value = json.loads(data)
    except ValueError:
        return None
    return value if isinstance(value, dict) else None
