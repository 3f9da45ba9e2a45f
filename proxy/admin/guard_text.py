"""Guards as sentences for the status page (pure): a flag's guard as configured, and a
guard's state as `/flags/status` reports it (proxy/release/guards.py `snapshot`).

Records come from the running proxy but are read defensively: a shape this module does
not know yields a plain sentence, never a dump of the structure.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from strangler.proxy.admin.wording import clock, counted, number, ratio_text, word

# What each watched ratio is called, and what one of its samples is.
_WATCHED = {
    "mismatch_ratio": ("the mismatch ratio", "comparison"),
    "unified_error_ratio": ("the unified error ratio", "unified interaction"),
    "unified_turn_failure_ratio": ("the unified golden-path failure ratio", "unified turn"),
}
_LIMITS = (
    ("max_mismatch_ratio", "mismatches"),
    ("max_unified_error_ratio", "unified errors"),
    ("max_unified_turn_failure_ratio", "unified turns missing the golden path"),
)
HELD = "new connections go to legacy until the flag file changes"


def guard_text(guard: Mapping[str, Any]) -> str:
    """A flag's guard as configured: what trips it, over how many samples and how long."""
    limits = [
        f"{what} over {ratio_text(limit)}"
        for key, what in _LIMITS
        if (limit := number(guard.get(key))) is not None
    ]
    if not limits:
        return "a guard watching nothing this page knows"
    samples = number(guard.get("min_samples"))
    window = number(guard.get("window"))
    return (
        "back to legacy on "
        + " or ".join(limits)
        + (f" of at least {counted(int(samples), 'sample')}" if samples is not None else "")
        + (f" in {window:g} s" if window is not None else "")
    )


def watched_name(watched: Any) -> str:
    """``the mismatch ratio`` for ``mismatch_ratio``; an unknown name as it is."""
    return _WATCHED.get(str(watched), (str(watched).replace("_", " "), "sample"))[0]


def _sample(watched: Any) -> str:
    return _WATCHED.get(str(watched), ("", "sample"))[1]


def state_word(state: Any) -> str:
    """``tripped`` or ``clear``: the one word of a guard's state."""
    return "tripped" if isinstance(state, Mapping) and state.get("tripped") else "clear"


def state_sentences(state: Any, now: float) -> list[str]:
    """A guard's state: the trip (when, what, so what), or what it watches and its limits."""
    if not isinstance(state, Mapping):
        return [word(state)]
    trip = state.get("trip")
    if state.get("tripped") and isinstance(trip, Mapping):
        return [trip_sentence(trip, now)]
    watching = state.get("watching")
    if not isinstance(watching, Mapping) or not watching:
        return ["watching nothing"]
    min_samples = number(state.get("min_samples"))
    window = number(state.get("window_seconds"))
    return [
        _watching(watched, w, min_samples, window)
        for watched, w in sorted(watching.items(), key=lambda kv: str(kv[0]))
    ]


def _watching(watched: Any, w: Any, min_samples: float | None, window: float | None) -> str:
    name, sample = watched_name(watched), _sample(watched)
    if not isinstance(w, Mapping):
        return f"watching {name}"
    samples = int(number(w.get("samples")) or 0)
    ratio, limit = number(w.get("ratio")), number(w.get("limit"))
    span = f" in the last {window:g} s" if window is not None else ""
    if ratio is None or samples == 0:
        seen = f"no {sample}s{span} yet"
    else:
        seen = f"{ratio_text(ratio)} of {counted(samples, sample)}{span}"
    rule = ""
    if limit is not None:
        rule = f"; trips above {ratio_text(limit)}"
        if min_samples is not None:
            rule += f" after {counted(int(min_samples), 'sample')}"
    return f"watching {name}: {seen}{rule}"


def trip_sentence(trip: Mapping[str, Any], now: float) -> str:
    """When a guard tripped, on what, and what that does to new connections."""
    at = number(trip.get("at"))
    when = f" at {clock(at, now)}" if at is not None else ""
    return f"tripped{when}: {trip_details(trip)}"


def trip_details(trip: Mapping[str, Any]) -> str:
    """What a guard tripped on (ratio, samples, limit) and what it holds."""
    watched = trip.get("guard")
    ratio, limit = number(trip.get("ratio")), number(trip.get("limit"))
    samples = number(trip.get("samples"))
    what = watched_name(watched).removeprefix("the ")
    if ratio is not None:
        what += f" {ratio_text(ratio)}"
    if samples is not None:
        what += f" over {counted(int(samples), _sample(watched))}"
    if limit is not None:
        what += f" (limit {ratio_text(limit)})"
    return f"{what}; {HELD}"
