"""Limits: how many connections one process admits, stalled clients, the admin token."""

from __future__ import annotations

import asyncio

import aiohttp
import pytest

from tests.functional.conftest import StartProxy, token, wait_for


def bearer(user: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token(user)}"}


async def test_per_client_limit_is_answered_in_the_legacy_1008_style(
    start_proxy: StartProxy,
) -> None:
    p = await start_proxy(extra="limits: {max_connections_per_ip: 3}")
    async with aiohttp.ClientSession() as s:
        held = [await s.ws_connect(p.url(), headers=bearer("bob")) for _ in range(3)]
        async with s.ws_connect(p.url(), headers=bearer("bob")) as fourth:
            msg = await fourth.receive()
            assert msg.type is aiohttp.WSMsgType.CLOSE
            assert (fourth.close_code, msg.extra) == (1008, "Too many concurrent connections")
        assert (
            await p.metric(
                "strangler_handshake_refusals_total", route="main", reason="too_many_from_client"
            )
            == 1
        )
        await held[0].close()
        # A slot freed is a slot usable again.
        async with s.ws_connect(p.url(), headers=bearer("bob")) as again:
            await again.send_str("who")
            assert (await again.receive()).type is aiohttp.WSMsgType.TEXT
        for ws in held[1:]:
            await ws.close()


async def test_global_limit_can_refuse_with_503_instead(start_proxy: StartProxy) -> None:
    p = await start_proxy(extra="limits: {max_connections: 2, over_limit: refuse_503}")
    async with aiohttp.ClientSession() as s:
        held = [await s.ws_connect(p.url(), headers=bearer("bob")) for _ in range(2)]
        with pytest.raises(aiohttp.WSServerHandshakeError) as refused:
            await s.ws_connect(p.url(), headers=bearer("bob"))
        assert refused.value.status == 503
        assert (
            await p.metric(
                "strangler_handshake_refusals_total", route="main", reason="too_many_connections"
            )
            == 1
        )
        for ws in held:
            await ws.close()


@pytest.mark.parametrize("tunnel", ["auto", "off"], ids=["tunnel", "per_frame"])
async def test_client_that_stops_reading_is_closed_after_the_stall_timeout(
    start_proxy: StartProxy, tunnel: str
) -> None:
    p = await start_proxy(
        extra="limits: {stalled_timeout: 0.5, stalled_close_code: 1009}",
        relay=f"{{tunnel: {tunnel}, max_message_bytes: 2097152, grace_period: 1}}",
    )
    reader, writer = await asyncio.open_connection("127.0.0.1", p.running.port)
    writer.write(
        (
            "GET /ws HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
            "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n"
            f"Authorization: Bearer {token('bob')}\r\n\r\n"
        ).encode()
    )
    await reader.readuntil(b"\r\n\r\n")
    payload = b"flood 4000 65536"  # 256 MiB offered to a client that never reads
    mask = b"\x01\x02\x03\x04"
    writer.write(
        bytes([0x81, 0x80 | len(payload)])
        + mask
        + bytes(b ^ mask[i % 4] for i, b in enumerate(payload))
    )
    await writer.drain()

    async def closed() -> bool:
        return (
            await p.metric(
                "strangler_connections_total", route="main", mode="legacy", outcome="stalled"
            )
            == 1
        )

    await wait_for(closed, timeout=20)
    # The backend connection the stalled client held is released with the configured code.
    assert p.legacy.closes[-1][0] == 1009
    writer.close()


async def test_admin_port_requires_the_bearer_token_when_configured(
    start_proxy: StartProxy, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("STRANGLER_TEST_ADMIN", "admin-secret")
    p = await start_proxy(extra="admin_auth: {token_env: STRANGLER_TEST_ADMIN}")
    base = f"http://127.0.0.1:{p.running.admin_port}"
    async with aiohttp.ClientSession() as s:
        async with s.get(f"{base}/metrics") as r:
            assert r.status == 401
        async with s.get(f"{base}/flags/status", headers={"Authorization": "Bearer nope"}) as r:
            assert r.status == 401
        async with s.get(f"{base}/metrics", headers={"Authorization": "Bearer admin-secret"}) as r:
            assert r.status == 200 and "strangler_build_info" in await r.text()
        async with s.get(f"{base}/healthz") as r:
            assert r.status == 200
    # A token whose bytes are not UTF-8 is a wrong token, not a server error.
    reader, writer = await asyncio.open_connection("127.0.0.1", p.running.admin_port)
    writer.write(
        # A Host the admin port answers to (docs/SECURITY.md), so the token is what is judged.
        b"GET /metrics HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer \xff\xfe\r\n"
        b"Connection: close\r\n\r\n"
    )
    status_line = await asyncio.wait_for(reader.readline(), timeout=5)
    writer.close()
    assert status_line.split()[1] == b"401"
