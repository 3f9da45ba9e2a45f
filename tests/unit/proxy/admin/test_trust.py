"""Whom an admin listener answers: the pure rules of proxy/admin/trust.py, one per test.
The same rules over real sockets are in tests/functional/test_admin_trust.py."""

from __future__ import annotations

import pytest
from multidict import CIMultiDict

from strangler.proxy.admin.trust import (
    AdminTrust,
    Authority,
    Origin,
    Refusal,
    parse_authority,
    parse_origin,
    sanitised,
)

LOCAL = ("127.0.0.1", 9090)
TRUST = AdminTrust.configured("127.0.0.1", ())


def check(
    method: str = "GET",
    path: str = "/shadow",
    trust: AdminTrust = TRUST,
    local: tuple[str, int] | None = LOCAL,
    **headers: str,
) -> Refusal | None:
    given = CIMultiDict({k.replace("_", "-"): v for k, v in headers.items()})
    return trust.check(method, path, given, local, host_headers=len(given.getall("Host", ())))


# -- parsing ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("localhost", Authority("localhost", None)),
        ("LocalHost.:9090", Authority("localhost", 9090)),
        ("127.0.0.1:9090", Authority("127.0.0.1", 9090)),
        ("[::1]", Authority("::1", None)),
        ("[0:0::1]:9090", Authority("::1", 9090)),
        ("[::ffff:127.0.0.1]:9090", Authority("127.0.0.1", 9090)),
        ("::1", Authority("::1", None)),
        ("admin.internal:443", Authority("admin.internal", 443)),
    ],
)
def test_host_values_are_read_into_a_comparable_form(text: str, expected: Authority) -> None:
    assert parse_authority(text) == expected


@pytest.mark.parametrize(
    "text",
    ["", ":9090", "host:", "host:port", "host:70000", "[::1", "[nope]:1", "a b", "a/b", "u@h"],
)
def test_malformed_host_values_are_not_read(text: str) -> None:
    assert parse_authority(text) is None


def test_origins_get_their_schemes_default_port() -> None:
    assert parse_origin("http://localhost") == Origin("localhost", 80, 80)
    assert parse_origin("https://Admin.Internal") == Origin("admin.internal", 443, 443)
    assert parse_origin("http://[::1]:9090") == Origin("::1", 9090, 80)
    assert parse_origin("http://127.0.0.1:9090/status?x=1") == Origin("127.0.0.1", 9090, 80)


@pytest.mark.parametrize("text", ["null", "file:///etc", "chrome-extension://abc", "http://", "x"])
def test_opaque_or_foreign_scheme_origins_are_not_read(text: str) -> None:
    assert parse_origin(text) is None


# -- Host (DNS rebinding) ---------------------------------------------------------------


@pytest.mark.parametrize(
    "host",
    ["localhost", "localhost:9090", "127.0.0.1:9090", "[::1]:9090", "127.0.0.1", "localhost:8000"],
)
def test_loopback_names_are_answered_with_or_without_a_port(host: str) -> None:
    # Any port: `kubectl port-forward 8000:9090` sends Host localhost:8000, and no DNS
    # answer can re-point a loopback name or an IP literal.
    assert check(Host=host) is None
    assert check("POST", Host=host) is None


@pytest.mark.parametrize("method", ["GET", "POST", "HEAD", "DELETE"])
def test_a_foreign_host_is_refused_whatever_the_method(method: str) -> None:
    assert check(method, Host="evil.example:9090") is Refusal.HOST
    assert check(method, path="/metrics", Host="evil.example") is Refusal.HOST


def test_the_address_the_request_reached_is_a_name_of_the_listener() -> None:
    # Bound to every interface: the client used the machine's own address.
    trust = AdminTrust.configured("0.0.0.0", ())
    assert check(trust=trust, local=("10.1.2.3", 9090), Host="10.1.2.3:9090") is None
    assert check(trust=trust, local=("10.1.2.3", 9090), Host="10.9.9.9:9090") is Refusal.HOST
    # A wildcard configured address is no Host name.
    assert check(trust=trust, local=("10.1.2.3", 9090), Host="0.0.0.0") is Refusal.HOST


def test_the_configured_listen_address_is_a_name_of_the_listener() -> None:
    trust = AdminTrust.configured("fd00::5", ())
    assert check(trust=trust, local=("fd00::5", 9090), Host="[fd00::5]:9090") is None


def test_an_ipv4_mapped_local_address_answers_to_its_ipv4_form() -> None:
    trust = AdminTrust.configured("::", ())
    assert check(trust=trust, local=("::ffff:10.1.2.3", 9090), Host="10.1.2.3:9090") is None


def test_configured_names_are_answered_and_a_configured_port_is_required() -> None:
    trust = AdminTrust.configured("127.0.0.1", ("admin.internal", "metrics.internal:9090"))
    assert check(trust=trust, Host="ADMIN.internal:1234") is None
    assert check(trust=trust, Host="metrics.internal:9090") is None
    assert check(trust=trust, Host="metrics.internal:9091") is Refusal.HOST
    assert check(trust=trust, Host="metrics.internal") is Refusal.HOST
    assert check(trust=trust, Host="other.internal") is Refusal.HOST


