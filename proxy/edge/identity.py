"""Who is connecting: credential extraction from a WebSocket handshake and JWT verification.

Pure code (no sockets, no asyncio). Extraction reproduces the legacy order of token
sources (LEGACY_SURFACE.md, "Handshake and authentication"); verification uses pyjwt
with an explicit algorithm allow-list. Nothing here logs: failures carry a bounded
`AuthError.reason` that callers may use as a metric label. Tokens and user ids never
appear in reprs or error messages.
"""

from __future__ import annotations

import base64
import binascii
import re
import sys
import time
import uuid
import warnings
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from types import MappingProxyType
from typing import Any, Final, Literal, cast, get_args

import jwt
from cryptography.hazmat.primitives.serialization import load_pem_public_key
from jwt.algorithms import Algorithm, get_default_algorithms
from jwt.api_jws import PyJWS
from jwt.types import Options

from strangler.proxy.config.jwt import JwtSettings, WeakKeyError

__all__ = [
    "AUTH_REASONS",
    "MAX_TOKEN_BYTES",
    "AuthError",
    "AuthReason",
    "Credentials",
    "Identity",
    "JwtSettings",
    "JwtVerifier",
    "TokenSource",
    "choose_subprotocol",
    "extract_credentials",
    "mint_token",
]

# Larger tokens are refused before any parsing so a hostile client cannot make
# the edge spend time base64-decoding and JSON-parsing megabytes per handshake.
MAX_TOKEN_BYTES: Final = 16 * 1024

AuthReason = Literal[
    "missing",
    "malformed",
    "expired",
    "not_yet_valid",
    "bad_signature",
    "bad_issuer",
    "bad_audience",
    "bad_algorithm",
    "missing_claim",
    "too_large",
    "ambiguous",
    "invalid",
]
AUTH_REASONS: Final[frozenset[str]] = frozenset(get_args(AuthReason))


class TokenSource(StrEnum):
    """Where the credentials of a handshake were found."""

    SUBPROTOCOL = "subprotocol"
    AUTHORIZATION = "authorization"
    QUERY = "query"
    TICKET = "ticket"
    NONE = "none"
    CONFLICT = "conflict"  # two credentials, or one that parsers read differently


@dataclass(frozen=True, slots=True)
class Credentials:
    """What the client presented; unverified. The secrets are kept out of the repr."""

    token: str | None = field(repr=False)
    source: TokenSource
    ticket: str | None = field(default=None, repr=False)


# Subprotocol prefixes that carry a token, in no particular priority: the first
# matching entry in the client's offer order wins.
_TOKEN_PREFIXES: Final = ("jwt.", "jwt-auth.", "bearer.")
# Bare markers the browser offers beside the token entry; echoed when no token entry is offered.
_BARE_PROTOCOLS: Final = frozenset({"jwt-auth", "jwt", "bearer"})
_TOKEN_QUERY_KEYS: Final = ("token", "jwt", "auth_token", "access_token")
_TICKET_QUERY_KEYS: Final = ("ticket", "auth_ticket", "ticket_id")

_B64URL = re.compile(r"[A-Za-z0-9_-]*")
_JWT_SHAPE = re.compile(r"[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+")


def _decode_jwt_subprotocol(value: str) -> str:
    """Unwrap a `jwt.` value: base64url(JWT) without padding, else the value itself."""
    # urlsafe_b64decode silently skips characters outside the alphabet, which
    # could turn garbage into a "valid" decoding; check the alphabet first.
    if not _B64URL.fullmatch(value):
        return value
    try:
        decoded = base64.urlsafe_b64decode(value + "=" * (-len(value) % 4)).decode("utf-8")
    except (binascii.Error, ValueError):  # UnicodeDecodeError is a ValueError
        return value
    return decoded if _JWT_SHAPE.fullmatch(decoded) else value


class _Ambiguous(Exception):
    """The handshake's credentials could be read two ways; see `extract_credentials`."""


# RFC 9110's tchar: a character that continues an auth-scheme name ("Bearerx" is
# another scheme, not Bearer followed by a separator).
_TCHAR = frozenset("!#$%&'*+-.^_`|~0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ")


# Exactly str.isspace, one character at a time (both use Py_UNICODE_ISSPACE), but scanned
# in C: a generator over a token's characters was a twentieth of a handshake.
_SPACE = re.compile(r"\s")


def _splits(text: str) -> bool:
    """Whether some reader could split `text` on whitespace.

    Header bytes that are not UTF-8 reach us surrogate-escaped; a reader decoding them as
    Latin-1 sees 0xA0 as a no-break space, one decoding them as UTF-8 sees C2 A0 so."""
    if text.isascii():
        return _SPACE.search(text) is not None  # every decoding reads ASCII alike
    raw = text.encode("utf-8", "surrogateescape")
    return (
        _SPACE.search(raw.decode("utf-8", "replace")) is not None
        or _SPACE.search(raw.decode("latin-1")) is not None
    )


