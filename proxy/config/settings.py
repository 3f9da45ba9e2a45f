"""What the proxy reads from its configuration: frozen, slotted objects, read on every
handshake. The sections the file spells as they are read (relay, limits, tickets,
logging) are pydantic dataclasses and their own schema; load.py builds the others."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path
from typing import Annotated, Any, Literal, get_args
from urllib.parse import urlsplit

from pydantic import (
    AfterValidator,
    BeforeValidator,
    Field,
    StrictBool,
    StrictFloat,
    StrictInt,
    StrictStr,
)
from pydantic.dataclasses import dataclass as pydantic_dataclass

from strangler.legacy_adapters.base import Greeting
from strangler.proxy.config.compare import CompareSettings
from strangler.proxy.config.errors import SECTION
from strangler.proxy.config.jwt import JwtSettings


def setting(default: Any, description: str, **constraints: Any) -> Any:
    """A key's default, and the sentence editors show for it (docs/strangler.schema.json)."""
    return Field(default, description=description, **constraints)


def _http_url(url: str) -> str:
    if urlsplit(url).scheme not in ("http", "https"):
        raise ValueError(f"must be an http:// or https:// URL, got {url!r}")
    return url


# Close codes a server may send (RFC 6455 7.4): 1005, 1006 and 1015 are for reporting only.
_SENDABLE_CLOSE = frozenset(range(1000, 1004)) | frozenset(range(1007, 1015))


def _close_code(code: int) -> int:
    if code not in _SENDABLE_CLOSE and not 3000 <= code <= 4999:
        raise ValueError(
            f"must be a close code a server may send (1000-1014, 3000-4999), got {code}"
        )
    return code


Seconds = Annotated[StrictFloat, Field(gt=0)]
Count = Annotated[StrictInt, Field(ge=1)]
CloseCode = Annotated[StrictInt, AfterValidator(_close_code)]
runtime = pydantic_dataclass(frozen=True, slots=True, config=SECTION)


class AuthStyle(StrEnum):
    """How a route refuses a client whose credentials fail, as its legacy code did."""

    ACCEPT_THEN_FRAME = "accept_then_frame"  # main: accept, AUTH_FAILED frame, close 1008
    REFUSE_HANDSHAKE = "refuse_handshake"  # factory: HTTP 403 before accept
    ACCEPT_THEN_CLOSE = "accept_then_close"  # isolated: accept, close 1008, no frame
    NONE = "none"  # legacy compatibility routes: no authentication


Dialect = Literal["main", "main_payload", "flat", "factory", "isolated", "legacy"]
DIALECTS = frozenset(get_args(Dialect))

# How each dialect's legacy code refused a client: used when `?mode=` on /ws selects a
# dialect other than the route's own, since the legacy backend then refused that way.
DIALECT_AUTH = {
    "main": AuthStyle.ACCEPT_THEN_FRAME,
    "main_payload": AuthStyle.ACCEPT_THEN_FRAME,
    "flat": AuthStyle.ACCEPT_THEN_FRAME,
    "factory": AuthStyle.REFUSE_HANDSHAKE,
    "isolated": AuthStyle.ACCEPT_THEN_CLOSE,
    "legacy": AuthStyle.NONE,
}

# The legacy HTTP endpoints that sit beside the sockets (LEGACY_SURFACE.md).
DEFAULT_HTTP_PASSTHROUGH = (
    *("/ws/health", "/ws/beacon", "/ws/config", "/ws/stats"),
    *("/ws/factory/status", "/ws/factory/health"),
    *("/ws/isolated/health", "/ws/isolated/stats", "/ws/isolated/config"),
    *("/api/v1/websocket", "/api/websocket/ticket"),
)

LogLevel = Literal["debug", "info", "warning", "error", "critical"]
LOG_LEVELS = get_args(LogLevel)


@dataclass(frozen=True, slots=True)
class Address:
    host: str
    port: int


