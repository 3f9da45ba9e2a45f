"""Every turn observed, on both relays: real client, real proxy, backends on loopback.

The scriptable `Upstream` echoes what it is sent, so a client that sends an event's
JSON makes the backend send that event: a test plays the backend's half of a turn
exactly (an event dropped, an error, a stall, a death mid-turn). The reference backends
play real turns, with their deliberate regressions (`omit_events`, divergences).
Every test asserts every turn counter of its route, mode and backend.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from typing import Any

import aiohttp
import pytest

from strangler.proxy.runtime.server import Running
from strangler.reference.settings import BackendSettings
from tests.functional.conftest import (
    SECRET,
    ProxyUnderTest,
    Stack,
    StartProxy,
    scrape,
    token,
    wait_for,
)
from tests.functional.rawws import OP_CONTINUATION, OP_TEXT, RawWebSocket, frame

OUTCOMES = ("completed", "incomplete", "errored", "abandoned", "interrupted", "timed_out")
GOLDEN = ("agent_started", "agent_thinking", "tool_executing", "tool_completed", "agent_completed")
TURN = json.dumps({"type": "user_message", "payload": {"text": "Why did my costs grow?"}})

Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]


@pytest.fixture(params=["auto", "off"], ids=["tunnel", "per_frame"])
def relay(request: pytest.FixtureRequest) -> str:
    return str(request.param)


def settings(relay: str, turn_timeout: float = 30) -> str:
    return f"{{tunnel: {relay}, turn_timeout: {turn_timeout}, grace_period: 1}}"


def bearer(user: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token(user)}"}


def turn_counters(
    samples: Samples, route: str = "main", mode: str = "legacy", backend: str = "legacy"
) -> dict[str, float]:
    """Every turn counter of one route, mode and backend, by a short name."""
    labels = {"route": route, "mode": mode, "backend": backend}

    def value(name: str, **extra: str) -> float:
        return samples.get((name, tuple(sorted({**labels, **extra}.items()))), 0.0)

    out = {"started": value("strangler_turns_started_total")}
    for outcome in OUTCOMES:
        out[outcome] = value("strangler_turns_total", outcome=outcome)
    for event in GOLDEN:
        out[f"missing {event}"] = value("strangler_turn_missing_events_total", event=event)
    out["first_event"] = value("strangler_turn_time_to_first_event_seconds_count")
    out["to_complete"] = value("strangler_turn_time_to_complete_seconds_count")
    return out


def expected(**counts: float) -> dict[str, float]:
    """All counters zero but those named (`missing_tool_completed` for missing ...)."""
    out = dict.fromkeys(
        ["started", *OUTCOMES, *(f"missing {e}" for e in GOLDEN), "first_event", "to_complete"],
        0.0,
    )
    for name, value in counts.items():
        key = f"missing {name[len('missing_') :]}" if name.startswith("missing_") else name
        assert key in out, key
        out[key] = float(value)
    return out


async def settle(p: ProxyUnderTest, want: dict[str, float], **labels: str) -> None:
    """Wait until the counters are `want` (connections end asynchronously), then assert."""

    async def reached() -> bool:
        return turn_counters(await p.metrics(), **labels) == want

    with contextlib.suppress(TimeoutError):  # the assertion below shows the difference
        await wait_for(reached)
    assert turn_counters(await p.metrics(), **labels) == want


async def play(ws: aiohttp.ClientWebSocketResponse, *types: str) -> None:
    """Have the echoing backend send these events, and read each one back."""
    for t in types:
        await ws.send_str(json.dumps({"type": t, "run_id": "r1", "data": {}}))
        assert json.loads((await ws.receive()).data)["type"] == t


async def ask(ws: aiohttp.ClientWebSocketResponse, message: str = TURN) -> None:
    """Send a turn message (the echo comes back, and is no event)."""
    await ws.send_str(message)
    assert (await ws.receive()).data == message


async def test_a_turn_with_the_whole_golden_path_is_completed(
    start_proxy: StartProxy, relay: str
) -> None:
    p = await start_proxy(relay=settings(relay))
    async with aiohttp.ClientSession() as s, s.ws_connect(p.url(), headers=bearer("bob")) as ws:
        await ask(ws)
        await play(ws, "agent_started", "agent_thinking", "agent_thinking", "pong")
        await play(ws, "tool_executing", "tool_completed", "agent_completed")
        await settle(p, expected(started=1, completed=1, first_event=1, to_complete=1))
    # The client leaving afterwards abandons nothing.
    await settle(p, expected(started=1, completed=1, first_event=1, to_complete=1))


async def test_a_dropped_event_makes_the_turn_incomplete_and_names_it(
    start_proxy: StartProxy, relay: str
) -> None:
    p = await start_proxy(relay=settings(relay))
    async with aiohttp.ClientSession() as s, s.ws_connect(p.url(), headers=bearer("bob")) as ws:
        await ask(ws)
        await play(ws, "agent_started", "agent_thinking", "tool_executing", "agent_completed")
        # A turn without a tool pair has not had all five events either.
        await ask(ws, json.dumps({"type": "chat_message", "content": "hi"}))
        await play(ws, "agent_started", "agent_thinking", "agent_completed")
    await settle(
        p,
        expected(
            started=2,
            incomplete=2,
            missing_tool_completed=2,
            missing_tool_executing=1,
            first_event=2,
            to_complete=2,
        ),
    )


async def test_agent_error_ends_the_turn_as_errored(start_proxy: StartProxy, relay: str) -> None:
    p = await start_proxy(relay=settings(relay))
    async with aiohttp.ClientSession() as s, s.ws_connect(p.url(), headers=bearer("bob")) as ws:
        await ask(ws, json.dumps({"type": "execute_agent", "payload": {}}))
        await play(ws, "agent_started", "agent_thinking", "tool_executing", "agent_error")
        await settle(p, expected(started=1, errored=1, first_event=1))


async def test_a_stalled_turn_times_out_and_its_late_events_count_nothing(
    start_proxy: StartProxy, relay: str
) -> None:
    p = await start_proxy(relay=settings(relay, turn_timeout=0.3))
    async with aiohttp.ClientSession() as s, s.ws_connect(p.url(), headers=bearer("bob")) as ws:
        await ask(ws)
        await play(ws, "agent_started")
        await settle(p, expected(started=1, timed_out=1, first_event=1))
        # The stalled turn wakes up: its events find no turn open; not even its
        # agent_started opens one until the client asks again.
        await play(ws, "agent_started", "agent_thinking", "agent_completed")
        await settle(p, expected(started=1, timed_out=1, first_event=1))
        await ask(ws)
        await play(ws, *GOLDEN[:-1], "tool_executing", "tool_completed", "agent_completed")
    await settle(p, expected(started=2, timed_out=1, completed=1, first_event=2, to_complete=1))


async def test_a_backend_that_dies_mid_turn_interrupts_it(
    start_proxy: StartProxy, relay: str
) -> None:
    p = await start_proxy(relay=settings(relay))
    async with aiohttp.ClientSession() as s, s.ws_connect(p.url(), headers=bearer("bob")) as ws:
        await ask(ws)
        await play(ws, "agent_started", "agent_thinking")
        await ws.send_str("vanish")  # the backend drops its socket without a close frame
        msg = await ws.receive()
        assert msg.type is aiohttp.WSMsgType.CLOSE and msg.data == 1011
    await settle(p, expected(started=1, interrupted=1, first_event=1))


async def test_a_client_that_leaves_mid_turn_abandons_it_and_those_queued(
    start_proxy: StartProxy, relay: str
) -> None:
    p = await start_proxy(relay=settings(relay))
    async with aiohttp.ClientSession() as s, s.ws_connect(p.url(), headers=bearer("bob")) as ws:
        await ask(ws)
        await play(ws, "agent_started")
        await ask(ws)  # queued behind the first, as the router queues it: not started yet
        await settle(p, expected(started=1, first_event=1))
    await settle(p, expected(started=2, abandoned=2, first_event=1))


async def test_a_turn_queued_behind_one_that_times_out_opens_then(
    start_proxy: StartProxy, relay: str
) -> None:
    p = await start_proxy(relay=settings(relay, turn_timeout=0.5))
    async with aiohttp.ClientSession() as s, s.ws_connect(p.url(), headers=bearer("bob")) as ws:
        await ask(ws)
        await play(ws, "agent_started")
        await ask(ws)  # waits behind the open turn
        await settle(p, expected(started=2, timed_out=1, first_event=1))
        await play(ws, *GOLDEN)
    await settle(p, expected(started=2, timed_out=1, completed=1, first_event=2, to_complete=1))


async def test_queued_turns_follow_one_another(start_proxy: StartProxy, relay: str) -> None:
    p = await start_proxy(relay=settings(relay))
    full = (*GOLDEN[:-1], "agent_completed")
    async with aiohttp.ClientSession() as s, s.ws_connect(p.url(), headers=bearer("bob")) as ws:
        await ask(ws)
        await ask(ws, json.dumps({"type": "start_agent", "payload": {"user_request": "x"}}))
        await play(ws, *full)
        # The second turn's agent_started before the first one's end: the first is
        # incomplete (it never completed) and the second goes on.
        await play(ws, "agent_started", "agent_thinking", "tool_executing", "tool_completed")
        await play(ws, "agent_started", "agent_completed")
    await settle(
        p,
        expected(
            started=3,
            completed=1,
            incomplete=2,
            missing_agent_completed=1,
            missing_agent_thinking=1,
            missing_tool_executing=1,
            missing_tool_completed=1,
            first_event=2,
            to_complete=2,
        ),
    )


async def test_a_turn_the_backend_starts_on_its_own_is_counted(
    start_proxy: StartProxy, relay: str
) -> None:
    p = await start_proxy(relay=settings(relay))
    async with aiohttp.ClientSession() as s, s.ws_connect(p.url(), headers=bearer("bob")) as ws:
        await play(ws, "agent_thinking")  # no turn open: nothing
        await play(ws, *GOLDEN)
    # No client request: no time to a first event.
    await settle(p, expected(started=1, completed=1, to_complete=1))


async def test_turns_are_counted_per_mode_and_backend(start_proxy: StartProxy, relay: str) -> None:
    p = await start_proxy(relay=settings(relay))
    async with aiohttp.ClientSession() as s, s.ws_connect(p.url(), headers=bearer("alice")) as ws:
        await ask(ws)
        await play(ws, *GOLDEN)
    await settle(
        p,
        expected(started=1, completed=1, first_event=1, to_complete=1),
        mode="unified",
        backend="unified",
    )
    assert turn_counters(await p.metrics()) == expected()


async def test_fragmented_and_split_frames_are_read_whole(
    start_proxy: StartProxy, relay: str
) -> None:
    p = await start_proxy(relay=settings(relay))
    raw = await RawWebSocket.open(p.running.port)
    try:
        answer = await raw.handshake("/ws", [("Authorization", f"Bearer {token('bob')}")])
        assert answer.status == 101
        # A turn message in three fragments, the type cut in the middle, each fragment
        # written byte by byte (every one a TCP read of its own, as far as TCP allows).
        message = TURN.encode()
        parts = [
            frame(OP_TEXT, message[:5], fin=False),
            frame(OP_CONTINUATION, message[5:12], fin=False),
            frame(OP_CONTINUATION, message[12:]),
        ]
        for part in parts:
            for i in range(len(part)):
                await raw.send(part[i : i + 1])
        assert await raw.recv_text() == TURN
        for t in GOLDEN:
            await raw.send(frame(OP_TEXT, json.dumps({"type": t, "data": {}}).encode()))
            assert json.loads(await raw.recv_text())["type"] == t
        await settle(p, expected(started=1, completed=1, first_event=1, to_complete=1))
    finally:
        await raw.close()


# -- the reference backends ------------------------------------------------------------

FLAGS = """
flags:
  unified_router:
    routes: [main, api, main_user, main_v1, factory, isolated, legacy, legacy_test]
    targets: {unified: [ulla], shadow: [sam]}
