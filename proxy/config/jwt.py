"""How tokens are verified: the ``jwt`` section of the configuration."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Final

# RFC 7518 3.2: an HMAC key at least as long as the hash's output.
MIN_HMAC_KEY_BYTES: Final = {"HS256": 32, "HS384": 48, "HS512": 64}


class WeakKeyError(ValueError):
    """The HMAC secret is shorter than its algorithm needs (and no opt-in allows it)."""


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
    # A legacy deployment's secret is what it is: accept a short one, with a warning.
    allow_short_secret: bool = False

    def warnings(self) -> tuple[str, ...]:
        """What an operator must hear about these settings at every start."""
        if not self.secret or not self.allow_short_secret:
            return ()
        size = len(self.secret.encode("utf-8"))
        short = [a for a in self.algorithms if size < MIN_HMAC_KEY_BYTES.get(a, 0)]
        if not short:
            return ()
        need = max(MIN_HMAC_KEY_BYTES[a] for a in short)
        return (
            f"jwt: the HMAC secret is {size} bytes, under the {need} that {', '.join(short)} "
            "needs (RFC 7518 3.2); accepted because jwt.allow_short_secret is true. A short "
            "secret can be guessed offline from any token: rotate it when the legacy "
            "deployment allows.",
        )