def _token_from_subprotocol(entry: str) -> str | None:
    entry = entry.strip()
    for prefix in _TOKEN_PREFIXES:
        if entry.startswith(prefix):
            value = entry[len(prefix) :]
            if not value:
                return None  # "jwt." carries nothing
            return _decode_jwt_subprotocol(value) if prefix == "jwt." else value
        if entry[: len(prefix)].lower() == prefix:
            # "JWT-AUTH.<token>": the legacy prefixes are case-sensitive, a backend
            # that compares them otherwise would find a token the proxy did not see.
            raise _Ambiguous
    return None


def _token_from_authorization(value: str) -> str | None:
    """The token of `Bearer <token>`, exactly one space between; None for other schemes.

    Legacy split the field on one space; other readers split on any whitespace, or
    strip it. Only a field that every reading agrees on is read: any other spelling of
    a Bearer field is ambiguous, never quietly ignored, or the proxy and the backend
    could each take a different source as the client's credential.
    """
    value = value.strip(" \t")  # the field's optional whitespace (RFC 9110 5.6.3)
    if value[:6].lower() != "bearer":
        return None
    rest = value[6:]
    if not rest:
        return None  # "Bearer" alone carries nothing, for every reader
    if rest[0] in _TCHAR:
        return None  # another scheme, e.g. "Bearerish"
    if rest[0] == " " and len(rest) > 1 and not _splits(rest[1:]):
        return rest[1:]  # maybe not a JWT at all: verification says so (malformed)
    raise _Ambiguous


def _credentials(
    subprotocols: Sequence[str],
    authorization: Sequence[str],
    query: Iterable[tuple[str, str]],
) -> Credentials:
    tokens: list[tuple[TokenSource, str]] = []
    tickets: list[str] = []
    if len(authorization) > 1:
        raise _Ambiguous  # a singleton field (RFC 9110 11.6.2); readers take either one
    for entry in subprotocols:
        if (token := _token_from_subprotocol(entry)) is not None:
            tokens.append((TokenSource.SUBPROTOCOL, token))
    for value in authorization:
        if (token := _token_from_authorization(value)) is not None:
            tokens.append((TokenSource.AUTHORIZATION, token))
    # The legacy order among the query keys, whatever their order in the URL.
    by_key: dict[str, list[str]] = {}
    for key, value in query:
        if value and (key in _TOKEN_QUERY_KEYS or key in _TICKET_QUERY_KEYS):
            by_key.setdefault(key, []).append(value)
    for key in _TOKEN_QUERY_KEYS:
        tokens.extend((TokenSource.QUERY, value) for value in by_key.get(key, ()))
    for key in _TICKET_QUERY_KEYS:
        tickets.extend(by_key.get(key, ()))
    if len({token for _, token in tokens}) + len(set(tickets)) > 1:
        raise _Ambiguous
    if tokens:
        source, token = tokens[0]
        return Credentials(token, source)
    if tickets:
        return Credentials(None, TokenSource.TICKET, ticket=tickets[0])
    return Credentials(None, TokenSource.NONE)


def extract_credentials(
    subprotocols: Sequence[str],
    authorization: Sequence[str] = (),
    query: Iterable[tuple[str, str]] = (),
) -> Credentials:
    """The client's one credential: a token (or a ticket), wherever legacy looked for it.

    `authorization` holds every Authorization field of the request, `query` every
    (key, value) pair of its query string. The legacy order of sources (subprotocol,
    Authorization, query, ticket; LEGACY_SURFACE.md) only matters where one credential
    is presented in several places. A request presenting two different credentials, or
    one whose reading depends on the parser, is CONFLICT: the backend might authenticate
    another user than the one the flags were evaluated for (docs/SECURITY.md).
    """
    try:
        return _credentials(subprotocols, authorization, query)
    except _Ambiguous:
        return Credentials(None, TokenSource.CONFLICT)


def choose_subprotocol(offered: Sequence[str]) -> str | None:
    """The legacy echo rule: a token entry exactly as offered, else a bare marker, else None."""
    for entry in offered:
        if entry.startswith(_TOKEN_PREFIXES):
            return entry
    for entry in offered:
        if entry in _BARE_PROTOCOLS:
            return entry
    return None


class AuthError(Exception):
    """A token was refused; `reason` is one of `AUTH_REASONS` (a bounded metric label)."""

    reason: AuthReason

    def __init__(self, reason: AuthReason, detail: str = "") -> None:
        # detail comes from pyjwt or from this module and never contains the token.
        super().__init__(f"{reason}: {detail}" if detail else reason)
        self.reason = reason


