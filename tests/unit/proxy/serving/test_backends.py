"""Dialling the backends: URLs, forwarded headers, refusals mirrored and the fallback.

Each test hands `open_primary` a scripted dial (what each backend does), so the
decision logic runs without a socket.
"""

from __future__ import annotations

from collections.abc import Mapping

import pytest
from aiohttp import web
from aiohttp.test_utils import make_mocked_request
from multidict import CIMultiDict

from strangler.flags.evaluate import Decision
from strangler.flags.model import Mode, Reason
from strangler.proxy.config import AuthStyle, Config, Route, parse_config
from strangler.proxy.relay.upstream import UpstreamRefused, UpstreamUnavailable
from strangler.proxy.serving.backends import AUTH_HEADER, ROUTE_HEADER, Backends
from strangler.proxy.telemetry.metrics import Metrics

CONFIG = """
backends:
  legacy: {url: "ws://127.0.0.1:8091"}
  unified: {url: "ws://127.0.0.1:8092/v1/ws", on_unavailable: %s}
routes:
  - {name: main, path: /ws, dialect: main, auth: accept_then_frame}
jwt: {secret_env: BACKENDS_TEST_SECRET}
"""

Observed = list[tuple[str | None, str, bool]]


@pytest.fixture(autouse=True)
def secret(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("BACKENDS_TEST_SECRET", "backends-test-secret-0123456789abcdef")


def config(on_unavailable: str = "fallback") -> Config:
    return parse_config(CONFIG % on_unavailable, "strangler.yaml")


def backends(cfg: Config, observed: Observed) -> tuple[Backends, Metrics]:
    metrics = Metrics()
    return Backends(cfg, metrics, lambda *sample: observed.append(sample)), metrics


def request(path: str = "/ws?mode=x&v=2", headers: Mapping[str, str] | None = None) -> web.Request:
    return make_mocked_request("GET", path, headers=CIMultiDict(headers or {}))


def decision(mode: Mode) -> Decision:
    return Decision(mode, Reason.TARGET, "unified_router", None, None)


def scripted(**answers: BaseException | str):  # type: ignore[no-untyped-def]
    """A dial whose backends answer as scripted: a socket's name, or an exception."""
    dialled: list[str] = []

    async def connect(
        name: str, _request: web.Request, _offered: list[str], _headers: CIMultiDict[str]
    ) -> str:
        dialled.append(name)
        answer = answers[name]
        if isinstance(answer, BaseException):
            raise answer
        return answer

    return connect, dialled


def main(cfg: Config) -> Route:
    return cfg.routes[0]


def test_legacy_keeps_the_path_and_query_and_unified_keeps_only_the_query() -> None:
    b, _ = backends(config(), [])
    assert b.url("legacy", request("/ws/factory?t=1")) == "ws://127.0.0.1:8091/ws/factory?t=1"
    assert b.url("unified", request("/ws/factory?t=1")) == "ws://127.0.0.1:8092/v1/ws?t=1"
    assert b.url("unified", request("/ws")) == "ws://127.0.0.1:8092/v1/ws"


def test_only_end_to_end_headers_travel_with_the_route_named() -> None:
    cfg = config()
    b, _ = backends(cfg, [])
    sent = b.headers(
        request(headers={"Authorization": "Bearer t", "Cookie": "c=1", "Connection": "x"}),
        main(cfg),
        AuthStyle.ACCEPT_THEN_FRAME,
    )
    assert sent["Authorization"] == "Bearer t" and sent["Cookie"] == "c=1"
    assert "Connection" not in sent
    assert sent[ROUTE_HEADER] == "main"
    assert AUTH_HEADER not in sent
    anonymous = b.headers(request(), main(cfg), AuthStyle.NONE)
    assert anonymous[AUTH_HEADER] == "none"


async def test_a_unified_handshake_that_succeeds_is_a_good_guard_sample() -> None:
    cfg = config()
    observed: Observed = []
    b, _ = backends(cfg, observed)
    connect, dialled = scripted(unified="router socket")
    opened = await b.open_primary(
        request(), main(cfg), decision(Mode.UNIFIED), [], CIMultiDict(), connect
    )
    assert opened == ("unified", decision(Mode.UNIFIED), "router socket")
    assert dialled == ["unified"]
    assert observed == [("unified_router", "unified_error_ratio", False)]


@pytest.mark.parametrize(
    "failure",
    [UpstreamRefused(503, {}, b""), UpstreamUnavailable("refused", "down")],
    ids=["503", "unreachable"],
)
async def test_an_unreachable_unified_router_falls_back_to_legacy(failure: Exception) -> None:
    cfg = config()
    observed: Observed = []
    b, metrics = backends(cfg, observed)
    connect, dialled = scripted(unified=failure, legacy="legacy socket")
    opened = await b.open_primary(
        request(), main(cfg), decision(Mode.LIVE), [], CIMultiDict(), connect
    )
    assert not isinstance(opened, web.Response)
    name, fallback, sock = opened
    assert (name, sock) == ("legacy", "legacy socket")
    assert fallback.mode is Mode.LEGACY and fallback.reason is Reason.FALLBACK
    assert dialled == ["unified", "legacy"]
    assert observed == [("unified_router", "unified_error_ratio", True)]
    assert metrics.registry.get_sample_value("strangler_fallbacks_total", {"route": "main"}) == 1


async def test_a_unified_refusal_of_the_user_is_mirrored_not_a_fallback_nor_an_outage() -> None:
    cfg = config()
    observed: Observed = []
    b, _ = backends(cfg, observed)
    refusal = UpstreamRefused(403, {"Content-Type": "application/json"}, b'{"error":"no"}')
    connect, dialled = scripted(unified=refusal)
    opened = await b.open_primary(
        request(), main(cfg), decision(Mode.UNIFIED), [], CIMultiDict(), connect
    )
    assert isinstance(opened, web.Response)
    assert opened.status == 403 and opened.body == b'{"error":"no"}'
    assert dialled == ["unified"]
    assert observed == []


async def test_a_unified_500_counts_against_the_router_but_is_not_a_fallback() -> None:
    cfg = config()
    observed: Observed = []
    b, _ = backends(cfg, observed)
    connect, dialled = scripted(unified=UpstreamRefused(500, {}, b"boom"))
    opened = await b.open_primary(
        request(), main(cfg), decision(Mode.UNIFIED), [], CIMultiDict(), connect
    )
    assert isinstance(opened, web.Response) and opened.status == 500
    assert dialled == ["unified"]
    assert observed == [("unified_router", "unified_error_ratio", True)]


@pytest.mark.parametrize(("reason", "status"), [("handshake_timeout", 504), ("refused", 502)])
async def test_without_fallback_an_unreachable_router_is_a_gateway_error(
    reason: str, status: int
) -> None:
    cfg = config("refuse")
    b, metrics = backends(cfg, [])
    connect, dialled = scripted(unified=UpstreamUnavailable(reason, "down"))
    opened = await b.open_primary(
        request(), main(cfg), decision(Mode.UNIFIED), [], CIMultiDict(), connect
    )
    assert isinstance(opened, web.Response) and opened.status == status
    assert opened.text == "backend unified unavailable\n"
    assert dialled == ["unified"]
    refused = metrics.registry.get_sample_value(
        "strangler_handshake_refusals_total", {"route": "main", "reason": "upstream_unavailable"}
    )
    assert refused == 1


async def test_when_the_fallback_fails_too_the_client_sees_legacy_s_answer() -> None:
    cfg = config()
    b, _ = backends(cfg, [])
    connect, dialled = scripted(
        unified=UpstreamUnavailable("refused", "down"),
        legacy=UpstreamRefused(429, {"Retry-After": "3"}, b"slow down"),
    )
    opened = await b.open_primary(
        request(), main(cfg), decision(Mode.UNIFIED), [], CIMultiDict(), connect
    )
    assert isinstance(opened, web.Response)
    assert opened.status == 429 and opened.headers["Retry-After"] == "3"
    assert dialled == ["unified", "legacy"]


async def test_legacy_is_never_observed_by_the_unified_guard() -> None:
    cfg = config()
    observed: Observed = []
    b, _ = backends(cfg, observed)
    connect, _ = scripted(legacy=UpstreamUnavailable("refused", "down"))
    opened = await b.open_primary(
        request(), main(cfg), decision(Mode.SHADOW), [], CIMultiDict(), connect
    )
    assert isinstance(opened, web.Response) and opened.status == 502
    assert observed == []
