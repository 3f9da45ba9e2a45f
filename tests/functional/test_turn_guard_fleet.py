"""The unified turn guard, fleet-wide: two proxies and a real Prometheus scraping them.
Unified turns that miss the golden path go through one proxy only; the other, which
served none, holds the flag on legacy too, on the fleet's evidence
(`strangler_guard_observations_total{guard="unified_turn_failure_ratio"}` summed over
both, proxy/release/fleet.py)."""

from __future__ import annotations

import aiohttp
import pytest

from strangler.proxy.runtime.server import Running
from strangler.reference.settings import BackendSettings
from tests.dashboards.conftest import PrometheusUnderTest, prometheus  # noqa: F401 - fixture
from tests.dashboards.promql import PrometheusAPI
from tests.functional.conftest import SECRET, Stack, scrape, wait_for
from tests.functional.test_shadow import one_turn

pytestmark = pytest.mark.timeout(90)

FLAGS = """
flags:
  unified_router:
    routes: [main]
    targets: {unified: [u1, u2, u3, u4]}
    guard: {max_unified_turn_failure_ratio: 0.5, min_samples: 4, window: 120, source: fleet}
"""
GUARD = "unified_turn_failure_ratio"


def fleet(url: str) -> str:
    return f"fleet: {{prometheus_url: '{url}', poll_interval: 1, timeout: 2}}\n"


async def status(proxy: Running) -> dict[str, object]:
    url = f"http://127.0.0.1:{proxy.admin_port}/flags/status"
    async with aiohttp.ClientSession() as s, s.get(url) as r:
        guard: dict[str, object] = (await r.json())["guards"]["unified_router"]
        return guard


async def test_unified_turns_failing_through_one_proxy_hold_the_flag_on_every_proxy(
    stack: Stack,
    prometheus: PrometheusUnderTest,  # noqa: F811 - the fixture imported above
) -> None:
    await stack.backends(
        unified=BackendSettings(jwt_secret=SECRET, omit_events=("tool_completed",))
    )
    a = await stack.proxy(FLAGS, extra=fleet(prometheus.url), name="a")
    b = await stack.proxy(FLAGS, extra=fleet(prometheus.url), name="b")
    prometheus.scrape([a.admin_port, b.admin_port])

    async def fleet_up() -> bool:
        # Until the fleet answers, a `fleet` guard judges locally: wait for it.
        ups = [(await scrape(p.admin_port))[("strangler_fleet_guard_up", ())] for p in (a, b)]
        return ups == [1.0, 1.0]

    async with aiohttp.ClientSession() as session:
        api = PrometheusAPI(session, prometheus.url)

        async def both_scraped() -> bool:
            _, up = await api.query('count(up{job="strangler"} == 1)')
            return bool(up) and float(up[0]["value"][1]) == 2

        await wait_for(both_scraped, timeout=15)
        await wait_for(fleet_up, timeout=15)

        for user in ("u1", "u2", "u3", "u4"):
            frames = await one_turn(a, user)
            assert "tool_completed" not in {f.get("type") for f in frames}

        async def both_tripped() -> bool:
            return all([(await status(p))["tripped"] for p in (a, b)])

        await wait_for(both_tripped, timeout=20)

    for p in (a, b):
        trip = (await status(p))["trip"]
        assert isinstance(trip, dict)
        assert (trip["guard"], trip["source"]) == (GUARD, "fleet")
        assert trip["samples"] >= 4
    # b served no turn: it holds the flag on the evidence a's turns gave the fleet.
    samples = await scrape(b.admin_port)
    observed = {
        dict(labels)["result"]: v
        for (name, labels), v in samples.items()
        if name == "strangler_guard_observations_total" and ("guard", GUARD) in labels
    }
    assert observed == {"ok": 0.0, "bad": 0.0}
    assert (await scrape(a.admin_port))[
        (
            "strangler_guard_observations_total",
            (("flag", "unified_router"), ("guard", GUARD), ("result", "bad")),
        )
    ] == 4.0
