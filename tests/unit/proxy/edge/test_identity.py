"""Unit tests for proxy.identity: credential extraction, subprotocol echo, JWT verification."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import time
from typing import Any

import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from strangler.proxy.edge.identity import (
    AUTH_REASONS,
    AuthError,
    Credentials,
    Identity,
    JwtSettings,
    JwtVerifier,
    TokenSource,
    choose_subprotocol,
    extract_credentials,
    mint_token,
)

SECRET = "unit-test-secret-that-is-at-least-32-bytes-long"
ISSUER = "netra-auth-service"
AUDIENCE = "netra-platform"
JWT_A = "aaa.bbb.ccc"  # shape-only stand-ins; extraction never verifies
JWT_B = "ddd.eee.fff"


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def hs_settings(**overrides: Any) -> JwtSettings:
    base: dict[str, Any] = {
        "secret": SECRET,
        "issuer": ISSUER,
        "audience": (AUDIENCE,),
    }
    base.update(overrides)
    return JwtSettings(**base)


def hand_made_token(header: dict[str, Any], claims: dict[str, Any], key: bytes | None) -> str:
    """Build a compact JWS without pyjwt's guards (for hostile tokens)."""
    signing_input = f"{b64url(json.dumps(header).encode())}.{b64url(json.dumps(claims).encode())}"
    signature = b""
    if key is not None:
        signature = hmac.new(key, signing_input.encode(), hashlib.sha256).digest()
    return f"{signing_input}.{b64url(signature)}"


def standard_claims(**overrides: Any) -> dict[str, Any]:
    now = int(time.time())
    claims: dict[str, Any] = {
        "sub": "user-1",
        "exp": now + 3600,
        "iat": now,
        "iss": ISSUER,
        "aud": AUDIENCE,
    }
    claims.update(overrides)
    return claims


@pytest.fixture(scope="module")
def rsa_private_key() -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


@pytest.fixture(scope="module")
def rsa_public_pem(rsa_private_key: rsa.RSAPrivateKey) -> str:
    return (
        rsa_private_key.public_key()
        .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
        .decode("ascii")
    )


# --- extract_credentials -------------------------------------------------------------

CONFLICT = Credentials(None, TokenSource.CONFLICT)


def query(**pairs: str) -> list[tuple[str, str]]:
    return list(pairs.items())


@pytest.mark.parametrize("prefix", ["jwt-auth.", "bearer."])
def test_subprotocol_jwt_auth_and_bearer_values_are_used_raw(prefix: str) -> None:
    creds = extract_credentials([prefix + JWT_A])
    assert creds == Credentials(JWT_A, TokenSource.SUBPROTOCOL)


def test_subprotocol_jwt_value_is_base64url_decoded_without_padding() -> None:
    token = mint_token(SECRET, "user-1")
    encoded = b64url(token.encode())
    assert "=" not in encoded
    creds = extract_credentials(["jwt." + encoded])
    assert creds == Credentials(token, TokenSource.SUBPROTOCOL)


def test_browser_offer_yields_the_decoded_jwt() -> None:
    token = mint_token(SECRET, "browser-user")
    offer = ["jwt-auth", "jwt." + b64url(token.encode())]
    creds = extract_credentials(offer)
    assert creds.source is TokenSource.SUBPROTOCOL
    assert creds.token == token
    assert JwtVerifier(hs_settings()).verify(creds.token).user_id == "browser-user"


def test_subprotocol_jwt_value_holding_a_raw_jwt_is_used_raw() -> None:
    # Dots are outside the base64url alphabet, so an undecoded JWT is kept as is.
    assert extract_credentials(["jwt." + JWT_A]).token == JWT_A


def test_subprotocol_jwt_value_decoding_to_non_jwt_is_used_raw() -> None:
    value = b64url(b"hello world, not a token")
    assert extract_credentials(["jwt." + value]).token == value


def test_subprotocol_jwt_value_decoding_to_invalid_utf8_is_used_raw() -> None:
    value = b64url(b"\xff\xfe\xfd")
    assert extract_credentials(["jwt." + value]).token == value


