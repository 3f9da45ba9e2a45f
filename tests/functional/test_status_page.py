"""The admin status page as a release manager sees it: rendered by real headless
Chromium against a proxy in front of the reference backends, with connections open in
several modes, a flag change (targets and rollout) behind it, and a guard the shadow
mismatch that followed has tripped. What a person reads there is sentences: no JSON, no
basis points, no user ids."""

from __future__ import annotations

import asyncio
import json
import os
import re
import shutil
import time
from contextlib import AsyncExitStack
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from strangler.proxy.runtime.server import Running
from strangler.reference.settings import BackendSettings
from tests.functional.conftest import SECRET, Stack, token, wait_for
from tests.html_tree import Element, parse, table_rows

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_TIMEOUT = 60.0
ARTIFACTS = Path(__file__).resolve().parents[2] / "test-artifacts"

# Distinctive ids, so finding one anywhere on the page means a leak.
UNIFIED_USER = "u-status-unified-5c1d"
LEGACY_USER = "u-status-legacy-9e2b"
SHADOW_USER = "u-status-shadow-47af"

# One mismatching turn is enough to trip this guard (ratio 1 > 0.5 with 1 sample).
FLAGS = f"""
flags:
  unified_router:
    routes: [main, api, main_user, main_v1, factory, isolated, legacy, legacy_test]
    targets: {{unified: [{UNIFIED_USER}], shadow: [{SHADOW_USER}]}}
    guard: {{max_mismatch_ratio: 0.5, min_samples: 1}}
"""
# The change under test: the legacy user moves to unified while connected (drift), and
# 12.5% of everyone else too (1250 basis points inside: never shown).
FLAGS_MOVED = f"""
flags:
  unified_router:
    routes: [main, api, main_user, main_v1, factory, isolated, legacy, legacy_test]
    targets: {{unified: [{UNIFIED_USER}, {LEGACY_USER}], shadow: [{SHADOW_USER}]}}
    rollout: {{unified: 12.5}}
    guard: {{max_mismatch_ratio: 0.5, min_samples: 1}}
"""
SHADOW_FAST = """
shadow:
  queue_frames: 64
  compare: {timeout_factor: 2, timeout_floor: 0.5}
"""
START = json.dumps({"type": "start_agent", "payload": {"user_request": "Optimize my costs"}})


def chromium_args(profile: Path, *extra: str) -> list[str]:
    return [
        CHROMIUM,
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        f"--user-data-dir={profile}",
        *extra,
    ]


