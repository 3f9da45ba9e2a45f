"""`strangler slo rules`: the golden-path SLO as Prometheus recording and alerting rules.

The rules (docs/SLO.md) are a pure function of the objectives, so the committed
dashboards/prometheus/slo.rules.yml is this command's default output and a test keeps
it so. Error ratios are recorded per route and backend over the windows the burn-rate
alerts read, in the style of the Google SRE workbook's multi-window, multi-burn-rate
alerts (as Sloth and Pyrra generate them): a page when the budget burns 14.4 times as
fast as the objective allows over 1 h and 5 min, or 6 times over 6 h and 30 min; a
ticket at 3 times over 1 d and 2 h, or once over 3 d and 6 h. The objective is a
recorded series too (`strangler:golden_path:objective`), so the alerts and the
dashboard read one value and a per-route objective changes one rule.
"""

from __future__ import annotations

import argparse
import re
import sys
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from decimal import Decimal, InvalidOperation
from typing import Final, TypeVar

from strangler.proxy.release.reliability import DEFAULT_OBJECTIVE, FAILED, NOT_JUDGED

EXIT_OK: Final = 0
T = TypeVar("T")

# Every window a ratio is recorded over: the alerts' pairs, and 5m for the budget.
WINDOWS: Final = ("5m", "30m", "1h", "2h", "6h", "1d", "3d")
BUDGET_WINDOW: Final = "30d"
BACKENDS: Final = ("legacy", "unified")
_ROUTE = re.compile(r"^[a-z][a-z0-9_]*$")  # as strangler.yaml names routes


@dataclass(frozen=True, slots=True)
class Burn:
    """One multi-window condition: the budget burns `factor` times as fast as allowed
    over both the long window and the short one."""

    factor: str
    long: str
    short: str


@dataclass(frozen=True, slots=True)
class Alert:
    name: str
    severity: str
    kind: str  # page or ticket
    burns: tuple[Burn, Burn]
    how_soon: str  # what the burns mean for a 30-day budget


ALERTS: Final = (
    Alert(
        "StranglerGoldenPathBudgetBurnFast",
        "critical",
        "page",
        (Burn("14.4", "1h", "5m"), Burn("6", "6h", "30m")),
        "at this rate a 30-day error budget is spent in 2 to 5 days",
    ),
    Alert(
        "StranglerGoldenPathBudgetBurnSlow",
        "warning",
        "ticket",
        (Burn("3", "1d", "2h"), Burn("1", "3d", "6h")),
        "at this rate a 30-day error budget is spent in 10 to 30 days",
    ),
)


@dataclass(frozen=True)
class Objectives:
    """The default objective in percent, and per (route, backend) exceptions."""

    default: Decimal = Decimal(str(DEFAULT_OBJECTIVE))
    per: Mapping[tuple[str, str], Decimal] = field(default_factory=dict)


def percent(text: str) -> Decimal:
    """An objective in percent, strictly between 0 and 100 (100 leaves no budget)."""
    try:
        value = Decimal(text)
    except InvalidOperation:
        raise ValueError(f"an objective is a percentage such as 99.5, not {text!r}") from None
    if not value.is_finite() or not 0 < value < 100:
        raise ValueError(f"an objective is above 0 and below 100 percent, not {text}")
    return value


def exception(text: str) -> tuple[tuple[str, str], Decimal]:
    """`ROUTE:BACKEND=PERCENT`, e.g. `main:unified=99.9`."""
    where, sep, value = text.partition("=")
    route, colon, backend = where.partition(":")
    if not sep or not colon:
        raise ValueError(f"expected ROUTE:BACKEND=PERCENT such as main:unified=99.9, not {text!r}")
    if not _ROUTE.match(route):
        raise ValueError(f"{route!r} is not a route name (lower case, digits, _)")
    if backend not in BACKENDS:
        raise ValueError(f"the backend is legacy or unified, not {backend!r}")
    return (route, backend), percent(value)


def _ratio(objective: Decimal) -> str:
    return format(objective / 100, "f")


def _judged(window: str) -> str:
    (not_judged,) = NOT_JUDGED  # one outcome: a plain matcher reads better than a regex
    return (
        f'sum by (route, backend) (rate(strangler_turns_total{{outcome!="{not_judged}"}}'
        f"[{window}]))"
    )


