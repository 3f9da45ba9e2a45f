"""Stored transcripts never keep credentials, user ids or configured fields: each rule of
proxy/shadow/redact.py, then properties over generated nested documents."""

from __future__ import annotations

import json
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from strangler.proxy.shadow.redact import (
    REDACTED,
    Redactor,
    connection_identities,
    is_secret_key,
    normalise_key,
    redact,
)


def test_secret_keys_are_redacted_at_any_depth_and_the_input_is_untouched() -> None:
    event = {
        "type": "tool_executing",
        "user_id": "u-1",
        "data": {"parameters": {"Authorization": "Bearer x", "q": "ok"}, "items": [{"token": "t"}]},
    }
    cleaned = redact(event)
    assert cleaned["user_id"] == REDACTED
    assert cleaned["data"]["parameters"] == {"Authorization": REDACTED, "q": "ok"}
    assert cleaned["data"]["items"] == [{"token": REDACTED}]
    assert event["user_id"] == "u-1"  # a copy, not an edit


def test_configured_paths_are_redacted_and_missing_paths_are_ignored() -> None:
    event = {"type": "t", "data": {"parameters": {"query": "my salary"}, "status": "ok"}}
    cleaned = redact(event, ["data.parameters.query", "data.nothing.here", "nope"])
    assert cleaned == {"type": "t", "data": {"parameters": {"query": REDACTED}, "status": "ok"}}


# -- rule 1: keys, compared case- and separator-insensitively ---------------------------


@pytest.mark.parametrize(
    "key",
    [
        "userId",
        "USER_ID",
        "user-id",
        "user.id",
        "User Id",
        "sub",
        "username",
        "user",
        "email",
        "access_token",
        "accessToken",
        "Authorization",
        "ticket",
        "jwt",
        "password",
        "secret",
        "Cookie",
        "set-cookie",
        "sessionId",
        "x-user-id",
        "legacyUserId",
        "csrf_token",
        "dbPassword",
        "client_secret",
        "x-api-key",
    ],
)
def test_identity_and_secret_keys_are_redacted_in_any_spelling(key: str) -> None:
    assert is_secret_key(key)
    cleaned = redact({"type": "t", "data": {"nested": [{key: {"any": "shape"}}]}})
    assert cleaned["data"]["nested"][0][key] == REDACTED


@pytest.mark.parametrize(
    "key", ["type", "tool_name", "status", "max_tokens", "token_count", "users_online", "subtotal"]
)
def test_ordinary_keys_are_kept(key: str) -> None:
    assert not is_secret_key(key)
    assert redact({key: "value"}) == {key: "value"}


def test_keys_are_normalised_by_case_and_separators() -> None:
    assert normalise_key("User_ID") == normalise_key("user-id") == normalise_key("user.Id")
    assert normalise_key(" user id ") == "userid"


# -- rule 2: the connection's user id, wherever it appears -------------------------------


def test_a_value_equal_to_the_user_id_is_redacted_under_any_key() -> None:
    cleaned = redact({"owner": "alice", "list": ["alice", "bob"]}, identities=["alice"])
    assert cleaned == {"owner": REDACTED, "list": [REDACTED, "bob"]}


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("alice's session", f"{REDACTED}'s session"),
        ("/users/alice/", f"/users/{REDACTED}/"),
        ("Hello ALICE!", f"Hello {REDACTED}!"),
        ("alice@example.com", f"{REDACTED}@example.com"),
        ("user_alice_42", f"user_{REDACTED}_42"),
        ("malice aforethought", "malice aforethought"),  # not the token alice
        ("alice2", "alice2"),
    ],
)
def test_the_user_id_is_cut_out_of_longer_strings_as_a_whole_token(
    text: str, expected: str
) -> None:
    assert redact({"text": text}, identities=["alice"]) == {"text": expected}


def test_a_key_that_is_or_holds_the_user_id_is_redacted_too() -> None:
    cleaned = redact({"alice": {"x": 1}, "prefs_alice": 2, REDACTED: "kept"}, identities=["alice"])
    # Three keys in, three keys out: a redacted key never overwrites another.
    assert cleaned == {
        REDACTED: {"x": 1},
        f"prefs_{REDACTED}": 2,
        REDACTED + REDACTED: "kept",
    }


def test_a_number_equal_to_a_numeric_user_id_is_redacted() -> None:
    cleaned = redact({"account": 42, "count": 420, "flag": True}, identities=["42"])
    assert cleaned == {"account": REDACTED, "count": 420, "flag": True}


def test_an_id_with_symbols_at_its_edges_is_found_between_letters() -> None:
    # No boundary is asked for where the id itself starts or ends with a symbol.
    assert redact("x|auth0|7|y", identities=["|auth0|7|"]) == f"x{REDACTED}y"


def test_an_id_that_is_part_of_the_marker_gets_another_marker() -> None:
    cleaned = redact({"who": "act", "note": "act now"}, identities=["act"])
    assert cleaned == {"who": "***", "note": "*** now"}
    assert Redactor((), ("[x]",)).marker == "***"
    assert Redactor((), ("[*]",)).marker == "~~~"


def test_without_identities_only_keys_and_paths_apply() -> None:
    assert redact({"who": "alice"}) == {"who": "alice"}
    assert redact({"who": "alice"}, identities=["", "  "]) == {"who": "alice"}


def test_differences_and_request_types_are_cut_as_text() -> None:
    redactor = Redactor((), ("alice",))
    assert redactor.text("data.status: 'done for alice' != 'done'") == (
        f"data.status: 'done for {REDACTED}' != 'done'"
    )


