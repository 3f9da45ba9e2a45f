"""The fault matrix: what a client sees when something around it breaks.

Every fault is real: backends killed or cut off mid-turn, sockets that never answer or
answer garbage, clients that stop reading, a flag file vandalised on disk, SIGTERM
during a turn, and thousands of connections opened and torn down. In each case the
client gets a defined answer, the fault is counted, and everyone else keeps working.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import resource
import signal
import socket
import struct
import sys
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp import web

from strangler.proxy.runtime.server import Running
from strangler.reference.settings import BackendSettings
from tests.functional.conftest import (
    ALL_ROUTES,
    DEMO_ROUTES,
    SECRET,
    Stack,
    StartProxy,
    admin_ready,
    free_port,
    metric,
    scrape,
    token,
    wait_for,
    write_process_config,
)

ROOT = Path(__file__).resolve().parents[2]
BACKEND_SCRIPT = ROOT / "bench" / "soak" / "backend.py"

LEGACY_FOR_ALL = f"flags:\n  unified_router:\n    routes: {ALL_ROUTES}\n"
TARGETS = f"""
flags:
  unified_router:
    routes: {ALL_ROUTES}
    targets: {{unified: [alice], shadow: [sam], live: [liv]}}
"""


def start_frame(text: str = "Optimize my costs") -> str:
    return json.dumps({"type": "start_agent", "payload": {"user_request": text}})


def bearer(user: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token(user)}"}


async def turn(ws: aiohttp.ClientWebSocketResponse[Any], text: str = "hello") -> list[str]:
    """Run one turn on an open connection; the event types the client saw."""
    await ws.send_str(start_frame(text))
    seen: list[str] = []
    async with asyncio.timeout(10):
        while not seen or seen[-1] not in ("agent_completed", "agent_error"):
            msg = await ws.receive()
            assert msg.type is aiohttp.WSMsgType.TEXT, msg
            seen.append(json.loads(msg.data)["type"])
    return seen


async def events_until_close(ws: aiohttp.ClientWebSocketResponse[Any]) -> list[str]:
    """Read until the connection ends; the event types seen before the close."""
    seen: list[str] = []
    async with asyncio.timeout(10):
        while True:
            msg = await ws.receive()
            if msg.type is not aiohttp.WSMsgType.TEXT:
                return seen
            seen.append(json.loads(msg.data)["type"])


async def count(proxy: Running, name: str, **labels: str) -> float:
    return await metric(proxy.admin_port, name, **labels)


# -- a backend that dies mid-turn ---------------------------------------------------------


@pytest.mark.parametrize(
    ("relay_extra", "expected_code"),
    [("", 1011), ("relay: {upstream_lost_close_code: 1012}", 1012)],
    ids=["default_1011", "configured_1012"],
)
async def test_backend_cut_off_mid_turn_closes_only_that_client_with_the_configured_code(
    stack: Stack, relay_extra: str, expected_code: int
) -> None:
    # The legacy backend aborts its own transport two events into a turn that asks for it.
    await stack.backends(
        legacy=BackendSettings(
            jwt_secret=SECRET, event_delay=0.05, divergence="crash", divergence_keyword="crash"
        )
    )
    p = await stack.proxy(LEGACY_FOR_ALL, extra=relay_extra)
    async with aiohttp.ClientSession() as s:
        victim = await s.ws_connect(f"ws://127.0.0.1:{p.port}/ws", headers=bearer("bob"))
        bystander = await s.ws_connect(f"ws://127.0.0.1:{p.port}/ws", headers=bearer("carol"))
        await victim.receive()  # connection_established
        await bystander.receive()
        await victim.send_str(start_frame("crash please"))
        # The bystander's turn runs while the victim's backend dies.
        bystander_turn = asyncio.create_task(turn(bystander))
        seen = await events_until_close(victim)
        assert seen and "agent_completed" not in seen  # it did die mid-turn
        assert victim.close_code == expected_code
        assert (await bystander_turn)[-1] == "agent_completed"
        assert (await turn(bystander))[-1] == "agent_completed"
        await bystander.close()
        assert bystander.close_code == 1000

    async def counted() -> bool:
        gone = await count(
            p, "strangler_connections_total", route="main", mode="legacy", outcome="backend_gone"
        )
        return gone == 1

    await wait_for(counted)


async def spawn_backend(
    kind: str, port: int, event_delay: float = 0.0
) -> asyncio.subprocess.Process:
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        str(BACKEND_SCRIPT),
        kind,
        "--port",
        str(port),
        "--secret",
        SECRET,
        "--event-delay",
        str(event_delay),
        stdout=asyncio.subprocess.PIPE,
        cwd=ROOT,
    )
    assert proc.stdout is not None
    async with asyncio.timeout(20):
        assert (await proc.stdout.readline()).strip() == b"ready"
    return proc


async def test_backend_process_killed_mid_turn_gives_1011_and_the_other_backend_serves_on(
    stack: Stack,
) -> None:
    # Unified in this process, legacy as a process of its own that is SIGKILLed.
    await stack.backends()
    legacy_port = free_port()
    legacy = await spawn_backend("legacy", legacy_port, event_delay=0.1)
    try:
        stack.legacy_port = legacy_port
        p = await stack.proxy(TARGETS)
        async with aiohttp.ClientSession() as s:
            bob = await s.ws_connect(f"ws://127.0.0.1:{p.port}/ws", headers=bearer("bob"))
            alice = await s.ws_connect(f"ws://127.0.0.1:{p.port}/ws", headers=bearer("alice"))
            await bob.receive()
            await alice.receive()
            await bob.send_str(start_frame())
            assert json.loads((await bob.receive()).data)["type"] == "agent_started"
            legacy.kill()
            seen = await events_until_close(bob)
            assert "agent_completed" not in seen
            assert bob.close_code == 1011
            assert (await turn(alice))[-1] == "agent_completed"
            await alice.close()
        assert (
            await count(
                p,
                "strangler_connections_total",
                route="main",
                mode="legacy",
                outcome="backend_gone",
            )
            == 1
        )
    finally:
        with contextlib.suppress(ProcessLookupError):
            legacy.kill()
        await legacy.wait()


# -- backends that never answer, or answer garbage ---------------------------------------


@contextlib.asynccontextmanager
async def raw_server(
    answer: Callable[[asyncio.StreamReader, asyncio.StreamWriter], Any],
) -> AsyncIterator[tuple[int, list[asyncio.Task[Any]]]]:
    """A TCP server on loopback running `answer` per connection; its port and handlers."""
    handlers: list[asyncio.Task[Any]] = []

    async def on_connect(r: asyncio.StreamReader, w: asyncio.StreamWriter) -> None:
        handlers.append(asyncio.current_task())  # type: ignore[arg-type]
        try:
            await answer(r, w)
        finally:
            w.close()

    server = await asyncio.start_server(on_connect, "127.0.0.1", 0)
    try:
        yield server.sockets[0].getsockname()[1], handlers
    finally:
        server.close()
        for task in handlers:
            task.cancel()
        await asyncio.gather(*handlers, return_exceptions=True)
        await server.wait_closed()


async def test_backend_that_never_answers_the_handshake_gives_504_and_leaves_no_task(
    start_proxy: StartProxy,
) -> None:
    eofs: list[bool] = []

    async def silent(r: asyncio.StreamReader, _: asyncio.StreamWriter) -> None:
        await r.readuntil(b"\r\n\r\n")  # the handshake request arrives; no answer ever
        eofs.append(await r.read(1) == b"")  # the proxy hangs up after its timeout

    async with raw_server(silent) as (port, _):
        p = await start_proxy(legacy_url=f"ws://127.0.0.1:{port}", connect_timeout=0.3)
        await asyncio.sleep(0.1)  # let start-up tasks settle before the baseline
        before = asyncio.all_tasks()
        async with aiohttp.ClientSession() as s:
            for _ in range(3):
                with pytest.raises(aiohttp.WSServerHandshakeError) as refused:
                    await s.ws_connect(p.url(), headers=bearer("bob"))
                assert refused.value.status == 504

        async def no_leftover_tasks() -> bool:
            extra = asyncio.all_tasks() - before - {asyncio.current_task()}
            return not extra and len(eofs) == 3

        await wait_for(no_leftover_tasks)
        assert eofs == [True, True, True]
        assert (
            await p.metric(
                "strangler_upstream_connect_failures_total",
                backend="legacy",
                reason="handshake_timeout",
            )
            == 3
        )
        assert (
            await p.metric(
                "strangler_handshake_refusals_total", route="main", reason="upstream_unavailable"
            )
            == 3
        )


async def test_a_backend_redirect_loop_gives_502_and_logs_no_path_or_query(
    start_proxy: StartProxy, caplog: pytest.LogCaptureFixture
) -> None:
    async def loop(r: asyncio.StreamReader, w: asyncio.StreamWriter) -> None:
        while True:  # every request on the connection, kept alive between redirects
            try:
                head = await r.readuntil(b"\r\n\r\n")
            except asyncio.IncompleteReadError:
                return
            target = head.split(b"\r\n", 1)[0].split(b" ")[1]  # the same path and query
            w.write(b"HTTP/1.1 302 Found\r\nLocation: " + target + b"\r\nContent-Length: 0\r\n\r\n")
            await w.drain()

    async with raw_server(loop) as (port, _):
        # The per-frame relay dials with aiohttp's client, which follows redirects.
        p = await start_proxy(
            legacy_url=f"ws://127.0.0.1:{port}",
            relay='{tunnel: "off", max_message_bytes: 2097152, grace_period: 1}',
        )
        async with aiohttp.ClientSession() as s:
            with pytest.raises(aiohttp.WSServerHandshakeError) as refused:
                await s.ws_connect(p.url("/ws?session=user-4242"), headers=bearer("bob"))
            assert refused.value.status == 502
    logged = "\n".join(r.getMessage() for r in caplog.records)
    assert "TooManyRedirects" in logged
    assert "user-4242" not in logged and "/ws?" not in logged


BAD_ACCEPT = (
    b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
    b"Sec-WebSocket-Accept: bm90IHRoZSByaWdodCBrZXk=\r\n\r\n"
)


@pytest.mark.parametrize(
    ("junk", "reason"),
    [
        (b"\x00\x17\xfe garbage that is no HTTP at all\r\n\r\n", "error"),
        (b"SSH-2.0-OpenSSH_9.2\r\n", "error"),
        (BAD_ACCEPT, "bad_handshake"),
    ],
    ids=["binary_junk", "other_protocol", "wrong_accept_key"],
)
async def test_backend_answering_the_handshake_with_garbage_gives_502(
    start_proxy: StartProxy, junk: bytes, reason: str
) -> None:
    async def garbage(r: asyncio.StreamReader, w: asyncio.StreamWriter) -> None:
        await r.readuntil(b"\r\n\r\n")
        w.write(junk)
        await w.drain()
        await r.read()  # hold the socket until the proxy hangs up

    async with raw_server(garbage) as (port, _):
        p = await start_proxy(legacy_url=f"ws://127.0.0.1:{port}", connect_timeout=2)
        async with aiohttp.ClientSession() as s:
            with pytest.raises(aiohttp.WSServerHandshakeError) as refused:
                await s.ws_connect(p.url(), headers=bearer("bob"))
            assert refused.value.status == 502
            # Everyone else is still served: alice's backend is healthy.
            async with s.ws_connect(p.url(), headers=bearer("alice")) as ws:
                await ws.send_str("who")
                assert json.loads((await ws.receive()).data) == {"backend": "unified"}
        assert (
            await p.metric(
                "strangler_upstream_connect_failures_total", backend="legacy", reason=reason
            )
            == 1
        )


# -- the compared secondary misbehaves: the primary session does not notice -----------------

# This one process also runs the backends and the client: under a loaded machine its
# loop lags, and shedding (proxy/shadow/shed.py) would rightly refuse the secondary
# before its fault is ever met. Shedding is not what these tests judge.
SHADOW_FAST = (
    "shadow: {queue_frames: 64, shed: {enabled: false},"
    " compare: {timeout_factor: 2, timeout_floor: 0.5}}"
)


async def fault_proxy(stack: Stack, legacy_url: str, unified_url: str, name: str) -> Running:
    """A proxy over the reference backends with either backend's URL replaced."""
    ticket_url = f"http://127.0.0.1:{stack.legacy_port}/api/websocket/ticket/introspect"
    d = stack.tmp / name
    d.mkdir()
    (d / "flags.yaml").write_text(TARGETS)
    (d / "strangler.yaml").write_text(
        f"""
listen: 127.0.0.1:0
admin_listen: 127.0.0.1:0
backends:
  legacy: {{url: "{legacy_url}", connect_timeout: 0.5}}
  unified: {{url: "{unified_url}", connect_timeout: 0.5}}
{DEMO_ROUTES}
flags: {{file: flags.yaml, poll_interval: 0.05}}
jwt: {{secret_env: STRANGLER_TEST_SECRET, issuer: netra-auth-service, audience: [netra-platform]}}
tickets: {{introspection_url: "{ticket_url}"}}
{SHADOW_FAST}
"""
    )
    from strangler.proxy.config import load_config
    from strangler.proxy.runtime.server import start

    running = await start(load_config(d / "strangler.yaml"))
    stack.proxies.append(running)
    return running


