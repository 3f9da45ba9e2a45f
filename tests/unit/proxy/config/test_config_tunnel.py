"""relay.tunnel: auto by default, off on request, anything else named as the error."""

from __future__ import annotations

import pytest

from strangler.proxy.config import ConfigError, parse_config

BASE = """
routes:
  - {name: main, path: /ws}
jwt: {secret_env: CFG_TEST_SECRET}
"""


@pytest.fixture(autouse=True)
def secret(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CFG_TEST_SECRET", "s3cret-s3cret-s3cret-s3cret-s3cret")


def test_the_tunnel_is_on_by_default() -> None:
    assert parse_config(BASE, "strangler.yaml").relay.tunnel == "auto"


@pytest.mark.parametrize(
    ("value", "expected"),
    # YAML 1.1 reads a bare off/on as a boolean; both spellings mean what they say.
    [("auto", "auto"), ("off", "off"), ('"off"', "off"), ("false", "off"), ("on", "auto")],
)
def test_tunnel_setting_is_read_as_written(value: str, expected: str) -> None:
    config = parse_config(BASE + f"relay: {{tunnel: {value}}}\n", "strangler.yaml")
    assert config.relay.tunnel == expected


@pytest.mark.parametrize("value", ["always", "1", "[auto]"])
def test_any_other_tunnel_setting_is_refused_with_the_key_named(value: str) -> None:
    with pytest.raises(ConfigError) as caught:
        parse_config(BASE + f"relay: {{tunnel: {value}}}\n", "strangler.yaml")
    assert caught.value.key == "relay.tunnel"
