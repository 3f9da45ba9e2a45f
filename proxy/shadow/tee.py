"""The shadow tee: a compared secondary backend beside a client's primary one.

In `shadow` mode legacy answers the client and the unified router gets a copy of every
client message; in `live` mode the reverse. The secondary's frames never reach the
client. Design rules:

- **The primary never waits on the secondary.** The relay only calls the two taps
  below, which do one bounded append each; everything else (connecting the secondary,
  writing to it, reading it, parsing and comparing) runs on this module's own tasks.
- **The secondary cannot cost the primary its frames.** Client and primary frames wait
  in one bounded queue, the secondary's in another, and the comparison always empties
  the first before it takes from the second. A secondary that sends faster than it is
  compared, or reads the client's copy slower than the client sends, overflows its own
  queue: that is the secondary's failure (`overflow`), it is closed, and the turns it
  had not finished say `shadow_error` with the reason `secondary_overflow`. Only the
  comparison falling behind the primary itself drops primary frames (`compare`).
- **Shadow work gives way first.** The hub's shedding level (proxy/shadow/shed.py)
  decides whether a turn starting now is compared (if not, it says `shed`), and may
  close this secondary (`shed`): its unfinished turns say `shed`, and once nothing is
  left to compare the taps stop copying altogether. The comparison's own time is
  added to the hub's `busy`, one of the two things the level is decided from; an
  uncompared turn's frames are read only as far as their type.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import logging.handlers
import time
from collections import deque
from collections.abc import Callable, Mapping
from typing import Any

import aiohttp
from aiohttp import WSMsgType
from multidict import CIMultiDict

from strangler.flags.model import MISMATCH_RATIO, UNIFIED_ERROR_RATIO
from strangler.legacy_adapters.base import Adapter
from strangler.legacy_adapters.registry import adapter as dialect_adapter
from strangler.proxy.relay import upstream
from strangler.proxy.shadow.frames import parse, peek_type
from strangler.proxy.shadow.hub import MismatchSample, ShadowHub
from strangler.proxy.shadow.redact import Redactor
from strangler.proxy.shadow.turns import Comparator
from strangler.proxy.shadow.verdict import Outcome, Side, Verdict

log = logging.getLogger("strangler.shadow")

SHADOW_HEADER = "X-Strangler-Shadow"
_POLL_SECONDS = 0.25
# Frames compared before the comparison lets the other tasks run.
_BATCH = 64
# The close code a flooding secondary gets (RFC 6455: policy violation).
_OVERFLOW_CLOSE = 1008
# A secondary closed to shed its work is going away, not at fault.
_SHED_CLOSE = 1001
_SHED = "shed"  # the failure marker of a shed secondary (not a failure: not counted)

# Items of the primary-side queue: who sent it (this, or the primary's side), the raw
# frame, when it passed.
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
        # The comparison's two inputs (module docstring): client and primary frames,
        # then the secondary's (raw frame or None, when, failure reason or None).
        self._limit = 4 * n
        self._from_primary: deque[tuple[str, bytes, float]] = deque()
        self._from_secondary: deque[tuple[bytes | None, float, str | None]] = deque()
        self._wake = asyncio.Event()
        self._dropped = False  # primary frames lost: the comparison fell behind
        self._failure: str | None = None  # why the secondary failed, once it has
        self._overflowed = asyncio.Event()  # stop the secondary now: it flooded, or was shed
        # Shed, and nothing left to compare: the taps do nothing (and a tunnel stops
        # reading its bytes as messages).
        self.detached = False
        self._primary_closed = asyncio.Event()
        self._ws: aiohttp.ClientWebSocketResponse[Any] | None = None
        self.comparator = Comparator(primary, hub.settings.compare)
        m = hub.metrics
        self._drop_outbox = m.secondary_dropped.labels(route, "to_secondary").inc
        self._drop_compare = m.secondary_dropped.labels(route, "compare").inc
        self._drop_inbound = m.secondary_dropped.labels(route, "from_secondary").inc
        self._backend = ""

    # -- taps: called by the relay on the primary path; must never block --------------

    def client_tap(self, data: bytes, kind: WSMsgType) -> None:
        """A client frame (the per-frame relay's tap)."""
        if kind is WSMsgType.TEXT:
            self.client_text(data)

    def primary_tap(self, data: bytes, kind: WSMsgType) -> None:
        """A frame the primary sent the client (the per-frame relay's tap)."""
        if kind is WSMsgType.TEXT and not self.detached:
            self._enqueue(self.primary.value, data, time.monotonic())

    def client_text(self, data: bytes) -> None:
        """A client's text message: copy it to the secondary and to the comparison."""
        if self.detached:
            return
        now = time.monotonic()
        if self._failure is None:  # a failed secondary gets no more copies
            try:
                self._outbox.put_nowait(data)
            except asyncio.QueueFull:
                # The secondary reads slower than the client writes: its failure.
                self._drop_outbox()
                self._overflow()
        self._enqueue(_CLIENT, data, now)

    def primary_text(self, data: bytes) -> None:
        """A text message the primary sent the client: compare it."""
        if not self.detached:
            self._enqueue(self.primary.value, data, time.monotonic())

    def _enqueue(self, source: str, data: bytes, now: float) -> None:
        if len(self._from_primary) >= self._limit:
            self._dropped = True
            self._drop_compare()
            return
        self._from_primary.append((source, data, now))
        self._wake.set()

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
        self.hub.opened(self)
        self.hub.metrics.secondary_open.labels(self.route, backend).inc()
        headers = CIMultiDict(headers)
        headers[SHADOW_HEADER] = "1"
        self.hub.spawn(
            self._run(session, url, protocols, headers, timeout, max_message_bytes, backend)
        )

    def primary_closed(self) -> None:
        """The client's connection ended; the tee winds down on its own time."""
        self._primary_closed.set()
        self._wake.set()  # an idle comparison waits without a timer

    def shed(self) -> None:
        """Close the secondary to shed its work (the hub's call): its unfinished turns
        are SHED, and the connection goes on uncompared."""
        if self._failure is not None:
            return  # already failed, or already shed: nothing left to stop
        self._failure = _SHED  # no more copies to it
        # Past the bound on purpose, as a failure's marker: once per connection.
        self._from_secondary.append((None, time.monotonic(), _SHED))
        self._wake.set()
        self._overflowed.set()

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
        self._backend = backend
        comparing = asyncio.create_task(self._compare_loop())
        overflowed = asyncio.create_task(self._overflowed.wait())
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
                    asyncio.create_task(self._read_loop(self._ws)),
                ]
            await asyncio.wait((comparing, overflowed), return_when=asyncio.FIRST_COMPLETED)
            if overflowed.done():
                # Stop paying for a flooding (or shed) secondary at once; the comparison
                # goes on for the client's turns (they end as shadow_error, or shed).
                for task in io:
                    task.cancel()
                await asyncio.gather(*io, return_exceptions=True)
                if self._failure == _SHED:
                    await self._close_secondary(_SHED_CLOSE, b"shadow shed")
                else:
                    await self._close_secondary(_OVERFLOW_CLOSE, b"flooded the comparison")
                await comparing
        finally:
            tasks: list[asyncio.Task[Any]] = [comparing, overflowed, *io]
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            await self._close_secondary(1000, b"client left")
            self.hub.active -= 1
            self.hub.closed(self)
            self.hub.metrics.secondary_open.labels(self.route, backend).dec()

    async def _close_secondary(self, code: int, message: bytes) -> None:
        # Bounded by the connection's ws_close timeout (proxy/relay/upstream.py).
        if self._ws is not None and not self._ws.closed:
            with contextlib.suppress(aiohttp.ClientError, ConnectionError, TimeoutError):
                await self._ws.close(code=code, message=message)

    def _secondary_failed(self, backend: str, reason: str) -> None:
        """The secondary's first failure is counted and told to the comparison, after
        the frames it sent before it (they may still finish turns)."""
        if self._failure is not None:
            return
        self._failure = reason
        self.hub.metrics.secondary_failures.labels(self.route, backend, reason).inc()
        # Past the bound on purpose: one marker, once per connection.
        self._from_secondary.append((None, time.monotonic(), reason))
        self._wake.set()

    def _overflow(self) -> None:
        """A queue of the secondary's overflowed: the secondary has failed."""
        if self._failure is None:
            self._secondary_failed(self._backend, "overflow")
            self._overflowed.set()

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

    async def _read_loop(self, ws: aiohttp.ClientWebSocketResponse[Any]) -> None:
        inbound, limit = self._from_secondary, self._limit
        while True:
            msg = await ws.receive()
            if msg.type is WSMsgType.TEXT:
                if len(inbound) >= limit:
                    self._drop_inbound()
                    self._overflow()
                    return
                inbound.append((msg.data, time.monotonic(), None))
                self._wake.set()
            elif msg.type is WSMsgType.BINARY:
                continue
            else:
                # The tee closes its secondary only after this task is cancelled, so any
                # end seen here is the secondary's own doing.
                reason = "protocol_error" if msg.type is WSMsgType.ERROR else "died"
                self._secondary_failed(self._backend, reason)
                return

    async def _compare_loop(self) -> None:
        comparator, hub = self.comparator, self.hub
        from_primary, from_secondary, wake = self._from_primary, self._from_secondary, self._wake
        loop = asyncio.get_running_loop()
        clock = time.perf_counter
        deadline: float | None = None
        batch = 0
        began = clock()
        while True:
            verdicts: list[Verdict] = []
            if not from_primary and not from_secondary:
                batch = 0
                hub.busy += clock() - began  # the comparison's time, for shedding
                wake.clear()
                if comparator.open_turns or self._primary_closed.is_set():
                    # A turn may time out, or the primary's end settle, without another
                    # frame: look again after a while. (A timer handle costs a fraction
                    # of a timeout context, and most waits between turns need neither.)
                    poll = loop.call_later(_POLL_SECONDS, wake.set)
                    await wake.wait()
                    poll.cancel()
                else:
                    await wake.wait()
                began = clock()
            elif batch >= _BATCH:
                batch = 0
                hub.busy += clock() - began
                await asyncio.sleep(0)  # a busy comparison must not starve the relays
                began = clock()
            now = time.monotonic()
            if self._dropped:
                self._dropped = False
                comparator.secondary_dropped(now)
            # The primary's side first: a secondary's backlog never holds it up, and a
            # secondary frame is taken only once every earlier client request is in.
            # Once the secondary is shed, its (bounded) backlog and the shed marker come
            # first: under a steady load the primary's side is never empty, and the
            # marker is what lets the tee let go of the connection.
            if from_primary and not (from_secondary and self._failure == _SHED):
                batch += 1
                source, data, at = from_primary.popleft()
                if source == _CLIENT:
                    message = parse(data)
                    if message is not None:
                        canonical = self._client_adapter.client_to_canonical(message)
                        skip = hub.skips_turns
                        if comparator.client_message(canonical, at, shed=skip) and skip:
                            hub.shed(self.route, "turn_skipped")
                else:
                    verdicts = self._event(self.primary, data, at)
            elif from_secondary:
                batch += 1
                raw, at, failure = from_secondary.popleft()
                if failure == _SHED:
                    verdicts = comparator.secondary_shed(at)
                elif failure is not None:
                    verdicts = comparator.secondary_failed(failure, at)
                elif raw is not None:
                    verdicts = self._event(self.secondary, raw, at)
            verdicts += comparator.poll(now)
            self._report(verdicts)
            if self._failure == _SHED and not comparator.comparing:
                # Shed, and every turn it was still comparing is judged: stop copying.
                self.detached = True
                from_primary.clear()
                self._report(comparator.primary_closed(now))
                hub.busy += clock() - began
                return
            if self._primary_closed.is_set() and not from_primary and not from_secondary:
                # Turns the primary finished may still complete on the secondary, up to
                # the comparison floor; then whatever is open is settled for good.
                if deadline is None:
                    deadline = now + self.hub.settings.compare.timeout_floor
                if comparator.open_turns == 0 or now >= deadline:
                    self._report(comparator.primary_closed(now))
                    hub.busy += clock() - began
                    return

    def _event(self, side: Side, data: bytes, at: float) -> list[Verdict]:
        comparator = self.comparator
        if not comparator.keeps(side):
            # Nothing of this event would be kept: its type keeps the turns paired.
            kind = peek_type(data)
            if kind is not None:
                return comparator.event(side, {"type": kind}, at)
        frame = parse(data)
        if frame is None:
            return []
        event = self._legacy_adapter.event_to_canonical(frame) if side is Side.LEGACY else frame
        return comparator.event(side, event, at)

    def _reason(self, v: Verdict) -> str | None:
        """Why a turn was not compared (None for a match or a mismatch: the
        differences say it)."""
        if v.outcome is Outcome.SHADOW_ERROR:
            if self._failure is not None:
                return f"secondary_{self._failure}"
            return "compare_overflow" if v.dropped else "secondary_error"
        if v.outcome is Outcome.SHADOW_TIMEOUT:
            return "secondary_late"
        if v.outcome is Outcome.PRIMARY_INCOMPLETE:
            return "client_left"
        return None

    def _report(self, verdicts: list[Verdict]) -> None:
        m = self.hub.metrics
        for v in verdicts:
            m.tally(m.comparisons, self.route, self.mode, v.outcome.value).add()
            if v.outcome is Outcome.SHED:
                # Not compared: nothing to record, and nothing for the guard (under
                # load, recording every shed turn would be work of its own).
                continue
            self._guard(v)
            # A mismatched turn counts once per category it shows (docs/METRICS.md).
            for category in dict.fromkeys(d.category for d in v.differences):
                m.tally(m.mismatches, self.route, self.mode, category.value).add()
            self.hub.noise.add(v.noise)  # fields that differed within policy, by path
            for side, duration, first in (
                (Side.LEGACY, v.legacy_duration, v.legacy_first_event),
                (Side.UNIFIED, v.unified_duration, v.unified_first_event),
            ):
                role = "primary" if side is self.primary else "secondary"
                if duration is not None:
                    m.series(m.turn_seconds, self.route, side.value, role).observe(duration)
                if first is not None:
                    m.series(m.first_event_seconds, self.route, side.value, role).observe(first)
            if v.outcome is not Outcome.MATCH:
                redact = self._redact
                reason = self._reason(v)
                sample = self.hub.record(
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
                        reason=reason,
                        rules=tuple(redact.text(d.rule) for d in v.differences),
                    )
                )
                log.info(
                    "turn %s route=%s mode=%s turn=%d %s id=%s",
                    v.outcome.value,
                    self.route,
                    self.mode,
                    v.turn,
                    ",".join(sorted({d.category.value for d in v.differences})) or reason,
                    sample.id,
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
