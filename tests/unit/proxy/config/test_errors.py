"""Configuration errors: every problem at once, each at its line and column, in the
project's words, and never a secret."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from strangler.proxy.config import ConfigError, load_config, parse_config

SOURCE = "/etc/strangler/strangler.yaml"
SECRET = "hunter2-is-not-a-jwt-secret-anyone-should-use"

# Line numbers below count from the first line of this text.
BROKEN = """\
listen: nowhere
backends:
  legacy: {url: "http://127.0.0.1:8091", connect_timeout: -1}
routes:
  - {name: main, path: /ws, dialect: fancy}
  - {name: main, path: ws}
relay:
  colour: red
  max_message_bytes: "big"
jwt: {secret_env: CFG_ERRORS_UNSET}
"""


@pytest.fixture(autouse=True)
def no_secret_variable(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("CFG_ERRORS_UNSET", raising=False)
    monkeypatch.setenv("CFG_ERRORS_SECRET", SECRET)


def error_for(text: str) -> ConfigError:
    with pytest.raises(ConfigError) as caught:
        parse_config(text, SOURCE)
    return caught.value


def test_every_problem_in_a_file_is_reported_at_once_with_its_line_and_column() -> None:
    error = error_for(BROKEN)
    assert str(error).splitlines() == [
        f"{SOURCE}:1:1: listen: must be host:port, got 'nowhere'",
        f"{SOURCE}:3:12: backends.legacy.url: must be a ws:// or wss:// URL, "
        "got 'http://127.0.0.1:8091'",
        f"{SOURCE}:3:42: backends.legacy.connect_timeout: must be greater than 0, got -1",
        f"{SOURCE}:5:29: routes[0].dialect: unknown dialect 'fancy' "
        "(one of main, main_payload, flat, factory, isolated, legacy)",
        f"{SOURCE}:6:18: routes[1].path: must start with '/', got 'ws'",
        f"{SOURCE}:8:3: relay.colour: unknown key (expected one of close_timeout, "
        "grace_period, max_message_bytes, tunnel, turn_timeout, upstream_lost_close_code)",
        f"{SOURCE}:9:3: relay.max_message_bytes: must be a whole number, not a string",
        f"{SOURCE}:10:7: jwt.secret_env: the environment variable it names is not set or empty",
    ]
    # The first problem is still where callers that read one have always looked.
    assert (error.source, error.key) == (SOURCE, "listen")
    assert error.problem == "must be host:port, got 'nowhere'"
    assert [(p.key, p.line, p.column) for p in error.problems][1] == ("backends.legacy.url", 3, 12)


def test_a_problem_found_once_the_routes_parse_is_placed_at_its_key() -> None:
    error = error_for(
        "routes:\n  - {name: main, path: /ws}\n  - {name: main, path: /ws/2}\n"
        "jwt: {secret_env: CFG_ERRORS_SECRET}\n"
    )
    assert str(error) == f"{SOURCE}:3:6: routes[1].name: route 'main' is defined twice"


def test_a_missing_key_is_placed_at_the_mapping_it_is_missing_from() -> None:
    error = error_for("jwt: {secret_env: CFG_ERRORS_SECRET}\nroutes:\n  - {path: /ws}\n")
    assert str(error) == f"{SOURCE}:3:5: routes[0].name: is required"


@pytest.mark.parametrize("text", ["", "\n\n", "# nothing here yet\n"])
def test_an_empty_file_says_so_at_its_start_then_what_is_missing(text: str) -> None:
    assert str(error_for(text)).splitlines() == [
        f"{SOURCE}:1:1: the file has no settings (it is empty, or only comments)",
        f"{SOURCE}:1:1: routes: is required",
        f"{SOURCE}:1:1: jwt.algorithms: HS* algorithms need a secret",
    ]


def test_a_key_written_twice_is_refused_at_its_second_place() -> None:
    # YAML would keep the second relay section and drop the first without a word.
    text = (
        "relay: {grace_period: 1}\nroutes: [{name: main, path: /ws}]\n"
        "jwt: {secret_env: CFG_ERRORS_SECRET}\nrelay:\n  grace_period: 2\n"
    )
    assert str(error_for(text)) == f"{SOURCE}:4:1: relay: written twice (first at line 1)"


def test_a_missing_file_says_its_path_and_the_os_reason(tmp_path: Path) -> None:
    missing = tmp_path / "strangler.yaml"
    with pytest.raises(ConfigError) as caught:
        load_config(missing)
    assert str(caught.value) == f"{missing}: cannot read: No such file or directory"
    assert (caught.value.key, len(caught.value.problems)) == ("", 1)


def test_a_directory_given_as_the_file_says_so(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as caught:
        load_config(tmp_path)
    assert str(caught.value) == f"{tmp_path}: cannot read: Is a directory"


def test_bytes_that_are_not_utf8_are_placed_at_their_line_and_character(tmp_path: Path) -> None:
    config = tmp_path / "strangler.yaml"
    config.write_bytes('routes: []\nlisten: "é'.encode() + b'\xff"\n')
    with pytest.raises(ConfigError) as caught:
        load_config(config)
    assert str(caught.value) == (
        f"{config}:2:11: not UTF-8 text (invalid start byte); the file must be UTF-8"
    )


@pytest.mark.parametrize(
    "jwt",
    [
        f"{{secret_env: {SECRET}}}",  # the secret pasted where its variable's name goes
        f"{{secret_file: {SECRET}}}",  # ... or where its file's name goes
        f"{{secret_env: [{SECRET}]}}",
        f"{{secret: {SECRET}}}",  # ... or written inline, which is not a key at all
        "{secret_env: CFG_ERRORS_SECRET, algorithms: [HS512]}",  # too short for HS512
    ],
)
def test_a_secret_never_appears_in_an_error(jwt: str) -> None:
    text = f"routes: [{{name: main, path: /ws}}]\njwt: {jwt}\nadmin_auth: {{token_env: {SECRET}}}\n"
    error = error_for(text)
    assert error.problems
    assert SECRET not in str(error)
    assert SECRET not in repr(error.problems)


@pytest.mark.parametrize(
    "text",
    [
        "routes: 3",
        "routes: [3]",
        "routes: [{name: 1, path: /ws, anonymous: maybe}]",
        "limits: {max_connections: 1.5, stalled_close_code: 1010, over_limit: []}",
        "shadow: {queue_frames: 0, compare: {timeout_factor: .inf}, redact: ['']}",
        "jwt: {leeway: soon, audience: {a: 1}}",
        "[]",
    ],
)
def test_messages_are_in_the_project_words_not_pydantic_ones(text: str) -> None:
    message = str(error_for(text))
    for foreign in ("Input should", "pydantic", "type=", "Value error", "validation error"):
        assert foreign not in message


def test_check_config_prints_every_problem_and_exits_2(tmp_path: Path) -> None:
    config = tmp_path / "strangler.yaml"
    config.write_text(BROKEN)
    result = subprocess.run(
        [sys.executable, "-m", "strangler.proxy", "check-config", "--config", str(config)],
        capture_output=True,
        text=True,
        env={"PATH": "/usr/bin:/bin"},
        timeout=60,
    )
    assert result.returncode == 2
    assert result.stdout == ""
    lines = result.stderr.splitlines()
    assert lines[0] == f"{config}:1:1: listen: must be host:port, got 'nowhere'"
    assert lines[-1] == f"strangler: {config}: 8 problems"
    assert len(lines) == 9
