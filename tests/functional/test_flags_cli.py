"""`strangler flags` as a release manager runs it: a subprocess, against files on disk and
a real proxy in front of the reference backends, with real WebSocket clients open."""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import aiohttp

from strangler.flags.bucketing import bucket
from strangler.proxy.runtime.server import Running
from tests.functional.conftest import (
    SECRET,
    Stack,
    admin_ready,
    free_port,
    token,
    wait_for,
    write_process_config,
)

REPO = Path(__file__).resolve().parents[2]
DEMO_CONFIG = REPO / "proxy" / "commands" / "demo_config" / "strangler.yaml"
ADMIN_TOKEN = "admin-token-for-the-flags-cli-tests"


def _env(**extra: str) -> dict[str, str]:
    """This process's environment without any STRANGLER_ variable, plus ``extra``: a
    release manager's shell has neither the JWT secret nor, unless given, a token."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("STRANGLER_")}
    env.update(extra)
    return env


def strangler(*args: str, **env: str) -> subprocess.CompletedProcess[str]:
    """`strangler flags ...` in a child process, without the demo's JWT secret."""
    return subprocess.run(
        [sys.executable, "-m", "strangler.proxy", "flags", *args],
        capture_output=True,
        text=True,
        timeout=30,
        env=_env(**env),
        cwd=REPO,
    )


async def astrangler(*args: str, **env: str) -> tuple[int, str, str]:
    """The same, without blocking the event loop the proxy under test runs on."""
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "strangler.proxy",
        "flags",
        *args,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        env=_env(**env),
        cwd=REPO,
    )
    async with asyncio.timeout(30):
        out, err = await proc.communicate()
    assert proc.returncode is not None
    return proc.returncode, out.decode(), err.decode()


def write(path: Path, text: str) -> Path:
    path.write_text(textwrap.dedent(text).lstrip("\n"))
    return path


# --- check ---------------------------------------------------------------------------------

CLEAN = """
version: 1
segments:
  staff: {users: [ann], when: [{claim: org, equals: acme}]}
flags:
  unified_router:
    routes: [main, factory]
    targets: {unified: [alice]}
    rules:
      - {name: staff, segment: staff, mode: shadow}
      - {name: pros, when: [{claim: plan, one_of: [pro]}], mode: live, rollout: 50}
    rollout: {unified: 5}
"""


def test_check_prints_a_summary_and_exits_0_for_a_clean_file(tmp_path: Path) -> None:
    path = write(tmp_path / "flags.yaml", CLEAN)
    result = strangler("check", str(path))
    digest = hashlib.sha256(path.read_bytes()).hexdigest()[:12]
    assert result.returncode == 0, result.stderr
    assert result.stdout == f"{path}: ok: 1 flag, 1 segment, 2 rules; sha256 {digest}\n"


def test_check_lists_every_problem_with_its_line_and_exits_1(tmp_path: Path) -> None:
    path = write(
        tmp_path / "flags.yaml",
        """
        flags:
          unified_router:
            routes: [main]
            default: legacyy
            targets:
              unified: [alice]
              shadow: [alice]
            rollout: {unified: 80, shadow: 30}
            rollout: {unified: 80}
        """,
    )
    result = strangler("check", str(path))
    assert result.returncode == 1
    assert result.stdout.splitlines() == [
        f"{path}:4:5: error: flags.unified_router.default: unknown mode 'legacyy'; "
        "modes are legacy, shadow, live, unified.",
        f"{path}:7:16: error: flags.unified_router.targets.shadow[0]: this user id is also "
        "listed at targets.unified[0]; a user can be targeted to only one mode.",
        f"{path}:9:5: error: duplicate key 'rollout' in flags.unified_router: it is already "
        "written at line 8; YAML would silently keep only the last one.",
    ]
    assert result.stderr == f"{path}: 3 errors, 0 warnings\n"
    assert "Traceback" not in result.stderr


def test_check_prints_warnings_but_exits_0(tmp_path: Path) -> None:
    path = write(
        tmp_path / "flags.yaml",
        """
        segments:
          nobody_uses_me: {users: [u1]}
        flags:
          f: {routes: [main]}
        """,
    )
    result = strangler("check", str(path))
    assert result.returncode == 0
    lines = result.stdout.splitlines()
    assert lines[0] == f"{path}:2:3: warning: segments.nobody_uses_me: no rule uses this segment."
    assert lines[1].startswith(f"{path}: ok: 1 flag, 1 segment, 0 rules, 1 warning; sha256 ")


