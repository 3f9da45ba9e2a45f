"""Canonical turns and the playbook that drives a Comparator: both streams in, verdicts out."""

from __future__ import annotations

import itertools
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from hypothesis import strategies as st

from strangler.legacy_adapters.canonical import VOLATILE_FIELDS
from strangler.proxy.config.compare import CompareSettings
from strangler.proxy.shadow.turns import Comparator
from strangler.proxy.shadow.verdict import Category, Difference, Side, Verdict

DEFAULTS = CompareSettings()
_ids = itertools.count()

# -- canonical event builders ---------------------------------------------------------


def ev(kind: str, *, tool: str | None = None, **data: Any) -> dict[str, Any]:
    """A canonical event whose volatile fields differ on every call."""
    n = next(_ids)
    event: dict[str, Any] = {
        "type": kind,
        "run_id": f"run-{n}",
        "user_id": f"user-{n}",
        "agent_name": "supervisor",
        "timestamp": f"2024-09-10T12:00:{n % 60:02d}Z",
        "data": dict(data),
    }
    if tool is not None:
        event["tool_name"] = tool
        event["data"]["tool_name"] = tool
    return event


def started() -> dict[str, Any]:
    return ev("agent_started", status="started", message="Starting")


def thinking(text: str = "Looking at your costs") -> dict[str, Any]:
    return ev("agent_thinking", reasoning=text, step_number=1)


def executing(tool: str, **params: Any) -> dict[str, Any]:
    return ev("tool_executing", tool=tool, parameters=params)


def completed_tool(tool: str) -> dict[str, Any]:
    return ev("tool_completed", tool=tool, result={"rows": 3}, execution_time_ms=next(_ids))


def completed(status: str = "completed", **extra: Any) -> dict[str, Any]:
    data: dict[str, Any] = {"status": status, "result": {"ok": True}, "final_response": "Done"}
    data.update(extra)
    return ev("agent_completed", **data)


def error(message: str = "boom") -> dict[str, Any]:
    return ev("agent_error", error=message, message=message)


def golden() -> list[dict[str, Any]]:
    """The golden path: started, thinking, one tool, completed."""
    return [
        started(),
        thinking(),
        executing("cost_query", window="30d"),
        completed_tool("cost_query"),
        completed(),
    ]


def categories(differences: Iterable[Difference]) -> set[Category]:
    return {difference.category for difference in differences}


# -- the playbook ---------------------------------------------------------------------


@dataclass
class Playbook:
    """Drives one Comparator and collects every verdict it returns."""

    primary: Side = Side.LEGACY
    settings: CompareSettings = DEFAULTS
    verdicts: list[Verdict] = field(default_factory=list)
    comparator: Comparator = field(init=False)

    def __post_init__(self) -> None:
        self.comparator = Comparator(self.primary, self.settings)

    def request(self, at: float, kind: str = "start_agent") -> None:
        self.comparator.client_message({"type": kind, "payload": {"user_request": "hi"}}, at)

    def feed(
        self, side: Side, events: Sequence[Mapping[str, Any]], at: float, step: float = 0.1
    ) -> None:
        """Send ``events`` from ``side`` at ``at``, ``at + step``, ..."""
        for position, event in enumerate(events):
            self.verdicts += self.comparator.event(side, event, at + position * step)

    def legacy(self, events: Sequence[Mapping[str, Any]], at: float, step: float = 0.1) -> None:
        self.feed(Side.LEGACY, events, at, step)

    def unified(self, events: Sequence[Mapping[str, Any]], at: float, step: float = 0.1) -> None:
        self.feed(Side.UNIFIED, events, at, step)

    def poll(self, at: float) -> list[Verdict]:
        found = self.comparator.poll(at)
        self.verdicts += found
        return found

    def only(self) -> Verdict:
        assert len(self.verdicts) == 1, self.verdicts
        return self.verdicts[0]


def play_turn(
    legacy: Sequence[Mapping[str, Any]],
    unified: Sequence[Mapping[str, Any]],
    *,
    primary: Side = Side.LEGACY,
    settings: CompareSettings = DEFAULTS,
) -> Verdict:
    """One turn, both sides answering promptly; returns its verdict."""
    book = Playbook(primary, settings)
    book.request(0.0)
    book.legacy(legacy, 0.1)
    book.unified(unified, 0.2)
    return book.only()


# -- canonical turns, drawn for properties --------------------------------------------

_names = st.sampled_from(["cost_query", "usage_query", "forecast", "budget"])
_scalars = st.one_of(st.none(), st.booleans(), st.integers(), st.text(max_size=8))
_params = st.dictionaries(
    st.sampled_from(["window", "region", "limit", "thread_id", "filters"]), _scalars, max_size=3
)
_volatile = st.dictionaries(st.sampled_from(sorted(VOLATILE_FIELDS)), _scalars, max_size=3)


@st.composite
def canonical_turn(draw: st.DrawFn) -> list[dict[str, Any]]:
    """A plausible canonical turn: started, thinking, tools, thinking, an end."""
    events = [started()]
    for _ in range(draw(st.integers(1, 4))):
        events.append(thinking(draw(st.text(max_size=12))))
    tools = draw(st.lists(st.tuples(_names, _params), max_size=3))
    for name, params in tools:
        events.append(executing(name, **params))
    for name, _ in tools:
        events.append(completed_tool(name))
    if draw(st.booleans()):
        events.append(thinking("wrapping up"))
    if draw(st.booleans()):
        events.append(ev("heartbeat"))
    end = draw(st.sampled_from(["completed", "failed", "error"]))
    events.append(error() if end == "error" else completed(end))
    for event in events:
        event.update(draw(_volatile))
    return events
