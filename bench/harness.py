"""Side-by-side benchmark of the proxy and nginx on one machine (driven by bench/run.sh).

Everything runs on loopback. The thing under test (nginx or the proxy) is pinned to one
core, the compiled load generator and the C echo upstreams to the other, so the numbers
describe the thing under test and not its neighbours. CPU time comes from
/proc/<pid>/stat (utime + stime) sampled at the load generator's start and end marks;
memory from VmRSS. Every figure is the median over `--rounds` rounds, and each round
starts fresh processes, so one round's garbage is not the next one's baseline.

A "message" is one echo round trip: the client's ~300-byte masked JSON text frame
through the thing under test to the echo upstream and the echo back to the client.
"""

from __future__ import annotations

import argparse
import contextlib
import functools
import json
import os
import re
import resource
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
SECRET = "bench-secret-for-the-harness-only-0123456789abcdef"
CLK_TCK = os.sysconf("SC_CLK_TCK")
PAGE_KIB = os.sysconf("SC_PAGE_SIZE") // 1024
IDLE_CONCURRENCY = 100

# Users the bench flag file pins to each mode (targets), so one proxy serves every scenario.
USERS = {
    "legacy": "bench-legacy",
    "unified": "bench-unified",
    "shadow": "bench-shadow",
    "live": "bench-live",
}

FLAGS = f"""version: 1
flags:
  unified_router:
    routes: [main, factory]
    default: legacy
    targets:
      legacy: [{USERS["legacy"]}]
      unified: [{USERS["unified"]}]
      shadow: [{USERS["shadow"]}]
      live: [{USERS["live"]}]
"""


def log(text: str) -> None:
    print(f"[bench {time.strftime('%H:%M:%S')}] {text}", file=sys.stderr, flush=True)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def cpu_of(pid: int) -> float:
    """utime + stime of one process, in seconds."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLK_TCK


def rss_kib(pid: int) -> int:
    with open(f"/proc/{pid}/statm") as f:
        return int(f.read().split()[1]) * PAGE_KIB


def children(pid: int) -> list[int]:
    out: list[int] = []
    with contextlib.suppress(OSError):
        for tid in os.listdir(f"/proc/{pid}/task"):
            with open(f"/proc/{pid}/task/{tid}/children") as f:
                out.extend(int(c) for c in f.read().split())
    return out


def wait_port(port: int, svc: Service, timeout: float = 15.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if svc.proc.poll() is not None:
            raise RuntimeError(f"{svc.name} exited: {svc.log_path.read_text()[-800:]}")
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.05)
    raise RuntimeError(f"nothing listens on 127.0.0.1:{port} after {timeout:.0f} s")


@dataclass
class Service:
    """A process this harness started (and alone stops)."""

    name: str
    proc: subprocess.Popen[bytes]
    log_path: Path
    port: int = 0
    admin: int = 0  # the proxy's admin port

    def pids(self) -> list[int]:
        """The process and its children (nginx: master and worker)."""
        return [self.proc.pid, *children(self.proc.pid)]

    def cpu(self) -> float:
        total = 0.0
        for pid in self.pids():
            with contextlib.suppress(OSError):
                total += cpu_of(pid)
        return total

    def rss(self) -> int:
        total = 0
        for pid in self.pids():
            with contextlib.suppress(OSError):
                total += rss_kib(pid)
        return total

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=5)


@dataclass
class Env:
    loadgen: Path
    work: Path
    pin: bool
    source: Path = ROOT  # the proxy's source tree
    services: list[Service] = field(default_factory=list)

    def cores(self, core: int) -> list[str]:
        return ["taskset", "-c", str(core)] if self.pin else []

    def spawn(self, name: str, cmd: Sequence[str], core: int, **kw: Any) -> Service:
        log_path = self.work / f"{name}.log"
        with open(log_path, "ab") as out:
            proc = subprocess.Popen(
                [*self.cores(core), *cmd], stdout=out, stderr=subprocess.STDOUT, **kw
            )
        svc = Service(name, proc, log_path)
        self.services.append(svc)
        return svc

    def stop(self, svc: Service) -> None:
        svc.stop()
        if svc in self.services:
            self.services.remove(svc)

    def stop_all(self) -> None:
        for svc in reversed(list(self.services)):
            self.stop(svc)


# -- the things under test ------------------------------------------------------------


def start_echo(env: Env, name: str, *, turns: bool = False) -> tuple[Service, int]:
    """The C echo upstream; `turns`: it answers a user_message with a turn's five events."""
    port = free_port()
    cmd = [str(env.loadgen), "echo", "--port", str(port), "--turns", str(int(turns))]
    svc = env.spawn(name, cmd, core=0)
    wait_port(port, svc)
    return svc, port


