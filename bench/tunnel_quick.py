"""Quick comparison of the byte tunnel and the per-frame relay: throughput and proxy CPU.

    .venv/bin/python bench/tunnel_quick.py [--messages 200000] [--size 300] [--clients 4]

Everything runs on loopback. A raw backend (no framework) and a raw load generator keep
their own cost low: frames are pre-built once, written in large batches, and counted on
receipt by the same header scanner the tunnel uses, so the proxy is the busy process.
For each relay mode a fresh proxy process (`strangler run`) is started and two workloads
run through it:

- down: the backend sends N text frames of --size bytes to each client;
- up: each client sends N masked text frames to the backend, which counts them.

Figures: messages per second (wall clock, all clients together), the proxy's CPU
time per message from /proc/<pid>/stat (utime + stime), and the proxy's RSS growth per
open, quiet connection (--idle of them). On a busy machine trust the CPU figures more
than the wall-clock ones. This is a quick check, not the full side-by-side with nginx
(bench/run.sh).
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import os
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

from strangler.proxy.relay.handshake import accept_key
from strangler.proxy.relay.wsframes import OP_TEXT, FrameScanner, close_frame, frame

ROOT = Path(__file__).resolve().parent.parent

SECRET = "bench-secret-0123456789abcdef0123456789abcdef"
MASK = b"\x1f\x2e\x3d\x4c"
BATCH = 256  # frames per write


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


# -- the backend ------------------------------------------------------------------------


async def backend_connection(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    head = (await reader.readuntil(b"\r\n\r\n")).decode("latin-1")
    lines = head.split("\r\n")
    target = lines[0].split(" ")[1]
    headers = {k.strip().lower(): v.strip() for k, _, v in (ln.partition(":") for ln in lines[1:])}
    writer.write(
        (
            "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
            f"Sec-WebSocket-Accept: {accept_key(headers['sec-websocket-key'])}\r\n\r\n"
        ).encode()
    )
    query = {k: int(v[0]) for k, v in parse_qs(urlsplit(target).query).items()}
    if query.get("idle"):
        await reader.read()  # hold the connection until the proxy lets go
        writer.close()
        return
    n, size = query["n"], query["size"]
    if query.get("down"):
        batch = frame(OP_TEXT, b"x" * size) * BATCH
        for _ in range(n // BATCH):
            writer.write(batch)
            await writer.drain()
        writer.write(frame(OP_TEXT, b"x" * size) * (n % BATCH))
    else:
        scanner = FrameScanner(0, masked=True)
        got = 0
        while got < n:
            data = await reader.read(1 << 18)
            if not data:
                break
            got += scanner.feed(data).messages
    writer.write(close_frame(1000))
    await writer.drain()
    # Wait for the close answer (or the end), then hang up.
    await reader.read(1 << 16)
    writer.close()


async def serve_backend(port: int) -> None:
    server = await asyncio.start_server(backend_connection, "127.0.0.1", port)
    async with server:
        await server.serve_forever()


# -- the load generator -----------------------------------------------------------------


async def one_client(port: int, workload: str, n: int, size: int) -> None:
    reader, writer = await asyncio.open_connection("127.0.0.1", port, limit=1 << 20)
    key = base64.b64encode(os.urandom(16)).decode()
    query = f"down=1&n={n}&size={size}" if workload == "down" else f"n={n}&size={size}"
    writer.write(
        (
            f"GET /websocket?{query} HTTP/1.1\r\nHost: bench\r\nUpgrade: websocket\r\n"
            f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n"
        ).encode()
    )
    head = await reader.readuntil(b"\r\n\r\n")
    if not head.startswith(b"HTTP/1.1 101"):
        raise SystemExit(f"handshake refused: {head[:80]!r}")
    if workload == "up":
        batch = frame(OP_TEXT, b"x" * size, mask=MASK) * BATCH
        for _ in range(n // BATCH):
            writer.write(batch)
            await writer.drain()
        writer.write(frame(OP_TEXT, b"x" * size, mask=MASK) * (n % BATCH))
    scanner = FrameScanner(0, masked=False)
    got = 0
    while True:
        data = await reader.read(1 << 18)
        if not data:
            raise SystemExit("proxy ended the connection early")
        got += scanner.feed(data).messages
        if scanner.closed:
            break
    if workload == "down" and got != n:
        raise SystemExit(f"received {got} of {n} messages")
    writer.write(close_frame(1000, mask=MASK))
    await writer.drain()
    writer.close()


async def idle_client(port: int) -> asyncio.StreamWriter:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    key = base64.b64encode(os.urandom(16)).decode()
    writer.write(
        (
            "GET /websocket?idle=1 HTTP/1.1\r\nHost: bench\r\nUpgrade: websocket\r\n"
            f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n"
        ).encode()
    )
    if not (await reader.readuntil(b"\r\n\r\n")).startswith(b"HTTP/1.1 101"):
        raise SystemExit("idle handshake refused")
    return writer


def rss_bytes(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    return 0


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


async def run_mode(
    mode: str, backend_port: int, n: int, size: int, clients: int, idle: int
) -> tuple[dict[str, tuple[float, float]], float]:
    work = Path(tempfile.mkdtemp(prefix="strangler-bench-"))
    port = free_port()
    (work / "flags.yaml").write_text("flags: {}\n")
    (work / "strangler.yaml").write_text(
        f"""
