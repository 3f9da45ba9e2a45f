"""A secondary that floods is that secondary's failure, never the primary's.

The unified router here sends thousands of frames before its turn while legacy, the
primary, plays its turn at a person's pace: the client gets every event, the turn is
not blamed on the primary (`primary_incomplete`), and the overflow is counted as the
secondary's own (`overflow`, queue `from_secondary`), with the turn's record saying
`secondary_overflow`.
"""

from __future__ import annotations

import asyncio
import json
from typing import Any

import aiohttp

from strangler.proxy.runtime.server import Running
from strangler.reference.script import golden_turn
from strangler.reference.settings import BackendSettings
from tests.functional.conftest import SECRET, Stack, metric, token, wait_for

FLAGS = """
flags:
  unified_router:
    routes: [main]
    targets: {shadow: [sam], live: [liv]}
"""
# A small queue, so the flood (5000 frames) overflows it whatever the machine's speed.
SHADOW_SMALL_QUEUE = """
shadow:
  queue_frames: 8
  compare: {timeout_factor: 2, timeout_floor: 0.5}
"""
TURNS = 3
START = json.dumps({"type": "start_agent", "payload": {"user_request": "Optimize my costs"}})


async def shadow_state(proxy: Running) -> dict[str, Any]:
    async with (
        aiohttp.ClientSession() as s,
        s.get(f"http://127.0.0.1:{proxy.admin_port}/shadow") as r,
    ):
        state: dict[str, Any] = await r.json()
    return state


async def test_flooding_secondary_is_its_own_overflow_and_the_primary_is_not_blamed(
    stack: Stack,
) -> None:
    # Legacy answers at once, so each next request is sent while unified still floods.
    await stack.backends(
        legacy=BackendSettings(jwt_secret=SECRET),
        unified=BackendSettings(jwt_secret=SECRET, divergence="flood"),
    )
    p = await stack.proxy(FLAGS, extra=SHADOW_SMALL_QUEUE)
    golden = [e["type"] for e in golden_turn("Optimize my costs", run_id="r", thread_id=None)]
    async with (
        aiohttp.ClientSession() as s,
        s.ws_connect(
            f"ws://127.0.0.1:{p.port}/ws", headers={"Authorization": f"Bearer {token('sam')}"}
        ) as ws,
    ):
        await ws.receive()  # the greeting
        for _ in range(TURNS):
            await ws.send_str(START)
            types: list[str] = []
            async with asyncio.timeout(10):
                while not types or types[-1] != "agent_completed":
                    types.append(json.loads((await ws.receive()).data)["type"])
            assert types == golden  # the client got the whole turn, as legacy plays it

    async def judged() -> bool:
        return len((await shadow_state(p))["recent_mismatches"]) >= TURNS

    await wait_for(judged, timeout=10)
    records = (await shadow_state(p))["recent_mismatches"]
    # Every turn the client asked for is judged, each once, and none is blamed on the
    # primary: the secondary flooded, and was closed for it.
    assert sorted((r["turn"], r["outcome"], r["reason"]) for r in records) == [
        (turn, "shadow_error", "secondary_overflow") for turn in range(TURNS)
    ]
    port = p.admin_port
    counts = {
        outcome: await metric(
            port, "strangler_comparisons_total", route="main", mode="shadow", outcome=outcome
        )
        for outcome in ("shadow_error", "primary_incomplete", "match", "mismatch")
    }
    assert counts == {"shadow_error": TURNS, "primary_incomplete": 0, "match": 0, "mismatch": 0}
    failures = "strangler_secondary_failures_total"
    assert await metric(port, failures, route="main", backend="unified", reason="overflow") == 1
    dropped = "strangler_secondary_dropped_frames_total"
    assert await metric(port, dropped, route="main", queue="from_secondary") >= 1
    # Not one client or primary frame was lost to the secondary's flood.
    assert await metric(port, dropped, route="main", queue="compare") == 0
