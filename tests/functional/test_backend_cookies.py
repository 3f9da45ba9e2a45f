"""A cookie a backend sets for one client never goes out with another client's request.

The proxy holds one client session per backend (and one for forwarded HTTP) for every
user; a cookie jar in them would carry one user's cookies into every later user's
handshake or request. aiohttp's jar keeps no cookies for IP addresses, so the backend
here is addressed as `localhost`, the case where a jar would keep them.
"""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
from aiohttp import web
from multidict import CIMultiDict

from strangler.proxy.relay import passthrough, upstream
from tests.functional.conftest import free_port


@pytest.fixture
async def cookie_setting_backend() -> AsyncIterator[tuple[int, list[str | None]]]:
    """A backend that sets a secret cookie on every answer and notes the Cookie it got."""
    seen: list[str | None] = []

    async def websocket(request: web.Request) -> web.WebSocketResponse:
        seen.append(request.headers.get("Cookie"))
        ws = web.WebSocketResponse()
        ws.headers["Set-Cookie"] = "session=alice-secret; Path=/"
        await ws.prepare(request)
        await ws.close()
        return ws

    async def page(request: web.Request) -> web.Response:
        seen.append(request.headers.get("Cookie"))
        return web.Response(text="ok", headers={"Set-Cookie": "session=alice-secret; Path=/"})

    app = web.Application()
    app.router.add_get("/ws", websocket)
    app.router.add_get("/page", page)
    runner = web.AppRunner(app, handle_signals=False)
    await runner.setup()
    port = free_port()
    await web.TCPSite(runner, "localhost", port).start()
    yield port, seen
    await runner.cleanup()


async def test_a_handshake_never_carries_a_cookie_set_for_another_user(
    cookie_setting_backend: tuple[int, list[str | None]],
) -> None:
    port, seen = cookie_setting_backend
    session = upstream.new_session(5)
    try:
        for cookie in ("user=alice", "user=bob"):
            ws = await upstream.connect(
                session,
                f"ws://localhost:{port}/ws",
                protocols=[],
                headers=CIMultiDict({"Cookie": cookie}),
                timeout=5,
                max_message_bytes=1 << 20,
            )
            await ws.close()
    finally:
        await session.close()
    assert seen == ["user=alice", "user=bob"]


async def test_a_forwarded_request_never_carries_a_cookie_set_for_another_user(
    cookie_setting_backend: tuple[int, list[str | None]],
) -> None:
    port, seen = cookie_setting_backend
    async with passthrough.new_session() as s:
        for cookie in (None, "user=bob"):
            headers = {"Cookie": cookie} if cookie else {}
            async with s.get(f"http://localhost:{port}/page", headers=headers) as r:
                assert r.status == 200
    assert seen == [None, "user=bob"]