def start_nginx(env: Env, upstream_port: int, max_conns: int) -> tuple[Service, int]:
    port = free_port()
    # nginx counts client and upstream sockets and wants headroom on top ("worker_connections
    # are not enough, reusing connections" resets clients before their 101 otherwise).
    fd_limit = resource.getrlimit(resource.RLIMIT_NOFILE)[1]
    prefix = env.work / "nginx"
    prefix.mkdir(exist_ok=True)
    conf = prefix / "nginx.conf"
    # One worker, as one proxy process; WebSocket proxying as nginx documents it.
    conf.write_text(
        f"""daemon off;
worker_processes 1;
worker_rlimit_nofile {min(fd_limit, max_conns * 3 + 2048)};
pid {prefix}/nginx.pid;
error_log {prefix}/error.log warn;
events {{ worker_connections {min(fd_limit - 1024, max_conns * 3 + 1024)}; multi_accept on; }}
http {{
    access_log off;
    client_body_temp_path {prefix}/body;
    proxy_temp_path {prefix}/proxy;
    fastcgi_temp_path {prefix}/fastcgi;
    uwsgi_temp_path {prefix}/uwsgi;
    scgi_temp_path {prefix}/scgi;
    upstream echo {{ server 127.0.0.1:{upstream_port}; }}
    server {{
        listen 127.0.0.1:{port} backlog=4096;
        location / {{
            proxy_pass http://echo;
            proxy_http_version 1.1;
            proxy_set_header Upgrade $http_upgrade;
            proxy_set_header Connection "upgrade";
            proxy_set_header Host $host;
            proxy_read_timeout 3600s;
            proxy_send_timeout 3600s;
            proxy_buffering off;
            tcp_nodelay on;
        }}
    }}
}}
"""
    )
    nginx = shutil.which("nginx") or "/usr/sbin/nginx"
    svc = env.spawn("nginx", [nginx, "-p", str(prefix), "-c", str(conf)], core=1)
    wait_port(port, svc)
    return svc, port


def proxy_config(
    dir_: Path, port: int, admin: int, legacy: int, unified: int, relay_extra: str
) -> Path:
    dir_.mkdir(parents=True, exist_ok=True)
    (dir_ / "flags.yaml").write_text(FLAGS)
    # More keys of the shadow section, e.g. ", shed: {enabled: false}" to measure what
    # shadow costs when none of it is shed (a tree that predates a key refuses it).
    shadow_extra = os.environ.get("BENCH_SHADOW_KEYS", "")
    cfg = dir_ / "strangler.yaml"
    cfg.write_text(
        f"""listen: 127.0.0.1:{port}
admin_listen: 127.0.0.1:{admin}
backends:
  legacy: {{url: "ws://127.0.0.1:{legacy}", connect_timeout: 5}}
  unified: {{url: "ws://127.0.0.1:{unified}/v1/ws", connect_timeout: 5}}
routes:
  - {{name: main, path: /ws, dialect: main, auth: accept_then_frame}}
  - {{name: factory, path: /ws/factory, dialect: factory, auth: refuse_handshake}}
flags: {{file: flags.yaml, poll_interval: 1.0}}
jwt: {{secret_env: STRANGLER_BENCH_SECRET, issuer: netra-auth-service,
       audience: [netra-platform]}}
relay: {{max_message_bytes: 4194304, grace_period: 1, close_timeout: 2{relay_extra}}}
limits: {{max_connections: 1000000, max_connections_per_ip: 1000000}}
shadow: {{max_secondary_connections: 100000{shadow_extra}}}
"""
    )
    return cfg


def start_proxy(env: Env, name: str, legacy: int, unified: int, relay_extra: str) -> Service:
    port, admin = free_port(), free_port()
    cfg = proxy_config(env.work / name, port, admin, legacy, unified, relay_extra)
    # The proxy's sources come first on the path, so a snapshot of a commit (run.sh
    # --commit) is what runs even though the venv holds an editable install.
    module, path = source_layout(env.source)
    svc = env.spawn(
        name,
        [
            sys.executable,
            "-m",
            module,
            "--log-level",
            os.environ.get("BENCH_PROXY_LOG_LEVEL", "warning"),
            "run",
            "--config",
            str(cfg),
        ],
        core=1,
        env={**os.environ, "STRANGLER_BENCH_SECRET": SECRET, "PYTHONPATH": str(path)},
        cwd=env.source,
    )
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        if svc.proc.poll() is not None:
            raise RuntimeError(f"{name} exited: {svc.log_path.read_text()[-800:]}")
        with (
            contextlib.suppress(OSError),
            urllib.request.urlopen(f"http://127.0.0.1:{admin}/readyz", timeout=1) as r,
        ):
            if r.status == 200:
                svc.port, svc.admin = port, admin
                return svc
        time.sleep(0.1)
    raise RuntimeError(f"{name} not ready after 20 s")


