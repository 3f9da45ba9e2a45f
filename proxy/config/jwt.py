"""How tokens are verified: the ``jwt`` section of the configuration."""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True, slots=True)
class JwtSettings:
    """How tokens are verified; see `JwtVerifier` for the checks made at construction."""

    algorithms: tuple[str, ...] = ("HS256",)
    secret: str | None = field(default=None, repr=False)  # HS* key
    public_key: str | None = None  # RS*/ES*/PS*/EdDSA PEM
    issuer: str | None = None
    audience: tuple[str, ...] = ()  # any one of them accepted; empty = not checked
    leeway: float = 30.0
    user_claim: str = "sub"
    required_claims: tuple[str, ...] = ("exp",)