@dataclass(frozen=True, slots=True)
class Backend:
    """One upstream: `legacy` keeps the client's path, `unified` has a single path."""

    name: str
    url: str
    connect_timeout: float
    # unified only: serve the user by legacy when the router cannot be reached (or
    # answers 502/503/504) instead of refusing the client.
    fallback: bool = True
    # unified only: the router redeems `?ticket=` itself; else tickets go to legacy.
    redeems_tickets: bool = False

    @property
    def secure(self) -> bool:
        return self.url.startswith("wss://")


@dataclass(frozen=True, slots=True)
class Route:
    """One legacy entry point the proxy accepts."""

    name: str
    path: str
    dialect: str
    auth: AuthStyle
    anonymous: bool
    pattern: re.Pattern[str] | None  # None for a literal path
    # The close code this route's legacy code sent when its backend died mid-session;
    # None: relay.upstream_lost_close_code.
    upstream_lost_close_code: int | None = None
    # The first frame's shape as this route's legacy code sent it; None: the dialect's.
    greeting: Greeting | None = None


@dataclass(frozen=True, slots=True)
class FlagsSettings:
    file: Path
    poll_interval: float


@runtime
class RelaySettings:
    """How messages are relayed, and how a session ends."""

    max_message_bytes: Annotated[StrictInt, Field(ge=1024)] = setting(
        4 * 1024 * 1024, "Largest message relayed, in bytes; a larger one is closed 1009."
    )
    grace_period: StrictFloat = setting(10.0, "Seconds open sessions get at shutdown.")
    close_timeout: Seconds = setting(5.0, "Seconds to wait for the other side's close frame.")
    # 1006 may never be sent; a route can name the code its own legacy code used.
    upstream_lost_close_code: CloseCode = setting(
        1011, "Close code a client is sent when its backend vanishes without one."
    )
    # proxy/relay/tunnel.py: identity connections without a secondary, after the handshake.
    tunnel: Annotated[
        Literal["auto", "off"],
        # YAML 1.1 reads a bare `off` as false (and `on` as true): take those as meant.
        BeforeValidator(lambda v: ("auto" if v else "off") if isinstance(v, bool) else v),
    ] = setting("auto", "auto: connections nobody compares go as bytes; off: frame by frame.")
    # proxy/relay/turns.py: a turn not ended by then counts as timed out.
    turn_timeout: Seconds = setting(
        300.0, "Seconds a turn may take from its start before it counts as timed out."
    )


@runtime
class LimitSettings:
    """What one proxy process admits, and how it says no."""

    max_connections: Count = setting(20000, "Open client connections, at most.")
    max_connections_per_ip: Count = setting(200, "Open client connections per IP, at most.")
    # close_1008 is the legacy style: accept, close 1008 "Too many concurrent connections".
    over_limit: Literal["close_1008", "refuse_503"] = setting(
        "close_1008", "How an over-limit client is told."
    )
    # A peer that stopped reading while the other side keeps sending.
    stalled_timeout: Seconds = setting(30.0, "Seconds a socket may stay unwritable.")
    stalled_close_code: Literal[1008, 1009] = setting(1008, "Close code for a stalled peer.")
    # A client that withholds its handshake would otherwise hold an uncounted socket for
    # an hour; it is also how long an idle keep-alive HTTP connection stays.
    header_timeout: Seconds = setting(10.0, "Seconds a new connection has for its request head.")


@runtime
class TicketSettings:
    """Where to ask who a `?ticket=` stands for; no URL: ticket users are anonymous."""

    introspection_url: Annotated[StrictStr, AfterValidator(_http_url)] | None = setting(
        None, "http(s) URL that answers who a ticket stands for."
    )
    cache_ttl: Seconds = setting(30.0, "Seconds an answer is kept.")
    timeout: Seconds = setting(2.0, "Seconds to wait for an answer.")


@runtime
class FleetSettings:
    """The Prometheus that scrapes every replica: fleet-wide guards and drain rates."""

    prometheus_url: Annotated[StrictStr, AfterValidator(_http_url)] | None = setting(
        None,
        "http(s) URL of the Prometheus scraping every replica; none: guards with "
        "source fleet judge locally, fleet drain rates use `replicas`.",
    )
    selector: StrictStr = setting(
        'job="strangler"',
        "PromQL label matchers that pick this fleet's proxies, e.g. "
        'namespace="chat", job="chat/strangler".',
    )
    poll_interval: Seconds = setting(15.0, "Seconds between looks at the fleet's guards.")
    timeout: Seconds = setting(5.0, "Seconds a query may take; longer counts as unreachable.")
    replicas: Count | None = setting(
        None, "Replica count a fleet drain rate is divided by when Prometheus cannot say."
    )