@pytest.mark.parametrize("value", ["a", "abcde", "!!!!", "ab=c", "%%%", "a.b"])
def test_subprotocol_jwt_malformed_base64_does_not_raise_and_is_used_raw(value: str) -> None:
    assert extract_credentials(["jwt." + value]).token == value


def test_the_same_token_offered_twice_is_one_credential() -> None:
    creds = extract_credentials(["chat", "bearer." + JWT_A, "jwt." + b64url(JWT_A.encode())])
    assert creds == Credentials(JWT_A, TokenSource.SUBPROTOCOL)


def test_empty_subprotocol_token_is_skipped() -> None:
    creds = extract_credentials(["jwt-auth.", "bearer." + JWT_B])
    assert creds.token == JWT_B


def test_bare_subprotocols_carry_no_token() -> None:
    creds = extract_credentials(["jwt-auth", "jwt", "bearer"])
    assert creds == Credentials(None, TokenSource.NONE)


@pytest.mark.parametrize("entry", ["JWT-AUTH.", "Bearer.", "Jwt."])
def test_a_token_prefix_in_another_case_is_ambiguous(entry: str) -> None:
    # Legacy compared the prefixes case-sensitively; a reader that does not would
    # find a token the proxy ignored.
    assert extract_credentials([entry + JWT_A]) == CONFLICT


@pytest.mark.parametrize(
    "value", ["Bearer " + JWT_A, "bearer " + JWT_A, "BEARER " + JWT_A, "  Bearer " + JWT_A + "\t"]
)
def test_authorization_bearer_is_parsed_case_insensitively(value: str) -> None:
    creds = extract_credentials([], [value])
    assert creds == Credentials(JWT_A, TokenSource.AUTHORIZATION)


@pytest.mark.parametrize(
    "value", ["Basic dXNlcjpwYXNz", "Bearer", "Bearer   ", "", JWT_A, "Bearerish " + JWT_A]
)
def test_authorization_without_a_bearer_token_is_ignored(value: str) -> None:
    creds = extract_credentials([], [value])
    assert creds == Credentials(None, TokenSource.NONE)


@pytest.mark.parametrize(
    "separator",
    ["\t", "  ", "\u00a0", "\u2003", "\x0b", "\x0c", " \t", "\u3000", "\r"],
    ids=repr,
)
def test_a_bearer_field_split_other_than_by_one_space_is_ambiguous(separator: str) -> None:
    # Legacy split on one space, other readers on any whitespace: each would read
    # another credential (or none), so the field is refused rather than guessed.
    assert extract_credentials([], ["Bearer" + separator + JWT_A]) == CONFLICT


@pytest.mark.parametrize("tail", [" extra", "\u00a0", "\udca0", "\udcc2\udca0", " " + JWT_B])
def test_a_bearer_token_followed_by_more_is_ambiguous(tail: str) -> None:
    assert extract_credentials([], ["Bearer " + JWT_A + tail]) == CONFLICT


@pytest.mark.parametrize("token", ["\udcff\udcfe.e30.sig", "a,b", "%%%"])
def test_a_bearer_token_that_is_not_a_jwt_is_still_the_token(token: str) -> None:
    # Every reader finds the same (bad) token; verification refuses it as malformed.
    assert extract_credentials([], ["Bearer " + token]).token == token


def test_two_authorization_fields_are_ambiguous_even_when_equal() -> None:
    assert extract_credentials([], ["Bearer " + JWT_A, "Bearer " + JWT_A]) == CONFLICT


@pytest.mark.parametrize("name", ["token", "jwt", "auth_token", "access_token"])
def test_each_token_query_parameter_is_accepted(name: str) -> None:
    creds = extract_credentials([], [], [(name, JWT_A)])
    assert creds == Credentials(JWT_A, TokenSource.QUERY)


def test_empty_query_token_is_treated_as_absent() -> None:
    assert extract_credentials([], [], query(token="", jwt=JWT_B)).token == JWT_B


@pytest.mark.parametrize("name", ["ticket", "auth_ticket", "ticket_id"])
def test_each_ticket_query_parameter_yields_a_ticket(name: str) -> None:
    creds = extract_credentials([], [], [(name, "tk-1")])
    assert creds == Credentials(None, TokenSource.TICKET, ticket="tk-1")