def _failed(window: str) -> str:
    failed = "|".join(FAILED)
    return f'sum by (route, backend) (rate(strangler_turns_total{{outcome=~"{failed}"}}[{window}]))'


def _indent(text: str, spaces: int) -> str:
    pad = " " * spaces
    return "\n".join(pad + line if line else line for line in text.splitlines())


def _rule(record: str, expr: str, comment: str = "") -> str:
    head = f"      # {comment}\n" if comment else ""
    return f"{head}      - record: {record}\n        expr: |\n{_indent(expr, 10)}\n"


def _objective_expr(objectives: Objectives) -> str:
    parts = [
        f"(0 * group by (route, backend) "
        f'(strangler_turns_total{{route="{route}", backend="{backend}"}}) + {_ratio(value)})'
        for (route, backend), value in sorted(objectives.per.items())
    ]
    parts.append(
        f"(0 * group by (route, backend) (strangler_turns_total) + {_ratio(objectives.default)})"
    )
    return "\nor\n".join(parts)


def _burning(window: str, factor: str) -> str:
    return (
        f"strangler:golden_path:error_ratio_{window}\n"
        "  / on (route, backend) (1 - strangler:golden_path:objective)\n"
        f"  > {factor}"
    )


def _alert(alert: Alert, objectives: Objectives) -> str:
    conditions = [
        f"(\n{_indent(_burning(b.long, b.factor), 4)}\n  and on (route, backend)\n"
        f"{_indent(_burning(b.short, b.factor), 4)}\n)"
        for b in alert.burns
    ]
    expr = "\nor\n".join(conditions)
    windows = " or ".join(
        f"{b.factor}x over {_spoken(b.long)} and {_spoken(b.short)}" for b in alert.burns
    )
    return (
        f"      - alert: {alert.name}\n"
        f"        expr: |\n{_indent(expr, 10)}\n"
        "        labels:\n"
        f"          severity: {alert.severity}\n"
        "          slo: golden_path\n"
        "        annotations:\n"
        f'          summary: "Route {{{{ $labels.route }}}} burns its golden-path error budget '
        f'on {{{{ $labels.backend }}}} ({alert.kind})"\n'
        "          description: >-\n"
        "            Turns of route {{ $labels.route }} served by the {{ $labels.backend }}\n"
        '            backend miss the golden path {{ $value | printf "%.1f" }} times as\n'
        "            fast as their objective allows (the burn rate over the long window;\n"
        f"            this alert: {windows}):\n"
        f"            {alert.how_soon}. Read the missing events and\n"
        "            outcomes on the migration dashboard (Golden-path reliability); for\n"
        "            unified, consider the flag's kill_switch or lowering its rollout.\n"
    )


_SPOKEN = {"m": "minute", "h": "hour", "d": "day"}


def _spoken(window: str) -> str:
    n, unit = int(window[:-1]), _SPOKEN[window[-1]]
    return f"{n} {unit}{'s' if n != 1 else ''}"