async def misbehaving_secondary(fault: str) -> tuple[str, Callable[[], Any]]:
    """A WebSocket URL whose server shows `fault`, and how to stop it."""
    if fault == "unreachable":
        return f"ws://127.0.0.1:{free_port()}", lambda: None
    if fault == "hangs":
        writers: list[asyncio.StreamWriter] = []

        async def silent(_: asyncio.StreamReader, w: asyncio.StreamWriter) -> None:
            writers.append(w)

        server = await asyncio.start_server(silent, "127.0.0.1", 0)

        async def stop_silent() -> None:
            for w in writers:
                w.close()
            server.close()
            await server.wait_closed()

        return f"ws://127.0.0.1:{server.sockets[0].getsockname()[1]}", stop_silent

    async def handle(request: web.Request) -> web.StreamResponse:
        if fault == "refuses":
            return web.Response(status=503, text="overloaded")
        ws = web.WebSocketResponse()
        await ws.prepare(request)
        async for msg in ws:
            if msg.type is not aiohttp.WSMsgType.TEXT:
                break
            if fault == "crashes":
                assert request.transport is not None
                request.transport.abort()  # gone mid-turn without a close frame
                break
            for seq in range(20000):  # floods: far more than any queue holds
                await ws.send_str(json.dumps({"type": "agent_thinking", "seq": seq}))
        return ws

    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", handle)
    runner = web.AppRunner(app, handle_signals=False, shutdown_timeout=0.2)
    await runner.setup()
    port = free_port()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    return f"ws://127.0.0.1:{port}", runner.cleanup