@dataclass(frozen=True, slots=True)
class Identity:
    """A verified user: the id from the configured claim and the full (read-only) claims."""

    user_id: str
    claims: Mapping[str, Any] = field(repr=False)


# Most specific first: InvalidSignatureError is a DecodeError, and every class
# but InvalidKeyError is an InvalidTokenError.
_ERROR_REASONS: Final[tuple[tuple[type[jwt.PyJWTError], AuthReason], ...]] = (
    (jwt.ExpiredSignatureError, "expired"),
    (jwt.ImmatureSignatureError, "not_yet_valid"),
    (jwt.InvalidSignatureError, "bad_signature"),
    (jwt.InvalidIssuerError, "bad_issuer"),
    (jwt.InvalidAudienceError, "bad_audience"),
    (jwt.InvalidAlgorithmError, "bad_algorithm"),
    (jwt.MissingRequiredClaimError, "missing_claim"),
    (jwt.DecodeError, "malformed"),
)


def _auth_error(exc: jwt.PyJWTError) -> AuthError:
    for exc_type, reason in _ERROR_REASONS:
        if isinstance(exc, exc_type):
            return AuthError(reason, str(exc)[:200])
    return AuthError("invalid", str(exc)[:200])


def _is_hmac(algorithm: str) -> bool:
    return algorithm.upper().startswith("HS")


def _refuse_weak_key(algorithm: Algorithm, prepared_key: Any, allowed: bool = False) -> None:
    # pyjwt only warns, on every sign/verify (and under filterwarnings=error the
    # warning surfaces as an unexpected exception); a weak key is a configuration error,
    # unless the operator accepted it (jwt.allow_short_secret), who hears it once at start
    # (JwtSettings.warnings) rather than on every handshake.
    weak = algorithm.check_key_length(prepared_key)
    if not weak:
        return
    if not allowed:
        raise WeakKeyError(f"jwt: {weak}")
    warnings.filterwarnings("ignore", category=jwt.InsecureKeyLengthWarning)


class _PreparedKey(Algorithm):
    """An allowed algorithm whose key was prepared once, at start, instead of per token.

    pyjwt prepares the key on every decode: for an HMAC secret it checks again that the
    secret is no PEM, SSH, DER or JWK key, the same answer on every handshake (and about a
    tenth of a verification). Only the verifier's own key object gets the prepared key."""

    def __init__(self, algorithm: Algorithm, key: Any, prepared: Any) -> None:
        self._algorithm = algorithm
        self._key = key
        self._prepared = prepared

    def prepare_key(self, key: Any) -> Any:
        return self._prepared if key is self._key else self._algorithm.prepare_key(key)

    def check_key_length(self, key: Any) -> str | None:
        return self._algorithm.check_key_length(key)

    def verify(self, msg: bytes, key: Any, sig: bytes) -> bool:
        return self._algorithm.verify(msg, key, sig)

    def sign(self, msg: bytes, key: Any) -> bytes:
        raise NotImplementedError("a verifier never signs")

    @staticmethod
    def to_jwk(key_obj: Any, as_dict: bool = False) -> Any:
        raise NotImplementedError

    @staticmethod
    def from_jwk(jwk: Any) -> Any:
        raise NotImplementedError


class _ParsedOnce(PyJWS):
    """Reading the header before verifying and verifying read the same token: the second
    reading reuses the first (base64 checks and JSON, a third of a verification)."""

    def __init__(self) -> None:
        super().__init__(algorithms=[])  # only the verifier's own, registered after
        self._last: tuple[str | bytes, Any] | None = None

    def _load(self, jwt: str | bytes) -> tuple[bytes, bytes, dict[str, Any], bytes]:
        last = self._last
        if last is not None and last[0] is jwt:
            return cast(tuple[bytes, bytes, dict[str, Any], bytes], last[1])
        loaded = super()._load(jwt)
        self._last = (jwt, loaded)
        return loaded

    def forget(self) -> None:
        """Drop the last token: it is not kept past its handshake."""
        self._last = None


