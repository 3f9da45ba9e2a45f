"""Fuzz and property tests for the pure code that reads what others send or write:
the flag file parser and lint, the turn comparator, credential extraction and token
verification. Each property says what must hold for *any* input, not just the examples
the other unit tests pick."""

from __future__ import annotations

import base64
import json
import string
from typing import Any

import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from strangler.flags.lint import lint
from strangler.flags.load import FlagFileError, parse_flags
from strangler.proxy.config.compare import CompareSettings
from strangler.proxy.edge.identity import (
    AuthError,
    JwtSettings,
    JwtVerifier,
    choose_subprotocol,
    extract_credentials,
)
from strangler.proxy.shadow.compare import TURN_END, compare_events
from strangler.proxy.shadow.turns import TURN_TYPES, Comparator
from strangler.proxy.shadow.verdict import Outcome, Side

FUZZ = settings(max_examples=120, deadline=None, suppress_health_check=[HealthCheck.too_slow])
# Comparator inputs are costly to generate: fewer, so the suite stays fast.
FUZZ_TURNS = settings(FUZZ, max_examples=50)
ROUTES = ("main", "factory", "isolated", "legacy")

json_scalars = (
    st.none()
    | st.booleans()
    | st.integers(-(2**70), 2**70)
    | st.floats(allow_nan=False)
    | st.text(max_size=12)
)
json_values = st.recursive(
    json_scalars,
    lambda kids: (
        st.lists(kids, max_size=4) | st.dictionaries(st.text(max_size=8), kids, max_size=4)
    ),
    max_leaves=15,
)

# -- the flag file ----------------------------------------------------------------------

# Words of the schema, so generated documents get past the first checks often enough to
# reach the deep ones.
SCHEMA_WORDS = (
    "version",
    "flags",
    "segments",
    "routes",
    "default",
    "anonymous",
    "kill_switch",
    "targets",
    "rollout",
    "rules",
    "name",
    "when",
    "mode",
    "claims",
    "effective_at",
    "before",
    "drain",
    "rate",
    "guard",
    "unified",
    "live",
    "shadow",
    "legacy",
    *ROUTES,
    "unified_router",
)
yaml_keys = st.sampled_from(SCHEMA_WORDS) | st.text(max_size=6)
yaml_scalars = (
    st.none()
    | st.booleans()
    | st.integers(-10, 20_000)
    | st.floats(allow_nan=False, allow_infinity=True)
    | st.sampled_from(SCHEMA_WORDS)
    | st.sampled_from(["2030-13-45", "2024-01-01T00:00:00Z", "1e999", "0x1F", "~", "yes"])
    | st.text(max_size=8)
)
yaml_documents = st.recursive(
    yaml_scalars,
    lambda kids: st.lists(kids, max_size=4) | st.dictionaries(yaml_keys, kids, max_size=5),
    max_leaves=25,
)

modes = st.sampled_from(["unified", "live", "shadow", "legacy"])
# Flag files close to valid: every field is usually right and sometimes anything at all,
# so both accepted and refused files come out, refused for one reason deep inside.
near_valid = st.fixed_dictionaries(
    {"version": st.just(1)},
    optional={
        "flags": st.dictionaries(
            st.sampled_from(["unified_router", "other"]),
            st.fixed_dictionaries(
                {"routes": st.lists(st.sampled_from(ROUTES), max_size=3, unique=True)},
                optional={
                    "default": modes | yaml_scalars,
                    "anonymous": modes | yaml_scalars,
                    "kill_switch": st.booleans() | yaml_scalars,
                    "targets": st.dictionaries(
                        modes, st.lists(st.text(string.ascii_lowercase, max_size=5), max_size=3)
                    )
                    | yaml_documents,
                    "rollout": st.dictionaries(modes, st.integers(-5, 105) | yaml_scalars)
                    | yaml_documents,
                },
            )
            | yaml_documents,
            max_size=2,
        )
    },
)


def dump(document: Any) -> bytes:
    return yaml.safe_dump(document, allow_unicode=True, sort_keys=False).encode()


def parses(data: bytes) -> bool:
    """Whether the flag file is accepted; any failure must be a FlagFileError."""
    try:
        parse_flags(data, "flags.yaml", ROUTES)
    except FlagFileError as err:
        assert err.source == "flags.yaml"
        assert err.problem  # a sentence a release manager can act on
        return False
    return True


@FUZZ
@given(st.binary(max_size=300))
def test_flag_parser_never_crashes_on_arbitrary_bytes(data: bytes) -> None:
    parses(data)


