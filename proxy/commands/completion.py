"""`strangler completion bash|zsh`: shell completion generated from the command line itself.

The script is written from the argparse tree (commands, their subcommands, options, the
options that take a value, and choices), so it always matches the `strangler` that
generated it: a new verb or option completes as soon as it is added to its parser.
zsh runs the same script through its bash compatibility layer (bashcompinit).
"""

from __future__ import annotations

import argparse
import re
from collections.abc import Iterator
from dataclasses import dataclass

SHELLS = ("bash", "zsh")
# Arguments whose value is a path, by their dest: filenames (or directories) complete there.
PATH_DESTS = {"config": "file", "file": "file", "flags": "file", "workdir": "directory"}
# Words the script embeds in `case` patterns and word lists unquoted; anything else is left
# out rather than escaped (no command, option or choice of strangler needs more).
_SAFE = re.compile(r"[A-Za-z0-9_.:-]+")


def subcommands(parser: argparse.ArgumentParser) -> dict[str, tuple[argparse.ArgumentParser, str]]:
    """`parser`'s subcommands in definition order: name -> (parser, its one-line help)."""
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            helps = {a.dest: a.help or "" for a in action._choices_actions}
            return {name: (sub, helps.get(name, "")) for name, sub in action.choices.items()}
    return {}


def subcommand_action(parser: argparse.ArgumentParser) -> argparse.Action | None:
    """The action holding `parser`'s subcommands, if it has any."""
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            return action
    return None


@dataclass(frozen=True)
class Node:
    """What completes after one command path (`""` for `strangler` itself)."""

    path: str
    commands: tuple[str, ...]
    options: tuple[str, ...]
    valued: tuple[str, ...]
    values: dict[str, str]
    """Option string ("" for the first positional) -> its choices, or `@file`/`@directory`."""


def nodes(parser: argparse.ArgumentParser, path: str = "") -> Iterator[Node]:
    """Every command path of the tree, the top first."""
    options: list[str] = []
    valued: list[str] = []
    values: dict[str, str] = {}
    positional_seen = False
    for action in parser._actions:
        if action.help == argparse.SUPPRESS or isinstance(action, argparse._SubParsersAction):
            continue
        words = _value_words(action)
        if action.option_strings:
            options.extend(action.option_strings)
            if action.nargs != 0:
                valued.extend(action.option_strings)
                for option in action.option_strings:
                    if words:
                        values[option] = words
        elif not positional_seen:
            positional_seen = True
            if words:
                values[""] = words
    children = subcommands(parser)
    yield Node(path, tuple(children), tuple(options), tuple(valued), values)
    for name, (child, _) in children.items():
        yield from nodes(child, f"{path} {name}".strip())


def _value_words(action: argparse.Action) -> str:
    if action.choices is not None:
        return " ".join(str(c) for c in action.choices if _SAFE.fullmatch(str(c)))
    kind = PATH_DESTS.get(action.dest)
    return f"@{kind}" if kind else ""


def _words(words: tuple[str, ...] | list[str]) -> str:
    return " ".join(w for w in words if _SAFE.fullmatch(w))


def _key(*parts: str) -> str:
    return '"' + "|".join(parts) + '"'


def bash_script(parser: argparse.ArgumentParser, version: str) -> str:
    """The bash completion script for `parser` (bash 3.2 and later: no associative arrays)."""
    tree = [n for n in nodes(parser) if all(_SAFE.fullmatch(p) for p in n.path.split())]
    commands = "\n".join(
        f"        {_key(n.path)}) REPLY={_quoted(_words(n.commands))} ;;" for n in tree
    )
    options = "\n".join(
        f"        {_key(n.path)}) REPLY={_quoted(_words(n.options))} ;;" for n in tree
    )
    valued = " | ".join(_key(n.path, o) for n in tree for o in n.valued if _SAFE.fullmatch(o))
    values = "\n".join(
        f"        {_key(n.path, opt)}) REPLY={_quoted(words)} ;;"
        for n in tree
        for opt, words in n.values.items()
        if not opt or _SAFE.fullmatch(opt)
    )
    prog = parser.prog
    return (
        _BASH.replace("@PROG@", prog)
        .replace("@VERSION@", version)
        .replace("@COMMANDS@", commands)
        .replace("@OPTIONS@", options)
        .replace("@VALUED@", valued or '"-"')
        .replace("@VALUES@", values)
    )