class JwtVerifier:
    """Verifies JWTs against one `JwtSettings`; construct once, call `verify` per handshake."""

    __slots__ = ("_algorithms", "_audience", "_jws", "_jwt", "_key", "_options", "_settings")

    def __init__(self, settings: JwtSettings) -> None:
        algorithms = settings.algorithms
        if not algorithms:
            raise ValueError("jwt: at least one algorithm is required")
        if any(a.strip().lower() == "none" for a in algorithms):
            raise ValueError('jwt: algorithm "none" is never allowed')
        supported = get_default_algorithms()
        unknown = [a for a in algorithms if a not in supported]
        if unknown:
            raise ValueError(f"jwt: unsupported algorithm(s) {unknown}")
        hmac_algs = [a for a in algorithms if _is_hmac(a)]
        if hmac_algs and len(hmac_algs) != len(algorithms):
            # With both families allowed, a public key could be replayed as an
            # HMAC secret (algorithm confusion); one family per verifier.
            raise ValueError("jwt: HS* algorithms cannot be mixed with asymmetric ones")

        key: Any
        if hmac_algs:
            if not settings.secret:
                raise ValueError("jwt: HS* algorithms need a secret")
            key = settings.secret
        else:
            if not settings.public_key:
                raise ValueError("jwt: asymmetric algorithms need a public_key (PEM)")
            try:
                # Parsed once here rather than on every verify; refuses private keys.
                key = load_pem_public_key(settings.public_key.encode("utf-8"))
            except (ValueError, TypeError) as exc:
                raise ValueError("jwt: public_key is not a PEM public key") from exc

        # pyjwt's decoder with only the allowed algorithms, each holding the prepared key.
        self._jws = _ParsedOnce()
        for name in algorithms:
            algorithm = supported[name]
            try:
                prepared = algorithm.prepare_key(key)
            except (jwt.InvalidKeyError, TypeError, ValueError) as exc:
                # e.g. a PEM used as an HMAC secret, or an RSA key for ES256.
                raise ValueError(f"jwt: the configured key does not fit {name}: {exc}") from exc
            _refuse_weak_key(algorithm, prepared, settings.allow_short_secret)
            self._jws.register_algorithm(name, _PreparedKey(algorithm, key, prepared))
        self._jwt = jwt.PyJWT()
        self._jwt._jws = self._jws  # as pyjwt wires its own module-level decoder

        self._settings = settings
        self._algorithms = list(algorithms)
        self._key = key
        self._audience = list(settings.audience) or None
        self._options: Options = {
            "require": list(settings.required_claims),
            # Without a configured audience, pyjwt would refuse any token that has an aud.
            "verify_aud": bool(settings.audience),
        }

    @property
    def settings(self) -> JwtSettings:
        """The settings this verifier was built from."""
        return self._settings

    def verify(self, token: str) -> Identity:
        """Return the verified identity or raise `AuthError`."""
        if not token:
            raise AuthError("missing")
        if len(token) > MAX_TOKEN_BYTES or len(token.encode("utf-8", "replace")) > MAX_TOKEN_BYTES:
            raise AuthError("too_large", f"token exceeds {MAX_TOKEN_BYTES} bytes")
        if not token.isascii():
            # A JWT is base64url and dots. Other bytes arrive surrogate-escaped from the
            # header decoder and would make pyjwt fail outside its own error types.
            raise AuthError("malformed", "token is not ASCII")
        try:
            header = self._jws.get_unverified_header(token)
            alg = header.get("alg")
            # pyjwt enforces the allow-list too; checking here keeps the refusal
            # independent of pyjwt internals and of the key type.
            if not isinstance(alg, str) or alg not in self._algorithms:
                raise AuthError("bad_algorithm", "token algorithm is not allowed")
            claims = self._jwt.decode(
                token,
                self._key,
                algorithms=self._algorithms,
                options=self._options,
                audience=self._audience,
                issuer=self._settings.issuer,
                leeway=self._settings.leeway,
            )
        except jwt.PyJWTError as exc:
            raise _auth_error(exc) from None
        finally:
            self._jws.forget()
        user = claims.get(self._settings.user_claim)
        if user is None or user == "":
            raise AuthError("missing_claim", f'token has no "{self._settings.user_claim}"')
        # Claims live as long as the connection (flag changes re-evaluate them); their
        # names are the same on every token, so one interned copy serves them all.
        kept = {sys.intern(name): value for name, value in claims.items()}
        return Identity(user_id=str(user), claims=MappingProxyType(kept))


def mint_token(
    secret: str,
    user_id: str,
    *,
    issuer: str = "netra-auth-service",
    audience: str = "netra-platform",
    ttl: float = 3600.0,
    extra: Mapping[str, Any] | None = None,
) -> str:
    """Mint an HS256 access token shaped like the legacy auth service's (demo and tests).

    `extra` is merged last, so it may override any standard claim. Raises ValueError for
    a secret pyjwt considers too short for HS256 (under 32 bytes) or shaped like a PEM key.
    """
    hs256 = get_default_algorithms()["HS256"]
    try:
        prepared = hs256.prepare_key(secret)
    except jwt.InvalidKeyError as exc:
        raise ValueError(f"jwt: unusable HS256 secret: {exc}") from exc
    _refuse_weak_key(hs256, prepared)
    now = int(time.time())
    claims: dict[str, Any] = {
        "sub": user_id,
        "exp": int(now + ttl),
        "iat": now,
        "iss": issuer,
        "aud": audience,
        "jti": uuid.uuid4().hex,
        "token_type": "access",
    }
    if extra:
        claims.update(extra)
    return jwt.encode(claims, secret, algorithm="HS256")
