"""A flag's guard judges its unified turns: every turn the unified router served, in
every mode and on both relays, that ended and was not abandoned is one observation of
`unified_turn_failure_ratio` (bad unless it got the whole golden path), and the flag is
held on legacy once the ratio is over its limit with `min_samples` turns. The last
hour's reliability per route and backend is on `/flags/status` and in
`strangler flags status`.
"""

from __future__ import annotations

import json
from typing import Any

import aiohttp
import pytest

from tests.functional.conftest import ProxyUnderTest, StartProxy, wait_for
from tests.functional.test_flags_cli import astrangler
from tests.functional.test_release import admin, who
from tests.functional.test_turns import GOLDEN, ask, bearer, play, settings

FLAGS = """
flags:
  unified_router:
    routes: [main]
    targets: {unified: [u1, u2, u3, u4]}
    guard: {max_unified_turn_failure_ratio: 0.5, min_samples: 4, window: 60}
"""
GUARD = "unified_turn_failure_ratio"


@pytest.fixture(params=["auto", "off"], ids=["tunnel", "per_frame"])
def relay(request: pytest.FixtureRequest) -> str:
    return str(request.param)


async def observations(p: ProxyUnderTest, result: str) -> float:
    return await p.metric(
        "strangler_guard_observations_total", flag="unified_router", guard=GUARD, result=result
    )


async def watching(p: ProxyUnderTest) -> dict[str, Any]:
    guard: dict[str, Any] = (await admin(p, "/flags/status"))["guards"]["unified_router"]
    return guard


async def test_unified_turns_that_miss_the_golden_path_trip_the_turn_guard(
    start_proxy: StartProxy, relay: str
) -> None:
    p = await start_proxy(FLAGS, relay=settings(relay))
    async with aiohttp.ClientSession() as s:
        async with s.ws_connect(p.url(), headers=bearer("u1")) as ws:
            assert await who(ws) == "unified"
            await ask(ws)
            await play(ws, *GOLDEN)  # completed: a good observation
            await ask(ws)
            await play(ws, "agent_started", "agent_thinking", "agent_completed")  # incomplete
        async with s.ws_connect(p.url(), headers=bearer("u2")) as ws:
            await ask(ws)
            await play(ws, "agent_started")
        # u2 left mid-turn: abandoned, which is not the backend's failure.

        async def abandoned() -> bool:
            return (
                await p.metric(
                    "strangler_turns_total",
                    route="main",
                    mode="unified",
                    backend="unified",
                    outcome="abandoned",
                )
                == 1
            )

        await wait_for(abandoned)
        async with s.ws_connect(p.url(), headers=bearer("leo")) as ws:
            assert await who(ws) == "legacy"
            await ask(ws)
            await play(ws, "agent_started", "agent_error")  # legacy's: not the flag's guard
        async with s.ws_connect(p.url(), headers=bearer("u3")) as ws:
            await ask(ws, json.dumps({"type": "execute_agent", "payload": {}}))
            await play(ws, "agent_started", "agent_error")  # errored
            await ask(ws)
            await play(ws, "agent_started", "agent_thinking")
            # Three observations so far, two bad: under min_samples, nothing trips.
            guard = await watching(p)
            assert guard["tripped"] is False
            assert guard["watching"][GUARD] == {
                "limit": 0.5,
                "samples": 3,
                "bad": 2,
                "ratio": 2 / 3,
            }
            await ws.send_str("vanish")  # the router dies mid-turn: interrupted
            msg = await ws.receive()
            assert msg.type is aiohttp.WSMsgType.CLOSE and msg.data == 1011

        async def tripped() -> bool:
            return await p.metric("strangler_guard_tripped", flag="unified_router") == 1

        await wait_for(tripped)
        # 3 bad of 4 turns: 0.75 over 0.5; the fleet guard sums these same counts.
        assert (await observations(p, "bad"), await observations(p, "ok")) == (3, 1)
        trip = (await watching(p))["trip"]
        assert (trip["guard"], trip["samples"], trip["ratio"]) == (GUARD, 4, 0.75)
        trips = await p.metric("strangler_guard_trips_total", flag="unified_router", guard=GUARD)
        assert trips == 1
        # Held on legacy: the flag's next unified user is served by legacy.
        async with s.ws_connect(p.url(), headers=bearer("u4")) as ws:
            assert await who(ws) == "legacy"

    reliability = (await admin(p, "/flags/status"))["reliability"]
    assert reliability == {
        "main": {
            "legacy": {"turns": 1, "completed": 0, "ratio": 0.0},
            "unified": {"turns": 4, "completed": 1, "ratio": 0.25},
        }
    }
    # What a release manager reads at a terminal.
    code, out, err = await astrangler("status", "--admin", f"127.0.0.1:{p.running.admin_port}")
    assert code == 0, err
    assert out.splitlines()[-2:] == [
        "golden path: last hour, this process, objective 99.5%:",
        "  main: legacy 0% of 1 turn (BELOW OBJECTIVE); unified 25% of 4 turns (BELOW OBJECTIVE)",
    ]