def test_one_token_in_every_place_is_one_credential_from_the_first_source() -> None:
    creds = extract_credentials(
        ["jwt-auth", "jwt." + b64url(JWT_A.encode())],
        ["Bearer " + JWT_A],
        query(token=JWT_A, access_token=JWT_A),
    )
    assert creds == Credentials(JWT_A, TokenSource.SUBPROTOCOL)
    creds = extract_credentials([], ["Bearer " + JWT_A], query(jwt=JWT_A))
    assert creds == Credentials(JWT_A, TokenSource.AUTHORIZATION)


# Every pair of places a credential can come from, each holding another one.
SOURCES = {
    "subprotocol": lambda v: (["bearer." + v], [], []),
    "subprotocol-jwt": lambda v: (["jwt." + b64url(v.encode())], [], []),
    "authorization": lambda v: ([], ["Bearer " + v], []),
    "token": lambda v: ([], [], [("token", v)]),
    "jwt": lambda v: ([], [], [("jwt", v)]),
    "auth_token": lambda v: ([], [], [("auth_token", v)]),
    "access_token": lambda v: ([], [], [("access_token", v)]),
    "ticket": lambda v: ([], [], [("ticket", v)]),
    "auth_ticket": lambda v: ([], [], [("auth_ticket", v)]),
    "ticket_id": lambda v: ([], [], [("ticket_id", v)]),
}


@pytest.mark.parametrize(
    ("first", "second"),
    [(a, b) for a in SOURCES for b in SOURCES],
)
def test_two_different_credentials_in_any_two_places_are_ambiguous(first: str, second: str) -> None:
    p1, a1, q1 = SOURCES[first](JWT_A)
    p2, a2, q2 = SOURCES[second](JWT_B)
    if first == second == "authorization":
        assert extract_credentials([], a1 + a2) == CONFLICT
        return
    # Both orders of the query string: the legacy order of keys must not decide it.
    assert extract_credentials(p1 + p2, a1 + a2, q1 + q2) == CONFLICT
    assert extract_credentials(p2 + p1, a2 + a1, q2 + q1) == CONFLICT


def test_a_token_beside_a_ticket_is_ambiguous() -> None:
    # Only the issuer knows whose the ticket is; a backend that redeems it first
    # would serve that user, whatever the token says.
    assert extract_credentials([], [], query(ticket="tk", access_token=JWT_A)) == CONFLICT


def test_no_credentials_yields_source_none() -> None:
    assert extract_credentials([]) == Credentials(None, TokenSource.NONE)


def test_credentials_repr_hides_token_and_ticket() -> None:
    text = repr(Credentials("secret-token", TokenSource.QUERY, ticket="secret-ticket"))
    assert "secret-token" not in text
    assert "secret-ticket" not in text


# --- choose_subprotocol ----------------------------------------------------------------


def test_choose_subprotocol_echoes_the_browser_token_entry_exactly() -> None:
    entry = "jwt." + b64url(mint_token(SECRET, "u").encode())
    assert choose_subprotocol(["jwt-auth", entry]) == entry


@pytest.mark.parametrize(
    ("offered", "expected"),
    [
        (["chat", "bearer.x", "jwt.y"], "bearer.x"),
        (["jwt-auth.abc"], "jwt-auth.abc"),
        (["jwt", "jwt-auth"], "jwt"),
        (["chat", "bearer", "jwt-auth"], "bearer"),
        (["jwt-auth"], "jwt-auth"),
    ],
)
def test_choose_subprotocol_prefers_token_entries_then_first_bare_marker(
    offered: list[str], expected: str
) -> None:
    assert choose_subprotocol(offered) == expected


@pytest.mark.parametrize("offered", [[], ["chat"], ["graphql-ws", "JWT", "jwtx"]])
def test_choose_subprotocol_returns_none_without_a_known_entry(offered: list[str]) -> None:
    assert choose_subprotocol(offered) is None


# --- JwtVerifier -------------------------------------------------------------------------


def assert_refused(verifier: JwtVerifier, token: str, reason: str) -> None:
    with pytest.raises(AuthError) as info:
        verifier.verify(token)
    assert info.value.reason == reason
    assert reason in AUTH_REASONS


