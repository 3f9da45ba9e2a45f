"""Hostile tokens against an RS256 verifier: every one is refused in its route's legacy
style, counted by reason, never decides a non-legacy mode and never reaches the unified
router, although the flags would send the user in it there; and no token is logged."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import logging
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import jwt
import pytest
from aiohttp import web
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from strangler.proxy.config import load_config
from strangler.proxy.runtime.server import Running, start
from tests.functional.conftest import ALL_ROUTES, ROUTES, Stack, Upstream, free_port, scrape
from tests.functional.rawws import OP_CLOSE, OP_TEXT, RawWebSocket, close_frame, frame

ISSUER = "netra-auth-service"
AUDIENCE = "netra-platform"
USER = "mallory"
# Were mallory's token valid, the flags would put mallory on the unified router.
FLAGS = f"""
flags:
  unified_router:
    routes: [main, main_user, factory, isolated, legacy]
    targets: {{unified: [{USER}]}}
    rollout: {{unified: 100}}
"""
NON_LEGACY = ("unified", "shadow", "live")


def _private_key() -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


KEY = _private_key()
OTHER_KEY = _private_key()  # a key the proxy was never told about
PUBLIC_PEM = (
    KEY.public_key()
    .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    .decode()
)


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def claims(**override: Any) -> dict[str, Any]:
    now = int(time.time())
    out: dict[str, Any] = {
        "sub": USER,
        "iat": now,
        "exp": now + 3600,
        "iss": ISSUER,
        "aud": AUDIENCE,
        "jti": "j1",
        "token_type": "access",
    }
    out.update(override)
    return out


def rs256(body: dict[str, Any], key: rsa.RSAPrivateKey = KEY, kid: str | None = None) -> str:
    return jwt.encode(body, key, algorithm="RS256", headers={"kid": kid} if kid else None)


def unsigned(header: dict[str, Any], body: dict[str, Any]) -> str:
    return f"{b64url(json.dumps(header).encode())}.{b64url(json.dumps(body).encode())}"


def alg_none() -> str:
    return unsigned({"alg": "none", "typ": "JWT"}, claims()) + "."


def hs256_with_the_public_key() -> str:
    """Algorithm confusion: HMAC-signed with the RS256 public key as the secret."""
    signing_input = unsigned({"alg": "HS256", "typ": "JWT"}, claims())
    mac = hmac.new(PUBLIC_PEM.encode(), signing_input.encode(), hashlib.sha256).digest()
    return f"{signing_input}.{b64url(mac)}"


# name -> (token, the auth failure reason it must be counted under)
TOKENS: dict[str, tuple[Callable[[], str], str]] = {
    "alg_none": (alg_none, "bad_algorithm"),
    "hs256_public_key": (hs256_with_the_public_key, "bad_algorithm"),
    "expired": (lambda: rs256(claims(exp=int(time.time()) - 3600)), "expired"),
    "not_yet_valid": (lambda: rs256(claims(nbf=int(time.time()) + 3600)), "not_yet_valid"),
    "wrong_iss": (lambda: rs256(claims(iss="evil-auth-service")), "bad_issuer"),
    "wrong_aud": (lambda: rs256(claims(aud="evil-platform")), "bad_audience"),
    "unknown_kid": (lambda: rs256(claims(), OTHER_KEY, kid="rotated-out"), "bad_signature"),
}

# How a client may carry a token: (name, path suffix, extra headers). The proxy does
# not read cookies, so a cookie-only client is a client without a token.
Carrier = Callable[[str], tuple[str, list[tuple[str, str]]]]
CARRIERS: dict[str, Carrier] = {
    "bearer_header": lambda t: ("", [("Authorization", f"Bearer {t}")]),
    "query": lambda t: (f"?token={t}", []),
    "subprotocol_jwt": lambda t: (
        "",
        [("Sec-WebSocket-Protocol", f"jwt-auth, jwt.{b64url(t.encode())}")],
    ),
    "subprotocol_bearer": lambda t: ("", [("Sec-WebSocket-Protocol", f"bearer.{t}")]),
    "cookie": lambda t: ("", [("Cookie", f"access_token={t}")]),
}


def expected_reasons(name: str) -> dict[str, int]:
    """How many of the four token carriers count each auth failure reason."""
    _, reason = TOKENS[name]
    if name == "alg_none":
        # Unwrapping `jwt.<base64url>` keeps the decoded value only when it is a JWT with
        # three non-empty parts; an unsigned token's signature is empty, so the raw
        # base64 is verified instead and is refused as malformed.
        return {reason: 3, "malformed": 1}
    return {reason: 4}


# route name -> path
PATHS = {
    "main": "/ws",
    "factory": "/ws/factory",
    "isolated": "/ws/isolated",
    "legacy": "/websocket",
}


class QuietUpstream(Upstream):
    """The scriptable backend without an access log: a backend may log the tokens it is
    sent (they travel on by design); the question here is what the proxy logs."""

    async def start(self) -> None:
        app = web.Application()
        app.router.add_route("*", "/{tail:.*}", self.handle)
        self.runner = web.AppRunner(
            app, handle_signals=False, shutdown_timeout=0.5, access_log=None
        )
        await self.runner.setup()
        self.port = free_port()
        await web.TCPSite(self.runner, "127.0.0.1", self.port).start()


@dataclass
class Hostile:
    running: Running
    legacy: Upstream
    unified: Upstream
    caplog: pytest.LogCaptureFixture
    # An anonymous client on the legacy route, connected throughout: it must stay served.
    bystander: RawWebSocket | None = None
    legacy_before: int = 0  # backend handshakes before the test's own connections

    def legacy_reached(self) -> int:
        """Connections of the test's own that reached the legacy backend."""
        return len(self.legacy.handshakes) - self.legacy_before

    async def still_serving(self) -> None:
        assert self.bystander is not None
        await self.bystander.send(frame(OP_TEXT, b"who"))
        assert json.loads(await self.bystander.recv_text()) == {"backend": "legacy"}

    async def metric(self, name: str, **labels: str) -> float:
        samples = await scrape(self.running.admin_port)
        return samples.get((name, tuple(sorted(labels.items()))), 0.0)

    async def non_legacy_decisions(self) -> float:
        samples = await scrape(self.running.admin_port)
        return sum(
            value
            for (name, labels), value in samples.items()
            if name == "strangler_flag_evaluations_total" and dict(labels)["mode"] in NON_LEGACY
        )

    async def connect(self, path: str, headers: list[tuple[str, str]]) -> tuple[int, Any]:
        """Handshake, then what the route did: (status, first frame or close or body)."""
        ws = await RawWebSocket.open(self.running.port)
        try:
            answer = await ws.handshake(path, headers)
            if answer.status != 101:
                return answer.status, answer.body
            _, opcode, payload = await ws.recv()
            if opcode == OP_TEXT:  # the main route's error frame, then its close
                code, reason = await ws.recv_close()
                return 101, (json.loads(payload), code, reason)
            assert opcode == OP_CLOSE
            return 101, (None, int.from_bytes(payload[:2], "big"), payload[2:])
        finally:
            await ws.close()

    async def served_by_legacy(self, path: str, headers: list[tuple[str, str]]) -> bool:
        ws = await RawWebSocket.open(self.running.port)
        try:
            answer = await ws.handshake(path, headers)
            assert answer.status == 101
            await ws.send(frame(OP_TEXT, b"who"))
            served = json.loads(await ws.recv_text()) == {"backend": "legacy"}
            await ws.send(close_frame(1000))
            await ws.recv_close()
            return served
        finally:
            await ws.close()

    def assert_never_logged(self, *secrets: str, foreign: tuple[str, ...] = ()) -> None:
        """No failure logged, and no secret in any record but those of `foreign` loggers
        (the reference backends, which may log what they are sent)."""
        records = [r for r in self.caplog.records if not r.name.startswith(foreign or ("\0",))]
        text = "\n".join(r.getMessage() for r in records)
        for record in records:
            assert record.levelno < logging.ERROR, record.getMessage()
            assert record.exc_info is None, record.getMessage()
        for secret in secrets:
            # The signature part alone would identify the token too.
            for part in (secret, secret.rsplit(".", 1)[-1]):
                if len(part) >= 16:
                    assert part not in text


