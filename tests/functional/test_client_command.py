"""`strangler client` as a person runs it: a child process against a real proxy in front of
the reference backends, with the wrong secret, with lines typed on stdin, and watching a
drain close its connection."""

from __future__ import annotations

import asyncio
import os
import signal
import sys

import pytest

from strangler.proxy.commands.demo import DEMO_SECRET
from strangler.proxy.runtime.server import Running
from tests.functional.conftest import SECRET, Stack

WRONG_SECRET = "not-the-secret-the-proxy-verifies-with-0123456789"
FLAGS = """
flags:
  unified_router:
    routes: [main, main_user, factory, isolated]
    targets: {unified: [alice]}
    on_change: {drain: {rate: 50}}
"""


def _env(**extra: str) -> dict[str, str]:
    """A shell without any STRANGLER_ variable, plus ``extra``."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("STRANGLER_")}
    env.update(extra)
    return env


async def _start(
    *args: str, env: dict[str, str], stdin: int | None = None
) -> asyncio.subprocess.Process:
    return await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "strangler.proxy",
        "client",
        *args,
        stdin=stdin if stdin is not None else asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        env=env,
    )


async def client(*args: str, env: dict[str, str], stdin: bytes = b"") -> tuple[int, str, str]:
    """`strangler client ARGS` to its end: exit status, stdout, stderr."""
    proc = await _start(*args, env=env, stdin=asyncio.subprocess.PIPE)
    async with asyncio.timeout(60):
        out, err = await proc.communicate(stdin)
    assert proc.returncode is not None
    return proc.returncode, out.decode(), err.decode()


async def read_until(proc: asyncio.subprocess.Process, text: str) -> str:
    """stdout up to and including the first line containing ``text``."""
    assert proc.stdout is not None
    seen: list[str] = []
    async with asyncio.timeout(30):
        while True:
            line = (await proc.stdout.readline()).decode()
            seen.append(line)
            if not line:
                raise AssertionError(f"stdout ended before {text!r}:\n{''.join(seen)}")
            if text in line:
                return "".join(seen)


@pytest.fixture
async def proxy(stack: Stack) -> Running:
    await stack.backends()
    return await stack.proxy(FLAGS)


def url(proxy: Running, path: str = "/ws") -> str:
    return f"ws://127.0.0.1:{proxy.port}{path}"


# --- authentication failures ------------------------------------------------------------


async def test_a_wrong_secret_on_the_main_route_says_auth_failed_with_code_message_and_close(
    proxy: Running,
) -> None:
    code, out, err = await client(
        "--user", "alice", "--url", url(proxy), env=_env(STRANGLER_JWT_SECRET=WRONG_SECRET)
    )
    assert code == 3, (out, err)
    assert (
        'strangler client: authentication failed: AUTH_FAILED "Invalid token signature"; '
        'the server closed the connection with 1008 (policy violation) "Authentication failed"'
    ) in err
    assert "the environment variable STRANGLER_JWT_SECRET" in err
    assert "error_message            AUTH_FAILED: Invalid token signature" in out
    assert 'closed by the server: 1008 (policy violation) "Authentication failed"' in out
    assert "Traceback" not in err


async def test_a_refused_handshake_says_auth_failed_with_status_and_body(proxy: Running) -> None:
    code, out, err = await client(
        "--user",
        "alice",
        "--url",
        url(proxy, "/ws/factory"),
        env=_env(STRANGLER_JWT_SECRET=WRONG_SECRET),
    )
    assert code == 3, (out, err)
    assert "authentication failed: the handshake was refused: HTTP 403 Forbidden: " in err
    assert '"error": "authentication_failed"' in err
    assert '"message": "Invalid token signature"' in err


async def test_a_close_without_a_frame_says_auth_failed_with_close_code_and_reason(
    proxy: Running,
) -> None:
    code, out, err = await client(
        "--user",
        "alice",
        "--url",
        url(proxy, "/ws/isolated"),
        env=_env(STRANGLER_JWT_SECRET=WRONG_SECRET),
    )
    assert code == 3, (out, err)
    assert (
        "authentication failed: the server closed the connection with "
        '1008 (policy violation) "Authentication failed"'
    ) in err


async def test_without_secret_or_variable_the_demo_secret_signs_and_the_failure_says_so(
    proxy: Running,
) -> None:
    code, _, err = await client("--user", "alice", "--url", url(proxy), env=_env())
    assert code == 3
    assert "signed with the secret from the demo's built-in secret" in err
    assert DEMO_SECRET not in err


async def test_the_secret_option_beats_the_variable(proxy: Running) -> None:
    code, out, err = await client(
        "--user",
        "alice",
        "--url",
        url(proxy),
        "--secret",
        SECRET,
        env=_env(STRANGLER_JWT_SECRET=WRONG_SECRET),
    )
    assert code == 0, (out, err)
    assert "turn complete, answered by the unified backend" in out


async def test_an_unusable_secret_is_a_usage_error_without_a_traceback(proxy: Running) -> None:
    code, _, err = await client(
        "--user", "alice", "--url", url(proxy), "--secret", "short", env=_env()
    )
    assert code == 2
    assert "strangler client: cannot sign a token" in err
    assert "Traceback" not in err


# --- --hold ---------------------------------------------------------------------------------


async def test_hold_sends_typed_lines_prints_the_answers_and_closes_normally_at_end_of_input(
    proxy: Running,
) -> None:
    lines = b'Why did my GPU costs grow?\n\n{"type": "ping", "timestamp": 1}\n{oops\n'
    code, out, err = await client(
        "--user",
        "bob",
        "--url",
        url(proxy),
        "--hold",
        env=_env(STRANGLER_JWT_SECRET=SECRET),
        stdin=lines,
    )
    assert code == 0, (out, err)
    # The plain line went out as a chat message and legacy played a whole turn for it.
    assert "[   sent] user_message             Why did my GPU costs grow?" in out
    for event in ("agent_started", "tool_executing", "tool_completed", "agent_completed"):
        assert f"[ legacy] {event}" in out
    # The JSON lines went out as typed: a pong answers the ping, an error the bad JSON.
    assert "[   sent] ping" in out and "[ legacy] pong" in out
    assert "[   sent] (not JSON)               {oops" in out
    assert "[ legacy] error                    INVALID_MESSAGE" in out
    # End of input waited for the turn, then closed normally.
    assert out.index("agent_completed") < out.index("closed by this client")
    assert out.rstrip().endswith("closed by this client: 1000 (normal closure)")
    assert err == ""


async def test_hold_closes_normally_on_ctrl_c(proxy: Running) -> None:
    proc = await _start(
        "--user",
        "bob",
        "--url",
        url(proxy),
        "--hold",
        env=_env(STRANGLER_JWT_SECRET=SECRET),
        stdin=asyncio.subprocess.PIPE,  # open and silent: only the signal ends it
    )
    await read_until(proc, "connection_established")
    proc.send_signal(signal.SIGINT)
    async with asyncio.timeout(30):
        rest, err = await proc.communicate()
    assert proc.returncode == 0, err
    assert "closed by this client: 1000 (normal closure)" in rest.decode()
    assert b"Traceback" not in err and b"KeyboardInterrupt" not in err


async def test_hold_prints_the_code_and_reason_when_a_drain_closes_the_connection(
    stack: Stack, proxy: Running
) -> None:
    proc = await _start(
        "--user",
        "bob",
        "--url",
        url(proxy),
        "--hold",
        env=_env(STRANGLER_JWT_SECRET=SECRET),
        stdin=asyncio.subprocess.PIPE,
    )
    await read_until(proc, "[ legacy] connection_established")
    # bob moves to unified under the drain policy: his open connection is closed with 1012.
    (stack.tmp / "p" / "flags.yaml").write_text(FLAGS.replace("[alice]", "[alice, bob]"))
    shown = await read_until(proc, "closed by the server")
    async with asyncio.timeout(30):
        _, err = await proc.communicate()
    assert 'closed by the server: 1012 (service restart) "service restart"' in shown
    assert proc.returncode == 1
    assert b"authentication failed" not in err


async def test_hold_with_a_wrong_secret_says_auth_failed(proxy: Running) -> None:
    code, _, err = await client(
        "--user",
        "alice",
        "--url",
        url(proxy),
        "--hold",
        env=_env(STRANGLER_JWT_SECRET=WRONG_SECRET),
    )
    assert code == 3
    assert 'authentication failed: AUTH_FAILED "Invalid token signature"' in err
