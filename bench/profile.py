"""Where the proxy's time goes under one benchmark load, sampled with py-spy.

    .venv/bin/python bench/profile.py legacy/per-frame [--seconds 8] [--conns 100]
    .venv/bin/python bench/profile.py idle-open --conns 3000

Starts the same echo upstreams and proxy as bench/harness.py, drives the scenario's
load with the compiled load generator, records the proxy with `py-spy record` (raw
collapsed stacks) and prints the functions with the most samples: by self time (the
function was on top of the stack) and inclusive (anywhere on it). Needs py-spy
(`.venv/bin/pip install py-spy`) and permission to ptrace the proxy (root).
"""

from __future__ import annotations

import argparse
import collections
import re
import shutil
import subprocess
import sys
import threading
from collections.abc import Sequence
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import harness as h  # the sibling module, found through the path above

_LINE = re.compile(r":\d+\)$")


def top(collapsed: Path, n: int) -> str:
    own: collections.Counter[str] = collections.Counter()
    incl: collections.Counter[str] = collections.Counter()
    total = 0
    for line in collapsed.read_text().splitlines():
        stack, _, count_text = line.rpartition(" ")
        if not stack:
            continue
        count = int(count_text)
        total += count
        # py-spy names a frame "function (file:line)"; drop the line so a function's
        # samples add up across its lines.
        names = [_LINE.sub(")", f) for f in stack.split(";")]
        own[names[-1]] += count
        for name in set(names):
            incl[name] += count
    lines = [f"{total} samples", "", "self:"]
    lines += [f"  {100 * c / total:5.1f}%  {name}" for name, c in own.most_common(n)]
    lines += ["", "inclusive:"]
    lines += [f"  {100 * c / total:5.1f}%  {name}" for name, c in incl.most_common(n)]
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("scenario", help="legacy, unified, translated, shadow, live (optionally "
                   "with /per-frame), or idle-open")  # fmt: skip
    p.add_argument("--seconds", type=float, default=8.0)
    p.add_argument("--conns", type=int, default=100)
    p.add_argument("--top", type=int, default=25)
    p.add_argument("--loadgen", type=Path, default=h.ROOT / "bench" / "loadgen" / "loadgen")
    p.add_argument("--source", type=Path, default=h.ROOT, help="the proxy's source tree")
    p.add_argument("--out", type=Path, default=Path("bench/out/profile.txt"))
    p.add_argument(
        "--turns", action="store_true", help="turn-shaped traffic (loadgen echo --turns 1)"
    )
    a = p.parse_args(argv)
    pyspy = shutil.which("py-spy") or str(h.ROOT / ".venv" / "bin" / "py-spy")
    name = a.scenario
    label = "/per-frame" if name.endswith("/per-frame") else ""
    extra = ', tunnel: "off"' if label else ""
    a.out.parent.mkdir(parents=True, exist_ok=True)
    with h.environment(a.loadgen, True, a.source) as env:
        _, port_a = h.start_echo(env, "echo-a", turns=a.turns)
        _, port_b = h.start_echo(env, "echo-b", turns=a.turns)
        px = h.start_proxy(env, "proxy", port_a, port_b, extra)
        key = "legacy" if name == "idle-open" else name
        t = h.scenario_targets(px.port, label)[key if key.endswith(label) else key + label]
        raw = env.work / "profile.txt"
        spy = subprocess.Popen(
            [
                pyspy,
                "record",
                "--pid",
                str(px.proc.pid),
                "--duration",
                str(int(a.seconds)),
                "--format",
                "raw",
                "--output",
                str(raw),
                "--nonblocking",
            ]
        )
        if name == "idle-open":
            done = threading.Event()

            def stop_after() -> dict[str, object]:
                done.wait()
                return {}

            def sampled() -> None:
                spy.wait()
                done.set()

            threading.Thread(target=sampled, daemon=True).start()
            h.hold_idle(
                env, h.Target(name, t.port, t.path, t.headers, px), a.conns, 0.1, stop_after
            )
        else:
            args = ["--conns", str(a.conns), "--duration", str(a.seconds + 2), "--warmup", "0"]
            args += ["--turns", str(int(a.turns))]
            h.run_loadgen(env, "rtt", t, {}, args, a.seconds + 60)
        spy.wait(timeout=60)
        report = f"profile of {name}, {a.conns} connections\n\n" + top(raw, a.top)
    print(report)
    a.out.write_text(report + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
