"""A flip under the drain policy, and guards that send a flag back to legacy.

Drain: exactly the connections a change moved are closed with 1012, never faster than
the flag's rate; the others stay open. Guards: a divergent or failing unified router
trips the flag's guard once enough samples are in, new connections then get legacy with
reason `guard`, the trip is audited and exported, and it holds until the file changes.
"""

from __future__ import annotations

import asyncio
import itertools
import time
from typing import Any

import aiohttp

from strangler.proxy.runtime.server import Running
from strangler.reference.app_state import RECEIVED_HANDSHAKES
from strangler.reference.settings import BackendSettings
from tests.functional.conftest import (
    SECRET,
    ProxyUnderTest,
    Stack,
    StartProxy,
    metric,
    wait_for,
)
from tests.functional.test_flags_cli import astrangler
from tests.functional.test_release import admin, bearer, who
from tests.functional.test_shadow import SHADOW_FAST, one_turn

DRAIN_RATE = 4.0


def drain_flags(unified: list[str]) -> str:
    return (
        "flags:\n  unified_router:\n    routes: [main]\n"
        f"    targets: {{unified: [{', '.join(unified)}]}}\n"
        f"    on_change: {{drain: {{rate: {DRAIN_RATE}}}}}\n"
    )


async def test_drain_closes_exactly_the_moved_connections_with_1012_at_the_rate(
    start_proxy: StartProxy,
) -> None:
    p = await start_proxy(drain_flags(["alice"]))
    movers = ["b1", "b2", "b3", "b4"]
    stayers = ["alice", "c1"]
    async with aiohttp.ClientSession() as s:
        sockets = {u: await s.ws_connect(p.url(), headers=bearer(u)) for u in movers + stayers}
        for user, ws in sockets.items():
            assert await who(ws) == ("unified" if user == "alice" else "legacy")

        p.flags_path.write_text(drain_flags(["alice", *movers]))
        closed_at: dict[str, float] = {}

        async def closed(user: str) -> None:
            # Every mover reads at once, so each close is seen (and answered) on arrival.
            msg = await sockets[user].receive(timeout=10)
            closed_at[user] = time.monotonic()
            assert msg.type is aiohttp.WSMsgType.CLOSE, msg
            assert sockets[user].close_code == 1012

        await asyncio.gather(*(closed(user) for user in movers))

        # Never faster than the rate: consecutive closes are at least 1/rate apart.
        times = sorted(closed_at.values())
        gaps = [b - a for a, b in itertools.pairwise(times)]
        assert min(gaps) >= 1 / DRAIN_RATE * 0.95, gaps

        # The connections the change did not move are open and served where they were.
        assert await who(sockets["alice"]) == "unified"
        assert await who(sockets["c1"]) == "legacy"
        assert await p.metric("strangler_drained_connections_total", route="main") == 4
        assert (
            await p.metric(
                "strangler_connections_total", route="main", mode="legacy", outcome="drained"
            )
            == 4
        )

        async def no_drift() -> bool:
            return await p.metric("strangler_connection_drift", route="main") == 0

        await wait_for(no_drift)
        # The drained clients reconnect into their new mode.
        again = await s.ws_connect(p.url(), headers=bearer("b1"))
        assert await who(again) == "unified"
        for ws in [again, sockets["alice"], sockets["c1"]]:
            await ws.close()


async def test_keep_policy_leaves_moved_connections_open(start_proxy: StartProxy) -> None:
    keep = drain_flags(["alice"]).replace(f"    on_change: {{drain: {{rate: {DRAIN_RATE}}}}}\n", "")
    p = await start_proxy(keep)
    async with aiohttp.ClientSession() as s:
        bob = await s.ws_connect(p.url(), headers=bearer("bob"))
        p.flags_path.write_text(keep.replace("[alice]", "[alice, bob]"))

        async def drifted() -> bool:
            return await p.metric("strangler_connection_drift", route="main") == 1

        await wait_for(drifted)
        assert await who(bob) == "legacy"
        assert await p.metric("strangler_drained_connections_total", route="main") == 0
        await bob.close()


GUARDED = """
flags:
  unified_router:
    routes: [main]
    targets: {shadow: [s1, s2, s3, s4]}
    guard: {max_mismatch_ratio: 0.5, min_samples: 3, window: 60}
"""


async def _evaluations(p: Running, mode: str, reason: str) -> float:
    return await metric(
        p.admin_port,
        "strangler_flag_evaluations_total",
        flag="unified_router",
        mode=mode,
        reason=reason,
    )


async def _admin_get(p: Running, path: str) -> dict[str, Any]:
    url = f"http://127.0.0.1:{p.admin_port}{path}"
    async with aiohttp.ClientSession() as s, s.get(url) as r:
        return dict(await r.json())


async def _mismatches(p: Running, n: int) -> None:
    async def seen() -> bool:
        return (
            await metric(
                p.admin_port,
                "strangler_comparisons_total",
                route="main",
                mode="shadow",
                outcome="mismatch",
            )
            >= n
        )

    await wait_for(seen, timeout=10)