@functools.cache
def token(user: str) -> str:
    from strangler.proxy.edge.identity import mint_token

    return mint_token(SECRET, user, ttl=6 * 3600)


# -- load ---------------------------------------------------------------------------


@dataclass(frozen=True)
class Target:
    """Where a scenario sends its load, and which processes it charges."""

    name: str
    port: int
    path: str
    headers: tuple[str, ...]
    thing: Service | None  # None: direct to the echo (the baseline)


def run_loadgen(
    env: Env,
    mode: str,
    target: Target,
    watched: dict[str, Service],
    args: Sequence[str],
    timeout: float,
) -> dict[str, Any]:
    cmd = [
        *env.cores(0),
        str(env.loadgen),
        mode,
        "--port",
        str(target.port),
        "--path",
        target.path,
        *args,
    ]
    for h in target.headers:
        cmd += ["--header", h]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, text=True)
    timer = threading.Timer(timeout, proc.kill)
    timer.start()
    result: dict[str, Any] = {}
    before: dict[str, float] = {}
    try:
        assert proc.stdout is not None
        for line in proc.stdout:
            obj = json.loads(line)
            if obj.get("mark") == "start":
                before = {k: s.cpu() for k, s in watched.items()}
            elif obj.get("mark") == "end":
                result["cpu"] = {k: s.cpu() - before[k] for k, s in watched.items()}
            else:
                result.update(obj)
        proc.wait()
    finally:
        timer.cancel()
    if proc.returncode != 0:
        raise RuntimeError(f"loadgen {mode} on {target.name} failed ({proc.returncode})")
    return result


def hold_idle(
    env: Env,
    target: Target,
    conns: int,
    settle: float,
    while_held: Callable[[], dict[str, Any]] | None = None,
) -> dict[str, Any]:
    """Open `conns` idle connections, measure the RSS the thing under test gained.

    At most IDLE_CONCURRENCY handshakes are in flight: aiohttp listens with a backlog
    of 128, and a burst beyond it measures the accept queue, not the connections."""
    assert target.thing is not None
    before = target.thing.rss()
    cmd = [
        *env.cores(0),
        str(env.loadgen),
        "idle",
        "--port",
        str(target.port),
        "--path",
        target.path,
        "--conns",
        str(conns),
    ]
    for h in target.headers:
        cmd += ["--header", h]
    proc = subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    timer = threading.Timer(300, proc.kill)
    timer.start()
    try:
        assert proc.stdout is not None and proc.stdin is not None
        opened = json.loads(proc.stdout.readline())
        time.sleep(settle)
        after = target.thing.rss()
        during = while_held() if while_held is not None else None
        alive = target.thing.proc.poll() is None
        proc.stdin.close()
        closed = json.loads(proc.stdout.readline() or "{}")
        proc.wait()
    finally:
        timer.cancel()
    return {
        **opened,
        "rss_before_kib": before,
        "rss_after_kib": after,
        "kib_per_conn": (after - before) / max(1, opened.get("open", 0)),
        "alive": alive,
        "closed": closed,
        "while_held": during,
    }


# -- one round ------------------------------------------------------------------------


@dataclass
class Settings:
    rounds: int
    rtt_seconds: float
    rtt1_seconds: float
    hs_seconds: float
    warmup: float
    idle_conns: int
    conns: int
    size: int
    variants: list[tuple[str, str]]  # (label, extra relay keys)
    scenarios: list[str]


def scenario_targets(port: int, variant: str) -> dict[str, Target]:
    def auth(mode: str) -> tuple[str, ...]:
        return (f"Authorization: Bearer {token(USERS[mode])}",)

    return {
        f"legacy{variant}": Target(f"legacy{variant}", port, "/ws", auth("legacy"), None),
        f"unified{variant}": Target(f"unified{variant}", port, "/ws", auth("unified"), None),
        f"translated{variant}": Target(
            f"translated{variant}", port, "/ws/factory", auth("unified"), None
        ),
        f"shadow{variant}": Target(f"shadow{variant}", port, "/ws", auth("shadow"), None),
        f"live{variant}": Target(f"live{variant}", port, "/ws", auth("live"), None),
    }


