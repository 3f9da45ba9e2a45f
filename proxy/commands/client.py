"""`strangler client`: a demo client that connects like the browser front end does.

One turn (the default): connect, send `start_agent`, print each event until the turn
ends. `--hold`: stay connected, print events as they come, send each line read from
stdin, and close normally (1000) on end of input or Ctrl-C; a close by the server is
printed with its code and reason, so a drain or a shutdown can be watched.

Exit status: 0 a complete turn (with --hold: this client closed the connection);
1 no complete turn, the server closed the connection, or it could not be reached;
2 a usage error (an unusable secret); 3 authentication failed.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import signal
import sys
import threading
from collections.abc import Awaitable
from dataclasses import dataclass, field
from http import HTTPStatus
from typing import Any, TextIO, TypeVar

import aiohttp

from strangler.proxy.commands.client_text import (
    AUTH_STATUSES,
    TURN_END,
    answers,
    auth_failure,
    close_text,
    describe,
    expects,
    refusal_text,
    sent_text,
    user_frame,
)
from strangler.proxy.edge.identity import mint_token

EXIT_OK = 0
EXIT_FAILED = 1
EXIT_USAGE = 2
EXIT_AUTH = 3

GOLDEN_PATH_END = TURN_END
T = TypeVar("T")
# Enough of a refused handshake's body for the reason it gives; the rest is not read.
REFUSAL_BODY_LIMIT = 4096


def browser_offer(token: str) -> list[str]:
    """The subprotocol offer of the browser client: `jwt-auth` plus the base64url token."""
    encoded = base64.urlsafe_b64encode(token.encode()).decode().rstrip("=")
    return ["jwt-auth", f"jwt.{encoded}"]


@dataclass
class Session:
    """One connection's printed transcript and what the server said when it ended."""

    url: str
    secret_source: str
    out: TextIO
    seen: list[dict[str, Any]] | None = None
    events: list[dict[str, Any]] = field(default_factory=list)
    backend: str = "?"
    open_turns: int = 0
    open_replies: int = 0
    answered: asyncio.Event = field(default_factory=asyncio.Event)
    close_code: int | None = None
    close_reason: str = ""

    def say(self, line: str) -> None:
        # Flushed at once: with --hold a person (or a pipe) watches events as they come.
        print(line, file=self.out, flush=True)

    def event(self, event: dict[str, Any]) -> None:
        """Print one received event, tagged with the backend that sent it."""
        self.events.append(event)
        if self.seen is not None:
            self.seen.append(event)
        server_id = event.get("server_id")
        if server_id:
            self.backend = str(server_id)
        self.say(f"  [{self.backend:>7}] {describe(event)}")
        match answers(event):
            case "turn":
                self.open_turns = max(0, self.open_turns - 1)
            case "reply":
                self.open_replies = max(0, self.open_replies - 1)
        self.answered.set()

    def sent(self, frame: str) -> None:
        """Count what `frame` asks of the server, so end of input can wait for it."""
        match expects(frame):
            case "turn":
                self.open_turns += 1
            case "reply":
                self.open_replies += 1

    @property
    def waiting(self) -> bool:
        """Whether something sent has not been answered yet."""
        return bool(self.open_turns or self.open_replies)

    def verdict(self) -> int:
        """After the server closed: say why, on stderr; the exit status."""
        self.say(f"closed by the server: {close_text(self.close_code, self.close_reason)}")
        failure = auth_failure(self.events, self.close_code, self.close_reason)
        if failure is not None:
            print(f"strangler client: authentication failed: {failure}", file=sys.stderr)
            print(_secret_hint(self.secret_source), file=sys.stderr)
            return EXIT_AUTH
        return EXIT_FAILED


def _secret_hint(source: str) -> str:
    return (
        f"strangler client: the token was signed with the secret from {source}; "
        "the server verifies with its own (jwt.secret_env), and they must be the same"
    )


@dataclass(frozen=True)
class NotConnected:
    """Why there is no connection: one line, and whether the credential was refused."""

    why: str
    auth: bool = False