def zsh_script(parser: argparse.ArgumentParser, version: str) -> str:
    """The zsh completion script: the bash one, run by zsh's bashcompinit."""
    prog = parser.prog
    return (
        f"# zsh completion for {prog}: the bash script below, run by zsh's bashcompinit.\n"
        f"# Install: in ~/.zshrc, after compinit:  source <({prog} completion zsh)\n"
        "autoload -U +X bashcompinit && bashcompinit\n" + bash_script(parser, version)
    )


def _quoted(words: str) -> str:
    return f'"{words}"'


_BASH = r"""# bash completion for @PROG@, generated by `@PROG@ completion bash` (@PROG@ @VERSION@)
# from its own command line; generate it again after an upgrade.
# Install:  @PROG@ completion bash > ~/.local/share/bash-completion/completions/@PROG@
# or add to ~/.bashrc:  source <(@PROG@ completion bash)

_@PROG@_commands() {
    case "$1" in
@COMMANDS@
        *) REPLY="" ;;
    esac
}

_@PROG@_options() {
    case "$1" in
@OPTIONS@
        *) REPLY="" ;;
    esac
}

_@PROG@_valued() {
    case "$1|$2" in
        @VALUED@) return 0 ;;
    esac
    return 1
}

_@PROG@_values() {
    case "$1|$2" in
@VALUES@
        *) REPLY="" ;;
    esac
}

_@PROG@_reply() {
    local IFS=$'\n'
    case "$1" in
        @file) COMPREPLY=($(compgen -f -- "$2")); compopt -o filenames 2>/dev/null ;;
        @directory) COMPREPLY=($(compgen -d -- "$2")); compopt -o filenames 2>/dev/null ;;
        *) IFS=$' \t\n'; COMPREPLY=($(compgen -W "$1" -- "$2")) ;;
    esac
}

_@PROG@() {
    local cur="${COMP_WORDS[COMP_CWORD]}" path="" word i REPLY
    # The command path so far: words naming a subcommand of the path before them; an
    # option that takes a value takes the next word with it.
    for ((i = 1; i < COMP_CWORD; i++)); do
        word="${COMP_WORDS[i]}"
        if [[ "$word" == -* ]]; then
            if [[ "$word" != *=* ]] && _@PROG@_valued "$path" "$word"; then
                ((i++))
            fi
            continue
        fi
        _@PROG@_commands "$path"
        if [[ " $REPLY " == *" $word "* ]]; then
            path="${path:+$path }$word"
        fi
    done
    local prev="${COMP_WORDS[COMP_CWORD-1]}"
    if ((COMP_CWORD > 1)) && [[ "$prev" == -* ]] && _@PROG@_valued "$path" "$prev"; then
        _@PROG@_values "$path" "$prev"
        _@PROG@_reply "$REPLY" "$cur"
        return 0
    fi
    if [[ "$cur" == -* ]]; then
        _@PROG@_options "$path"
        _@PROG@_reply "$REPLY" "$cur"
        return 0
    fi
    _@PROG@_commands "$path"
    if [[ -n "$REPLY" ]]; then
        _@PROG@_reply "$REPLY" "$cur"
        return 0
    fi
    _@PROG@_values "$path" ""
    _@PROG@_reply "$REPLY" "$cur"
    return 0
}

complete -F _@PROG@ @PROG@
"""


def add_completion_parser(
    sub: argparse._SubParsersAction[argparse.ArgumentParser],
) -> argparse.ArgumentParser:
    """Register `strangler completion SHELL`; the caller sets the function that prints."""
    completion = sub.add_parser(
        "completion",
        help="print a shell completion script (bash or zsh)",
        description="Print a completion script for SHELL, generated from this command "
        "line, so it completes every command, subcommand and option this strangler has.",
    )
    completion.add_argument("shell", choices=SHELLS, help="the shell the script is for")
    return completion


def script(shell: str, parser: argparse.ArgumentParser, version: str) -> str:
    """The completion script for `shell`."""
    return zsh_script(parser, version) if shell == "zsh" else bash_script(parser, version)
