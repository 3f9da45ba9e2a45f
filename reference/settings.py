"""Settings shared by the reference backends."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

from strangler.reference.dialects import Greeting


@dataclass(frozen=True)
class BackendSettings:
    """Knobs of a reference backend; the defaults match the demo configuration."""

    jwt_secret: str = "demo-secret-change-me-before-production-use"
    issuer: str | None = "netra-auth-service"
    audience: str | None = "netra-platform"
    event_delay: float = 0.0
    heartbeat_idle: float = 30.0
    unified_path: str = "/v1/ws"
    vary: bool = False
    server_id: str = ""
    # Where a backend that cannot redeem tickets itself asks who a ticket stands for
    # (the unified router; the legacy backend issues and redeems its own).
    ticket_introspection_url: str | None = None
    # Event types a turn leaves out: a deliberate regression for comparisons to find.
    omit_events: tuple[str, ...] = ()
    # Seconds to wait before answering a handshake: a slow secondary for shadow tests.
    handshake_delay: float = 0.0
    # A deliberate difference (demo.divergence.Divergence value) for turns whose request
    # text contains `divergence_keyword` (every turn when the keyword is empty).
    divergence: str | None = None
    divergence_keyword: str = ""
    # The legacy backend's greeting per WebSocket path as registered (``/websocket``,
    # ``/ws/{user_id}``, ...), for deployments whose routes greeted in the other
    # generation; a path not named keeps its dialect's (dialects.GREETING).
    greetings: Mapping[str, Greeting] = field(default_factory=dict)

    def server_id_or(self, default: str) -> str:
        """The configured instance identity, or the backend's own name."""
        return self.server_id or default