"""


async def real_turn(p: Running, user: str, path: str = "/ws") -> list[str]:
    """One turn through the proxy with a real backend: the event types the client got
    until the turn's end or the connection's."""
    types: list[str] = []
    async with (
        aiohttp.ClientSession() as s,
        s.ws_connect(f"ws://127.0.0.1:{p.port}{path}", headers=bearer(user)) as ws,
    ):
        await ws.receive()  # the greeting
        await ws.send_str(TURN)
        async with asyncio.timeout(10):
            while True:
                msg = await ws.receive()
                if msg.type is not aiohttp.WSMsgType.TEXT:
                    break
                types.append(json.loads(msg.data)["type"])
                if types[-1] in ("agent_completed", "agent_error"):
                    break
    return types


async def settled(p: Running, want: dict[str, float], **labels: str) -> None:
    async def reached() -> bool:
        return turn_counters(await scrape(p.admin_port), **labels) == want

    with contextlib.suppress(TimeoutError):  # the assertion below shows the difference
        await wait_for(reached)
    assert turn_counters(await scrape(p.admin_port), **labels) == want


@pytest.mark.parametrize("tunnel", ["auto", "off"])
async def test_real_turns_of_both_backends_are_completed(stack: Stack, tunnel: str) -> None:
    await stack.backends()
    p = await stack.proxy(FLAGS, extra=f"relay: {{tunnel: {tunnel}}}")
    done = expected(started=1, completed=1, first_event=1, to_complete=1)
    assert (await real_turn(p, "bob"))[-1] == "agent_completed"
    await settled(p, done)
    assert (await real_turn(p, "ulla"))[-1] == "agent_completed"
    await settled(p, done, mode="unified", backend="unified")
    # A translated dialect (factory to the unified router) and the legacy flat dialect.
    assert (await real_turn(p, "ulla", "/ws/factory"))[-1] == "agent_completed"
    await settled(p, done, route="factory", mode="unified", backend="unified")
    assert (await real_turn(p, "bob", "/websocket"))[-1] == "agent_completed"
    await settled(p, done, route="legacy")


async def test_a_shadowed_connection_counts_its_primary_turns(stack: Stack) -> None:
    await stack.backends()
    p = await stack.proxy(FLAGS)
    assert (await real_turn(p, "sam"))[-1] == "agent_completed"
    done = expected(started=1, completed=1, first_event=1, to_complete=1)
    await settled(p, done, mode="shadow", backend="legacy")
    # The compared secondary's turn is not the client's: not counted here.
    assert turn_counters(await scrape(p.admin_port), mode="shadow", backend="unified") == (
        expected()
    )


@pytest.mark.parametrize("tunnel", ["auto", "off"])
async def test_a_backend_that_omits_an_event_is_incomplete(stack: Stack, tunnel: str) -> None:
    await stack.backends(
        unified=BackendSettings(jwt_secret=SECRET, omit_events=("tool_completed",))
    )
    p = await stack.proxy(FLAGS, extra=f"relay: {{tunnel: {tunnel}}}")
    assert "tool_completed" not in await real_turn(p, "ulla")
    await settled(
        p,
        expected(started=1, incomplete=1, missing_tool_completed=1, first_event=1, to_complete=1),
        mode="unified",
        backend="unified",
    )


@pytest.mark.parametrize(
    ("divergence", "counts"),
    [
        ("final_status", {"errored": 1, "first_event": 1}),
        ("crash", {"interrupted": 1, "first_event": 1}),
        ("hang", {"timed_out": 1, "first_event": 1}),
    ],
)
@pytest.mark.parametrize("tunnel", ["auto", "off"])
async def test_a_router_that_errs_dies_or_hangs_fails_the_turn(
    stack: Stack, tunnel: str, divergence: str, counts: dict[str, Any]
) -> None:
    await stack.backends(unified=BackendSettings(jwt_secret=SECRET, divergence=divergence))
    p = await stack.proxy(FLAGS, extra=f"relay: {{tunnel: {tunnel}, turn_timeout: 0.5}}")
    if divergence == "hang":
        async with (
            aiohttp.ClientSession() as s,
            s.ws_connect(f"ws://127.0.0.1:{p.port}/ws", headers=bearer("ulla")) as ws,
        ):
            await ws.receive()
            await ws.send_str(TURN)
            assert json.loads((await ws.receive()).data)["type"] == "agent_started"
            await settled(p, expected(started=1, **counts), mode="unified", backend="unified")
    else:
        await real_turn(p, "ulla")
    await settled(p, expected(started=1, **counts), mode="unified", backend="unified")
