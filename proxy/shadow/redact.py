"""Redaction of stored transcripts: no credentials, no user ids, no configured fields.

Mismatch samples keep the events of both sides so a person can see what differed; they
must not become a store of tokens or personal data. Pure. The policy, rule by rule
(docs/SECURITY.md repeats it):

1. **Identity and secret keys.** A key is compared after lowercasing and dropping
   ``_``, ``-``, ``.`` and spaces, so ``userId``, ``USER_ID``, ``user-id`` and
   ``user.id`` are one key. Its value (whatever its type) is replaced when the key is
   one of `SECRET_KEYS` or ends with one of `SECRET_SUFFIXES` (``legacyUserId``,
   ``csrfToken``), at any depth, in lists too.
2. **The connection's user id, wherever it appears.** Every string (values and keys)
   has each whole-token occurrence of the connection's identities replaced, case
   aside: ``alice``, ``Alice's session``, ``/users/alice/`` and ``alice@x`` all lose
   ``alice``, while ``malice`` keeps it (a token ends where a letter or digit does not
   follow). An integer equal to a user id is replaced too. The identities are passed
   in per connection (the verified user id, and a ``/ws/{user_id}`` path's value);
   they are never stored beyond the connection, nor used as a metric label.
3. **Tokens by their shape.** A string that looks like a JWT (``eyJ...``) is replaced
   wherever it appears, before rule 2.
4. **Configured paths.** ``shadow.redact`` lists dotted event paths
   (``data.parameters.query``) whose values are blanked.

The marker is ``[redacted]``, unless a user id could be read into it (an id that is
part of the word, or contains a bracket): then one of the fallbacks, so the output
never contains an id, not even across a marker's edge.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

REDACTED = "[redacted]"

# When an id fits into "[redacted]" (e.g. "act", "[x]"): markers no id is likely to
# meet; each has non-alphanumeric edges, so a token next to it stays a token.
_FALLBACK_MARKERS = ("***", "~~~", "###")

# Normalised key names (see `normalise_key`) whose values are identities or credentials.
SECRET_KEYS = frozenset(
    {
        # who the user is
        "userid",
        "uid",
        "sub",
        "user",
        "username",
        "login",
        "email",
        "emailaddress",
        "accountid",
        "principal",
        # what proves it
        "token",
        "accesstoken",
        "refreshtoken",
        "idtoken",
        "authtoken",
        "sessiontoken",
        "bearer",
        "jwt",
        "ticket",
        "auth",
        "authorization",
        "proxyauthorization",
        "password",
        "passwd",
        "pwd",
        "secret",
        "clientsecret",
        "apikey",
        "cookie",
        "setcookie",
        "session",
        "sessionid",
        "credential",
        "credentials",
        "privatekey",
    }
)

# A normalised key ending with one of these is a secret key too (xUserId, csrfToken).
SECRET_SUFFIXES = ("userid", "username", "token", "password", "secret", "apikey", "sessionid")

_SEPARATORS = str.maketrans("", "", "_-. ")

# Three base64url segments, the first two JSON objects: a JWT (signed or not).
_JWT = re.compile(r"eyJ[A-Za-z0-9_-]+\.eyJ[A-Za-z0-9_-]*\.[A-Za-z0-9_-]*")


def normalise_key(key: str) -> str:
    """A key as the secret-key rule compares it: lowercase, without ``_-.`` and spaces."""
    return key.lower().translate(_SEPARATORS)


def is_secret_key(key: str) -> bool:
    """Whether a key's value is an identity or a credential, wherever it appears."""
    name = normalise_key(key)
    return name in SECRET_KEYS or name.endswith(SECRET_SUFFIXES)


def connection_identities(
    user_id: str | None, route_path: str = "", request_path: str = ""
) -> tuple[str, ...]:
    """What a connection's transcript must not contain: its verified user id, and the
    values of its route's ``{param}`` segments (``/ws/{user_id}``: the id in the path)."""
    found = [user_id] if user_id else []
    pattern, given = route_path.strip("/").split("/"), request_path.strip("/").split("/")
    if "{" in route_path and len(pattern) == len(given):
        found += [value for part, value in zip(pattern, given, strict=True) if part[:1] == "{"]
    return tuple(dict.fromkeys(value for value in found if value.strip()))