listen: 127.0.0.1:{port}
admin_listen: 127.0.0.1:{free_port()}
backends:
  legacy: {{url: "ws://127.0.0.1:{backend_port}", connect_timeout: 5}}
  unified: {{url: "ws://127.0.0.1:{backend_port}/v1/ws", connect_timeout: 5}}
routes:
  - {{name: legacy, path: /websocket, dialect: legacy, auth: none}}
flags: {{file: flags.yaml}}
jwt: {{secret_env: BENCH_SECRET}}
relay: {{tunnel: {mode}, max_message_bytes: 1048576}}
"""
    )
    proc = await asyncio.create_subprocess_exec(
        *(sys.executable, "-m", "strangler.proxy", "run", "--config", str(work / "strangler.yaml")),
        env={**os.environ, "BENCH_SECRET": SECRET, "STRANGLER_LOG_LEVEL": "warning"},
        cwd=ROOT,
    )
    try:
        for _ in range(100):
            try:
                _, w = await asyncio.open_connection("127.0.0.1", port)
                w.close()
                break
            except OSError:
                await asyncio.sleep(0.1)
        await one_client(port, "down", 1000, size)  # warm up
        results = {}
        for workload in ("down", "up"):
            cpu0, t0 = cpu_seconds(proc.pid), time.perf_counter()
            await asyncio.gather(*(one_client(port, workload, n, size) for _ in range(clients)))
            wall, cpu = time.perf_counter() - t0, cpu_seconds(proc.pid) - cpu0
            total = n * clients
            results[workload] = (total / wall, cpu / total * 1e6)
        # Memory an open, quiet connection costs (RSS growth over `idle` of them).
        before = rss_bytes(proc.pid)
        held = [await idle_client(port) for _ in range(idle)]
        await asyncio.sleep(0.5)
        per_connection = (rss_bytes(proc.pid) - before) / max(idle, 1)
        for writer in held:
            writer.close()
        return results, per_connection
    finally:
        proc.terminate()
        await proc.wait()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--messages", type=int, default=200_000, help="per client and workload")
    parser.add_argument("--size", type=int, default=300, help="payload bytes per message")
    parser.add_argument("--clients", type=int, default=4)
    parser.add_argument("--idle", type=int, default=500, help="quiet connections for memory")
    args = parser.parse_args()
    backend_port = free_port()
    backend = subprocess.Popen(
        [sys.executable, __file__, "--serve-backend", str(backend_port)],
    )
    try:
        time.sleep(0.5)
        print(f"{args.clients} clients x {args.messages} messages of {args.size} bytes, each way")
        print(f"{'mode':<10} {'workload':<6} {'msg/s':>12} {'proxy CPU us/msg':>18}")
        memory = {}
        for mode in ("auto", "off"):
            results, memory[mode] = asyncio.run(
                run_mode(mode, backend_port, args.messages, args.size, args.clients, args.idle)
            )
            name = "tunnel" if mode == "auto" else "per-frame"
            for workload, (rate, cpu) in results.items():
                print(f"{name:<10} {workload:<6} {rate:>12,.0f} {cpu:>18.2f}")
        for mode, name in (("auto", "tunnel"), ("off", "per-frame")):
            print(
                f"{name:<10} RSS per idle connection ({args.idle}): {memory[mode] / 1024:.1f} KiB"
            )
    finally:
        backend.terminate()
        backend.wait(timeout=5)


if __name__ == "__main__":
    if len(sys.argv) == 3 and sys.argv[1] == "--serve-backend":
        asyncio.run(serve_backend(int(sys.argv[2])))
    else:
        main()
