"""Hostile handshakes and requests: a client must not pick whose identity the proxy routes
by, the host the backend is dialled at, or the headers only the proxy may set; and a
handshake for another WebSocket version is answered as RFC 6455 4.4 says.

Raw sockets send what aiohttp's client refuses to (tabs and no-break spaces in a
header, absolute-form targets)."""

from __future__ import annotations

import base64
import json
import struct

import aiohttp
import pytest

from tests.functional.conftest import ProxyUnderTest, StartProxy, token
from tests.functional.rawws import OP_CLOSE, RawWebSocket

# alice's flags put her on the unified router, bob's on legacy (conftest DEFAULT_FLAGS).
ALICE, BOB = token("alice"), token("bob")


def b64url(text: str) -> str:
    return base64.urlsafe_b64encode(text.encode()).rstrip(b"=").decode()


async def handshakes(p: ProxyUnderTest) -> int:
    return len(p.legacy.handshakes) + len(p.unified.handshakes)


async def raw_request(port: int, head: str) -> tuple[int, dict[str, str], bytes]:
    """Send `head` (a request line and headers, latin-1) and read the answer's head."""
    ws = await RawWebSocket.open(port)
    try:
        ws.writer.write(head.encode("latin-1") + b"\r\n\r\n")
        await ws.writer.drain()
        answer = await ws._read_response()
        return answer.status, answer.headers, answer.body
    finally:
        await ws.close()


def upgrade(target: str, port: int, *extra: str, version: str = "13") -> str:
    return "\r\n".join(
        [
            f"GET {target} HTTP/1.1",
            f"Host: 127.0.0.1:{port}",
            "Upgrade: websocket",
            "Connection: Upgrade",
            "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==",
            f"Sec-WebSocket-Version: {version}",
            *extra,
        ]
    )


# -- which credential is the client's ---------------------------------------------------

# Each case presents alice's token where one reader would find it and bob's where
# another would: the proxy must not route by one while the backend serves the other.
CONFUSIONS = {
    "query bob, bearer-tab alice": ("/ws?token=" + BOB, [f"Authorization: Bearer\t{ALICE}"]),
    "query bob, bearer-nbsp alice": ("/ws?token=" + BOB, [f"Authorization: Bearer\xa0{ALICE}"]),
    "query bob, bearer-two-spaces alice": (
        "/ws?token=" + BOB,
        [f"Authorization: Bearer  {ALICE}"],
    ),
    "bearer bob, query alice": ("/ws?access_token=" + ALICE, [f"Authorization: Bearer {BOB}"]),
    "subprotocol bob, bearer alice": (
        "/ws",
        [f"Sec-WebSocket-Protocol: jwt-auth, jwt.{b64url(BOB)}", f"Authorization: Bearer {ALICE}"],
    ),
    "two query keys": (f"/ws?jwt={ALICE}&token={BOB}", []),
    "one query key twice": (f"/ws?token={BOB}&token={ALICE}", []),
    "two authorization fields": (
        "/ws",
        [f"Authorization: Bearer {BOB}", f"Authorization: Bearer {ALICE}"],
    ),
    "token and ticket": (f"/ws?ticket=t-1&token={ALICE}", []),
    "subprotocol prefix in capitals": (
        "/ws?token=" + BOB,
        [f"Sec-WebSocket-Protocol: jwt-auth, JWT-AUTH.{ALICE}"],
    ),
}


@pytest.mark.parametrize("case", list(CONFUSIONS))
async def test_credentials_two_readers_would_read_differently_are_refused(
    start_proxy: StartProxy, case: str
) -> None:
    p = await start_proxy()
    target, headers = CONFUSIONS[case]
    port = p.running.port
    ws = await RawWebSocket.open(port)
    try:
        ws.writer.write(upgrade(target, port, *headers).encode("latin-1") + b"\r\n\r\n")
        await ws.writer.drain()
        answer = await ws._read_response()
        # /ws refuses in its legacy style: accept, an AUTH_FAILED frame, close 1008.
        assert answer.status == 101
        error = json.loads(await ws.recv_text())
        assert error["type"] == "error_message" and error["error_code"] == "AUTH_FAILED"
        assert error["error_message"] == "Conflicting authentication credentials"
        _, opcode, payload = await ws.recv()
        assert opcode == OP_CLOSE and struct.unpack("!H", payload[:2])[0] == 1008
    finally:
        await ws.close()
    assert await handshakes(p) == 0  # neither backend was asked to serve anyone
    assert await p.metric("strangler_auth_failures_total", route="main", reason="ambiguous") == 1


@pytest.mark.parametrize(
    ("path", "status"),
    [("/ws/factory", 403), ("/ws/isolated", 101)],
)
async def test_conflicting_credentials_are_refused_in_each_routes_style(
    start_proxy: StartProxy, path: str, status: int
) -> None:
    p = await start_proxy()
    port = p.running.port
    head = upgrade(f"{path}?token={BOB}", port, f"Authorization: Bearer\t{ALICE}")
    ws = await RawWebSocket.open(port)
    try:
        ws.writer.write(head.encode("latin-1") + b"\r\n\r\n")
        await ws.writer.drain()
        answer = await ws._read_response()
        assert answer.status == status
        if status == 101:
            assert await ws.recv_close() == (1008, b"Authentication failed")
        else:
            assert json.loads(answer.body)["error"] == "authentication_failed"
    finally:
        await ws.close()
    assert await handshakes(p) == 0


