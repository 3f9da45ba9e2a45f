"""`strangler conformance`: usage errors exit 2 before any connection is tried."""

from __future__ import annotations

import socket

import pytest

from strangler.proxy.commands.cli import build_parser, main
from strangler.proxy.commands.conformance import router_from
from strangler.proxy.commands.conformance_probe import Router, redact
from strangler.proxy.edge.identity import mint_token

SECRET = "conformance-unit-secret-of-thirty-two-bytes"


@pytest.fixture(autouse=True)
def no_secret_in_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("STRANGLER_JWT_SECRET", raising=False)


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (
            ["conformance", "http://127.0.0.1:1/v1/ws", "--secret", SECRET],
            "strangler conformance: URL must start with ws:// or wss://, "
            "got 'http://127.0.0.1:1/v1/ws'",
        ),
        (
            ["conformance", "ws://127.0.0.1:1/v1/ws"],
            "strangler conformance: no token: give --token, or --secret or "
            "STRANGLER_JWT_SECRET to mint one",
        ),
        (
            ["conformance", "ws://127.0.0.1:1/v1/ws", "--token", "not-a-jwt"],
            "strangler conformance: --token is not a JWT",
        ),
        (
            ["conformance", "ws://127.0.0.1:1/v1/ws", "--secret", SECRET, "--timeout", "0"],
            "strangler conformance: --timeout must be positive, got 0",
        ),
    ],
)
def test_a_usage_error_exits_2_naming_it(
    argv: list[str], message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(argv) == 2
    captured = capsys.readouterr()
    assert captured.err.strip() == message
    assert captured.out == ""


def test_a_short_secret_is_a_usage_error_that_points_at_token(
    capsys: pytest.CaptureFixture[str],
) -> None:
    assert main(["conformance", "ws://127.0.0.1:1/v1/ws", "--secret", "shh-not-long"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("strangler conformance: jwt: The HMAC key is 12 bytes long")
    assert err.rstrip().endswith("(give a ready-made token with --token)")
    assert "shh-not-long" not in err


def test_a_given_token_names_the_user_the_router_must_report() -> None:
    token = mint_token(SECRET, "router-team-bot")
    args = build_parser().parse_args(["conformance", "ws://127.0.0.1:1/v1/ws", "--token", token])
    router = router_from(args)
    assert isinstance(router, Router)
    assert (router.user, router.token) == ("router-team-bot", token)


def test_the_secret_comes_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("STRANGLER_JWT_SECRET", SECRET)
    args = build_parser().parse_args(["conformance", "ws://127.0.0.1:1/v1/ws", "--user", "bob"])
    router = router_from(args)
    assert isinstance(router, Router)
    assert router.user == "bob"


def test_a_token_never_shows_in_a_reason() -> None:
    token = mint_token(SECRET, "u")
    for entry in (f"jwt.{token}", f"jwt-auth.{token}", f"bearer.{token}"):
        assert token not in redact(entry)
    assert redact("jwt-auth") == "'jwt-auth'"
    assert redact(None) == "none"


def test_an_unreachable_router_fails_every_check_and_exits_1(
    capsys: pytest.CaptureFixture[str],
) -> None:
    with socket.socket() as s:  # a loopback port nothing listens on once it is closed
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    url = f"ws://127.0.0.1:{port}/v1/ws"
    code = main(["conformance", url, "--secret", SECRET, "--timeout", "2"])
    lines = capsys.readouterr().out.splitlines()
    assert code == 1
    assert lines[0].startswith("FAIL subprotocol/browser-offer: cannot reach the router: ")
    assert lines[-1] == f"0 passed, {len(lines) - 1} failed"
