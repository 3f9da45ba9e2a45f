"""The relay end to end: real client, real proxy, scriptable backends, all on loopback."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import aiohttp
import pytest

from tests.functional.conftest import (
    ProxyUnderTest,
    StartProxy,
    browser_offer,
    free_port,
    token,
    wait_for,
)

DEFAULT_RELAY = "{max_message_bytes: 2097152, grace_period: 1}"


@pytest.fixture(params=["auto", "off"], ids=["tunnel", "per_frame"])
def start_proxy(start_proxy: StartProxy, request: pytest.FixtureRequest) -> StartProxy:
    """Every relay test runs against the byte tunnel and against the per-frame relay."""

    async def factory(*args: Any, relay: str = DEFAULT_RELAY, **kwargs: Any) -> ProxyUnderTest:
        assert relay.startswith("{")
        return await start_proxy(*args, relay=f"{{tunnel: {request.param}, {relay[1:]}", **kwargs)

    return factory


def bearer(user: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token(user)}"}


async def test_browser_offer_gets_exactly_the_subprotocol_the_backend_chose(
    start_proxy: StartProxy,
) -> None:
    p = await start_proxy()
    offer = browser_offer("bob")
    async with aiohttp.ClientSession() as s:
        # The backend answers the offer's second entry: the client must see that one.
        async with s.ws_connect(p.url(f"/ws?choose={offer[1]}"), protocols=offer) as ws:
            assert ws.protocol == offer[1]
        async with s.ws_connect(p.url("/ws?choose=jwt-auth"), protocols=offer) as ws:
            assert ws.protocol == "jwt-auth"
    # The whole offer reached the backend, in order.
    assert p.legacy.handshakes[-1]["headers"]["Sec-WebSocket-Protocol"] == ",".join(offer)


async def test_backend_that_chooses_no_subprotocol_gives_the_client_none(
    start_proxy: StartProxy,
) -> None:
    p = await start_proxy()
    async with (
        aiohttp.ClientSession() as s,
        s.ws_connect(p.url("/ws?choose="), protocols=browser_offer("bob")) as ws,
    ):
        assert ws.protocol is None


@pytest.mark.parametrize("status", [401, 403, 404, 429, 500, 503])
async def test_backend_refusal_is_mirrored_with_status_and_body(
    start_proxy: StartProxy, status: int
) -> None:
    p = await start_proxy()
    async with aiohttp.ClientSession() as s:
        with pytest.raises(aiohttp.WSServerHandshakeError) as refused:
            await s.ws_connect(p.url(f"/ws?refuse={status}"), headers=bearer("bob"))
        assert refused.value.status == status
        # A plain GET with upgrade headers shows the body and headers the backend sent.
        headers = {
            "Upgrade": "websocket",
            "Connection": "Upgrade",
            "Sec-WebSocket-Key": "dGhlIHNhbXBsZSBub25jZQ==",
            "Sec-WebSocket-Version": "13",
            **bearer("bob"),
        }
        async with s.get(
            p.url(f"/ws?refuse={status}").replace("ws:", "http:"), headers=headers
        ) as r:
            assert r.status == status
            assert await r.json() == {"error": "refused", "by": "legacy"}
            assert r.headers["Retry-After"] == "7"
    assert (
        await p.metric(
            "strangler_handshake_refusals_total", route="main", reason="upstream_refused"
        )
        == 2
    )


async def test_text_and_binary_messages_pass_unchanged_both_ways(start_proxy: StartProxy) -> None:
    p = await start_proxy()
    text = json.dumps({"type": "user_message", "payload": {"text": "héllo ✓"}})
    blob = bytes(range(256)) * 4
    async with aiohttp.ClientSession() as s, s.ws_connect(p.url(), headers=bearer("bob")) as ws:
        await ws.send_str(text)
        msg = await ws.receive()
        assert (msg.type, msg.data) == (aiohttp.WSMsgType.TEXT, text)
        await ws.send_bytes(blob)
        msg = await ws.receive()
        assert (msg.type, msg.data) == (aiohttp.WSMsgType.BINARY, blob)
    await wait_for(
        lambda: _has(
            p, "strangler_connections_total", route="main", mode="legacy", outcome="client_closed"
        )
    )
    assert (
        await p.metric(
            "strangler_messages_total",
            route="main",
            backend="legacy",
            direction="client_to_backend",
        )
        == 2
    )
    assert await p.metric(
        "strangler_bytes_total", route="main", backend="legacy", direction="backend_to_client"
    ) == len(text.encode()) + len(blob)


async def test_one_mib_message_is_relayed_whole(start_proxy: StartProxy) -> None:
    p = await start_proxy()
    big = b"\x01" * (1024 * 1024)
    async with (
        aiohttp.ClientSession() as s,
        s.ws_connect(p.url(), headers=bearer("bob"), max_msg_size=0) as ws,
    ):
        await ws.send_bytes(big)
        msg = await ws.receive()
        assert msg.data == big


async def test_message_over_the_limit_closes_1009(start_proxy: StartProxy) -> None:
    p = await start_proxy(relay="{max_message_bytes: 65536, grace_period: 1}")
    async with aiohttp.ClientSession() as s, s.ws_connect(p.url(), headers=bearer("bob")) as ws:
        await ws.send_bytes(b"x" * 70000)
        msg = await ws.receive()
        assert msg.type is aiohttp.WSMsgType.CLOSE
        assert ws.close_code == 1009
    await wait_for(
        lambda: _has(
            p, "strangler_connections_total", route="main", mode="legacy", outcome="too_big"
        )
    )


@pytest.mark.parametrize(("code", "reason"), [(1000, "bye"), (1008, "policy"), (4001, "app: done")])
async def test_backend_close_code_and_reason_reach_the_client(
    start_proxy: StartProxy, code: int, reason: str
) -> None:
    p = await start_proxy()
    async with aiohttp.ClientSession() as s, s.ws_connect(p.url(), headers=bearer("bob")) as ws:
        await ws.send_str(f"close {code} {reason}")
        msg = await ws.receive()
        assert msg.type is aiohttp.WSMsgType.CLOSE
        assert (msg.data, msg.extra) == (code, reason)


@pytest.mark.parametrize(("code", "reason"), [(1000, "bye"), (1008, "policy"), (4001, "app: done")])
async def test_client_close_code_and_reason_reach_the_backend(
    start_proxy: StartProxy, code: int, reason: str
) -> None:
    p = await start_proxy()
    async with aiohttp.ClientSession() as s:
        ws = await s.ws_connect(p.url(), headers=bearer("bob"))
        await ws.close(code=code, message=reason.encode())
    await wait_for(lambda: _true(bool(p.legacy.closes)))
    assert p.legacy.closes[-1][0] == code


async def test_backend_that_vanishes_gives_the_client_1011(start_proxy: StartProxy) -> None:
    p = await start_proxy()
    async with aiohttp.ClientSession() as s, s.ws_connect(p.url(), headers=bearer("bob")) as ws:
        await ws.send_str("vanish")
        msg = await ws.receive()
        assert msg.type is aiohttp.WSMsgType.CLOSE
        assert ws.close_code == 1011
    await wait_for(
        lambda: _has(
            p, "strangler_connections_total", route="main", mode="legacy", outcome="backend_gone"
        )
    )


async def test_client_that_vanishes_gives_the_backend_1001(start_proxy: StartProxy) -> None:
    p = await start_proxy()
    reader, writer = await asyncio.open_connection("127.0.0.1", p.running.port)
    writer.write(
        (
            "GET /ws HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
            "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n"
            f"Authorization: Bearer {token('bob')}\r\n\r\n"
        ).encode()
    )
    head = await reader.readuntil(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 101")
    writer.transport.abort()  # no close frame, just gone
    await wait_for(lambda: _true(bool(p.legacy.closes)))
    assert p.legacy.closes[-1][0] == 1001


async def test_protocol_pings_are_answered_on_the_client_hop(start_proxy: StartProxy) -> None:
    p = await start_proxy()
    async with (
        aiohttp.ClientSession() as s,
        s.ws_connect(p.url(), headers=bearer("bob"), autoping=False) as ws,
    ):
        await ws.ping(b"are you there")
        msg = await ws.receive()
        assert (msg.type, msg.data) == (aiohttp.WSMsgType.PONG, b"are you there")


async def test_client_that_stops_reading_makes_the_backend_wait(start_proxy: StartProxy) -> None:
    """Backpressure: the proxy must not absorb a flood the client does not read."""
    p = await start_proxy()
    frames, size = 1024, 64 * 1024  # 64 MiB offered; far more than socket buffers hold
    async with (
        aiohttp.ClientSession() as s,
        s.ws_connect(p.url(), headers=bearer("bob"), max_msg_size=0) as ws,
    ):
        await ws.send_str(f"flood {frames} {size}")
        # Wait until the backend's sending stalls (no progress for a while).
        last = -1
        while p.legacy.sent != last:
            last = p.legacy.sent
            await asyncio.sleep(0.3)
        assert p.legacy.sent < frames, "the proxy buffered the whole flood for a client not reading"
        assert p.legacy.sent * size < 48 * 1024 * 1024
        received = 0
        while received < frames:
            msg = await ws.receive()
            assert msg.type is aiohttp.WSMsgType.TEXT
            assert len(msg.data) == size
            received += 1
    assert p.legacy.sent == frames


async def test_unreachable_backend_refuses_with_502_and_counts_why(start_proxy: StartProxy) -> None:
    p = await start_proxy(legacy_url=f"ws://127.0.0.1:{free_port()}")
    async with aiohttp.ClientSession() as s:
        with pytest.raises(aiohttp.WSServerHandshakeError) as refused:
            await s.ws_connect(p.url(), headers=bearer("bob"))
    assert refused.value.status == 502
    assert (
        await p.metric(
            "strangler_upstream_connect_failures_total", backend="legacy", reason="refused"
        )
        == 1
    )


async def test_backend_that_never_answers_the_handshake_gives_504(
    start_proxy: StartProxy,
) -> None:
    accepted: list[asyncio.StreamWriter] = []

    async def accept_and_say_nothing(_: asyncio.StreamReader, w: asyncio.StreamWriter) -> None:
        accepted.append(w)

    silent = await asyncio.start_server(accept_and_say_nothing, "127.0.0.1", 0)
    port = silent.sockets[0].getsockname()[1]
    try:
        p = await start_proxy(legacy_url=f"ws://127.0.0.1:{port}", connect_timeout=0.3)
        async with aiohttp.ClientSession() as s:
            with pytest.raises(aiohttp.WSServerHandshakeError) as refused:
                await s.ws_connect(p.url(), headers=bearer("bob"))
        assert refused.value.status == 504
        assert (
            await p.metric(
                "strangler_upstream_connect_failures_total",
                backend="legacy",
                reason="handshake_timeout",
            )
            == 1
        )
    finally:
        for w in accepted:
            w.close()
        silent.close()
        await silent.wait_closed()


async def test_more_than_a_hundred_concurrent_connections_have_no_hidden_cap(
    start_proxy: StartProxy,
) -> None:
    p = await start_proxy()
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0)) as s:
        sockets = await asyncio.wait_for(
            asyncio.gather(*(s.ws_connect(p.url(), headers=bearer("bob")) for _ in range(130))),
            timeout=30,
        )
        assert await p.metric("strangler_connections_open", route="main", mode="legacy") == 130
        await asyncio.gather(*(ws.close() for ws in sockets))


async def test_users_on_one_path_are_answered_by_the_backend_their_flags_name(
    start_proxy: StartProxy,
) -> None:
    p = await start_proxy()
    async with aiohttp.ClientSession() as s:
        for user, backend in (("alice", "unified"), ("bob", "legacy")):
            async with s.ws_connect(p.url("/ws?x=1"), protocols=browser_offer(user)) as ws:
                await ws.send_str("who")
                assert json.loads((await ws.receive()).data) == {"backend": backend}
    seen = p.unified.handshakes[-1]
    assert seen["path"] == "/v1/ws?x=1"  # the unified router has one path; the query travels
    assert seen["headers"]["X-Strangler-Route"] == "main"
    assert seen["headers"]["X-Forwarded-For"] == "127.0.0.1"
    assert p.legacy.handshakes[-1]["path"] == "/ws?x=1"  # legacy keeps the route's own path
    assert (
        await p.metric(
            "strangler_flag_evaluations_total",
            flag="unified_router",
            mode="unified",
            reason="target",
        )
        == 1
    )
    assert (
        await p.metric(
            "strangler_flag_evaluations_total",
            flag="unified_router",
            mode="legacy",
            reason="default",
        )
        == 1
    )


async def test_flags_edit_moves_the_next_connection_and_leaves_open_ones_alone(
    start_proxy: StartProxy,
) -> None:
    p = await start_proxy()
    async with aiohttp.ClientSession() as s:
        before = await s.ws_connect(p.url(), headers=bearer("bob"))
        await before.send_str("who")
        assert json.loads((await before.receive()).data) == {"backend": "legacy"}

        p.flags_path.write_text(
            "flags:\n  unified_router:\n    routes: [main]\n    targets: {unified: [bob]}\n"
        )
        await wait_for(
            lambda: _has(p, "strangler_flag_reloads_total", result="applied", at_least=2)
        )

        async with s.ws_connect(p.url(), headers=bearer("bob")) as after:
            await after.send_str("who")
            assert json.loads((await after.receive()).data) == {"backend": "unified"}
        # The connection opened before the edit still talks to legacy.
        await before.send_str("who")
        assert json.loads((await before.receive()).data) == {"backend": "legacy"}
        await before.close()


async def test_broken_flags_file_keeps_the_last_good_one(start_proxy: StartProxy) -> None:
    p = await start_proxy()
    p.flags_path.write_text("flags: [this is not a mapping\n")
    await wait_for(lambda: _has(p, "strangler_flag_reloads_total", result="rejected"))
    async with aiohttp.ClientSession() as s, s.ws_connect(p.url(), headers=bearer("alice")) as ws:
        await ws.send_str("who")
        assert json.loads((await ws.receive()).data) == {"backend": "unified"}


async def test_plain_http_on_legacy_paths_is_forwarded_with_status_and_body(
    start_proxy: StartProxy,
) -> None:
    p = await start_proxy()
    async with aiohttp.ClientSession() as s:
        async with s.get(p.http("/ws/health")) as r:
            assert r.status == 200
            assert r.headers["X-Backend"] == "legacy"
            body = await r.json()
            assert (body["method"], body["path"]) == ("GET", "/ws/health")
        async with s.post(p.http("/api/websocket/ticket?status=201"), data=b'{"a": 1}') as r:
            assert r.status == 201
            assert (await r.json())["body"] == '{"a": 1}'
        async with s.head(p.http("/ws/health")) as r:
            assert r.status == 200
        async with s.get(p.http("/nowhere")) as r:
            assert r.status == 404


async def test_bad_token_is_refused_and_never_reaches_a_backend(start_proxy: StartProxy) -> None:
    p = await start_proxy()
    bad = {"Authorization": "Bearer not-a-jwt"}
    async with aiohttp.ClientSession() as s:
        with pytest.raises(aiohttp.WSServerHandshakeError) as refused:
            await s.ws_connect(p.url("/ws/factory"), headers=bad)
        assert refused.value.status == 403
        async with s.ws_connect(p.url("/ws"), headers=bad) as ws:
            frame = await ws.receive_json()
            assert (frame["type"], frame["error_code"]) == ("error_message", "AUTH_FAILED")
            assert (await ws.receive()).type is aiohttp.WSMsgType.CLOSE
            assert ws.close_code == 1008
        async with s.ws_connect(p.url("/ws/isolated"), headers=bad) as ws:
            assert (await ws.receive()).type is aiohttp.WSMsgType.CLOSE
            assert ws.close_code == 1008
    assert p.legacy.handshakes == [] and p.unified.handshakes == []
    assert await p.metric("strangler_auth_failures_total", route="factory", reason="malformed") == 1


async def test_shutdown_refuses_new_handshakes_and_closes_open_ones_with_1001(
    start_proxy: StartProxy,
) -> None:
    p = await start_proxy()
    async with aiohttp.ClientSession() as s:
        ws = await s.ws_connect(p.url(), headers=bearer("bob"))
        drain = asyncio.create_task(p.running.proxy.drain(grace=0.5))
        await asyncio.sleep(0.1)
        with pytest.raises(aiohttp.WSServerHandshakeError) as refused:
            await s.ws_connect(p.url(), headers=bearer("bob"))
        assert refused.value.status == 503
        msg = await ws.receive()
        assert msg.type is aiohttp.WSMsgType.CLOSE and ws.close_code == 1001
        await drain
    await wait_for(
        lambda: _has(
            p, "strangler_connections_total", route="main", mode="legacy", outcome="shutdown"
        )
    )


async def _has(p: object, name: str, at_least: float = 1, **labels: str) -> bool:
    from tests.functional.conftest import ProxyUnderTest

    assert isinstance(p, ProxyUnderTest)
    return await p.metric(name, **labels) >= at_least


async def _true(value: bool) -> bool:
    return value
