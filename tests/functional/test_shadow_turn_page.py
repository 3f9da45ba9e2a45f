"""A mismatched turn as a release manager opens it: from the status page, in real
headless Chromium, to the turn's own page with both sides' events next to each other,
the differing field marked and the rule that judged it; and the same turn in a terminal
with `strangler shadow show`. The unified router returns another tool result; nothing
of the user (id, token) reaches either."""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import sys
from pathlib import Path

import aiohttp
import pytest

from strangler.proxy.runtime.server import Running
from strangler.reference.settings import BackendSettings
from tests.functional.conftest import SECRET, Stack, token, wait_for
from tests.functional.test_status_page import (
    ARTIFACTS,
    CHROMIUM,
    admin_json,
    chromium_args,
    run_chromium,
    visible_text,
)
from tests.html_tree import Element, parse

USER = "u-turnpage-7f3e"
FLAGS = f"""
flags:
  unified_router:
    routes: [main, api, main_user, main_v1, factory, isolated, legacy, legacy_test]
    targets: {{shadow: [{USER}]}}
"""
SHADOW_FAST = """
shadow:
  queue_frames: 64
  compare: {timeout_factor: 2, timeout_floor: 0.5}
"""
# The user's id inside the request, so it travels into the tools' parameters and results.
REQUEST = f"Optimize the costs of {USER}"
START = json.dumps({"type": "start_agent", "payload": {"user_request": REQUEST}})
DIFFERING = "data.result.monthly_cost_usd"


async def mismatched_turn(proxy: Running) -> dict[str, object]:
    """One shadow turn where unified's tool returns another cost; its record."""
    async with (
        aiohttp.ClientSession() as s,
        s.ws_connect(
            f"ws://127.0.0.1:{proxy.port}/ws", headers={"Authorization": f"Bearer {token(USER)}"}
        ) as ws,
    ):
        await ws.receive()
        await ws.send_str(START)
        async with asyncio.timeout(10):
            while json.loads((await ws.receive()).data)["type"] != "agent_completed":
                pass

    async def recorded() -> bool:
        return bool((await admin_json(proxy, "/shadow"))["recent_mismatches"])

    await wait_for(recorded, timeout=10)
    (record,) = (await admin_json(proxy, "/shadow"))["recent_mismatches"]
    assert isinstance(record, dict)
    return record


def marked_paths(cells: list[Element]) -> set[str]:
    return {
        tr.attrs["data-path"]
        for cell in cells
        for tr in cell.find_all("tr")
        if "diff" in tr.attrs.get("class", "").split()
    }


async def test_a_mismatch_opens_from_the_status_page_side_by_side_in_chromium(
    stack: Stack, tmp_path: Path
) -> None:
    if not os.access(CHROMIUM, os.X_OK):
        pytest.fail(f"{CHROMIUM} is missing: run scripts/install-test-deps.sh to install Chromium")
    await stack.backends(
        legacy=BackendSettings(jwt_secret=SECRET, event_delay=0.02),
        unified=BackendSettings(jwt_secret=SECRET, divergence="other_result"),
    )
    proxy = await stack.proxy(FLAGS, extra=SHADOW_FAST)
    record = await mismatched_turn(proxy)
    admin = f"http://127.0.0.1:{proxy.admin_port}"
    profile = tmp_path / "chromium"

    status = parse(await run_chromium(chromium_args(profile, "--dump-dom", f"{admin}/status")))
    row = status.by_id("mismatches").find("tr", data_id=str(record["id"]))
    link = row.find("td", class_="details").find("a")
    assert link.text == "side by side"
    assert link.attrs["href"] == f"/shadow/turns/{record['id']}"

    url = admin + link.attrs["href"]  # the link, followed as the browser resolves it
    dom = await run_chromium(chromium_args(profile, "--dump-dom", url))
    shot = tmp_path / "shadow-turn.png"
    await run_chromium(
        chromium_args(profile, f"--screenshot={shot}", "--window-size=1400,2500", url)
    )

    page = parse(dom)
    assert page.find("title").text == f"shadow turn {record['id']}"
    assert page.by_id("turn-outcome").text == "mismatch"
    assert page.by_id("turn-mode").text == "shadow (legacy answered the client)"
    events = page.by_id("events")
    legacy = events.find_all("td", class_="legacy")
    unified = events.find_all("td", class_="unified")
    kinds = ["agent_started", "agent_thinking", "tool_executing", "tool_completed"]
    for cells in (legacy, unified):
        types = [cell.find("div", class_="event").attrs["data-type"] for cell in cells]
        runs = [kind for i, kind in enumerate(types) if not i or types[i - 1] != kind]
        assert runs == [*kinds, "agent_completed"]  # thinking may come in several chunks
    # The differing cost is marked on both sides; nothing else of the tool result is.
    assert DIFFERING in marked_paths(legacy) and DIFFERING in marked_paths(unified)
    assert "data.result.currency" not in marked_paths(unified)
    differences = {
        tr.find("td", class_="where").text: tr.find("td", class_="rule").text
        for tr in page.by_id("differences").find("tbody").find_all("tr")
    }
    assert differences[f"tool_completed.{DIFFERING}"] == "rule exact"

    text = visible_text(page.find("body"))
    assert "[redacted]" in text  # the id inside the tool's parameters
    for secret in (USER, token(USER)):
        assert secret not in dom

    assert shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert shot.stat().st_size > 10_000  # a rendered page, not an empty image
    ARTIFACTS.mkdir(exist_ok=True)
    staged = ARTIFACTS / f".shadow-turn.{os.getpid()}.png"
    shutil.copyfile(shot, staged)
    os.replace(staged, ARTIFACTS / "shadow-turn.png")

    # The same turn in a terminal, two columns wide.
    strangler = Path(sys.executable).with_name("strangler")
    proc = await asyncio.create_subprocess_exec(
        str(strangler),
        "shadow",
        "show",
        str(record["id"]),
        "--admin",
        f"127.0.0.1:{proxy.admin_port}",
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        env={**os.environ, "COLUMNS": "160"},
    )
    out, err = await asyncio.wait_for(proc.communicate(), 30)
    assert proc.returncode == 0, err.decode()
    lines = out.decode().splitlines()
    assert lines[2] == "outcome: mismatch"
    assert f"  field: tool_completed.{DIFFERING}  (judged by rule exact)" in lines
    (cost,) = [line for line in lines if DIFFERING in line and " | " in line]
    left, _, right = cost.partition(" | ")
    assert left.lstrip().startswith("!") and right.lstrip().startswith("!")
    assert left.split(" = ")[1].strip() != right.split(" = ")[1].strip()
    assert USER not in out.decode()


async def test_an_unknown_turn_id_is_a_404_page_and_exit_2(stack: Stack) -> None:
    await stack.backends()
    proxy = await stack.proxy(FLAGS, extra=SHADOW_FAST)
    async with (
        aiohttp.ClientSession() as s,
        s.get(f"http://127.0.0.1:{proxy.admin_port}/shadow/turns/0badc0de") as r,
    ):
        assert r.status == 404
        assert "0badc0de" in parse(await r.text()).by_id("not-found").text
    proc = await asyncio.create_subprocess_exec(
        str(Path(sys.executable).with_name("strangler")),
        "shadow",
        "show",
        "0badc0de",
        "--admin",
        f"127.0.0.1:{proxy.admin_port}",
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, _ = await asyncio.wait_for(proc.communicate(), 30)
    assert proc.returncode == 2
    assert "no recorded turn has the id '0badc0de'" in out.decode()
