"""The turn page and its view: both sides aligned, differing fields marked, the rule
that judged each difference named; the terminal rendering says the same."""

from __future__ import annotations

from typing import Any

from strangler.proxy.admin.turn_diff import TurnView, turn_view
from strangler.proxy.admin.turn_page import render, render_missing
from strangler.proxy.commands.shadow_show import render_text
from tests.html_tree import Element, parse


def event(kind: str, data: dict[str, Any], tool: str | None = None) -> dict[str, Any]:
    out: dict[str, Any] = {"type": kind, "run_id": "run_1", "timestamp": "2026-01-01T00:00:00Z"}
    if tool is not None:
        out["tool_name"] = tool
        data = {"tool_name": tool, **data}
    out["data"] = data
    return out


def turn(cost: float = 1234.5, *, tools: tuple[str, ...] = ("cost_query",)) -> list[Any]:
    return [
        event("agent_started", {"status": "started"}),
        event("agent_thinking", {"reasoning": "Reading the request."}),
        *(event("tool_executing", {"parameters": {"query": "[redacted]"}}, t) for t in tools),
        *(
            event("tool_completed", {"result": {"monthly_cost_usd": cost, "currency": "USD"}}, t)
            for t in tools
        ),
        event("agent_completed", {"status": "completed", "final_response": "Done."}),
    ]


def record(**overrides: Any) -> dict[str, Any]:
    base: dict[str, Any] = {
        "id": "3f9a2c1b",
        "at": 1_767_225_600.0,
        "route": "main",
        "mode": "shadow",
        "turn": 1,
        "request_type": "start_agent",
        "outcome": "mismatch",
        "differences": [["field", "tool_completed.data.result"]],
        "legacy": turn(),
        "unified": turn(cost=1334.5),
        "reason": None,
        "rules": ["exact"],
    }
    return {**base, **overrides}


def marked(view: TurnView, side: str) -> list[str]:
    return [
        f"{e.type}:{leaf.path}"
        for row in view.rows
        if (e := getattr(row, side)) is not None
        for leaf in e.leaves
        if leaf.differs
    ]


def test_other_tool_result_marks_the_differing_number_on_both_sides_only() -> None:
    view = turn_view(record())
    assert all(row.legacy and row.unified for row in view.rows)  # aligned one to one
    expected = ["tool_completed:data.result.monthly_cost_usd"]
    assert marked(view, "legacy") == marked(view, "unified") == expected
    (finding,) = view.findings
    assert (finding.category, finding.detail, finding.rule) == (
        "field",
        "tool_completed.data.result",
        "exact",
    )


def test_missing_event_sits_opposite_a_gap_and_is_marked_on_legacy() -> None:
    unified = [e for e in turn() if e["type"] != "tool_completed"]
    view = turn_view(
        record(differences=[["missing_event", "tool_completed"]], unified=unified, rules=[""])
    )
    (gap,) = [row for row in view.rows if row.unified is None]
    assert gap.legacy is not None and gap.legacy.type == "tool_completed" and gap.legacy.differs
    assert not any(row.unified.differs for row in view.rows if row.unified is not None)
    # No rule in the record: the category's own check is described instead.
    assert view.findings[0].rule == ""
    assert view.findings[0].check.startswith("event check")


def test_parallel_tools_pair_by_tool_name_whatever_their_order() -> None:
    view = turn_view(
        record(
            differences=[["tool_args", "tool usage_query"]],
            legacy=turn(tools=("cost_query", "usage_query")),
            unified=turn(tools=("usage_query", "cost_query")),
        )
    )
    pairs = [(r.legacy.tool, r.unified.tool) for r in view.rows if r.legacy and r.unified]
    assert all(a == b for a, b in pairs if a or b)
    assert marked(view, "legacy") == ["tool_executing:data.parameters.query"]


def test_volatile_fields_are_shown_as_never_compared() -> None:
    view = turn_view(record())
    first = view.rows[0].legacy
    assert first is not None
    flags = {leaf.path: leaf.volatile for leaf in first.leaves}
    assert flags["timestamp"] and flags["run_id"] and not flags["data.status"]


