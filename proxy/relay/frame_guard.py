"""The tunnel's frame rules in front of aiohttp's frame parser, for the per-frame relay.

aiohttp's reader is lenient where RFC 6455 is not: its server takes unmasked client
frames, its client takes masked server frames, it takes close codes 1006 and 5000 and
up, and it answers a 64-bit length with the top bit set with 1009 instead of 1002.
`FrameGuard` stands where aiohttp's parser sits on a connection's protocol object and
walks every byte first with the tunnel's scanner (proxy/relay/wsframes.py), so the
per-frame relay holds both of its peers to exactly the tunnel's rules: the bytes before
an offending frame are parsed as usual, then the reader reports the violation as aiohttp
does for its own checks (the socket is closed with the code, an ERROR message).
"""

from __future__ import annotations

import functools
import logging
from typing import Any

from aiohttp import WebSocketError

from strangler.proxy.relay.wsframes import FrameScanner

log = logging.getLogger("strangler.proxy")

_WHY = {1002: "frame breaks RFC 6455", 1007: "close reason is not UTF-8"}


class FrameGuard:
    """Stands in for aiohttp's frame parser: what reaches it has passed the rules."""

    __slots__ = ("_inner", "_queue", "_scanner")

    def __init__(self, inner: Any, queue: Any, *, masked: bool) -> None:
        self._inner = inner  # aiohttp's WebSocketReader
        self._queue = queue  # the WebSocketDataQueue it feeds
        # No size limit here (aiohttp's reader enforces it); no extension is agreed on
        # either hop of the per-frame relay, so a reserved bit is an error too.
        self._scanner = FrameScanner(0, masked=masked, extensions=False)

    def feed_data(self, data: bytes) -> tuple[bool, bytes]:
        if self._scanner.error:
            return True, b""
        scan = self._scanner.feed(data)
        if not scan.error:
            result: tuple[bool, bytes] = self._inner.feed_data(data)
            return result
        # Only what lies before the offending frame is parsed; a frame that began in an
        # earlier chunk (a negative offset) left aiohttp a header it cannot finish.
        if scan.error_offset > 0:
            eof, tail = self._inner.feed_data(data[: scan.error_offset])
            if eof:
                return eof, tail  # aiohttp found an earlier error of its own
        self._queue.set_exception(WebSocketError(scan.error, _WHY.get(scan.error, "")))
        return True, b""

    def feed_eof(self) -> None:
        self._inner.feed_eof()


@functools.cache
def warn_unchecked(side: str) -> None:
    """Once per process: this aiohttp hides its frame parser, so `side` goes unchecked."""
    log.warning("this aiohttp hides its frame parser: %s frames pass unchecked", side)
