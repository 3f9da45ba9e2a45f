"""Whom an admin listener answers: the Host names it serves and the origins that may
change its state. Every admin listener (the proxy's, each worker's, the supervisor's)
is wrapped in `trust_middleware`; the token (`token_middleware`) comes after it.

Two browser attacks reach a listener that a release manager's browser can reach:

- **Cross-site requests.** A page on any site can make the browser POST to
  ``http://127.0.0.1:9090/shadow?enabled=false``; it cannot read the answer, but the
  switch is flipped. A request that changes state (any method but GET, HEAD, OPTIONS)
  is therefore refused when the browser says it comes from another origin: its
  ``Origin`` (or, without one, ``Referer``) is not the listener itself, or
  ``Sec-Fetch-Site`` says ``cross-site``/``same-site``. Browsers send ``Origin`` on
  every cross-origin POST, so a request with neither header is a tool (curl,
  `strangler flags plan`) and is let through.
- **DNS rebinding.** A page on ``evil.example`` whose name is re-pointed at 127.0.0.1
  is, to the browser, same-origin with the listener and may read every answer. Such a
  request carries ``Host: evil.example``, so a request is answered only when its Host
  is a name the listener is known by: loopback names, the address it was reached on,
  its configured address, and `admin_trust.allowed_hosts`. A name nobody can re-point
  (loopback, an IP literal) is accepted with any port, so ``kubectl port-forward`` and
  ``ssh -L`` keep working; ``"*"`` turns the check off (for a proxy in front that checks
  Host itself). The probes /healthz and /readyz answer every Host, as they answer
  without the token: orchestrators reach them by whatever name they use.

The decision functions are pure; only `trust_middleware` touches aiohttp.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Iterable, Mapping
from dataclasses import dataclass
from enum import StrEnum
from urllib.parse import urlsplit

from aiohttp import web
from aiohttp.typedefs import Middleware

from strangler.proxy.config.authority import Authority, normalise_host, parse_authority

__all__ = [
    "LOOPBACK",
    "PROBES",
    "AdminTrust",
    "Authority",
    "Origin",
    "Refusal",
    "normalise_host",
    "parse_authority",
    "parse_origin",
    "sanitised",
    "trust_middleware",
]

log = logging.getLogger("strangler.admin")

# Paths answered whatever the Host: liveness and readiness, as for the token.
PROBES = frozenset({"/healthz", "/readyz"})

# Methods a browser may send cross-site without changing anything here.
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})

# Names that always mean this machine: no DNS answer can re-point them.
LOOPBACK = frozenset({"localhost", "127.0.0.1", "::1"})

# Addresses a listener bound to "every interface" is configured with; never a Host.
_WILDCARDS = frozenset({"", "0.0.0.0", "::"})

_DEFAULT_PORTS = {"http": 80, "https": 443}

# Longest Host or Origin text quoted in a log line.
_LOGGED = 64


class Refusal(StrEnum):
    """Why a request was refused (the `reason` label of strangler_admin_refusals_total)."""

    HOST = "host"
    ORIGIN = "origin"


@dataclass(frozen=True, slots=True)
class Origin:
    """The host and port of an http(s) origin, as a browser names the page it runs."""

    host: str
    port: int
    """Written or, when left out, the scheme's default."""
    default_port: int
    """The scheme's default port: what a Host header without a port means."""


def parse_origin(text: str) -> Origin | None:
    """The origin of an ``Origin`` value or of a ``Referer`` URL; None for ``null``,
    other schemes, or anything malformed."""
    try:
        parts = urlsplit(text.strip())
        port = parts.port
    except ValueError:
        return None
    scheme = parts.scheme.lower()
    if scheme not in _DEFAULT_PORTS or not parts.hostname:
        return None
    default = _DEFAULT_PORTS[scheme]
    return Origin(normalise_host(parts.hostname), port or default, default)


