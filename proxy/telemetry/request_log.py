"""How the client listener reports requests its HTTP parser refused.

aiohttp answers a request it cannot parse (a header over 8 KiB, a bare CR or LF in a
header, a folded line, ...) with 400 before any handler runs, and logs it as an ERROR
with a traceback whose message quotes the raw request bytes, tokens included. Those
are the client's fault, not the proxy's: `RequestLog` logs one line naming the kind of
error and counts it as bad input. Everything else passes to aiohttp's logger unchanged,
so a real failure in a handler still gets its full report.
"""

from __future__ import annotations

import logging
import sys
from typing import Any

from aiohttp.http_exceptions import HttpProcessingError
from prometheus_client import Counter

server_logger = logging.getLogger("aiohttp.server")


class RequestLog(logging.LoggerAdapter[logging.Logger]):
    """aiohttp's server logger, with parser refusals as one counted line, no traceback."""

    def __init__(self, refused: Counter, logger: logging.Logger = server_logger) -> None:
        super().__init__(logger, {})
        self._refused = refused

    def log(self, level: int, msg: object, *args: object, **kwargs: Any) -> None:
        exc_info = kwargs.get("exc_info")
        exc = exc_info if isinstance(exc_info, BaseException) else None
        if exc_info is True:
            exc = sys.exc_info()[1]
        if isinstance(exc, HttpProcessingError):
            self._refused.inc()
            # The class name only: the exception's message quotes the request bytes.
            self.logger.info("refused a malformed HTTP request (%s)", type(exc).__name__)
            return
        super().log(level, msg, *args, **kwargs)
