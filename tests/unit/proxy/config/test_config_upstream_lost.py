"""Reliability settings: the close for a backend lost mid-session (1011 unless the
config says otherwise) and the time a client has to send its request head."""

from __future__ import annotations

import pytest

from strangler.proxy.config import ConfigError, parse_config

BASE = """
routes:
  - {name: main, path: /ws}
  - {name: isolated, path: /ws/isolated, dialect: isolated, upstream_lost_close_code: 4500}
jwt: {secret_env: CFG_TEST_SECRET}
"""


@pytest.fixture(autouse=True)
def secret(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CFG_TEST_SECRET", "s3cret-s3cret-s3cret-s3cret-s3cret")


def test_default_is_1011_and_a_route_can_name_its_own_code() -> None:
    config = parse_config(BASE, "strangler.yaml")
    assert config.relay.upstream_lost_close_code == 1011
    codes = {route.name: route.upstream_lost_close_code for route in config.routes}
    assert codes == {"main": None, "isolated": 4500}


def test_relay_default_can_be_changed() -> None:
    config = parse_config(BASE + "relay: {upstream_lost_close_code: 1012}\n", "strangler.yaml")
    assert config.relay.upstream_lost_close_code == 1012


@pytest.mark.parametrize("code", [1006, 1005, 1015, 999, 2000, 5000])
def test_a_code_no_server_may_send_is_refused_with_the_key_named(code: int) -> None:
    with pytest.raises(ConfigError) as caught:
        parse_config(BASE + f"relay: {{upstream_lost_close_code: {code}}}\n", "strangler.yaml")
    assert caught.value.key == "relay.upstream_lost_close_code"
    assert str(code) in caught.value.problem


def test_header_timeout_defaults_to_ten_seconds_and_must_be_positive() -> None:
    assert parse_config(BASE, "strangler.yaml").limits.header_timeout == 10.0
    config = parse_config(BASE + "limits: {header_timeout: 2.5}\n", "strangler.yaml")
    assert config.limits.header_timeout == 2.5
    with pytest.raises(ConfigError) as caught:
        parse_config(BASE + "limits: {header_timeout: 0}\n", "strangler.yaml")
    assert caught.value.key == "limits.header_timeout"