def test_check_with_config_checks_routes_against_the_configured_ones(tmp_path: Path) -> None:
    path = write(tmp_path / "flags.yaml", "flags:\n  f:\n    routes: [main, chat]\n")
    assert strangler("check", str(path)).returncode == 0
    # The demo config names its JWT secret's variable, which this shell does not have:
    # checking flags needs no secret.
    result = strangler("check", str(path), "--config", str(DEMO_CONFIG))
    assert result.returncode == 1
    assert result.stdout == (
        f"{path}:3:20: error: flags.f.routes[1]: unknown route 'chat'; known routes are api, "
        "factory, isolated, legacy, legacy_test, main, main_user, main_v1.\n"
    )


def test_check_of_a_missing_file_is_one_line_and_exit_2(tmp_path: Path) -> None:
    result = strangler("check", str(tmp_path / "nope.yaml"))
    assert result.returncode == 2
    assert result.stdout == ""
    assert result.stderr == (
        f"strangler flags check: cannot read {tmp_path / 'nope.yaml'}: No such file or directory\n"
    )


# --- explain -------------------------------------------------------------------------------

EXPLAIN_FLAGS = """
segments:
  staff: {users: [ann]}
flags:
  unified_router:
    routes: [main, factory, main_user]
    targets: {unified: [alice], shadow: [carol]}
    rules:
      - {name: staff, segment: staff, mode: live}
      - name: acme_pros
        when:
          - {claim: org, equals: acme}
          - {claim: plan, one_of: [pro, enterprise]}
        mode: unified
      - {name: half_beta, when: [{claim: groups, equals: beta}], mode: shadow, rollout: 50}
    effective_at: 2030-01-01T00:00:00Z
    before: {default: shadow}
"""


def explain(tmp_path: Path, *args: str) -> subprocess.CompletedProcess[str]:
    flags = write(tmp_path / "flags.yaml", EXPLAIN_FLAGS)
    return strangler(
        "explain",
        "--config",
        str(DEMO_CONFIG),
        "--flags",
        str(flags),
        "--at",
        "2030-06-01T00:00:00Z",
        *args,
    )


def fields(result: subprocess.CompletedProcess[str]) -> dict[str, str]:
    assert result.returncode == 0, result.stderr
    return dict(
        (name.strip(), value.strip())
        for name, value in (line.split(":", 1) for line in result.stdout.splitlines())
    )


def test_explain_names_the_claim_rule_that_decided(tmp_path: Path) -> None:
    out = fields(
        explain(
            tmp_path, "--user", "u42", "--path", "/ws", "--claim", "org=acme", "--claim=plan=pro"
        )
    )
    assert out["route"] == "main (/ws)"
    assert out["flag"] == "unified_router"
    assert (out["mode"], out["reason"], out["rule"]) == ("unified", "rule", "acme_pros")
    assert out["bucket"] == "- (not read for this decision)"
    assert out["at"] == "2030-06-01T00:00:00Z"


def test_explain_a_target_beats_the_rules(tmp_path: Path) -> None:
    out = fields(
        explain(tmp_path, "--user", "carol", "--path", "/ws/factory", "--claim", "org=acme")
    )
    assert out["route"] == "factory (/ws/factory)"
    assert (out["mode"], out["reason"], out["rule"]) == ("shadow", "target", "-")


def test_explain_a_repeated_claim_is_a_list_and_a_partial_rule_shows_the_bucket(
    tmp_path: Path,
) -> None:
    inside = next(u for u in (f"user{n}" for n in range(1000)) if bucket(KEY, u) < 5000)
    outside = next(u for u in (f"user{n}" for n in range(1000)) if bucket(KEY, u) >= 5000)
    claims = ("--claim", "groups=alpha", "--claim", "groups=beta")
    out = fields(explain(tmp_path, "--user", inside, "--path", "/ws/someone", *claims))
    b = bucket(KEY, inside)
    assert out["route"] == "main_user (/ws/{user_id})"
    assert (out["mode"], out["reason"], out["rule"]) == ("shadow", "rule", "half_beta")
    assert out["bucket"] == f"{b} of 10000 ({b / 100:.2f}%)"
    missed = fields(explain(tmp_path, "--user", outside, "--path", "/ws", *claims))
    assert (missed["mode"], missed["reason"], missed["rule"]) == ("legacy", "default", "-")
    assert missed["bucket"].startswith(f"{bucket(KEY, outside)} of 10000")


