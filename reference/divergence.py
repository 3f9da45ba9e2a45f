"""Deliberate differences a reference backend can be told to make (pure).

The comparator must find each of them with the right outcome and category, so the
shadow tests and the demo switch them on in the unified router emulator.
"""

from __future__ import annotations

from enum import StrEnum
from typing import Any


class Divergence(StrEnum):
    """One way of answering a turn differently from legacy."""

    DROP_EVENT = "drop_event"  # tool_completed never sent
    REORDER = "reorder"  # thinking after the tool instead of before
    OTHER_TOOL = "other_tool"  # a different tool called
    TOOL_ARGS = "tool_args"  # the same tool with other parameters
    FINAL_STATUS = "final_status"  # agent_error instead of agent_completed
    HANG = "hang"  # agent_started, then nothing
    CRASH = "crash"  # two events, then the connection drops without a close frame
    REFUSE = "refuse"  # the handshake is refused with 503
    FLOOD = "flood"  # thousands of heartbeats before the turn


def diverge(items: list[dict[str, Any]], kind: Divergence) -> list[dict[str, Any]]:
    """The turn's canonical items with `kind` applied (HANG/CRASH/FLOOD/REFUSE happen at
    the socket, so the items stay as they are for those)."""
    out = [dict(item) for item in items]
    if kind is Divergence.DROP_EVENT:
        return [i for i in out if i["type"] != "tool_completed"]
    if kind is Divergence.REORDER:
        thinking = [i for i in out if i["type"] == "agent_thinking"]
        rest = [i for i in out if i["type"] != "agent_thinking"]
        return [*rest[:-1], *thinking, rest[-1]]
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
