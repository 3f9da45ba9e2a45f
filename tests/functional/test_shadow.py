"""Shadow and live modes end to end: the client sees only its primary; the secondary
gets a marked copy of every message, and each turn is compared without slowing the
client, whatever the secondary does."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import aiohttp
import pytest

from strangler.proxy.runtime.server import Running
from strangler.reference.app_state import RECEIVED_HANDSHAKES
from strangler.reference.settings import BackendSettings
from tests.functional.conftest import (
    ALL_ROUTES,
    SECRET,
    Stack,
    free_port,
    metric,
    scrape,
    token,
    wait_for,
)

FLAGS = """
flags:
  unified_router:
    routes: [main, api, main_user, main_v1, factory, isolated, legacy, legacy_test]
    targets: {shadow: [sam], live: [liv]}
"""
SHADOW_FAST = """
shadow:
  queue_frames: 64
  # This one process also runs the backends and the client: on a loaded machine
  # shedding would rightly refuse secondaries, which is not what these tests judge.
  shed: {enabled: false}
  compare: {timeout_factor: 2, timeout_floor: 0.5}
"""
START = json.dumps({"type": "start_agent", "payload": {"user_request": "Optimize my costs"}})


async def one_turn(proxy: Running, user: str, path: str = "/ws") -> list[dict[str, Any]]:
    """Connect as `user`, run one turn, close normally; the frames the client saw."""
    frames: list[dict[str, Any]] = []
    async with (
        aiohttp.ClientSession() as s,
        s.ws_connect(
            f"ws://127.0.0.1:{proxy.port}{path}",
            headers={"Authorization": f"Bearer {token(user)}"},
        ) as ws,
    ):
        frames.append(json.loads((await ws.receive()).data))
        await ws.send_str(START)
        async with asyncio.timeout(10):
            while frames[-1].get("type") not in ("agent_completed", "agent_error"):
                frames.append(json.loads((await ws.receive()).data))
    return frames


async def verdicts(
    proxy: Running, outcome: str, route: str = "main", mode: str = "shadow"
) -> float:
    return await metric(
        proxy.admin_port, "strangler_comparisons_total", route=route, mode=mode, outcome=outcome
    )


async def settled(proxy: Running, outcome: str, mode: str = "shadow", route: str = "main") -> None:
    async def seen() -> bool:
        return await verdicts(proxy, outcome, route, mode) >= 1

    await wait_for(seen, timeout=10)


async def test_shadow_client_sees_legacy_while_unified_gets_a_marked_copy(stack: Stack) -> None:
    await stack.backends()
    p = await stack.proxy(FLAGS, extra=SHADOW_FAST)
    frames = await one_turn(p, "sam")
    assert {f.get("server_id") for f in frames} <= {"legacy", None}
    assert frames[0]["server_id"] == "legacy"
    await settled(p, "match")
    assert stack.unified_app is not None
    copy = stack.unified_app[RECEIVED_HANDSHAKES][-1]
    assert copy["headers"]["X-Strangler-Shadow"] == "1"
    assert copy["headers"]["X-Strangler-Route"] == "main"
    assert (
        await metric(
            p.admin_port,
            "strangler_turn_duration_seconds_count",
            route="main",
            backend="unified",
            role="secondary",
        )
        == 1
    )


async def test_live_client_sees_unified_while_legacy_is_the_compared_copy(stack: Stack) -> None:
    await stack.backends()
    p = await stack.proxy(FLAGS, extra=SHADOW_FAST)
    frames = await one_turn(p, "liv")
    assert frames[0]["server_id"] == "unified"
    await settled(p, "match", mode="live")
    assert stack.legacy_app is not None
    copy = stack.legacy_app[RECEIVED_HANDSHAKES][-1]
    assert copy["headers"]["X-Strangler-Shadow"] == "1"


async def test_shadow_on_a_translated_dialect_sends_canonical_frames_to_unified(
    stack: Stack,
) -> None:
    await stack.backends()
    p = await stack.proxy(FLAGS, extra=SHADOW_FAST)
    frames = await one_turn(p, "sam", path="/ws/u-1")  # main_payload: older envelope
    assert frames[0]["type"] == "system_message"
    assert all("payload" in f for f in frames[1:])
    await settled(p, "match", route="main_user")


async def test_varied_reasoning_and_chunking_still_match(stack: Stack) -> None:
    await stack.backends(unified=BackendSettings(jwt_secret=SECRET, vary=True))
    p = await stack.proxy(FLAGS, extra=SHADOW_FAST)
    for _ in range(3):
        await one_turn(p, "sam")
    await wait_for(lambda: _at_least(p, "match", 3), timeout=10)
    assert await verdicts(p, "mismatch") == 0


async def test_unified_leaving_out_tool_events_is_a_mismatch_with_categories(
    stack: Stack,
) -> None:
    await stack.backends(
        unified=BackendSettings(jwt_secret=SECRET, omit_events=("tool_executing", "tool_completed"))
    )
    p = await stack.proxy(FLAGS, extra=SHADOW_FAST)
    await one_turn(p, "sam")
    await settled(p, "mismatch")
    assert (
        await metric(
            p.admin_port,
            "strangler_mismatches_total",
            route="main",
            mode="shadow",
            category="missing_event",
        )
        >= 1
    )
    async with aiohttp.ClientSession() as s, s.get(f"http://127.0.0.1:{p.admin_port}/shadow") as r:
        state = await r.json()
    sample = state["recent_mismatches"][0]
    assert (sample["route"], sample["outcome"]) == ("main", "mismatch")
    assert ["missing_event", "tool_executing"] in sample["differences"]
    assert "sam" not in json.dumps(state)  # no user ids on the admin port


async def test_live_mode_still_takes_legacy_as_the_reference(stack: Stack) -> None:
    await stack.backends(
        unified=BackendSettings(jwt_secret=SECRET, omit_events=("agent_thinking",))
    )
    p = await stack.proxy(FLAGS, extra=SHADOW_FAST)
    frames = await one_turn(p, "liv")
    assert "agent_thinking" not in {f["type"] for f in frames}  # the client got unified's
    await settled(p, "mismatch", mode="live")
    assert (
        await metric(
            p.admin_port,
            "strangler_mismatches_total",
            route="main",
            mode="live",
            category="missing_event",
        )
        == 1
    )


async def test_unreachable_secondary_changes_nothing_for_the_client(stack: Stack) -> None:
    await stack.backends()
    p = await stack.proxy(
        FLAGS, extra=SHADOW_FAST, unified_url=f"ws://127.0.0.1:{free_port()}/v1/ws"
    )
    frames = await one_turn(p, "sam")
    assert frames[-1]["type"] == "agent_completed"
    await settled(p, "shadow_error")
    assert (
        await metric(
            p.admin_port,
            "strangler_secondary_failures_total",
            route="main",
            backend="unified",
            reason="unavailable",
        )
        == 1
    )


async def test_secondary_that_never_answers_its_handshake_does_not_delay_the_client(
    stack: Stack,
) -> None:
    await stack.backends()
    silent_writers: list[asyncio.StreamWriter] = []

    async def say_nothing(_: asyncio.StreamReader, w: asyncio.StreamWriter) -> None:
        silent_writers.append(w)

    silent = await asyncio.start_server(say_nothing, "127.0.0.1", 0)
    port = silent.sockets[0].getsockname()[1]
    try:
        p = await stack.proxy(FLAGS, extra=SHADOW_FAST, unified_url=f"ws://127.0.0.1:{port}/v1/ws")
        frames = await one_turn(p, "sam")
        assert frames[-1]["type"] == "agent_completed"

        async def failed() -> bool:
            return (
                await metric(
                    p.admin_port,
                    "strangler_secondary_failures_total",
                    route="main",
                    backend="unified",
                    reason="unavailable",
                )
                == 1
            )

        await wait_for(failed)
        # The turn's deadline may pass before the handshake times out: either verdict
        # says the secondary did not deliver, and neither touched the client.
        assert await verdicts(p, "shadow_error") + await verdicts(p, "shadow_timeout") == 1
    finally:
        for w in silent_writers:
            w.close()
        silent.close()
        await silent.wait_closed()


async def test_secondary_that_answers_slowly_is_a_shadow_timeout(stack: Stack) -> None:
    await stack.backends(unified=BackendSettings(jwt_secret=SECRET, event_delay=0.4))
    p = await stack.proxy(FLAGS, extra=SHADOW_FAST)
    await one_turn(p, "sam")
    await settled(p, "shadow_timeout")


async def test_secondary_dying_mid_turn_is_a_shadow_error(stack: Stack) -> None:
    slow = BackendSettings(jwt_secret=SECRET, event_delay=0.2)
    await stack.backends(legacy=slow, unified=slow)
    p = await stack.proxy(FLAGS, extra=SHADOW_FAST)

    async def kill_unified_soon() -> None:
        await asyncio.sleep(0.3)
        await stack.runners[1].cleanup()  # closes its sockets with 1001

    killer = asyncio.create_task(kill_unified_soon())
    frames = await one_turn(p, "sam")
    await killer
    assert frames[-1]["type"] == "agent_completed"
    await settled(p, "shadow_error")


async def test_a_flood_on_both_sides_is_dropped_and_counted_not_buffered(stack: Stack) -> None:
    """Both backends flood (a flood request reaches both): the comparison falls behind
    the primary, its bounded queue drops and counts, and the client session is untouched.
    A secondary flooding alone is tests/functional/test_shadow_flood.py."""
    await stack.backends()
    p = await stack.proxy(FLAGS, extra=SHADOW_FAST)
    async with (
        aiohttp.ClientSession() as s,
        s.ws_connect(
            f"ws://127.0.0.1:{p.port}/ws", headers={"Authorization": f"Bearer {token('sam')}"}
        ) as ws,
    ):
        await ws.receive()
        # The request goes to legacy and, copied, to unified: both send 5000 frames.
        await ws.send_str(json.dumps({"type": "flood", "payload": {"count": 5000, "size": 200}}))
        received = 0
        async with asyncio.timeout(10):
            while received < 5000:
                msg = await ws.receive()
                assert msg.type is aiohttp.WSMsgType.TEXT
                received += 1

    async def dropped() -> bool:
        return (
            await metric(
                p.admin_port,
                "strangler_secondary_dropped_frames_total",
                route="main",
                queue="compare",
            )
            > 0
        )

    await wait_for(dropped)


async def test_global_switch_and_capacity_leave_shadow_users_on_their_primary(
    stack: Stack,
) -> None:
    await stack.backends()
    p = await stack.proxy(FLAGS, extra="shadow: {max_secondary_connections: 1}")
    async with aiohttp.ClientSession() as s:
        bearer = {"Authorization": f"Bearer {token('sam')}"}
        first = await s.ws_connect(f"ws://127.0.0.1:{p.port}/ws", headers=bearer)
        await first.receive()
        # At capacity: the second shadow connection runs on legacy alone.
        frames = await one_turn(p, "sam")
        assert frames[0]["server_id"] == "legacy"
        assert (
            await metric(
                p.admin_port,
                "strangler_secondary_skipped_total",
                route="main",
                reason="at_capacity",
            )
            == 1
        )
        await first.close()
        async with s.post(f"http://127.0.0.1:{p.admin_port}/shadow?enabled=false") as r:
            assert (await r.json())["enabled"] is False
        await one_turn(p, "sam")
        assert (
            await metric(
                p.admin_port,
                "strangler_secondary_skipped_total",
                route="main",
                reason="switched_off",
            )
            == 1
        )


async def test_client_leaving_mid_turn_is_primary_incomplete(stack: Stack) -> None:
    await stack.backends(legacy=BackendSettings(jwt_secret=SECRET, event_delay=0.3))
    p = await stack.proxy(FLAGS, extra=SHADOW_FAST)
    async with (
        aiohttp.ClientSession() as s,
        s.ws_connect(
            f"ws://127.0.0.1:{p.port}/ws", headers={"Authorization": f"Bearer {token('sam')}"}
        ) as ws,
    ):
        await ws.receive()
        await ws.send_str(START)
        await ws.receive()  # agent_started, then leave
    await settled(p, "primary_incomplete")


@pytest.mark.parametrize("mode_user", ["sam", "liv"])
async def test_secondary_is_closed_when_the_client_leaves(stack: Stack, mode_user: str) -> None:
    await stack.backends()
    p = await stack.proxy(FLAGS, extra=SHADOW_FAST)
    await one_turn(p, mode_user)

    async def none_open() -> bool:
        backend = "unified" if mode_user == "sam" else "legacy"
        return (
            await metric(
                p.admin_port, "strangler_secondary_connections_open", route="main", backend=backend
            )
            == 0
        )

    await wait_for(none_open, timeout=10)


async def _at_least(p: Running, outcome: str, n: int) -> bool:
    return await verdicts(p, outcome) >= n


@pytest.mark.parametrize(
    ("divergence", "outcome", "category"),
    [
        ("drop_event", "mismatch", "missing_event"),
        ("reorder", "mismatch", "order"),
        ("other_tool", "mismatch", "tool_set"),
        ("tool_args", "mismatch", "tool_args"),
        ("final_status", "mismatch", "final_status"),
        ("hang", "shadow_timeout", None),
        ("crash", "shadow_error", None),
        ("refuse", "shadow_error", None),
        ("flood", "shadow_error", None),
    ],
)
async def test_each_divergence_of_the_unified_router_is_found(
    stack: Stack, divergence: str, outcome: str, category: str | None
) -> None:
    slow_legacy = BackendSettings(jwt_secret=SECRET, event_delay=0.05)
    await stack.backends(
        legacy=slow_legacy, unified=BackendSettings(jwt_secret=SECRET, divergence=divergence)
    )
    p = await stack.proxy(FLAGS, extra=SHADOW_FAST)
    async with (
        aiohttp.ClientSession() as s,
        s.ws_connect(
            f"ws://127.0.0.1:{p.port}/ws", headers={"Authorization": f"Bearer {token('sam')}"}
        ) as ws,
    ):
        await ws.receive()
        for _ in range(2):  # the connection stays open and a second turn works too
            await ws.send_str(START)
            types = []
            async with asyncio.timeout(10):
                while not types or types[-1] != "agent_completed":
                    types.append(json.loads((await ws.receive()).data)["type"])
            assert types[0] == "agent_started"  # the client's own turn is complete
        await settled(p, outcome)
    if category is not None:
        assert (
            await metric(
                p.admin_port,
                "strangler_mismatches_total",
                route="main",
                mode="shadow",
                category=category,
            )
            >= 1
        )
    assert await verdicts(p, "match") == 0


@pytest.mark.parametrize("mode", ["shadow", "live"])
async def test_every_route_matches_in_shadow_and_live_with_identical_backends(
    stack: Stack, mode: str
) -> None:
    from tests.functional.test_contract import usual_clients

    await stack.backends()
    p = await stack.proxy(
        f"flags:\n  everyone:\n    routes: {ALL_ROUTES}\n    default: {mode}\n"
        f"    anonymous: {mode}\n",
        extra=SHADOW_FAST,
    )
    clients = usual_clients("route-user")
    async with aiohttp.ClientSession() as s:
        for client in clients.values():
            params = {client.query_token: token("route-user")} if client.query_token else {}
            async with s.ws_connect(
                f"ws://127.0.0.1:{p.port}{client.path}",
                protocols=client.protocols,
                headers=dict(client.headers),
                params=params,
            ) as ws:
                await ws.receive()
                await ws.send_str(START)
                async with asyncio.timeout(10):
                    while json.loads((await ws.receive()).data)["type"] != "agent_completed":
                        pass

    async def all_matched() -> bool:
        samples = await scrape(p.admin_port)
        total = sum(
            v
            for (name, labels), v in samples.items()
            if name == "strangler_comparisons_total" and ("outcome", "match") in labels
        )
        return total >= len(clients)

    await wait_for(all_matched, timeout=15)
    samples = await scrape(p.admin_port)
    assert not [
        labels
        for (name, labels), v in samples.items()
        if name == "strangler_comparisons_total" and ("outcome", "match") not in labels and v
    ]


async def test_mismatch_transcripts_are_redacted_and_appended_to_a_rotated_jsonl_file(
    stack: Stack,
) -> None:
    await stack.backends(unified=BackendSettings(jwt_secret=SECRET, divergence="tool_args"))
    log_path = stack.tmp / "mismatches.jsonl"
    p = await stack.proxy(
        FLAGS,
        extra=SHADOW_FAST + "  redact: [data.parameters.query, data.result.query, results.query]\n"
        f"  mismatch_log: {{path: {log_path}, max_bytes: 4000, backups: 5}}\n",
    )
    for _ in range(4):
        await one_turn(p, "sam")
    await wait_for(lambda: _at_least(p, "mismatch", 4), timeout=10)
    async with aiohttp.ClientSession() as s, s.get(f"http://127.0.0.1:{p.admin_port}/shadow") as r:
        sample = (await r.json())["recent_mismatches"][0]
    tool_call = next(e for e in sample["unified"] if e["type"] == "tool_executing")
    assert tool_call["data"]["parameters"] == {"query": "[redacted]", "granularity": "hourly"}
    assert all(e.get("user_id") in (None, "[redacted]") for e in sample["legacy"])
    await stack.close()  # stops the proxy, which flushes the file writer
    stack.proxies.clear()
    stack.runners.clear()
    files = sorted(stack.tmp.glob("mismatches.jsonl*"))
    assert len(files) >= 2  # rotated at 4000 bytes
    lines = [json.loads(line) for f in files for line in f.read_text().splitlines()]
    assert len(lines) == 4
    assert "sam" not in json.dumps(lines)
    assert "Optimize my costs" not in json.dumps(lines)
