"""Paced load: the primary's latency in shadow mode beside legacy mode's, per offered load.

The harness's loaded run is a closed loop: it saturates the proxy in every mode, and a
slow proxy slows the load with it, so queueing hides. Here the load generator runs an
open loop instead (`loadgen rtt --rate`): each connection sends on its own schedule,
whatever the replies do, and latency counts from the scheduled send time. One proxy
serves both modes (one user pinned to each), on one pinned core as in the harness.

1. The knee: a short closed-loop run in legacy mode (the tunnel) gives the proxy's CPU
   per message when saturated, so the rate one whole core carries. Its rate alone
   would do on a quiet machine; on a shared one the proxy gets what its neighbours
   leave of the core, and the rate falls with it while the CPU per message does not.
2. The ladder: paced runs at fractions of the knee, legacy and shadow interleaved at
   every step (their order alternating), with the proxy left to calm down (shedding
   level back to 0, CPU idle) before each run.
3. Per step: offered and achieved rate, primary p50/p99 in each mode and their ratios,
   the proxy's CPU per message, and how much of the shadow work offered was shed.

The shed share is read from the proxy's /metrics before and after each shadow run: the
turns offered to the shadow are the messages sent (each echoed user_message opens a
turn), the turns compared are the verdicts other than `shed`, so the share is what was
never compared: secondaries refused at the handshake, turns skipped, and the rest of
the connection after a secondary is closed. The echo never ends a turn, so every
compared turn settles when its connection closes, after `compare.timeout_floor`; the
driver sets that to 1 s (it changes nothing else the primary sees) to keep the ladder
short.

Writes a markdown table and an SVG of the curve next to it.
"""

from __future__ import annotations

import argparse
import contextlib
import functools
import json
import math
import os
import resource
import shutil
import statistics
import sys
import tempfile
import time
import urllib.request
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, cast

import harness
from harness import Env, Service, Target, log

# Targets of the issue: shadow's primary beside legacy's at the same paced load.
P50_LIMIT, P99_LIMIT = 1.2, 1.5
# Geometric: shadow's own knee (no shedding) is a fraction of legacy's, and both matter.
DEFAULT_STEPS = "0.03,0.05,0.08,0.12,0.18,0.27,0.4,0.6,0.85,1.1"
# A step legacy sustains: it delivers this share of the offered rate and loses nothing.
SUSTAINED = 0.97
SETTLE_FLOOR = ", compare: {timeout_floor: 1.0}"
# Proxy CPU share of a core under which it counts as calm between runs.
CALM_CPU = 0.05
# Other processes' share of the proxy's core: under QUIET a step starts without waiting.
# A run in which the proxy waited for its core more than WAITED of the time (or, where
# that is not known, other processes took more than CONTENDED of it) did not get the
# machine its pair got: the step's comparison is flagged and left out of the verdict.
QUIET, CONTENDED, WAITED = 0.15, 0.25, 0.05


@dataclass(frozen=True)
class Plan:
    conns: int
    size: int
    duration: float
    warmup: float
    drain: float
    concurrency: int
    open_rate: float
    quiet_wait: float
    turns: bool = False  # turn-shaped traffic: each message answered with a turn's five events


class CoreClock:
    """Busy seconds of one core (all processes), read like a Service's CPU: what the
    proxy's neighbours took of its core is this minus the proxy's own."""

    def __init__(self, core: int) -> None:
        self.prefix = f"cpu{core} "

    def cpu(self) -> float:
        with open("/proc/stat") as f:
            for line in f:
                if line.startswith(self.prefix):
                    v = [int(x) for x in line.split()[1:]]
                    # user nice system (idle iowait) irq softirq steal
                    return (v[0] + v[1] + v[2] + v[5] + v[6] + v[7]) / harness.CLK_TCK
        return 0.0


class WaitClock:
    """Seconds a process's threads spent runnable but waiting for a core
    (/proc/<pid>/task/*/schedstat), read like a Service's CPU. Unlike the neighbours'
    share, it counts only the work that delayed the proxy, whatever its niceness."""

    def __init__(self, svc: Service) -> None:
        self.svc = svc

    def cpu(self) -> float:
        total = 0
        base = f"/proc/{self.svc.proc.pid}/task"
        with contextlib.suppress(OSError):
            for tid in os.listdir(base):
                with contextlib.suppress(OSError), open(f"{base}/{tid}/schedstat") as f:
                    total += int(f.read().split()[1])
        return total / 1e9