def test_explain_segment_anonymous_and_before_effective_at(tmp_path: Path) -> None:
    staff = fields(explain(tmp_path, "--user", "ann", "--path", "/ws"))
    assert (staff["mode"], staff["reason"], staff["rule"]) == ("live", "rule", "staff")
    anonymous = fields(explain(tmp_path, "--path", "/ws"))
    assert (anonymous["mode"], anonymous["reason"]) == ("legacy", "anonymous")
    early = fields(
        explain(tmp_path, "--user", "alice", "--path", "/ws", "--at", "2029-12-31T23:00:00Z")
    )
    assert (early["mode"], early["reason"]) == ("shadow", "default")


def test_explain_an_unknown_path_is_exit_2_with_the_routes(tmp_path: Path) -> None:
    result = explain(tmp_path, "--user", "u1", "--path", "/chat")
    assert result.returncode == 2
    assert result.stderr.startswith(
        "strangler flags explain: no configured route serves the path /chat; routes are /ws (main)"
    )
    assert "Traceback" not in result.stderr


KEY = "unified_router"


# --- plan and status against a running proxy --------------------------------------------

CURRENT = """
flags:
  web:
    routes: [main]
    targets: {unified: [alice], shadow: [sam]}
    guard: {max_mismatch_ratio: 0.5, min_samples: 1000}
  api:
    routes: [api]
    targets: {unified: [alice]}
"""
CANDIDATE = """
flags:
  web:
    routes: [main]
    targets: {unified: [alice, bob, carl], live: [sam]}
    on_change: {drain: {rate: 20}}
    guard: {max_mismatch_ratio: 0.5, min_samples: 1000}
  api:
    routes: [api]
    targets: {unified: [bob], shadow: [alice], legacy: [dora]}
    rollout: {unified: 10, shadow: 15}
"""
# Who connects where; modes under CURRENT: alice unified, sam shadow, the rest legacy.
CLIENTS = (
    ("/ws", "alice"),
    ("/ws", "sam"),
    ("/ws", "bob"),
    ("/ws", "carl"),
    ("/api/v1/websocket", "alice"),
    ("/api/v1/websocket", "bob"),
    ("/api/v1/websocket", "dora"),
)
ADMIN_AUTH = "admin_auth: {token_env: STRANGLER_TEST_ADMIN_TOKEN}"


async def admin_get(p: Running, path: str) -> Any:
    headers = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
    async with (
        aiohttp.ClientSession() as s,
        s.get(f"http://127.0.0.1:{p.admin_port}{path}", headers=headers) as r,
    ):
        return await r.json()


async def close_code(ws: aiohttp.ClientWebSocketResponse) -> int | None:
    """The code of the close frame the proxy sent (frames before it are skipped)."""
    async with asyncio.timeout(10):
        while True:
            msg = await ws.receive()
            if msg.type is aiohttp.WSMsgType.CLOSE:
                return int(msg.data)
            if msg.type is aiohttp.WSMsgType.CLOSED:
                return None