# Turns are not counted here: the echo never ends one, so they settle after the run.
_SECONDARY_SERIES = ("strangler_secondary_dropped_frames_total", "strangler_shadow_shed_total")


def secondary_work(admin: int) -> dict[str, float]:
    """The proxy's total of secondary frames dropped, from its /metrics."""
    totals = dict.fromkeys(_SECONDARY_SERIES, 0.0)
    with urllib.request.urlopen(f"http://127.0.0.1:{admin}/metrics", timeout=5) as r:
        for line in r.read().decode().splitlines():
            name = line.split("{", 1)[0].split(" ", 1)[0]
            if name in totals:
                totals[name] += float(line.rsplit(" ", 1)[1])
    return totals


def measure(
    env: Env, s: Settings, t: Target, watched: dict[str, Service], hs: bool
) -> dict[str, Any]:
    out: dict[str, Any] = {}
    # Shadow and live shed secondary work when their queues fill (the primary never
    # waits): their CPU per message means little without how much they shed.
    proxy = watched.get("thing")
    admin = proxy.admin if proxy is not None and t.name.startswith(("shadow", "live")) else 0
    before = secondary_work(admin) if admin else {}
    common = ["--size", str(s.size), "--warmup", str(s.warmup)]
    budget = s.warmup + 60
    r1 = run_loadgen(
        env,
        "rtt",
        t,
        watched,
        ["--conns", "1", "--duration", str(s.rtt1_seconds), *common],
        budget + s.rtt1_seconds,
    )
    rn = run_loadgen(
        env,
        "rtt",
        t,
        watched,
        ["--conns", str(s.conns), "--duration", str(s.rtt_seconds), *common],
        budget + s.rtt_seconds,
    )
    if admin:
        after = secondary_work(admin)
        delta = {k: after[k] - before[k] for k in after}
        out["secondary_dropped"] = delta["strangler_secondary_dropped_frames_total"]
        out["shadow_shed"] = delta["strangler_shadow_shed_total"]
        out["messages_both"] = r1["messages"] + rn["messages"]
    out["p50_1_us"], out["p99_1_us"] = r1["p50_us"], r1["p99_us"]
    out["p50_n_us"], out["p99_n_us"] = rn["p50_us"], rn["p99_us"]
    out["msgs_per_s"] = rn["msgs_per_s"]
    out["errors"] = r1["errors"] + rn["errors"]
    if rn["errors"] or r1["errors"]:
        out["first_error"] = rn["first_error"] or r1["first_error"]
    msgs = max(1, rn["messages"])
    per100k = {k: v * 100_000 / msgs for k, v in rn["cpu"].items()}
    per100k["loadgen"] = rn["loadgen_cpu_seconds"] * 100_000 / msgs
    out["cpu_per_100k"] = per100k
    if hs:
        h = run_loadgen(
            env,
            "handshakes",
            t,
            watched,
            ["--conns", "32", "--duration", str(s.hs_seconds), "--warmup", str(s.warmup)],
            budget + s.hs_seconds,
        )
        out["handshakes_per_s"] = h["handshakes_per_s"]
        # CPU per handshake cycle (open, close handshake, TCP close) of the thing under
        # test: unlike the rate, it does not depend on what else shares the machine.
        if "thing" in h["cpu"] and h["cycles"]:
            out["hs_cpu_ms"] = h["cpu"]["thing"] * 1000 / h["cycles"]
        out["hs_errors"] = h["errors"]
        if h["errors"]:
            out["hs_first_error"] = h["first_error"]
    return out