def metrics(admin: int) -> dict[str, float]:
    """The shedding-related series of the proxy's /metrics, summed over their labels
    except the ones the shed share needs apart (shed reason, comparison outcome)."""
    out: dict[str, float] = {}
    with urllib.request.urlopen(f"http://127.0.0.1:{admin}/metrics", timeout=10) as r:
        for line in r.read().decode().splitlines():
            if line.startswith("#") or not line.strip():
                continue
            series, value = line.rsplit(" ", 1)
            name = series.split("{", 1)[0]
            if name == "strangler_shadow_shed_total":
                key = f"shed:{label(series, 'reason')}"
            elif name == "strangler_comparisons_total":
                key = f"verdict:{label(series, 'outcome')}"
            elif name in (
                "strangler_secondary_dropped_frames_total",
                "strangler_secondary_failures_total",
                "strangler_shadow_shed_level",
                "strangler_secondary_connections_open",
            ):
                key = name
            else:
                continue
            out[key] = out.get(key, 0.0) + float(value)
    return out


def label(series: str, name: str) -> str:
    marker = f'{name}="'
    start = series.find(marker)
    if start < 0:
        return "?"
    start += len(marker)
    return series[start : series.index('"', start)]


def quiet(proxy: Service, core: CoreClock, timeout: float) -> float:
    """Wait, up to `timeout`, for the proxy's core to be free of other work (the
    machine is shared); the neighbours' share of it in the last second."""
    deadline = time.monotonic() + timeout
    while True:
        busy0, own0 = core.cpu(), proxy.cpu()
        time.sleep(1.0)
        share = max(0.0, (core.cpu() - busy0) - (proxy.cpu() - own0))
        if share < QUIET or time.monotonic() >= deadline:
            return share


def calm(proxy: Service, timeout: float = 15.0) -> float:
    """Wait until the proxy is idle and sheds nothing (its levels step back one per
    second of calm samples); the seconds waited."""
    began = time.monotonic()
    deadline = began + timeout
    while time.monotonic() < deadline:
        cpu0 = proxy.cpu()
        time.sleep(0.5)
        if proxy.cpu() - cpu0 > CALM_CPU * 0.5:
            continue
        if metrics(proxy.admin).get("strangler_shadow_shed_level", 0.0) == 0.0:
            break
    return time.monotonic() - began


def paced_run(
    env: Env, target: Target, watched: dict[str, Service], plan: Plan, rate: float
) -> dict[str, Any]:
    args = [
        "--conns",
        str(plan.conns),
        "--rate",
        f"{rate:.1f}",
        "--duration",
        str(plan.duration),
        "--warmup",
        str(plan.warmup),
        "--drain",
        str(plan.drain),
        "--size",
        str(plan.size),
        "--concurrency",
        str(plan.concurrency),
        "--open-rate",
        str(plan.open_rate),
        "--turns",
        str(int(plan.turns)),
    ]
    budget = plan.warmup + plan.duration + plan.drain + 90
    r = harness.run_loadgen(env, "rtt", target, watched, args, budget)
    secs = r["seconds"]
    replies = max(1.0, r["msgs_per_s"] * secs)
    r["proxy_cpu_share"] = r["cpu"]["thing"] / secs
    r["proxy_us_per_msg"] = r["cpu"]["thing"] * 1e6 / replies
    r["loadgen_cpu_share"] = r["loadgen_cpu_seconds"] / secs
    if "core" in r["cpu"]:
        # What else ran on the proxy's core: a proxy that gets half of it saturates at
        # half the rate, in either mode, and its CPU share never reaches shedding's.
        r["neighbours_share"] = max(0.0, r["cpu"]["core"] - r["cpu"]["thing"]) / secs
    if "wait" in r["cpu"]:
        r["proxy_wait_share"] = r["cpu"]["wait"] / secs
    return r


def shadow_run(
    env: Env, target: Target, watched: dict[str, Service], plan: Plan, rate: float
) -> dict[str, Any]:
    """A paced run in shadow mode, with what it shed (from /metrics around it)."""
    proxy = watched["thing"]
    before = metrics(proxy.admin)
    r = paced_run(env, target, watched, plan, rate)
    # Compared turns settle when their connection closes, after compare.timeout_floor.
    time.sleep(1.5)
    r["calm_s"] = calm(proxy)
    after = metrics(proxy.admin)
    d = {k: after.get(k, 0.0) - before.get(k, 0.0) for k in after}
    offered = max(1, r["sent_total"])
    verdicts = {k.split(":", 1)[1]: v for k, v in d.items() if k.startswith("verdict:")}
    compared = sum(v for k, v in verdicts.items() if k != "shed")
    r["shed"] = {
        "offered_turns": offered,
        "compared_turns": compared,
        "verdicts": verdicts,
        "share": max(0.0, 1.0 - compared / offered),
        "secondaries_refused": d.get("shed:secondary_refused", 0.0),
        "secondaries_closed": d.get("shed:secondary_closed", 0.0),
        "turns_skipped": d.get("shed:turn_skipped", 0.0),
        "frames_dropped": d.get("strangler_secondary_dropped_frames_total", 0.0),
        "secondary_failures": d.get("strangler_secondary_failures_total", 0.0),
    }
    return r


