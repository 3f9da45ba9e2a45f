"""The noise table: per (event type, path) counts of tolerated differences, bounded."""

from __future__ import annotations

from strangler.proxy.shadow.noise import NoiseCounter


def test_counts_turns_per_path_most_frequent_first() -> None:
    noise = NoiseCounter()
    noise.add([("agent_thinking", "data.reasoning"), ("agent_completed", "data.final_response")])
    noise.add([("agent_thinking", "data.reasoning")])
    assert noise.snapshot() == {
        "paths": [
            {"event_type": "agent_thinking", "path": "data.reasoning", "turns": 2},
            {"event_type": "agent_completed", "path": "data.final_response", "turns": 1},
        ],
        "overflow": 0,
        "max_paths": 200,
    }


def test_paths_beyond_the_cap_count_as_overflow_only() -> None:
    noise = NoiseCounter(limit=2)
    noise.add([("t", "a"), ("t", "b"), ("t", "c")])
    noise.add([("t", "c"), ("t", "a")])
    snapshot = noise.snapshot()
    assert [(row["path"], row["turns"]) for row in snapshot["paths"]] == [("a", 2), ("b", 1)]
    assert snapshot["overflow"] == 2