@dataclass(frozen=True, slots=True)
class Redactor:
    """Redacts one connection's events: configured `paths`, secret keys, and the
    connection's `identities` wherever they appear."""

    paths: tuple[str, ...] = ()
    identities: tuple[str, ...] = ()
    marker: str = field(init=False)
    _ids: re.Pattern[str] | None = field(init=False)

    def __post_init__(self) -> None:
        ids = sorted({i for i in self.identities if i.strip()}, key=len, reverse=True)
        object.__setattr__(self, "marker", _marker(ids))
        object.__setattr__(self, "_ids", _token_pattern(ids) if ids else None)

    def __call__(self, event: Any) -> Any:
        """A redacted copy of `event` (the input is left as it is)."""
        cleaned = self._scrub(event)
        for path in self.paths:
            _replace(cleaned, path.split("."), self.marker)
        return cleaned

    def text(self, value: str) -> str:
        """`value` with tokens and the connection's identities replaced."""
        value = _JWT.sub(self.marker, value)
        if self._ids is None:
            return value
        if not self.marker:
            # No marker fits these ids: joining the pieces around a removed id could
            # make another one, so nothing of a string that had one is kept.
            return "" if self._ids.search(value) else value
        return self._ids.sub(self.marker, value)

    def _scrub(self, value: Any) -> Any:
        if isinstance(value, Mapping):
            out: dict[Any, Any] = {}
            for key, item in value.items():
                name = self.text(key) if isinstance(key, str) else key
                while name in out:  # two keys that only differed by an id stay two
                    name = f"{name}{self.marker or '_'}"
                secret = isinstance(key, str) and is_secret_key(key)
                out[name] = self.marker if secret else self._scrub(item)
            return out
        if isinstance(value, list | tuple):
            return [self._scrub(item) for item in value]
        if isinstance(value, str):
            return self.text(value)
        if isinstance(value, int | float) and not isinstance(value, bool) and self._ids:
            # A number is read as its text: 42 for the user "42".
            return self.marker if self._ids.search(str(value)) else value
        return value


def redact(event: Any, paths: Iterable[str] = (), identities: Iterable[str] = ()) -> Any:
    """A copy of `event` redacted by every rule above (one-off; a tee keeps a Redactor)."""
    return Redactor(tuple(paths), tuple(identities))(event)


def _token_pattern(ids: list[str]) -> re.Pattern[str]:
    """Each id as a whole token: no letter or digit right before an id that starts with
    one, nor right after an id that ends with one. Longest first, any case."""
    alternatives = []
    for i in ids:
        before = r"(?<![^\W_])" if _word(i[0]) else ""
        after = r"(?![^\W_])" if _word(i[-1]) else ""
        alternatives.append(before + re.escape(i) + after)
    return re.compile("|".join(alternatives), re.IGNORECASE)


def _word(char: str) -> bool:
    return char.isalnum()


def _marker(ids: list[str]) -> str:
    """The first marker no id can be read into or across: an id must not be part of it,
    nor share its bracket (every id inside or across "[redacted]" needs one or the
    other); the fallbacks are single repeated symbols, so only an id containing that
    symbol could."""
    folded = [i.casefold() for i in ids]
    if not any(i in REDACTED or "[" in i or "]" in i for i in folded):
        return REDACTED
    for marker in _FALLBACK_MARKERS:
        if not any(marker[0] in i for i in folded):
            return marker
    return ""  # ids made of every fallback's symbol: `text` then drops whole strings


def _replace(value: Any, parts: list[str], marker: str) -> None:
    if not isinstance(value, dict) or not parts or parts[0] not in value:
        return
    if len(parts) == 1:
        value[parts[0]] = marker
    else:
        _replace(value[parts[0]], parts[1:], marker)