def test_valid_hs256_token_yields_identity_with_claims() -> None:
    token = mint_token(SECRET, "user-42", extra={"role": "admin"})
    identity = JwtVerifier(hs_settings()).verify(token)
    assert identity.user_id == "user-42"
    assert identity.claims["role"] == "admin"
    assert identity.claims["token_type"] == "access"
    assert identity.claims["iss"] == ISSUER


def test_identity_claims_are_read_only() -> None:
    identity = JwtVerifier(hs_settings()).verify(mint_token(SECRET, "u"))
    with pytest.raises(TypeError):
        identity.claims["sub"] = "someone-else"  # type: ignore[index]


def test_valid_rs256_token_is_accepted(
    rsa_private_key: rsa.RSAPrivateKey, rsa_public_pem: str
) -> None:
    token = jwt.encode(standard_claims(sub="rsa-user"), rsa_private_key, algorithm="RS256")
    verifier = JwtVerifier(
        JwtSettings(algorithms=("RS256",), public_key=rsa_public_pem, audience=(AUDIENCE,))
    )
    assert verifier.verify(token).user_id == "rsa-user"


def test_rs256_token_signed_by_another_key_is_bad_signature(rsa_public_pem: str) -> None:
    other = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    token = jwt.encode(standard_claims(), other, algorithm="RS256")
    verifier = JwtVerifier(
        JwtSettings(algorithms=("RS256",), public_key=rsa_public_pem, audience=(AUDIENCE,))
    )
    assert_refused(verifier, token, "bad_signature")


def test_expired_token_is_refused() -> None:
    token = mint_token(SECRET, "u", ttl=-120)
    assert_refused(JwtVerifier(hs_settings()), token, "expired")


def test_token_with_future_nbf_is_not_yet_valid() -> None:
    token = mint_token(SECRET, "u", extra={"nbf": int(time.time()) + 600})
    assert_refused(JwtVerifier(hs_settings()), token, "not_yet_valid")


def test_leeway_accepts_recently_expired_token() -> None:
    token = mint_token(SECRET, "u", ttl=-10)
    assert JwtVerifier(hs_settings(leeway=30.0)).verify(token).user_id == "u"
    assert_refused(JwtVerifier(hs_settings(leeway=0.0)), token, "expired")


def test_leeway_accepts_slightly_early_nbf() -> None:
    token = mint_token(SECRET, "u", extra={"nbf": int(time.time()) + 10})
    assert JwtVerifier(hs_settings(leeway=30.0)).verify(token).user_id == "u"


def test_wrong_issuer_is_refused() -> None:
    token = mint_token(SECRET, "u", issuer="someone-else")
    assert_refused(JwtVerifier(hs_settings()), token, "bad_issuer")


def test_issuer_is_not_checked_when_unset() -> None:
    token = mint_token(SECRET, "u", issuer="anyone")
    assert JwtVerifier(hs_settings(issuer=None)).verify(token).user_id == "u"


def test_wrong_audience_is_refused() -> None:
    token = mint_token(SECRET, "u", audience="other-platform")
    assert_refused(JwtVerifier(hs_settings()), token, "bad_audience")


def test_any_audience_in_the_allowed_set_is_accepted() -> None:
    verifier = JwtVerifier(hs_settings(audience=("netra-platform", "netra-staging")))
    token = mint_token(SECRET, "u", audience="netra-staging")
    assert verifier.verify(token).user_id == "u"


def test_audience_is_not_checked_when_unset() -> None:
    token = mint_token(SECRET, "u", audience="whatever")
    assert JwtVerifier(hs_settings(audience=())).verify(token).user_id == "u"


def test_missing_audience_is_refused_when_audience_is_configured() -> None:
    claims = standard_claims()
    del claims["aud"]
    token = jwt.encode(claims, SECRET, algorithm="HS256")
    assert_refused(JwtVerifier(hs_settings()), token, "missing_claim")


def test_alg_none_token_is_refused() -> None:
    token = hand_made_token({"alg": "none", "typ": "JWT"}, standard_claims(), key=None)
    assert token.endswith(".")
    assert_refused(JwtVerifier(hs_settings()), token, "bad_algorithm")


