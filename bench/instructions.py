"""User-space instructions the proxy spends per echo round trip (valgrind callgrind).

    .venv/bin/python bench/instructions.py [--source DIR] [--scenario legacy] \\
        [--turns | --handshakes] [--seconds 15] [--env STRANGLER_PURE_PYTHON=1] \\
        [--relay-keys ", tunnel: off"]

CPU time on a shared, two-core machine moves by a third between runs; an instruction
count does not. The proxy runs under `valgrind --tool=callgrind --instr-atstart=no`;
counting is switched on (`callgrind_control -i on`) only while one client of the C load
generator does bench round trips through it to the C echo upstream (bench/harness.py's
setup: its config, users and 300-byte JSON message), and the count is divided by the
round trips the proxy itself counted (`strangler_messages_total`, client to backend).
With --handshakes the figure is per handshake cycle instead (the load generator's 32
loops of open, close handshake and TCP close; divided by `strangler_connections_total`).
With --turns the echo answers each message with a turn's five golden-path events and a
round trip ends with the last (the traffic shadow mode compares). It leaves out the
kernel's share (socket reads and writes), which a change to the
proxy's Python or C does not touch. Prints one JSON line.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import harness  # bench/ is not a package: its folder is on the path above

_COUNTER = re.compile(
    r'^strangler_messages_total\{[^}]*direction="client_to_backend"[^}]*\} ([0-9.e+]+)$',
    re.MULTILINE,
)


_CONNECTIONS = re.compile(r"^strangler_connections_total\{[^}]*\} ([0-9.e+]+)$", re.MULTILINE)


def counted(admin: int, series: re.Pattern[str]) -> float:
    with urllib.request.urlopen(f"http://127.0.0.1:{admin}/metrics", timeout=30) as r:
        return sum(float(v) for v in series.findall(r.read().decode()))


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--source", type=Path, default=harness.ROOT)
    p.add_argument("--scenario", default="legacy", choices=sorted(harness.USERS))
    p.add_argument("--seconds", type=int, default=15)
    p.add_argument("--size", type=int, default=300)
    p.add_argument("--relay-keys", default="", help='more relay keys, e.g. ", tunnel: off"')
    p.add_argument("--env", action="append", default=[], help="KEY=VALUE for the proxy")
    p.add_argument(
        "--turns",
        action="store_true",
        help="turn-shaped traffic: the echo answers each message with a turn's five events",
    )
    p.add_argument(
        "--handshakes",
        action="store_true",
        help="per handshake cycle instead (loadgen handshakes, 32 loops of open and close)",
    )
    p.add_argument("--keep", type=Path, help="copy callgrind's profile here (callgrind_annotate)")
    a = p.parse_args()
    loadgen = harness.ROOT / "bench" / "loadgen" / "loadgen"
    extra_env = dict(kv.split("=", 1) for kv in a.env)
    with harness.environment(loadgen, False, a.source) as env:
        _, echo_port = harness.start_echo(env, "echo", turns=a.turns)
        port, admin = harness.free_port(), harness.free_port()
        cfg = harness.proxy_config(
            env.work / "proxy", port, admin, echo_port, echo_port, a.relay_keys
        )
        module, path = harness.source_layout(env.source)
        out_file = env.work / "callgrind.out"
        proxy = env.spawn(
            "proxy",
            [
                "valgrind",
                "--tool=callgrind",
                "--instr-atstart=no",
                f"--callgrind-out-file={out_file}",
                sys.executable,
                "-m",
                module,
                "--log-level",
                "warning",
                "run",
                "--config",
                str(cfg),
            ],
            core=1,
            env={
                **os.environ,
                **extra_env,
                "STRANGLER_BENCH_SECRET": harness.SECRET,
                "PYTHONPATH": str(path),
            },
            cwd=env.source,
        )
        harness.wait_port(admin, proxy, timeout=300)
        target = harness.scenario_targets(port, "")[a.scenario]
        common = ["--size", str(a.size), "--conns", "1", "--turns", str(int(a.turns))]
        # One untimed pass first: imports, caches and the first connection's set-up.
        series = _CONNECTIONS if a.handshakes else _COUNTER
        if a.handshakes:
            mode, args = "handshakes", ["--conns", "32", "--warmup", "0"]
        else:
            mode, args = "rtt", common
        harness.run_loadgen(env, mode, target, {}, [*args, "--duration", "3"], 300)
        before = counted(admin, series)
        subprocess.run(["callgrind_control", "-i", "on", str(proxy.proc.pid)], check=True)
        result = harness.run_loadgen(
            env, mode, target, {}, [*args, "--duration", str(a.seconds)], 600
        )
        subprocess.run(["callgrind_control", "-i", "off", str(proxy.proc.pid)], check=True)
        trips = counted(admin, series) - before
        env.stop(proxy)
        deadline = time.monotonic() + 60
        while not out_file.exists() and time.monotonic() < deadline:
            time.sleep(0.2)
        text = out_file.read_text(errors="replace")
        if a.keep is not None:
            a.keep.write_text(text)
        # The file's `summary:` line is written before counting starts; `totals:` last.
        total = int(re.findall(r"^totals: (\d+)", text, re.MULTILINE)[-1])
        print(
            json.dumps(
                {
                    "source": str(a.source),
                    "scenario": a.scenario,
                    "env": extra_env,
                    "relay_keys": a.relay_keys,
                    "turns": a.turns,
                    "round_trips": trips,
                    "handshakes": a.handshakes,
                    "loadgen_messages": result.get("messages", result.get("cycles")),
                    "instructions": total,
                    "per_round_trip": round(total / max(trips, 1)),
                }
            )
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
