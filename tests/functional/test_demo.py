"""The embedded demo, run as a newcomer runs it: one command, two users, two backends."""

from __future__ import annotations

import os
import random
import subprocess
import sys
from pathlib import Path


def test_demo_tour_shows_one_path_answered_by_two_backends(tmp_path: Path) -> None:
    # Below the kernel's ephemeral range (32768 and up here), so no client socket of a
    # concurrent test can take one of the demo's fixed offsets between check and bind.
    rng = random.Random()
    base = rng.randrange(20_000, 32_000)
    while any(_busy(base + offset) for offset in (0, 10, 11, 12)):
        base = rng.randrange(20_000, 32_000)
    env = {k: v for k, v in os.environ.items() if k != "STRANGLER_JWT_SECRET"}
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "strangler.proxy",
            "demo",
            "--exit",
            "--base-port",
            str(base),
            "--workdir",
            str(tmp_path / "demo"),
        ],
        capture_output=True,
        text=True,
        timeout=90,
        env=env,
    )
    assert result.returncode == 0, result.stderr
    out = result.stdout
    alice, bob = out.split("== alice connects to /ws")[1].split("== bob connects to /ws")
    bob = bob.split("== dana")[0]
    assert "turn complete, answered by the unified backend" in alice
    assert "turn complete, answered by the legacy backend" in bob
    for event in (
        "agent_started",
        "agent_thinking",
        "tool_executing",
        "tool_completed",
        "agent_completed",
    ):
        assert event in alice and event in bob
    assert (
        'strangler_connections_total{mode="unified",outcome="client_closed",route="main"} 1.0'
        in out
    )
    assert (
        'strangler_connections_total{mode="legacy",outcome="client_closed",route="main"} 1.0' in out
    )
    assert (
        "factory frames from unified and legacy identical apart from volatile fields: True" in out
    )
    assert 'strangler_comparisons_total{mode="shadow",outcome="mismatch",route="main"} 1.0' in out
    assert "mismatch on route main turn 0: tool_set tool billing_export" in out
    assert "Traceback" not in result.stderr
    assert (tmp_path / "demo" / "flags.yaml").exists()


def _busy(port: int) -> bool:
    import socket

    with socket.socket() as s:
        return s.connect_ex(("127.0.0.1", port)) == 0
