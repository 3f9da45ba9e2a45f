"""RequestLog: parser refusals become one counted line; real failures keep their report."""

from __future__ import annotations

import logging

import pytest
from aiohttp.http_exceptions import BadHttpMessage, LineTooLong
from prometheus_client import CollectorRegistry, Counter

from strangler.proxy.telemetry.request_log import RequestLog


def counter() -> tuple[Counter, CollectorRegistry]:
    registry = CollectorRegistry()
    return Counter("refused", "test", registry=registry), registry


def test_parser_refusal_is_counted_and_logged_without_the_request_bytes(
    caplog: pytest.LogCaptureFixture,
) -> None:
    refused, registry = counter()
    log = RequestLog(refused, logging.getLogger("test.request_log"))
    caplog.set_level(logging.DEBUG, logger="test.request_log")
    secret = "Bearer eyJhbGciOiJIUzI1NiJ9.secret-part.signature"
    log.exception("Error handling request from %s", "127.0.0.1", exc_info=LineTooLong(secret, 8190))
    log.debug("Error handling request from %s", "127.0.0.1", exc_info=BadHttpMessage(secret))
    assert registry.get_sample_value("refused_total") == 2
    assert [r.levelno for r in caplog.records] == [logging.INFO, logging.INFO]
    assert all(r.exc_info is None for r in caplog.records)
    assert "LineTooLong" in caplog.text and "secret-part" not in caplog.text


def test_other_failures_keep_their_traceback(caplog: pytest.LogCaptureFixture) -> None:
    refused, registry = counter()
    log = RequestLog(refused, logging.getLogger("test.request_log"))
    caplog.set_level(logging.DEBUG, logger="test.request_log")
    try:
        raise RuntimeError("a bug in a handler")
    except RuntimeError:
        log.exception("Error handling request")
    assert registry.get_sample_value("refused_total") == 0
    (record,) = caplog.records
    assert record.levelno == logging.ERROR and record.exc_info is not None