async def test_a_divergent_unified_router_trips_the_guard_and_new_users_get_legacy(
    stack: Stack,
) -> None:
    await stack.backends(
        unified=BackendSettings(jwt_secret=SECRET, omit_events=("tool_executing", "tool_completed"))
    )
    p = await stack.proxy(GUARDED, extra=SHADOW_FAST)
    assert stack.unified_app is not None
    tripped = ("strangler_guard_tripped", {"flag": "unified_router"})

    # Two mismatching turns: every sample is bad, but fewer than min_samples.
    for n, user in enumerate(("s1", "s2"), start=1):
        await one_turn(p, user)
        await _mismatches(p, n)
    assert await metric(p.admin_port, tripped[0], **tripped[1]) == 0
    guard = (await _admin_get(p, "/flags/status"))["guards"]["unified_router"]
    assert guard["tripped"] is False
    assert guard["watching"]["mismatch_ratio"]["samples"] == 2

    # The third reaches min_samples with a ratio of 1.0 > 0.5: the guard trips.
    await one_turn(p, "s3")

    async def holds() -> bool:
        return await metric(p.admin_port, tripped[0], **tripped[1]) == 1

    await wait_for(holds, timeout=10)
    assert (
        await metric(
            p.admin_port,
            "strangler_guard_trips_total",
            flag="unified_router",
            guard="mismatch_ratio",
        )
        == 1
    )
    records = (await _admin_get(p, "/flags/audit"))["records"]
    trip = next(r for r in records if r["outcome"] == "guard_tripped")
    assert (trip["flag"], trip["guard"], trip["samples"]) == ("unified_router", "mismatch_ratio", 3)

    # A user the flags put in shadow now gets legacy, reason guard, and no secondary.
    copies = len(stack.unified_app[RECEIVED_HANDSHAKES])
    frames = await one_turn(p, "s4")
    assert frames[-1]["type"] == "agent_completed"
    assert await _evaluations(p, "legacy", "guard") == 1
    assert len(stack.unified_app[RECEIVED_HANDSHAKES]) == copies

    # It holds until the file changes; a changed file starts the guard afresh.
    (stack.tmp / "p" / "flags.yaml").write_text(GUARDED + "# reviewed, try again\n")

    async def cleared() -> bool:
        return await metric(p.admin_port, tripped[0], **tripped[1]) == 0

    await wait_for(cleared, timeout=10)
    shadowed = await _evaluations(p, "shadow", "target")
    await one_turn(p, "s4")
    assert await _evaluations(p, "shadow", "target") == shadowed + 1
    applied = (await _admin_get(p, "/flags/audit"))["records"][0]
    assert applied["outcome"] == "applied" and applied["guards_cleared"] == ["unified_router"]


async def test_an_unreachable_unified_router_trips_the_error_guard(start_proxy: StartProxy) -> None:
    flags = (
        "flags:\n  unified_router:\n    routes: [main]\n"
        "    targets: {unified: [u1, u2, u3, u4]}\n"
        "    guard: {max_unified_error_ratio: 0.5, min_samples: 2, window: 60}\n"
    )
    p = await start_proxy(flags)
    assert await _explain_live(p, "u1") == ("unified", "target", "not tripped on the running proxy")
    async with aiohttp.ClientSession() as s:
        ws = await s.ws_connect(p.url(), headers=bearer("u1"))
        assert await who(ws) == "unified"  # one good handshake
        await ws.close()

        async def u1_ended() -> bool:
            # Its end is a guard sample too: counted before the failures, not among them.
            return not p.running.proxy.connections

        await wait_for(u1_ended)
        await p.unified.stop()
        for user in ("u2", "u3"):
            # Served by legacy through the fallback; each failed handshake is a bad sample.
            async with s.ws_connect(p.url(), headers=bearer(user)) as ws:
                assert await who(ws) == "legacy"
        # u1 ok (1 good), u1's end (good), u2 and u3 failed: 2 bad of 4 is 0.5, not above.
        assert await p.metric("strangler_guard_tripped", flag="unified_router") == 0
        async with s.ws_connect(p.url(), headers=bearer("u4")) as ws:
            assert await who(ws) == "legacy"
        assert await p.metric("strangler_guard_tripped", flag="unified_router") == 1
        assert await p.metric("strangler_fallbacks_total", route="main") == 3
        # Held on legacy: the next unified user is not even tried on the unified router.
        async with s.ws_connect(p.url(), headers=bearer("u1")) as ws:
            assert await who(ws) == "legacy"
        assert await p.metric("strangler_fallbacks_total", route="main") == 3
        status = await admin(p, "/flags/status")
        assert status["guards"]["unified_router"]["trip"]["guard"] == "unified_error_ratio"
    # What a release manager asks: the file says unified, the running proxy says legacy.
    assert await _explain_live(p, "u1") == (
        "legacy",
        "guard",
        "TRIPPED: the running proxy holds unified_router on legacy",
    )
    # Another file than the one the guard tripped under: the guard says nothing about it.
    other = p.flags_path.parent / "flags.next.yaml"
    other.write_text(flags + "# the next change\n")
    mode, reason, guard = await _explain_live(p, "u1", "--flags", str(other))
    assert (mode, reason) == ("unified", "target")
    assert guard.startswith("not known: the running proxy serves flags ")


async def _explain_live(p: ProxyUnderTest, user: str, *extra: str) -> tuple[str, str, str]:
    """`strangler flags explain --live` for ``user`` on /ws: mode, reason, guard line."""
    code, out, err = await astrangler(
        "explain",
        "--live",
        "--config",
        str(p.flags_path.parent / "strangler.yaml"),
        "--admin",
        f"127.0.0.1:{p.running.admin_port}",
        "--user",
        user,
        "--path",
        "/ws",
        *extra,
    )
    assert code == 0, err
    lines = dict(line.split(":", 1) for line in out.splitlines())
    return lines["mode"].strip(), lines["reason"].strip(), lines["guard"].strip()