def one_round(env: Env, s: Settings, n: int) -> dict[str, dict[str, Any]]:
    results: dict[str, dict[str, Any]] = {}
    echo_a, port_a = start_echo(env, f"echo-a-{n}")
    echo_b, port_b = start_echo(env, f"echo-b-{n}")
    try:
        # Idle memory first, each on a fresh process: a Python heap keeps what an
        # earlier run freed, which would hide the next run's growth.
        if "nginx" in s.scenarios:
            ng, ng_port = start_nginx(env, port_a, max(s.idle_conns, 1000))
            idle = hold_idle(env, Target("nginx", ng_port, "/ws", (), ng), s.idle_conns, 1.0)
            env.stop(ng)
            results.setdefault("nginx", {})["idle"] = idle
        for label, extra in s.variants:
            for mode in ("legacy", "unified"):
                name = f"{mode}{label}"
                if name not in s.scenarios:
                    continue
                px = start_proxy(env, f"proxy-idle-{name}-{n}", port_a, port_b, extra)
                t = scenario_targets(px.port, label)[name]
                idle = hold_idle(
                    env, Target(name, t.port, t.path, t.headers, px), s.idle_conns, 1.0
                )
                env.stop(px)
                results.setdefault(name, {})["idle"] = idle
                log(f"round {n} idle {name}: {idle['kib_per_conn']:.1f} KiB/conn")

        watched = {"echo_a": echo_a, "echo_b": echo_b}
        direct = Target("direct", port_a, "/ws", (), None)
        if "direct" in s.scenarios:
            results.setdefault("direct", {}).update(measure(env, s, direct, watched, hs=True))
        if "nginx" in s.scenarios:
            ng, ng_port = start_nginx(env, port_a, 1000)
            r = measure(
                env, s, Target("nginx", ng_port, "/ws", (), ng), {**watched, "thing": ng}, hs=True
            )
            env.stop(ng)
            results.setdefault("nginx", {}).update(r)
            log(f"round {n} nginx: {r['msgs_per_s']:.0f} msg/s")
        for label, extra in s.variants:
            px = start_proxy(env, f"proxy-{label or 'default'}-{n}", port_a, port_b, extra)
            try:
                for name, t in scenario_targets(px.port, label).items():
                    if name not in s.scenarios:
                        continue
                    r = measure(env, s, t, {**watched, "thing": px}, hs=True)
                    results.setdefault(name, {}).update(r)
                    log(
                        f"round {n} {name}: {r['msgs_per_s']:.0f} msg/s, "
                        f"{r['cpu_per_100k']['thing']:.2f} cpu-s/100k"
                    )
                    if px.proc.poll() is not None:
                        raise RuntimeError(f"proxy died: {px.log_path.read_text()[-800:]}")
            finally:
                env.stop(px)
    finally:
        env.stop(echo_a)
        env.stop(echo_b)
    return results


def big_idle(env: Env, conns: int, label: str, extra: str) -> dict[str, Any]:
    """Target 4: many idle connections in one proxy process, then check it still serves."""
    echo_a, port_a = start_echo(env, "echo-big-a")
    echo_b, port_b = start_echo(env, "echo-big-b")
    px = start_proxy(env, "proxy-big-idle", port_a, port_b, extra)
    try:
        t = scenario_targets(px.port, label)[f"legacy{label}"]

        def probe() -> dict[str, Any]:
            # While they are held the proxy must go on serving: round trips on one more.
            args = ["--conns", "1", "--duration", "1", "--warmup", "0.5"]
            return run_loadgen(env, "rtt", t, {}, args, 60)

        r = hold_idle(env, Target("big", t.port, t.path, t.headers, px), conns, 2.0, probe)
        ok = r["while_held"]
        r["serving_after"] = ok["errors"] == 0 and ok["messages"] > 0
        r["proxy_log_tail"] = px.log_path.read_text()[-500:]
        return r
    finally:
        env.stop(px)
        env.stop(echo_a)
        env.stop(echo_b)


# -- aggregation and the table ------------------------------------------------------


def median_of(rounds: list[dict[str, Any]], *path: str) -> float | None:
    values = []
    for r in rounds:
        v: Any = r
        for key in path:
            if not isinstance(v, dict) or key not in v:
                v = None
                break
            v = v[key]
        if isinstance(v, int | float):
            values.append(float(v))
    return statistics.median(values) if values else None


def summarize(all_rounds: list[dict[str, dict[str, Any]]]) -> dict[str, dict[str, Any]]:
    names: list[str] = []
    for r in all_rounds:
        names += [n for n in r if n not in names]
    out: dict[str, dict[str, Any]] = {}
    for name in names:
        rs = [r[name] for r in all_rounds if name in r]
        out[name] = {
            "msgs_per_s": median_of(rs, "msgs_per_s"),
            "cpu_100k": median_of(rs, "cpu_per_100k", "thing"),
            "echo_cpu_100k": median_of(rs, "cpu_per_100k", "echo_a"),
            "echo_b_cpu_100k": median_of(rs, "cpu_per_100k", "echo_b"),
            "loadgen_cpu_100k": median_of(rs, "cpu_per_100k", "loadgen"),
            "p50_1": median_of(rs, "p50_1_us"),
            "p99_1": median_of(rs, "p99_1_us"),
            "p50_n": median_of(rs, "p50_n_us"),
            "p99_n": median_of(rs, "p99_n_us"),
            "hs": median_of(rs, "handshakes_per_s"),
            "hs_cpu_ms": median_of(rs, "hs_cpu_ms"),
            "idle_kib": median_of(rs, "idle", "kib_per_conn"),
            "secondary_dropped": median_of(rs, "secondary_dropped"),
            "shadow_shed": median_of(rs, "shadow_shed"),
            "messages_both": median_of(rs, "messages_both"),
            "errors": sum(int(r.get("errors", 0)) + int(r.get("hs_errors", 0)) for r in rs)
            + sum(int(r.get("idle", {}).get("errors", 0)) for r in rs),
            "rounds": len(rs),
        }
    return out


