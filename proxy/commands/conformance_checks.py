"""What `strangler conformance` checks, one `Check` per contract rule, in report order.

Each check opens its own connection to the router (conformance_probe.py), so one
breakage fails the checks it concerns and no other. Every frame the router sends is
validated against docs/asyncapi.yaml as it arrives; the checks add what a schema
cannot say: which answer a message gets, in which order, echoing what.
"""

from __future__ import annotations

import base64
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Any, Final

from strangler.proxy.commands.conformance_probe import (
    Connection,
    Failed,
    Handshake,
    Router,
    connect,
    echo_problem,
    handshake_status,
    redact,
)

ANONYMOUS: Final = "anonymous"
MISSING_TOKEN_MESSAGE: Final = "No authentication token provided"
AUTH_CLOSE_CODE: Final = 1008
AUTH_CLOSE_REASON: Final = "Authentication failed"
TEXT: Final = "Optimize my costs"
THREAD: Final = "t-conformance"
CLIENT_RUN_ID: Final = "run-conformance-0001"
STAMP: Final = 1726000000123
# The greeting's data.mode for a route name (PROTOCOL.md section 1); any other: main.
GREETING_MODES: Final = ("main", "factory", "isolated")

Run = Callable[[Router], Awaitable[None]]


@dataclass(frozen=True)
class Check:
    """One named rule of the contract and how to try it on a router."""

    name: str
    run: Run
    sends: tuple[Mapping[str, Any], ...] = ()  # the client frames it is about, if any


def b64url(text: str) -> str:
    """The `jwt.` subprotocol encoding: base64url without padding."""
    return base64.urlsafe_b64encode(text.encode()).decode().rstrip("=")


def bad_token(token: str) -> str:
    """`token` with a signature no key produced (the router cannot accept it)."""
    head, _, _ = token.rpartition(".")
    return f"{head}.{'A' * 43}"


def bearer(router: Router, **fields: Any) -> Handshake:
    """The usual authenticated handshake: `Authorization: Bearer <token>`."""
    return Handshake(authorization=f"Bearer {router.token}", **fields)


def expected_mode(route: str) -> str:
    return route if route in GREETING_MODES else "main"


async def greeted(conn: Connection, handshake: Handshake, user: str) -> dict[str, Any]:
    """The greeting, with the mode the route header asks for and the expected user."""
    frame = await conn.greeting()
    data = frame["data"]
    mode = expected_mode(handshake.route)
    if data["mode"] != mode:
        raise Failed(
            f"greeting data.mode is {data['mode']!r}, expected {mode!r} "
            f"(X-Strangler-Route: {handshake.route})"
        )
    if data["user_id"] != user:
        raise Failed(f"greeting data.user_id is {data['user_id']!r}, expected {user!r}")
    return frame


async def full_turn(
    conn: Connection, frame: Mapping[str, Any], user: str, run_id: str | None = None
) -> None:
    """Send `frame`; one complete turn for `user` must answer it."""
    await conn.send(frame)
    events, _ = await conn.turn()
    for event in events:
        if event["user_id"] != user:
            raise Failed(f"{event['type']} carries user_id {event['user_id']!r}, expected {user!r}")
    if run_id is not None and events[0]["run_id"] != run_id:
        raise Failed(
            f"the turn carries run_id {events[0]['run_id']!r}, expected the client's {run_id!r}"
        )


async def still_open(conn: Connection) -> None:
    """A ping is answered: the socket stayed open and the router reads on."""
    await conn.send({"type": "ping", "payload": {"timestamp": STAMP}})
    echo_problem(await conn.expect("pong", "the pong proving the socket is open"), STAMP)


# -- handshake ---------------------------------------------------------------------------


def subprotocol(
    offer: Callable[[str], tuple[str, ...]],
    answer: Callable[[str], str | None],
    *,
    header: bool = False,
) -> Run:
    async def run(router: Router) -> None:
        offered = offer(router.token)
        shake = bearer(router, protocols=offered) if header else Handshake(protocols=offered)
        async with connect(router, shake) as conn:
            wanted = answer(router.token)
            if conn.answered != wanted:
                raise Failed(
                    f"answered subprotocol {redact(conn.answered)} to the offer "
                    f"{', '.join(redact(p) for p in offered)}; expected {redact(wanted)}"
                )
            await greeted(conn, shake, router.user)

    return run


