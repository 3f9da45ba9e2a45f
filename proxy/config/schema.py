"""The shape of `strangler.yaml`: one pydantic model per section, as the file is written.

The models check every key, collecting every error, and are the source of
docs/strangler.schema.json. Secrets are read here, from the variables and files the
file names, so a missing one is reported with the rest.
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any, Literal, Self
from urllib.parse import urlsplit

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    PlainValidator,
    PrivateAttr,
    StrictBool,
    StrictFloat,
    StrictInt,
    StrictStr,
    ValidationInfo,
    model_validator,
)
from pydantic.json_schema import WithJsonSchema

from strangler.legacy_adapters.base import Greeting
from strangler.proxy.config.authority import parse_authority
from strangler.proxy.config.compare import CompareSettings
from strangler.proxy.config.errors import SECTION, at
from strangler.proxy.config.jwt import JwtSettings, WeakKeyError
from strangler.proxy.config.settings import (
    DEFAULT_HTTP_PASSTHROUGH,
    Address,
    AuthStyle,
    CloseCode,
    Count,
    Dialect,
    FleetSettings,
    LimitSettings,
    LoggingSettings,
    RelaySettings,
    Seconds,
    ShedSettings,
    TicketSettings,
    setting,
)


def section() -> Any:
    """An absent section is its defaults, checked like a written one (it may need a secret)."""
    return Field(default_factory=dict, validate_default=True)


# YAML reads `aud: 123` as a number; it was always taken as its text.
Text = Annotated[StrictStr, BeforeValidator(lambda v: str(v) if type(v) in (int, float) else v)]


def _ws_url(url: str) -> str:
    if urlsplit(url).scheme not in ("ws", "wss") or not urlsplit(url).hostname:
        raise ValueError(f"must be a ws:// or wss:// URL, got {url!r}")
    return url


def _http_path(path: str) -> str:
    if not path.startswith("/"):
        raise ValueError(f"must be a path starting with '/', got {path!r}")
    return path


def _address(value: Any) -> Address:
    text = str(value) if type(value) is int else value
    if not isinstance(text, str):
        raise ValueError("must be host:port, like 127.0.0.1:8080")
    host, sep, port = text.rpartition(":")
    if not sep or not port.isdigit() or not 0 <= int(port) <= 65535:
        raise ValueError(f"must be host:port, got {text!r}")
    return Address(host.strip("[]") or "127.0.0.1", int(port))


HostPort = Annotated[
    Address,
    PlainValidator(_address),
    WithJsonSchema({"type": "string", "pattern": "^.*:[0-9]{1,5}$"}),
]
WsUrl = Annotated[StrictStr, AfterValidator(_ws_url)]


class Section(BaseModel):
    model_config = SECTION


def _context(info: ValidationInfo) -> dict[str, Any]:
    """What load.parse validates with: `base`, the folder of the file, and `verify`."""
    return info.context or {"base": Path()}


_PARAM = re.compile(r"^\{[A-Za-z_][A-Za-z0-9_]*\}$")


def compile_path(path: str) -> re.Pattern[str] | None:
    """The pattern of a route path with `{param}` segments; None for a literal path."""
    if not path.startswith("/"):
        raise ValueError(f"must start with '/', got {path!r}")
    segments = path.strip("/").split("/")
    if not any("{" in s or "}" in s for s in segments):
        return None
    for segment in segments:
        if ("{" in segment or "}" in segment) and not _PARAM.match(segment):
            raise ValueError(f"a {{param}} must be a whole segment, got {segment!r}")
    parts = ("[^/]+" if _PARAM.match(s) else re.escape(s) for s in segments)
    return re.compile("^/" + "/".join(parts) + "$")


def _route_path(path: str) -> str:
    compile_path(path)
    return path


def _read(base: Path, file: str | None, key: str) -> str | None:
    try:
        return None if file is None else (base / file).read_text()
    except OSError as exc:
        raise at(f"cannot read the file it names: {exc.strerror or exc}", key) from None


def _secret(key: str, env: str | None, file: str | None, base: Path) -> str | None:
    """The value of the variable `env` or of `file`; errors never repeat either value."""
    if env is None:
        text = _read(base, file, key + "_file")
        return None if text is None else text.strip()
    if not os.environ.get(env):
        raise at("the environment variable it names is not set or empty", key + "_env")
    return os.environ[env]


class LegacyBackend(Section):
    """The legacy backend: each client's own path is kept."""

    url: WsUrl = setting("ws://127.0.0.1:8091", "ws:// or wss:// URL, without a path.")
    connect_timeout: Seconds = setting(5.0, "Seconds to open the upstream socket.")


