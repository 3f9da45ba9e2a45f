"""admin_trust.allowed_hosts in strangler.yaml: the names the admin port answers besides
its own, checked when the file is read so a typo stops the start, not every scrape."""

from __future__ import annotations

import pytest

from strangler.proxy.admin.trust import AdminTrust, Authority
from strangler.proxy.config import ConfigError, parse_config

BASE = """
routes:
  - {name: main, path: /ws}
jwt: {secret_env: CFG_TEST_SECRET}
"""


@pytest.fixture(autouse=True)
def secret(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CFG_TEST_SECRET", "s3cret-s3cret-s3cret-s3cret-s3cret")


def test_by_default_no_name_is_added() -> None:
    assert parse_config(BASE, "strangler.yaml").admin_allowed_hosts == ()


def test_names_addresses_and_ports_are_read_lowercased() -> None:
    hosts = 'Admin.Internal, "10.0.0.5:9090", "[fd00::1]:9090", "fd00::2"'
    text = BASE + f"admin_trust: {{allowed_hosts: [{hosts}]}}\n"
    config = parse_config(text, "strangler.yaml")
    assert config.admin_allowed_hosts == (
        "admin.internal",
        "10.0.0.5:9090",
        "[fd00::1]:9090",
        "fd00::2",
    )
    trust = AdminTrust.configured(config.admin_listen.host, config.admin_allowed_hosts)
    assert trust.allowed == (
        Authority("admin.internal", None),
        Authority("10.0.0.5", 9090),
        Authority("fd00::1", 9090),
        Authority("fd00::2", None),
    )
    assert not trust.any_host


def test_a_star_is_the_explicit_opt_out() -> None:
    config = parse_config(BASE + 'admin_trust: {allowed_hosts: ["*"]}\n', "strangler.yaml")
    assert AdminTrust.configured("127.0.0.1", config.admin_allowed_hosts).any_host


@pytest.mark.parametrize(
    "entry",
    [
        "http://admin.internal",
        "admin.internal/status",
        "*.internal",
        "admin.internal:0",
        "admin.internal:99999",
        "admin.internal:",
        # Entries the listener's own reading cannot match: refused at start-up, not
        # dropped in silence when the listener reads them.
        "[::1]:",
        "admin.internal:\u0663",
        "[fd00::1",
        "[nope]:9090",
        "admin internal",
        "",
    ],
)
def test_an_entry_that_is_no_host_name_is_refused_with_the_key_named(entry: str) -> None:
    with pytest.raises(ConfigError) as caught:
        parse_config(BASE + f'admin_trust: {{allowed_hosts: ["{entry}"]}}\n', "strangler.yaml")
    assert caught.value.key.startswith("admin_trust.allowed_hosts")


def test_an_unknown_key_in_the_section_is_refused() -> None:
    with pytest.raises(ConfigError) as caught:
        parse_config(BASE + "admin_trust: {allowed_origins: [x]}\n", "strangler.yaml")
    assert caught.value.key == "admin_trust.allowed_origins"
