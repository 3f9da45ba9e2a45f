"""An incremental RFC 6455 frame-header scanner for the byte tunnel (pure: no I/O, no asyncio).

The tunnel (proxy/relay/tunnel.py) forwards WebSocket bytes without framing them. To count
messages, enforce the message size limit, notice close frames and know where it may
inject a close frame of its own, it only needs the frame *headers*: this scanner walks
them across arbitrary chunk boundaries and skips every payload by arithmetic. Data
payloads are never copied or unmasked; a close frame (at most 125 bytes) is read whole,
to judge its code and reason (proxy/relay/closecodes.py). The per-frame relay runs the
same scanner in front of aiohttp's parser on both of its sockets
(proxy/relay/frame_guard.py), so both relays hold peers to the same rules.

One scanner reads one direction of one connection. `masked=True` for what a client
sends (every frame must be masked), `masked=False` for what a server sends (none may be).

`feed(chunk)` returns a `Scan`:

- `messages`, `payload_bytes`: data messages completed and data-frame payload bytes
  (text, binary, continuation; wire bytes, so compressed size under permessage-deflate)
  carried by this chunk;
- `pending`: the last `pending` bytes fed (possibly reaching back into earlier chunks)
  are the start of a frame not judged yet: a header that is not complete, or a close
  frame whose body has not all come. A forwarder holds them back and sends them with
  the next chunk, so what it has forwarded always ends on a frame boundary when
  `at_boundary` is true, a frame of its own (a close) may follow, and a close frame
  goes on only once it is known to be valid;
- `at_boundary`: no frame is cut in the middle of its payload, i.e. everything fed so
  far but the `pending` bytes is whole frames;
- `close_seen` / `close_code`: a complete, valid close frame was in this chunk (the
  first one counts); the code is None for a close frame without one (1005);
- `error` / `error_offset`: 1002 for a protocol violation (reserved opcode, a control
  frame over 125 bytes or fragmented, a mask bit that contradicts `masked`, a
  continuation without a start, a new data message inside a fragmented one, a 64-bit
  length with its top bit set, a reserved bit when `extensions` is false, a close frame
  with a 1-byte body or a code no peer may send), 1007 for a close reason that is not
  UTF-8, 1009 for a message whose fragments add up to more than `max_message_bytes`
  (0: no limit). `error_offset` is where in this chunk the offending
  frame starts: the bytes before it may still be forwarded, and they end on a frame
  boundary. It is negative when the offending frame began in an earlier chunk (its first
  bytes were `pending`, held back): then nothing of this chunk and only
  `pending_before + error_offset` held bytes may go. `messages` and `payload_bytes`
  count only what lies before the offending frame.

- `events`: with `observe=True`, what the text messages in this chunk were, for turn
  observation (proxy/relay/turns.py): each message's code (proxy/relay/turnscan.py: a
  turn message from a client, a golden-path event or `agent_error` from a server),
  four bits each in the order they came, the first in the highest bits; 0 when none
  was. The type is read from the first bytes of the payload: where it usually is
  (`{"type": "...`) it is looked up in place, without a copy or a parse (a client's
  frame has only its first bytes unmasked); elsewhere the first
  `turnscan.READ_LIMIT` bytes are scanned as JSON. A payload whose first bytes are cut
  by the end of a chunk, or spread over fragments, is read on in the next ones (those
  bytes alone are kept, at most READ_LIMIT), and the code is reported with the chunk
  that completed them. A compressed message (permessage-deflate's RSV1) is not read.

- `queued`: while `queueing` is set (the tunnel sets it on a client's scanner while a
  turn is open), turn messages are added to `queued` instead of reported in `events`:
  they only wait behind the open turn, and the tunnel takes the count when it ends.

After an error the scanner is failed and every later `Scan` repeats the error with
`error_offset` 0 (nothing more may be forwarded). After 1009 the framing is still
intact, so it keeps walking frames (without limits) and still reports `close_seen`: a
proxy can notice the offender's answer to its 1009. After 1002 or 1007 the peer is
failed (its framing may be lost) and later chunks report nothing else.

RSV bits are checked only with `extensions=False`: through the tunnel, extensions such
as permessage-deflate are negotiated end to end, and the endpoints judge them.

Two scanners keep these rules. `FrameRules._walk` is all of them, in Python. The native
core (proxy/relay/_wsscan.c, built by the install where a C compiler is) walks the usual
chunk itself: whole headers of data frames, pings and pongs, and a text type where it
usually is; any other chunk (a cut header, a close frame, an error, a type read on) it
hands whole to `_walk`, before it has changed any state. `FrameScanner` is the native
one when it was built, else `PyFrameScanner`; STRANGLER_PURE_PYTHON=1 forces the latter.
The tunnel's cost per round trip is mostly this walk in Python: the native core takes
the proxy's instructions per echo round trip from about 81,000 to about 28,000
(bench/instructions.py, bench/RESULTS.md). Either way the walk reads headers only, once
per frame and never per payload byte.
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING, Final, NamedTuple

from strangler.proxy.relay.closecodes import CLOSE_PROTOCOL_ERROR, close_body_error
from strangler.proxy.relay.turnscan import (
    CLIENT_CODES,
    CLIENT_PREFIXES,
    CLIENT_WINDOW,
    CODE_BITS,
    FAST_WINDOW,
    MAX_VALUE,
    NEED_MORE,
    READ_LIMIT,
    SERVER_CODES,
    SERVER_OPENINGS,
    SERVER_PREFIXES,
    VALUE_AT,
    code_count,
    type_code,
)

CLOSE_TOO_BIG = 1009

OP_CONTINUATION = 0x0
OP_TEXT = 0x1
OP_BINARY = 0x2
OP_CLOSE = 0x8
OP_PING = 0x9
OP_PONG = 0xA

_MAX_LENGTH = (1 << 63) - 1  # RFC 6455 5.2: the most significant bit must be 0
_NO_LIMIT = _MAX_LENGTH  # no message is longer


class Scan(NamedTuple):
    """What one chunk carried (see the module docstring)."""

    messages: int = 0
    payload_bytes: int = 0
    at_boundary: bool = True
    pending: int = 0
    close_seen: bool = False
    close_code: int | None = None
    error: int = 0
    error_offset: int = 0
    events: int = 0


class _Prefix:
    """The first bytes of a text message whose type the bytes so far could not tell."""

    __slots__ = ("buf", "key", "phase")

    def __init__(self, key: bytes | None) -> None:
        self.buf = b""  # unmasked, at most READ_LIMIT bytes
        self.key = key  # the mask of the frame being read (None: unmasked)
        self.phase = 0  # payload bytes of that frame seen so far

    def add(self, data: bytes, start: int, count: int) -> None:
        room = READ_LIMIT - len(self.buf)
        piece = data[start : start + min(count, room)]
        key = self.key
        if key is not None and piece:
            phase = self.phase % 4
            piece = apply_mask(piece, key[phase:] + key[:phase])
        self.phase += count
        self.buf += piece


# What the frame being read is, for when its payload ends.
_CONTROL = 0
_DATA = 1  # a data frame that does not end its message
_LAST = 2  # a data frame that ends its message


class FrameRules:
    """The scanner's rules, walked in Python (`_walk`). The state lives in the subclass:
    slots in PyFrameScanner, or the members of the native core (proxy/relay/_wsscan.c),
    whose `feed` walks the usual chunk itself and hands any other to `_walk`."""

    if not TYPE_CHECKING:  # mypy would take an empty __slots__ to forbid the state below
        __slots__ = ()

    # The state, by the names both kinds of scanner hold it under. Integers fit in 64
    # bits: a message's size is counted up to _MAX_LENGTH, which no limit exceeds.
    _need: int  # payload bytes of the current frame not seen yet
    _kind: int  # what the current frame is
    _fragmented: bool  # inside a message whose last frame has not come
    _msg_bytes: int  # payload of the current message so far
    _limit: int
    _mask_bit: int
    _rsv: int
    _error: int
    _stash: bytes  # the start of a frame header cut by the end of a chunk
    # Turn observation: False off; None on, between messages; a _Prefix while the first
    # bytes of a text message are read on (one slot: an idle scanner is no bigger with
    # observation on).
    _typing: _Prefix | bool | None
    # A client's turn messages, counted instead of reported while `queueing` (the tunnel
    # sets it while a turn is open: they only wait behind it, and a count is all it needs).
    queueing: bool
    queued: int
    closed: bool  # a close frame has been seen
    close_code: int | None  # ... with this code (None: none in it)
    masked: bool
    max_message_bytes: int

    def __init__(
        self,
        max_message_bytes: int,
        *,
        masked: bool,
        extensions: bool = True,
        observe: bool = False,
    ) -> None:
        if max_message_bytes < 0:
            raise ValueError("max_message_bytes must be >= 0 (0: no limit)")
        self.max_message_bytes = max_message_bytes
        self.masked = masked
        self._limit = max_message_bytes or _NO_LIMIT
        self._mask_bit = 0x80 if masked else 0
        self._rsv = 0 if extensions else 0x70  # reserved bits that break the protocol
        self._need = 0
        self._kind = _CONTROL
        self._fragmented = False
        self._msg_bytes = 0
        self._stash = b""
        self._error = 0
        self._typing = None if observe else False
        self.queueing = False
        self.queued = 0
        self.closed = False
        self.close_code = None

    @property
    def error(self) -> int:
        """0, or the close code of the error this scanner failed with."""
        return self._error

    @property
    def at_boundary(self) -> bool:
        """Whether everything fed so far but a pending header is whole frames."""
        return self._need == 0

    @property
    def pending(self) -> int:
        """Bytes of a frame header held back because the header is not whole yet."""
        return len(self._stash)

    @property
    def remaining(self) -> int:
        """Payload bytes still to come before the frame being read ends (0 at a boundary)."""
        return self._need

    def _walk(self, data: bytes | bytearray | memoryview) -> Scan:
        """Walk the frame headers of the next chunk of the stream."""
        if self._error and self._error != CLOSE_TOO_BIG:
            return Scan(error=self._error)
        counting = not self._error
        typing = self._typing
        if not isinstance(data, bytes):
            data = bytes(data)  # types are read from bytes (a view comes only after a 1009)
        collecting = typing.__class__ is _Prefix
        events = 0
        n = len(data)
        pos = 0
        messages = 0
        nbytes = 0
        close_seen = False
        close_code: int | None = None
        while True:
            need = self._need
            if need:
                take = need if need <= n - pos else n - pos
                kind = self._kind
                if kind != _CONTROL and counting:
                    nbytes += take
                    if collecting:
                        read = self._read_on(data, pos, take, kind == _LAST and take == need)
                        if read != NEED_MORE:
                            collecting = False
                            if read:
                                events = events << CODE_BITS | read
                pos += take
                need -= take
                self._need = need
                if need:
                    return Scan(
                        messages, nbytes, False, 0, close_seen, close_code, self._error, 0, events
                    )
                if kind == _LAST and counting:
                    messages += 1
            # At a frame boundary: the next header, possibly begun in the previous chunk.
            stash = self._stash
            start = pos - len(stash)  # where the frame starts, relative to this chunk
            head = stash + bytes(data[pos : pos + 14]) if stash else bytes(data[pos : pos + 14])
            if len(head) < 2 or len(head) < _header_length(head[1]):
                return self._hold(
                    stash + bytes(data[pos:]), messages, nbytes, close_seen, close_code, events
                )
            b0 = head[0]
            b1 = head[1]
            hl = _header_length(b1)
            ln = b1 & 0x7F
            if ln == 126:
                ln = head[2] << 8 | head[3]
            elif ln == 127:
                ln = int.from_bytes(head[2:10], "big")
            op = b0 & 0x0F
            fin = b0 & 0x80
            bad = b1 & 0x80 != self._mask_bit or ln > _MAX_LENGTH or bool(b0 & self._rsv)
            violation = CLOSE_PROTOCOL_ERROR
            too_big = False
            if op in (OP_TEXT, OP_BINARY):
                bad = bad or self._fragmented
                self._msg_bytes = ln if ln < _MAX_LENGTH else _MAX_LENGTH
                too_big = ln > self._limit
                self._fragmented = not fin
                self._kind = _LAST if fin else _DATA
            elif op == OP_CONTINUATION:
                bad = bad or not self._fragmented
                total = self._msg_bytes + ln
                self._msg_bytes = total if total < _MAX_LENGTH else _MAX_LENGTH
                too_big = self._msg_bytes > self._limit
                self._fragmented = not fin
                self._kind = _LAST if fin else _DATA
            elif OP_CLOSE <= op <= OP_PONG:
                bad = bad or not fin or ln > 125
                self._kind = _CONTROL
            else:
                bad = True
            if op == OP_CLOSE and not bad:
                # A close frame is judged whole, so it is held back until all of it came.
                whole = hl + ln - len(stash)  # what is still to come of it, from pos
                if whole > n - pos:
                    return self._hold(
                        stash + bytes(data[pos:]), messages, nbytes, close_seen, close_code, events
                    )
                body = (stash + bytes(data[pos : pos + whole]))[hl:]
                if self._mask_bit and body:
                    body = apply_mask(body, bytes(head[hl - 4 : hl]))
                violation = close_body_error(body)
                if not violation:
                    self._stash = b""
                    pos += whole
                    code = body[0] << 8 | body[1] if body else None
                    if not self.closed:
                        self.closed, self.close_code = True, code
                    if not close_seen:
                        close_seen, close_code = True, code
                    continue
                bad = True
            self._stash = b""
            pos += hl - len(stash)
            if bad:
                # The peer is failed: nothing from the offending frame on may be forwarded.
                first = not self._error
                self._error = violation
                self._need = 0
                if not first:
                    return Scan(0, 0, True, 0, close_seen, close_code, self._error)
                return Scan(
                    messages, nbytes, True, 0, close_seen, close_code, violation, start, events
                )
            self._need = ln
            if too_big and counting:
                # The walk goes on without limits and without counting, only to see
                # close frames (the offender's answer to a 1009).
                self._error = CLOSE_TOO_BIG
                self._limit = _NO_LIMIT
                counting = False
                error_at = start
                counted = (messages, nbytes)
                rest = self._walk_after_error(data, pos)
                return Scan(
                    counted[0],
                    counted[1],
                    True,
                    0,
                    close_seen or rest.close_seen,
                    close_code if close_seen else rest.close_code,
                    CLOSE_TOO_BIG,
                    error_at,
                    events,
                )
            if typing is not False and counting and op <= OP_TEXT:
                # The first bytes of a text message: its type, for turn observation.
                if op == OP_TEXT:
                    # Inline, the usual case: `{"type": "T"` whole in this chunk, a
                    # server's read in place, a client's first bytes unmasked at once.
                    known = None
                    if b0 & _RSV1:
                        known = 0  # compressed: its first bytes say nothing
                    elif not self._mask_bit:
                        # `{"type": "` and the type's first letter settle most frames:
                        # no event type starts as pong, heartbeat or ack do.
                        known = SERVER_OPENINGS.get(data[pos : pos + _OPENING])
                        if known is None:
                            # A quote found past this payload takes a header byte into
                            # the slice, never part of a known start: a miss, read below.
                            close = data.find(b'"', pos + _VALUE_FROM, pos + FAST_WINDOW)
                            if close > 0:
                                known = SERVER_PREFIXES.get(data[pos:close])
                    elif ln >= CLIENT_WINDOW and pos + CLIENT_WINDOW <= n and not stash:
                        # The mask and the first bytes, as one int: the mask ends the header.
                        both = _from_bytes(data[pos - 4 : pos + CLIENT_WINDOW])
                        window = (
                            (both & _WINDOW_BITS) ^ (both >> _WINDOW_SHIFT) * _KEY_STREAM
                        ).to_bytes(CLIENT_WINDOW)
                        close = window.find(b'"', _VALUE_FROM)
                        if close > 0:
                            known = CLIENT_PREFIXES.get(window[:close])
                    if known is None:
                        known = self._type_at(data, pos, n, ln, fin, head, hl)
                        collecting = known == NEED_MORE
                    if known > 0:
                        events = events << CODE_BITS | known
                elif collecting:
                    read = self._next_fragment(ln, fin, head[hl - 4 : hl])
                    if read != NEED_MORE:
                        collecting = False
                        if read:
                            events = events << CODE_BITS | read
            if not ln and self._kind == _LAST and counting:
                messages += 1

    def _hold(
        self,
        stash: bytes,
        messages: int,
        nbytes: int,
        close_seen: bool,
        close_code: int | None,
        events: int,
    ) -> Scan:
        """Keep an unfinished header (or close frame) for the next chunk: what was passed
        up to it is reported, and the held bytes wait in the stash."""
        self._stash = stash
        return Scan(
            messages, nbytes, True, len(stash), close_seen, close_code, self._error, 0, events
        )

    def _type_at(
        self, data: bytes, pos: int, n: int, ln: int, fin: int, head: bytes, hl: int
    ) -> int:
        """The code of a text message whose payload starts at `pos`, or NEED_MORE (the
        scanner then reads on, from `pos`)."""
        if head[0] & _RSV1:
            return 0  # compressed (permessage-deflate): its first bytes say nothing
        avail = n - pos if n - pos < ln else ln
        if not self._mask_bit:
            # A server's frame: read in place.
            code = type_code(data, pos, pos + avail, SERVER_CODES, avail == ln and bool(fin))
            if code == NEED_MORE:
                self._typing = _Prefix(None)
            return code
        # A client's: only the first bytes are unmasked.
        key = head[hl - 4 : hl]
        if avail > FAST_WINDOW:
            avail = FAST_WINDOW
            whole = False
        else:
            whole = avail == ln and bool(fin)
        code = type_code(apply_mask(data[pos : pos + avail], key), 0, avail, CLIENT_CODES, whole)
        if code == NEED_MORE:
            self._typing = _Prefix(key)
        return code

    def _next_fragment(self, ln: int, fin: int, key: bytes) -> int:
        """A continuation frame of a message whose type is still being read."""
        typing = self._typing
        assert isinstance(typing, _Prefix)
        typing.key = key if self._mask_bit else None
        typing.phase = 0
        if ln or not fin:
            return NEED_MORE
        return self._decide(typing, True)

    def _read_on(self, data: bytes, pos: int, take: int, last: bool) -> int:
        """More payload of a message whose type is still being read."""
        typing = self._typing
        assert isinstance(typing, _Prefix)
        typing.add(data, pos, take)
        return self._decide(typing, last)

    def _decide(self, typing: _Prefix, whole: bool) -> int:
        buf = typing.buf
        codes = CLIENT_CODES if self._mask_bit else SERVER_CODES
        code = type_code(buf, 0, len(buf), codes, whole or len(buf) >= READ_LIMIT)
        if code != NEED_MORE:
            self._typing = None
        return code

    def _walk_after_error(self, data: bytes | bytearray | memoryview, pos: int) -> Scan:
        """The rest of a chunk after a 1009 was reported in it (only closes matter)."""
        return self.feed(memoryview(data)[pos:]) if pos < len(data) or self._need else Scan()

    def feed(self, data: bytes | bytearray | memoryview) -> Scan:
        """Walk the frame headers of the next chunk of the stream (the native core's
        `feed` comes first in its class's bases, and does the same)."""
        scan = self._walk(data)
        if scan.events and self.queueing:
            self.queued += code_count(scan.events)
            return scan._replace(events=0)
        return scan


class PyFrameScanner(FrameRules):
    """The scanner in Python alone: where the native core was not built, and the
    reference the native one is tested against."""

    # Slots on every per-connection object: an idle connection should cost little.
    __slots__ = (
        "_error",
        "_fragmented",
        "_kind",
        "_limit",
        "_mask_bit",
        "_msg_bytes",
        "_need",
        "_rsv",
        "_stash",
        "_typing",
        "close_code",
        "closed",
        "masked",
        "max_message_bytes",
        "queued",
        "queueing",
    )


def _native() -> type[FrameRules] | None:
    """The scanner with its usual case in C, if the extension was built (and not
    switched off with STRANGLER_PURE_PYTHON=1)."""
    if os.environ.get("STRANGLER_PURE_PYTHON", "") not in ("", "0"):
        return None
    try:
        from strangler.proxy.relay import _wsscan
    except ImportError:
        return None
    _wsscan.configure(Scan, dict(CLIENT_CODES), dict(SERVER_CODES), MAX_VALUE)

    class NativeFrameScanner(_wsscan.ScanCore, FrameRules):
        """The native core's state and walk of the usual chunk; the rules for the rest."""

        __slots__ = ()

    NativeFrameScanner.__qualname__ = NativeFrameScanner.__name__
    return NativeFrameScanner


NATIVE: Final = _native()
if TYPE_CHECKING:
    FrameScanner = FrameRules
else:
    FrameScanner = NATIVE or PyFrameScanner


_RSV1 = 0x40  # permessage-deflate's "compressed" bit, on a message's first frame
_from_bytes = int.from_bytes
# A 4-byte mask as an int times this is the mask repeated over CLIENT_WINDOW bytes (a
# whole number of words): no carries, each copy stays in its own 32 bits. Big-endian,
# int.from_bytes's and to_bytes's default: no byte order to parse per call.
_KEY_STREAM = sum(1 << 32 * i for i in range(CLIENT_WINDOW // 4))
_WINDOW_SHIFT = 8 * CLIENT_WINDOW
_WINDOW_BITS = (1 << _WINDOW_SHIFT) - 1
_VALUE_FROM = VALUE_AT + 1  # a value's closing quote is never before this
_OPENING = len(next(iter(SERVER_OPENINGS)))


def _header_length(b1: int) -> int:
    ln = b1 & 0x7F
    return (2 if ln < 126 else 4 if ln == 126 else 10) + (4 if b1 & 0x80 else 0)


def frame(
    opcode: int,
    payload: bytes = b"",
    *,
    fin: bool = True,
    mask: bytes | None = None,
    rsv: int = 0,
) -> bytes:
    """One whole frame on the wire, masked with `mask` when given (injected closes, tests)."""
    ln = len(payload)
    b0 = (0x80 if fin else 0) | (rsv & 0x70) | opcode
    mbit = 0x80 if mask is not None else 0
    if ln < 126:
        head = bytes((b0, mbit | ln))
    elif ln < 1 << 16:
        head = bytes((b0, mbit | 126)) + ln.to_bytes(2, "big")
    else:
        head = bytes((b0, mbit | 127)) + ln.to_bytes(8, "big")
    if mask is None:
        return head + payload
    return head + mask + apply_mask(payload, mask)


def apply_mask(payload: bytes, mask: bytes) -> bytes:
    """XOR `payload` with the 4-byte `mask` (masking and unmasking are the same)."""
    if not payload:
        return b""
    n = len(payload)
    key = int.from_bytes((mask * (n // 4 + 1))[:n], "big")
    return (int.from_bytes(payload, "big") ^ key).to_bytes(n, "big")


def close_frame(code: int, reason: bytes = b"", *, mask: bytes | None = None) -> bytes:
    """A close frame with `code` and `reason` (cut to the protocol's 123 bytes)."""
    return frame(OP_CLOSE, code.to_bytes(2, "big") + reason[:123], mask=mask)