def knee(env: Env, target: Target, watched: dict[str, Service], plan: Plan) -> dict[str, Any]:
    """The rate the proxy's core carries in legacy mode: a short closed loop."""
    args = ["--conns", str(plan.conns), "--duration", "3", "--warmup", "0.5"]
    args += ["--size", str(plan.size), "--turns", str(int(plan.turns))]
    r = harness.run_loadgen(env, "rtt", target, watched, args, 90)
    r["proxy_cpu_share"] = r["cpu"]["thing"] / r["seconds"]
    r["knee_rate"] = r["msgs_per_s"] / min(1.0, max(0.05, r["proxy_cpu_share"]))
    return r


def ladder(
    env: Env,
    plan: Plan,
    fractions: list[float],
    knee_rate: float | None,
    n: int,
    per_frame: bool,
) -> dict[str, Any]:
    echo_a, port_a = harness.start_echo(env, f"echo-a-{n}", turns=plan.turns)
    echo_b, port_b = harness.start_echo(env, f"echo-b-{n}", turns=plan.turns)
    proxy = harness.start_proxy(env, f"proxy-{n}", port_a, port_b, "")
    # Optionally a second proxy with the per-frame relay only: legacy mode over the
    # relay shadow's primary rides, without a secondary, to tell the two costs apart.
    frames = (
        harness.start_proxy(env, f"proxy-frames-{n}", port_a, port_b, ', tunnel: "off"')
        if per_frame
        else None
    )
    watched = {"echo_a": echo_a, "echo_b": echo_b, "thing": proxy}
    core = CoreClock(1)  # the proxy's core (harness.start_proxy)
    if env.pin:
        watched["core"] = cast(Service, core)
    targets = harness.scenario_targets(proxy.port, "")
    legacy, shadow = targets["legacy"], targets["shadow"]
    watched["wait"] = cast(Service, WaitClock(proxy))
    runs: dict[str, tuple[Target, dict[str, Service]]] = {
        "legacy": (legacy, watched),
        "shadow": (shadow, watched),
    }
    if frames is not None:
        runs["frames"] = (
            harness.scenario_targets(frames.port, "")["legacy"],
            {**watched, "thing": frames, "wait": cast(Service, WaitClock(frames))},
        )
    out: dict[str, Any] = {"steps": []}
    try:
        if knee_rate is None:
            k = knee(env, legacy, watched, plan)
            out["knee"] = k
            knee_rate = float(k["knee_rate"])
            log(
                f"ladder {n}: legacy closed loop {k['msgs_per_s']:,.0f} msg/s at proxy CPU "
                f"{k['proxy_cpu_share']:.0%}: knee {knee_rate:,.0f} msg/s per core"
            )
        out["knee_rate"] = knee_rate
        for i, fraction in enumerate(fractions):
            rate = fraction * knee_rate
            step: dict[str, Any] = {"fraction": fraction, "rate": rate}
            if env.pin:
                step["neighbours_before"] = quiet(proxy, core, plan.quiet_wait)
            modes = list(runs)
            order = modes[i % len(modes) :] + modes[: i % len(modes)]  # rotates per step
            for mode in order:
                target, seen = runs[mode]
                calm(seen["thing"])
                if mode == "shadow":
                    step[mode] = shadow_run(env, target, seen, plan, rate)
                else:
                    step[mode] = paced_run(env, target, seen, plan, rate)
                for px in (proxy, frames):
                    if px is not None and px.proc.poll() is not None:
                        raise RuntimeError(f"proxy died: {px.log_path.read_text()[-800:]}")
            step["proxy_rss_kib"] = proxy.rss()
            lg, sh = step["legacy"], step["shadow"]
            log(
                f"ladder {n} step {i + 1}/{len(fractions)} {rate:,.0f} msg/s: "
                f"legacy {lg['msgs_per_s']:,.0f}/s p50/p99 {lg['p50_us']}/{lg['p99_us']} µs, "
                f"shadow {sh['msgs_per_s']:,.0f}/s p50/p99 {sh['p50_us']}/{sh['p99_us']} µs, "
                f"shed {sh['shed']['share']:.0%}; neighbours "
                f"{lg.get('neighbours_share', 0):.0%}/{sh.get('neighbours_share', 0):.0%}"
                + (
                    f"; per-frame legacy p50/p99 {step['frames']['p50_us']}/"
                    f"{step['frames']['p99_us']} µs"
                    if "frames" in step
                    else ""
                )
            )
            out["steps"].append(step)
    finally:
        env.stop(proxy)
        if frames is not None:
            env.stop(frames)
        env.stop(echo_a)
        env.stop(echo_b)
    return out