async def test_plan_counts_open_connections_by_route_and_mode_without_applying(
    stack: Stack, tmp_path: Path, monkeypatch: Any
) -> None:
    monkeypatch.setenv("STRANGLER_TEST_ADMIN_TOKEN", ADMIN_TOKEN)
    await stack.backends()
    p = await stack.proxy(textwrap.dedent(CURRENT), extra=ADMIN_AUTH)
    admin = f"http://127.0.0.1:{p.admin_port}"
    candidate = write(tmp_path / "candidate.yaml", CANDIDATE)
    before = await admin_get(p, "/flags/status")
    audit = await admin_get(p, "/flags/audit")
    async with aiohttp.ClientSession() as s:
        sockets = []
        for path, user in CLIENTS:
            ws = await s.ws_connect(
                f"ws://127.0.0.1:{p.port}{path}",
                headers={"Authorization": f"Bearer {token(user)}"},
            )
            assert json.loads((await ws.receive(timeout=10)).data)["type"] == (
                "connection_established"
            )
            sockets.append(ws)

        code, out, err = await astrangler(
            "plan", str(candidate), "--admin", admin, STRANGLER_ADMIN_TOKEN=ADMIN_TOKEN
        )
        assert code == 0, err
        lines = out.splitlines()
        assert lines[0] == (
            f"flags {before['hash']} -> "
            f"{hashlib.sha256(candidate.read_bytes()).hexdigest()[:12]} "
            "(plan only: nothing is applied)"
        )
        assert lines[1] == "open connections now: 7; would change mode: 5"
        assert [line.split() for line in lines[2:7]] == [
            ["route", "from", "to", "connections", "on", "change"],
            ["api", "legacy", "unified", "1", "keep", "(finish", "in", "their", "mode)"],
            ["api", "unified", "shadow", "1", "keep", "(finish", "in", "their", "mode)"],
            ["main", "legacy", "unified", "2", "drain", "(closed", "1012,", "at", "most", "20/s)"],
            ["main", "shadow", "live", "1", "drain", "(closed", "1012,", "at", "most", "20/s)"],
        ]
        assert lines[7:] == [
            "population (users not targeted), per flag, before -> after:",
            "  api: legacy 100% -> unified 10%, shadow 15%, legacy 75%",
            "    targets: unified 1 -> legacy 1, shadow 1, unified 1",
            "  web: legacy 100% -> legacy 100%",
            "    targets: shadow 1, unified 1 -> live 1, unified 3",
        ]

        code, raw, _ = await astrangler(
            "plan", str(candidate), "--admin", admin, "--json", STRANGLER_ADMIN_TOKEN=ADMIN_TOKEN
        )
        assert code == 0
        moves = {
            (m["route"], m["from_mode"], m["to_mode"]): m["connections"]
            for m in json.loads(raw)["moves"]
        }
        assert moves == {
            ("api", "legacy", "unified"): 1,
            ("api", "unified", "shadow"): 1,
            ("main", "legacy", "unified"): 2,
            ("main", "shadow", "live"): 1,
        }

        # Nothing was applied: same flags, no reload, no drift, every client still open.
        after = await admin_get(p, "/flags/status")
        assert after["hash"] == before["hash"] and after["loaded_at"] == before["loaded_at"]
        assert after["drift"] == {"main": 0, "api": 0}
        assert await admin_get(p, "/flags/audit") == audit
        assert not any(ws.closed for ws in sockets)
        for ws in sockets:
            await ws.close()


async def test_plan_reports_a_rejected_file_and_an_unreachable_or_locked_proxy(
    stack: Stack, tmp_path: Path, monkeypatch: Any
) -> None:
    monkeypatch.setenv("STRANGLER_TEST_ADMIN_TOKEN", ADMIN_TOKEN)
    await stack.backends()
    p = await stack.proxy(textwrap.dedent(CURRENT), extra=ADMIN_AUTH)
    admin = f"http://127.0.0.1:{p.admin_port}"
    bad = write(tmp_path / "bad.yaml", "flags:\n  web: {routes: [main, chat]}\n")
    code, out, err = await astrangler(
        "plan", str(bad), "--admin", admin, STRANGLER_ADMIN_TOKEN=ADMIN_TOKEN
    )
    assert (code, out) == (1, "")
    assert err.startswith(
        f"rejected by the proxy: {bad}: flags.web.routes[1]: unknown route 'chat'"
    )

    code, _, err = await astrangler("plan", str(bad), "--admin", admin)
    assert code == 3  # the proxy could not be asked
    assert err == (
        f"strangler flags plan: the admin port at {admin} wants a token; set "
        "STRANGLER_ADMIN_TOKEN (or pass --config with admin_auth).\n"
    )

    nobody = f"http://127.0.0.1:{free_port()}"
    code, _, err = await astrangler("status", "--admin", nobody)
    assert code == 3
    assert err.startswith(
        f"strangler flags status: cannot reach the proxy's admin port at {nobody} ("
    )
    assert "Traceback" not in err


