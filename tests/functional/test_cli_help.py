"""`strangler --help` and friends as a newcomer meets them: every command and argument
explained, defaults shown, an example per command, and no argparse dest names."""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from strangler.flags.schema import VERSION
from strangler.proxy import __version__
from strangler.proxy.commands.cli import build_parser
from strangler.proxy.commands.completion import subcommands


def strangler(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("STRANGLER_")}
    return subprocess.run(
        [sys.executable, "-m", "strangler.proxy", *args],
        capture_output=True,
        text=True,
        timeout=60,
        env=env,
        cwd=cwd,
    )


def commands(
    parser: argparse.ArgumentParser, path: str = "strangler"
) -> Iterator[tuple[str, argparse.ArgumentParser]]:
    yield path, parser
    for name, (child, _) in subcommands(parser).items():
        yield from commands(child, f"{path} {name}")


COMMANDS = dict(commands(build_parser()))


@pytest.mark.parametrize("path", sorted(COMMANDS))
def test_every_command_explains_each_argument_and_shows_an_example(path: str) -> None:
    parser = COMMANDS[path]
    for action in parser._actions:
        if action.help == argparse.SUPPRESS or isinstance(action, argparse._SubParsersAction):
            continue  # a subcommand's help is its own line, checked below
        assert action.help, f"{path}: {action.option_strings or action.dest} has no help"
    text = parser.format_help()
    examples = text.split("\nExamples:\n", 1)
    assert len(examples) == 2, f"{path} --help has no Examples section"
    assert f"{path} " in examples[1], f"{path} --help: no example runs {path}"
    assert parser.description, f"{path} --help has no description"
    for name, (_, summary) in subcommands(parser).items():
        assert summary, f"{path} {name} has no one-line help"


def test_help_shows_defaults() -> None:
    run = strangler("run", "--help")
    assert run.returncode == 0
    assert "the proxy's configuration file (default: strangler.yaml)" in " ".join(
        run.stdout.split()
    )
    client = " ".join(strangler("client", "--help").stdout.split())
    assert "(default: ws://127.0.0.1:8080/ws)" in client
    assert "(default: 10.0)" in client
    assert "Examples: strangler client --user carol" in client


def test_client_help_says_where_the_secret_comes_from_in_order() -> None:
    text = " ".join(strangler("client", "--help").stdout.split())
    assert (
        "The token is signed (HS256) with the first of: --secret; the environment variable "
        "STRANGLER_JWT_SECRET; the demo's built-in secret."
    ) in text


def test_strangler_alone_prints_its_help_and_the_commands() -> None:
    result = strangler()
    assert result.returncode == 2
    assert result.stderr.startswith("usage: strangler ")
    assert "Examples:" in result.stderr
    assert "strangler: a command is needed, one of: run, check-config," in result.stderr


def test_flags_without_a_verb_prints_the_flags_help_and_the_verbs() -> None:
    result = strangler("flags")
    assert result.returncode == 2
    assert result.stderr.startswith("usage: strangler flags ")
    assert "strangler flags: a command is needed, one of: check, explain, plan, status" in (
        result.stderr
    )
    assert "flags_command" not in result.stderr
    assert "Traceback" not in result.stderr


def test_version_shows_the_package_and_the_flag_file_schema_it_reads(tmp_path: Path) -> None:
    result = strangler("--version")
    assert result.returncode == 0
    assert result.stdout.strip() == (
        f"strangler {__version__} (flag file schema version {VERSION})"
    )
    # The version shown is the one the loader accepts, and the next one it refuses.
    flags = "flags:\n  f:\n    routes: [main]\n"
    (tmp_path / "ok.yaml").write_text(f"version: {VERSION}\n{flags}")
    (tmp_path / "next.yaml").write_text(f"version: {VERSION + 1}\n{flags}")
    assert strangler("flags", "check", "ok.yaml", cwd=tmp_path).returncode == 0
    refused = strangler("flags", "check", "next.yaml", cwd=tmp_path)
    assert refused.returncode != 0
    assert f"only version {VERSION} is supported" in refused.stdout + refused.stderr


def test_an_unknown_log_level_is_refused_with_the_choices() -> None:
    result = strangler("--log-level", "loud", "config-schema")
    assert result.returncode == 2
    assert "invalid choice: 'loud'" in result.stderr
