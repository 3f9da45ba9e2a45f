"""How every `strangler` command's --help reads: defaults shown, examples at the end.

One pass over the finished parser tree (`finish_help`) gives each command, wherever it is
defined (cli, backend, flags), the same formatter and its `Examples:` epilog from
EXAMPLES, so a command's help shows a working command line without each module
repeating the convention. The examples follow a command's own epilog, if it has one.
"""

from __future__ import annotations

import argparse
import textwrap
from typing import Final

from strangler.proxy.commands.completion import subcommand_action, subcommands


class HelpFormatter(argparse.RawDescriptionHelpFormatter, argparse.ArgumentDefaultsHelpFormatter):
    """Each default after its help; prose paragraphs wrapped, indented blocks (examples,
    tables of exit codes) kept exactly as written.

    No default is appended where it says nothing (None, False, empty) or where the help
    already says what happens by default.
    """

    def _get_help_string(self, action: argparse.Action) -> str | None:
        text = action.help or ""
        if (
            action.default in (None, False, "", [], argparse.SUPPRESS)
            or action.required
            or "default" in text.lower()
        ):
            return text
        return super()._get_help_string(action)

    def _fill_text(self, text: str, width: int, indent: str) -> str:
        paragraphs = []
        for paragraph in text.split("\n\n"):
            lines = paragraph.splitlines()
            if any(line[:1].isspace() for line in lines) or paragraph.endswith(":"):
                paragraphs.append("\n".join(indent + line for line in lines))
            else:
                paragraphs.append(
                    textwrap.fill(
                        " ".join(lines), width, initial_indent=indent, subsequent_indent=indent
                    )
                )
        return "\n\n".join(paragraphs)


EXAMPLES: Final[dict[str, str]] = {
    "": """\
  strangler demo                                    # proxy, reference backends, a tour
  STRANGLER_JWT_SECRET=... strangler run -c strangler.yaml
  strangler check-config -c strangler.yaml
  strangler client --user carol "Optimize my costs"
  strangler flags status -c strangler.yaml
  source <(strangler completion bash)               # complete commands and options""",
    "run": """\
  STRANGLER_JWT_SECRET=... strangler run -c strangler.yaml
  STRANGLER_JWT_SECRET=... strangler run -c strangler.yaml --workers 4
  STRANGLER_JWT_SECRET=... strangler --log-level debug run -c strangler.yaml""",
    "check-config": """\
  strangler check-config -c strangler.yaml          # exit 2, one line per problem""",
    "config-schema": """\
  strangler config-schema > docs/strangler.schema.json""",
    "demo": """\
  strangler demo                                    # stays up until Ctrl-C
  strangler demo --exit                             # the tour only
  strangler demo --base-port 18080 --workdir /tmp/strangler-demo""",
    "client": """\
  strangler client --user carol "Optimize my costs"
  strangler client --user dana --url ws://127.0.0.1:8080/ws/factory
  STRANGLER_JWT_SECRET=... strangler client --user bob --url ws://proxy.internal:8080/ws
  strangler client --user bob --hold                # type lines; Ctrl-D or Ctrl-C closes
  printf '%s\\n' 'Why did my GPU costs grow?' '{"type": "ping"}' |
      strangler client --user bob --hold""",
    "backend": """\
  STRANGLER_JWT_SECRET=... strangler backend legacy --port 8091
  STRANGLER_JWT_SECRET=... strangler backend unified --port 8092 --server-id unified""",
    "flags": """\
  strangler flags check flags.yaml -c strangler.yaml
  strangler flags explain --user alice --path /ws -c strangler.yaml
  strangler flags plan flags.next.yaml -c strangler.yaml
  strangler flags status -c strangler.yaml""",
    "flags check": """\
  strangler flags check flags.yaml
  strangler flags check flags.yaml -c strangler.yaml   # route names must be configured""",
    "flags explain": """\
  strangler flags explain --user alice --path /ws -c strangler.yaml
  strangler flags explain --user bob --path /ws/factory --claim org=acme \\
      --at 2030-01-01T09:00:00Z
  strangler flags explain --user alice --path /ws --live   # and ask the running proxy""",
    "flags plan": """\
  strangler flags plan flags.next.yaml -c strangler.yaml
  STRANGLER_ADMIN_TOKEN=... strangler flags plan flags.next.yaml --admin 127.0.0.1:8090""",
    "flags status": """\
  strangler flags status -c strangler.yaml
  strangler flags status --admin 127.0.0.1:8090 --json""",
    "flags export": """\
  strangler flags export --flagd flags.yaml > flags.flagd.json
  strangler flags export --flagd flags.yaml --flag unified_router""",
    "slo": """\
  strangler slo rules > dashboards/prometheus/slo.rules.yml""",
    "slo rules": """\
  strangler slo rules > dashboards/prometheus/slo.rules.yml     # 99.5% everywhere
  strangler slo rules --objective 99.9 --objective-for factory:legacy=99 > slo.rules.yml""",
    "completion": """\
  source <(strangler completion bash)               # this shell only
  strangler completion bash > ~/.local/share/bash-completion/completions/strangler
  source <(strangler completion zsh)                # in ~/.zshrc, after compinit""",
}


def finish_help(parser: argparse.ArgumentParser, path: str = "") -> None:
    """Give `parser` and every command under it the formatter, a description and examples.

    Subcommands are made optional here, so that a missing one is reported by
    `missing_command` with the choices rather than by argparse with a dest name.
    """
    parser.formatter_class = HelpFormatter
    if path in EXAMPLES and "Examples:" not in (parser.epilog or ""):
        # After what the command's own epilog says (flags: its exit codes).
        own = parser.epilog.rstrip() + "\n\n" if parser.epilog else ""
        parser.epilog = f"{own}Examples:\n{EXAMPLES[path]}"
    action = subcommand_action(parser)
    if action is not None:
        action.required = False
    for name, (child, summary) in subcommands(parser).items():
        if child.description is None and summary:
            child.description = summary[0].upper() + summary[1:] + "."
        finish_help(child, f"{path} {name}".strip())


def missing_command(
    parser: argparse.ArgumentParser, args: argparse.Namespace
) -> argparse.ArgumentParser | None:
    """The (sub)command parser whose subcommand the command line left out, if any."""
    current = parser
    while (action := subcommand_action(current)) is not None:
        chosen = getattr(args, action.dest, None)
        if chosen is None:
            return current
        current = subcommands(current)[chosen][0]
    return None
