"""Soak run: hours of production in minutes, to see whether the proxy leaks.

On loopback only, it starts the two reference backends and the proxy as processes of
their own, then for `--duration` seconds drives a mixed load: connections on several
routes, turns, clients that leave mid-turn or vanish with a TCP reset, flag flips
(the flags file rewritten the way a deploy does it), and backend restarts (SIGKILL,
then a new process on the same port). Every `--interval` seconds it samples the proxy
process from /proc/<pid> (resident memory, open file descriptors) and its own counts,
and prints them as a table.

Verdict: after the load stops and connections settle (up to `--settle` seconds:
sockets of connections that just ended may still be closing), the proxy's open fds must
be back within `--max-fd-growth` of the idle start, and its resident memory within
`--max-rss-growth-mib` of the first sample under load (allocator pools and caches
reach their working size during warm-up; growth past that is what a leak looks like).
It exits 1 when either bound is broken or the proxy died, 0 otherwise.

    .venv/bin/python bench/soak/run.py --duration 600
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import random
import signal
import socket
import struct
import sys
import tempfile
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, BinaryIO

import aiohttp
from prometheus_client.parser import text_string_to_metric_families

from strangler.proxy.edge.identity import mint_token

ROOT = Path(__file__).resolve().parents[2]
SECRET = "soak-secret-for-the-loopback-run-only-0123456789"
USERS = 400

ROUTES = """
routes:
  - {name: main, path: /ws, dialect: main, auth: accept_then_frame}
  - {name: api, path: /api/v1/websocket, dialect: main, auth: accept_then_frame}
  - {name: main_user, path: "/ws/{user_id}", dialect: main_payload, auth: accept_then_frame}
  - {name: main_v1, path: "/ws/v1/{user_id}", dialect: main_payload, auth: accept_then_frame}
  - {name: factory, path: /ws/factory, dialect: factory, auth: refuse_handshake}
  - {name: isolated, path: /ws/isolated, dialect: isolated, auth: accept_then_close}
  - {name: legacy, path: /websocket, dialect: legacy, auth: none}
  - {name: legacy_test, path: /ws/test, dialect: legacy, auth: none}