@FUZZ
@given(yaml_documents | near_valid)
def test_flag_parser_never_crashes_on_arbitrary_documents(document: Any) -> None:
    parses(dump(document))
    parses(dump({"version": 1, "flags": document}))
    parses(dump({"version": 1, "flags": {"unified_router": document}}))


@FUZZ
@given(st.binary(max_size=300) | yaml_documents.map(dump) | near_valid.map(dump))
def test_lint_places_every_problem_on_a_line_and_agrees_with_the_parser(data: bytes) -> None:
    problems = lint(data, "flags.yaml", ROUTES, now=0.0)
    lines = data.count(b"\n") + 1
    for problem in problems:
        assert problem.file == "flags.yaml"
        assert 1 <= problem.line <= lines + 1, problem
        assert problem.column >= 1, problem
        assert problem.severity in ("error", "warning")
        assert problem.message
    # The proxy applies a file exactly when lint finds no error in it.
    assert parses(data) == (not any(p.severity == "error" for p in problems))


# -- the comparator ---------------------------------------------------------------------

event_types = st.sampled_from(
    sorted(
        {
            "agent_started",
            "agent_thinking",
            "tool_executing",
            "tool_completed",
            "heartbeat",
            "pong",
            *TURN_END,
        }
    )
) | st.text(max_size=6)
small_values = st.recursive(
    json_scalars,
    lambda kids: (
        st.lists(kids, max_size=3) | st.dictionaries(st.text(max_size=6), kids, max_size=3)
    ),
    max_leaves=5,
)
events = st.builds(
    lambda extra, kind, data: {**extra, "type": kind, "data": data},
    st.dictionaries(
        st.sampled_from(["tool_name", "run_id", "status", "x"]), small_values, max_size=2
    ),
    event_types | st.none() | st.integers(),
    small_values,
)
client_messages = st.builds(
    lambda kind, extra: {**extra, "type": kind},
    st.sampled_from(sorted(TURN_TYPES)) | st.text(max_size=6) | st.integers(),
    st.dictionaries(st.text(max_size=6), small_values, max_size=2),
)

# One step of a connection's life as the comparator sees it.
steps = st.one_of(
    st.tuples(st.just("client"), client_messages),
    st.tuples(st.just("event"), st.sampled_from(list(Side)), events),
    st.tuples(st.just("failed"), st.text(max_size=8)),
    st.tuples(st.just("dropped")),
    st.tuples(st.just("poll")),
)


@FUZZ_TURNS
@given(
    primary=st.sampled_from(list(Side)),
    script=st.lists(st.tuples(steps, st.floats(0, 30)), max_size=30),
)
def test_comparator_survives_any_sequence_and_reports_each_turn_once(
    primary: Side, script: list[tuple[tuple[Any, ...], float]]
) -> None:
    comparator = Comparator(primary, CompareSettings())
    verdicts = []
    now = 0.0
    started = 0
    for step, dt in script:
        now += dt
        match step:
            case ("client", message):
                started += isinstance(message.get("type"), str) and message["type"] in TURN_TYPES
                comparator.client_message(message, now)
            case ("event", side, event):
                verdicts += comparator.event(side, event, now)
            case ("failed", reason):
                verdicts += comparator.secondary_failed(reason, now)
            case ("dropped",):
                comparator.secondary_dropped(now)
            case ("poll",):
                verdicts += comparator.poll(now)
    verdicts += comparator.primary_closed(now)
    # Every turn a request opened gets exactly one verdict, in turn order.
    assert [v.turn for v in verdicts] == list(range(started))
    for verdict in verdicts:
        assert verdict.primary is primary
        assert (verdict.outcome is Outcome.MISMATCH) == bool(verdict.differences)
    assert comparator.open_turns == 0
    assert comparator.event(Side.LEGACY, {"type": "agent_completed"}, now + 1) == []


@FUZZ_TURNS
@given(
    turns=st.lists(
        st.tuples(client_messages, st.lists(events, max_size=8)),
        max_size=4,
    ),
    primary=st.sampled_from(list(Side)),
)
def test_identical_streams_always_match(
    turns: list[tuple[dict[str, Any], list[dict[str, Any]]]], primary: Side
) -> None:
    comparator = Comparator(primary, CompareSettings())
    verdicts = []
    for message, stream in turns:
        comparator.client_message(message, 0.0)
        for event in stream:
            for side in Side:  # both backends said exactly the same thing
                verdicts += comparator.event(side, event, 0.0)
    verdicts += comparator.primary_closed(0.0)
    for verdict in verdicts:
        # Turns the streams never finished are incomplete; every finished one matches.
        assert verdict.outcome in (Outcome.MATCH, Outcome.PRIMARY_INCOMPLETE), verdict
        assert verdict.differences == ()


