"""Release managers' view of live connections: fallback, drift, plan, audit, drain."""

from __future__ import annotations

import json
import time
from typing import Any

import aiohttp
import pytest

from tests.functional.conftest import (
    ProxyUnderTest,
    StartProxy,
    token,
    wait_for,
)

FLAGS = "flags:\n  unified_router:\n    routes: [main]\n    targets: {unified: [alice]}\n"


def bearer(user: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token(user)}"}


async def who(ws: aiohttp.ClientWebSocketResponse) -> str:
    await ws.send_str("who")
    return str(json.loads((await ws.receive()).data)["backend"])


async def admin(p: ProxyUnderTest, path: str, data: bytes | None = None) -> Any:
    url = f"http://127.0.0.1:{p.running.admin_port}{path}"
    async with aiohttp.ClientSession() as s:
        if data is None:
            async with s.get(url) as r:
                return await r.json()
        async with s.post(url, data=data) as r:
            return {"status": r.status, **(await r.json())}


async def test_unified_unreachable_serves_the_user_by_legacy_and_counts_it(
    start_proxy: StartProxy,
) -> None:
    p = await start_proxy(FLAGS)
    await p.unified.stop()  # the unified router goes away
    async with aiohttp.ClientSession() as s, s.ws_connect(p.url(), headers=bearer("alice")) as ws:
        assert await who(ws) == "legacy"
    assert await p.metric("strangler_fallbacks_total", route="main") == 1
    assert await p.metric("strangler_connections_open", route="main", mode="legacy") == 0


async def test_fallback_can_be_turned_off_to_refuse_instead(start_proxy: StartProxy) -> None:
    p = await start_proxy(FLAGS, unified_extra="on_unavailable: refuse")
    await p.unified.stop()
    async with aiohttp.ClientSession() as s:
        with pytest.raises(aiohttp.WSServerHandshakeError) as refused:
            await s.ws_connect(p.url(), headers=bearer("alice"))
    assert refused.value.status == 502
    assert await p.metric("strangler_fallbacks_total", route="main") == 0


async def test_flag_edit_shows_drift_for_open_connections_until_they_close(
    start_proxy: StartProxy,
) -> None:
    p = await start_proxy(FLAGS)
    async with aiohttp.ClientSession() as s:
        bob = await s.ws_connect(p.url(), headers=bearer("bob"))
        assert await who(bob) == "legacy"
        p.flags_path.write_text(FLAGS.replace("[alice]", "[alice, bob]"))

        async def drifted(n: int) -> bool:
            return await p.metric("strangler_connection_drift", route="main") == n

        await wait_for(lambda: drifted(1))
        assert await who(bob) == "legacy"  # policy keep: it finishes where it is
        status = await admin(p, "/flags/status")
        assert status["drift"] == {"main": 1}
        assert status["open_connections"] == {"main": {"legacy": 1}}
        await bob.close()
        await wait_for(lambda: drifted(0))


async def test_plan_counts_what_a_candidate_file_would_move_without_applying_it(
    start_proxy: StartProxy,
) -> None:
    p = await start_proxy(FLAGS)
    async with aiohttp.ClientSession() as s:
        sockets = [
            await s.ws_connect(p.url(), headers=bearer(user))
            for user in ("alice", "bob", "carol", "dave")
        ]
        candidate = (
            b"flags:\n  unified_router:\n    routes: [main]\n"
            b"    targets: {unified: [alice, bob], shadow: [carol]}\n"
            b"    rollout: {unified: 10}\n"
        )
        plan = await admin(p, "/flags/plan", candidate)
        assert plan["status"] == 200
        assert plan["open_connections"] == 4
        moves = {
            (m["route"], m["from_mode"], m["to_mode"]): m["connections"] for m in plan["moves"]
        }
        assert moves[("main", "legacy", "unified")] >= 1  # bob (dave too, if in the 10%)
        assert moves[("main", "legacy", "shadow")] == 1  # carol
        assert ("main", "unified", "legacy") not in moves  # alice stays
        population = plan["population"][0]
        # Percent, as the candidate file says it (`rollout: {unified: 10}`).
        assert population["percent_after"] == {"unified": 10, "legacy": 90}
        assert population["percent_before"] == {"legacy": 100}
        # Nothing was applied.
        assert await who(sockets[1]) == "legacy"
        assert (await admin(p, "/flags/status"))["drift"] == {"main": 0}
        bad = await admin(p, "/flags/plan", b"flags: [oops")
        assert bad["status"] == 400 and "candidate" in bad["error"]
        deep = await admin(p, "/flags/plan", b"flags: " + b"[" * 5000)
        assert deep["status"] == 400 and "nested too deeply" in deep["error"]
        for ws in sockets:
            await ws.close()


async def test_every_reload_leaves_an_audit_record_without_user_ids(
    start_proxy: StartProxy,
) -> None:
    p = await start_proxy(FLAGS)
    p.flags_path.write_text(FLAGS.replace("[alice]", "[alice, bob]"))
    await wait_for(lambda: _reloads(p, "applied", 2))
    p.flags_path.write_text("flags: {unified_router: {routes: [nowhere]}}\n")
    await wait_for(lambda: _reloads(p, "rejected", 1))
    records = (await admin(p, "/flags/audit"))["records"]
    rejected, applied = records[0], records[1]
    assert rejected["outcome"] == "rejected" and "nowhere" in rejected["error"]
    assert applied["outcome"] == "applied"
    assert applied["old_hash"] != applied["new_hash"]
    assert applied["changes"] == [
        {"flag": "unified_router", "change": "changed", "fields": {"targets": {"unified": "+1 -0"}}}
    ]
    assert "bob" not in json.dumps(records)
    assert records[0]["at"] <= time.time()


async def _reloads(p: ProxyUnderTest, result: str, n: int) -> bool:
    return await p.metric("strangler_flag_reloads_total", result=result) >= n


async def test_unreachable_unified_for_a_live_user_falls_back_too(start_proxy: StartProxy) -> None:
    flags = "flags:\n  unified_router:\n    routes: [main]\n    targets: {live: [liv]}\n"
    p = await start_proxy(flags)
    await p.unified.stop()
    async with aiohttp.ClientSession() as s, s.ws_connect(p.url(), headers=bearer("liv")) as ws:
        assert await who(ws) == "legacy"
    assert await p.metric("strangler_fallbacks_total", route="main") == 1