# The metric each fault leaves behind (shadow.py counts every way a secondary fails).
FAULT_SIGNS = {
    "unreachable": ("strangler_secondary_failures_total", "unavailable"),
    "hangs": ("strangler_secondary_failures_total", "unavailable"),
    "refuses": ("strangler_secondary_failures_total", "refused"),
    "crashes": ("strangler_secondary_failures_total", "died"),
    "floods": ("strangler_secondary_failures_total", "overflow"),
}


@pytest.mark.parametrize("fault", sorted(FAULT_SIGNS))
@pytest.mark.parametrize(("user", "mode"), [("sam", "shadow"), ("liv", "live")])
async def test_secondary_fault_leaves_the_primary_session_untouched(
    stack: Stack, fault: str, user: str, mode: str
) -> None:
    """shadow: unified is the secondary; live: legacy is. test_shadow.py goes deeper
    into shadow mode; this is the matrix of both modes against every secondary fault."""
    await stack.backends()
    bad_url, stop = await misbehaving_secondary(fault)
    try:
        good_legacy = f"ws://127.0.0.1:{stack.legacy_port}"
        good_unified = f"ws://127.0.0.1:{stack.unified_port}/v1/ws"
        if mode == "shadow":
            p = await fault_proxy(stack, good_legacy, bad_url + "/v1/ws", f"{fault}-{mode}")
        else:
            p = await fault_proxy(stack, bad_url, good_unified, f"{fault}-{mode}")
        primary = "legacy" if mode == "shadow" else "unified"
        secondary = "unified" if mode == "shadow" else "legacy"
        async with (
            aiohttp.ClientSession() as s,
            s.ws_connect(f"ws://127.0.0.1:{p.port}/ws", headers=bearer(user)) as ws,
        ):
            hello = json.loads((await ws.receive()).data)
            assert hello["server_id"] == primary
            for _ in range(2):  # the turn after the fault works as well as the first
                assert (await turn(ws))[-1] == "agent_completed"
        name, label = FAULT_SIGNS[fault]

        async def counted() -> bool:
            if name == "strangler_secondary_dropped_frames_total":
                return await count(p, name, route="main", queue=label) > 0
            return await count(p, name, route="main", backend=secondary, reason=label) >= 1

        await wait_for(counted)
        assert (
            await count(
                p, "strangler_connections_total", route="main", mode=mode, outcome="client_closed"
            )
            == 1
        )
    finally:
        result = stop()
        if asyncio.iscoroutine(result):
            await result


