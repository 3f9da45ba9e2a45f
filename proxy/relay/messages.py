"""Whole text messages out of the bytes one direction of the tunnel forwarded (pure).

A compared connection (shadow, live) rides the byte tunnel when its primary speaks the
client's dialect: the primary's frames pass as bytes, and the comparison gets copies of
the text messages from a `TextMessages` reader fed with what the tunnel wrote. What it
reads has already passed the tunnel's frame scanner (proxy/relay/wsframes.py), so it is
well framed and within the size limit; this reader only cuts it into messages: payloads
unmasked, fragments joined, control frames and binary messages passed over. Extensions
are not agreed on such a connection (the proxy leaves the client's offer out of the
backend's handshake), so no message is compressed.
"""

from __future__ import annotations

from collections.abc import Callable

from strangler.proxy.relay.wsframes import OP_BINARY, OP_CONTINUATION, OP_TEXT, apply_mask


class TextMessages:
    """Cuts one direction's forwarded bytes into text messages, each given to `deliver`."""

    __slots__ = ("_buf", "_deliver", "_parts")

    def __init__(self, deliver: Callable[[bytes], None]) -> None:
        self._deliver = deliver
        self._buf = bytearray()  # the start of a frame not whole yet
        # The fragments so far of a message not ended yet: a list for text, None for
        # binary, absent (False) between messages.
        self._parts: list[bytes] | bool | None = False

    def feed(self, data: bytes) -> None:
        """The next bytes forwarded: every message they complete is delivered."""
        buf = self._buf
        if buf:
            buf += data
            view: bytes | bytearray = buf
        else:
            view = data
        n = len(view)
        pos = 0
        while n - pos >= 2:
            b0 = view[pos]
            b1 = view[pos + 1]
            ln = b1 & 0x7F
            hl = 2
            if ln == 126:
                if n - pos < 4:
                    break
                ln = view[pos + 2] << 8 | view[pos + 3]
                hl = 4
            elif ln == 127:
                if n - pos < 10:
                    break
                ln = int.from_bytes(view[pos + 2 : pos + 10], "big")
                hl = 10
            masked = b1 & 0x80
            if masked:
                hl += 4
            end = pos + hl + ln
            if end > n:
                break
            op = b0 & 0x0F
            if op <= OP_BINARY:  # continuation, text, binary: the data frames
                self._data_frame(view, op, b0 & 0x80, pos, hl, end, masked)
            pos = end
        if pos == n:
            if buf:
                buf.clear()
        elif buf:
            del buf[:pos]
        else:
            buf += view[pos:]

    def _data_frame(
        self, view: bytes | bytearray, op: int, fin: int, pos: int, hl: int, end: int, masked: int
    ) -> None:
        parts = self._parts
        if op != OP_CONTINUATION:
            parts = [] if op == OP_TEXT else None
        if isinstance(parts, list):
            payload = bytes(view[pos + hl : end])
            if masked and payload:
                payload = apply_mask(payload, bytes(view[pos + hl - 4 : pos + hl]))
            parts.append(payload)
        if fin:
            self._parts = False
            if isinstance(parts, list):
                self._deliver(parts[0] if len(parts) == 1 else b"".join(parts))
        else:
            self._parts = parts