async def unacceptable_offer(router: Router) -> None:
    status = await handshake_status(router, bearer(router, protocols=("graphql-ws",)))
    if status == 101:
        raise Failed("accepted the offer 'graphql-ws'; expected the handshake refused with 400")
    if status != 400:
        raise Failed(f"refused the offer 'graphql-ws' with HTTP {status}, expected 400")


def query_credential(key: str) -> Run:
    async def run(router: Router) -> None:
        shake = Handshake(query={key: router.token})
        async with connect(router, shake) as conn:
            await greeted(conn, shake, router.user)

    return run


async def authorization_header(router: Router) -> None:
    shake = bearer(router)
    async with connect(router, shake) as conn:
        await greeted(conn, shake, router.user)


def auth_refused(shake: Callable[[Router], Handshake], message: str | None) -> Run:
    async def run(router: Router) -> None:
        async with connect(router, shake(router)) as conn:
            frame = await conn.expect("error_message", "the AUTH_FAILED frame")
            if frame["error_code"] != "AUTH_FAILED":
                raise Failed(
                    f"error_message error_code is {frame['error_code']!r}, expected 'AUTH_FAILED'"
                )
            if message is not None and frame["error_message"] != message:
                raise Failed(f"error_message says {frame['error_message']!r}, expected {message!r}")
            closed = await conn.closing("the close after AUTH_FAILED")
            if closed.code != AUTH_CLOSE_CODE:
                raise Failed(
                    f"closed with {closed.code} after AUTH_FAILED, expected {AUTH_CLOSE_CODE}"
                )
            if closed.reason != AUTH_CLOSE_REASON:
                raise Failed(f"close reason {closed.reason!r}, expected {AUTH_CLOSE_REASON!r}")

    return run


def anonymous(authorization: Callable[[Router], str | None]) -> Run:
    async def run(router: Router) -> None:
        shake = Handshake(route="legacy", auth_none=True, authorization=authorization(router))
        async with connect(router, shake) as conn:
            await greeted(conn, shake, ANONYMOUS)
            await full_turn(conn, TURN_FRAMES["start_agent"], ANONYMOUS)

    return run


def greeting_for(route: str) -> Run:
    async def run(router: Router) -> None:
        shake = bearer(router, route=route)
        async with connect(router, shake) as conn:
            await greeted(conn, shake, router.user)

    return run


async def shadow_header(router: Router) -> None:
    shake = bearer(router, shadow=True)
    async with connect(router, shake) as conn:
        await greeted(conn, shake, router.user)
        await full_turn(conn, TURN_FRAMES["start_agent"], router.user)


async def unknown_query_parameter(router: Router) -> None:
    shake = bearer(router, query={"client": "conformance"})
    async with connect(router, shake) as conn:
        await greeted(conn, shake, router.user)


# -- messages ----------------------------------------------------------------------------

