"""Admission: the connection limits and the identity a handshake is served as, no sockets."""

from __future__ import annotations

import time
from typing import Any

import jwt
import pytest

from strangler.proxy.config import AuthStyle, Config, Route, parse_config
from strangler.proxy.edge.admission import Admission
from strangler.proxy.edge.identity import AuthError, Credentials, Identity, TokenSource
from strangler.proxy.telemetry.metrics import Metrics

SECRET = "admission-test-secret-0123456789abcdef"

CONFIG = """
routes:
  - {name: main, path: /ws, dialect: main, auth: accept_then_frame}
  - {name: open, path: /ws/open, dialect: main, auth: accept_then_frame, anonymous: true}
  - {name: legacy, path: /websocket, dialect: legacy, auth: none}
jwt: {secret_env: ADMISSION_TEST_SECRET}
limits: {max_connections: 3, max_connections_per_ip: 2}
"""


@pytest.fixture
def config(monkeypatch: pytest.MonkeyPatch) -> Config:
    monkeypatch.setenv("ADMISSION_TEST_SECRET", SECRET)
    return parse_config(CONFIG, "strangler.yaml")


@pytest.fixture
def metrics() -> Metrics:
    return Metrics()


def no_session() -> Any:
    raise AssertionError("no ticket introspection is configured")


@pytest.fixture
def admission(config: Config, metrics: Metrics) -> Admission:
    return Admission(config, metrics, no_session)


def route(config: Config, name: str) -> Route:
    return next(r for r in config.routes if r.name == name)


def token(sub: str) -> str:
    now = int(time.time())
    return jwt.encode({"sub": sub, "iat": now, "exp": now + 60}, SECRET, algorithm="HS256")


def failures(metrics: Metrics, route: str, reason: str) -> float | None:
    return metrics.registry.get_sample_value(
        "strangler_auth_failures_total", {"route": route, "reason": reason}
    )


def test_per_client_limit_refuses_the_third_connection_from_one_peer(admission: Admission) -> None:
    assert admission.enter("10.0.0.1") is None
    assert admission.enter("10.0.0.1") is None
    assert admission.enter("10.0.0.1") == "too_many_from_client"
    assert admission.enter("10.0.0.2") is None  # another peer still gets in


def test_global_limit_refuses_past_the_total_and_frees_a_place_on_leave(
    admission: Admission,
) -> None:
    for peer in ("a", "b", "c"):
        assert admission.enter(peer) is None
    assert admission.enter("d") == "too_many_connections"
    admission.leave("b")
    assert admission.enter("d") is None


def test_a_refused_peer_is_not_counted(admission: Admission) -> None:
    admission.enter("a")
    admission.enter("a")
    assert admission.enter("a") == "too_many_from_client"
    admission.leave("a")
    # Had the refusal been counted, one leave would not make room.
    assert admission.enter("a") is None


async def test_a_valid_token_identifies_its_subject(
    admission: Admission, config: Config, metrics: Metrics
) -> None:
    identity = await admission.identify(
        route(config, "main"),
        AuthStyle.ACCEPT_THEN_FRAME,
        Credentials(token("alice"), TokenSource.AUTHORIZATION),
    )
    assert isinstance(identity, Identity) and identity.user_id == "alice"


async def test_no_token_on_an_authenticating_route_is_refused_and_counted(
    admission: Admission, config: Config, metrics: Metrics
) -> None:
    identity = await admission.identify(
        route(config, "main"), AuthStyle.ACCEPT_THEN_FRAME, Credentials(None, TokenSource.NONE)
    )
    assert isinstance(identity, AuthError) and identity.reason == "missing"
    assert failures(metrics, "main", "missing") == 1


async def test_no_token_on_an_anonymous_route_is_anonymous(
    admission: Admission, config: Config, metrics: Metrics
) -> None:
    identity = await admission.identify(
        route(config, "open"), AuthStyle.ACCEPT_THEN_FRAME, Credentials(None, TokenSource.NONE)
    )
    assert identity is None
    assert failures(metrics, "open", "missing") is None


async def test_a_bad_token_on_a_route_without_auth_is_anonymous_but_counted(
    admission: Admission, config: Config, metrics: Metrics
) -> None:
    identity = await admission.identify(
        route(config, "legacy"),
        AuthStyle.NONE,
        Credentials(token("alice") + "x", TokenSource.QUERY),
    )
    assert identity is None
    assert failures(metrics, "legacy", "bad_signature") == 1


async def test_a_bad_token_on_an_authenticating_route_is_refused_with_its_reason(
    admission: Admission, config: Config, metrics: Metrics
) -> None:
    identity = await admission.identify(
        route(config, "main"),
        AuthStyle.ACCEPT_THEN_FRAME,
        Credentials(token("alice") + "x", TokenSource.AUTHORIZATION),
    )
    assert isinstance(identity, AuthError) and identity.reason == "bad_signature"


async def test_a_ticket_without_introspection_is_anonymous_and_never_verified(
    admission: Admission, config: Config, metrics: Metrics
) -> None:
    identity = await admission.identify(
        route(config, "main"),
        AuthStyle.ACCEPT_THEN_FRAME,
        Credentials(None, TokenSource.TICKET, ticket="t-123"),
    )
    assert identity is None
    assert failures(metrics, "main", "missing") is None


async def test_conflicting_credentials_are_refused_and_counted(
    admission: Admission, config: Config, metrics: Metrics
) -> None:
    identity = await admission.identify(
        route(config, "main"), AuthStyle.ACCEPT_THEN_FRAME, Credentials(None, TokenSource.CONFLICT)
    )
    assert isinstance(identity, AuthError) and identity.reason == "ambiguous"
    assert failures(metrics, "main", "ambiguous") == 1


async def test_conflicting_credentials_on_a_route_without_auth_are_anonymous(
    admission: Admission, config: Config, metrics: Metrics
) -> None:
    identity = await admission.identify(
        route(config, "legacy"), AuthStyle.NONE, Credentials(None, TokenSource.CONFLICT)
    )
    assert identity is None
    assert failures(metrics, "legacy", "ambiguous") == 1
