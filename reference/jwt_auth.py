"""JWT verification as the legacy backend did it (pyjwt, HS256, ``alg: none`` refused)."""

from __future__ import annotations

import logging
import warnings
from typing import Final

import jwt
from jwt.types import Options
from jwt.warnings import InsecureKeyLengthWarning

from strangler.reference.settings import BackendSettings

log = logging.getLogger(__name__)

LEEWAY_S: Final = 30
# Only HMAC: the demo has no RSA key, and listing algorithms explicitly is what
# keeps ``alg: none`` (and algorithm confusion) out.
ALGORITHMS: Final = ["HS256"]
MIN_SECRET_BYTES: Final = 32  # RFC 7518 section 3.2, for HS256


class AuthError(Exception):
    """A credential was missing or refused; ``str(err)`` is safe to show the client."""


def warn_if_weak_secret(settings: BackendSettings) -> None:
    """Log once per app that the HMAC secret is short (the default one is)."""
    if len(settings.jwt_secret.encode()) < MIN_SECRET_BYTES:
        log.warning("jwt_secret is shorter than %d bytes; fine for a demo only", MIN_SECRET_BYTES)


def verify_jwt(token: str, settings: BackendSettings) -> str:
    """Verify ``token`` and return its user id (``sub``); raise AuthError otherwise."""
    options: Options = {
        "require": ["exp", "sub"],
        "verify_aud": settings.audience is not None,
        "verify_iss": settings.issuer is not None,
    }
    try:
        with warnings.catch_warnings():
            # Reported once at startup by warn_if_weak_secret; per token it is noise,
            # and under ``filterwarnings=error`` it would turn into a handler crash.
            warnings.simplefilter("ignore", InsecureKeyLengthWarning)
            claims = jwt.decode(
                token,
                settings.jwt_secret,
                algorithms=ALGORITHMS,
                audience=settings.audience,
                issuer=settings.issuer,
                leeway=LEEWAY_S,
                options=options,
            )
    except jwt.ExpiredSignatureError as err:
        raise AuthError("Token expired") from err
    except jwt.InvalidTokenError as err:
        raise AuthError("Invalid token") from err
    if claims.get("token_type", "access") != "access":
        raise AuthError("Invalid token type")
    subject = claims.get("sub")
    if not isinstance(subject, str) or not subject:
        raise AuthError("Invalid token subject")
    return subject