class UnifiedBackend(LegacyBackend):
    """The unified router: one path for every route."""

    url: WsUrl = setting("ws://127.0.0.1:8092/v1/ws", "ws:// or wss:// URL.")
    on_unavailable: Literal["fallback", "refuse"] = setting(
        "fallback", "When the router is unreachable (or answers 502-504): legacy, or refuse."
    )
    redeems_tickets: StrictBool = setting(
        False,
        "The router redeems ?ticket= connections itself. Off: every ticket connection is "
        "served by legacy (which issued the ticket), whatever the user's flags say.",
    )


class Backends(Section):
    """The two upstreams."""

    legacy: LegacyBackend = section()
    unified: UnifiedBackend = section()


class RouteSection(Section):
    """One legacy entry point; literal paths are matched before `{param}` patterns."""

    name: StrictStr = Field(pattern="^[a-z][a-z0-9_]*$", description="Flags name routes by it.")
    path: Annotated[StrictStr, AfterValidator(_route_path)] = Field(
        description="Request path; a whole segment may be a {param}."
    )
    dialect: Dialect = setting("main", "The legacy message dialect spoken here.")
    auth: AuthStyle = setting(AuthStyle.ACCEPT_THEN_FRAME, "How a bad credential is refused.")
    anonymous: StrictBool | None = setting(None, "Admit clients without a token (auth none: yes).")
    upstream_lost_close_code: CloseCode | None = setting(
        None, "Close code when the backend vanishes, as this route's legacy code sent it."
    )
    greeting: Greeting | None = setting(
        None,
        "The first frame's shape, as this route's legacy code sent it: connection_established "
        "or the older system_message; none: the dialect's own (docs/PROTOCOL.md section 6).",
    )


def _distinct(routes: list[RouteSection]) -> list[RouteSection]:
    names: set[str] = set()
    paths: set[str] = set()
    for i, route in enumerate(routes):
        if route.name in names:
            raise at(f"route {route.name!r} is defined twice", i, "name")
        if route.path in paths:
            raise at(f"path {route.path!r} is claimed by two routes", i, "path")
        names.add(route.name)
        paths.add(route.path)
    return routes


class FlagsSection(Section):
    """The flag file, watched for changes."""

    file: StrictStr = setting("flags.yaml", "The flag file, relative to this one.")
    poll_interval: Seconds = setting(1.0, "Seconds between looks for a new version.")


class JwtSection(Section):
    """How tokens are verified; the key is read from an environment variable or a file."""

    algorithms: list[Text] = setting(["HS256"], "HS* or asymmetric ones, not both.", min_length=1)
    secret_env: StrictStr | None = setting(None, "Variable holding the HS* secret.")
    secret_file: StrictStr | None = setting(None, "File holding the HS* secret.")
    public_key_file: StrictStr | None = setting(None, "PEM public key, for RS*/ES*/PS*/EdDSA.")
    issuer: StrictStr | None = setting(None, "Required `iss`, if set.")
    audience: Annotated[
        list[Text],
        BeforeValidator(lambda v: [v] if isinstance(v, str) else v),
        Field(json_schema_extra={"type": ["array", "string"]}),
    ] = setting([], "Accepted `aud` values, one or a list; none: not checked.")
    leeway: StrictFloat = setting(30.0, "Seconds of clock skew allowed.")
    user_claim: StrictStr = setting("sub", "The claim that holds the user id.")
    allow_short_secret: StrictBool = setting(
        False,
        "Accept an HS* secret shorter than RFC 7518 asks (32 bytes for HS256), as a legacy "
        "deployment may have one; warned at every start and by check-config.",
    )
    _settings: JwtSettings = PrivateAttr(default_factory=JwtSettings)

    @model_validator(mode="after")
    def _verifiable(self, info: ValidationInfo) -> Self:
        if any(a.lower() == "none" for a in self.algorithms):
            raise at("'none' is never allowed", "algorithms")
        base = _context(info)["base"]
        self._settings = JwtSettings(
            algorithms=tuple(self.algorithms),
            secret=_secret("secret", self.secret_env, self.secret_file, base),
            public_key=_read(base, self.public_key_file, "public_key_file"),
            issuer=self.issuer,
            audience=tuple(self.audience),
            leeway=self.leeway,
            user_claim=self.user_claim,
            allow_short_secret=self.allow_short_secret,
        )
        # The verifier's own rules (a key for every algorithm, no HS/RS mix) speak here,
        # so a bad key setup stops the start instead of refusing every client later.
        verify: Callable[[JwtSettings], object] | None = _context(info).get("verify")
        try:
            if verify is not None:
                verify(self._settings)
        except WeakKeyError as exc:
            # The secret is what is wrong, not the algorithms: name where it comes from.
            where = "secret_env" if self.secret_env is not None else "secret_file"
            raise at(
                str(exc).removeprefix("jwt: ")
                + " Set jwt.allow_short_secret: true to accept it anyway (not recommended).",
                where,
            ) from None
        except ValueError as exc:
            raise at(str(exc).removeprefix("jwt: "), "algorithms") from None
        return self

    @property
    def settings(self) -> JwtSettings:
        """The settings, with the secret or public key read in."""
        return self._settings