TURN_FRAMES: Final[Mapping[str, Mapping[str, Any]]] = {
    "start_agent": {
        "type": "start_agent",
        "payload": {"user_request": TEXT, "thread_id": None, "context": {}, "settings": {}},
    },
    "execute_agent": {
        "type": "execute_agent",
        "payload": {"user_request": TEXT, "thread_id": None},
    },
    "start_agent-top-level": {"type": "start_agent", "user_request": TEXT, "thread_id": THREAD},
    "user_message": {
        "type": "user_message",
        "payload": {"text": TEXT, "references": [], "thread_id": THREAD},
    },
    "user_message-content": {
        "type": "user_message",
        "payload": {"content": TEXT, "thread_id": THREAD},
    },
    "user": {"type": "user", "payload": {"text": TEXT}},
    "user_input": {"type": "user_input", "payload": {"text": TEXT}},
    "chat_message": {"type": "chat_message", "payload": {"content": TEXT, "thread_id": THREAD}},
    "message": {"type": "message", "payload": {"text": TEXT}},
    "chat_message-flat": {
        "type": "chat_message",
        "content": TEXT,
        "user_id": "someone-else",  # never trusted: events carry the verified user
        "thread_id": THREAD,
        "run_id": CLIENT_RUN_ID,
        "timestamp": 1726000000.0,
    },
    "user_message-flat": {"type": "user_message", "text": TEXT, "thread_id": THREAD},
    "agent_request": {
        "type": "agent_request",
        "payload": {
            "query": TEXT,
            "agent_type": "supervisor",
            "thread_id": THREAD,
            "parameters": {},
        },
    },
    "agent_request-flat": {
        "type": "agent_request",
        "thread_id": THREAD,
        "query": TEXT,
        "agent_type": "supervisor",
        "parameters": {},
    },
}
ACKED_FRAMES: Final[Mapping[str, Mapping[str, Any]]] = {
    "stop_agent": {"type": "stop_agent", "payload": {"run_id": CLIENT_RUN_ID}},
    "stop_agent-top-level": {"type": "stop_agent", "run_id": CLIENT_RUN_ID},
    "switch_thread": {"type": "switch_thread", "payload": {"thread_id": THREAD}},
    "unknown-type": {"type": "get_thread_history", "payload": {"thread_id": THREAD}},
}
SILENT_FRAMES: Final[Mapping[str, Mapping[str, Any]]] = {
    "pong": {"type": "pong", "payload": {}},
    "heartbeat_ack": {"type": "heartbeat_ack", "timestamp": STAMP},
}
PING_FRAMES: Final[Mapping[str, Mapping[str, Any]]] = {
    "payload-timestamp": {"type": "ping", "payload": {"timestamp": STAMP}},
    "top-level-timestamp": {"type": "ping", "timestamp": STAMP},
    "no-timestamp": {"type": "ping"},
    # Top-level fields join the payload and the payload's own keys win (PROTOCOL.md 2).
    "both-timestamps": {"type": "ping", "timestamp": STAMP + 1, "payload": {"timestamp": STAMP}},
}
# Frames that are not a JSON object with a string type, and the error message each gets.
INVALID_FRAMES: Final[Mapping[str, tuple[str, str]]] = {
    "invalid-json": ("{not json", "Invalid JSON"),
    "not-an-object": ("[1, 2]", "Message must be a JSON object"),
    "missing-type": ('{"payload": {}}', "Message must have a string 'type'"),
    "non-string-type": ('{"type": 5}', "Message must have a string 'type'"),
}


def turn(name: str) -> Run:
    frame = TURN_FRAMES[name]
    run_id = frame.get("run_id")

    async def run(router: Router) -> None:
        shake = bearer(router)
        async with connect(router, shake) as conn:
            await greeted(conn, shake, router.user)
            await full_turn(conn, frame, router.user, run_id if isinstance(run_id, str) else None)

    return run


async def turns_in_sequence(router: Router) -> None:
    shake = bearer(router)
    async with connect(router, shake) as conn:
        await greeted(conn, shake, router.user)
        await conn.send(TURN_FRAMES["start_agent"])
        await conn.send(TURN_FRAMES["user_message"])
        first, _ = await conn.turn()
        second, _ = await conn.turn()
        if first[0]["run_id"] == second[0]["run_id"]:
            raise Failed("two turns carry the same run_id")


def ping(name: str) -> Run:
    frame = PING_FRAMES[name]

    async def run(router: Router) -> None:
        shake = bearer(router)
        async with connect(router, shake) as conn:
            await greeted(conn, shake, router.user)
            await conn.send(frame)
            pong = await conn.expect("pong")
            stamp = frame.get("payload", {}).get("timestamp", frame.get("timestamp"))
            if stamp is not None:
                echo_problem(pong, stamp)
            elif not isinstance(pong["data"]["timestamp"], int | float):
                raise Failed("pong to a ping without timestamp carries no clock reading")

    return run


async def ping_during_turn(router: Router) -> None:
    shake = bearer(router)
    async with connect(router, shake) as conn:
        await greeted(conn, shake, router.user)
        await conn.send(TURN_FRAMES["start_agent"])
        await conn.send(PING_FRAMES["payload-timestamp"])
        _, ponged = await conn.turn(pong_for=STAMP)
        if not ponged:
            echo_problem(
                await conn.expect("pong", "the pong of the ping sent during the turn"), STAMP
            )


def silent(name: str) -> Run:
    frame = SILENT_FRAMES[name]

    async def run(router: Router) -> None:
        shake = bearer(router)
        async with connect(router, shake) as conn:
            await greeted(conn, shake, router.user)
            await conn.send(frame)
            # A ping after it: its pong must be the very next frame.
            await conn.send({"type": "ping", "payload": {"timestamp": STAMP}})
            answer = await conn.frame("the pong of the ping sent after it")
            if answer["type"] != "pong":
                raise Failed(f"answered {frame['type']} with {answer['type']} (expected nothing)")
            echo_problem(answer, STAMP)

    return run