# -- the table and the curve ----------------------------------------------------------


def ratio(a: float, b: float) -> float | None:
    return a / b if b > 0 else None


def contended(run: dict[str, Any]) -> bool:
    if "proxy_wait_share" in run:
        return bool(run["proxy_wait_share"] > WAITED)
    return bool(run.get("neighbours_share", 0.0) > CONTENDED)


def sustained(run: dict[str, Any]) -> bool:
    return bool(run["msgs_per_s"] >= SUSTAINED * run["offered_per_s"] and run["lost"] == 0)


@dataclass
class Row:
    """One step over the ladders: medians, and the ranges of the ratios."""

    rate: float
    values: dict[str, list[float | None]]
    legacy_sustained: int
    ladders: int
    contended: int
    """Ladders in which this step's runs did not get the same machine."""

    def med(self, key: str) -> float | None:
        v = [x for x in self.values.get(key, []) if x is not None]
        return statistics.median(v) if v else None

    def span(self, key: str) -> tuple[float, float] | None:
        v = [x for x in self.values.get(key, []) if x is not None]
        return (min(v), max(v)) if len(v) > 1 else None


def rows(ladders: list[dict[str, Any]]) -> list[Row]:
    out: list[Row] = []
    for i in range(min(len(lad["steps"]) for lad in ladders)):
        values: dict[str, list[float | None]] = {}
        ok = noisy_ladders = 0
        add = functools.partial(_add, values)
        for lad in ladders:
            s = lad["steps"][i]
            lg, sh = s["legacy"], s["shadow"]
            ok += sustained(lg)
            noisy = any(contended(r) for r in (lg, sh, s.get("frames", {})))
            noisy_ladders += noisy
            add("offered", lg["offered_per_s"])
            add("legacy_rate", lg["msgs_per_s"])
            add("shadow_rate", sh["msgs_per_s"])
            for mode, r in (("legacy", lg), ("shadow", sh)):
                for q in ("p50", "p99"):
                    add(f"{mode}_{q}", r[f"{q}_us"] / 1000)
                add(f"{mode}_cpu_us", r["proxy_us_per_msg"])
                add(f"{mode}_cpu_share", r["proxy_cpu_share"])
                add(f"{mode}_lost", r["lost"])
                add(f"{mode}_late99", r["send_late_p99_us"] / 1000)
                add(f"{mode}_neighbours", r.get("neighbours_share"))
                add(f"{mode}_waited", r.get("proxy_wait_share"))
            add("r50", ratio(sh["p50_us"], lg["p50_us"]))
            add("r99", ratio(sh["p99_us"], lg["p99_us"]))
            # The same ratios from the runs that shared the machine alike, for the verdict.
            add("r50_clean", None if noisy else ratio(sh["p50_us"], lg["p50_us"]))
            add("r99_clean", None if noisy else ratio(sh["p99_us"], lg["p99_us"]))
            fr = s.get("frames")
            if fr is not None:
                add("frames_p50", fr["p50_us"] / 1000)
                add("frames_p99", fr["p99_us"] / 1000)
                add("frames_rate", fr["msgs_per_s"])
                add("frames_cpu_us", fr["proxy_us_per_msg"])
            add("rcpu", ratio(sh["proxy_us_per_msg"], lg["proxy_us_per_msg"]))
            shed = sh["shed"]
            add("shed", shed["share"])
            add("refused", shed["secondaries_refused"])
            add("closed", shed["secondaries_closed"])
            add("skipped", shed["turns_skipped"])
            add("dropped", shed["frames_dropped"])
        out.append(Row(ladders[0]["steps"][i]["rate"], values, ok, len(ladders), noisy_ladders))
    return out


def _add(values: dict[str, list[float | None]], key: str, v: float | None) -> None:
    values.setdefault(key, []).append(v)


def f(v: float | None, spec: str = ".2f") -> str:
    return "n/a" if v is None else format(v, spec)


def with_span(row: Row, key: str, spec: str = ".2f") -> str:
    text = f(row.med(key), spec)
    s = row.span(key)
    return text if s is None else f"{text} ({format(s[0], spec)}-{format(s[1], spec)})"