def test_token_without_alg_header_is_refused() -> None:
    token = hand_made_token({"typ": "JWT"}, standard_claims(), key=SECRET.encode())
    assert_refused(JwtVerifier(hs_settings()), token, "bad_algorithm")


def test_token_signed_with_wrong_secret_is_bad_signature() -> None:
    token = mint_token("another-secret-that-is-also-32-bytes-long!", "u")
    assert_refused(JwtVerifier(hs_settings()), token, "bad_signature")


def test_hs256_token_signed_with_rsa_public_key_is_refused_by_rs256_verifier(
    rsa_public_pem: str,
) -> None:
    # Algorithm confusion: the attacker knows the public key and uses it as the HMAC secret.
    token = hand_made_token(
        {"alg": "HS256", "typ": "JWT"}, standard_claims(), key=rsa_public_pem.encode()
    )
    verifier = JwtVerifier(
        JwtSettings(algorithms=("RS256",), public_key=rsa_public_pem, audience=(AUDIENCE,))
    )
    assert_refused(verifier, token, "bad_algorithm")


def test_hs384_token_is_refused_by_hs256_only_verifier() -> None:
    token = jwt.encode(standard_claims(), SECRET + "-padding-to-48-bytes", algorithm="HS384")
    assert_refused(JwtVerifier(hs_settings()), token, "bad_algorithm")


def test_token_over_16_kib_is_too_large() -> None:
    token = mint_token(SECRET, "u", extra={"blob": "x" * (100 * 1024)})
    assert len(token) > 100 * 1024
    assert_refused(JwtVerifier(hs_settings()), token, "too_large")


def test_token_just_under_16_kib_is_verified() -> None:
    token = mint_token(SECRET, "u", extra={"blob": "x" * (11 * 1024)})
    assert len(token) < 16 * 1024
    assert JwtVerifier(hs_settings()).verify(token).user_id == "u"


@pytest.mark.parametrize("token", ["not-a-jwt", "a.b", "a.b.c", "!!!.???.***"])
def test_garbage_token_is_malformed(token: str) -> None:
    assert_refused(JwtVerifier(hs_settings()), token, "malformed")


def test_empty_token_is_missing() -> None:
    assert_refused(JwtVerifier(hs_settings()), "", "missing")


def test_missing_sub_is_missing_claim() -> None:
    claims = standard_claims()
    del claims["sub"]
    token = jwt.encode(claims, SECRET, algorithm="HS256")
    assert_refused(JwtVerifier(hs_settings()), token, "missing_claim")


def test_empty_sub_is_missing_claim() -> None:
    token = mint_token(SECRET, "")
    assert_refused(JwtVerifier(hs_settings()), token, "missing_claim")


def test_missing_required_exp_is_missing_claim() -> None:
    claims = standard_claims()
    del claims["exp"]
    token = jwt.encode(claims, SECRET, algorithm="HS256")
    assert_refused(JwtVerifier(hs_settings()), token, "missing_claim")


def test_additional_required_claims_are_enforced() -> None:
    token = mint_token(SECRET, "u")
    verifier = JwtVerifier(hs_settings(required_claims=("exp", "tenant")))
    assert_refused(verifier, token, "missing_claim")


def test_custom_user_claim_is_used_as_user_id() -> None:
    token = mint_token(SECRET, "subject", extra={"user_id": 1234})
    identity = JwtVerifier(hs_settings(user_claim="user_id")).verify(token)
    assert identity == Identity(user_id="1234", claims=identity.claims)


def test_missing_custom_user_claim_is_missing_claim() -> None:
    token = mint_token(SECRET, "subject")
    assert_refused(JwtVerifier(hs_settings(user_claim="user_id")), token, "missing_claim")


def test_auth_error_message_does_not_contain_the_token() -> None:
    token = mint_token(SECRET, "u", ttl=-120)
    with pytest.raises(AuthError) as info:
        JwtVerifier(hs_settings()).verify(token)
    assert token not in str(info.value)
    assert str(info.value).startswith("expired")


# --- JwtVerifier construction ----------------------------------------------------------


