"""A legacy deployment's HS256 secret may be short: refused by default, with the error on
the key that holds it; accepted on an explicit opt-in that is heard at every start."""

from __future__ import annotations

import logging
import subprocess
import sys
from pathlib import Path

import jwt
import pytest

from strangler.proxy.config import ConfigError, parse_config
from strangler.proxy.edge.identity import JwtVerifier
from tests.unit.proxy.config.test_config import GOOD

SHORT = "legacy-secret"  # 13 bytes: what the legacy deployment happens to use


def short_secret_config(extra: str = "", source: str = "env") -> str:
    jwt = (
        "jwt: {secret_env: CFG_TEST_SECRET,"
        if source == "env"
        else "jwt: {secret_file: secret.txt,"
    )
    return GOOD.replace("jwt: {secret_env: CFG_TEST_SECRET,", jwt + extra, 1)


@pytest.fixture(autouse=True)
def short(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    monkeypatch.setenv("CFG_TEST_SECRET", SHORT)
    (tmp_path / "secret.txt").write_text(SHORT + "\n")
    return tmp_path


@pytest.mark.parametrize("source", ["env", "file"])
def test_a_short_secret_is_refused_and_the_error_names_where_the_secret_comes_from(
    source: str, short: Path
) -> None:
    with pytest.raises(ConfigError) as caught:
        parse_config(short_secret_config(source=source), str(short / "strangler.yaml"))
    error = caught.value
    assert error.key == ("jwt.secret_env" if source == "env" else "jwt.secret_file")
    assert "13 bytes" in error.problem or "13" in error.problem
    assert "jwt.allow_short_secret: true" in error.problem
    assert SHORT not in str(error)  # the secret itself is never repeated


def test_the_opt_in_accepts_it_with_a_warning_and_verification_works(short: Path) -> None:
    config = parse_config(
        short_secret_config(" allow_short_secret: true,"), str(short / "strangler.yaml")
    )
    (warning,) = config.warnings
    assert "13 bytes, under the 32 that HS256 needs" in warning
    assert SHORT not in warning
    # Tokens signed with the short secret verify, and pyjwt's per-call warning (an error
    # under this suite's filterwarnings) is not raised on every handshake.
    claims = {"sub": "alice", "exp": 4102444800, "aud": "netra-platform"}
    token = jwt.encode(claims, SHORT, algorithm="HS256")
    verifier = JwtVerifier(config.jwt)
    assert verifier.verify(token).user_id == "alice"


def test_a_long_enough_secret_gives_no_warning(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CFG_TEST_SECRET", "x" * 32)
    config = parse_config(short_secret_config(" allow_short_secret: true,"), "s.yaml")
    assert config.warnings == ()


def test_check_config_prints_the_warning_and_still_exits_0(short: Path) -> None:
    (short / "strangler.yaml").write_text(short_secret_config(" allow_short_secret: true,"))
    (short / "flags.yaml").write_text("flags: {}\n")
    result = subprocess.run(
        [sys.executable, "-m", "strangler.proxy", "check-config", "-c", "strangler.yaml"],
        capture_output=True,
        text=True,
        cwd=short,
        env={"CFG_TEST_SECRET": SHORT, "PATH": "/usr/bin:/bin"},
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    assert "warning: jwt: the HMAC secret is 13 bytes" in result.stderr
    assert SHORT not in result.stderr + result.stdout


async def test_the_server_logs_the_warning_at_start(
    short: Path, caplog: pytest.LogCaptureFixture
) -> None:
    from strangler.proxy.runtime.server import start

    text = short_secret_config(" allow_short_secret: true,")
    text = text.replace("listen: 127.0.0.1:8080", "listen: 127.0.0.1:0")
    text = text.replace('admin_listen: "[::1]:8090"', "admin_listen: 127.0.0.1:0")
    (short / "flags.yaml").write_text("flags: {}\n")
    caplog.set_level(logging.WARNING)
    running = await start(parse_config(text, str(short / "strangler.yaml")))
    try:
        warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
        assert any("allow_short_secret is true" in r.getMessage() for r in warnings)
    finally:
        await running.stop()
