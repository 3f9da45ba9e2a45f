"""`strangler shadow`: how shadow and live turns are compared, asked from a terminal.

- `explain EVENT_TYPE PATH`: which field rule judges that path, and which configured
  entry or built-in default chose it (proxy/shadow/policy.py).
- `noise`: the running proxy's table of fields that differed within their rule, per
  event type and path, as counted on its admin port (`/shadow`, key `noise`).
- `show ID`: one recorded turn, both sides' events side by side with the differing
  fields marked (proxy/commands/shadow_show.py).

Exit status: 0 done; 2 usage or input error (bad path, unreadable or invalid config);
3 the running proxy could not be asked (noise).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from strangler.proxy.commands.admin_client import (
    Unable,
    add_admin_arguments,
    ask,
    expect_ok,
    tool_config,
)
from strangler.proxy.commands.shadow_show import add_show_parser
from strangler.proxy.config import CompareSettings
from strangler.proxy.config.compare import split_path
from strangler.proxy.shadow.policy import rule_for

EXIT_OK = 0
EXIT_UNABLE = 2
EXIT_UNREACHABLE = 3
DEFAULT_CONFIG = "strangler.yaml"

EXIT_CODES = """\
exit status:
  0  done
  2  usage or input error: a path that is not dotted, an unreadable or invalid config
  3  the running proxy could not be asked: its admin port is unreachable, wants a
     token, or answered with an error (noise)
"""

_EXPLAIN_EXAMPLES = """\
Examples:
  strangler shadow explain tool_completed data.result.monthly_cost_usd
  strangler shadow explain agent_thinking data.reasoning -c strangler.yaml
  strangler shadow explain tool_completed 'data.result.items.*.id'"""

_NOISE_EXAMPLES = """\
Examples:
  strangler shadow noise -c strangler.yaml
  STRANGLER_ADMIN_TOKEN=... strangler shadow noise --admin 127.0.0.1:8090
  strangler shadow noise --admin 127.0.0.1:8090 --json"""

_GROUP_EXAMPLES = """\
Examples:
  strangler shadow explain tool_completed data.result.monthly_cost_usd
  strangler shadow noise -c strangler.yaml"""


def add_shadow_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Register `strangler shadow ...` on the top-level subcommands."""
    shadow = sub.add_parser(
        "shadow",
        help="explain and watch how shadow and live turns are compared",
        epilog=f"{EXIT_CODES}\n{_GROUP_EXAMPLES}",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    shadow.set_defaults(func=run)
    verbs = shadow.add_subparsers(dest="shadow_command", required=True)

    explain = verbs.add_parser(
        "explain",
        help="which field rule judges PATH of EVENT_TYPE events, and why",
        epilog=_EXPLAIN_EXAMPLES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    explain.add_argument("event_type", metavar="EVENT_TYPE", help="e.g. tool_completed")
    explain.add_argument(
        "path", metavar="PATH", help="dotted path inside the event, e.g. data.result.cost"
    )
    explain.add_argument(
        "--config",
        "-c",
        default=None,
        help=f"strangler.yaml whose shadow.compare.rules apply (default: ./{DEFAULT_CONFIG} "
        "if there is one, else the built-in rules only)",
    )
    explain.set_defaults(shadow_func=_explain)

    noise = verbs.add_parser(
        "noise",
        help="the running proxy's fields that differed within their rule, per path",
        epilog=_NOISE_EXAMPLES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    add_admin_arguments(noise)
    noise.add_argument("--json", action="store_true", help="print the admin port's JSON")
    noise.set_defaults(shadow_func=_noise)
    add_show_parser(verbs)


def run(args: argparse.Namespace) -> int:
    """Run the chosen verb; `Unable` is one line on stderr and its exit code."""
    try:
        code: int = args.shadow_func(args)
        return code
    except Unable as exc:
        print(f"strangler shadow: {exc}", file=sys.stderr)
        return EXIT_UNREACHABLE if args.shadow_command in ("noise", "show") else EXIT_UNABLE


def _explain(args: argparse.Namespace) -> int:
    try:
        split_path(args.path)
    except ValueError as exc:
        # A volatile field is answered below (it is never compared); others are errors.
        if "volatile" not in str(exc):
            raise Unable(f"PATH {exc}") from None
    settings, source = _settings(args.config)
    rule, why = rule_for(settings, args.event_type, args.path)
    print(f"{args.event_type} {args.path}: {rule}")
    print(f"  because: {why}")
    print(f"  rules from: {source}")
    return EXIT_OK


def _settings(config: str | None) -> tuple[CompareSettings, str]:
    if config is None and not Path(DEFAULT_CONFIG).is_file():
        return CompareSettings(), "the built-in rules (no strangler.yaml here)"
    path = config or DEFAULT_CONFIG
    return tool_config(path).shadow.compare, f"{path} and the built-in rules"


def _noise(args: argparse.Namespace) -> int:
    status, answer = ask(args, "/shadow", None)
    expect_ok(status, answer)
    table = answer.get("noise")
    if not isinstance(table, dict):
        raise Unable("the admin port's /shadow has no noise table (an older proxy?)")
    if args.json:
        print(json.dumps(table, indent=2))
        return EXIT_OK
    print(noise_text(table))
    return EXIT_OK


def noise_text(table: dict[str, Any]) -> str:
    """The noise table as aligned columns, most frequent first."""
    rows = [
        (str(row.get("turns", "")), str(row.get("event_type", "")), str(row.get("path", "")))
        for row in table.get("paths", [])
        if isinstance(row, dict)
    ]
    if not rows:
        lines = ["no noise counted yet: no compared field differed within its rule"]
    else:
        header = ("TURNS", "EVENT TYPE", "PATH")
        widths = [max(len(r[i]) for r in (header, *rows)) for i in range(2)]
        lines = [
            f"{turns:>{widths[0]}}  {kind:<{widths[1]}}  {path}".rstrip()
            for turns, kind, path in (header, *rows)
        ]
    overflow = table.get("overflow", 0)
    if overflow:
        cap = table.get("max_paths", "?")
        lines.append(f"(+{overflow} sightings of paths beyond the first {cap}, not named)")
    return "\n".join(lines)
