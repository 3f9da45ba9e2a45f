"""Bucketing: MurmurHash3 x86_32 (seed 0, unsigned) of UTF-8 "<flag>:<user>", scaled to 0..9999.

Expected values are cross-checked against an independent pure-Python MurmurHash3 below, so a
wrong seed, sign, encoding or key layout in the product fails here.
"""

from __future__ import annotations

import random

import mmh3
import pytest

from strangler.flags.bucketing import bucket

_MASK = 0xFFFFFFFF


def _rotl(x: int, r: int) -> int:
    return ((x << r) | (x >> (32 - r))) & _MASK


def reference_murmur3_x86_32(data: bytes, seed: int = 0) -> int:
    """MurmurHash3_x86_32 as in Austin Appleby's reference C code, unsigned result."""
    c1, c2 = 0xCC9E2D51, 0x1B873593
    h = seed & _MASK
    body = len(data) // 4 * 4
    for i in range(0, body, 4):
        k = int.from_bytes(data[i : i + 4], "little")
        k = (_rotl((k * c1) & _MASK, 15) * c2) & _MASK
        h = (_rotl(h ^ k, 13) * 5 + 0xE6546B64) & _MASK
    tail = data[body:]
    if tail:
        k = int.from_bytes(tail, "little")
        h ^= (_rotl((k * c1) & _MASK, 15) * c2) & _MASK
    h ^= len(data)
    h ^= h >> 16
    h = (h * 0x85EBCA6B) & _MASK
    h ^= h >> 13
    h = (h * 0xC2B2AE35) & _MASK
    h ^= h >> 16
    return h


def reference_bucket(flag_key: str, user_id: str) -> int:
    return (reference_murmur3_x86_32(f"{flag_key}:{user_id}".encode()) * 10000) >> 32


# (flag key, user id, unsigned hash of "<flag>:<user>", bucket); covers every tail length
# and multi-byte UTF-8 (2, 3 and 4 bytes per character).
VECTORS = [
    ("unified_router", "alice", 34281889, 79),
    ("unified_router", "bob", 4270878935, 9943),
    ("unified_router", "42", 1426387189, 3321),
    ("checkout", "user-7", 1345107189, 3131),
    ("unified_router", "josé", 3180063773, 7404),
    ("unified_router", "用户", 3530234911, 8219),
    ("unified_router", "😀", 317866405, 740),
    ("a", "b", 2722392131, 6338),
]


@pytest.mark.parametrize(
    ("data", "expected"),
    [(b"", 0), (b"hello", 613153351), (b"a", 1009084850), (b"abcd", 1139631978)],
)
def test_reference_implementation_matches_published_murmur3_values(
    data: bytes, expected: int
) -> None:
    assert reference_murmur3_x86_32(data) == expected
    assert mmh3.hash(data, 0, signed=False) == expected


@pytest.mark.parametrize(("flag_key", "user_id", "hashed", "expected"), VECTORS)
def test_bucket_matches_pinned_vectors_checked_by_reference(
    flag_key: str, user_id: str, hashed: int, expected: int
) -> None:
    assert reference_murmur3_x86_32(f"{flag_key}:{user_id}".encode()) == hashed
    assert (hashed * 10000) >> 32 == expected
    assert bucket(flag_key, user_id) == expected


def test_bucket_agrees_with_reference_on_random_ids() -> None:
    rng = random.Random(20240611)
    alphabet = "abcXYZ019_-:é用😀"
    for _ in range(2000):
        user = "".join(rng.choice(alphabet) for _ in range(rng.randrange(0, 24)))
        assert bucket("unified_router", user) == reference_bucket("unified_router", user)


def test_bucket_depends_on_the_flag_key() -> None:
    users = [f"user-{i}" for i in range(200)]
    assert [bucket("a", u) for u in users] != [bucket("b", u) for u in users]


def test_bucket_is_always_within_basis_points() -> None:
    assert all(0 <= bucket("unified_router", f"u{i}") <= 9999 for i in range(10000))


def test_bucket_scales_the_full_hash_range_to_0_through_9999(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(mmh3, "hash", lambda *_args, **_kw: 0xFFFFFFFF)
    assert bucket("f", "u") == 9999
    monkeypatch.setattr(mmh3, "hash", lambda *_args, **_kw: 0)
    assert bucket("f", "u") == 0


def test_bucket_of_id_with_lone_surrogate_is_deterministic_and_does_not_crash() -> None:
    # A JSON token may carry "\ud800"; mmh3 given such a str dereferences NULL.
    user = "a\ud800b"
    expected = (
        reference_murmur3_x86_32("f:a\ud800b".encode("utf-8", "surrogatepass")) * 10000
    ) >> 32
    assert bucket("f", user) == expected == bucket("f", user)