def acked(name: str) -> Run:
    frame = ACKED_FRAMES[name]

    async def run(router: Router) -> None:
        shake = bearer(router)
        async with connect(router, shake) as conn:
            await greeted(conn, shake, router.user)
            await conn.send(frame)
            ack = await conn.expect("ack")
            named = ack["data"]["received_type"]
            if named != frame["type"]:
                raise Failed(f"ack names {named!r}, expected the type as sent, {frame['type']!r}")

    return run


def invalid(name: str) -> Run:
    text, message = INVALID_FRAMES[name]

    async def run(router: Router) -> None:
        shake = bearer(router)
        async with connect(router, shake) as conn:
            await greeted(conn, shake, router.user)
            await conn.send_text(text)
            error = await conn.expect("error", f"the error answering {text!r}")
            data = error["data"]
            if data["error_code"] != "INVALID_MESSAGE" or data["message"] != message:
                raise Failed(
                    f"error says {data['error_code']}: {data['message']!r}, "
                    f"expected INVALID_MESSAGE: {message!r}"
                )
            await still_open(conn)

    return run


def client_close(code: int) -> Run:
    async def run(router: Router) -> None:
        shake = bearer(router)
        async with connect(router, shake) as conn:
            await greeted(conn, shake, router.user)
            closed = await conn.close(code)
            if closed.code == 1006:
                raise Failed(f"no close frame answered the client's close {code}")
            if closed.code not in (1000, code):
                raise Failed(
                    f"answered the client's close {code} with {closed.code}, "
                    f"expected 1000 or {code}"
                )

    return run


def _browser(token: str) -> tuple[str, ...]:
    return ("jwt-auth", f"jwt.{b64url(token)}")


CHECKS: Final[tuple[Check, ...]] = (
    Check(
        "subprotocol/browser-offer",
        subprotocol(_browser, lambda t: f"jwt.{b64url(t)}"),
    ),
    Check(
        "subprotocol/bearer-entry", subprotocol(lambda t: (f"bearer.{t}",), lambda t: f"bearer.{t}")
    ),
    Check(
        "subprotocol/jwt-auth-entry",
        subprotocol(lambda t: (f"jwt-auth.{t}",), lambda t: f"jwt-auth.{t}"),
    ),
    Check(
        "subprotocol/bare-jwt-auth",
        subprotocol(lambda t: ("jwt-auth",), lambda t: "jwt-auth", header=True),
    ),
    Check(
        "subprotocol/first-bare-in-offer-order",
        subprotocol(lambda t: ("chat", "bearer", "jwt-auth"), lambda t: "bearer", header=True),
    ),
    Check("subprotocol/none-offered", subprotocol(lambda t: (), lambda t: None, header=True)),
    Check("subprotocol/unacceptable-refused", unacceptable_offer),
    Check("credential/authorization-header", authorization_header),
    *(
        Check(f"credential/query-{key}", query_credential(key))
        for key in ("token", "jwt", "auth_token", "access_token")
    ),
    Check("auth/missing-token", auth_refused(lambda r: Handshake(), MISSING_TOKEN_MESSAGE)),
    Check(
        "auth/bad-token",
        auth_refused(lambda r: Handshake(authorization=f"Bearer {bad_token(r.token)}"), None),
    ),
    Check("auth/none-without-token", anonymous(lambda r: None)),
    Check("auth/none-ignores-bad-token", anonymous(lambda r: f"Bearer {bad_token(r.token)}")),
    *(
        Check(f"greeting/route-{route}", greeting_for(route))
        for route in ("main", "factory", "isolated", "main_user")
    ),
    *(Check(f"turn/{name}", turn(name), (frame,)) for name, frame in TURN_FRAMES.items()),
    Check("turn/sequence", turns_in_sequence),
    *(Check(f"ping/{name}", ping(name), (frame,)) for name, frame in PING_FRAMES.items()),
    Check("ping/during-turn", ping_during_turn),
    *(Check(f"silent/{name}", silent(name), (frame,)) for name, frame in SILENT_FRAMES.items()),
    *(Check(f"ack/{name}", acked(name), (frame,)) for name, frame in ACKED_FRAMES.items()),
    *(Check(f"error/{name}", invalid(name)) for name in INVALID_FRAMES),
    Check("close/client-1000", client_close(1000)),
    Check("close/client-4001", client_close(4001)),
    Check("shadow/header-accepted", shadow_header),
    Check("query/unknown-parameter", unknown_query_parameter),
)