def test_the_connection_identities_are_its_user_and_its_path_parameters() -> None:
    assert connection_identities("alice") == ("alice",)
    assert connection_identities("alice", "/ws/{user_id}", "/ws/alice") == ("alice",)
    assert connection_identities("alice", "/ws/{user_id}", "/ws/u-77") == ("alice", "u-77")
    assert connection_identities(None, "/ws/v1/{user_id}", "/ws/v1/u-77") == ("u-77",)
    assert connection_identities(None, "/ws", "/ws") == ()
    assert connection_identities("", "/ws/{user_id}", "/ws/a/b") == ()


# -- rule 3: tokens by their shape -------------------------------------------------------


def test_a_jwt_is_redacted_wherever_it_appears() -> None:
    jwt = "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiJhbGljZSJ9.c2lnbmF0dXJl"
    cleaned = redact({"note": f"retry with {jwt} please", "list": [jwt]})
    assert cleaned == {"note": f"retry with {REDACTED} please", "list": [REDACTED]}


def test_a_jwt_next_to_the_id_does_not_hide_it() -> None:
    jwt = "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiJhbGljZSJ9.c2ln"
    assert redact(f"alice{jwt}", identities=["alice"]) == REDACTED + REDACTED


# -- properties --------------------------------------------------------------------------


def contains_token(text: str, ident: str) -> bool:
    """An independent reading of 'the id is in the text': a case-blind match whose
    neighbours are no letter or digit where the id's own edge is one."""
    n = len(ident)
    for i in range(len(text) - n + 1):
        window = text[i : i + n]
        if not all(a.lower() == b.lower() for a, b in zip(window, ident, strict=True)):
            continue
        left_ok = not ident[0].isalnum() or i == 0 or not text[i - 1].isalnum()
        right_ok = not ident[-1].isalnum() or i + n == len(text) or not text[i + n].isalnum()
        if left_ok and right_ok:
            return True
    return False


def strings(value: Any) -> list[str]:
    """Every key and scalar of a document, as text."""
    if isinstance(value, dict):
        return [s for k, v in value.items() for s in (str(k), *strings(v))]
    if isinstance(value, list):
        return [s for v in value for s in strings(v)]
    return [] if isinstance(value, bool) or value is None else [str(value)]


IDS = st.one_of(
    st.text(st.characters(codec="ascii", exclude_categories=("Cc",)), min_size=1, max_size=12),
    st.text(min_size=1, max_size=6),
    st.sampled_from(
        ["alice", "42", "act", "[x]", "u-1", "a", "redacted", "*", "alice@example.com"]
    ),
).filter(lambda s: bool(s.strip()))


@st.composite
def documents(draw: st.DrawFn, ident: str) -> Any:
    """Nested JSON-like documents in which the id turns up as a value, inside longer
    strings with separators around it, as a key, and under secret keys."""
    separators = st.sampled_from([" ", "/", "'s ", "-", "_", ":", "", ".", "@", "\n"])

    def around(_: Any) -> st.SearchStrategy[str]:
        return st.tuples(st.text(max_size=5), separators, separators, st.text(max_size=5)).map(
            lambda t: t[0] + t[1] + ident + t[2] + t[3]
        )

    text = st.one_of(st.text(max_size=10), st.just(ident), st.just(ident.upper()), around(None))
    scalars = st.one_of(text, st.integers(), st.booleans(), st.none())
    keys = st.one_of(
        st.text(max_size=8),
        st.just(ident),
        st.sampled_from(["userId", "USER_ID", "sub", "username", "user", "user-id", "token"]),
    )
    tree = st.recursive(
        scalars,
        lambda inner: st.one_of(
            st.lists(inner, max_size=4), st.dictionaries(keys, inner, max_size=4)
        ),
        max_leaves=25,
    )
    return draw(tree)


@settings(max_examples=300, deadline=None)
@given(data=st.data(), ident=IDS)
def test_no_redacted_document_contains_the_user_id(data: st.DataObject, ident: str) -> None:
    doc = data.draw(documents(ident))
    cleaned = Redactor(("data.parameters.query",), (ident,))(doc)
    leaked = [s for s in strings(cleaned) if contains_token(s, ident)]
    assert leaked == [], (ident, leaked)


@settings(max_examples=150, deadline=None)
@given(data=st.data(), ident=IDS)
def test_redaction_keeps_the_shape_and_never_touches_its_input(
    data: st.DataObject, ident: str
) -> None:
    doc = data.draw(documents(ident))
    before = json.dumps(doc, sort_keys=True, default=str)
    cleaned = redact(doc, identities=[ident])
    assert json.dumps(doc, sort_keys=True, default=str) == before
    assert _shape(cleaned) == _shape(doc)
    assert type(cleaned) is type(doc) or not isinstance(doc, dict | list)


@settings(max_examples=150, deadline=None)
@given(
    value=st.recursive(
        st.text(max_size=6), lambda inner: st.dictionaries(st.text(max_size=6), inner, max_size=3)
    ),
    key=st.sampled_from(["userId", "USER_ID", "user-id", "Sub", "user name", "accessToken"]),
)
def test_a_secret_key_keeps_nothing_of_its_value(value: Any, key: str) -> None:
    assert redact({"outer": {key: value}}) == {"outer": {key: REDACTED}}


def _shape(value: Any) -> Any:
    """Containers, in order, with how many items each holds: what redaction keeps (a
    secret key's value becomes one scalar, whatever it was)."""
    if isinstance(value, dict):
        return [
            "scalar" if isinstance(k, str) and is_secret_key(k) else _shape(v)
            for k, v in value.items()
        ]
    if isinstance(value, list):
        return ("list", [_shape(v) for v in value])
    return "scalar"
