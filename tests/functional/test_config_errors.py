"""A broken strangler.yaml as a person meets it: `strangler check-config` and `strangler
run --config` both say where and what (`file:line:col: key: problem`, or the path and
the OS's reason), exit 2, and print no traceback."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.functional.conftest import SECRET

FLAGS = "flags:\n  unified_router:\n    routes: [main]\n    targets: {unified: [alice]}\n"

# A file that passes; every case below breaks it in one way. Ports 0: should a case
# pass by mistake, `run` binds free ports and the timeout below ends it.
GOOD = """\
listen: 127.0.0.1:0
admin_listen: 127.0.0.1:0
backends:
  legacy: {url: "ws://127.0.0.1:9"}
  unified: {url: "ws://127.0.0.1:9/v1/ws"}
routes:
  - {name: main, path: /ws, dialect: main, auth: accept_then_frame}
flags: {file: flags.yaml}
jwt: {secret_env: STRANGLER_TEST_SECRET}
relay: {grace_period: 1}
"""

Write = Callable[[Path], None]


def text(content: str) -> Write:
    return lambda path: path.write_text(content)


# Each case: how the file is written, then the expected stderr, one regex per line
# ({path} is the file's path as given on the command line).
CASES: dict[str, tuple[Write, list[str]]] = {
    "wrong_type": (
        text(GOOD.replace("grace_period: 1", "grace_period: soon")),
        [r"{path}:10:9: relay\.grace_period: must be a number, not a string"],
    ),
    "unknown_key": (
        text(GOOD + "colour: red\n"),
        [r"{path}:11:1: colour: unknown key \(expected one of .*\blisten\b.*\broutes\b.*\)"],
    ),
    "missing_required_key": (
        text(GOOD.replace("{name: main, path: /ws,", "{path: /ws,")),
        [r"{path}:7:5: routes\[0\]\.name: is required"],
    ),
    "missing_section": (
        text(re.sub(r"routes:\n.*\n", "", GOOD)),
        [r"{path}:1:1: routes: is required"],
    ),
    "yaml_syntax": (
        text(GOOD.replace("relay: {grace_period: 1}", "relay: {grace_period: 1")),
        [
            r"{path}:11:1: not valid YAML: expected ',' or '}', but got '<stream end>' "
            r"\(while parsing a flow mapping at line 10, column 8\)"
        ],
    ),
    "key_written_twice": (
        text(GOOD + "relay: {grace_period: 2}\n"),
        [r"{path}:11:1: relay: written twice \(first at line 10\)"],
    ),
    "missing_file": (lambda path: None, [r"{path}: cannot read: No such file or directory"]),
    "directory": (lambda path: path.mkdir(), [r"{path}: cannot read: Is a directory"]),
    "empty_file": (
        text(""),
        [
            r"{path}:1:1: the file has no settings \(it is empty, or only comments\)",
            r"{path}:1:1: routes: is required",
            r"{path}:1:1: jwt\.algorithms: HS\* algorithms need a secret",
            r"strangler: {path}: 3 problems",
        ],
    ),
    "not_utf8": (
        lambda path: path.write_bytes(GOOD.encode().replace(b"/ws,", b"/w\xe9,")),
        [r"{path}:7:26: not UTF-8 text \(invalid continuation byte\); the file must be UTF-8"],
    ),
}

COMMANDS = {"check_config": ["check-config"], "run": ["run"]}


def strangler(args: list[str], cwd: Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "STRANGLER_TEST_SECRET": SECRET}
    return subprocess.run(
        [sys.executable, "-m", "strangler.proxy", *args],
        capture_output=True,
        text=True,
        cwd=cwd,
        env=env,
        timeout=60,
    )


def assert_refused(
    result: subprocess.CompletedProcess[str], expected: list[str], path: str
) -> None:
    assert result.returncode == 2, result.stderr
    assert result.stdout == ""
    lines = result.stderr.splitlines()
    patterns = [line.replace("{path}", re.escape(path)) for line in expected]
    assert len(lines) == len(patterns), result.stderr
    for line, pattern in zip(lines, patterns, strict=True):
        assert re.fullmatch(pattern, line), (pattern, line)


def test_the_file_the_cases_break_passes(tmp_path: Path) -> None:
    (tmp_path / "flags.yaml").write_text(FLAGS)
    (tmp_path / "strangler.yaml").write_text(GOOD)
    result = strangler(["check-config", "--config", "strangler.yaml"], tmp_path)
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("ok: 1 routes, 1 flags")


@pytest.mark.parametrize("command", COMMANDS)
@pytest.mark.parametrize("case", CASES)
def test_a_broken_config_is_told_with_its_place_and_exits_2(
    tmp_path: Path, case: str, command: str
) -> None:
    write, expected = CASES[case]
    (tmp_path / "flags.yaml").write_text(FLAGS)
    write(tmp_path / "strangler.yaml")
    # A relative path, as people type it: the message repeats it as given.
    result = strangler([*COMMANDS[command], "--config", "strangler.yaml"], tmp_path)
    assert_refused(result, expected, "strangler.yaml")


@pytest.mark.skipif(os.geteuid() == 0, reason="root reads a file whatever its mode")
@pytest.mark.parametrize("command", COMMANDS)
def test_an_unreadable_file_says_its_path_and_permission_denied(
    tmp_path: Path, command: str
) -> None:
    (tmp_path / "flags.yaml").write_text(FLAGS)
    config = tmp_path / "strangler.yaml"
    config.write_text(GOOD)
    config.chmod(0)
    result = strangler([*COMMANDS[command], "--config", str(config)], tmp_path)
    assert_refused(result, [r"{path}: cannot read: Permission denied"], str(config))