def fmt(v: float | None, spec: str = ".2f") -> str:
    return "n/a" if v is None else format(v, spec)


def ratio(a: float | None, b: float | None) -> float | None:
    return None if a is None or b is None or b <= 0 else a / b


def table(summary: dict[str, dict[str, Any]], conns: int) -> str:
    ng = summary.get("nginx", {})
    base = summary.get("direct", {})
    rows = [
        f"| scenario | msgs/s @{conns} | CPU s/100k msgs | x nginx | p50 @1 µs | added p50 @1 µs "
        f"| x nginx | p99 @1 µs | p50/p99 @{conns} µs | handshakes/s | CPU ms/handshake "
        "| KiB/idle conn | x nginx "
        "| errors |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    ng_added = ratio_sub(ng.get("p50_1"), base.get("p50_1"))
    for name, r in summary.items():
        added = ratio_sub(r.get("p50_1"), base.get("p50_1")) if name != "direct" else None
        rows.append(
            f"| {name} | {fmt(r['msgs_per_s'], ',.0f')} | {fmt(r['cpu_100k'])} "
            f"| {fmt(ratio(r['cpu_100k'], ng.get('cpu_100k')))} | {fmt(r['p50_1'], '.0f')} "
            f"| {fmt(added, '.0f')} | {fmt(ratio(added, ng_added))} | {fmt(r['p99_1'], '.0f')} "
            f"| {fmt(r['p50_n'], '.0f')}/{fmt(r['p99_n'], '.0f')} | {fmt(r['hs'], ',.0f')} "
            f"| {fmt(r['hs_cpu_ms'], '.3f')} "
            f"| {fmt(r['idle_kib'], '.1f')} | {fmt(ratio(r['idle_kib'], ng.get('idle_kib')))} "
            f"| {r['errors']} |"
        )
    return "\n".join(rows)


def ratio_sub(a: float | None, b: float | None) -> float | None:
    return None if a is None or b is None else max(0.0, a - b)


def side_costs(summary: dict[str, dict[str, Any]]) -> str:
    rows = [
        "| scenario | echo upstream CPU s/100k | second echo CPU s/100k | loadgen CPU s/100k |",
        "|---|---:|---:|---:|",
    ]
    for name, r in summary.items():
        rows.append(
            f"| {name} | {fmt(r['echo_cpu_100k'])} | {fmt(r['echo_b_cpu_100k'])} "
            f"| {fmt(r['loadgen_cpu_100k'])} |"
        )
    return "\n".join(rows)


def secondary_costs(summary: dict[str, dict[str, Any]]) -> str:
    rows = [
        "| scenario | round trips (1 and n conns) | secondary frames dropped "
        "| shadow work shed (secondaries refused or closed, turns skipped) |",
        "|---|---:|---:|---:|",
    ]
    for name, r in summary.items():
        if r.get("messages_both") is not None:
            rows.append(
                f"| {name} | {fmt(r['messages_both'], ',.0f')} "
                f"| {fmt(r['secondary_dropped'], ',.0f')} | {fmt(r.get('shadow_shed'), ',.0f')} |"
            )
    return "\n".join(rows) if len(rows) > 2 else ""


def verdicts(
    summary: dict[str, dict[str, Any]], big: dict[str, Any] | None, per_frame: str
) -> list[str]:
    ng, base = summary.get("nginx", {}), summary.get("direct", {})
    ng_added = ratio_sub(ng.get("p50_1"), base.get("p50_1"))
    lines = []

    def check(label: str, value: float | None, limit: float, unit: str = "x") -> None:
        if value is None:
            lines.append(f"- {label}: not measured")
            return
        ok = "met" if value <= limit else "MISSED"
        lines.append(f"- {label}: {value:.2f}{unit} (target ≤ {limit:g}{unit}) — {ok}")

    for name in [n for n in summary if n.startswith(("legacy", "unified"))]:
        r = summary[name]
        check(f"(1) {name} CPU/msg vs nginx", ratio(r["cpu_100k"], ng.get("cpu_100k")), 1.5)
        added = ratio_sub(r.get("p50_1"), base.get("p50_1"))
        check(f"(1) {name} added p50 latency vs nginx", ratio(added, ng_added), 2.0)
        if r.get("idle_kib") is not None:
            check(
                f"(1) {name} memory/idle conn vs nginx",
                ratio(r["idle_kib"], ng.get("idle_kib")),
                1.0,
            )
    for name in [n for n in summary if n.startswith("translated")]:
        check(
            f"(2) {name} CPU/msg vs nginx",
            ratio(summary[name]["cpu_100k"], ng.get("cpu_100k")),
            3.0,
        )
    for mode, primary in (("shadow", "legacy"), ("live", "unified")):
        for name in [n for n in summary if n.startswith(mode)]:
            # Same route and relay without a secondary: per-frame when the default
            # relay would tunnel it; the default relay's figure as well, for reference.
            for base_name in dict.fromkeys((f"{primary}{per_frame}", primary)):
                if base_name in summary:
                    check(
                        f"(3) {name} CPU vs {base_name} (no secondary)",
                        ratio(summary[name]["cpu_100k"], summary[base_name]["cpu_100k"]),
                        1.5,
                    )
    if big is not None:
        held = big.get("open", 0)
        lines.append(
            f"- (4) idle connections held in one process: {held} of {big.get('conns')} asked, "
            f"{big.get('errors')} errors, proxy alive: {big.get('alive')}, serving while held: "
            f"{big.get('serving_after')}, {big.get('kib_per_conn', 0):.1f} KiB/conn"
            + ("" if big.get("conns", 0) >= 20000 else " — 20,000 NOT MEASURED here (fd limit)")
        )
    for name in dict.fromkeys(("legacy", f"legacy{per_frame}")):
        hs, cpu_ms = summary.get(name, {}).get("hs"), summary.get(name, {}).get("hs_cpu_ms")
        if hs is None:
            continue
        capacity = f", {1000 / cpu_ms:,.0f} per CPU-second" if cpu_ms else ""
        lines.append(
            f"- (4) {name} handshakes/s: {hs:,.0f} measured{capacity} (target ≥ 2,000) — "
            + ("met" if hs >= 2000 else "MISSED")
        )
    return lines


def machine() -> str:
    model = "?"
    with contextlib.suppress(OSError), open("/proc/cpuinfo") as f:
        for line in f:
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    mem = "?"
    with contextlib.suppress(OSError), open("/proc/meminfo") as f:
        mem = f"{int(f.readline().split()[1]) // 1024} MiB"
    binary = shutil.which("nginx") or "/usr/sbin/nginx"
    nginx = subprocess.run([binary, "-v"], capture_output=True, text=True).stderr.strip()
    return (
        f"{os.cpu_count()} cores ({model}), {mem} RAM, {os.uname().sysname} "
        f"{os.uname().release}, Python {sys.version.split()[0]}, {nginx}"
    )


def source_layout(source: Path) -> tuple[str, Path]:
    """The module that runs the proxy in `source`, and the path entry that imports it.

    Since the `strangler.*` layout, each top-level folder is the package
    `strangler.<folder>`; a tree of links beside the snapshot gives it that name, so the
    snapshot wins over the venv's editable install. Older snapshots are `proxy.cli`."""
    if not (source / "proxy" / "__main__.py").exists():
        return "proxy.cli", source
    tree = source / ".bench-tree"
    package = tree / "strangler"
    package.mkdir(parents=True, exist_ok=True)
    for part in ("proxy", "flags", "legacy_adapters", "reference"):
        link = package / part
        if not link.exists():
            link.symlink_to(source.resolve() / part)
    return "strangler.proxy", tree


def detect_tunnel(source: Path) -> bool:
    """Whether this build of the proxy has the relay.tunnel switch: a `"tunnel"` key read
    by hand (older builds) or a `tunnel` field of the relay settings (the schema)."""
    package = source / "proxy" / "config"
    files = sorted(package.glob("*.py")) if package.is_dir() else [source / "proxy" / "config.py"]
    text = "\n".join(f.read_text() for f in files)
    return '"tunnel"' in text or re.search(r"^\s+tunnel:", text, re.MULTILINE) is not None


@contextlib.contextmanager
def environment(loadgen: Path, pin: bool, source: Path) -> Iterator[Env]:
    work = Path(tempfile.mkdtemp(prefix="strangler-bench-"))
    env = Env(loadgen, work, pin, source)
    try:
        yield env
    finally:
        env.stop_all()
    # Kept only when a run fails, for its logs.
    shutil.rmtree(work, ignore_errors=True)


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--loadgen", type=Path, default=ROOT / "bench" / "loadgen" / "loadgen")
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--quick", action="store_true", help="short durations, fewer idle conns")
    p.add_argument("--conns", type=int, default=100, help="connections of the loaded run")
    p.add_argument("--size", type=int, default=300, help="bytes of JSON per message")
    p.add_argument("--idle", type=int, default=None, help="idle conns for memory per conn")
    p.add_argument(
        "--big-idle", type=int, default=20000, help="target 4: idle conns in one process (0 skips)"
    )
    p.add_argument("--scenarios", default="direct,nginx,legacy,unified,translated,shadow,live")
    p.add_argument(
        "--relay",
        default="auto",
        help="'auto': default relay, plus per-frame when relay.tunnel exists; "
        "'default': default only",
    )
    p.add_argument("--source", type=Path, default=ROOT, help="the proxy's source tree")
    p.add_argument("--no-pin", action="store_true", help="do not use taskset")
    p.add_argument("--json", type=Path, help="write raw rounds and the summary here")
    p.add_argument("--markdown", type=Path, help="write the tables and verdicts here")
    a = p.parse_args(argv)

    if not a.loadgen.exists():
        print(f"bench: {a.loadgen} missing; build it with make -C bench/loadgen", file=sys.stderr)
        return 2
    pin = not a.no_pin and shutil.which("taskset") is not None and (os.cpu_count() or 1) >= 2
    quick = a.quick
    scenarios = [s.strip() for s in a.scenarios.split(",") if s.strip()]
    variants: list[tuple[str, str]] = [("", "")]
    per_frame = ""
    if a.relay == "auto" and detect_tunnel(a.source):
        per_frame = "/per-frame"
        variants.append((per_frame, ', tunnel: "off"'))
        scenarios += [f"{m}{per_frame}" for m in ("legacy", "unified") if m in scenarios]
    s = Settings(
        rounds=a.rounds,
        rtt_seconds=2.0 if quick else 5.0,
        rtt1_seconds=1.5 if quick else 3.0,
        hs_seconds=1.5 if quick else 3.0,
        warmup=0.5 if quick else 1.0,
        idle_conns=a.idle or (1000 if quick else 5000),
        conns=a.conns,
        size=a.size,
        variants=variants,
        scenarios=scenarios,
    )
    _soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    with contextlib.suppress(ValueError, OSError):
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    fd_limit = resource.getrlimit(resource.RLIMIT_NOFILE)[0]
    # The proxy holds two sockets per connection (client and backend).
    big_max = max(0, (fd_limit - 200) // 2)
    big = min(a.big_idle, big_max)
    log(
        f"pinning: {'thing under test on core 1, load and echo on core 0' if pin else 'off'}; "
        f"fd limit {fd_limit}; rounds {s.rounds}; variants {[v[0] or 'default' for v in variants]}"
    )

    started = time.time()
    load_before = os.getloadavg()[0]
    rounds: list[dict[str, dict[str, Any]]] = []
    big_result: dict[str, Any] | None = None
    with environment(a.loadgen, pin, a.source) as env:
        for n in range(1, s.rounds + 1):
            rounds.append(one_round(env, s, n))
        if big > 0:
            log(f"target 4: holding {big} idle connections (asked {a.big_idle})")
            big_result = big_idle(env, big, "", "")
            big_result["asked"] = a.big_idle
            big_result["fd_limit"] = fd_limit
    summary = summarize(rounds)
    md = "\n".join(
        [
            f"Run: {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime(started))}, "
            f"{time.time() - started:.0f} s, {s.rounds} rounds (medians), "
            f"{'quick' if quick else 'full'} mode; {machine()}; "
            f"pinning {'on' if pin else 'off'}; {s.conns} connections in the loaded run, "
            f"{s.idle_conns} idle connections for memory. Load average (1 min) "
            f"{load_before:.2f} at the start, {os.getloadavg()[0]:.2f} at the end: anything "
            "else running shares these cores.",
            "",
            table(summary, s.conns),
            "",
            "Side costs (to show the load side is not the bottleneck):",
            "",
            side_costs(summary),
            "",
            "Secondary work shed in the loaded runs (medians; a dropped frame marks its",
            "turn, which is then not compared):",
            "",
            secondary_costs(summary) or "(no shadow or live scenario)",
            "",
            "Targets:",
            "",
            *verdicts(summary, big_result, per_frame),
            "",
        ]
    )
    print(md)
    if a.markdown:
        a.markdown.write_text(md)
    if a.json:
        a.json.write_text(
            json.dumps({"rounds": rounds, "summary": summary, "big_idle": big_result}, indent=1)
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