class MismatchLog(Section):
    """A JSONL file of non-matching turns, rotated by size."""

    path: StrictStr | None = setting(None, "Relative to this file; none: no log.")
    max_bytes: StrictInt = setting(10 * 1024 * 1024, "Size at which it is rotated.")
    backups: StrictInt = setting(3, "Rotated files kept.")


class ShadowSection(Section):
    """The compared secondary of `shadow` and `live` connections."""

    enabled: StrictBool = setting(True, "The global switch (also flipped on the admin port).")
    max_secondary_connections: Count = setting(1000, "Open secondary connections, at most.")
    queue_frames: Count = setting(256, "Frames queued per secondary; overflow is dropped.")
    mismatch_samples: Count = setting(100, "Recent mismatches kept for the admin port.")
    compare: CompareSettings = section()
    redact: list[Annotated[StrictStr, Field(min_length=1)]] = setting(
        [], "Dotted event paths blanked in stored transcripts, like data.parameters.query."
    )
    mismatch_log: MismatchLog = section()
    shed: ShedSettings = section()


class AdminAuth(Section):
    """A bearer token the admin port requires, from an environment variable or a file."""

    token_env: StrictStr | None = setting(None, "Variable holding the token.")
    token_file: StrictStr | None = setting(None, "File holding the token.")
    _token: str | None = PrivateAttr(None)

    @model_validator(mode="after")
    def _read_token(self, info: ValidationInfo) -> Self:
        base = _context(info)["base"]
        self._token = _secret("token", self.token_env, self.token_file, base) or None
        return self

    @property
    def token(self) -> str | None:
        """The token read in; None: the admin port is open."""
        return self._token


# An admin_trust.allowed_hosts entry: a DNS name or IPv4 literal, or a bracketed IPv6
# literal, with an optional port.
_HOST_NAME = re.compile(
    r"^(?:[a-z0-9_](?:[a-z0-9_-]{0,61}[a-z0-9_])?)(?:\.[a-z0-9_](?:[a-z0-9_-]{0,61}[a-z0-9_])?)*\.?$"
)


def _allowed_host(entry: str) -> str:
    text = entry.strip().lower()
    if text == "*":
        return text
    # The admin listener's own reading (parse_authority: brackets, IPv6, the port), and a
    # DNS name or IPv4 literal as the host where it is not an IPv6 literal.
    ipv6 = text.startswith("[") or text.count(":") > 1
    if parse_authority(text) is None or not (ipv6 or _HOST_NAME.match(text.partition(":")[0])):
        raise ValueError(
            "must be a host name or address with an optional port, like admin.internal,"
            f" 10.0.0.5:9090 or [::1]; or '*' for every Host; got {entry!r}"
        )
    return text


class AdminTrust(Section):
    """Whom the admin port answers, besides its loopback names and its own address."""

    allowed_hosts: list[Annotated[StrictStr, AfterValidator(_allowed_host)]] = setting(
        [],
        "More Host names the admin port answers (DNS rebinding guard), with an optional"
        " port; '*' answers every Host, for a proxy in front that checks Host itself.",
    )


class Document(Section):
    """strangler.yaml, the proxy's configuration; relative paths are relative to it."""

    model_config = ConfigDict(**SECTION, title="strangler.yaml")

    listen: HostPort = setting("127.0.0.1:8080", "Client-facing host:port.", validate_default=True)
    # Not 9090: Prometheus's own default port, often on the same host as the proxy.
    admin_listen: HostPort = setting(
        "127.0.0.1:8090", "host:port of /metrics, /healthz, /readyz.", validate_default=True
    )
    backends: Backends = section()
    routes: Annotated[list[RouteSection], AfterValidator(_distinct)] = Field(
        min_length=1, description="The entry points; literal paths win over patterns."
    )
    flags: FlagsSection = section()
    jwt: JwtSection = section()
    relay: RelaySettings = section()
    http_passthrough: list[Annotated[StrictStr, AfterValidator(_http_path)]] = setting(
        list(DEFAULT_HTTP_PASSTHROUGH), "Plain HTTP paths forwarded to legacy."
    )
    tickets: TicketSettings = section()
    shadow: ShadowSection = section()
    limits: LimitSettings = section()
    admin_auth: AdminAuth = section()
    admin_trust: AdminTrust = section()
    logging: LoggingSettings = section()
    fleet: FleetSettings = section()


def json_schema() -> dict[str, Any]:
    """The JSON Schema of strangler.yaml, as docs/strangler.schema.json holds it."""
    schema = Document.model_json_schema()
    return {"$schema": "https://json-schema.org/draft/2020-12/schema", **schema}
