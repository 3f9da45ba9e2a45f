"""Settings shared by the reference backends."""

from __future__ import annotations

from dataclasses import dataclass


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

    def server_id_or(self, default: str) -> str:
        """The configured instance identity, or the backend's own name."""
        return self.server_id or default