"""
FLAG_ROUTES = "[main, api, main_user, main_v1, factory, isolated]"

# The flag files the run cycles through: rollouts moving forward and back, and the
# kill switch (everyone on legacy at once).
FLAG_STEPS = (
    {"unified": 10, "live": 10, "shadow": 20},
    {"unified": 30, "live": 10, "shadow": 20},
    {"unified": 60, "live": 10, "shadow": 10},
    {"kill_switch": True},
    {"unified": 20, "live": 20, "shadow": 20},
)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def flags_text(step: dict[str, Any]) -> str:
    if step.get("kill_switch"):
        body = "    kill_switch: true\n"
    else:
        shares = ", ".join(f"{mode}: {pct}" for mode, pct in step.items())
        body = f"    rollout: {{{shares}}}\n"
    return f"version: 1\nflags:\n  unified_router:\n    routes: {FLAG_ROUTES}\n{body}"


def proc_stats(pid: int) -> tuple[int, int]:
    """Resident memory (KiB) and open file descriptors of a process, from /proc."""
    rss = 0
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                rss = int(line.split()[1])
    return rss, len(os.listdir(f"/proc/{pid}/fd"))


TCP_STATES = {
    "01": "ESTABLISHED",
    "02": "SYN_SENT",
    "03": "SYN_RECV",
    "04": "FIN_WAIT1",
    "05": "FIN_WAIT2",
    "06": "TIME_WAIT",
    "07": "CLOSE",
    "08": "CLOSE_WAIT",
    "09": "LAST_ACK",
    "0A": "LISTEN",
    "0B": "CLOSING",
}


def describe_fds(pid: int, names: dict[int, str]) -> Counter[str]:
    """What a process's descriptors are: TCP sockets by state and peer, the rest by kind.

    `names` maps local or remote ports to a role (the proxy's listeners, each backend),
    so a leaked socket says which side of the proxy it belonged to.
    """
    sockets: dict[str, str] = {}
    for table in ("tcp", "tcp6"):
        with contextlib.suppress(OSError), open(f"/proc/{pid}/net/{table}") as f:
            next(f)
            for line in f:
                cols = line.split()
                local, remote = (int(a.rsplit(":", 1)[1], 16) for a in cols[1:3])
                state = TCP_STATES.get(cols[3], cols[3])
                peer = names.get(remote) or (
                    f"client of {names[local]}" if local in names else "other"
                )
                sockets[cols[9]] = f"tcp {state} {peer}"
    kinds: Counter[str] = Counter()
    for fd in os.listdir(f"/proc/{pid}/fd"):
        with contextlib.suppress(OSError):
            target = os.readlink(f"/proc/{pid}/fd/{fd}")
            if target.startswith("socket:["):
                kinds[sockets.get(target[8:-1], "socket (not tcp)")] += 1
            else:
                kinds[target.split(":", 1)[0] if ":" in target else "file"] += 1
    return kinds


def _open_log(path: Path) -> BinaryIO:
    return open(path, "wb")  # held open for the proxy process's whole life


@dataclass
class Counts:
    """What the load saw, cumulative."""

    connections: int = 0
    turns: int = 0
    resets: int = 0
    errors: Counter[str] = field(default_factory=Counter)


@dataclass
class Sample:
    at: float
    rss_kib: int
    fds: int
    open_connections: float
    connections: int
    turns: int
    errors: int


class Soak:
    def __init__(self, args: argparse.Namespace, workdir: Path) -> None:
        self.args = args
        self.workdir = workdir
        self.src = Path(args.src).resolve()
        self.port, self.admin = free_port(), free_port()
        self.backend_ports = {"legacy": free_port(), "unified": free_port()}
        self.backends: dict[str, asyncio.subprocess.Process] = {}
        self.proxy: asyncio.subprocess.Process | None = None
        self.counts = Counts()
        self.samples: list[Sample] = []
        self.restarts = 0
        self.flips = 0
        self.tokens = {f"soak-{i}": mint_token(SECRET, f"soak-{i}") for i in range(USERS)}
        self.stop_load = asyncio.Event()

    # -- processes ----------------------------------------------------------------------

    def _env(self) -> dict[str, str]:
        return {**os.environ, "STRANGLER_SOAK_SECRET": SECRET, "PYTHONPATH": str(self.src)}

    async def start_backend(self, kind: str) -> None:
        proc = await asyncio.create_subprocess_exec(
            sys.executable,
            str(self.src / "bench" / "soak" / "backend.py"),
            kind,
            "--port",
            str(self.backend_ports[kind]),
            "--secret",
            SECRET,
            "--event-delay",
            str(self.args.event_delay),
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.DEVNULL,
            cwd=self.src,
            env=self._env(),
        )
        assert proc.stdout is not None
        async with asyncio.timeout(20):
            line = await proc.stdout.readline()
        if line.strip() != b"ready":
            raise RuntimeError(f"the {kind} backend did not start")
        self.backends[kind] = proc

    async def start_proxy(self) -> None:
        (self.workdir / "flags.yaml").write_text(flags_text(FLAG_STEPS[0]))
        (self.workdir / "strangler.yaml").write_text(
            f"""
listen: 127.0.0.1:{self.port}
admin_listen: 127.0.0.1:{self.admin}
backends:
  legacy: {{url: "ws://127.0.0.1:{self.backend_ports["legacy"]}", connect_timeout: 2}}
  unified: {{url: "ws://127.0.0.1:{self.backend_ports["unified"]}/v1/ws", connect_timeout: 2}}
{ROUTES}
flags: {{file: flags.yaml, poll_interval: 0.5}}
jwt: {{secret_env: STRANGLER_SOAK_SECRET, issuer: netra-auth-service, audience: [netra-platform]}}
relay: {{grace_period: 2}}
"""
        )
        self.proxy_log = _open_log(self.workdir / "proxy.log")
        self.proxy = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "strangler.proxy",
            "--log-level",
            "warning",
            "run",
            "--config",
            str(self.workdir / "strangler.yaml"),
            stdout=asyncio.subprocess.DEVNULL,
            stderr=self.proxy_log,
            cwd=self.src,
            env=self._env(),
        )
        async with asyncio.timeout(30):
            while True:
                with contextlib.suppress(aiohttp.ClientError):
                    async with (
                        aiohttp.ClientSession() as s,
                        s.get(f"http://127.0.0.1:{self.admin}/readyz") as r,
                    ):
                        if r.status == 200:
                            return
                await asyncio.sleep(0.1)

    async def stop_all(self) -> int | None:
        """SIGTERM everything; the proxy's exit status (None if it was already gone)."""
        status = None
        if self.proxy is not None:
            if self.proxy.returncode is None:
                self.proxy.send_signal(signal.SIGTERM)
                try:
                    async with asyncio.timeout(30):
                        status = await self.proxy.wait()
                except TimeoutError:
                    self.proxy.kill()
                    await self.proxy.wait()
            self.proxy_log.close()
        for proc in self.backends.values():
            if proc.returncode is None:
                proc.send_signal(signal.SIGTERM)
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(5):
                    await proc.wait()
            if proc.returncode is None:
                proc.kill()
                await proc.wait()
        return status

    # -- load ---------------------------------------------------------------------------

    async def client(self, s: aiohttp.ClientSession, rng: random.Random) -> None:
        """One connection: a route, a greeting, some turns, and one way of leaving."""
        user = f"soak-{rng.randrange(USERS)}"
        roll = rng.random()
        path = rng.choice(("/ws", "/ws", "/api/v1/websocket", f"/ws/{user}"))
        if roll < 0.05:
            await self.reset_after_handshake(user)
            return
        if roll < 0.10:
            path = "/websocket"  # the no-auth legacy route: greeting only
        url = f"ws://127.0.0.1:{self.port}{path}"
        headers = {"Authorization": f"Bearer {self.tokens[user]}"}
        try:
            async with asyncio.timeout(30):
                ws = await s.ws_connect(url, headers=headers)
                self.counts.connections += 1
                try:
                    await self.exchange(ws, rng, path)
                finally:
                    await ws.close()
        except aiohttp.WSServerHandshakeError as exc:
            self.counts.errors[f"handshake_{exc.status}"] += 1
        except TimeoutError:
            self.counts.errors["timeout"] += 1
        except (aiohttp.ClientError, ConnectionError) as exc:
            self.counts.errors[type(exc).__name__] += 1

    async def exchange(
        self, ws: aiohttp.ClientWebSocketResponse[Any], rng: random.Random, path: str
    ) -> None:
        greeting = await ws.receive()
        if greeting.type is not aiohttp.WSMsgType.TEXT:
            self.counts.errors[f"closed_{ws.close_code}"] += 1
            return
        if path == "/websocket":
            return
        for _ in range(rng.randint(1, 3)):
            leave_mid_turn = rng.random() < 0.1
            await ws.send_str(
                json.dumps({"type": "start_agent", "payload": {"user_request": "Optimize"}})
            )
            while True:
                msg = await ws.receive()
                if msg.type is not aiohttp.WSMsgType.TEXT:
                    self.counts.errors[f"closed_{ws.close_code}"] += 1
                    return
                if leave_mid_turn:
                    return
                kind = json.loads(msg.data).get("type")
                if kind in ("agent_completed", "agent_error"):
                    self.counts.turns += 1
                    break

    async def reset_after_handshake(self, user: str) -> None:
        """A client that vanishes with a TCP reset right after its handshake."""
        try:
            reader, writer = await asyncio.open_connection("127.0.0.1", self.port)
            writer.write(
                (
                    "GET /ws HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                    "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n"
                    f"Authorization: Bearer {self.tokens[user]}\r\n\r\n"
                ).encode()
            )
            async with asyncio.timeout(10):
                await reader.readuntil(b"\r\n\r\n")
            sock = writer.get_extra_info("socket")
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            writer.transport.abort()
            self.counts.resets += 1
        except (OSError, TimeoutError, asyncio.IncompleteReadError) as exc:
            self.counts.errors[type(exc).__name__] += 1

    async def worker(self, seed: int) -> None:
        rng = random.Random(seed)
        async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0)) as s:
            while not self.stop_load.is_set():
                await self.client(s, rng)

    async def flag_flipper(self) -> None:
        step = 0
        while not self.stop_load.is_set():
            await self.pause(self.args.flip_every)
            step = (step + 1) % len(FLAG_STEPS)
            aside = self.workdir / "flags.yaml.new"
            aside.write_text(flags_text(FLAG_STEPS[step]))
            os.replace(aside, self.workdir / "flags.yaml")
            self.flips += 1

    async def backend_restarter(self) -> None:
        kinds = ("legacy", "unified")
        n = 0
        while not self.stop_load.is_set():
            await self.pause(self.args.restart_every)
            if self.stop_load.is_set():
                return
            kind = kinds[n % 2]
            n += 1
            proc = self.backends[kind]
            proc.kill()  # no goodbye: sockets reset, turns cut off mid-stream
            await proc.wait()
            await asyncio.sleep(1.0)
            await self.start_backend(kind)
            self.restarts += 1

    async def pause(self, seconds: float) -> None:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self.stop_load.wait(), seconds)

    # -- sampling -----------------------------------------------------------------------

    async def sample(self, started: float) -> Sample:
        assert self.proxy is not None
        rss, fds = proc_stats(self.proxy.pid)
        open_now = sum(
            value
            for (name, _), value in (await self.metrics()).items()
            if name == "strangler_connections_open"
        )
        return Sample(
            at=time.monotonic() - started,
            rss_kib=rss,
            fds=fds,
            open_connections=open_now,
            connections=self.counts.connections + self.counts.resets,
            turns=self.counts.turns,
            errors=sum(self.counts.errors.values()),
        )

    async def metrics(self) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
        async with (
            aiohttp.ClientSession() as s,
            s.get(f"http://127.0.0.1:{self.admin}/metrics") as r,
        ):
            text = await r.text()
        out: dict[tuple[str, tuple[tuple[str, str], ...]], float] = {}
        for family in text_string_to_metric_families(text):
            for sample in family.samples:
                out[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
        return out

    def record(self, label: str, sample: Sample) -> None:
        self.samples.append(sample)
        print(
            f"| {label:<8} | {sample.at:7.0f} | {sample.rss_kib / 1024:8.1f} | {sample.fds:5d} "
            f"| {sample.open_connections:5.0f} | {sample.connections:8d} | {sample.turns:8d} "
            f"| {sample.errors:6d} |",
            flush=True,
        )

    # -- the run ------------------------------------------------------------------------

    async def run(self) -> int:
        args = self.args
        for kind in ("legacy", "unified"):
            await self.start_backend(kind)
        await self.start_proxy()
        started = time.monotonic()
        print(
            f"soak: {args.duration:g}s, {args.clients} concurrent clients, flags flip every "
            f"{args.flip_every:g}s, a backend restart every {args.restart_every:g}s"
        )
        print("| sample   |  time s |  RSS MiB |   fds |  open |    conns |    turns | errors |")
        print("|----------|---------|----------|-------|-------|----------|----------|--------|")
        await asyncio.sleep(1.0)
        idle_start = await self.sample(started)
        self.record("start", idle_start)
        load = [asyncio.create_task(self.worker(i)) for i in range(args.clients)]
        chaos = [
            asyncio.create_task(self.flag_flipper()),
            asyncio.create_task(self.backend_restarter()),
        ]
        deadline = started + args.duration
        warm: Sample | None = None
        try:
            while time.monotonic() < deadline:
                await asyncio.sleep(min(args.interval, max(0.0, deadline - time.monotonic())))
                if self.proxy is not None and self.proxy.returncode is not None:
                    print(f"soak: FAIL: the proxy exited with {self.proxy.returncode}")
                    return 1
                sample = await self.sample(started)
                self.record("load", sample)
                warm = warm or sample
        finally:
            self.stop_load.set()
            await asyncio.gather(*chaos, return_exceptions=True)
            async with asyncio.timeout(60):
                await asyncio.gather(*load, return_exceptions=True)
        # Settle: sockets of connections that just ended may still be closing (a close
        # handshake waits up to the close timeout); a leak is what never comes back.
        load_stopped = time.monotonic()
        settle_until = load_stopped + args.settle
        while True:
            end = await self.sample(started)
            settled = end.open_connections == 0 and end.fds <= idle_start.fds
            if settled or time.monotonic() >= settle_until:
                break
            await asyncio.sleep(1.0)
        self.record("end", end)
        print(f"end sample {time.monotonic() - load_stopped:.1f} s after the load stopped")
        assert self.proxy is not None
        names = {
            self.port: "proxy",
            self.admin: "admin",
            self.backend_ports["legacy"]: "legacy",
            self.backend_ports["unified"]: "unified",
        }
        kinds = describe_fds(self.proxy.pid, names)
        print(f"proxy fds at the end: {dict(sorted(kinds.items()))}")
        return self.verdict(idle_start, warm or idle_start, end, await self.metrics())

    def verdict(
        self,
        start: Sample,
        warm: Sample,
        end: Sample,
        metrics: dict[tuple[str, tuple[tuple[str, str], ...]], float],
    ) -> int:
        args = self.args
        outcomes: Counter[str] = Counter()
        failures: Counter[str] = Counter()
        for (name, labels), value in metrics.items():
            if name == "strangler_connections_total":
                outcomes[dict(labels)["outcome"]] += int(value)
            elif name == "strangler_upstream_connect_failures_total" and value:
                d = dict(labels)
                failures[f"{d['backend']}:{d['reason']}"] += int(value)
        print(
            f"load: {self.counts.connections} connections, {self.counts.resets} TCP resets, "
            f"{self.counts.turns} turns, {self.flips} flag flips, {self.restarts} backend restarts"
        )
        print(f"client-side errors: {dict(sorted(self.counts.errors.items())) or 'none'}")
        print(f"proxy outcomes: {dict(sorted(outcomes.items()))}")
        print(f"proxy upstream failures: {dict(sorted(failures.items())) or 'none'}")
        rss_growth = (end.rss_kib - warm.rss_kib) / 1024
        fd_growth = end.fds - start.fds
        print(
            f"RSS: {start.rss_kib / 1024:.1f} MiB idle at start, {warm.rss_kib / 1024:.1f} MiB "
            f"after warm-up, {end.rss_kib / 1024:.1f} MiB at the end "
            f"({rss_growth:+.1f} MiB, limit {args.max_rss_growth_mib:g})"
        )
        print(
            f"fds: {start.fds} idle at start, {end.fds} idle at the end "
            f"({fd_growth:+d}, limit {args.max_fd_growth})"
        )
        ok = rss_growth <= args.max_rss_growth_mib and fd_growth <= args.max_fd_growth
        print("soak: PASS" if ok else "soak: FAIL")
        return 0 if ok else 1


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--duration", type=float, default=600.0, help="seconds of load (600)")
    p.add_argument("--interval", type=float, default=30.0, help="seconds between samples (30)")
    p.add_argument("--clients", type=int, default=32, help="concurrent clients (32)")
    p.add_argument("--flip-every", type=float, default=15.0, help="flag flip period, s (15)")
    p.add_argument("--restart-every", type=float, default=45.0, help="backend kill period (45)")
    p.add_argument("--event-delay", type=float, default=0.01, help="backend s between events")
    p.add_argument("--max-rss-growth-mib", type=float, default=48.0, help="limit (48 MiB)")
    p.add_argument("--max-fd-growth", type=int, default=16, help="limit (16)")
    p.add_argument("--settle", type=float, default=30.0, help="s allowed to settle (30)")
    p.add_argument("--src", default=str(ROOT), help="source tree to run (this checkout)")
    p.add_argument("--workdir", default=None, help="where configs and proxy.log go (temp)")
    return p.parse_args(argv)


async def amain(args: argparse.Namespace, workdir: Path) -> int:
    soak = Soak(args, workdir)
    try:
        result = await soak.run()
    finally:
        status = await soak.stop_all()
    if status not in (0, None):
        print(f"soak: FAIL: the proxy exited with {status} on SIGTERM")
        return 1
    return result


def main() -> int:
    args = parse_args()
    with contextlib.ExitStack() as stack:
        if args.workdir:
            workdir = Path(args.workdir)
            workdir.mkdir(parents=True, exist_ok=True)
        else:
            workdir = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="soak-")))
        result = asyncio.run(amain(args, workdir))
        # A traceback in the proxy's log is a failure even when the numbers are fine.
        log = (workdir / "proxy.log").read_text(errors="replace")
        tracebacks = log.count("Traceback")
        print(f"proxy log: {len(log.splitlines())} lines, {tracebacks} tracebacks")
        return result if not tracebacks else 1


if __name__ == "__main__":
    sys.exit(main())