def table(rs: list[Row]) -> str:
    lines = [
        "| offered msg/s | achieved legacy / shadow | legacy p50 / p99 ms | shadow p50 / p99 ms "
        "| **p50 ratio** | **p99 ratio** | proxy CPU µs/msg legacy / shadow (core share) "
        "| **shed share** | secondaries refused / closed, turns skipped "
        "| others on the proxy's core (proxy waited for it) legacy / shadow |",
        "|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in rs:
        mark = "" if r.legacy_sustained == r.ladders else " †"
        mark += " ‡" if r.contended else ""
        lines.append(
            f"| {f(r.med('offered'), ',.0f')}{mark} "
            f"| {f(r.med('legacy_rate'), ',.0f')} / {f(r.med('shadow_rate'), ',.0f')} "
            f"| {f(r.med('legacy_p50'))} / {f(r.med('legacy_p99'))} "
            f"| {f(r.med('shadow_p50'))} / {f(r.med('shadow_p99'))} "
            f"| {with_span(r, 'r50')} | {with_span(r, 'r99')} "
            f"| {f(r.med('legacy_cpu_us'), '.0f')} / {f(r.med('shadow_cpu_us'), '.0f')} "
            f"({f(r.med('legacy_cpu_share'), '.0%')} / {f(r.med('shadow_cpu_share'), '.0%')}) "
            f"| {with_span(r, 'shed', '.0%')} "
            f"| {f(r.med('refused'), '.0f')} / {f(r.med('closed'), '.0f')}, "
            f"{f(r.med('skipped'), ',.0f')} "
            f"| {f(r.med('legacy_neighbours'), '.0%')} ({f(r.med('legacy_waited'), '.0%')}) / "
            f"{f(r.med('shadow_neighbours'), '.0%')} ({f(r.med('shadow_waited'), '.0%')}) |"
        )
    return "\n".join(lines)


def verdict(rs: list[Row]) -> list[str]:
    """The issue's targets, step by step: within bounds where legacy sustains the load."""
    out = []
    for r in rs:
        r50, r99, shed = r.med("r50_clean"), r.med("r99_clean"), r.med("shed")
        where = "legacy sustains it" if r.legacy_sustained == r.ladders else "past legacy's knee"
        head = f"- {f(r.med('offered'), ',.0f')} msg/s ({where})"
        if r50 is None or r99 is None:
            out.append(f"{head}: no run pair free of other work on the core — not judged")
            continue
        ok = r50 <= P50_LIMIT and r99 <= P99_LIMIT
        clean = r.ladders - r.contended
        out.append(
            f"{head}: p50 {r50:.2f}x (≤ {P50_LIMIT}), p99 {r99:.2f}x (≤ {P99_LIMIT}), "
            f"shed {f(shed, '.0%')}, from {clean} of {r.ladders} ladder(s) — "
            + ("met" if ok else "MISSED")
        )
    return out


def frames_table(rs: list[Row]) -> str:
    """Legacy mode over the per-frame relay beside the two, when it was measured."""
    if all(r.med("frames_p50") is None for r in rs):
        return ""
    lines = [
        "| offered msg/s | achieved: legacy tunnel / legacy per-frame / shadow "
        "| p50 ms: tunnel / per-frame / shadow | p99 ms: tunnel / per-frame / shadow "
        "| CPU µs/msg: tunnel / per-frame / shadow |",
        "|---:|---:|---:|---:|---:|",
    ]
    for r in rs:
        lines.append(
            f"| {f(r.med('offered'), ',.0f')} "
            f"| {f(r.med('legacy_rate'), ',.0f')} / {f(r.med('frames_rate'), ',.0f')} / "
            f"{f(r.med('shadow_rate'), ',.0f')} "
            f"| {f(r.med('legacy_p50'))} / {f(r.med('frames_p50'))} / {f(r.med('shadow_p50'))} "
            f"| {f(r.med('legacy_p99'))} / {f(r.med('frames_p99'))} / {f(r.med('shadow_p99'))} "
            f"| {f(r.med('legacy_cpu_us'), '.0f')} / {f(r.med('frames_cpu_us'), '.0f')} / "
            f"{f(r.med('shadow_cpu_us'), '.0f')} |"
        )
    return "\n".join(lines)


class LogAxis:
    """A log scale from `lo` to `hi` onto pixels `p0` (at lo) to `p1` (at hi)."""

    def __init__(self, values: list[float], p0: float, p1: float, lo_min: float = 0.0) -> None:
        vs = [v for v in values if v > 0] or [1.0]
        self.lo = 10.0 ** math.floor(math.log10(min(min(vs), lo_min or min(vs))))
        self.hi = 10.0 ** math.ceil(math.log10(max(vs) * 1.01))
        if self.hi <= self.lo:
            self.hi = self.lo * 10
        self.p0, self.p1 = p0, p1

    def __call__(self, v: float) -> float:
        span = math.log10(self.hi) - math.log10(self.lo)
        at = (math.log10(min(max(v, self.lo), self.hi)) - math.log10(self.lo)) / span
        return self.p0 + (self.p1 - self.p0) * at

    def ticks(self) -> list[float]:
        out, decade = [], self.lo
        steps = (1, 2, 5) if self.hi / self.lo <= 1000 else (1,)
        while decade <= self.hi * 1.001:
            out += [decade * m for m in steps if decade * m <= self.hi * 1.001]
            decade *= 10
        return out


def svg(rs: list[Row], knee_rate: float, title: str) -> str:
    """Two panels over the offered load (log): the primary's p50/p99 in each mode (log
    ms), then the shadow/legacy ratios (log) with the targets, and the shed share on a
    linear right axis."""
    w, h, left, right, top, ph, gap = 760, 640, 70, 80, 40, 230, 70
    pw = w - left - right
    pts = [(o, r) for r in rs if (o := r.med("offered")) is not None]
    x = LogAxis([o for o, _ in pts] + [knee_rate], left, left + pw)
    els: list[str] = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{w}" height="{h}" '
        f'viewBox="0 0 {w} {h}" font-family="sans-serif" font-size="11">',
        '<rect width="100%" height="100%" fill="white"/>',
        f'<text x="{w / 2}" y="18" text-anchor="middle" font-size="13">{esc(title)}</text>',
    ]

    def frame(y0: float, ylabel: str, y: LogAxis, fmt_tick: str) -> None:
        for t in y.ticks():
            yy = y(t)
            els.append(
                f'<line x1="{left}" y1="{yy:.1f}" x2="{left + pw}" y2="{yy:.1f}" stroke="#eee"/>'
            )
            els.append(
                f'<text x="{left - 6}" y="{yy + 4:.1f}" text-anchor="end">'
                f"{format(t, fmt_tick)}</text>"
            )
        for t in x.ticks():
            els.append(
                f'<line x1="{x(t):.1f}" y1="{y0}" x2="{x(t):.1f}" y2="{y0 + ph}" stroke="#eee"/>'
            )
            els.append(
                f'<text x="{x(t):.1f}" y="{y0 + ph + 14}" text-anchor="middle">{t:,.0f}</text>'
            )
        els.append(
            f'<rect x="{left}" y="{y0}" width="{pw}" height="{ph}" fill="none" stroke="#888"/>'
        )
        els.append(
            f'<text x="16" y="{y0 + ph / 2}" transform="rotate(-90 16 {y0 + ph / 2})" '
            f'text-anchor="middle">{esc(ylabel)}</text>'
        )
        kx = x(knee_rate)
        els.append(
            f'<line x1="{kx:.1f}" y1="{y0}" x2="{kx:.1f}" y2="{y0 + ph}" stroke="#555" '
            'stroke-dasharray="2,3"/>'
        )
        els.append(
            f'<text x="{kx - 3:.1f}" y="{y0 + ph - 6}" fill="#555" text-anchor="end">'
            "legacy knee</text>"
        )

    def line(points: list[tuple[float, float]], color: str, dash: str = "") -> None:
        if not points:
            return
        path = " ".join(f"{px:.1f},{py:.1f}" for px, py in points)
        d = f' stroke-dasharray="{dash}"' if dash else ""
        els.append(f'<polyline points="{path}" fill="none" stroke="{color}" stroke-width="2"{d}/>')
        els.extend(
            f'<circle cx="{px:.1f}" cy="{py:.1f}" r="3" fill="{color}"/>' for px, py in points
        )

    def legend(y0: float, items: list[tuple[str, str, str]]) -> None:
        lx = left + 8
        els.append(
            f'<rect x="{lx - 4}" y="{y0 + 3}" width="210" height="{14 * len(items) + 6}" '
            'fill="white" fill-opacity="0.85"/>'
        )
        for i, (name, color, dash) in enumerate(items):
            yy = y0 + 16 + 14 * i
            d = f' stroke-dasharray="{dash}"' if dash else ""
            els.append(
                f'<line x1="{lx}" y1="{yy - 4}" x2="{lx + 22}" y2="{yy - 4}" stroke="{color}" '
                f'stroke-width="2"{d}/>'
            )
            els.append(f'<text x="{lx + 28}" y="{yy}">{esc(name)}</text>')

    def series(key: str, y: LogAxis | None = None, y0: float = 0.0) -> list[tuple[float, float]]:
        out = []
        for o, r in pts:
            v = r.med(key)
            if v is not None:
                out.append((x(o), y(v) if y is not None else y0 + ph - ph * v))
        return out

    # Panel 1: the primary's latencies.
    y1 = top
    lat_keys = ("legacy_p50", "legacy_p99", "shadow_p50", "shadow_p99", "frames_p50", "frames_p99")
    ylat = LogAxis(
        [v for _, r in pts for k in lat_keys if (v := r.med(k)) is not None], y1 + ph, y1
    )
    frame(y1, "primary round trip, ms", ylat, "g")
    lat = [
        ("legacy p50", "legacy_p50", "#1f77b4", ""),
        ("legacy p99", "legacy_p99", "#1f77b4", "5,4"),
        ("shadow p50", "shadow_p50", "#d62728", ""),
        ("shadow p99", "shadow_p99", "#d62728", "5,4"),
    ]
    if any(r.med("frames_p50") is not None for _, r in pts):
        lat += [
            ("legacy per-frame p50", "frames_p50", "#9467bd", ""),
            ("legacy per-frame p99", "frames_p99", "#9467bd", "5,4"),
        ]
    for _, key, color, dash in lat:
        line(series(key, ylat), color, dash)
    legend(y1, [(n, c, d) for n, _, c, d in lat])

    # Panel 2: the ratios and the shed share.
    y2 = top + ph + gap
    yr = LogAxis(
        [v for _, r in pts for k in ("r50", "r99") if (v := r.med(k)) is not None] + [10.0],
        y2 + ph,
        y2,
        lo_min=0.5,
    )
    frame(y2, "shadow / legacy, same load", yr, "g")
    for limit, color in ((P50_LIMIT, "#2ca02c"), (P99_LIMIT, "#ff7f0e")):
        yy = yr(limit)
        els.append(
            f'<line x1="{left}" y1="{yy:.1f}" x2="{left + pw}" y2="{yy:.1f}" stroke="{color}" '
            'stroke-dasharray="1,3"/>'
        )
    for i in range(6):
        yy = y2 + ph - ph * i / 5
        els.append(f'<text x="{left + pw + 6}" y="{yy + 4:.1f}">{i / 5:.0%}</text>')
    els.append(
        f'<text x="{w - 14}" y="{y2 + ph / 2}" transform="rotate(90 {w - 14} {y2 + ph / 2})" '
        'text-anchor="middle">shed share of shadow turns</text>'
    )
    line(series("r50", yr), "#2ca02c")
    line(series("r99", yr), "#ff7f0e", "5,4")
    line(series("shed", None, y2), "#7f7f7f", "2,2")
    legend(
        y2,
        [
            (f"p50 ratio (target ≤ {P50_LIMIT}, dotted)", "#2ca02c", ""),
            (f"p99 ratio (target ≤ {P99_LIMIT}, dotted)", "#ff7f0e", "5,4"),
            ("shed share (right axis)", "#7f7f7f", "2,2"),
        ],
    )
    els.append(
        f'<text x="{left + pw / 2}" y="{y2 + ph + 34}" text-anchor="middle">'
        "offered load, round trips per second (log), paced over the connections</text>"
    )
    els.append("</svg>")
    return "\n".join(els) + "\n"