async def test_status_shows_the_flags_in_force_and_drift_until_moved_clients_leave(
    stack: Stack, tmp_path: Path, monkeypatch: Any
) -> None:
    monkeypatch.setenv("STRANGLER_TEST_ADMIN_TOKEN", ADMIN_TOKEN)
    await stack.backends()
    p = await stack.proxy(textwrap.dedent(CURRENT), extra=ADMIN_AUTH)
    admin = f"http://127.0.0.1:{p.admin_port}"
    flags_file = tmp_path / "p" / "flags.yaml"

    async def status() -> list[str]:
        code, out, err = await astrangler(
            "status", "--admin", admin, STRANGLER_ADMIN_TOKEN=ADMIN_TOKEN
        )
        assert code == 0, err
        return out.splitlines()

    async with aiohttp.ClientSession() as s:
        sockets = {}
        for path, user in CLIENTS:
            ws = await s.ws_connect(
                f"ws://127.0.0.1:{p.port}{path}",
                headers={"Authorization": f"Bearer {token(user)}"},
            )
            await ws.receive(timeout=10)
            sockets[(path, user)] = ws

        lines = await status()
        current = hashlib.sha256(flags_file.read_bytes()).hexdigest()[:12]
        assert lines[0].startswith(f"flags:       {current} from {flags_file}, loaded 20")
        assert lines[1:] == [
            "last reload: ok",
            "flag keys:   api, web",
            "open connections:",
            "  api: legacy 2, unified 1",
            "  main: legacy 2, shadow 1, unified 1",
            "drift:       0 open connections in a mode the flags in force no longer give",
            "guards:",
            "  web: ok; mismatch_ratio no samples yet (limit 0.5, judged from 1000 samples)",
            "golden path: last hour, this process, objective 99.5%: no turns ended",
        ]

        # Apply: save the candidate. web drains its moved clients; api keeps them.
        write(flags_file, CANDIDATE)
        applied = hashlib.sha256(flags_file.read_bytes()).hexdigest()[:12]

        async def settled() -> bool:
            lines = await status()
            return lines[0].split()[1] == applied and lines[6].startswith("drift:       2 ")

        await wait_for(settled, timeout=15)
        lines = await status()
        assert lines[6] == (
            "drift:       2 open connections in a mode the flags in force no longer give (api 2)"
        )
        # Drained: closed 1012 so they reconnect into their new mode.
        for key in (("/ws", "bob"), ("/ws", "carl"), ("/ws", "sam")):
            assert await close_code(sockets[key]) == 1012
        assert not sockets[("/api/v1/websocket", "bob")].closed  # api keeps its clients
        for ws in sockets.values():
            await ws.close()


async def test_status_reaches_the_admin_port_and_token_named_by_the_config(
    stack: Stack, tmp_path: Path, monkeypatch: Any
) -> None:
    monkeypatch.setenv("STRANGLER_TEST_ADMIN_TOKEN", ADMIN_TOKEN)
    await stack.backends()
    p = await stack.proxy(textwrap.dedent(CURRENT), extra=ADMIN_AUTH)
    # The proxy's own config, as a release manager has it: a wildcard admin address
    # (reached on loopback) and the token's variable set in this shell.
    config = tmp_path / "p" / "strangler.yaml"
    text = config.read_text().replace(
        "admin_listen: 127.0.0.1:0", f"admin_listen: 0.0.0.0:{p.admin_port}"
    )
    mine = write(tmp_path / "p" / "release.yaml", text)
    code, out, err = await astrangler(
        "status", "--config", str(mine), "--json", STRANGLER_TEST_ADMIN_TOKEN=ADMIN_TOKEN
    )
    assert code == 0, err
    assert json.loads(out)["flags"] == ["api", "web"]
    code, _, err = await astrangler("status", "--config", str(mine))
    assert code == 3  # no token in this shell: a clear refusal, not a traceback
    assert err == (
        f"strangler flags status: the admin port at http://127.0.0.1:{p.admin_port} wants a "
        "token; set STRANGLER_ADMIN_TOKEN (or pass --config with admin_auth).\n"
    )


# --- exit status: a failed reload, an unreachable proxy, workers ----------------------------


