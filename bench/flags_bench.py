"""Micro-benchmarks of the flags (target 5): evaluation per connection, and reloading a
flag file with 100,000 user targets while the event loop keeps serving.

Both run against a real proxy started in this process (`proxy.server.start`) on the
loop the CLI uses (uvloop on Linux), so they include what the proxy does around the
pure code: `Proxy.decide` counts every decision, and a reload goes through the flag
watcher (read and parse in a worker thread) and `Proxy.on_reload` (audit, shares,
drift) on the loop. A sampler task sleeping 1 ms measures how late the loop wakes
while that happens: the worst lateness is the longest the loop was blocked.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import statistics
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
SECRET = "bench-secret-for-the-flags-bench-0123456789abcdef"
MODES = ("unified", "live", "shadow", "legacy")


def flag_file(targets: int, shift: int) -> str:
    """One flag with `targets` users spread over the four modes; `shift` moves them."""
    lists: dict[str, list[str]] = {m: [] for m in MODES}
    for i in range(targets):
        lists[MODES[(i + shift) % 4]].append(f"user-{i:06d}")
    body = "\n".join(f"      {m}: [{', '.join(users)}]" for m, users in lists.items() if users)
    return f"""version: 1
flags:
  unified_router:
    routes: [main, factory]
    default: legacy
    anonymous: legacy
    rules:
      - {{name: staff, when: [{{claim: email, ends_with: "@example.com"}}], mode: shadow}}
      - {{name: beta, when: [{{claim: plan, one_of: [beta, canary]}}], mode: live, rollout: 50}}
    rollout: {{unified: 5, live: 5, shadow: 10}}
    targets:
{body}
"""


def config_text(port_a: int, port_b: int) -> str:
    return f"""listen: 127.0.0.1:0
admin_listen: 127.0.0.1:0
backends:
  legacy: {{url: "ws://127.0.0.1:{port_a}"}}
  unified: {{url: "ws://127.0.0.1:{port_b}/v1/ws"}}
routes:
  - {{name: main, path: /ws, dialect: main, auth: accept_then_frame}}
  - {{name: factory, path: /ws/factory, dialect: factory, auth: refuse_handshake}}