# -- a client that stops reading while its backend floods ----------------------------------


def _rss_bytes() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * resource.getpagesize()


def masked_text(payload: bytes) -> bytes:
    mask = b"\x01\x02\x03\x04"
    return (
        bytes([0x81, 0x80 | len(payload)])
        + mask
        + bytes(b ^ mask[i % 4] for i, b in enumerate(payload))
    )


async def read_close_code(reader: asyncio.StreamReader) -> int:
    """Skip server frames until the close frame; its code."""
    while True:
        head = await reader.readexactly(2)
        opcode, length = head[0] & 0x0F, head[1] & 0x7F
        if length == 126:
            length = struct.unpack("!H", await reader.readexactly(2))[0]
        elif length == 127:
            length = struct.unpack("!Q", await reader.readexactly(8))[0]
        body = await reader.readexactly(length)
        if opcode == 0x8:
            return int(struct.unpack("!H", body[:2])[0])


@pytest.mark.parametrize("code", [1008, 1009])
async def test_client_that_stops_reading_costs_bounded_memory_and_is_closed_with_the_set_code(
    start_proxy: StartProxy, code: int
) -> None:
    p = await start_proxy(extra=f"limits: {{stalled_timeout: 0.5, stalled_close_code: {code}}}")
    reader, writer = await asyncio.open_connection("127.0.0.1", p.running.port)
    writer.write(
        (
            "GET /ws HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
            "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n"
            f"Authorization: Bearer {token('bob')}\r\n\r\n"
        ).encode()
    )
    await reader.readuntil(b"\r\n\r\n")
    frames, size = 4000, 65536  # 256 MiB offered to a client that never reads
    rss_before = _rss_bytes()
    writer.write(masked_text(f"flood {frames} {size}".encode()))
    await writer.drain()
    proxy = p.running.proxy
    peak_buffer = 0
    peak_rss = rss_before

    async def stalled() -> bool:
        nonlocal peak_buffer, peak_rss
        peak_rss = max(peak_rss, _rss_bytes())
        for conn in proxy.connections:
            protocol = conn.client_protocol
            if protocol is not None and protocol.transport is not None:
                transport = protocol.transport
                assert isinstance(transport, asyncio.WriteTransport)
                peak_buffer = max(peak_buffer, transport.get_write_buffer_size())
            if conn.ending == "stalled":
                return True
        return False

    await wait_for(stalled, timeout=20)
    # Backpressure: the backend was held back (what it did send sits in the kernel's
    # socket buffers), not drained into the proxy's memory.
    assert p.legacy.sent < frames // 2
    assert 0 < peak_buffer < 1024 * 1024  # seen filled, and bounded
    assert peak_rss - rss_before < frames * size // 4
    # The client, reading at last, finds the configured close after what was in flight.
    async with asyncio.timeout(10):
        assert await read_close_code(reader) == code

    async def counted() -> bool:
        return (
            await p.metric(
                "strangler_connections_total", route="main", mode="legacy", outcome="stalled"
            )
            == 1
        )

    await wait_for(counted)
    writer.close()