async def _connect(
    session: aiohttp.ClientSession, url: str, token: str, timeout: float, refusal: list[bytes]
) -> aiohttp.ClientWebSocketResponse | NotConnected:
    """The open WebSocket, or why there is none."""
    try:
        async with asyncio.timeout(timeout):
            return await session.ws_connect(
                url,
                protocols=browser_offer(token),
                timeout=aiohttp.ClientWSTimeout(ws_close=timeout),
            )
    except aiohttp.WSServerHandshakeError as exc:
        body = refusal[0] if refusal else b""
        text = refusal_text(exc.status, _phrase(exc), body)
        return NotConnected(f"the handshake was refused: {text}", exc.status in AUTH_STATUSES)
    except TimeoutError:
        return NotConnected(f"cannot connect to {url}: no answer within {timeout:g}s")
    except aiohttp.ClientError as exc:
        return NotConnected(f"cannot connect to {url}: {exc}")


def _phrase(exc: aiohttp.WSServerHandshakeError) -> str:
    with contextlib.suppress(ValueError):
        return HTTPStatus(exc.status).phrase
    return ""


def _keep_refusal_body(refusal: list[bytes]) -> aiohttp.TraceConfig:
    """A trace that keeps the body of a response refusing the upgrade.

    aiohttp's ws_connect raises on any status but 101 without reading the body, and the
    body is where the factory route says why (`{"error": "authentication_failed", ...}`).
    """

    async def on_request_end(
        _session: aiohttp.ClientSession,
        _context: Any,
        params: aiohttp.TraceRequestEndParams,
    ) -> None:
        if params.response.status != 101:
            with contextlib.suppress(aiohttp.ClientError, TimeoutError):
                refusal.append(await params.response.content.read(REFUSAL_BODY_LIMIT))

    trace = aiohttp.TraceConfig()
    trace.on_request_end.append(on_request_end)
    return trace


def _token(secret: str, user: str) -> str | None:
    try:
        return mint_token(secret, user)
    except ValueError as exc:
        print(f"strangler client: cannot sign a token: {exc}", file=sys.stderr)
        return None


async def run_client(
    *,
    url: str,
    user: str,
    text: str | None,
    secret: str,
    timeout: float,
    seen: list[dict[str, Any]] | None = None,
    hold: bool = False,
    secret_source: str = "the caller",
) -> int:
    """Connect as `user` and print each event; the exit status (see the module docstring).

    Without `hold`: send `text` as `start_agent` and stop at the end of that turn. With
    `hold`: send `text` if given, then each line of stdin, until end of input, a signal
    or a close by the server. Every frame received is also appended to `seen` when given.
    """
    token = _token(secret, user)
    if token is None:
        return EXIT_USAGE
    refusal: list[bytes] = []
    async with aiohttp.ClientSession(trace_configs=[_keep_refusal_body(refusal)]) as http:
        ws = await _connect(http, url, token, timeout, refusal)
        if isinstance(ws, NotConnected):
            verdict = "authentication failed: " if ws.auth else ""
            print(f"strangler client: {verdict}{ws.why}", file=sys.stderr)
            if ws.auth:
                print(_secret_hint(secret_source), file=sys.stderr)
            return EXIT_AUTH if ws.auth else EXIT_FAILED
        async with ws:
            protocol = (
                ws.protocol
                if not ws.protocol or len(ws.protocol) < 24
                else ws.protocol[:20] + "..."
            )
            session = Session(url, secret_source, sys.stdout, seen)
            session.say(f"connected to {url} as {user} (subprotocol {protocol})")
            if hold:
                return await _hold(ws, session, text, timeout)
            return await _one_turn(ws, session, text or "Optimize my costs", timeout)


async def _send(ws: aiohttp.ClientWebSocketResponse, session: Session, frame: str) -> None:
    try:
        await ws.send_str(frame)
    except ConnectionError:
        return  # the server is closing: the reader reports how, nothing was sent
    session.sent(frame)
    session.say(f"  [   sent] {sent_text(frame)}")


def _start_agent(text: str) -> str:
    payload: dict[str, Any] = {"user_request": text, "thread_id": None, "context": {}}
    return json.dumps({"type": "start_agent", "payload": payload})


