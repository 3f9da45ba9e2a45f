"""Shadow work gives way before the primary waits: refused, skipped, closed, and counted.

The proxy runs in this test's event loop, so the test stalls that loop (a blocking
sleep, as a saturating shadow load would) and the shadow hub's sampler sees the lag.
Each stall is far past the budget, so each steps shedding up one level; no assertion
depends on how fast anything ran. Through every level the client's turns complete
in full, a shed turn says `shed` (never judged from part of it), new secondaries are
refused, the open one is closed, and the guard counts none of it.
"""

from __future__ import annotations

import asyncio
import json
import re
import time
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
    targets: {shadow: [sam]}
    guard: {max_mismatch_ratio: 0.5, min_samples: 1000}
"""
# Sampled every 20 ms; a stall of 150 ms is over the 40 ms budget whatever the machine
# (this one process also runs the backends and the client: its CPU is not the signal),
# each one steps up a level, and nothing steps back down during the test.
SHED = """
shadow:
  compare: {timeout_factor: 2, timeout_floor: 0.5}
  shed: {max_loop_lag_ms: 40, max_process_cpu_share: 1.0, sample_ms: 20, escalate_after: 1,
         recover_after: 1000000}
"""
STALL = 0.15
START = json.dumps({"type": "start_agent", "payload": {"user_request": "Optimize my costs"}})
GOLDEN = [e["type"] for e in golden_turn("Optimize my costs", run_id="r", thread_id=None)]


async def level(proxy: Running) -> float:
    return await metric(proxy.admin_port, "strangler_shadow_shed_level")


async def stall_until(proxy: Running, at_least: int) -> None:
    """Block the loop, as a saturating shadow load would, until shedding reaches a level."""
    for _ in range(10):
        if await level(proxy) >= at_least:
            return
        time.sleep(STALL)  # noqa: ASYNC251 - the point: the proxy's loop is held up
        await asyncio.sleep(0.05)  # the sampler runs, and sees how late it is
    raise AssertionError(f"shedding never reached level {at_least}")


async def turn(ws: aiohttp.ClientWebSocketResponse) -> list[str]:
    """One turn as the client sees it: every event of legacy's golden path."""
    await ws.send_str(START)
    types: list[str] = []
    async with asyncio.timeout(10):
        while not types or types[-1] != "agent_completed":
            types.append(json.loads((await ws.receive()).data)["type"])
    return types


async def count(proxy: Running, name: str, **labels: str) -> float:
    return await metric(proxy.admin_port, name, route="main", **labels)


async def shed(proxy: Running, reason: str) -> float:
    return await count(proxy, "strangler_shadow_shed_total", reason=reason)


async def verdicts(proxy: Running) -> dict[str, float]:
    name = "strangler_comparisons_total"
    outcomes = ("match", "mismatch", "shadow_error", "shadow_timeout", "shed")
    return {o: await count(proxy, name, mode="shadow", outcome=o) for o in outcomes}


async def test_shadow_work_is_shed_in_order_and_the_primary_always_completes(
    stack: Stack,
) -> None:
    await stack.backends(
        legacy=BackendSettings(jwt_secret=SECRET), unified=BackendSettings(jwt_secret=SECRET)
    )
    p = await stack.proxy(FLAGS, extra=SHED)
    url = f"ws://127.0.0.1:{p.port}/ws"
    headers = {"Authorization": f"Bearer {token('sam')}"}
    port = p.admin_port
    async with aiohttp.ClientSession() as s, s.ws_connect(url, headers=headers) as a:
        await a.receive()  # the greeting
        assert await turn(a) == GOLDEN

        async def first_compared() -> bool:
            return (await verdicts(p))["match"] == 1

        await wait_for(first_compared)  # within budget: compared, and it matches

        # Past the budget, twice: new secondaries are refused, new turns not compared.
        await stall_until(p, 2)
        assert await turn(a) == GOLDEN

        async def second_shed() -> bool:
            return (await verdicts(p))["shed"] == 1

        await wait_for(second_shed)
        async with s.ws_connect(url, headers=headers) as b:
            await b.receive()
            assert await turn(b) == GOLDEN  # served by legacy, without a secondary
        assert await shed(p, "secondary_refused") == 1

        # The last level: the open secondary is closed; the client never notices.
        await stall_until(p, 3)

        async def closed() -> bool:
            gauge = "strangler_secondary_connections_open"
            return await metric(port, gauge, route="main", backend="unified") == 0

        for _ in range(10):
            if await closed():
                break
            time.sleep(STALL)  # noqa: ASYNC251 - still over budget: close a share
            await asyncio.sleep(0.05)
        assert await closed()
        assert await shed(p, "secondary_closed") == 1
        assert await turn(a) == GOLDEN
        assert await turn(a) == GOLDEN

    # Turn 1 was skipped (or, had the machine lagged on its own, its secondary closed):
    # shed either way, and every later turn went uncompared. Nothing else was judged.
    skipped = await shed(p, "turn_skipped")
    assert skipped in (0, 1)
    final = await verdicts(p)
    assert final == {"match": 1, "mismatch": 0, "shadow_error": 0, "shadow_timeout": 0, "shed": 1}
    # The guard judged the compared turn alone: a shed turn is neither good nor bad.
    observations = "strangler_guard_observations_total"
    watched: dict[str, Any] = {"flag": "unified_router", "guard": "mismatch_ratio"}
    assert await metric(port, observations, **watched, result="ok") == 1
    assert await metric(port, observations, **watched, result="bad") == 0
    async with aiohttp.ClientSession() as s, s.get(f"http://127.0.0.1:{port}/shadow") as r:
        state: dict[str, Any] = await r.json()
    assert state["recent_mismatches"] == []  # a shed turn is not a record to read
    # The status page says how much is being shed, and what was.
    async with aiohttp.ClientSession() as s, s.get(f"http://127.0.0.1:{port}/status") as r:
        page = await r.text()
    line = re.search(r'<dd id="shadow-shed">([^<]*)</dd>', page)
    assert line is not None
    assert line.group(1).startswith("close (")
    assert "1 secondary_closed" in line.group(1)
    assert "1 secondary_refused" in line.group(1)
