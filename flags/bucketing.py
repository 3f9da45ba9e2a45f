"""Deterministic user buckets: every proxy instance puts a user in the same bucket.

bucket = (MurmurHash3_x86_32(seed 0, unsigned) of UTF-8 "<flag key>:<user id>" * 10000) >> 32,
so buckets are basis points 0..9999. Keying on the flag spreads each flag's rollout
over a different slice of users.
"""

from __future__ import annotations

import mmh3

from strangler.flags.model import BASIS_POINTS


def bucket(flag_key: str, user_id: str) -> int:
    """Return the user's bucket for this flag, in basis points (0..9999)."""
    key = f"{flag_key}:{user_id}"
    try:
        # Hash bytes, never str: mmh3 5.x crashes the process (NULL dereference) on a str
        # it cannot encode, and a JSON token can carry a lone surrogate ("\ud800").
        data = key.encode()
    except UnicodeEncodeError:
        # Not valid Unicode, so no UTF-8 exists; surrogatepass is still deterministic.
        data = key.encode("utf-8", "surrogatepass")
    return (mmh3.hash(data, 0, False) * BASIS_POINTS) >> 32  # seed 0, unsigned
