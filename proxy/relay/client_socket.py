"""The client-facing WebSocket: aiohttp's, plus the rule that every client frame is masked.

aiohttp's server accepts unmasked client frames; RFC 6455 5.1 says the server must fail
such a connection (1002). `ClientSocket` puts a `MaskCheck` in front of aiohttp's frame
parser: bytes before an unmasked frame are parsed as usual, then the reader reports a
protocol error exactly as aiohttp does for its own checks (close 1002, an ERROR message).
"""

from __future__ import annotations

import functools
import logging
from typing import Any

from aiohttp import WebSocketError, WSCloseCode, web
from aiohttp.web_request import BaseRequest

from strangler.proxy.relay.maskcheck import MaskCheck

log = logging.getLogger("strangler.proxy")


class _MaskedFramesOnly:
    """Stands in for aiohttp's frame parser on the connection's protocol object."""

    __slots__ = ("_check", "_inner", "_queue")

    def __init__(self, inner: Any, queue: Any) -> None:
        self._inner = inner
        self._queue = queue
        self._check = MaskCheck()

    def feed_data(self, data: bytes) -> tuple[bool, bytes]:
        if self._check.failed:
            return True, b""
        ok = self._check.feed(data)
        if ok == len(data):
            result: tuple[bool, bytes] = self._inner.feed_data(data)
            return result
        if ok:
            eof, tail = self._inner.feed_data(data[:ok])
            if eof:
                return eof, tail
        self._queue.set_exception(
            WebSocketError(WSCloseCode.PROTOCOL_ERROR, "Received an unmasked frame")
        )
        return True, b""

    def feed_eof(self) -> None:
        self._inner.feed_eof()


class ClientSocket(web.WebSocketResponse):
    """A `web.WebSocketResponse` that fails a client sending unmasked frames with 1002."""

    def _post_start(self, request: BaseRequest, protocol: str | None, writer: Any) -> None:
        handler: Any = request.protocol
        if not (hasattr(handler, "_message_tail") and hasattr(handler, "_payload_parser")):
            # An aiohttp without these internals: serve the client unchecked, not fail it.
            super()._post_start(request, protocol, writer)
            _warn_unchecked()
            return
        # Bytes the client sent right behind its handshake, before a parser existed:
        # they must pass the check too.
        tail: bytes = handler._message_tail
        handler._message_tail = b""
        super()._post_start(request, protocol, writer)
        guard = _MaskedFramesOnly(handler._payload_parser, self._reader)
        handler._payload_parser = guard
        if tail and guard.feed_data(tail)[0]:
            handler.close()


@functools.cache
def _warn_unchecked() -> None:
    log.warning("this aiohttp hides its frame parser: unmasked client frames pass unchecked")
