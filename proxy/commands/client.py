"""`strangler client`: a demo client that connects like the browser front end does."""

from __future__ import annotations

import asyncio
import base64
import json
import sys
from typing import Any

import aiohttp

from strangler.proxy.edge.identity import mint_token

GOLDEN_PATH_END = frozenset({"agent_completed", "agent_error"})


def browser_offer(token: str) -> list[str]:
    """The subprotocol offer of the browser client: `jwt-auth` plus the base64url token."""
    encoded = base64.urlsafe_b64encode(token.encode()).decode().rstrip("=")
    return ["jwt-auth", f"jwt.{encoded}"]


def describe(event: dict[str, Any]) -> str:
    """One line for an event: its type and the field a person wants to see."""
    kind = str(event.get("type", "?"))
    body = event.get("data") or event.get("payload") or event
    if not isinstance(body, dict):
        body = {}
    detail = (
        (f"mode={body['mode']}" if kind == "connection_established" and "mode" in body else "")
        or body.get("reasoning")
        or body.get("tool_name")
        or event.get("tool_name")
        or body.get("final_response")
        or body.get("message")
        or body.get("event")
        or ""
    )
    return f"{kind:<24} {str(detail)[:70]}"


async def run_client(
    *,
    url: str,
    user: str,
    text: str,
    secret: str,
    timeout: float,
    seen: list[dict[str, Any]] | None = None,
) -> int:
    """Connect as `user`, run one turn, print each event; exit status 0 on a complete turn.

    Every frame received is also appended to `seen` when given.
    """
    token = mint_token(secret, user)
    out = sys.stdout
    async with aiohttp.ClientSession() as session:
        try:
            ws = await session.ws_connect(
                url,
                protocols=browser_offer(token),
                timeout=aiohttp.ClientWSTimeout(ws_close=timeout),
            )
        except aiohttp.WSServerHandshakeError as exc:
            print(f"handshake refused: HTTP {exc.status}", file=sys.stderr)
            return 1
        except aiohttp.ClientError as exc:
            print(f"cannot connect to {url}: {exc}", file=sys.stderr)
            return 1
        async with ws:
            protocol = (
                ws.protocol
                if not ws.protocol or len(ws.protocol) < 24
                else ws.protocol[:20] + "..."
            )
            out.write(f"connected to {url} as {user} (subprotocol {protocol})\n")
            await ws.send_str(
                json.dumps(
                    {
                        "type": "start_agent",
                        "payload": {"user_request": text, "thread_id": None, "context": {}},
                    }
                )
            )
            backend = "?"
            try:
                async with asyncio.timeout(timeout):
                    async for msg in ws:
                        if msg.type is not aiohttp.WSMsgType.TEXT:
                            continue
                        event = json.loads(msg.data)
                        if seen is not None:
                            seen.append(event)
                        server_id = event.get("server_id")
                        if server_id:
                            backend = str(server_id)
                        out.write(f"  [{backend:>7}] {describe(event)}\n")
                        if event.get("type") in GOLDEN_PATH_END:
                            out.write(f"turn complete, answered by the {backend} backend\n")
                            return 0
            except TimeoutError:
                print(f"no complete turn within {timeout:g}s", file=sys.stderr)
                return 1
            print(f"connection closed: code {ws.close_code}", file=sys.stderr)
            return 1