async def test_status_exits_1_while_a_failed_reload_leaves_the_previous_file_in_force(
    stack: Stack, tmp_path: Path, monkeypatch: Any
) -> None:
    monkeypatch.setenv("STRANGLER_TEST_ADMIN_TOKEN", ADMIN_TOKEN)
    await stack.backends()
    p = await stack.proxy(textwrap.dedent(CURRENT), extra=ADMIN_AUTH)
    admin = f"http://127.0.0.1:{p.admin_port}"
    flags_file = tmp_path / "p" / "flags.yaml"
    in_force = hashlib.sha256(flags_file.read_bytes()).hexdigest()[:12]

    async def status(*extra: str) -> tuple[int, str, str]:
        return await astrangler(
            "status", "--admin", admin, *extra, STRANGLER_ADMIN_TOKEN=ADMIN_TOKEN
        )

    assert (await status())[0] == 0
    write(flags_file, "flags:\n  web: {routes: [main, chat]}\n")  # an unknown route

    async def rejected() -> bool:
        return bool((await admin_get(p, "/flags/status"))["last_error"])

    await wait_for(rejected, timeout=15)
    code, out, err = await status()
    assert code == 1
    lines = out.splitlines()
    assert lines[0].startswith(f"flags:       {in_force} from {flags_file}")
    assert lines[1].startswith("last reload: error: ")
    assert "unknown route 'chat'" in lines[1]
    assert err == (
        f"strangler flags status: the last reload failed; the flags {in_force} stay in force.\n"
    )
    # The code does not depend on the format a script asked for.
    code, raw, _ = await status("--json")
    assert code == 1 and json.loads(raw)["hash"] == in_force

    write(flags_file, CURRENT)  # fixed: the same file as before, reloaded cleanly

    async def recovered() -> bool:
        return (await admin_get(p, "/flags/status"))["last_error"] is None

    await wait_for(recovered, timeout=15)
    code, out, err = await status()
    assert (code, err) == (0, "")
    assert out.splitlines()[1] == "last reload: ok"


async def test_explain_live_and_a_config_that_cannot_be_read_have_their_own_codes(
    tmp_path: Path,
) -> None:
    nobody = f"http://127.0.0.1:{free_port()}"
    flags = write(tmp_path / "flags.yaml", EXPLAIN_FLAGS)
    code, out, err = await astrangler(
        "explain", "-c", str(DEMO_CONFIG), "--flags", str(flags), "--path", "/ws", "--live",
        "--admin", nobody,
    )  # fmt: skip
    assert (code, out) == (3, "")
    assert err.startswith(
        f"strangler flags explain: cannot reach the proxy's admin port at {nobody}"
    )
    missing = tmp_path / "nope.yaml"
    code, _, err = await astrangler("status", "--config", str(missing))
    assert code == 2  # the input is wrong, not the proxy
    assert err.startswith("strangler flags status: configuration error: ")
    assert "Traceback" not in err


async def test_under_workers_status_and_plan_answer_per_worker_and_fail_on_any(
    tmp_path: Path, upstreams: Any
) -> None:
    legacy, unified = upstreams
    _, admin_port = write_process_config(
        tmp_path,
        legacy_url=legacy.url,
        unified_url=f"{unified.url}/v1/ws",
        flags=textwrap.dedent(CURRENT),
        routes=textwrap.dedent(WORKER_ROUTES),
        poll_interval=0.05,
    )
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "strangler.proxy", "run", "--workers", "2",
        "--config", str(tmp_path / "strangler.yaml"),
        env={**os.environ, "STRANGLER_TEST_SECRET": SECRET},
        stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.DEVNULL,
    )  # fmt: skip
    admin = f"http://127.0.0.1:{admin_port}"
    try:
        await wait_for(lambda: admin_ready(admin_port), timeout=20)
        code, out, err = await astrangler("status", "--admin", admin)
        assert (code, err) == (0, "")
        lines = out.splitlines()
        headers = [line for line in lines if line.startswith("worker ")]
        assert [h.split(" (pid ")[0] for h in headers] == ["worker 0", "worker 1"]
        assert lines.count("  last reload: ok") == 2

        candidate = write(tmp_path / "candidate.yaml", CANDIDATE)
        code, out, err = await astrangler("plan", str(candidate), "--admin", admin)
        assert (code, err) == (0, "")
        assert sum(line.startswith("  flags ") for line in out.splitlines()) == 2
        bad = write(tmp_path / "bad.yaml", "flags:\n  web: {routes: [main, chat]}\n")
        code, out, err = await astrangler("plan", str(bad), "--admin", admin)
        assert (code, out) == (1, "")
        assert err.startswith(f"rejected by the proxy: {bad}: flags.web.routes[1]: unknown route")

        write(tmp_path / "flags.yaml", "flags:\n  web: {routes: [main, chat]}\n")

        async def rejected() -> bool:
            code, out, _ = await astrangler("status", "--admin", admin)
            return code == 1 and out.count("  last reload: error: ") == 2

        await wait_for(rejected, timeout=20)
        _, _, err = await astrangler("status", "--admin", admin)
        assert err.startswith("strangler flags status: the last reload failed on 2 of 2 workers")
    finally:
        proc.send_signal(signal.SIGTERM)
        await asyncio.wait_for(proc.wait(), timeout=15)