def test_a_star_answers_every_host() -> None:
    trust = AdminTrust.configured("127.0.0.1", ("*",))
    assert check(trust=trust, Host="anything.example") is None


def test_the_probes_answer_every_host() -> None:
    assert check(path="/healthz", Host="evil.example") is None
    assert check(path="/readyz", Host="evil.example") is None


def test_no_host_is_no_browser_and_is_answered() -> None:
    assert check() is None


def test_a_malformed_or_doubled_host_is_refused() -> None:
    assert check(Host="local host") is Refusal.HOST
    given = CIMultiDict([("Host", "localhost"), ("Host", "evil.example")])
    assert TRUST.check("GET", "/shadow", given, LOCAL, host_headers=2) is Refusal.HOST


# -- Origin (cross-site requests) -------------------------------------------------------


@pytest.mark.parametrize("method", ["POST", "PUT", "DELETE", "PATCH"])
def test_a_state_change_from_a_foreign_origin_is_refused(method: str) -> None:
    assert check(method, Host="127.0.0.1:9090", Origin="http://evil.example") is Refusal.ORIGIN


def test_a_state_change_from_the_listeners_own_origin_is_allowed() -> None:
    assert check("POST", Host="127.0.0.1:9090", Origin="http://127.0.0.1:9090") is None
    assert check("POST", Host="localhost:9090", Origin="http://localhost:9090") is None
    assert check("POST", Host="[::1]:9090", Origin="http://[::1]:9090") is None


def test_another_port_on_the_same_host_is_another_origin() -> None:
    # A different local web app (a dev server on :3000) is cross-origin.
    assert check("POST", Host="localhost:9090", Origin="http://localhost:3000") is Refusal.ORIGIN
    assert check("POST", Host="127.0.0.1:9090", Origin="http://localhost:9090") is Refusal.ORIGIN


def test_a_host_without_a_port_means_the_origin_schemes_default() -> None:
    trust = AdminTrust.configured("127.0.0.1", ("*",))
    assert (
        check("POST", trust=trust, Host="admin.internal", Origin="https://admin.internal") is None
    )
    assert (
        check("POST", trust=trust, Host="admin.internal", Origin="http://admin.internal:8080")
        is Refusal.ORIGIN
    )


def test_a_configured_name_is_an_own_origin_behind_a_proxy_that_rewrites_host() -> None:
    trust = AdminTrust.configured("127.0.0.1", ("admin.example.com",))
    assert (
        check("POST", trust=trust, Host="127.0.0.1:9090", Origin="https://admin.example.com")
        is None
    )


def test_a_null_origin_is_refused() -> None:
    assert check("POST", Host="127.0.0.1:9090", Origin="null") is Refusal.ORIGIN


def test_without_origin_the_referer_decides() -> None:
    assert check("POST", Host="127.0.0.1:9090", Referer="http://127.0.0.1:9090/status") is None
    assert check("POST", Host="127.0.0.1:9090", Referer="http://evil.example/") is Refusal.ORIGIN


@pytest.mark.parametrize("site", ["cross-site", "same-site", "Cross-Site"])
def test_fetch_metadata_saying_cross_site_is_refused(site: str) -> None:
    assert check("POST", Host="127.0.0.1:9090", Sec_Fetch_Site=site) is Refusal.ORIGIN


@pytest.mark.parametrize("site", ["same-origin", "none"])
def test_fetch_metadata_saying_same_origin_or_user_typed_is_allowed(site: str) -> None:
    assert check("POST", Host="127.0.0.1:9090", Sec_Fetch_Site=site) is None


def test_a_tool_sending_neither_origin_nor_referer_may_change_state() -> None:
    assert check("POST", Host="127.0.0.1:9090") is None


def test_reads_are_never_refused_for_their_origin() -> None:
    assert check("GET", Host="127.0.0.1:9090", Origin="http://evil.example") is None
    assert check("HEAD", Host="127.0.0.1:9090", Sec_Fetch_Site="cross-site") is None


def test_without_a_host_the_origin_must_be_the_listeners_own_address() -> None:
    assert check("POST", Origin="http://127.0.0.1:9090") is None
    assert check("POST", Origin="http://localhost:9090") is None
    assert check("POST", Origin="http://127.0.0.1:9091") is Refusal.ORIGIN
    assert check("POST", Origin="http://evil.example:9090") is Refusal.ORIGIN


def test_a_star_host_still_requires_the_origin_to_match_the_host() -> None:
    trust = AdminTrust.configured("127.0.0.1", ("*",))
    assert check("POST", trust=trust, Host="a.example", Origin="http://b.example") is Refusal.ORIGIN
    assert check("POST", trust=trust, Host="a.example", Origin="http://a.example") is None


# -- logging ----------------------------------------------------------------------------


def test_logged_header_values_are_printable_and_bounded() -> None:
    assert sanitised(None) == "-"
    assert sanitised("evil.example\r\nX: y") == "evil.example??X: y"
    assert sanitised("é") == "?"
    long = sanitised("a" * 500)
    assert long == "a" * 64 + "..."