flags: {{file: flags.yaml, poll_interval: 3600}}
jwt: {{secret_env: STRANGLER_BENCH_SECRET}}
"""


class LagSampler:
    """Sleeps 1 ms in a loop and keeps the worst lateness of its wake-ups."""

    def __init__(self) -> None:
        self.worst = 0.0
        self.samples = 0
        self._task: asyncio.Task[None] | None = None

    async def _run(self) -> None:
        while True:
            t = time.perf_counter()
            await asyncio.sleep(0.001)
            self.worst = max(self.worst, time.perf_counter() - t - 0.001)
            self.samples += 1

    def start(self) -> None:
        self.worst, self.samples = 0.0, 0
        self._task = asyncio.create_task(self._run())

    async def stop(self) -> float:
        assert self._task is not None
        self._task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self._task
        return self.worst


async def bench(targets: int, rounds: int, calls: int) -> dict[str, Any]:
    from strangler.flags.evaluate import evaluate
    from strangler.flags.load import parse_flags
    from strangler.flags.watch import ReloadResult
    from strangler.proxy.config import load_config
    from strangler.proxy.edge.identity import Identity
    from strangler.proxy.runtime.server import start

    os.environ["STRANGLER_BENCH_SECRET"] = SECRET
    out: dict[str, Any] = {"targets": targets, "rounds": rounds, "calls": calls}
    with tempfile.TemporaryDirectory(prefix="strangler-flags-bench-") as tmp:
        d = Path(tmp)
        flags_path = d / "flags.yaml"
        flags_path.write_text(flag_file(targets, 0))
        out["file_bytes"] = flags_path.stat().st_size
        (d / "strangler.yaml").write_text(config_text(9, 9))  # backends never dialled
        config = load_config(d / "strangler.yaml")

        t0 = time.perf_counter()
        running = await start(config)
        out["startup_load_s"] = time.perf_counter() - t0
        proxy = running.proxy
        try:
            route = proxy.routes.match("/ws")
            assert route is not None
            flagset = proxy.flags.current
            # Users outside the targets: the rollout path, which hashes the user id.
            users = [f"visitor-{i}" for i in range(calls)]
            targeted = [f"user-{i:06d}" for i in range(min(calls, targets))]
            claims: dict[str, Any] = {"email": "someone@elsewhere.org", "plan": "free"}
            identities = [Identity(u, claims) for u in users]

            def per_call(fn: Any, items: Sequence[Any]) -> float:
                t = time.perf_counter()
                for item in items:
                    fn(item)
                return (time.perf_counter() - t) / len(items) * 1e6

            cases: dict[str, Callable[[], float]] = {
                "evaluate_rollout_us": lambda: per_call(
                    lambda u: evaluate(flagset, "main", u, claims), users
                ),
                "evaluate_target_us": lambda: per_call(
                    lambda u: evaluate(flagset, "main", u, claims), targeted
                ),
                "evaluate_anonymous_us": lambda: per_call(
                    lambda u: evaluate(flagset, "main", None, None), users
                ),
                "decide_us": lambda: per_call(lambda i: proxy.decide(route, i), identities),
            }
            for name, case in cases.items():
                out[name] = statistics.median(case() for _ in range(rounds))

            # Idle loop first: the sampler's own noise floor on this machine.
            sampler = LagSampler()
            sampler.start()
            await asyncio.sleep(0.5)
            out["idle_loop_lag_ms"] = await sampler.stop() * 1e3

            reloads: list[float] = []
            lags: list[float] = []
            for n in range(1, rounds + 1):
                flags_path.write_text(flag_file(targets, n))
                sampler.start()
                await asyncio.sleep(0.05)
                t = time.perf_counter()
                result = await proxy.flags.reload()
                reloads.append(time.perf_counter() - t)
                await asyncio.sleep(0.05)
                lags.append(await sampler.stop())
                if result.outcome != "applied":
                    raise RuntimeError(f"reload {n} was {result.outcome}: {result.error}")
            out["reload_s"] = reloads
            out["reload_max_loop_lag_s"] = lags
            t = time.perf_counter()
            fresh = parse_flags(flags_path.read_bytes(), str(flags_path), config.route_names)
            out["parse_only_s"] = time.perf_counter() - t
            # The part of a reload that runs on the loop itself, against a different set.
            flags_path.write_text(flag_file(targets, rounds + 1))
            other = parse_flags(flags_path.read_bytes(), str(flags_path), config.route_names)
            t = time.perf_counter()
            proxy.on_reload(ReloadResult("applied", other, None))
            out["on_reload_s"] = time.perf_counter() - t
            proxy.on_reload(ReloadResult("applied", fresh, None))
        finally:
            await running.stop()
    return out


def report(r: dict[str, Any]) -> str:
    reload_ms = statistics.median(r["reload_s"]) * 1e3
    lag_ms = max(r["reload_max_loop_lag_s"]) * 1e3

    def verdict(ok: bool) -> str:
        return "met" if ok else "MISSED"

    decide = r["decide_us"]
    return "\n".join(
        [
            "| measurement | value | target |",
            "|---|---:|---|",
            f"| evaluate(), rollout user (hash) | {r['evaluate_rollout_us']:.2f} µs | |",
            f"| evaluate(), targeted user | {r['evaluate_target_us']:.2f} µs | |",
            f"| evaluate(), anonymous | {r['evaluate_anonymous_us']:.2f} µs | |",
            f"| Proxy.decide() per connection (evaluate + guard + counter) | {decide:.2f} µs "
            f"| ≤ 2 µs: {verdict(decide <= 2)} |",
            f"| flag file: {r['targets']:,} targets, {r['file_bytes'] / 1e6:.1f} MB | | |",
            f"| start-up load (synchronous, before serving) | {r['startup_load_s'] * 1e3:.0f} ms "
            "| |",
            f"| parse + validate alone | {r['parse_only_s'] * 1e3:.0f} ms | |",
            f"| Proxy.on_reload alone (runs on the loop) | {r['on_reload_s'] * 1e3:.0f} ms | |",
            f"| reload (read, parse, apply, on_reload), median of {len(r['reload_s'])} "
            f"| {reload_ms:.0f} ms | ≤ 300 ms: {verdict(reload_ms <= 300)} |",
            f"| worst event-loop block during the reloads | {lag_ms:.1f} ms "
            f"| ≤ 20 ms: {verdict(lag_ms <= 20)} |",
            f"| worst event-loop lateness, idle (sampler noise floor) "
            f"| {r['idle_loop_lag_ms']:.1f} ms | |",
        ]
    )


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--targets", type=int, default=100_000)
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--calls", type=int, default=100_000, help="evaluations per measurement")
    p.add_argument("--source", type=Path, default=ROOT, help="the proxy's source tree")
    p.add_argument("--markdown", type=Path, help="write the table here")
    a = p.parse_args(argv)
    sys.path.insert(0, str(a.source))
    runner: Any = asyncio.run
    with contextlib.suppress(ImportError):
        import uvloop

        runner = uvloop.run
    result = runner(bench(a.targets, a.rounds, a.calls))
    md = report(result)
    print(md)
    if a.markdown:
        a.markdown.write_text(md + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
