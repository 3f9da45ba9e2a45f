"""The one configuration schema: `strangler.yaml`, loaded and validated at start-up.

Every key the proxy reads is declared here, with its default. A file that does not fit
raises `ConfigError` naming the file, the dotted key and what is wrong; the CLI turns
that into one line on stderr and exit status 2.

```yaml
listen: 127.0.0.1:8080            # client-facing address
admin_listen: 127.0.0.1:9090      # /metrics, /healthz, /readyz
backends:
  legacy:  {url: ws://127.0.0.1:8091, connect_timeout: 5}        # the route's own path is kept
  unified: {url: ws://127.0.0.1:8092/v1/ws, connect_timeout: 5}  # one path for every route
routes:                           # first match wins; literal paths before patterns
  - {name: main, path: /ws, dialect: main, auth: accept_then_frame, anonymous: true}
  - {name: main_alias, path: "/ws/{user_id}", dialect: main_payload, auth: accept_then_frame}
flags: {file: flags.yaml, poll_interval: 1.0}   # relative paths are relative to this file
jwt:
  algorithms: [HS256]
  secret_env: STRANGLER_JWT_SECRET   # or secret_file; public_key_file for RS256
  issuer: netra-auth-service
  audience: [netra-platform]
  leeway: 30
  user_claim: sub
relay: {max_message_bytes: 4194304, grace_period: 10, close_timeout: 5}
http_passthrough: [/ws/health, /ws/config]   # plain HTTP paths forwarded to legacy
```
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import yaml

from strangler.proxy.config.compare import CompareSettings
from strangler.proxy.config.jwt import JwtSettings


class ConfigError(Exception):
    """The configuration file does not fit the schema."""

    def __init__(self, source: str, key: str, problem: str) -> None:
        super().__init__(f"{source}: {key or '<top>'}: {problem}")
        self.source = source
        self.key = key
        self.problem = problem


class AuthStyle(StrEnum):
    """How a route refuses a client whose credentials fail, as its legacy code did."""

    ACCEPT_THEN_FRAME = "accept_then_frame"  # main: accept, AUTH_FAILED frame, close 1008
    REFUSE_HANDSHAKE = "refuse_handshake"  # factory: HTTP 403 before accept
    ACCEPT_THEN_CLOSE = "accept_then_close"  # isolated: accept, close 1008, no frame
    NONE = "none"  # legacy compatibility routes: no authentication


DIALECTS = frozenset({"main", "main_payload", "flat", "factory", "isolated", "legacy"})

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
    "/ws/health",
    "/ws/beacon",
    "/ws/config",
    "/ws/stats",
    "/ws/factory/status",
    "/ws/factory/health",
    "/ws/isolated/health",
    "/ws/isolated/stats",
    "/ws/isolated/config",
    "/api/v1/websocket",
    "/api/websocket/ticket",
)

_NAME = re.compile(r"^[a-z][a-z0-9_]*$")

_SEGMENT_PARAM = re.compile(r"^\{[A-Za-z_][A-Za-z0-9_]*\}$")

# Close codes a server may send (RFC 6455 7.4): 1005, 1006 and 1015 are for reporting only.
_SENDABLE_CLOSE = frozenset(range(1000, 1004)) | frozenset(range(1007, 1015))


def _close_code(r: _Reader, name: str, default: int | None) -> int | None:
    code: int | None = r.get(name, int, default)
    if code is not None and code not in _SENDABLE_CLOSE and not 3000 <= code <= 4999:
        raise r.fail(
            name, f"must be a close code a server may send (1000-1014, 3000-4999), got {code}"
        )
    return code


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


@dataclass(frozen=True, slots=True)
class FlagsSettings:
    file: Path
    poll_interval: float


DEFAULT_MAX_MESSAGE_BYTES = 4 * 1024 * 1024
DEFAULT_GRACE_PERIOD = 10.0
DEFAULT_CLOSE_TIMEOUT = 5.0


@dataclass(frozen=True, slots=True)
class RelaySettings:
    max_message_bytes: int = DEFAULT_MAX_MESSAGE_BYTES
    grace_period: float = DEFAULT_GRACE_PERIOD
    close_timeout: float = DEFAULT_CLOSE_TIMEOUT
    # What a client is sent when its backend vanishes without a close frame (1006 may
    # never be sent); a route can override it with the code its legacy code used.
    upstream_lost_close_code: int = 1011
    # "auto": identity connections without a secondary are tunnelled as bytes after the
    # handshake (proxy/relay/tunnel.py); "off": every connection takes the per-frame relay.
    tunnel: str = "auto"


@dataclass(frozen=True, slots=True)
class LimitSettings:
    """What one proxy process admits, and how it says no."""

    max_connections: int = 20000
    max_connections_per_ip: int = 200
    # How an over-limit client is told: the legacy style (accept, close 1008 "Too many
    # concurrent connections") or a 503 at the handshake.
    over_limit: str = "close_1008"
    # A peer whose socket stays unwritable this long (it stopped reading while the
    # other side keeps sending) is closed with `stalled_close_code`.
    stalled_timeout: float = 30.0
    stalled_close_code: int = 1008
    # Seconds a new client connection has to send its whole request head (and how long
    # an idle keep-alive HTTP connection stays): a client that trickles or withholds its
    # handshake would otherwise hold a socket, uncounted by the caps, for an hour.
    header_timeout: float = 10.0


@dataclass(frozen=True, slots=True)
class TicketSettings:
    """Where to ask who a `?ticket=` stands for; None: ticket users are anonymous."""

    introspection_url: str | None = None
    cache_ttl: float = 30.0
    timeout: float = 2.0


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


LOG_LEVELS = ("debug", "info", "warning", "error", "critical")


@dataclass(frozen=True, slots=True)
class LoggingSettings:
    """How the process logs: `text` for people, `json` (one object a line) for collectors."""

    format: str = "text"
    level: str = "info"


@dataclass(frozen=True, slots=True)
class Config:
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
    logging: LoggingSettings = field(default_factory=LoggingSettings)

    @property
    def route_names(self) -> frozenset[str]:
        return frozenset(r.name for r in self.routes)

    def backend(self, name: str) -> Backend:
        return self.legacy if name == "legacy" else self.unified


class _Reader:
    """Typed access to one mapping of the file, naming the key path in every error."""

    def __init__(self, source: str, data: Mapping[str, Any], prefix: str = "") -> None:
        self.source = source
        self.data = data
        self.prefix = prefix

    def key(self, name: str) -> str:
        return f"{self.prefix}.{name}" if self.prefix else name

    def fail(self, name: str, problem: str) -> ConfigError:
        return ConfigError(self.source, self.key(name) if name else self.prefix, problem)

    def only(self, allowed: set[str]) -> None:
        unknown = sorted(set(self.data) - allowed)
        if unknown:
            raise self.fail(
                unknown[0], f"unknown key (expected one of {', '.join(sorted(allowed))})"
            )

    def get(self, name: str, kind: type | tuple[type, ...], default: Any = None) -> Any:
        if name not in self.data or self.data[name] is None:
            if default is _REQUIRED:
                raise self.fail(name, "is required")
            return default
        value = self.data[name]
        if kind is float and isinstance(value, int) and not isinstance(value, bool):
            return float(value)
        if not isinstance(value, kind) or (isinstance(value, bool) and kind in (int, float)):
            expected = (
                kind.__name__ if isinstance(kind, type) else " or ".join(k.__name__ for k in kind)
            )
            raise self.fail(name, f"must be a {expected}, not {type(value).__name__}")
        return value

    def sub(self, name: str) -> _Reader:
        return _Reader(self.source, self.get(name, dict, {}), self.key(name))

    def positive(self, name: str, default: float) -> float:
        value = float(self.get(name, float, default))
        if value <= 0:
            raise self.fail(name, "must be greater than 0")
        return value


_REQUIRED = object()


def _tunnel(relay: _Reader) -> str:
    # YAML 1.1 reads a bare `off` as false (and `on` as true): take those as meant.
    value = relay.get("tunnel", (str, bool), "auto")
    if isinstance(value, bool):
        value = "auto" if value else "off"
    if value not in ("auto", "off"):
        raise relay.fail("tunnel", f"must be auto or off, got {value!r}")
    return str(value)


def _address(r: _Reader, name: str, default: str) -> Address:
    text = str(r.get(name, (str, int), default))
    host, sep, port = text.rpartition(":")
    if not sep or not port.isdigit() or not 0 <= int(port) <= 65535:
        raise r.fail(name, f"must be host:port, got {text!r}")
    return Address(host.strip("[]") or "127.0.0.1", int(port))


def _backend(r: _Reader, name: str, default_url: str) -> Backend:
    b = r.sub(name)
    b.only({"url", "connect_timeout"} | ({"on_unavailable"} if name == "unified" else set()))
    url = b.get("url", str, default_url)
    parts = urlsplit(url)
    if parts.scheme not in ("ws", "wss") or not parts.hostname:
        raise b.fail("url", f"must be a ws:// or wss:// URL, got {url!r}")
    on_unavailable = b.get("on_unavailable", str, "fallback")
    if on_unavailable not in ("fallback", "refuse"):
        raise b.fail("on_unavailable", f"must be fallback or refuse, got {on_unavailable!r}")
    return Backend(
        name,
        url.rstrip("/") if name == "legacy" else url,
        b.positive("connect_timeout", 5.0),
        fallback=on_unavailable == "fallback",
    )


def _compile_path(r: _Reader, path: str) -> re.Pattern[str] | None:
    if not path.startswith("/"):
        raise r.fail("path", f"must start with '/', got {path!r}")
    segments = path.strip("/").split("/")
    if not any("{" in s or "}" in s for s in segments):
        return None
    parts = []
    for segment in segments:
        if _SEGMENT_PARAM.match(segment):
            parts.append("[^/]+")
        elif "{" in segment or "}" in segment:
            raise r.fail("path", f"a {{param}} must be a whole segment, got {segment!r}")
        else:
            parts.append(re.escape(segment))
    return re.compile("^/" + "/".join(parts) + "$")


def _routes(r: _Reader) -> tuple[Route, ...]:
    items = r.get("routes", list, _REQUIRED)
    if not items:
        raise r.fail("routes", "must list at least one route")
    routes: list[Route] = []
    seen_names: set[str] = set()
    seen_paths: set[str] = set()
    for i, item in enumerate(items):
        if not isinstance(item, dict):
            raise r.fail(f"routes[{i}]", "must be a mapping")
        rr = _Reader(r.source, item, f"routes[{i}]")
        rr.only({"name", "path", "dialect", "auth", "anonymous", "upstream_lost_close_code"})
        name = rr.get("name", str, _REQUIRED)
        if not _NAME.match(name):
            raise rr.fail("name", f"must match {_NAME.pattern}, got {name!r}")
        if name in seen_names:
            raise rr.fail("name", f"route {name!r} is defined twice")
        path = rr.get("path", str, _REQUIRED)
        if path in seen_paths:
            raise rr.fail("path", f"path {path!r} is claimed by two routes")
        dialect = rr.get("dialect", str, "main")
        if dialect not in DIALECTS:
            raise rr.fail(
                "dialect", f"unknown dialect {dialect!r} (one of {', '.join(sorted(DIALECTS))})"
            )
        auth_text = rr.get("auth", str, AuthStyle.ACCEPT_THEN_FRAME.value)
        try:
            auth = AuthStyle(auth_text)
        except ValueError:
            styles = ", ".join(s.value for s in AuthStyle)
            raise rr.fail("auth", f"unknown auth style {auth_text!r} (one of {styles})") from None
        anonymous = rr.get("anonymous", bool, auth is AuthStyle.NONE)
        seen_names.add(name)
        seen_paths.add(path)
        routes.append(
            Route(
                name,
                path,
                dialect,
                auth,
                anonymous,
                _compile_path(rr, path),
                _close_code(rr, "upstream_lost_close_code", None),
            )
        )
    # Literal paths win over patterns so /ws/factory is never taken for /ws/{user_id}.
    return tuple(sorted(routes, key=lambda route: route.pattern is not None))


def _read_secret(r: _Reader, env_key: str | None, file_key: str | None, base: Path) -> str | None:
    if env_key:
        value = os.environ.get(env_key)
        if not value:
            raise r.fail("secret_env", f"environment variable {env_key} is not set or empty")
        return value
    if file_key:
        return _read_file(r, "secret_file", base / file_key).strip()
    return None


def _read_file(r: _Reader, name: str, path: Path) -> str:
    try:
        return path.read_text()
    except OSError as exc:
        raise r.fail(name, f"cannot read {path}: {exc.strerror}") from None


def _jwt(r: _Reader, base: Path) -> JwtSettings:
    j = r.sub("jwt")
    j.only(
        {
            "algorithms",
            "secret_env",
            "secret_file",
            "public_key_file",
            "issuer",
            "audience",
            "leeway",
            "user_claim",
        }
    )
    algorithms = tuple(str(a) for a in j.get("algorithms", list, ["HS256"]))
    if not algorithms:
        raise j.fail("algorithms", "must list at least one algorithm")
    if any(a.lower() == "none" for a in algorithms):
        raise j.fail("algorithms", "'none' is never allowed")
    secret = _read_secret(j, j.get("secret_env", str), j.get("secret_file", str), base)
    key_file = j.get("public_key_file", str)
    public_key = _read_file(j, "public_key_file", base / key_file) if key_file else None
    audience = j.get("audience", (list, str), [])
    settings = JwtSettings(
        algorithms=algorithms,
        secret=secret,
        public_key=public_key,
        issuer=j.get("issuer", str),
        audience=(audience,) if isinstance(audience, str) else tuple(str(a) for a in audience),
        leeway=float(j.get("leeway", float, 30.0)),
        user_claim=j.get("user_claim", str, "sub"),
    )
    # Let the verifier's own rules (a key for every algorithm, no HS/RS mix) speak here,
    # so a bad key setup stops the start instead of refusing every client later.
    from strangler.proxy.edge.identity import JwtVerifier

    try:
        JwtVerifier(settings)
    except ValueError as exc:
        raise j.fail("algorithms", str(exc)) from None
    return settings


def parse_config(text: str, source: str) -> Config:
    """Validate the text of a `strangler.yaml`; relative paths resolve beside `source`."""
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"line {mark.line + 1}, column {mark.column + 1}" if mark else "?"
        raise ConfigError(source, "", f"not valid YAML ({where})") from None
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise ConfigError(source, "", "must be a mapping of keys")
    r = _Reader(source, data)
    r.only(
        {
            "listen",
            "admin_listen",
            "backends",
            "routes",
            "flags",
            "jwt",
            "relay",
            "http_passthrough",
            "tickets",
            "shadow",
            "limits",
            "admin_auth",
            "logging",
        }
    )
    base = Path(source).resolve().parent
    backends = r.sub("backends")
    backends.only({"legacy", "unified"})
    flags = r.sub("flags")
    flags.only({"file", "poll_interval"})
    relay = r.sub("relay")
    relay.only(
        {"max_message_bytes", "grace_period", "close_timeout", "upstream_lost_close_code", "tunnel"}
    )
    max_bytes = relay.get("max_message_bytes", int, DEFAULT_MAX_MESSAGE_BYTES)
    if max_bytes < 1024:
        raise relay.fail("max_message_bytes", "must be at least 1024")
    passthrough = r.get("http_passthrough", list, list(DEFAULT_HTTP_PASSTHROUGH))
    for i, p in enumerate(passthrough):
        if not isinstance(p, str) or not p.startswith("/"):
            raise r.fail(f"http_passthrough[{i}]", "must be a path starting with '/'")
    return Config(
        source=source,
        listen=_address(r, "listen", "127.0.0.1:8080"),
        admin_listen=_address(r, "admin_listen", "127.0.0.1:9090"),
        legacy=_backend(backends, "legacy", "ws://127.0.0.1:8091"),
        unified=_backend(backends, "unified", "ws://127.0.0.1:8092/v1/ws"),
        routes=_routes(r),
        flags=FlagsSettings(
            file=base / flags.get("file", str, "flags.yaml"),
            poll_interval=flags.positive("poll_interval", 1.0),
        ),
        jwt=_jwt(r, base),
        relay=RelaySettings(
            max_message_bytes=max_bytes,
            grace_period=float(relay.get("grace_period", float, DEFAULT_GRACE_PERIOD)),
            close_timeout=relay.positive("close_timeout", DEFAULT_CLOSE_TIMEOUT),
            upstream_lost_close_code=_close_code(relay, "upstream_lost_close_code", 1011) or 1011,
            tunnel=_tunnel(relay),
        ),
        http_passthrough=tuple(passthrough),
        tickets=_tickets(r),
        shadow=_shadow(r, base),
        limits=_limits(r),
        admin_token=_admin_token(r, base),
        logging=_logging(r),
    )


def _limits(r: _Reader) -> LimitSettings:
    lim = r.sub("limits")
    lim.only(
        {
            "max_connections",
            "max_connections_per_ip",
            "over_limit",
            "stalled_timeout",
            "stalled_close_code",
            "header_timeout",
        }
    )
    over = lim.get("over_limit", str, "close_1008")
    if over not in ("close_1008", "refuse_503"):
        raise lim.fail("over_limit", f"must be close_1008 or refuse_503, got {over!r}")
    code = lim.get("stalled_close_code", int, 1008)
    if code not in (1008, 1009):
        raise lim.fail("stalled_close_code", "must be 1008 or 1009")
    counts = {}
    for key, default in (("max_connections", 20000), ("max_connections_per_ip", 200)):
        counts[key] = lim.get(key, int, default)
        if counts[key] < 1:
            raise lim.fail(key, "must be at least 1")
    return LimitSettings(
        over_limit=over,
        stalled_timeout=lim.positive("stalled_timeout", 30.0),
        stalled_close_code=code,
        header_timeout=lim.positive("header_timeout", 10.0),
        **counts,
    )


def _logging(r: _Reader) -> LoggingSettings:
    lg = r.sub("logging")
    lg.only({"format", "level"})
    fmt = lg.get("format", str, "text")
    if fmt not in ("text", "json"):
        raise lg.fail("format", f"must be text or json, got {fmt!r}")
    level = lg.get("level", str, "info").lower()
    if level not in LOG_LEVELS:
        raise lg.fail("level", f"must be one of {', '.join(LOG_LEVELS)}, got {level!r}")
    return LoggingSettings(format=fmt, level=level)


def _admin_token(r: _Reader, base: Path) -> str | None:
    a = r.sub("admin_auth")
    a.only({"token_env", "token_file"})
    env_key, file_key = a.get("token_env", str), a.get("token_file", str)
    if env_key:
        value = os.environ.get(env_key)
        if not value:
            raise a.fail("token_env", f"environment variable {env_key} is not set or empty")
        return value
    if file_key:
        return _read_file(a, "token_file", base / file_key).strip() or None
    return None


def _shadow(r: _Reader, base: Path) -> ShadowSettings:
    sh = r.sub("shadow")
    sh.only(
        {
            "enabled",
            "max_secondary_connections",
            "queue_frames",
            "mismatch_samples",
            "compare",
            "redact",
            "mismatch_log",
        }
    )
    counts = {}
    for key, default in (
        ("max_secondary_connections", 1000),
        ("queue_frames", 256),
        ("mismatch_samples", 100),
    ):
        value = sh.get(key, int, default)
        if value < 1:
            raise sh.fail(key, "must be at least 1")
        counts[key] = value
    try:
        compare = CompareSettings.from_mapping(sh.get("compare", dict, {}))
    except ValueError as exc:
        raise sh.fail("compare", str(exc)) from None
    redact = sh.get("redact", list, [])
    if not all(isinstance(p, str) and p for p in redact):
        raise sh.fail("redact", "must be a list of dotted event paths like data.parameters.query")
    log = sh.sub("mismatch_log")
    log.only({"path", "max_bytes", "backups"})
    log_path = log.get("path", str)
    return ShadowSettings(
        enabled=sh.get("enabled", bool, True),
        compare=compare,
        redact=tuple(redact),
        mismatch_log=base / log_path if log_path else None,
        mismatch_log_max_bytes=log.get("max_bytes", int, 10 * 1024 * 1024),
        mismatch_log_backups=log.get("backups", int, 3),
        **counts,
    )


def _tickets(r: _Reader) -> TicketSettings:
    t = r.sub("tickets")
    t.only({"introspection_url", "cache_ttl", "timeout"})
    url = t.get("introspection_url", str)
    if url is not None and urlsplit(url).scheme not in ("http", "https"):
        raise t.fail("introspection_url", f"must be an http:// or https:// URL, got {url!r}")
    return TicketSettings(url, t.positive("cache_ttl", 30.0), t.positive("timeout", 2.0))


def load_config(path: str | os.PathLike[str]) -> Config:
    """Read and validate the configuration file at `path`."""
    source = os.fspath(path)
    try:
        text = Path(source).read_text()
    except OSError as exc:
        raise ConfigError(source, "", f"cannot read the file: {exc.strerror}") from None
    return parse_config(text, source)
