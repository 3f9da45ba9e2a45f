"""The deterministic golden-path turn both reference backends play.

Pure: no sockets, no aiohttp. Both backends render the same canonical event bodies,
so a comparison between them only differs where ``vary=True`` asks it to.
"""

from __future__ import annotations

import hashlib
import random
from collections.abc import Mapping
from typing import Any, Final

CANONICAL_ALIASES: Final[Mapping[str, str]] = {
    "user": "user_message",
    "user_input": "user_message",
    "chat_message": "user_message",
    "message": "user_message",
    "execute_agent": "start_agent",
}
TURN_TYPES: Final = frozenset({"start_agent", "user_message", "agent_request"})

AGENT_NAME: Final = "supervisor"
TOOL_NAME: Final = "cost_query"
# A request that asks for work "in parallel" calls this tool beside TOOL_NAME; a varied
# turn runs (and finishes) the two in another order, as parallel tools do.
PARALLEL_TOOL_NAME: Final = "usage_query"
PARALLEL_WORDS: Final = "in parallel"
GOLDEN_PATH_EVENTS: Final = (
    "agent_started",
    "agent_thinking",
    "tool_executing",
    "tool_completed",
    "agent_completed",
)

_PAYLOAD_TEXT_KEYS: Final = ("user_request", "text", "content", "message", "query")
_TOP_LEVEL_TEXT_KEYS: Final = ("content", "text", "query", "message")

_REASONING: Final = (
    "Reading the request and deciding which data is needed.",
    "Querying cost data for the relevant services.",
    "Summarising the findings into recommendations.",
)
# Disjoint from _REASONING so a varied turn always differs from the golden one.
_VARIED_REASONING: Final = (
    "Let me look at what was asked first.",
    "Cost data should answer this; fetching it.",
    "Weighing the options before answering.",
    "Cross-checking the numbers once more.",
)
_SERVICES: Final = ("compute", "storage", "llm_inference", "networking", "database")


def canonical_type(msg_type: str) -> str:
    """Map a legacy alias to its canonical message type (other types pass unchanged)."""
    return CANONICAL_ALIASES.get(msg_type, msg_type)


def request_text(message: Mapping[str, Any]) -> str:
    """The user's request text, wherever the client's generation put it ("" if none)."""
    payload = message.get("payload")
    if isinstance(payload, Mapping):
        for key in _PAYLOAD_TEXT_KEYS:
            value = payload.get(key)
            if isinstance(value, str):
                return value
    for key in _TOP_LEVEL_TEXT_KEYS:
        value = message.get(key)
        if isinstance(value, str):
            return value
    return ""


def golden_turn(
    text: str,
    *,
    run_id: str,
    thread_id: str | None,
    vary: bool = False,
    rng: random.Random | None = None,
) -> list[dict[str, Any]]:
    """The canonical event bodies of one turn answering ``text``, in emission order.

    Each item is ``{"type", "run_id", "agent_name", "tool_name" (tool events), "data"}``.

    Identical for the same text unless ``vary`` is set, which changes the reasoning
    text, the number of thinking chunks (1..3), the timings and, when the request asks
    for work in parallel (two tools), the order the tools run and finish in.
    """
    digest = hashlib.sha256(text.encode("utf-8")).digest()
    result = _cost_result(text, digest)
    rng = (rng or random.Random()) if vary else None
    if rng is not None:
        chunks = rng.randint(1, 3)
        reasoning = [rng.choice(_VARIED_REASONING) for _ in range(chunks)]
        tool_ms = round(rng.uniform(5.0, 500.0), 1)
        total_ms = round(tool_ms + rng.uniform(50.0, 2000.0), 1)
    else:
        reasoning = list(_REASONING[:2])
        tool_ms = 10.0 + digest[0] / 10
        total_ms = 100.0 + tool_ms + digest[1]
    thinking = [
        _event(
            "agent_thinking",
            {
                "reasoning": line,
                "step_number": step,
                "progress_percentage": round(100 * step / (len(reasoning) + 1)),
            },
        )
        for step, line in enumerate(reasoning, start=1)
    ]
    summary = (
        f"Your monthly cost is ${result['monthly_cost_usd']:.2f}; "
        f"the largest share is {result['top_services'][0]}."
    )
    calls = [(TOOL_NAME, {"query": text}, result)]
    if PARALLEL_WORDS in text.lower():
        calls.append((PARALLEL_TOOL_NAME, {"query": text, "metric": "requests"}, _usage(digest)))
    started = [_event("tool_executing", {"tool_name": n, "parameters": p}) for n, p, _ in calls]
    finished = [
        _event(
            "tool_completed",
            {
                "tool_name": name,
                "result": answer,
                "execution_time_ms": tool_ms,
                "status": "completed",
                "message": f"{name} completed",
            },
        )
        for name, _, answer in calls
    ]
    if rng is not None:
        rng.shuffle(started)
        rng.shuffle(finished)
    events = [
        _event(
            "agent_started",
            {"status": "started", "message": f"{AGENT_NAME} started", "context": {}},
        ),
        *thinking,
        *started,
        *finished,
        _event(
            "agent_completed",
            {
                "status": "completed",
                "result": {"summary": summary, "thread_id": thread_id},
                "final_response": summary,
                "execution_time_ms": total_ms,
            },
        ),
    ]
    for event in events:
        event["run_id"] = run_id
    return events


def _event(event_type: str, data: dict[str, Any]) -> dict[str, Any]:
    item: dict[str, Any] = {"type": event_type, "agent_name": AGENT_NAME}
    if "tool_name" in data:
        item["tool_name"] = data["tool_name"]
    item["data"] = data
    return item


def _usage(digest: bytes) -> dict[str, Any]:
    return {"requests": int.from_bytes(digest[7:10], "big"), "period": "month"}


def _cost_result(text: str, digest: bytes) -> dict[str, Any]:
    # Derived from a stable digest (not hash(), which is salted per process) so every
    # backend instance answers the same text with the same numbers.
    first = _SERVICES[digest[2] % len(_SERVICES)]
    second = _SERVICES[(digest[2] + 1 + digest[3] % (len(_SERVICES) - 1)) % len(_SERVICES)]
    cents = int.from_bytes(digest[4:7], "big") % 900_000
    return {
        "query": text,
        "monthly_cost_usd": 1000 + cents / 100,
        "currency": "USD",
        "top_services": [first, second],
    }