# Routes CURRENT and CANDIDATE name, for a proxy run as a process.
WORKER_ROUTES = """
routes:
  - {name: main, path: /ws, dialect: main, auth: accept_then_frame}
  - {name: api, path: /api/v1/websocket, dialect: main, auth: accept_then_frame}
"""


# --- export --flagd ------------------------------------------------------------------------

EXPORTABLE = """
segments:
  staff: {users: [ann]}
flags:
  web:
    routes: [main]
    targets: {unified: [alice]}
    rules:
      - {name: staff, segment: staff, mode: live, rollout: 50}
    rollout: {unified: 12.5, shadow: 10}
  api:
    routes: [api]
    kill_switch: true
"""


def test_export_prints_the_flagd_definition_of_every_flag_or_of_one(tmp_path: Path) -> None:
    from strangler.flags.flagd import flagd_document
    from strangler.flags.load import load_flags

    path = write(tmp_path / "flags.yaml", EXPORTABLE)
    flagset = load_flags(path)
    result = strangler("export", "--flagd", str(path))
    assert (result.returncode, result.stderr) == (0, "")
    assert json.loads(result.stdout) == flagd_document(flagset.flags.values())
    only = strangler("export", "--flagd", str(path), "--flag", "web")
    assert only.returncode == 0
    assert list(json.loads(only.stdout)["flags"]) == ["web"]


def test_export_refuses_a_flag_it_cannot_express_exactly_and_prints_nothing(
    tmp_path: Path,
) -> None:
    path = write(
        tmp_path / "flags.yaml",
        EXPORTABLE + "  claims:\n    routes: [factory]\n"
        "    rules: [{name: pros, when: [{claim: plan, equals: pro}], mode: unified}]\n",
    )
    result = strangler("export", "--flagd", str(path))
    assert (result.returncode, result.stdout) == (1, "")
    assert result.stderr.splitlines() == [
        f"{path}: flags.claims: no exact flagd equivalent: rule 'pros' tests token claims "
        "(plan); flagd would read them from a context the caller builds, and claim matching "
        "(list claims, numbers and booleans as text) has no exact JsonLogic equivalent.",
        f"{path}: nothing exported; --flag KEY exports the flags that have one.",
    ]
    assert strangler("export", "--flagd", str(path), "--flag", "web").returncode == 0


def test_export_usage_and_input_errors_exit_2(tmp_path: Path) -> None:
    path = write(tmp_path / "flags.yaml", EXPORTABLE)
    no_format = strangler("export", str(path))
    assert no_format.returncode == 2
    assert "the following arguments are required: --flagd" in no_format.stderr
    unknown = strangler("export", "--flagd", str(path), "--flag", "nope")
    assert unknown.returncode == 2
    assert unknown.stderr == (
        f"strangler flags export: {path} has no flag 'nope'; its flags are api, web.\n"
    )
    broken = write(tmp_path / "broken.yaml", "flags:\n  web: {routes: [main], default: nah}\n")
    invalid = strangler("export", "--flagd", str(broken))
    assert (invalid.returncode, invalid.stdout) == (2, "")
    assert invalid.stderr.startswith(
        "strangler flags export: the flag file has errors (see strangler flags check): "
    )