async def run_chromium(args: list[str]) -> str:
    """Run Chromium to completion (bounded); its stdout."""
    proc = await asyncio.create_subprocess_exec(
        *args,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    try:
        out, err = await asyncio.wait_for(proc.communicate(), CHROMIUM_TIMEOUT)
    except TimeoutError:
        proc.kill()
        await proc.wait()
        pytest.fail(f"chromium did not finish within {CHROMIUM_TIMEOUT:.0f} s")
    assert proc.returncode == 0, f"chromium exited {proc.returncode}: {err.decode()[-2000:]}"
    return out.decode()


async def admin_json(proxy: Running, path: str) -> Any:
    async with (
        aiohttp.ClientSession() as s,
        s.get(f"http://127.0.0.1:{proxy.admin_port}{path}") as r,
    ):
        assert r.status == 200
        return await r.json()


async def connect(
    stack: AsyncExitStack, session: aiohttp.ClientSession, proxy: Running, user: str
) -> aiohttp.ClientWebSocketResponse:
    ws = await stack.enter_async_context(
        session.ws_connect(
            f"ws://127.0.0.1:{proxy.port}/ws",
            headers={"Authorization": f"Bearer {token(user)}"},
        )
    )
    hello = json.loads((await ws.receive()).data)
    assert hello["type"] == "connection_established"
    return ws


async def one_turn(ws: aiohttp.ClientWebSocketResponse) -> None:
    await ws.send_str(START)
    async with asyncio.timeout(10):
        while json.loads((await ws.receive()).data).get("type") not in (
            "agent_completed",
            "agent_error",
        ):
            pass


def visible_text(element: Element) -> str:
    """The text a reader sees, cell by cell (separated, unlike Element.text)."""
    parts: list[str] = []

    def walk(node: Element | str) -> None:
        if isinstance(node, str):
            parts.append(node)
        elif node.tag not in ("style", "script", "title"):
            for child in node.children:
                walk(child)

    walk(element)
    return " ".join(" ".join(parts).split())


def counts(row: Element) -> dict[str, str]:
    return {
        td.attrs["data-mode"]: td.text
        for td in row.find_all("td", class_="n")
        if td.attrs.get("data-mode")
    }


async def test_status_page_in_chromium_reads_as_sentences_after_a_change_and_a_trip(
    stack: Stack, tmp_path: Path
) -> None:
    if not os.access(CHROMIUM, os.X_OK):
        pytest.fail(f"{CHROMIUM} is missing: run scripts/install-test-deps.sh to install Chromium")
    await stack.backends(
        legacy=BackendSettings(jwt_secret=SECRET, event_delay=0.05),
        unified=BackendSettings(jwt_secret=SECRET, divergence="other_tool"),
    )
    proxy = await stack.proxy(FLAGS, extra=SHADOW_FAST)
    tokens = [token(u) for u in (UNIFIED_USER, LEGACY_USER, SHADOW_USER)]
    started = (await admin_json(proxy, "/flags/status"))["hash"]

    async with aiohttp.ClientSession() as session, AsyncExitStack() as conns:
        await connect(conns, session, proxy, UNIFIED_USER)
        await connect(conns, session, proxy, LEGACY_USER)
        shadow_ws = await connect(conns, session, proxy, SHADOW_USER)

        (stack.tmp / "p" / "flags.yaml").write_text(FLAGS_MOVED)

        async def applied() -> bool:
            records = (await admin_json(proxy, "/flags/audit"))["records"]
            return len(records) >= 2 and records[0]["outcome"] == "applied"

        await wait_for(applied, timeout=10)

        # The unified router calls another tool: a mismatch, and the guard trips on it.
        await one_turn(shadow_ws)

        async def tripped() -> bool:
            guards = (await admin_json(proxy, "/flags/status"))["guards"]
            return bool(guards["unified_router"]["tripped"])

        async def mismatch_recorded() -> bool:
            return bool((await admin_json(proxy, "/shadow"))["recent_mismatches"])

        await wait_for(tripped, timeout=10)
        await wait_for(mismatch_recorded, timeout=10)
        status = await admin_json(proxy, "/flags/status")
        audit = (await admin_json(proxy, "/flags/audit"))["records"]
        sample = (await admin_json(proxy, "/shadow"))["recent_mismatches"][0]

        url = f"http://127.0.0.1:{proxy.admin_port}/status"
        dom = await run_chromium(chromium_args(tmp_path / "chromium", "--dump-dom", url))
        shot = tmp_path / "status-page.png"
        await run_chromium(
            chromium_args(
                tmp_path / "chromium",
                f"--screenshot={shot}",
                "--window-size=1400,1500",
                url,
            )
        )

    # The machine-readable record keeps its structure, in the file's unit (percent).
    assert [r["outcome"] for r in audit] == ["guard_tripped", "applied", "applied"]
    assert audit[1]["changes"][0]["fields"]["rollout"] == {"from": {}, "to": {"unified": 12.5}}
    assert audit[2]["startup"] is True and audit[2]["new_hash"] == started

    page = parse(dom)
    assert page.find("title").text == "strangler status"
    assert page.by_id("flags-hash").text == status["hash"]
    assert page.by_id("flags-error").text == "none"

    rows = table_rows(page.by_id("connections"), lambda r: r.attrs["data-route"])
    assert counts(rows["main"]) == {"legacy": "1", "shadow": "1", "live": "0", "unified": "1"}
    # Held on legacy by the guard, the unified and shadow users have drifted.
    assert status["drift"]["main"] == 2
    assert rows["main"].find("td", class_="drift").text == "2"
    assert rows["factory"].find("td", class_="total").text == "0"

    flag = page.by_id("flags").find("tr", data_flag="unified_router")
    assert (
        flag.find("td", class_="targets").text == "by target: 2 users on unified, 1 user on shadow"
    )
    assert flag.find("td", class_="shares").text == (
        "by percentage rollout: 12.5% unified, 87.5% legacy"
    )
    assert flag.find("td", class_="guard").text == (
        "tripped: held on legacy; "
        "back to legacy on mismatches over 50% of at least 1 sample in 300 s"
    )

    reloads = page.by_id("audit").find("tbody").find_all("tr")
    assert [row.find("td", class_="event").text for row in reloads] == [
        "guard tripped on unified_router",
        f"applied flags {status['hash']}, replacing {started}",
        f"started with flags {started}",
    ]
    held = (
        "mismatch ratio 100% over 1 comparison (limit 50%); "
        "new connections go to legacy until the flag file changes"
    )
    assert [li.text for li in reloads[0].find_all("li")] == [held]
    assert [li.text for li in reloads[1].find_all("li")] == [
        "unified_router: targets: 1 user added to unified",
        "unified_router: rollout unified 0% → 12.5%",
    ]

    mismatch = page.by_id("mismatches").find("tr", data_route="main")
    assert mismatch.find("td", class_="mode").text == "shadow"
    assert mismatch.find("td", class_="turn").text == str(sample["turn"])
    assert mismatch.find("td", class_="request").text == "start_agent"
    assert "tool_set" in mismatch.find("td", class_="categories").text

    # The shadow user's turn, served by legacy, got the whole golden path; nobody's
    # turn ended on unified.
    assert page.by_id("objective").text == "99.5%"
    reliability = table_rows(page.by_id("reliability"), lambda r: r.attrs["data-route"])
    # Every configured route has a row, idle ones too.
    assert [td.text for td in reliability["factory"].find_all("td")] == ["no turns ended"] * 2
    cells = {td.attrs["data-backend"]: td for td in reliability["main"].find_all("td")}
    assert (cells["legacy"].text, cells["legacy"].attrs["class"]) == (
        "100% of 1 turn",
        "reliability ok",
    )
    assert cells["unified"].text == "no turns ended"
    assert status["reliability"] == {"main": {"legacy": {"turns": 1, "completed": 1, "ratio": 1.0}}}

    guards = table_rows(page.by_id("guards"), lambda r: r.attrs["data-flag"])
    assert list(guards) == list(status["guards"]) == ["unified_router"]
    guard = guards["unified_router"]
    assert guard.find("td", class_="state").text == "tripped"
    trip_at = status["guards"]["unified_router"]["trip"]["at"]
    (sentence,) = [li.text for li in guard.find_all("li")]
    assert sentence.startswith("tripped at ")
    assert sentence.endswith(f"{time.strftime('%H:%M:%S', time.gmtime(trip_at))} UTC: {held}")

    # Everything a person reads is sentences: no structure, no null, no basis points.
    text = visible_text(page.find("body"))
    for structure in ("{", "}", "[", "]", "null", "None", "true", "false", '"'):
        assert structure not in text, structure
    assert not re.search(r"(?<![\w:.])(1250|8750)(?![\w:])", text)
    for secret in (UNIFIED_USER, LEGACY_USER, SHADOW_USER, *tokens):
        assert secret not in dom

    assert shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert shot.stat().st_size > 10_000  # a rendered page, not an empty image
    # Kept for people to look at; replaced atomically, as other runs may be reading it.
    ARTIFACTS.mkdir(exist_ok=True)
    staged = ARTIFACTS / f".status-page.{os.getpid()}.png"
    shutil.copyfile(shot, staged)
    os.replace(staged, ARTIFACTS / "status-page.png")


async def test_admin_root_redirects_to_the_status_page(stack: Stack) -> None:
    await stack.backends()
    proxy = await stack.proxy(FLAGS)
    async with (
        aiohttp.ClientSession() as s,
        s.get(f"http://127.0.0.1:{proxy.admin_port}/", allow_redirects=False) as r,
    ):
        assert r.status == 302
        assert r.headers["Location"] == "/status"
    async with (
        aiohttp.ClientSession() as s,
        s.get(f"http://127.0.0.1:{proxy.admin_port}/status") as r,
    ):
        assert r.status == 200
        assert r.content_type == "text/html"
        assert parse(await r.text()).by_id("no-mismatches").text == "no shadow mismatches recorded"


async def test_status_page_needs_the_admin_token_when_one_is_set(
    stack: Stack, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("STRANGLER_TEST_ADMIN_TOKEN", "admin-token-for-the-status-test")
    await stack.backends()
    proxy = await stack.proxy(FLAGS, extra="admin_auth: {token_env: STRANGLER_TEST_ADMIN_TOKEN}")
    base = f"http://127.0.0.1:{proxy.admin_port}"
    async with aiohttp.ClientSession() as s:
        async with s.get(f"{base}/status") as r:
            assert r.status == 401
        headers = {"Authorization": "Bearer admin-token-for-the-status-test"}
        async with s.get(f"{base}/status", headers=headers) as r:
            assert r.status == 200
            assert "strangler status" in await r.text()
