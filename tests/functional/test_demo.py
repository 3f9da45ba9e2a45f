"""The embedded demo, run as a newcomer runs it: one command, two users, two backends."""

from __future__ import annotations

import os
import random
import re
import socket
import subprocess
import sys
from pathlib import Path


def test_demo_tour_shows_one_path_answered_by_two_backends(tmp_path: Path) -> None:
    result = _run_demo(tmp_path / "demo")
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


# A log record as the text format writes it, and the loggers the demo's servers use.
LOG_LINE = re.compile(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d+ [A-Z]+ [\w.]+: ")
LOGGERS = re.compile(r"\b(strangler\.(server|connections|flags|audit|shadow|reference)|aiohttp)")


def test_demo_terminal_shows_the_tour_alone_and_the_servers_log_goes_to_a_file(
    tmp_path: Path,
) -> None:
    result = _run_demo(tmp_path / "demo")
    assert result.returncode == 0, result.stderr
    log = tmp_path / "demo" / "demo.log"
    # The terminal shows both streams: neither carries a log record.
    for stream in (result.stdout, result.stderr):
        for line in stream.splitlines():
            assert not LOG_LINE.match(line), line
            assert not re.search(r"\b(DEBUG|INFO|WARNING|ERROR|CRITICAL)\b", line), line
            assert not LOGGERS.search(line), line
    assert result.stderr == ""
    first = result.stdout.splitlines()[:2]
    assert first[0].startswith("strangler demo: proxy on ws://127.0.0.1:")
    assert first[1] == f"The servers' log goes to {log}."
    assert f"tail -f {log}" in result.stdout
    records = log.read_text().splitlines()
    assert all(LOG_LINE.match(line) for line in records)
    text = "\n".join(records)
    assert "INFO strangler.flags: flag file" in text
    assert "INFO strangler.connections: connection opened route=main mode=unified" in text
    assert "INFO strangler.connections: connection closed route=main mode=legacy" in text
    assert "INFO strangler.reference.handshake: opened main connection" in text
    assert text.endswith("INFO strangler.server: stopped")


def _run_demo(workdir: Path) -> subprocess.CompletedProcess[str]:
    # Below the kernel's ephemeral range (32768 and up here), so no client socket of a
    # concurrent test can take one of the demo's fixed offsets between check and bind.
    rng, base = random.Random(), None
    while base is None or any(_busy(base + offset) for offset in (0, 10, 11, 12)):
        base = rng.randrange(20_000, 32_000)
    return _demo(workdir, base)


def _demo(workdir: Path, base: int) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k != "STRANGLER_JWT_SECRET"}
    command = ["demo", "--exit", "--base-port", str(base), "--workdir", str(workdir)]
    return subprocess.run(
        [sys.executable, "-m", "strangler.proxy", *command],
        capture_output=True,
        text=True,
        timeout=90,
        env=env,
    )


def _busy(port: int) -> bool:
    with socket.socket() as s:
        return s.connect_ex(("127.0.0.1", port)) == 0


def test_demo_with_a_port_taken_names_it_and_exits_2(tmp_path: Path) -> None:
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", 0))
        holder.listen()
        base = holder.getsockname()[1] - 11  # the legacy backend's port is taken
        result = _demo(tmp_path / "demo", base)
    assert result.returncode == 2
    assert result.stdout == ""
    assert result.stderr == (
        f"strangler demo: cannot listen: legacy backend 127.0.0.1:{base + 11}: "
        "Address already in use; try --base-port\n"
    )