def page(rec: dict[str, Any]) -> Element:
    return parse(render(turn_view(rec)))


def test_page_shows_both_sides_the_marked_path_and_the_rule() -> None:
    doc = page(record())
    assert doc.by_id("turn-id").text == "3f9a2c1b"
    assert doc.by_id("turn-outcome").text == "mismatch"
    row = doc.by_id("differences").find("tr", data_category="field")
    assert row.find("td", class_="rule").text == "rule exact"
    legacy = doc.by_id("events").find_all("td", class_="legacy")
    unified = doc.by_id("events").find_all("td", class_="unified")
    assert len(legacy) == len(unified) == 5

    def diff_paths(cells: list[Element]) -> list[str]:
        return [
            tr.attrs["data-path"]
            for cell in cells
            for tr in cell.find_all("tr")
            if "diff" in tr.attrs.get("class", "").split()
        ]

    assert diff_paths(legacy) == diff_paths(unified) == ["data.result.monthly_cost_usd"]
    assert "1334.5" in unified[3].text and "1234.5" in legacy[3].text


def test_page_escapes_everything_it_shows() -> None:
    hostile = "<script>alert(1)</script>"
    unified = turn()
    unified[1] = event("agent_thinking", {"reasoning": hostile})
    html = render(
        turn_view(record(request_type=hostile, differences=[["field", hostile]], unified=unified))
    )
    assert "<script>" not in html
    assert "&lt;script&gt;" in html


def test_a_turn_not_compared_says_why_and_has_no_differences() -> None:
    doc = page(
        record(
            outcome="shadow_error",
            reason="secondary_overflow",
            differences=[],
            rules=[],
            unified=[],
        )
    )
    assert doc.by_id("turn-reason").attrs["data-reason"] == "secondary_overflow"
    assert "faster than it could be compared" in doc.by_id("turn-reason").text
    assert doc.by_id("no-differences").text == "no differences: the turn was not compared"
    gaps = doc.by_id("events").find_all("p", class_="gap")
    assert len(gaps) == 5  # every legacy event stands opposite nothing


def test_missing_page_names_the_id_and_where_older_records_are() -> None:
    doc = parse(render_missing("<nope>", 100))
    text = doc.by_id("not-found").text
    assert "<nope>" in text and "last 100" in text and "strangler.mismatch" in text


def test_terminal_two_columns_mark_the_differing_field_within_the_width() -> None:
    lines = list(render_text(turn_view(record()), 120))
    assert all(len(line) <= 120 for line in lines)
    assert "  field: tool_completed.data.result  (judged by rule exact)" in lines
    (marked_line,) = [line for line in lines if "monthly_cost_usd" in line and "!" in line]
    left, _, right = marked_line.partition(" | ")
    assert "1234.5" in left and "1334.5" in right


def test_terminal_narrow_prints_the_sides_one_after_the_other() -> None:
    lines = list(render_text(turn_view(record()), 80))
    assert all(len(line) <= 80 for line in lines)
    assert not any(" | " in line for line in lines)
    costs = [line for line in lines if "monthly_cost_usd" in line]
    assert [line.split(":")[0] for line in costs] == ["legacy", "unified"]
    assert all(" !   data.result.monthly_cost_usd" in line for line in costs)


def test_terminal_finds_a_record_in_any_worker_behind_a_supervisor() -> None:
    from strangler.proxy.commands.shadow_show import _records

    single = {"recent_mismatches": [record()]}
    workers = {
        "workers": [
            {"worker": 0, "status": 200, "body": {"recent_mismatches": []}},
            {"worker": 1, "error": "not running"},
            {"worker": 2, "status": 200, "body": single},
        ]
    }
    assert [r["id"] for r in _records(single)] == ["3f9a2c1b"]
    assert [r["id"] for r in _records(workers)] == ["3f9a2c1b"]
