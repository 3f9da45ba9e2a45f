"""The origin-form target the proxy forwards, whatever form the client's target took."""

from __future__ import annotations

import pytest
from aiohttp.test_utils import make_mocked_request
from yarl import URL

from strangler.proxy.edge.target import origin_form, raw_query


@pytest.mark.parametrize(
    ("target", "expected"),
    [
        ("/ws?token=a", "/ws?token=a"),
        ("//evil.example/x", "//evil.example/x"),  # a path, however it looks
        ("/ws?x=a%26y%3Db", "/ws?x=a%26y%3Db"),  # still encoded: %26 is not a separator
        ("http://evil.example/websocket", "/websocket"),
        ("http://evil.example:8080/websocket?x=1", "/websocket?x=1"),
        ("https://evil.example", "/"),
        ("ws://evil.example/ws/%2e%2e/x?q=%20", "/ws/%2e%2e/x?q=%20"),
        ("ftp://evil.example/websocket", None),
        ("evil.example:443", None),
        ("*", None),
    ],
)
def test_origin_form_keeps_only_the_path_and_query(target: str, expected: str | None) -> None:
    assert origin_form(make_mocked_request("GET", target)) == expected


@pytest.mark.parametrize(
    ("legacy_url", "target"),
    [("ws://legacy.internal", "http://evil.example/websocket"), ("ws://10.0.0.1", "@evil/x")],
)
def test_the_dialled_host_never_depends_on_the_target(legacy_url: str, target: str) -> None:
    # The defect: base + raw target let "ws://legacy.internal" + "http://evil..." name
    # another host. Only an origin-form target (a path) is ever appended.
    form = origin_form(make_mocked_request("GET", target))
    if form is not None:
        assert URL(legacy_url + form).host == URL(legacy_url).host


def test_raw_query_is_the_encoded_query() -> None:
    assert raw_query("/ws?a=%26&b=1") == "a=%26&b=1"
    assert raw_query("/ws") == ""