def esc(text: str) -> str:
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--loadgen", type=Path, default=harness.ROOT / "bench" / "loadgen" / "loadgen")
    p.add_argument("--source", type=Path, default=harness.ROOT, help="the proxy's source tree")
    p.add_argument("--ladders", type=int, default=1, help="whole ladders, fresh processes each")
    p.add_argument("--steps", default=DEFAULT_STEPS, help="offered loads, as fractions of the knee")
    p.add_argument("--knee", type=float, help="msgs/s to take as the knee (skips measuring it)")
    p.add_argument("--conns", type=int, default=100)
    p.add_argument("--size", type=int, default=300, help="bytes of JSON per message")
    p.add_argument("--duration", type=float, default=5.0, help="measured seconds per run")
    p.add_argument("--warmup", type=float, default=2.0, help="paced seconds before measuring")
    p.add_argument("--drain", type=float, default=2.0, help="seconds to await late replies")
    p.add_argument(
        "--concurrency", type=int, default=20, help="handshakes in flight while connecting"
    )
    p.add_argument(
        "--open-rate",
        type=float,
        default=200,
        help="connections opened per second before each run (a burst of shadow "
        "handshakes is a load of its own, and would start each run shedding)",
    )
    p.add_argument(
        "--quiet-wait",
        type=float,
        default=10.0,
        help="seconds to wait, before each step, for other work to leave the proxy's core",
    )
    p.add_argument(
        "--per-frame",
        action="store_true",
        help="also legacy mode over the per-frame relay (a second proxy): the relay "
        "shadow's primary rides, without its secondary",
    )
    p.add_argument(
        "--nice",
        type=int,
        default=0,
        help="niceness of everything the driver starts (negative needs root): on a "
        "shared machine, -10 keeps other work from taking the proxy's core mid-run",
    )
    p.add_argument(
        "--turns",
        action="store_true",
        help="turn-shaped traffic: the echoes answer each message with a turn's five events "
        "and a round trip ends with agent_completed",
    )
    p.add_argument("--no-pin", action="store_true", help="do not use taskset")
    p.add_argument("--markdown", type=Path, help="write the table here (and the SVG beside it)")
    p.add_argument("--svg", type=Path, help="the curve (default: the markdown's name, .svg)")
    p.add_argument("--json", type=Path, help="write every run's raw figures here")
    a = p.parse_args(argv)

    if not a.loadgen.exists():
        print(f"paced: {a.loadgen} missing; build it with make -C bench/loadgen", file=sys.stderr)
        return 2
    pin = not a.no_pin and shutil.which("taskset") is not None and (os.cpu_count() or 1) >= 2
    _soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    os.environ["BENCH_SHADOW_KEYS"] = os.environ.get("BENCH_SHADOW_KEYS", "") + SETTLE_FLOOR
    if a.nice:
        os.setpriority(os.PRIO_PROCESS, 0, a.nice)  # the processes started inherit it
    fractions = [float(s) for s in a.steps.split(",") if s.strip()]
    plan = Plan(
        a.conns,
        a.size,
        a.duration,
        a.warmup,
        a.drain,
        a.concurrency,
        a.open_rate,
        a.quiet_wait,
        a.turns,
    )
    per_frame = a.per_frame and harness.detect_tunnel(a.source)

    started = time.time()
    load_before = os.getloadavg()[0]
    ladders: list[dict[str, Any]] = []
    work = Path(tempfile.mkdtemp(prefix="strangler-paced-"))
    env = Env(a.loadgen, work, pin, a.source)
    try:
        for n in range(1, a.ladders + 1):
            ladders.append(ladder(env, plan, fractions, a.knee, n, per_frame))
    finally:
        env.stop_all()
    shutil.rmtree(work, ignore_errors=True)

    knee_rate = statistics.median(lad["knee_rate"] for lad in ladders)
    rs = rows(ladders)
    title = (
        f"Paced load, {a.conns} connections: shadow's primary beside legacy "
        f"({len(ladders)} ladder{'s' if len(ladders) > 1 else ''})"
    )
    svg_path = a.svg or (a.markdown.with_suffix(".svg") if a.markdown else None)
    knees = "; ".join(
        f"{lad['knee']['msgs_per_s']:,.0f} msg/s at {lad['knee']['proxy_cpu_share']:.0%} of the "
        f"core, so {lad['knee_rate']:,.0f}"
        if "knee" in lad
        else f"{lad['knee_rate']:,.0f} (given)"
        for lad in ladders
    )
    md = "\n".join(
        [
            f"Run: {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime(started))}, "
            f"{time.time() - started:.0f} s, {len(ladders)} ladder(s); {harness.machine()}; "
            f"pinning {'on' if pin else 'off'}, niceness {os.getpriority(os.PRIO_PROCESS, 0)}; "
            f"{a.conns} connections, {a.size}-byte messages, "
            f"{a.warmup:g} s paced warm-up + {a.duration:g} s measured per run. Legacy's "
            f"closed-loop knee (msg/s per core): {knees}. Load average (1 min) "
            f"{load_before:.2f} at the start, {os.getloadavg()[0]:.2f} at the end.",
            "",
            table(rs),
            "",
            "Medians over the ladders; ratios are taken within a ladder, then the median "
            "(range in brackets). † legacy did not sustain the offered rate (achieved < "
            f"{SUSTAINED:.0%} of it, or replies lost) in at least one ladder. ‡ in at least "
            "one ladder, a proxy of this step waited for its core (other processes on it) "
            f"more than {WAITED:.0%} of a run (or, where that is unknown, other processes took "
            f"more than {CONTENDED:.0%} of it): left out of the verdict below. Shed share: "
            "the shadow turns offered (messages sent) that were never compared.",
            "",
            *(
                [
                    "Legacy mode over the per-frame relay (a second proxy, `relay.tunnel: off`):",
                    "",
                    frames_table(rs),
                    "",
                ]
                if frames_table(rs)
                else []
            ),
            "",
            "Targets (shadow / legacy at the same paced load):",
            "",
            *verdict(rs),
            "",
            f"Curve: {svg_path}" if svg_path else "",
        ]
    )
    print(md)
    if a.markdown:
        a.markdown.write_text(md + "\n")
    if svg_path:
        svg_path.write_text(svg(rs, knee_rate, title))
    if a.json:
        a.json.write_text(json.dumps({"ladders": ladders}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