# -- the flag file vandalised while running --------------------------------------------------

GOOD_FLAGS = (
    "flags:\n  unified_router:\n    routes: [main, main_user, factory, isolated]\n"
    "    targets: {unified: [alice]}\n"
)
NEXT_FLAGS = GOOD_FLAGS.replace("[alice]", "[alice, bob]")


def vandalise(path: Path, fault: str) -> None:
    if fault == "deleted":
        path.unlink()
    elif fault == "truncated":
        path.write_text(GOOD_FLAGS[: len(GOOD_FLAGS) // 2])  # cut inside the routes list
    elif fault == "garbage":
        path.write_bytes(b"\x00\xff\xfe\x89PNG binary junk\x00" * 10)
    elif fault == "nested":
        path.write_bytes(b"flags: " + b"[" * 5000)  # deep enough to exhaust the recursion
    elif fault == "symlink_loop":
        path.unlink()
        other = path.with_name("loop.yaml")
        os.symlink(other, path)
        os.symlink(path, other)
    else:
        raise AssertionError(fault)


def restore(path: Path, text: str) -> None:
    """A good file appears the way a deploy puts it there: written aside, renamed over."""
    aside = path.with_name("flags.yaml.new")
    aside.write_text(text)
    os.replace(aside, path)
    path.with_name("loop.yaml").unlink(missing_ok=True)


async def served_by(p: Any, user: str) -> str:
    async with aiohttp.ClientSession() as s, s.ws_connect(p.url(), headers=bearer(user)) as ws:
        await ws.send_str("who")
        backend: str = json.loads((await ws.receive()).data)["backend"]
        return backend


async def flags_status(p: Any) -> dict[str, Any]:
    async with (
        aiohttp.ClientSession() as s,
        s.get(f"http://127.0.0.1:{p.running.admin_port}/flags/status") as r,
    ):
        body: dict[str, Any] = await r.json()
        return body


@pytest.mark.parametrize("fault", ["deleted", "truncated", "garbage", "nested", "symlink_loop"])
async def test_vandalised_flag_file_keeps_the_last_good_flags_until_a_good_file_appears(
    start_proxy: StartProxy, fault: str
) -> None:
    p = await start_proxy(GOOD_FLAGS)
    good_hash = (await flags_status(p))["hash"]
    vandalise(p.flags_path, fault)

    async def rejected() -> bool:
        return await p.metric("strangler_flag_reloads_total", result="rejected") >= 1

    await wait_for(rejected)
    status = await flags_status(p)
    assert status["hash"] == good_hash
    assert status["last_error"] and "flags.yaml" in status["last_error"]
    # Decisions for new connections are those of the last good file.
    assert await served_by(p, "alice") == "unified"
    assert await served_by(p, "bob") == "legacy"

    restore(p.flags_path, NEXT_FLAGS)

    async def recovered() -> bool:
        return (await flags_status(p))["last_error"] is None

    await wait_for(recovered)
    assert await served_by(p, "bob") == "unified"
    assert await p.metric("strangler_flag_reloads_total", result="applied") == 2


# -- SIGTERM while turns are running ----------------------------------------------------------


async def test_sigterm_lets_a_turn_in_flight_finish_then_closes_idle_ones_with_1001(
    stack: Stack, tmp_path: Path
) -> None:
    await stack.backends(legacy=BackendSettings(jwt_secret=SECRET, event_delay=0.1))
    port, admin = write_process_config(
        tmp_path,
        legacy_url=f"ws://127.0.0.1:{stack.legacy_port}",
        unified_url=f"ws://127.0.0.1:{stack.unified_port}/v1/ws",
        flags=LEGACY_FOR_ALL,
        routes=DEMO_ROUTES,
        poll_interval=None,
        extra="relay: {grace_period: 3}",
    )
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "strangler.proxy",
        "run",
        "--config",
        str(tmp_path / "strangler.yaml"),
        env={**os.environ, "STRANGLER_TEST_SECRET": SECRET},
        stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.PIPE,
        cwd=ROOT,
    )
    try:
        await wait_for(lambda: admin_ready(admin), timeout=20)
        url = f"ws://127.0.0.1:{port}/ws"
        async with aiohttp.ClientSession() as s:
            busy = await s.ws_connect(url, headers=bearer("bob"))
            idle = await s.ws_connect(url, headers=bearer("carol"))
            await busy.receive()
            await idle.receive()
            await busy.send_str(start_frame())
            assert json.loads((await busy.receive()).data)["type"] == "agent_started"
            proc.send_signal(signal.SIGTERM)
            # The accepted turn runs to its end inside the grace period...
            rest: list[str] = []
            async with asyncio.timeout(10):
                while not rest or rest[-1] != "agent_completed":
                    msg = await busy.receive()
                    assert msg.type is aiohttp.WSMsgType.TEXT, msg
                    rest.append(json.loads(msg.data)["type"])
            # ...while a new handshake is refused and the instance reports not ready.
            with pytest.raises(aiohttp.WSServerHandshakeError) as refused:
                await s.ws_connect(url, headers=bearer("dave"))
            assert refused.value.status == 503
            async with s.get(f"http://127.0.0.1:{admin}/readyz") as r:
                assert r.status == 503
            samples = await scrape(admin)
            key = (
                "strangler_handshake_refusals_total",
                (("reason", "shutting_down"), ("route", "main")),
            )
            assert samples[key] == 1
            # When the grace period ends, what is still open is closed with 1001.
            for ws in (busy, idle):
                async with asyncio.timeout(10):
                    msg = await ws.receive()
                # What the client was sent. Its own close_code may read 1006: after a
                # close of its own the proxy does not wait for the client's answer
                # (relay/tunnel.py), so a client that answers late finds the socket gone.
                assert msg.type is aiohttp.WSMsgType.CLOSE
                assert (msg.data, msg.extra) == (1001, "server shutting down")
        async with asyncio.timeout(10):
            assert await proc.wait() == 0
        assert proc.stderr is not None
        assert "Traceback" not in (await proc.stderr.read()).decode()
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()


# -- churn: thousands of connections come and go, nothing stays behind ---------------------

CHURN_FLAGS = f"""
flags:
  unified_router:
    routes: {ALL_ROUTES}
    rollout: {{unified: 30, live: 10, shadow: 10}}
"""
CHURN = 2000


def _open_fds() -> int:
    return len(os.listdir("/proc/self/fd"))


async def _reset_after_handshake(port: int, user: str) -> None:
    """Complete a handshake, then vanish with a TCP reset (SO_LINGER 0), no close frame."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(
        (
            "GET /ws HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
            "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n"
            f"Authorization: Bearer {token(user)}\r\n\r\n"
        ).encode()
    )
    await reader.readuntil(b"\r\n\r\n")
    sock = writer.get_extra_info("socket")
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    writer.transport.abort()


async def _one_connection(s: aiohttp.ClientSession, port: int, i: int) -> None:
    user = f"user-{i}"
    kind = i % 10
    if kind == 0:
        await _reset_after_handshake(port, user)
        return
    path = "/websocket" if kind == 1 else "/ws"
    async with s.ws_connect(f"ws://127.0.0.1:{port}{path}", headers=bearer(user)) as ws:
        await ws.receive()  # the backend's greeting
        if kind == 2:
            await ws.send_str(start_frame())
            await ws.receive()  # leave mid-turn: the backend is still sending
        elif kind == 3:
            assert (await turn(ws))[-1] == "agent_completed"


async def test_churn_of_2000_connections_leaves_fds_tasks_and_memory_at_baseline(
    stack: Stack,
) -> None:
    await stack.backends()
    p = await stack.proxy(CHURN_FLAGS)
    proxy = p.proxy

    async def quiet() -> bool:
        return not proxy.connections and proxy.shadow.active == 0

    async def run(n: int, offset: int) -> None:
        gate = asyncio.Semaphore(64)

        async def bounded(i: int) -> None:
            async with gate:
                await _one_connection(s, p.port, i)

        async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0)) as s:
            await asyncio.gather(*(bounded(offset + i) for i in range(n)))

    await run(100, 0)  # warm up: sessions, caches and pools reach their working size
    await wait_for(quiet, timeout=15)
    await asyncio.sleep(0.3)
    fds, tasks, rss = _open_fds(), len(asyncio.all_tasks()), _rss_bytes()

    async with asyncio.timeout(60):
        await run(CHURN, 100)

    async def back_to_baseline() -> bool:
        return await quiet() and _open_fds() <= fds + 10 and len(asyncio.all_tasks()) <= tasks + 2

    await wait_for(back_to_baseline, timeout=20)
    assert _rss_bytes() - rss < 150 * 1024 * 1024
    samples = await scrape(p.admin_port)
    ended = sum(v for (name, _), v in samples.items() if name == "strangler_connections_total")
    assert ended >= CHURN + 100
    modes = {
        dict(labels)["mode"]
        for (name, labels), v in samples.items()
        if name == "strangler_connections_total" and v
    }
    assert modes == {"legacy", "shadow", "live", "unified"}


# -- a client that withholds its handshake ----------------------------------------------------


async def test_client_that_withholds_its_handshake_is_disconnected_and_others_are_served(
    start_proxy: StartProxy,
) -> None:
    p = await start_proxy(extra="limits: {header_timeout: 0.5}")
    heads = (b"", b"GET /ws HTTP/1.1\r\n", b"GET /ws HTTP/1.1\r\nHost: x\r\nUpgrade: webs")
    held = [await asyncio.open_connection("127.0.0.1", p.running.port) for _ in heads]
    for (_, writer), head in zip(held, heads, strict=True):
        writer.write(head)
    # The proxy serves a well-behaved client meanwhile...
    assert await served_by(p, "alice") == "unified"
    # ...and hangs up on each of the slow ones instead of holding their sockets.
    async with asyncio.timeout(10):
        for reader, writer in held:
            assert b"101" not in await reader.read()
            writer.close()
