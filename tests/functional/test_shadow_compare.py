"""The comparison's figures as a release manager reads them from a running proxy: the
noise table (admin /shadow and `strangler shadow noise`), `strangler shadow explain`, and
turn-level mismatch counting for metrics and the mismatch guard."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import aiohttp

from strangler.proxy.runtime.server import Running
from strangler.reference.settings import BackendSettings
from tests.functional.conftest import SECRET, Stack, metric, wait_for
from tests.functional.test_shadow import FLAGS, SHADOW_FAST, one_turn, verdicts

GUARDED = FLAGS + "    guard: {max_mismatch_ratio: 0.99, min_samples: 1000, window: 600}\n"


def strangler(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("STRANGLER_")}
    return subprocess.run(
        [sys.executable, "-m", "strangler.proxy", *args],
        capture_output=True,
        text=True,
        timeout=60,
        env=env,
        cwd=cwd,
    )


async def admin_get(p: Running, path: str) -> dict[str, Any]:
    async with (
        aiohttp.ClientSession() as s,
        s.get(f"http://127.0.0.1:{p.admin_port}{path}") as r,
    ):
        return dict(await r.json())


async def test_noise_table_names_the_prose_fields_a_varying_router_changes(stack: Stack) -> None:
    await stack.backends(unified=BackendSettings(jwt_secret=SECRET, vary=True))
    p = await stack.proxy(FLAGS, extra=SHADOW_FAST)
    for _ in range(3):
        await one_turn(p, "sam")

    async def three_matches() -> bool:
        return await verdicts(p, "match") >= 3

    await wait_for(three_matches, timeout=10)
    assert await verdicts(p, "mismatch") == 0
    state = await admin_get(p, "/shadow")
    rows = {(r["event_type"], r["path"]): r["turns"] for r in state["noise"]["paths"]}
    assert rows[("agent_thinking", "data.reasoning")] == 3
    assert state["noise"]["overflow"] == 0
    # Paths and counts only: none of the router's reasoning text reaches the table.
    assert "Let me" not in json.dumps(state["noise"])

    done = await asyncio.to_thread(
        strangler, "shadow", "noise", "--admin", f"127.0.0.1:{p.admin_port}"
    )
    assert done.returncode == 0, done.stderr
    header, *lines = done.stdout.splitlines()
    assert header.split() == ["TURNS", "EVENT", "TYPE", "PATH"]
    assert any(line.split() == ["3", "agent_thinking", "data.reasoning"] for line in lines)


async def test_noise_cli_without_a_proxy_exits_3() -> None:
    done = await asyncio.to_thread(strangler, "shadow", "noise", "--admin", "127.0.0.1:9")
    assert done.returncode == 3
    assert "cannot reach the proxy's admin port" in done.stderr


def test_explain_names_the_configured_rule_and_the_defaults(tmp_path: Path) -> None:
    (tmp_path / "strangler.yaml").write_text(
        'backends: {legacy: {url: "ws://127.0.0.1:1"}, unified: {url: "ws://127.0.0.1:2"}}\n'
        "routes: [{name: main, path: /ws, dialect: main}]\n"
        "jwt: {secret_env: H10_UNSET_SECRET}\n"
        "shadow:\n"
        "  compare:\n"
        "    rules:\n"
        "      tool_completed: {'data.result.*.cost': {rule: numeric, rel: 0.01}}\n"
    )
    done = strangler("shadow", "explain", "tool_completed", "data.result.eu.cost", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines()[:2] == [
        "tool_completed data.result.eu.cost: numeric (rel 0.01, abs 0)",
        "  because: shadow.compare.rules.tool_completed.data.result.*.cost",
    ]
    prose = strangler("shadow", "explain", "agent_completed", "data.final_response", cwd=tmp_path)
    assert prose.stdout.startswith("agent_completed data.final_response: presence\n")
    assert "built-in default" in prose.stdout
    data = strangler("shadow", "explain", "tool_completed", "data.result.rows", cwd=tmp_path)
    assert data.stdout.startswith("tool_completed data.result.rows: exact\n")
    bad = strangler("shadow", "explain", "tool_completed", "data..rows", cwd=tmp_path)
    assert bad.returncode == 2
    assert "not a dotted field path" in bad.stderr


async def test_a_mismatched_turn_is_one_guard_sample_and_once_per_category(stack: Stack) -> None:
    # Another tool: two tool_set differences (the tool legacy called, the one unified
    # called) in one turn, a single category.
    await stack.backends(unified=BackendSettings(jwt_secret=SECRET, divergence="other_tool"))
    p = await stack.proxy(GUARDED, extra=SHADOW_FAST)
    for _ in range(2):
        await one_turn(p, "sam")

    async def two_mismatches() -> bool:
        return await verdicts(p, "mismatch") >= 2

    await wait_for(two_mismatches, timeout=10)
    recent = (await admin_get(p, "/shadow"))["recent_mismatches"]
    assert [len(sample["differences"]) for sample in recent] == [2, 2]
    per_category = await metric(
        p.admin_port, "strangler_mismatches_total", route="main", mode="shadow", category="tool_set"
    )
    assert per_category == 2  # once per turn, not once per difference
    watching = (await admin_get(p, "/flags/status"))["guards"]["unified_router"]["watching"]
    assert (watching["mismatch_ratio"]["samples"], watching["mismatch_ratio"]["bad"]) == (2, 2)
