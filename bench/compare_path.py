"""What shadow's comparison costs per turn, without sockets: parse, adapt, align, judge.

    .venv/bin/python bench/compare_path.py [--source DIR] [--dialect main] [--turns 5000] \\
        [--callgrind]

Everything a shadow connection does with a turn besides carrying it: the client's
message and each side's five golden-path events parsed as the tee parses them, the
legacy side's events translated by the dialect's adapter (`main`, `/ws`'s, by default:
the bench's route), all of them fed to the
comparator, which pairs the turns and judges them. The events are the load generator's
turn (bench/loadgen/loadgen.c, `TURN_EVENTS`), each side stamped with its own run id
as two real backends would be, so every turn is judged MATCH with one tolerated field.

Prints µs per turn (wall time: noisy on a shared machine) and, with --callgrind,
user-space instructions per turn under valgrind: the difference between a run of
N and one of N/6 turns, divided by the turns between them, so start-up and import
cancel out. The byte tunnel's whole legacy turn, for scale, is
`bench/instructions.py --scenario legacy --turns`. Prints one JSON line.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

import harness  # bench/ is not a package: its folder is on the path above

EVENTS = [
    b'{"type": "agent_started", "payload": {"run_id": "%s", "agent_name": "bench"}}',
    b'{"type": "agent_thinking", "payload": {"run_id": "%s", "step": 1, '
    b'"reasoning": "looking it up"}}',
    b'{"type": "tool_executing", "payload": {"run_id": "%s", "tool_name": "search", '
    b'"parameters": {"q": "bench"}}}',
    b'{"type": "tool_completed", "payload": {"run_id": "%s", "tool_name": "search", '
    b'"result": {"hits": 3}}}',
    b'{"type": "agent_completed", "payload": {"run_id": "%s", "result": {"answer": "done"}}}',
]
CLIENT = b'{"type": "user_message", "payload": {"text": "' + b"x" * 240 + b'"}}'


def run_turns(turns: int, dialect_name: str) -> dict[str, Any]:
    """Feed ``turns`` turns through the comparison path (in this process: the caller
    put the tree to measure on the path)."""
    from strangler.legacy_adapters.registry import adapter
    from strangler.proxy.config.compare import CompareSettings
    from strangler.proxy.shadow.frames import parse
    from strangler.proxy.shadow.turns import Comparator
    from strangler.proxy.shadow.verdict import Outcome, Side

    dialect = adapter(dialect_name)
    comparator = Comparator(Side.LEGACY, CompareSettings())
    stamped = {
        side: [[e.replace(b"%s", b"run-%d-%d" % (n, turn)) for e in EVENTS] for turn in range(2)]
        for n, side in enumerate(Side)
    }
    outcomes: dict[str, int] = {}
    began = time.perf_counter()
    for turn in range(turns):
        now = float(turn)
        comparator.client_message(dialect.client_to_canonical(parse(CLIENT) or {}), now)
        for side in (Side.LEGACY, Side.UNIFIED):
            for frame in stamped[side][turn % 2]:
                event = parse(frame) or {}
                if side is Side.LEGACY:
                    event = dialect.event_to_canonical(event)
                for verdict in comparator.event(side, event, now):
                    outcomes[verdict.outcome.value] = outcomes.get(verdict.outcome.value, 0) + 1
    elapsed = time.perf_counter() - began
    assert outcomes == {Outcome.MATCH.value: turns}, outcomes  # the path judged every turn
    return {"dialect": dialect_name, "turns": turns, "us_per_turn": round(elapsed / turns * 1e6, 2)}


def _measured(turns: int, dialect: str) -> list[str]:
    """The command of one measured run (this file, with --inner)."""
    return [sys.executable, __file__, "--turns", str(turns), "--dialect", dialect, "--inner"]


def instructions(path: Path, dialect: str, turns: int) -> int:
    """User-space instructions per turn: two runs under callgrind with ``path`` (the
    tree's import path) first, differenced."""
    counts = []
    with tempfile.TemporaryDirectory() as work:
        for n in (turns // 6, turns):
            out = Path(work) / f"callgrind.{n}"
            subprocess.run(
                [
                    "valgrind",
                    "--tool=callgrind",
                    f"--callgrind-out-file={out}",
                    *_measured(n, dialect),
                ],
                env={**os.environ, "PYTHONPATH": str(path), "PYTHONHASHSEED": "0"},
                check=True,
                capture_output=True,
            )
            totals = [line for line in out.read_text().splitlines() if line.startswith("totals:")]
            counts.append(int(totals[0].split()[1]))
    return (counts[1] - counts[0]) // (turns - turns // 6)


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--source", type=Path, default=harness.ROOT)
    p.add_argument("--dialect", default="main", help="the legacy side's dialect")
    p.add_argument("--turns", type=int, default=5000)
    p.add_argument("--callgrind", action="store_true", help="also count instructions")
    p.add_argument("--inner", action="store_true", help=argparse.SUPPRESS)
    a = p.parse_args()
    if a.inner:  # one measured run, on the path the parent set
        print(json.dumps(run_turns(a.turns, a.dialect)))
        return 0
    _module, path = harness.source_layout(a.source)
    wall = subprocess.run(
        _measured(a.turns, a.dialect),
        env={**os.environ, "PYTHONPATH": str(path)},
        check=True,
        capture_output=True,
        text=True,
    )
    figures = {"source": str(a.source), **json.loads(wall.stdout)}
    if a.callgrind:
        # Under valgrind a turn runs some fifty times slower: fewer turns say as much.
        figures["instructions_per_turn"] = instructions(path, a.dialect, min(a.turns, 1200))
    print(json.dumps(figures))
    return 0


if __name__ == "__main__":
    sys.exit(main())