Share = Annotated[StrictFloat, Field(gt=0, le=1)]


@runtime
class ShedSettings:
    """When shadow work gives way to the primary's (proxy/shadow/shed.py): the budget
    it may take, and how quickly shedding steps up and back."""

    enabled: StrictBool = setting(True, "Shed shadow work when it would delay the primary.")
    max_loop_lag_ms: Annotated[StrictFloat, Field(gt=0)] = setting(
        20.0, "Event-loop lag, in ms, past which shadow work is shed."
    )
    max_shadow_cpu_share: Share = setting(
        0.3, "Share of the process's time the shadow comparison may take."
    )
    max_process_cpu_share: Share = setting(
        0.9, "Share of one core the whole process may use before shadow work gives way."
    )
    sample_ms: Annotated[StrictFloat, Field(gt=0)] = setting(
        50.0, "How often lag and the comparison's time are sampled, in ms."
    )
    escalate_after: Count = setting(
        2, "Samples over budget in a row before shedding steps up a level."
    )
    recover_after: Count = setting(
        20, "Calm samples (under half the budget) in a row before it steps back a level."
    )
    close_share: Share = setting(
        0.25, "Share of the open secondaries closed per sample over budget at the last level."
    )


@dataclass(frozen=True, slots=True)
class ShadowSettings:
    """The compared secondary of `shadow` and `live` connections."""

    enabled: bool = True  # the global switch (also flipped at runtime on the admin port)
    max_secondary_connections: int = 1000
    queue_frames: int = 256  # per connection; overflow drops secondary data, counted
    mismatch_samples: int = 100  # recent non-matching turns kept for the admin port
    compare: CompareSettings = field(default_factory=CompareSettings)
    redact: tuple[str, ...] = ()  # dotted event paths blanked in stored transcripts
    mismatch_log: Path | None = None  # JSONL file of non-matching turns, rotated
    mismatch_log_max_bytes: int = 10 * 1024 * 1024
    mismatch_log_backups: int = 3
    shed: ShedSettings = field(default_factory=ShedSettings)


@runtime
class LoggingSettings:
    """How the process logs: `text` for people, `json` (one object a line) for collectors."""

    format: Literal["text", "json"] = setting("text", "text, or json lines.")
    level: Annotated[
        LogLevel, BeforeValidator(lambda v: v.lower() if isinstance(v, str) else v)
    ] = setting("info", "Least severe level logged.")


@dataclass(frozen=True, slots=True)
class Config:
    """The whole of one `strangler.yaml`, as the proxy reads it."""

    source: str
    listen: Address
    admin_listen: Address
    legacy: Backend
    unified: Backend
    routes: tuple[Route, ...]
    flags: FlagsSettings
    jwt: JwtSettings
    relay: RelaySettings
    http_passthrough: tuple[str, ...] = field(default=DEFAULT_HTTP_PASSTHROUGH)
    tickets: TicketSettings = field(default_factory=TicketSettings)
    shadow: ShadowSettings = field(default_factory=ShadowSettings)
    limits: LimitSettings = field(default_factory=LimitSettings)
    admin_token: str | None = None  # a bearer token the admin port requires, if set
    admin_allowed_hosts: tuple[str, ...] = ()  # more Host names the admin port answers
    logging: LoggingSettings = field(default_factory=LoggingSettings)
    fleet: FleetSettings = field(default_factory=FleetSettings)

    @property
    def route_names(self) -> frozenset[str]:
        return frozenset(r.name for r in self.routes)

    @property
    def warnings(self) -> tuple[str, ...]:
        """Settings accepted on the operator's word that must be heard at every start
        (the log at WARNING, `strangler check-config` on stderr)."""
        return self.jwt.warnings()

    def backend(self, name: str) -> Backend:
        return self.legacy if name == "legacy" else self.unified