async def _read(
    ws: aiohttp.ClientWebSocketResponse, session: Session, until_turn_end: bool
) -> bool:
    """Print frames until the server closes (True) or, if asked, a turn ends (False)."""
    while True:
        msg = await ws.receive()
        if msg.type is aiohttp.WSMsgType.TEXT:
            try:
                event = json.loads(msg.data)
            except ValueError:
                session.say(f"  [{session.backend:>7}] {'(not JSON)':<24} {msg.data[:70]}")
                continue
            if isinstance(event, dict):
                session.event(event)
                if until_turn_end and event.get("type") in TURN_END:
                    return False
            continue
        if msg.type is aiohttp.WSMsgType.CLOSE:
            session.close_code, session.close_reason = msg.data, msg.extra or ""
            return True
        if msg.type in (aiohttp.WSMsgType.CLOSED, aiohttp.WSMsgType.CLOSING):
            # CLOSING: this client began the close; CLOSED: the connection is gone
            # (a server that vanished without a close frame reads as 1006).
            session.close_code = ws.close_code
            return True
        if msg.type is aiohttp.WSMsgType.ERROR:
            session.close_code, session.close_reason = ws.close_code, str(msg.data)
            return True


async def _one_turn(
    ws: aiohttp.ClientWebSocketResponse, session: Session, text: str, timeout: float
) -> int:
    with contextlib.suppress(ConnectionError):  # refused at once: the close tells why
        await ws.send_str(_start_agent(text))
    try:
        async with asyncio.timeout(timeout):
            closed = await _read(ws, session, until_turn_end=True)
    except TimeoutError:
        print(f"strangler client: no complete turn within {timeout:g}s", file=sys.stderr)
        return EXIT_FAILED
    if not closed:
        session.say(f"turn complete, answered by the {session.backend} backend")
        return EXIT_OK
    code = session.verdict()
    if code != EXIT_AUTH:
        print("strangler client: no complete turn: the server closed first", file=sys.stderr)
    return code


async def _hold(
    ws: aiohttp.ClientWebSocketResponse, session: Session, text: str | None, timeout: float
) -> int:
    reader = asyncio.create_task(_read(ws, session, until_turn_end=False))
    stop = asyncio.Event()
    stopped = asyncio.create_task(stop.wait())
    lines: asyncio.Queue[str | None] = asyncio.Queue()
    loop = asyncio.get_running_loop()
    _stdin_lines(loop, lines)
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    try:
        if text:
            await _send(ws, session, _start_agent(text))
        if await _feed(ws, session, lines, reader, stopped):
            # End of input: wait for the answers to what was sent (turns to their end),
            # so that `strangler client --hold < script` prints them before closing.
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(timeout):
                    while session.waiting and not reader.done() and not stopped.done():
                        session.answered.clear()
                        await _first(session.answered.wait(), reader, stopped)
        if reader.done():
            return session.verdict()
        await ws.close(code=1000, message=b"client done")
        await reader
        session.say(f"closed by this client: {close_text(ws.close_code, '')}")
        return EXIT_OK
    finally:
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.remove_signal_handler(sig)
        for task in (reader, stopped):
            task.cancel()


async def _feed(
    ws: aiohttp.ClientWebSocketResponse,
    session: Session,
    lines: asyncio.Queue[str | None],
    reader: asyncio.Task[bool],
    stopped: asyncio.Task[Any],
) -> bool:
    """Send each line until end of input (True), a signal or the server's close (False)."""
    while True:
        got = await _first(lines.get(), reader, stopped)
        if got is None or reader.done() or stopped.done():
            return False
        line = got[0]
        if line is None:
            return True
        frame = user_frame(line)
        if frame is not None:
            await _send(ws, session, frame)


async def _first(wanted: Awaitable[T], *watched: asyncio.Future[Any]) -> tuple[T] | None:
    """`(result,)` of `wanted`, or None when one of `watched` finishes first (`wanted` is
    then cancelled; the watched ones are left running)."""
    task = asyncio.ensure_future(wanted)
    await asyncio.wait([task, *watched], return_when=asyncio.FIRST_COMPLETED)
    if task.done():
        return (task.result(),)
    task.cancel()
    return None


def _stdin_lines(loop: asyncio.AbstractEventLoop, lines: asyncio.Queue[str | None]) -> None:
    """Feed stdin's lines into `lines` (None at end of input) from a daemon thread.

    A thread rather than a pipe reader: stdin may be a terminal, a pipe or a regular file
    (`< script`), and the event loop cannot watch a regular file. Daemon, so a read still
    blocked when the connection ends never holds the exit.
    """

    def pump() -> None:
        while True:
            line = sys.stdin.readline()
            try:
                loop.call_soon_threadsafe(lines.put_nowait, line or None)
            except RuntimeError:  # the loop has closed: nobody is listening any more
                return
            if not line:
                return

    threading.Thread(target=pump, name="strangler-client-stdin", daemon=True).start()
