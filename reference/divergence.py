"""Deliberate differences a reference backend can be told to make (pure).

The comparator must find each of them with the right outcome and category, so the
shadow tests and the demo switch them on in the unified router emulator. One of them,
`NUMBER_NOISE`, is noise rather than a divergence: a numeric rule with a tolerance
(``shadow.compare.rules``) must absorb it, and without one it is a difference.
"""

from __future__ import annotations

from enum import StrEnum
from typing import Any, Final


class Divergence(StrEnum):
    """One way of answering a turn differently from legacy."""

    DROP_EVENT = "drop_event"  # tool_completed never sent
    EXTRA_EVENT = "extra_event"  # the tool's completion reported a second time
    REORDER = "reorder"  # thinking after the tool instead of before
    DUPLICATE = "duplicate"  # agent_completed sent twice
    OTHER_TOOL = "other_tool"  # a different tool called
    TOOL_ARGS = "tool_args"  # the same tool with other parameters
    OTHER_RESULT = "other_result"  # the same tool call returns other data
    STATUS = "status"  # agent_completed says partial instead of completed
    FINAL_STATUS = "final_status"  # agent_error instead of agent_completed
    NUMBER_NOISE = "number_noise"  # the result's numbers off by a few parts per billion
    HANG = "hang"  # agent_started, then nothing
    CRASH = "crash"  # two events, then the connection drops without a close frame
    REFUSE = "refuse"  # the handshake is refused with 503
    FLOOD = "flood"  # thousands of heartbeats before the turn and between its events


FLOOD_BETWEEN_EVENTS: Final = 1000
"""Heartbeats a flooding router sends between two events of a turn (the session sends
more before the turn starts)."""

# NUMBER_NOISE's relative change: far inside any tolerance a person would configure.
NOISE_REL: Final = 1e-9


def diverge(items: list[dict[str, Any]], kind: Divergence) -> list[dict[str, Any]]:
    """The turn's canonical items with `kind` applied (HANG/CRASH/REFUSE happen at the
    socket, so the items stay as they are for those)."""
    out = [dict(item) for item in items]
    if kind is Divergence.DROP_EVENT:
        return [i for i in out if i["type"] != "tool_completed"]
    if kind is Divergence.EXTRA_EVENT:
        return [*out[:-1], dict(_first(out, "tool_completed")), out[-1]]
    if kind is Divergence.REORDER:
        thinking = [i for i in out if i["type"] == "agent_thinking"]
        rest = [i for i in out if i["type"] != "agent_thinking"]
        return [*rest[:-1], *thinking, rest[-1]]
    if kind is Divergence.DUPLICATE:
        return [*out, dict(out[-1])]
    if kind in (Divergence.OTHER_TOOL, Divergence.TOOL_ARGS):
        for i in out:
            if i["type"] in ("tool_executing", "tool_completed"):
                data = dict(i["data"])
                if kind is Divergence.OTHER_TOOL:
                    i["tool_name"] = data["tool_name"] = "billing_export"
                elif i["type"] == "tool_executing":
                    data["parameters"] = {**data["parameters"], "granularity": "hourly"}
                i["data"] = data
        return out
    if kind in (Divergence.OTHER_RESULT, Divergence.NUMBER_NOISE):
        for i in out:
            if i["type"] == "tool_completed" and "monthly_cost_usd" in i["data"]["result"]:
                result = dict(i["data"]["result"])
                cost = result["monthly_cost_usd"]
                changed = cost + 100 if kind is Divergence.OTHER_RESULT else cost * (1 + NOISE_REL)
                i["data"] = {**i["data"], "result": {**result, "monthly_cost_usd": changed}}
        return out
    if kind is Divergence.STATUS:
        out[-1] = {**out[-1], "data": {**out[-1]["data"], "status": "partial"}}
        return out
    if kind is Divergence.FINAL_STATUS:
        last = out[-1]
        out[-1] = {
            **last,
            "type": "agent_error",
            "data": {
                "status": "failed",
                "error": "tool backend unavailable",
                "message": "The agent could not finish.",
            },
        }
        return out
    if kind is Divergence.FLOOD:
        flooded: list[dict[str, Any]] = []
        for item in out:
            if flooded:
                beat = {"type": "heartbeat", "run_id": item["run_id"], "agent_name": "", "data": {}}
                flooded += [beat] * FLOOD_BETWEEN_EVENTS
            flooded.append(item)
        return flooded
    return out


def _first(items: list[dict[str, Any]], kind: str) -> dict[str, Any]:
    return next(i for i in items if i["type"] == kind)
