"""The echo backend Autobahn|Testsuite talks to, alone or behind the proxy.

    python tests/autobahn/echo.py --port 9001

A plain aiohttp WebSocket server on loopback that sends every message back with its
opcode. It is the reference the proxy is measured against: run alone, its Autobahn
results are what aiohttp itself does; behind the proxy, any case that comes out worse
is the proxy's doing.
"""

from __future__ import annotations

import argparse

from aiohttp import WSMsgType, web


async def echo(request: web.Request) -> web.WebSocketResponse:
    # No size limit of its own: the proxy's relay.max_message_bytes is the one under test.
    ws = web.WebSocketResponse(max_msg_size=0)
    await ws.prepare(request)
    async for msg in ws:
        if msg.type is WSMsgType.TEXT:
            await ws.send_str(msg.data)
        elif msg.type is WSMsgType.BINARY:
            await ws.send_bytes(msg.data)
    return ws


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--port", type=int, required=True)
    args = parser.parse_args()
    app = web.Application()
    app.router.add_get("/{tail:.*}", echo)
    web.run_app(app, host="127.0.0.1", port=args.port, print=None, handle_signals=True)


if __name__ == "__main__":
    main()
