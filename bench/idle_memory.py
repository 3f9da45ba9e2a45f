"""Where an idle proxied connection's memory goes, by allocation site (tracemalloc).

    .venv/bin/python bench/idle_memory.py [--conns 2000] [--top 25] [--relay auto|off]

Starts the C echo upstream (bench/loadgen, built by bench/run.sh) and the proxy in this
process on uvloop, with tracemalloc on; the compiled load generator, in a child process,
opens --conns idle `legacy` connections on `/ws` through the proxy and holds them. The
difference between a snapshot before and one after, divided by the connections, is the
Python heap each connection costs, listed by the line that allocated it. It covers
Python allocations only (not the kernel's socket buffers, not the allocator's slack), so
it adds up to a little less than the harness's RSS figure.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import os
import subprocess
import sys
import tempfile
import time
import tracemalloc
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import harness  # bench/ is not a package: found through the path above

LOADGEN = Path(__file__).resolve().parent / "loadgen" / "loadgen"


async def probe(echo_port: int, conns: int, top: int, relay: str) -> None:
    from strangler.proxy.config import load_config
    from strangler.proxy.runtime.server import start

    os.environ["STRANGLER_BENCH_SECRET"] = harness.SECRET
    work = Path(tempfile.mkdtemp(prefix="strangler-idle-memory-"))
    extra = "" if relay == "auto" else ', tunnel: "off"'
    config = harness.proxy_config(
        work, harness.free_port(), harness.free_port(), echo_port, echo_port, extra
    )
    running = await start(load_config(config))
    token = harness.token(harness.USERS["legacy"])
    gc.collect()
    tracemalloc.start(4)
    before = tracemalloc.take_snapshot()
    holder = await asyncio.create_subprocess_exec(
        str(LOADGEN),
        "idle",
        "--port",
        str(running.port),
        "--path",
        "/ws",
        "--conns",
        str(conns),
        "--header",
        f"Authorization: Bearer {token}",
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
    )
    assert holder.stdout is not None and holder.stdin is not None
    print((await holder.stdout.readline()).decode().strip())
    await asyncio.sleep(1.0)
    gc.collect()
    after = tracemalloc.take_snapshot()
    stats = after.compare_to(before, "lineno")
    total = sum(s.size_diff for s in stats)
    print(f"Python heap per connection: {total / conns / 1024:.2f} KiB ({relay} relay)")
    print("   bytes  objects  allocated at")
    for s in stats[:top]:
        frame = s.traceback[0]
        where = frame.filename.split("site-packages/")[-1].replace(str(harness.ROOT) + "/", "")
        print(f"{s.size_diff / conns:8.0f} {s.count_diff / conns:8.2f}  {where}:{frame.lineno}")
    holder.stdin.close()
    await holder.wait()
    await running.stop()


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--conns", type=int, default=2000)
    p.add_argument("--top", type=int, default=25)
    p.add_argument("--relay", choices=("auto", "off"), default="auto")
    a = p.parse_args()
    if not LOADGEN.exists():
        subprocess.run(["make", "-s", "-C", str(LOADGEN.parent)], check=True)
    echo_port = harness.free_port()
    echo = subprocess.Popen([str(LOADGEN), "echo", "--port", str(echo_port)])
    try:
        time.sleep(0.3)
        try:
            import uvloop
        except ImportError:
            asyncio.run(probe(echo_port, a.conns, a.top, a.relay))
        else:
            uvloop.run(probe(echo_port, a.conns, a.top, a.relay))
    finally:
        echo.kill()
        echo.wait()


if __name__ == "__main__":
    main()