@pytest.fixture
async def hostile(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> AsyncIterator[Hostile]:
    caplog.set_level(logging.DEBUG)
    legacy, unified = QuietUpstream("legacy"), QuietUpstream("unified")
    await legacy.start()
    await unified.start()
    (tmp_path / "public.pem").write_text(PUBLIC_PEM)
    (tmp_path / "flags.yaml").write_text(FLAGS)
    (tmp_path / "strangler.yaml").write_text(
        f"""
listen: 127.0.0.1:0
admin_listen: 127.0.0.1:0
backends:
  legacy: {{url: "{legacy.url}", connect_timeout: 2}}
  unified: {{url: "{unified.url}/v1/ws", connect_timeout: 2}}
{ROUTES}
flags: {{file: flags.yaml, poll_interval: 0.05}}
jwt:
  algorithms: [RS256]
  public_key_file: public.pem
  issuer: {ISSUER}
  audience: [{AUDIENCE}]
  leeway: 0
relay: {{max_message_bytes: 65536, grace_period: 1}}
"""
    )
    running = await start(load_config(tmp_path / "strangler.yaml"))
    try:
        bystander = await RawWebSocket.open(running.port)
        assert (await bystander.handshake(PATHS["legacy"])).status == 101
        hostile = Hostile(running, legacy, unified, caplog, bystander, len(legacy.handshakes))
        await hostile.still_serving()
        yield hostile
        await bystander.close()
    finally:
        await running.stop()
        await legacy.stop()
        await unified.stop()


async def test_a_valid_token_would_put_the_user_on_the_unified_router(hostile: Hostile) -> None:
    """The control: the same flags and carriers with a good token do reach unified."""
    good = rs256(claims())
    for carrier in ("bearer_header", "query", "subprotocol_jwt", "subprotocol_bearer"):
        suffix, headers = CARRIERS[carrier](good)
        ws = await RawWebSocket.open(hostile.running.port)
        try:
            assert (await ws.handshake("/ws" + suffix, headers)).status == 101
            await ws.send(frame(OP_TEXT, b"who"))
            assert json.loads(await ws.recv_text()) == {"backend": "unified"}, carrier
        finally:
            await ws.close()
    assert len(hostile.unified.handshakes) == 4
    assert await hostile.non_legacy_decisions() == 4
    await hostile.still_serving()
    hostile.assert_never_logged(good)


def expect_refusal(route: str, outcome: tuple[int, Any], *, legacy_reason: bool = False) -> None:
    """The route's legacy refusal (LEGACY_SURFACE.md, "Failure styles, by route").

    `legacy_reason`: the legacy backend refused (its own message), not the proxy.
    """
    status, detail = outcome
    if route == "factory":
        assert status == 403
        assert legacy_reason or json.loads(detail)["error"] == "authentication_failed"
        return
    assert status == 101
    first, code, reason = detail
    assert code == 1008
    if route == "main":
        assert first["type"] == "error_message"
        assert first["error_code"] == "AUTH_FAILED"
        assert legacy_reason or reason == b"Authentication failed"
    else:
        assert first is None  # isolated: no frame, just the close


@pytest.mark.parametrize("route", ["main", "factory", "isolated"])
@pytest.mark.parametrize("name", list(TOKENS))
async def test_hostile_token_is_refused_in_the_route_style_and_never_reaches_unified(
    hostile: Hostile, route: str, name: str
) -> None:
    make, _ = TOKENS[name]
    bad = make()
    for carrier, carry in CARRIERS.items():
        suffix, headers = carry(bad)
        outcome = await hostile.connect(PATHS[route] + suffix, headers)
        try:
            expect_refusal(route, outcome)
        except AssertionError as exc:
            raise AssertionError(f"{carrier}: {outcome!r}") from exc
    # Four carriers reach the verifier; the cookie-only client has no token at all.
    for reason, n in expected_reasons(name).items():
        assert (
            await hostile.metric("strangler_auth_failures_total", route=route, reason=reason) == n
        )
    assert await hostile.metric("strangler_auth_failures_total", route=route, reason="missing") == 1
    assert (
        await hostile.metric(
            "strangler_handshake_refusals_total", route=route, reason="auth_failed"
        )
        == 5
    )
    assert hostile.unified.handshakes == []
    assert hostile.legacy_reached() == 0  # refused at the edge, before any backend
    assert await hostile.non_legacy_decisions() == 0
    await hostile.still_serving()
    hostile.assert_never_logged(bad)


@pytest.mark.parametrize("name", list(TOKENS))
async def test_hostile_token_on_a_route_without_auth_is_anonymous_on_legacy(
    hostile: Hostile, name: str
) -> None:
    make, _ = TOKENS[name]
    bad = make()
    for carry in CARRIERS.values():
        suffix, headers = carry(bad)
        assert await hostile.served_by_legacy(PATHS["legacy"] + suffix, headers)
    for reason, n in expected_reasons(name).items():
        assert (
            await hostile.metric("strangler_auth_failures_total", route="legacy", reason=reason)
            == n
        )
    assert (
        await hostile.metric(
            "strangler_flag_evaluations_total",
            flag="unified_router",
            mode="legacy",
            reason="anonymous",
        )
        == 5 + 1  # and the bystander
    )
    assert hostile.unified.handshakes == []
    assert await hostile.non_legacy_decisions() == 0
    await hostile.still_serving()
    hostile.assert_never_logged(bad)


@pytest.mark.parametrize(
    "entry",
    [
        "jwt.%%%not-base64%%%",
        "jwt." + b64url(b"not a jwt at all, just bytes \xff\xfe"),
        "jwt." + b64url(b"a.b"),  # decodes, but not to three parts
        "bearer.eyJhbGciOi",  # truncated
    ],
    ids=["bad_alphabet", "not_a_jwt", "two_parts", "truncated"],
)
@pytest.mark.parametrize("route", ["main", "factory", "isolated"])
async def test_malformed_subprotocol_token_is_refused_as_malformed(
    hostile: Hostile, route: str, entry: str
) -> None:
    outcome = await hostile.connect(
        PATHS[route], [("Sec-WebSocket-Protocol", f"jwt-auth, {entry}")]
    )
    expect_refusal(route, outcome)
    assert (
        await hostile.metric("strangler_auth_failures_total", route=route, reason="malformed") == 1
    )
    assert hostile.unified.handshakes == [] and hostile.legacy_reached() == 0
    assert await hostile.non_legacy_decisions() == 0
    await hostile.still_serving()
    hostile.assert_never_logged(entry.split(".", 1)[1])


@pytest.mark.parametrize(
    "header",
    [
        ("Authorization", "Bearer \xff\xfe.e30.sig"),
        ("Sec-WebSocket-Protocol", "jwt-auth, bearer.\xff\xfe.e30.sig"),
    ],
    ids=["bearer_header", "subprotocol"],
)
@pytest.mark.parametrize("route", ["main", "factory", "isolated"])
async def test_token_bytes_that_are_not_utf8_are_refused_as_malformed_not_a_500(
    hostile: Hostile, route: str, header: tuple[str, str]
) -> None:
    # The raw client sends header text as Latin-1: these are the bytes FF FE on the wire.
    outcome = await hostile.connect(PATHS[route], [header])
    expect_refusal(route, outcome)
    assert (
        await hostile.metric("strangler_auth_failures_total", route=route, reason="malformed") == 1
    )
    assert hostile.unified.handshakes == [] and hostile.legacy_reached() == 0
    await hostile.still_serving()
    hostile.assert_never_logged()


@pytest.mark.parametrize("carrier", ["bearer_header", "query", "subprotocol_bearer", "cookie"])
async def test_a_100_kib_token_is_refused_before_it_is_parsed(
    hostile: Hostile, carrier: str
) -> None:
    huge = rs256(claims(pad="x" * 100 * 1024))
    suffix, headers = CARRIERS[carrier](huge)
    status, _ = await hostile.connect(PATHS["main"] + suffix, headers)
    # Over the HTTP parser's 8 KiB line limit: refused before any handler or verifier.
    assert status in (400, 431)
    assert (
        await hostile.metric("strangler_bad_input_total", route="none", reason="bad_request") == 1
    )
    assert hostile.unified.handshakes == [] and hostile.legacy_reached() == 0
    assert await hostile.non_legacy_decisions() == 0
    await hostile.still_serving()
    hostile.assert_never_logged(huge)


async def test_a_bogus_ticket_goes_to_legacy_only(hostile: Hostile) -> None:
    # Tickets are redeemed by the legacy backend alone; without introspection the proxy
    # cannot know the user, so the connection is anonymous and legacy decides.
    forged = rs256(claims())  # a valid token is still no ticket
    assert await hostile.served_by_legacy(f"/ws?ticket={forged}", [])
    assert hostile.unified.handshakes == []
    assert await hostile.non_legacy_decisions() == 0
    await hostile.still_serving()
    hostile.assert_never_logged(forged)


async def test_a_forged_ticket_is_refused_by_legacy_and_never_decides_unified(
    stack: Stack, caplog: pytest.LogCaptureFixture
) -> None:
    """With introspection configured, the proxy asks the issuer who a ticket stands for;
    a forged one stands for nobody, so legacy (which alone redeems tickets) refuses it."""
    caplog.set_level(logging.DEBUG)
    await stack.backends()
    running = await stack.proxy(
        f"flags:\n  unified_router:\n    routes: {ALL_ROUTES}\n    rollout: {{unified: 100}}\n"
    )
    hostile = Hostile(running, QuietUpstream("unused"), QuietUpstream("unused"), caplog)
    forged = "forged-ticket-" + b64url(b"\x00" * 18)
    for route in ("main", "factory", "isolated"):
        for key in ("ticket", "auth_ticket", "ticket_id"):
            outcome = await hostile.connect(f"{PATHS[route]}?{key}={forged}", [])
            expect_refusal(route, outcome, legacy_reason=True)
    assert await hostile.non_legacy_decisions() == 0
    assert (
        await hostile.metric(
            "strangler_flag_evaluations_total",
            flag="unified_router",
            mode="legacy",
            reason="anonymous",
        )
        == 9
    )
    # The reference backends' own logs (their access log quotes the URL) are theirs.
    hostile.assert_never_logged(forged, foreign=("aiohttp.access", "demo."))