async def test_one_token_presented_in_several_places_is_served(start_proxy: StartProxy) -> None:
    p = await start_proxy()
    async with (
        aiohttp.ClientSession() as s,
        s.ws_connect(
            p.url(f"/ws?token={ALICE}"),
            headers={"Authorization": f"Bearer {ALICE}"},
            protocols=("jwt-auth", f"jwt.{b64url(ALICE)}"),
        ) as ws,
    ):
        await ws.send_str("who")
        assert await ws.receive_json() == {"backend": "unified"}


# -- the request target -----------------------------------------------------------------


async def test_an_absolute_form_target_reaches_the_backend_as_its_path_only(
    start_proxy: StartProxy,
) -> None:
    p = await start_proxy()
    port = p.running.port
    # The authority names another host; the backend dialled is the configured one, and
    # the path it sees is the target's path and query (still percent-encoded).
    target = "http://evil.example:8080/websocket?x=a%26y%3Db"
    ws = await RawWebSocket.open(port)
    try:
        ws.writer.write(upgrade(target, port).encode("latin-1") + b"\r\n\r\n")
        await ws.writer.drain()
        assert (await ws._read_response()).status == 101
    finally:
        await ws.close()
    assert [h["path"] for h in p.legacy.handshakes] == ["/websocket?x=a%26y%3Db"]


async def test_a_plain_http_absolute_form_target_is_forwarded_as_its_path(
    start_proxy: StartProxy,
) -> None:
    p = await start_proxy()
    port = p.running.port
    status, _, body = await raw_request(
        port, f"GET http://evil.example/ws/factory?q=1 HTTP/1.1\r\nHost: 127.0.0.1:{port}"
    )
    assert status == 200
    assert json.loads(body)["path"] == "/ws/factory?q=1"
    assert p.legacy.handshakes[-1]["path"] == "/ws/factory?q=1"


@pytest.mark.parametrize(
    "target", ["ftp://evil.example/websocket", "http:///websocket", "mailto:x@evil.example"]
)
async def test_an_absolute_form_target_that_is_not_an_http_url_is_refused_400(
    start_proxy: StartProxy, target: str
) -> None:
    p = await start_proxy()
    port = p.running.port
    status, _, _ = await raw_request(port, upgrade(target, port))
    assert status == 400
    assert await handshakes(p) == 0
    # Either aiohttp's parser refused the target (bad_request) or the proxy did.
    counted = [
        await p.metric("strangler_bad_input_total", route="none", reason=reason)
        for reason in ("bad_target", "bad_request")
    ]
    assert sum(counted) == 1


@pytest.mark.parametrize(
    "head", ["CONNECT evil.example:443 HTTP/1.1", "OPTIONS * HTTP/1.1"], ids=["connect", "asterisk"]
)
async def test_authority_and_asterisk_forms_never_reach_a_backend(
    start_proxy: StartProxy, head: str
) -> None:
    p = await start_proxy()
    port = p.running.port
    status, _, _ = await raw_request(port, f"{head}\r\nHost: 127.0.0.1:{port}")
    assert 400 <= status < 500
    assert await handshakes(p) == 0


# -- headers only the proxy sets ----------------------------------------------------------

PROXY_HEADERS = ("X-Strangler-Shadow: 1", "X-Strangler-Auth: none", "X-Strangler-Route: factory")


async def test_a_clients_proxy_headers_never_reach_the_backend_over_plain_http(
    start_proxy: StartProxy,
) -> None:
    p = await start_proxy()
    port = p.running.port
    head = "\r\n".join(
        ["GET /ws/factory HTTP/1.1", f"Host: 127.0.0.1:{port}", *PROXY_HEADERS, "X-Other: kept"]
    )
    status, _, _ = await raw_request(port, head)
    assert status == 200
    seen = {name.lower() for name in p.legacy.handshakes[-1]["headers"]}
    assert not any(name.startswith("x-strangler-") for name in seen)
    assert "x-other" in seen


@pytest.mark.parametrize("path", ["/websocket", "/ws"])
async def test_a_clients_proxy_headers_are_replaced_by_the_proxys_own_on_a_handshake(
    start_proxy: StartProxy, path: str
) -> None:
    p = await start_proxy()
    port = p.running.port
    ws = await RawWebSocket.open(port)
    try:
        head = upgrade(path, port, f"Authorization: Bearer {BOB}", *PROXY_HEADERS)
        ws.writer.write(head.encode("latin-1") + b"\r\n\r\n")
        await ws.writer.drain()
        assert (await ws._read_response()).status == 101
    finally:
        await ws.close()
    seen = p.legacy.handshakes[-1]["headers"]
    route = "legacy" if path == "/websocket" else "main"
    assert seen.get("X-Strangler-Route") == route
    assert "X-Strangler-Shadow" not in seen
    assert seen.get("X-Strangler-Auth") == ("none" if route == "legacy" else None)


# -- the WebSocket version ------------------------------------------------------------------


@pytest.mark.parametrize("version", ["8", "7", "12", "14", "13, 8"])
async def test_another_websocket_version_gets_426_naming_13(
    start_proxy: StartProxy, version: str
) -> None:
    p = await start_proxy()
    port = p.running.port
    status, headers, _ = await raw_request(
        port, upgrade("/ws", port, f"Authorization: Bearer {BOB}", version=version)
    )
    assert status == 426
    assert headers["sec-websocket-version"] == "13"
    assert await handshakes(p) == 0
    assert await p.metric("strangler_bad_input_total", route="main", reason="bad_version") == 1
