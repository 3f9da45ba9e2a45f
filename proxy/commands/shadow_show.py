"""`strangler shadow show ID`: one recorded shadow turn in a terminal, as the turn page
shows it in a browser (proxy/admin/turn_page.py): both sides' events next to each other
(legacy, the reference, on the left), the differing fields marked, and the rule that
judged each difference.

The record comes from the running proxy's admin port (`GET /shadow`, already redacted);
the view is the turn page's own (proxy/admin/turn_diff.py). Narrower than
`TWO_COLUMNS` characters, the sides are printed one after the other.

Exit status: 0 shown; 2 no recorded turn has that id; 3 the proxy could not be asked.
"""

from __future__ import annotations

import argparse
import shutil
from collections.abc import Iterator
from typing import Any

from strangler.proxy.admin.turn_diff import EventView, TurnView, turn_view
from strangler.proxy.admin.wording import stamp
from strangler.proxy.commands.admin_client import add_admin_arguments, ask, expect_ok

EXIT_OK = 0
EXIT_NOT_FOUND = 2
TWO_COLUMNS = 100
_GAP = " | "

EXAMPLES = """\
Examples:
  strangler shadow show 3f9a2c1b
  STRANGLER_ADMIN_TOKEN=... strangler shadow show 3f9a2c1b --admin 127.0.0.1:8090
  (the ids are in the status page's mismatch table, /shadow and the strangler.mismatch log)"""

LEGEND = "! the field or event differs   ~ never compared (timestamps, ids, durations)"


def add_show_parser(verbs: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Register `show` on the `strangler shadow` verbs."""
    show = verbs.add_parser(
        "show",
        help="one recorded turn: both sides' events side by side, differences marked",
        epilog=EXAMPLES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    show.add_argument("id", metavar="ID", help="the turn's id, e.g. 3f9a2c1b")
    add_admin_arguments(show)
    show.set_defaults(shadow_func=run_show)


def run_show(args: argparse.Namespace) -> int:
    """Fetch the record with this id and print it; `Unable` when the proxy cannot be asked."""
    status, answer = ask(args, "/shadow", None)
    expect_ok(status, answer)
    record = next((r for r in _records(answer) if r.get("id") == args.id), None)
    if record is None:
        print(
            f"strangler shadow: no recorded turn has the id {args.id!r}; the proxy keeps the "
            "latest ones only (older ones are in the strangler.mismatch log)"
        )
        return EXIT_NOT_FOUND
    width = shutil.get_terminal_size(fallback=(160, 24)).columns
    for line in render_text(turn_view(record), width):
        print(line)
    return EXIT_OK


def _records(answer: dict[str, Any]) -> Iterator[dict[str, Any]]:
    """The records of one proxy's `/shadow`, or of every worker's under a supervisor
    (which answers ``{"workers": [{"body": ...}, ...]}``)."""
    bodies = [answer, *(w.get("body") for w in answer.get("workers") or () if isinstance(w, dict))]
    for body in bodies:
        if isinstance(body, dict):
            for record in body.get("recent_mismatches") or ():
                if isinstance(record, dict):
                    yield record


def render_text(v: TurnView, width: int) -> Iterator[str]:
    """The turn as terminal lines of at most `width` characters (two columns when wide)."""
    yield _cut(f"shadow turn {v.id}, recorded {stamp(v.at)}", width)
    yield _cut(
        f"route {v.route}, {v.mode} mode ({v.primary} answered the client), "
        f"turn {v.turn}, request {v.request_type}",
        width,
    )
    yield _cut(f"outcome: {v.outcome}", width)
    if v.reason:
        yield _cut(f"why: {v.reason}: {v.reason_text or 'see the secondary metrics'}", width)
    yield ""
    if v.findings:
        yield "differences:"
        for f in v.findings:
            judged = f"rule {f.rule}" if f.rule else f.check
            yield _cut(f"  {f.category}: {f.detail}  (judged by {judged})", width)
    else:
        yield "differences: none recorded" + (" (the turn was not compared)" if v.reason else "")
    yield ""
    if not v.rows:
        yield "no events were kept for this turn"
        return
    yield _cut(LEGEND, width)
    if width >= TWO_COLUMNS:
        yield from _two_columns(v, width)
    else:
        yield from _one_after_the_other(v, width)


def _two_columns(v: TurnView, width: int) -> Iterator[str]:
    column = (width - len(_GAP)) // 2
    yield _pad("legacy (the reference)", column) + _GAP + "unified"
    yield "-" * column + "-+-" + "-" * column
    for row in v.rows:
        left = list(_event_lines(row.legacy, "legacy", column))
        right = list(_event_lines(row.unified, "unified", column))
        for i in range(max(len(left), len(right))):
            a = left[i] if i < len(left) else ""
            b = right[i] if i < len(right) else ""
            yield (_pad(a, column) + _GAP + b).rstrip()
        yield ""


def _one_after_the_other(v: TurnView, width: int) -> Iterator[str]:
    for row in v.rows:
        for side, event in (("legacy", row.legacy), ("unified", row.unified)):
            yield from (f"{side}: {line}" for line in _event_lines(event, side, width - 9))
        yield ""


def _event_lines(view: EventView | None, side: str, width: int) -> Iterator[str]:
    if view is None:
        yield _cut(f"   (no {side} event here)", width)
        return
    tool = f" {view.tool}" if view.tool else ""
    yield _cut(f"{'!' if view.differs else ' '}{view.position:>2}. {view.type}{tool}", width)
    for leaf in view.leaves:
        mark = "!" if leaf.differs else "~" if leaf.volatile else " "
        yield _cut(f" {mark}   {leaf.path} = {leaf.value}", width)


def _cut(text: str, width: int) -> str:
    return text if len(text) <= width else text[: max(width - 1, 0)] + "…"


def _pad(text: str, width: int) -> str:
    return _cut(text, width).ljust(width)