@FUZZ_TURNS
@given(st.lists(events, max_size=8), st.lists(events, max_size=8))
def test_a_match_is_a_match_both_ways(
    left: list[dict[str, Any]], right: list[dict[str, Any]]
) -> None:
    config = CompareSettings()
    assert compare_events(left, left, config) == ()
    forward = compare_events(left, right, config)
    backward = compare_events(right, left, config)
    assert (forward == ()) == (backward == ())


# -- credentials ------------------------------------------------------------------------

header_text = st.text(alphabet=st.characters(min_codepoint=32, max_codepoint=0x2FF), max_size=40)
subprotocol_entries = st.one_of(
    header_text,
    st.builds(lambda p, v: p + v, st.sampled_from(["jwt.", "jwt-auth.", "bearer."]), header_text),
    st.sampled_from(["jwt-auth", "jwt", "bearer", "jwt.", " jwt.x "]),
    # a base64url-wrapped value, the browser's way, sometimes of something JWT-shaped
    st.builds(
        lambda v: "jwt." + base64.urlsafe_b64encode(v.encode()).decode().rstrip("="),
        header_text | st.just("aaa.bbb.ccc") | st.just("a.b."),
    ),
)
queries = st.dictionaries(
    st.sampled_from(["token", "jwt", "auth_token", "access_token", "ticket", "mode", "x"]),
    header_text,
    max_size=4,
)
authorizations = st.one_of(
    st.none(),
    header_text,
    st.builds(lambda s, v: f"{s} {v}", st.sampled_from(["Bearer", "bearer", "Basic"]), header_text),
)


def _unwrapped(entry: str) -> str | None:
    """What a `jwt.` entry's value decodes to (the only token not copied verbatim)."""
    value = entry.strip()[len("jwt.") :]
    try:
        return base64.urlsafe_b64decode(value + "=" * (-len(value) % 4)).decode()
    except ValueError:
        return None


@FUZZ
@given(st.lists(subprotocol_entries, max_size=6), authorizations, queries)
def test_extraction_never_returns_a_token_that_was_not_presented(
    offered: list[str], authorization: str | None, query: dict[str, str]
) -> None:
    fields = [] if authorization is None else [authorization]
    found = extract_credentials(offered, fields, query.items())
    inputs = [*offered, *fields, *query.values()]
    for secret in (found.token, found.ticket):
        if secret is None:
            continue
        assert secret  # an empty value is no credential
        verbatim = any(secret in text for text in inputs)
        decoded = any(
            entry.strip().startswith("jwt.") and _unwrapped(entry) == secret for entry in offered
        )
        assert verbatim or decoded
    assert found.token is None or found.ticket is None
    chosen = choose_subprotocol(offered)
    assert chosen is None or chosen in offered


VERIFIER = JwtVerifier(
    JwtSettings(
        secret="fuzz-secret-long-enough-for-hs256-0123456789",
        issuer="netra-auth-service",
        audience=("netra-platform",),
    )
)
b64_parts = st.one_of(
    st.text(alphabet=string.ascii_letters + string.digits + "-_", max_size=30),
    json_values.map(lambda v: base64.urlsafe_b64encode(json.dumps(v).encode()).decode()),
    st.binary(max_size=30).map(lambda b: base64.urlsafe_b64encode(b).decode().rstrip("=")),
    st.sampled_from(
        [
            base64.urlsafe_b64encode(json.dumps(h).encode()).decode().rstrip("=")
            for h in (
                {"alg": "none"},
                {"alg": "HS256", "typ": "JWT"},
                {"alg": "RS256"},
                {"alg": None},
                {"alg": ["HS256"]},
                {"alg": "HS256", "crit": ["exp"]},
                {"alg": "HS256", "b64": False},
            )
        ]
    ),
)


@FUZZ
@given(st.one_of(st.text(max_size=80), st.lists(b64_parts, min_size=1, max_size=4).map(".".join)))
def test_verification_refuses_garbage_with_an_auth_error_only(token: str) -> None:
    try:
        VERIFIER.verify(token)
    except AuthError as err:
        assert token not in str(err) or len(token) < 8  # the token is never echoed
    else:
        raise AssertionError("a token nobody signed was accepted")
