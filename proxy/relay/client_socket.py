"""The client-facing WebSocket: aiohttp's, with the tunnel's frame rules in front of its parser.

aiohttp's server accepts unmasked client frames, close codes such as 1006 and 5000, and
answers an impossible 64-bit length with 1009; RFC 6455 asks for 1002 in each case.
`ClientSocket` puts a `FrameGuard` (proxy/relay/frame_guard.py) in front of aiohttp's
frame parser: bytes before an offending frame are parsed as usual, then the reader
reports the violation exactly as aiohttp does for its own checks (close 1002, or 1007
for a close reason that is not UTF-8; an ERROR message).
"""

from __future__ import annotations

from typing import Any

from aiohttp import web
from aiohttp.web_request import BaseRequest

from strangler.proxy.relay.frame_guard import FrameGuard, warn_unchecked


class ClientSocket(web.WebSocketResponse):
    """A `web.WebSocketResponse` that fails a client breaking RFC 6455 (1002 or 1007)."""

    def _post_start(self, request: BaseRequest, protocol: str | None, writer: Any) -> None:
        handler: Any = request.protocol
        if not (hasattr(handler, "_message_tail") and hasattr(handler, "_payload_parser")):
            # An aiohttp without these internals: serve the client unchecked, not fail it.
            super()._post_start(request, protocol, writer)
            warn_unchecked("client")
            return
        # Bytes the client sent right behind its handshake, before a parser existed:
        # they must pass the check too.
        tail: bytes = handler._message_tail
        handler._message_tail = b""
        super()._post_start(request, protocol, writer)
        guard = FrameGuard(handler._payload_parser, self._reader, masked=True)
        handler._payload_parser = guard
        if tail and guard.feed_data(tail)[0]:
            handler.close()