@pytest.mark.parametrize("algorithms", [("none",), ("HS256", "none"), ("NONE",)])
def test_verifier_refuses_alg_none_in_allow_list(algorithms: tuple[str, ...]) -> None:
    with pytest.raises(ValueError, match="none"):
        JwtVerifier(hs_settings(algorithms=algorithms))


def test_verifier_refuses_empty_algorithm_list() -> None:
    with pytest.raises(ValueError):
        JwtVerifier(hs_settings(algorithms=()))


def test_verifier_refuses_unknown_algorithm() -> None:
    with pytest.raises(ValueError, match="unsupported"):
        JwtVerifier(hs_settings(algorithms=("HS999",)))


def test_verifier_refuses_hs_without_secret() -> None:
    with pytest.raises(ValueError, match="secret"):
        JwtVerifier(JwtSettings(algorithms=("HS256",)))


def test_verifier_refuses_asymmetric_without_public_key() -> None:
    with pytest.raises(ValueError, match="public_key"):
        JwtVerifier(JwtSettings(algorithms=("RS256",), secret=SECRET))


def test_verifier_refuses_mixing_hs_with_asymmetric_algorithms(rsa_public_pem: str) -> None:
    with pytest.raises(ValueError, match="mixed"):
        JwtVerifier(
            JwtSettings(algorithms=("HS256", "RS256"), secret=SECRET, public_key=rsa_public_pem)
        )


def test_verifier_refuses_public_key_pem_as_hmac_secret(rsa_public_pem: str) -> None:
    with pytest.raises(ValueError, match="HS256"):
        JwtVerifier(JwtSettings(algorithms=("HS256",), secret=rsa_public_pem))


def test_verifier_refuses_hmac_secret_shorter_than_the_hash() -> None:
    with pytest.raises(ValueError, match="HMAC key"):
        JwtVerifier(JwtSettings(secret="short"))


def test_verifier_refuses_malformed_public_key() -> None:
    with pytest.raises(ValueError, match="PEM"):
        JwtVerifier(JwtSettings(algorithms=("RS256",), public_key="not a pem"))


def test_verifier_refuses_private_key_as_public_key(rsa_private_key: rsa.RSAPrivateKey) -> None:
    private_pem = rsa_private_key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    ).decode("ascii")
    with pytest.raises(ValueError, match="PEM"):
        JwtVerifier(JwtSettings(algorithms=("RS256",), public_key=private_pem))


def test_verifier_refuses_rsa_key_for_es256(rsa_public_pem: str) -> None:
    with pytest.raises(ValueError, match="ES256"):
        JwtVerifier(JwtSettings(algorithms=("ES256",), public_key=rsa_public_pem))


def test_valid_es256_token_is_accepted() -> None:
    private = ec.generate_private_key(ec.SECP256R1())
    public_pem = (
        private.public_key()
        .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
        .decode("ascii")
    )
    token = jwt.encode(standard_claims(sub="ec-user"), private, algorithm="ES256")
    verifier = JwtVerifier(
        JwtSettings(algorithms=("ES256",), public_key=public_pem, audience=(AUDIENCE,))
    )
    assert verifier.verify(token).user_id == "ec-user"


# --- mint_token -----------------------------------------------------------------------


def test_mint_token_has_the_legacy_claim_set() -> None:
    token = mint_token(SECRET, "u1", ttl=60)
    assert jwt.get_unverified_header(token)["alg"] == "HS256"
    claims = jwt.decode(token, SECRET, algorithms=["HS256"], audience=AUDIENCE, issuer=ISSUER)
    assert claims["sub"] == "u1"
    assert claims["token_type"] == "access"
    assert claims["exp"] - claims["iat"] == 60
    assert isinstance(claims["jti"], str)
    assert len(claims["jti"]) == 32


def test_mint_token_gives_each_token_a_fresh_jti() -> None:
    first = jwt.decode(mint_token(SECRET, "u"), options={"verify_signature": False})
    second = jwt.decode(mint_token(SECRET, "u"), options={"verify_signature": False})
    assert first["jti"] != second["jti"]


def test_mint_token_refuses_a_short_secret() -> None:
    with pytest.raises(ValueError):
        mint_token("short", "u")
