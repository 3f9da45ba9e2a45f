"""Log formats and the connection log: JSON lines with the record's fields, text with
key=value, and the `logging:` section of strangler.yaml."""

from __future__ import annotations

import io
import json
import logging
import sys
from collections.abc import Iterator

import pytest

from strangler.proxy.config import ConfigError, LoggingSettings, parse_config
from strangler.proxy.telemetry.connection_log import ConnectionLog
from strangler.proxy.telemetry.logs import JsonFormatter, TextFormatter, setup_logging

BASE = """
routes:
  - {name: main, path: /ws, dialect: main, auth: accept_then_frame}
flags: {file: flags.yaml}
jwt: {secret_env: LOGS_TEST_SECRET}
"""


@pytest.fixture(autouse=True)
def secret(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LOGS_TEST_SECRET", "s3cret-s3cret-s3cret-s3cret-s3cret")


@pytest.fixture
def restore_root_logging() -> Iterator[None]:
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    yield
    root.handlers[:] = handlers
    root.setLevel(level)


def record(msg: str = "connection opened", **extra: object) -> logging.LogRecord:
    rec = logging.LogRecord("strangler.connections", logging.INFO, __file__, 1, msg, None, None)
    rec.__dict__.update(extra)
    return rec


def test_json_line_has_time_level_logger_message_and_the_extra_fields() -> None:
    line = JsonFormatter().format(record(route="main", mode="unified", close_code=1000))
    assert "\n" not in line
    data = json.loads(line)
    assert data["level"] == "info"
    assert data["logger"] == "strangler.connections"
    assert data["message"] == "connection opened"
    assert data["time"].endswith("Z") and "T" in data["time"]
    assert (data["route"], data["mode"], data["close_code"]) == ("main", "unified", 1000)
    assert "args" not in data and "levelno" not in data  # no LogRecord internals


def test_json_keeps_an_exception_on_the_same_line() -> None:
    try:
        raise ValueError("boom")
    except ValueError:
        rec = logging.LogRecord("x", logging.ERROR, __file__, 1, "failed", None, None)
        rec.exc_info = sys.exc_info()
    data = json.loads(JsonFormatter().format(rec))
    assert "ValueError: boom" in data["exception"]


def test_text_line_appends_the_extra_fields_as_key_value() -> None:
    line = TextFormatter().format(record(route="main", outcome="client_closed"))
    assert line.endswith(
        "strangler.connections: connection opened route=main outcome=client_closed"
    )


def test_connection_log_writes_one_record_on_open_and_one_on_close(
    caplog: pytest.LogCaptureFixture,
) -> None:
    entry = ConnectionLog("main_user", "unified", "target", "unified_router", "unified", "main")
    with caplog.at_level(logging.INFO, logger="strangler.connections"):
        entry.opened()
        entry.closed("client_closed", 1000)
    opened, closed = caplog.records
    assert opened.getMessage() == "connection opened"
    assert closed.getMessage() == "connection closed"
    fields = {
        "route": "main_user",
        "mode": "unified",
        "reason": "target",
        "flag": "unified_router",
        "backend": "unified",
        "dialect": "main",
    }
    for rec in (opened, closed):
        assert {k: getattr(rec, k) for k in fields} == fields
    assert (closed.outcome, closed.close_code) == ("client_closed", 1000)  # type: ignore[attr-defined]
    assert closed.duration_s >= 0  # type: ignore[attr-defined]


def test_setup_logging_json_writes_json_lines_at_the_level(restore_root_logging: None) -> None:
    out = io.StringIO()
    setup_logging("warning", "json", stream=out)
    logging.getLogger("strangler.test").info("not shown")
    logging.getLogger("strangler.test").warning("shown", extra={"route": "main"})
    lines = out.getvalue().splitlines()
    assert len(lines) == 1
    assert json.loads(lines[0])["route"] == "main"


def test_logging_section_defaults_to_text_at_info() -> None:
    assert parse_config(BASE, "/etc/strangler.yaml").logging == LoggingSettings("text", "info")


def test_logging_section_takes_json_and_a_level() -> None:
    config = parse_config(BASE + "logging: {format: json, level: DEBUG}\n", "/etc/strangler.yaml")
    assert config.logging == LoggingSettings("json", "debug")


@pytest.mark.parametrize(
    ("section", "key", "problem"),
    [
        ("{format: xml}", "logging.format", "must be text or json"),
        ("{level: loud}", "logging.level", "must be one of debug, info"),
        ("{format: json, colour: true}", "logging.colour", "unknown key"),
    ],
)
def test_a_bad_logging_section_names_the_key(section: str, key: str, problem: str) -> None:
    with pytest.raises(ConfigError) as caught:
        parse_config(BASE + f"logging: {section}\n", "/etc/strangler.yaml")
    assert key in str(caught.value)
    assert problem in str(caught.value)
