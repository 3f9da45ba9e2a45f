"""strangler.yaml validation: every error names the file, the key and the problem."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from strangler.proxy.config import AuthStyle, ConfigError, parse_config
from strangler.proxy.edge.routes import RouteTable
from strangler.proxy.relay.frame_relay import clip_reason, sendable

GOOD = """
listen: 127.0.0.1:8080
admin_listen: "[::1]:8090"
backends:
  legacy: {url: "ws://127.0.0.1:8091/", connect_timeout: 2}
  unified: {url: "wss://router.internal/v1/ws"}
routes:
  - {name: main, path: /ws, dialect: main, auth: accept_then_frame}
  - {name: main_user, path: "/ws/{user_id}", dialect: main_payload}
  - {name: factory, path: /ws/factory, dialect: factory, auth: refuse_handshake}
  - {name: legacy, path: /websocket, dialect: legacy, auth: none}
flags: {file: flags.yaml}
jwt: {secret_env: CFG_TEST_SECRET, audience: netra-platform}
"""


@pytest.fixture(autouse=True)
def secret(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CFG_TEST_SECRET", "s3cret-s3cret-s3cret-s3cret-s3cret")


def error_for(text: str) -> ConfigError:
    with pytest.raises(ConfigError) as caught:
        parse_config(text, "/etc/strangler/strangler.yaml")
    return caught.value


def test_good_config_parses_with_defaults_filled_in() -> None:
    config = parse_config(GOOD, "/etc/strangler/strangler.yaml")
    assert (config.listen.host, config.listen.port) == ("127.0.0.1", 8080)
    assert config.admin_listen.host == "::1"
    assert config.legacy.url == "ws://127.0.0.1:8091"
    assert config.unified.secure and config.unified.connect_timeout == 5.0
    assert config.flags.file == Path("/etc/strangler/flags.yaml")
    assert config.jwt.secret == "s3cret-s3cret-s3cret-s3cret-s3cret" and config.jwt.audience == (
        "netra-platform",
    )
    legacy = next(r for r in config.routes if r.name == "legacy")
    assert legacy.auth is AuthStyle.NONE and legacy.anonymous
    assert config.relay.max_message_bytes == 4 * 1024 * 1024


@pytest.mark.parametrize(
    ("change", "key", "where", "words"),
    [
        (("listen: 127.0.0.1:8080", "listen: nowhere"), "listen", "2:1", "host:port"),
        (("ws://127.0.0.1:8091/", "http://127.0.0.1:8091"), "backends.legacy.url", "5:12", "ws://"),
        (
            ("connect_timeout: 2", "connect_timeout: -1"),
            "backends.legacy.connect_timeout",
            "5:41",
            "> 0",
        ),
        (("dialect: factory", "dialect: fancy"), "routes[2].dialect", "10:40", "unknown dialect"),
        (("auth: none", "auth: maybe"), "routes[3].auth", "11:55", "unknown auth style"),
        (("name: factory", "name: main"), "routes[2].name", "10:6", "defined twice"),
        (("path: /websocket", "path: /ws"), "routes[3].path", "11:20", "claimed by two routes"),
        (("path: /websocket", "path: websocket"), "routes[3].path", "11:20", "start with '/'"),
        (
            ('path: "/ws/{user_id}"', 'path: "/ws/x{user_id}"'),
            "routes[1].path",
            "9:23",
            "whole segment",
        ),
        (
            ("flags: {file: flags.yaml}", "flags: {file: flags.yaml, colour: red}"),
            "flags.colour",
            "12:27",
            "unknown key",
        ),
        (
            ("jwt: {secret_env: CFG_TEST_SECRET,", "jwt: {algorithms: [none], secret_env: X,"),
            "jwt.algorithms",
            "13:7",
            "never allowed",
        ),
        (("CFG_TEST_SECRET", "CFG_TEST_UNSET"), "jwt.secret_env", "13:7", "not set"),
    ],
)
def test_each_error_names_the_file_the_key_and_the_problem(
    change: tuple[str, str], key: str, where: str, words: str
) -> None:
    old, new = change
    assert old in GOOD
    error = error_for(GOOD.replace(old, new, 1))
    assert error.source == "/etc/strangler/strangler.yaml"
    assert error.key == key
    assert words.replace("> 0", "greater than 0") in error.problem
    assert str(error) == f"/etc/strangler/strangler.yaml:{where}: {key}: {error.problem}"


def test_yaml_syntax_error_gives_line_and_column_and_where_the_open_bracket_is() -> None:
    error = error_for("listen: [oops\nroutes: 3\n")
    assert str(error) == (
        "/etc/strangler/strangler.yaml:2:7: not valid YAML: expected ',' or ']', but got ':' "
        "(while parsing a flow sequence at line 1, column 9)"
    )


def test_config_without_routes_is_refused() -> None:
    assert error_for("listen: 127.0.0.1:1\n").key == "routes"


def test_mixing_hmac_and_rsa_algorithms_is_refused() -> None:
    error = error_for(GOOD.replace("jwt: {", "jwt: {algorithms: [HS256, RS256], "))
    assert error.key == "jwt.algorithms"


def test_literal_paths_win_over_patterns_and_trailing_slash_is_the_same_route() -> None:
    table = RouteTable(parse_config(GOOD, "s.yaml").routes)
    assert table.match("/ws/factory").name == "factory"  # type: ignore[union-attr]
    assert table.match("/ws/u-123").name == "main_user"  # type: ignore[union-attr]
    assert table.match("/ws/").name == "main"  # type: ignore[union-attr]
    assert table.match("/ws/a/b") is None
    assert table.match("/other") is None


@pytest.mark.parametrize(
    ("code", "fallback", "expected"),
    [
        (1000, 1011, 1000),
        (4001, 1011, 4001),
        (3000, 1011, 3000),
        (1006, 1011, 1011),
        (1005, 1011, 1000),
        (1015, 1001, 1001),
        (None, 1001, 1001),
        (5000, 1011, 1011),
        (1004, 1011, 1011),
    ],
)
def test_reserved_close_codes_never_go_on_the_wire(
    code: int | None, fallback: int, expected: int
) -> None:
    assert sendable(code, fallback) == expected


def test_close_reason_is_clipped_to_123_bytes_on_a_character_boundary() -> None:
    clipped = clip_reason("é" * 100)
    assert len(clipped) <= 123
    clipped.decode("utf-8")  # still valid UTF-8


def test_cli_exits_2_with_one_line_and_no_traceback(tmp_path: Path) -> None:
    config = tmp_path / "strangler.yaml"
    config.write_text(GOOD.replace("dialect: factory", "dialect: fancy"))
    result = subprocess.run(
        [sys.executable, "-m", "strangler.proxy", "run", "--config", str(config)],
        capture_output=True,
        text=True,
        env={"CFG_TEST_SECRET": "x" * 40, "PATH": "/usr/bin:/bin"},
        timeout=60,
    )
    assert result.returncode == 2
    assert "Traceback" not in result.stderr
    assert result.stderr.startswith(f"{config}:10:40: routes[2].dialect: unknown dialect 'fancy'")
    assert result.stderr.count("\n") == 1
