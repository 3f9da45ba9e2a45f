"""One accepted WebSocket connection: the message loop both backends share.

Only the task running :meth:`Session.run` reads the socket. Turns and floods run one
after another on a worker task, so pings are answered while a turn is playing (as
the legacy backend did) but two turns never interleave their events.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import random
import secrets
from collections.abc import Awaitable, Callable, Mapping
from typing import Any, Final

from aiohttp import WSMsgType, web

from strangler.reference import envelopes
from strangler.reference.dialects import Nesting
from strangler.reference.divergence import Divergence, diverge
from strangler.reference.script import TURN_TYPES, canonical_type, golden_turn, request_text
from strangler.reference.settings import BackendSettings

log = logging.getLogger(__name__)

Job = Callable[[], Awaitable[None]]

MAX_PENDING_JOBS: Final = 64
MAX_FLOOD_COUNT: Final = 1_000_000
MAX_FLOOD_SIZE: Final = 4 * 1024 * 1024
MAX_CLOSE_REASON_BYTES: Final = 123
_SILENT_TYPES: Final = frozenset({"pong", "heartbeat_ack"})


def valid_close_code(code: int) -> bool:
    """Whether an endpoint may send ``code`` in a close frame (RFC 6455 section 7.4)."""
    return code in (1000, 1001, 1002, 1003) or 1007 <= code <= 1014 or 3000 <= code <= 4999


def truncate_reason(reason: str) -> bytes:
    """A close reason cut to the 123 bytes a close frame allows, on a character boundary."""
    return reason.encode("utf-8")[:MAX_CLOSE_REASON_BYTES].decode("utf-8", "ignore").encode()


def flood_frame(seq: int, size: int) -> str:
    """A text frame of exactly ``size`` bytes; JSON when there is room for it."""
    head = f'{{"type":"flood","seq":{seq},"pad":"'
    tail = '"}'
    room = size - len(head) - len(tail)
    if room < 0:
        return "x" * size
    return head + "x" * room + tail


class Session:
    """Serves one accepted socket until the peer or the server closes it."""

    def __init__(
        self,
        ws: web.WebSocketResponse,
        *,
        nesting: Nesting,
        user_id: str,
        connection_id: str,
        settings: BackendSettings,
        transport: asyncio.BaseTransport | None = None,
    ) -> None:
        self._ws = ws
        self._transport = transport  # only to drop the connection abruptly (CRASH)
        self._nesting = nesting
        self._user_id = user_id
        self._connection_id = connection_id
        self._settings = settings
        self._rng = random.Random()
        self._jobs: asyncio.Queue[Job] = asyncio.Queue(MAX_PENDING_JOBS)

    async def send_json(self, frame: Mapping[str, Any]) -> bool:
        """Send a JSON frame; False if the peer is gone."""
        return await self.send_text(json.dumps(frame))

    async def send_text(self, text: str) -> bool:
        """Send a text frame; False if the peer is gone."""
        try:
            await self._ws.send_str(text)
        except ConnectionError:
            # ConnectionResetError (and aiohttp.ClientConnectionResetError, a subclass)
            # when the transport is closing, bare ConnectionError when it is lost while
            # draining: a peer vanishing mid-send is routine here, not worth a traceback.
            return False
        return True

    async def send_binary(self, data: bytes) -> bool:
        """Send a binary frame; False if the peer is gone."""
        try:
            await self._ws.send_bytes(data)
        except ConnectionError:
            return False
        return True

    async def run(self) -> None:
        """Read and answer client frames until the connection ends."""
        worker = asyncio.create_task(self._work())
        try:
            await self._read_loop()
        finally:
            worker.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await worker

    async def _read_loop(self) -> None:
        idle = self._settings.heartbeat_idle
        timeout = idle if idle > 0 else None
        while True:
            try:
                msg = await self._ws.receive(timeout=timeout)
            except TimeoutError:
                if not await self.send_json(envelopes.heartbeat(self._connection_id)):
                    return
                continue
            if msg.type is WSMsgType.TEXT:
                await self._on_text(msg.data)
            elif msg.type is WSMsgType.BINARY:
                await self.send_binary(msg.data)
            else:  # CLOSE, CLOSING, CLOSED or ERROR: the conversation is over.
                return

    async def _work(self) -> None:
        while True:
            job = await self._jobs.get()
            await job()

    async def _on_text(self, raw: str) -> None:
        try:
            message = json.loads(raw)
        except ValueError:
            await self._reject("Invalid JSON")
            return
        if not isinstance(message, dict):
            await self._reject("Message must be a JSON object")
            return
        msg_type = message.get("type")
        if not isinstance(msg_type, str):
            await self._reject("Message must have a string 'type'")
            return
        if msg_type == "echo":
            # Relay tests compare bytes, so echo the received text, not a re-encoding.
            await self.send_text(raw)
        elif msg_type == "close_me":
            await self._close_on_request(_payload(message))
        elif msg_type == "flood":
            await self._flood_on_request(_payload(message))
        elif msg_type == "ping":
            # Top-level fields join the payload and the payload's own keys win (PROTOCOL.md 2).
            stamp = _payload(message).get("timestamp", message.get("timestamp"))
            await self.send_json(envelopes.pong(stamp))
        elif msg_type in _SILENT_TYPES:
            pass
        elif canonical_type(msg_type) in TURN_TYPES:
            await self._jobs.put(lambda: self._play_turn(message))
        else:  # stop_agent, switch_thread and anything unknown
            await self.send_json(envelopes.ack(msg_type))

    async def _reject(self, reason: str) -> None:
        await self.send_json(envelopes.invalid_message(self._nesting, reason))

    async def _play_turn(self, message: Mapping[str, Any]) -> None:
        payload = _payload(message)
        run_id = _first_str(message, payload, "run_id") or f"run_{secrets.token_hex(8)}"
        items = golden_turn(
            request_text(message),
            run_id=run_id,
            thread_id=_first_str(message, payload, "thread_id"),
            vary=self._settings.vary,
            rng=self._rng,
        )
        # A regression on purpose (shadow tests, demos): leave some event types out.
        items = [item for item in items if item["type"] not in self._settings.omit_events]
        divergence = self._divergence(request_text(message))
        if divergence is not None:
            items = diverge(items, divergence)
        if divergence is Divergence.FLOOD:
            for _ in range(5000):
                if not await self.send_json(envelopes.heartbeat("flood")):
                    return
        for index, item in enumerate(items):
            if index and self._settings.event_delay > 0:
                await asyncio.sleep(self._settings.event_delay)
            if divergence is Divergence.HANG and index == 1:
                return  # agent_started went out; nothing else ever will
            if divergence is Divergence.CRASH and index == 2:
                if isinstance(self._transport, asyncio.Transport):
                    self._transport.abort()  # gone without a close frame
                return
            frame = envelopes.turn_event(self._nesting, item, user_id=self._user_id)
            if not await self.send_json(frame):
                return

    def _divergence(self, text: str) -> Divergence | None:
        kind = self._settings.divergence
        if kind is None or self._settings.divergence_keyword not in text:
            return None
        return Divergence(kind)

    async def _close_on_request(self, payload: Mapping[str, Any]) -> None:
        code = payload.get("code", 1000)
        reason = payload.get("reason", "")
        if not isinstance(code, int) or not valid_close_code(code) or not isinstance(reason, str):
            await self._reject("close_me needs a valid close code and a string reason")
            return
        await self._ws.close(code=code, message=truncate_reason(reason))

    async def _flood_on_request(self, payload: Mapping[str, Any]) -> None:
        count = payload.get("count", 0)
        size = payload.get("size", 0)
        if not (
            isinstance(count, int)
            and isinstance(size, int)
            and 0 <= count <= MAX_FLOOD_COUNT
            and 0 <= size <= MAX_FLOOD_SIZE
        ):
            await self._reject("flood needs integer count and size within limits")
            return
        await self._jobs.put(lambda: self._flood(count, size))

    async def _flood(self, count: int, size: int) -> None:
        for seq in range(count):
            if not await self.send_text(flood_frame(seq, size)):
                log.debug("flood stopped after %d of %d frames: peer gone", seq, count)
                return


def _payload(message: Mapping[str, Any]) -> Mapping[str, Any]:
    payload = message.get("payload")
    return payload if isinstance(payload, Mapping) else {}


def _first_str(message: Mapping[str, Any], payload: Mapping[str, Any], key: str) -> str | None:
    for source in (message, payload):
        value = source.get(key)
        if isinstance(value, str) and value:
            return value
    return None