@dataclass(frozen=True, slots=True)
class AdminTrust:
    """The Host names and origins one admin listener accepts."""

    listen_host: str
    """The configured host of admin_listen (a wildcard adds nothing)."""
    allowed: tuple[Authority, ...] = ()
    """admin_trust.allowed_hosts, "*" left out."""
    any_host: bool = False
    """``"*"`` was configured: every Host is answered."""

    @classmethod
    def configured(cls, listen_host: str, allowed_hosts: Iterable[str]) -> AdminTrust:
        """From the configuration (entries already validated by the schema)."""
        entries = tuple(allowed_hosts)
        parsed = tuple(a for a in map(parse_authority, entries) if a is not None and a.host)
        return cls(listen_host, parsed, "*" in entries)

    def own_hosts(self, local_host: str | None) -> frozenset[str]:
        """Names that can only mean this listener: loopback, its configured address and
        the address the request reached."""
        hosts = set(LOOPBACK)
        for host in (self.listen_host, local_host):
            if host is not None and normalise_host(host) not in _WILDCARDS:
                hosts.add(normalise_host(host))
        return frozenset(hosts)

    def host_allowed(self, host_header: str | None, local: tuple[str, int] | None) -> bool:
        """Whether a request with this Host header (None: none sent) is answered."""
        if host_header is None or self.any_host:
            # Without a Host the sender is no browser (every browser sends one).
            return True
        given = parse_authority(host_header)
        if given is None:
            return False
        if given.host in self.own_hosts(local[0] if local else None):
            return True
        return any(_matches(entry, given.host, given.port) for entry in self.allowed)

    def origin_allowed(
        self, origin: Origin, host_header: str | None, local: tuple[str, int] | None
    ) -> bool:
        """Whether a state change from `origin` is this listener talking to itself: the
        origin is the Host the request was sent to (already checked), or the listener's
        own address when no Host was sent, or a configured name."""
        if host_header is not None:
            target = parse_authority(host_header)
            # A Host without a port means the scheme's default one.
            if target is not None and (target.host, target.port or origin.default_port) == (
                origin.host,
                origin.port,
            ):
                return True
        elif local is not None:
            own = self.own_hosts(local[0])
            if origin.host in own and origin.port == local[1]:
                return True
        # A name the operator configured (a proxy in front may rewrite Host).
        return any(_matches(entry, origin.host, origin.port) for entry in self.allowed)

    def check(
        self,
        method: str,
        path: str,
        headers: Mapping[str, str],
        local: tuple[str, int] | None,
        host_headers: int = 1,
    ) -> Refusal | None:
        """Why a request must be refused, or None to answer it. `headers` is looked up
        case-insensitively by the caller's mapping; `host_headers` is how many Host
        lines it had (more than one is refused: each reader might take another)."""
        host = headers.get("Host")
        if path not in PROBES and (host_headers > 1 or not self.host_allowed(host, local)):
            return Refusal.HOST
        if method.upper() in SAFE_METHODS:
            return None
        site = headers.get("Sec-Fetch-Site", "").strip().lower()
        if site in ("cross-site", "same-site"):
            return Refusal.ORIGIN
        claimed = headers.get("Origin")
        if claimed is None:
            claimed = headers.get("Referer")
            if claimed is None:
                return None  # not a browser: curl, the strangler CLI, the supervisor
        origin = parse_origin(claimed)
        if origin is None or not self.origin_allowed(origin, host, local):
            return Refusal.ORIGIN
        return None


def _matches(entry: Authority, host: str, port: int | None) -> bool:
    return entry.host == host and (entry.port is None or entry.port == port)


def sanitised(text: str | None) -> str:
    """A header value fit for a log line: printable ASCII, at most 64 characters."""
    if text is None:
        return "-"
    clean = "".join(c if c.isascii() and c.isprintable() else "?" for c in text[:_LOGGED])
    return clean + ("..." if len(text) > _LOGGED else "")


_BODIES = {
    Refusal.HOST: (
        421,
        "this admin listener does not answer to the Host name in the request;"
        " reach it by a loopback name or its address, or add the name to"
        " admin_trust.allowed_hosts\n",
    ),
    Refusal.ORIGIN: (
        403,
        "cross-site request refused: a request that changes state must come from the"
        " admin listener's own origin, or from a tool that sends no Origin\n",
    ),
}

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def trust_middleware(trust: AdminTrust, refused: Callable[[Refusal], None]) -> Middleware:
    """Refuses requests for another Host (421) and cross-site state changes (403);
    `refused` counts each refusal."""

    @web.middleware
    async def check_trust(request: web.Request, handler: Handler) -> web.StreamResponse:
        local = _local_address(request)
        reason = trust.check(
            request.method,
            request.path,
            request.headers,
            local,
            host_headers=len(request.headers.getall("Host", ())),
        )
        if reason is None:
            return await handler(request)
        refused(reason)
        quoted = request.headers.get("Origin" if reason is Refusal.ORIGIN else "Host")
        if reason is Refusal.ORIGIN and quoted is None:
            quoted = request.headers.get("Referer")
        log.info(
            "admin request refused: reason=%s method=%s %s=%s",
            reason.value,
            sanitised(request.method),
            "host" if reason is Refusal.HOST else "origin",
            sanitised(quoted),
        )
        status, text = _BODIES[reason]
        return web.Response(status=status, text=text, headers={"Cache-Control": "no-store"})

    return check_trust


def _local_address(request: web.Request) -> tuple[str, int] | None:
    """The address and port the request reached (a wildcard listener's real address)."""
    transport = request.transport
    name = transport.get_extra_info("sockname") if transport is not None else None
    if isinstance(name, tuple) and len(name) >= 2:
        return str(name[0]), int(name[1])
    return None
