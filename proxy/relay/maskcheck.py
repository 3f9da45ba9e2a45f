"""Finds the first unmasked frame in what a client sends (pure: no I/O, no aiohttp).

RFC 6455 5.1: a server must fail the connection when a client frame is not masked.
aiohttp's server reads unmasked client frames without complaint, so the proxy walks
the frame headers itself: only the headers are read, every payload is skipped by
arithmetic, and headers split across reads are held until they are complete.
"""

from __future__ import annotations

_MASK_BIT = 0x80


class MaskCheck:
    """Walks one client connection's frame headers across arbitrary read boundaries."""

    __slots__ = ("_held", "_skip", "failed")

    def __init__(self) -> None:
        self._held = b""  # the start of a header that is not complete yet
        self._skip = 0  # payload bytes of the current frame still to come
        self.failed = False

    def feed(self, data: bytes) -> int:
        """How many bytes of `data` lie before the first unmasked frame (all: none found).

        A header's first byte that ended an earlier read was counted in that read (one
        byte decides nothing). Once failed, the check passes nothing more.
        """
        if self.failed:
            return 0
        n = len(data)
        if self._skip >= n:
            self._skip -= n
            return n
        held = len(self._held)
        buf = self._held + data if held else data
        pos = self._skip  # a held header means the last payload ended: _skip is 0
        self._skip = 0
        self._held = b""
        end = len(buf)
        while pos < end:
            if end - pos < 2:
                self._held = buf[pos:]
                return n
            second = buf[pos + 1]
            if not second & _MASK_BIT:
                self.failed = True
                return max(0, pos - held)
            length = second & 0x7F
            header = 6 if length < 126 else (8 if length == 126 else 14)
            if end - pos < header:
                self._held = buf[pos:]
                return n
            if length == 126:
                length = int.from_bytes(buf[pos + 2 : pos + 4], "big")
            elif length == 127:
                length = int.from_bytes(buf[pos + 2 : pos + 10], "big")
            pos += header + length
        self._skip = pos - end
        return n
