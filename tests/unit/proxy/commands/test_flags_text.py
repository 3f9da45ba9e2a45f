"""`strangler flags status` prints golden-path reliability per route, legacy then unified."""

from __future__ import annotations

from typing import Any

from strangler.proxy.commands.flags_text import status_text

STATUS: dict[str, Any] = {
    "hash": "0123456789ab",
    "source": "flags.yaml",
    "loaded_at": None,
    "last_error": None,
    "flags": ["unified_router"],
    "open_connections": {},
    "drift": {},
    "guards": {},
}


def test_status_prints_each_routes_reliability_on_both_backends() -> None:
    lines = status_text(
        {
            **STATUS,
            "reliability": {
                "main": {
                    "legacy": {"turns": 400, "completed": 399, "ratio": 0.9975},
                    "unified": {"turns": 100, "completed": 97, "ratio": 0.97},
                },
                "api": {"unified": {"turns": 3, "completed": 3, "ratio": 1.0}},
            },
        },
        now=0.0,
    ).splitlines()
    assert lines[-3:] == [
        "golden path: last hour, this process, objective 99.5%:",
        "  api: legacy no turns ended; unified 100% of 3 turns",
        "  main: legacy 99.75% of 400 turns; unified 97% of 100 turns (BELOW OBJECTIVE)",
    ]


def test_status_without_turns_or_from_an_older_proxy_says_so() -> None:
    for answer in (STATUS, {**STATUS, "reliability": {}}):
        last = status_text(answer, now=0.0).splitlines()[-1]
        assert last == "golden path: last hour, this process, objective 99.5%: no turns ended"