def rules(objectives: Objectives) -> str:
    """The whole rules file for these objectives."""
    exceptions = ", ".join(
        f"{route}:{backend}={value}%" for (route, backend), value in sorted(objectives.per.items())
    )
    generated = f"strangler slo rules --objective {objectives.default}" + "".join(
        f" --objective-for {route}:{backend}={value}"
        for (route, backend), value in sorted(objectives.per.items())
    )
    out = [
        "# Golden-path SLO of the strangler monitoring mixin (docs/SLO.md). Generated by\n",
        f"#   {generated}\n",
        "# do not edit: change the objectives on that command line and write this file again.\n",
        "#\n",
        "# Reliability per route and backend is completed / (turns that ended - abandoned);\n",
        f"# the objective is {objectives.default}%"
        + (f" ({exceptions} excepted)" if exceptions else "")
        + ", the error budget 1 - objective.\n",
        "# Ratios divide by a denominator filtered with `> 0`: without turns a ratio has no\n",
        "# sample (not NaN), so no alert fires on no traffic.\n",
        "groups:\n",
        "  - name: strangler.slo.golden_path\n",
        "    rules:\n",
    ]
    out.append(
        _rule(
            "strangler:golden_path:objective",
            _objective_expr(objectives),
            "The objective (0..1) of every route and backend that has turn series.",
        )
    )
    out.append(
        _rule(
            "strangler:golden_path:judged_turns:rate5m",
            _judged("5m"),
            "Turns that ended, abandoned ones aside, and failed ones, per second (over 5m).",
        )
    )
    out.append(_rule("strangler:golden_path:failed_turns:rate5m", _failed("5m")))
    for window in WINDOWS:
        if window == "5m":
            expr = (
                "strangler:golden_path:failed_turns:rate5m\n/\n"
                "(strangler:golden_path:judged_turns:rate5m > 0)"
            )
        else:
            failed, judged = _failed(window), _judged(window)
            expr = f"(\n    {failed}\n  or\n    0 * {judged}\n)\n/\n({judged} > 0)"
        comment = (
            "Share of judged turns that missed the golden path, per window: 1 - reliability."
            if window == "5m"
            else ""
        )
        out.append(_rule(f"strangler:golden_path:error_ratio_{window}", expr, comment))
    out.append(
        _rule(
            f"strangler:golden_path:error_ratio_{BUDGET_WINDOW}",
            "sum_over_time(strangler:golden_path:failed_turns:rate5m[30d])\n/\n"
            "(sum_over_time(strangler:golden_path:judged_turns:rate5m[30d]) > 0)",
            "The budget's period, from the 5m rates (both sides are sampled alike, so the\n"
            "      # ratio weighs every turn once): cheaper than a rate over 30 days of raw\n"
            "      # series.",
        )
    )
    out.append(
        _rule(
            f"strangler:golden_path:error_budget_remaining_{BUDGET_WINDOW}",
            f"1 - strangler:golden_path:error_ratio_{BUDGET_WINDOW}\n"
            "  / on (route, backend) (1 - strangler:golden_path:objective)",
            "Share of the 30-day error budget left (negative: overspent).",
        )
    )
    out.append(
        "\n      # Multi-window, multi-burn-rate (Google SRE workbook, chapter 5): the long\n"
        "      # window says the budget really burns, the short one that it still does. In\n"
        "      # the recording rules' group, which runs in order: an alert reads the ratios\n"
        "      # of the same evaluation, never those of the one before.\n"
    )
    out.append("\n".join(_alert(a, objectives) for a in ALERTS))
    return "".join(out)


def add_slo_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Register `strangler slo rules` on the top-level subcommands."""
    slo = sub.add_parser(
        "slo",
        help="the golden-path reliability objective as Prometheus rules",
        description="The golden-path SLO: the share of turns, among those the client waited "
        "for, that got all five golden-path events (docs/SLO.md).",
    )
    verbs = slo.add_subparsers(dest="slo_command", metavar="COMMAND", title="commands")
    made = verbs.add_parser(
        "rules",
        help="print recording rules and burn-rate alerts for the objectives",
        description="Print the Prometheus recording rules (error ratios per route and "
        "backend over 5m to 3d, the 30-day error budget left) and the multi-window, "
        "multi-burn-rate alerts of the golden-path objective. Without options this is "
        "dashboards/prometheus/slo.rules.yml.",
    )
    made.add_argument(
        "--objective",
        type=_argument(percent),
        default=Decimal(str(DEFAULT_OBJECTIVE)),
        metavar="PERCENT",
        help="the objective of every route and backend, in percent",
    )
    made.add_argument(
        "--objective-for",
        type=_argument(exception),
        action="append",
        default=[],
        metavar="ROUTE:BACKEND=PERCENT",
        help="another objective for one route on one backend (repeatable)",
    )
    made.set_defaults(func=run_rules)


def _argument(parse: Callable[[str], T]) -> Callable[[str], T]:
    """`parse` for argparse: its message, not argparse's "invalid value"."""

    def parsed(text: str) -> T:
        try:
            return parse(text)
        except ValueError as exc:
            raise argparse.ArgumentTypeError(str(exc)) from None

    return parsed


def run_rules(args: argparse.Namespace) -> int:
    """Print the rules for the objectives on the command line."""
    sys.stdout.write(rules(Objectives(args.objective, dict(args.objective_for))))
    return EXIT_OK
