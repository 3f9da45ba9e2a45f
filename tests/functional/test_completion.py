"""`strangler completion bash`: the generated script, sourced in a real bash, completes
commands, subcommands, options and their values as the live parser defines them."""

from __future__ import annotations

import os
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from strangler.proxy.commands.cli import build_parser
from strangler.proxy.commands.completion import nodes

BASH = shutil.which("bash")


def generate(shell: str) -> str:
    env = {k: v for k, v in os.environ.items() if not k.startswith("STRANGLER_")}
    result = subprocess.run(
        [sys.executable, "-m", "strangler.proxy", "completion", shell],
        capture_output=True,
        text=True,
        timeout=60,
        env=env,
    )
    assert result.returncode == 0, result.stderr
    assert result.stderr == ""
    return result.stdout


@pytest.fixture(scope="module")
def script(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("completion") / "strangler.bash"
    path.write_text(generate("bash"))
    return path


def complete(script: Path, line: str, cwd: Path | None = None) -> list[str]:
    """What bash offers for the last word of ``line`` ("" after a trailing space)."""
    words = ["strangler", *shlex.split(line)]
    if line == "" or line.endswith(" "):
        words.append("")
    array = " ".join(shlex.quote(w) for w in words)
    program = (
        f"source {shlex.quote(str(script))}; COMP_WORDS=({array}); "
        f"COMP_CWORD={len(words) - 1}; _strangler; printf '%s\\n' \"${{COMPREPLY[@]}}\""
    )
    assert BASH is not None, "bash is needed to test the bash completion script"
    result = subprocess.run(
        [BASH, "--norc", "--noprofile", "-c", program],
        capture_output=True,
        text=True,
        timeout=30,
        cwd=cwd,
    )
    assert result.returncode == 0, result.stderr
    assert result.stderr == ""
    return [w for w in result.stdout.splitlines() if w]


def test_commands_complete_at_the_top(script: Path) -> None:
    assert complete(script, "") == [
        "run",
        "check-config",
        "config-schema",
        "demo",
        "client",
        "backend",
        "conformance",
        "flags",
        "shadow",
        "slo",
        "completion",
    ]
    assert complete(script, "fl") == ["flags"]
    assert complete(script, "c") == [
        "check-config",
        "config-schema",
        "client",
        "conformance",
        "completion",
    ]


def test_subcommands_complete_under_their_command(script: Path) -> None:
    verbs = complete(script, "flags ")
    assert verbs[:4] == ["check", "explain", "plan", "status"]
    assert complete(script, "flags ex") == [v for v in verbs if v.startswith("ex")]
    # Global options before the command do not hide it.
    assert complete(script, "--log-level debug flags pl") == ["plan"]


def test_options_complete_for_the_command_they_belong_to(script: Path) -> None:
    assert complete(script, "flags check --") == ["--help", "--config"]
    assert complete(script, "client --h") == ["--help", "--hold"]
    assert "--worker-index" not in complete(script, "run --")  # hidden: the supervisor's
    # The value of --user is not mistaken for a command.
    assert complete(script, "client --user flags --ti") == ["--timeout"]


def test_choices_complete_for_options_and_positionals(script: Path) -> None:
    assert complete(script, "--log-level w") == ["warning"]
    assert complete(script, "backend ") == ["legacy", "unified"]
    assert complete(script, "completion ") == ["bash", "zsh"]


def test_file_arguments_complete_file_names(script: Path, tmp_path: Path) -> None:
    (tmp_path / "strangler.yaml").write_text("")
    (tmp_path / "flags.yaml").write_text("")
    assert complete(script, "run --config str", cwd=tmp_path) == ["strangler.yaml"]
    assert complete(script, "flags check fl", cwd=tmp_path) == ["flags.yaml"]


def test_every_command_and_option_of_the_live_parser_completes(script: Path) -> None:
    # The script is generated from the parser, so nothing added to it is left out.
    for node in nodes(build_parser()):
        prefix = f"{node.path} " if node.path else ""
        offered = complete(script, prefix)
        for command in node.commands:
            assert command in offered, (node.path, command)
        options = complete(script, f"{prefix}-")
        for option in node.options:
            assert option in options, (node.path, option)


def test_the_zsh_script_runs_the_bash_one_through_bashcompinit() -> None:
    text = generate("zsh")
    head, _, rest = text.partition("autoload -U +X bashcompinit && bashcompinit\n")
    assert rest == generate("bash")
    assert "source <(strangler completion zsh)" in head
