"""Rules, segments, claim operators and effective_at: from the YAML a release manager
writes (parsed by the real loader) to the Decision a connection gets."""

from __future__ import annotations

import textwrap
from collections.abc import Mapping
from typing import Any

import pytest

from strangler.flags.bucketing import bucket
from strangler.flags.evaluate import Decision, evaluate
from strangler.flags.instants import parse_instant
from strangler.flags.load import parse_flags
from strangler.flags.model import FlagSet, Mode, Reason

KEY = "unified_router"
ROUTES = ("main", "factory")


def flags(body: str, segments: str = "") -> FlagSet:
    """A file with one flag, KEY on main and factory, whose body is ``body``."""
    text = (
        (f"segments:\n{textwrap.indent(textwrap.dedent(segments), '  ')}" if segments else "")
        + f"flags:\n  {KEY}:\n    routes: [main, factory]\n"
        + textwrap.indent(textwrap.dedent(body), "    ")
    )
    return parse_flags(text.encode(), "flags.yaml", ROUTES)


def one_condition(condition: str) -> FlagSet:
    return flags(f"rules:\n  - {{name: r, when: [{condition}], mode: unified}}\n")


def decide(
    fs: FlagSet, user: str | None = "u1", claims: Mapping[str, Any] | None = None, **kw: Any
) -> Decision:
    return evaluate(fs, "main", user, claims, **kw)


def matches(fs: FlagSet, claims: Mapping[str, Any]) -> bool:
    decision = decide(fs, claims=claims)
    assert decision.mode is (Mode.UNIFIED if decision.reason is Reason.RULE else Mode.LEGACY)
    return decision.reason is Reason.RULE


def users_by_bucket(flag_key: str, below: int, count: int = 1) -> tuple[list[str], list[str]]:
    """``count`` user ids whose bucket is below ``below`` and ``count`` at or above it."""
    low: list[str] = []
    high: list[str] = []
    n = 0
    while len(low) < count or len(high) < count:
        user = f"user-{n}"
        n += 1
        side = low if bucket(flag_key, user) < below else high
        if len(side) < count:
            side.append(user)
    return low, high


# --- operators -------------------------------------------------------------------------


def test_equals_matches_the_exact_text_only() -> None:
    fs = one_condition("{claim: org, equals: acme}")
    assert matches(fs, {"org": "acme"})
    assert not matches(fs, {"org": "Acme"})
    assert not matches(fs, {"org": "acme-corp"})


def test_equals_compares_numbers_and_booleans_by_their_text() -> None:
    number = one_condition("{claim: tier, equals: 42}")
    assert matches(number, {"tier": 42})
    assert matches(number, {"tier": "42"})
    assert not matches(number, {"tier": 42.0})  # a float has no claim text
    quoted = one_condition('{claim: tier, equals: "42"}')
    assert matches(quoted, {"tier": 42})
    flag = one_condition("{claim: beta, equals: true}")
    assert matches(flag, {"beta": True})
    assert matches(flag, {"beta": "true"})
    assert not matches(flag, {"beta": False})
    assert not matches(flag, {"beta": 1})  # 1 reads "1", not "true"


def test_one_of_matches_any_listed_value() -> None:
    fs = one_condition("{claim: plan, one_of: [pro, enterprise, 7]}")
    assert matches(fs, {"plan": "pro"})
    assert matches(fs, {"plan": "enterprise"})
    assert matches(fs, {"plan": 7})
    assert not matches(fs, {"plan": "free"})


def test_ends_with_tests_the_suffix() -> None:
    fs = one_condition('{claim: email, ends_with: "@acme.com"}')
    assert matches(fs, {"email": "dana@acme.com"})
    assert not matches(fs, {"email": "dana@acme.com.evil.net"})
    assert not matches(fs, {"email": "dana@notacme.org"})


@pytest.mark.parametrize(
    ("condition", "claim", "holds"),
    [
        ("{claim: org, equals: acme}", ["other", "acme"], True),
        ("{claim: org, equals: acme}", ["other", "else"], False),
        ("{claim: roles, one_of: [admin, ops]}", ("viewer", "ops"), True),
        ("{claim: roles, one_of: [admin, ops]}", [], False),
        ('{claim: emails, ends_with: "@acme.com"}', ["a@b.org", "a@acme.com"], True),
        ("{claim: groups, equals: 5}", [3, 5], True),
        ("{claim: groups, equals: 5}", [[5]], False),  # nested lists have no text
    ],
)
def test_a_list_valued_claim_holds_if_any_element_does(
    condition: str, claim: Any, holds: bool
) -> None:
    assert matches(one_condition(condition), _claim(condition, claim)) is holds


def _claim(condition: str, value: Any) -> dict[str, Any]:
    name = condition.split("claim:")[1].split(",")[0].strip()
    return {name: value}


@pytest.mark.parametrize(
    "condition",
    [
        "{claim: org, equals: acme}",
        "{claim: org, one_of: [acme]}",
        "{claim: org, ends_with: me}",
    ],
)
def test_missing_or_null_claim_never_satisfies_a_value_test(condition: str) -> None:
    fs = one_condition(condition)
    assert matches(fs, {"org": "acme"})
    assert not matches(fs, {})
    assert not matches(fs, {"org": None})
    assert not matches(fs, {"org": {"name": "acme"}})  # a mapping has no claim text
    assert decide(fs, claims=None).reason is Reason.DEFAULT


def test_exists_true_needs_a_non_null_claim_of_any_value() -> None:
    fs = one_condition("{claim: org, exists: true}")
    assert matches(fs, {"org": "acme"})
    assert matches(fs, {"org": ""})
    assert matches(fs, {"org": False})
    assert not matches(fs, {"org": None})
    assert not matches(fs, {})


def test_exists_false_matches_absent_and_null_claims() -> None:
    fs = one_condition("{claim: org, exists: false}")
    assert matches(fs, {})
    assert matches(fs, {"org": None})
    assert matches(fs, {"other": "x"})
    assert not matches(fs, {"org": "acme"})


def test_every_condition_of_a_rule_must_hold() -> None:
    fs = flags(
        """
        rules:
          - name: acme_pros
            when:
              - {claim: org, equals: acme}
              - {claim: plan, one_of: [pro, enterprise]}
            mode: unified
        """
    )
    assert matches(fs, {"org": "acme", "plan": "pro"})
    assert not matches(fs, {"org": "acme", "plan": "free"})
    assert not matches(fs, {"plan": "pro"})


# --- segments --------------------------------------------------------------------------

SEGMENTS = """
listed: {users: [carol, "1234"]}
pros: {when: [{claim: plan, equals: pro}]}
both: {users: [erin], when: [{claim: org, equals: acme}]}
"""


@pytest.mark.parametrize(
    ("segment", "user", "claims", "member"),
    [
        ("listed", "carol", {}, True),
        ("listed", "1234", {}, True),
        ("listed", "dave", {"plan": "pro"}, False),
        ("pros", "dave", {"plan": "pro"}, True),
        ("pros", "dave", {"plan": "free"}, False),
        ("pros", "dave", {}, False),
        ("both", "erin", {}, True),  # listed users are in, whatever their claims
        ("both", "frank", {"org": "acme"}, True),  # and so is anyone satisfying `when`
        ("both", "frank", {"org": "other"}, False),
    ],
)
def test_segment_membership_is_listed_users_or_matching_claims(
    segment: str, user: str, claims: dict[str, Any], member: bool
) -> None:
    fs = flags(f"rules:\n  - {{name: seg, segment: {segment}, mode: shadow}}\n", SEGMENTS)
    decision = decide(fs, user, claims)
    expected = (Mode.SHADOW, Reason.RULE, "seg") if member else (Mode.LEGACY, Reason.DEFAULT, None)
    assert (decision.mode, decision.reason, decision.rule) == expected


def test_a_rule_with_segment_and_when_needs_both() -> None:
    fs = flags(
        """
        rules:
          - name: acme_pros
            segment: pros
            when: [{claim: org, equals: acme}]
            mode: live
        """,
        "pros: {when: [{claim: plan, equals: pro}]}\n",
    )
    assert decide(fs, claims={"plan": "pro", "org": "acme"}).mode is Mode.LIVE
    assert decide(fs, claims={"plan": "pro", "org": "other"}).mode is Mode.LEGACY
    assert decide(fs, claims={"plan": "free", "org": "acme"}).mode is Mode.LEGACY


def test_segments_are_shared_by_every_flag_and_kept_on_the_set() -> None:
    fs = parse_flags(
        b"segments: {staff: {users: [ann]}}\n"
        b"flags:\n"
        b"  a: {routes: [main], rules: [{name: s, segment: staff, mode: unified}]}\n"
        b"  b: {routes: [factory], rules: [{name: s, segment: staff, mode: shadow}]}\n",
        "flags.yaml",
        ROUTES,
    )
    assert set(fs.segments) == {"staff"}
    assert evaluate(fs, "main", "ann").mode is Mode.UNIFIED
    assert evaluate(fs, "factory", "ann").mode is Mode.SHADOW


# --- rules in order ----------------------------------------------------------------------

ORDERED = """
rules:
  - {name: first, when: [{claim: org, equals: acme}], mode: unified}
  - {name: second, when: [{claim: plan, equals: pro}], mode: shadow}
  - {name: third, when: [{claim: org, exists: true}], mode: live}
"""


@pytest.mark.parametrize(
    ("claims", "mode", "rule"),
    [
        ({"org": "acme", "plan": "pro"}, Mode.UNIFIED, "first"),  # first and second match
        ({"org": "other", "plan": "pro"}, Mode.SHADOW, "second"),  # second and third match
        ({"org": "other"}, Mode.LIVE, "third"),
    ],
)
def test_rules_are_tried_in_order_and_the_first_match_wins(
    claims: dict[str, Any], mode: Mode, rule: str
) -> None:
    assert decide(flags(ORDERED), claims=claims) == Decision(mode, Reason.RULE, KEY, None, rule)


def test_no_matching_rule_falls_through_to_rollout_then_default() -> None:
    fs = flags(ORDERED + "rollout: {unified: 100}\n")
    assert decide(fs, claims={"plan": "free"}).reason is Reason.ROLLOUT
    plain = decide(flags(ORDERED), claims={"plan": "free"})
    assert (plain.mode, plain.reason, plain.rule) == (Mode.LEGACY, Reason.DEFAULT, None)
    assert plain.bucket == bucket(KEY, "u1")


def test_rule_rollout_applies_to_matching_users_below_its_share_by_bucket() -> None:
    fs = flags(
        """
        rules:
          - {name: half, when: [{claim: org, equals: acme}], mode: unified, rollout: 50}
          - {name: rest, when: [{claim: org, equals: acme}], mode: shadow}
        """
    )
    inside, outside = users_by_bucket(KEY, 5000, count=5)
    acme = {"org": "acme"}
    for user in inside:
        b = bucket(KEY, user)
        assert decide(fs, user, acme) == Decision(Mode.UNIFIED, Reason.RULE, KEY, b, "half")
    for user in outside:
        # Outside the share: on to the next rule, which applies to all and reads no bucket.
        assert decide(fs, user, acme) == Decision(Mode.SHADOW, Reason.RULE, KEY, None, "rest")
    assert decide(fs, inside[0], {"org": "other"}).reason is Reason.DEFAULT


def test_rule_rollout_share_uses_two_decimals_of_a_percent() -> None:
    fs = flags("rules: [{name: r, when: [{claim: o, exists: true}], mode: live, rollout: 0.5}]")
    inside, outside = users_by_bucket(KEY, 50, count=2)
    for user in inside:
        assert decide(fs, user, {"o": 1}).mode is Mode.LIVE
    for user in outside:
        assert decide(fs, user, {"o": 1}).reason is Reason.DEFAULT


def test_rule_rollout_zero_never_applies() -> None:
    fs = flags("rules:\n  - {name: r, when: [{claim: o, exists: true}], mode: live, rollout: 0}\n")
    inside, _ = users_by_bucket(KEY, 1, count=1)
    assert decide(fs, inside[0], {"o": 1}).reason is Reason.DEFAULT


# --- the full order ------------------------------------------------------------------------

EVERYTHING = """
kill_switch: {kill}
effective_at: 2030-01-01T09:00:00Z
before: {{default: shadow, anonymous: live}}
anonymous: unified
default: live
targets: {{legacy: [tina]}}
rules:
  - {{name: staff, when: [{{claim: org, equals: acme}}], mode: shadow}}
rollout: {{unified: {share}}}
"""
AFTER = parse_instant("2030-01-01T09:00:00Z")
BEFORE = AFTER - 1


def everything(kill: bool = False, share: float = 100) -> FlagSet:
    return flags(EVERYTHING.format(kill=str(kill).lower(), share=share))


def test_kill_switch_beats_everything_even_before_effective_at() -> None:
    fs = everything(kill=True)
    for now in (BEFORE, AFTER):
        for user, claims in (("tina", {}), (None, {}), ("u1", {"org": "acme"}), ("u2", {})):
            assert decide(fs, user, claims, now=now) == Decision(
                Mode.LEGACY, Reason.KILL_SWITCH, KEY, None
            )


def test_before_effective_at_the_before_modes_beat_anonymous_targets_rules_rollout() -> None:
    fs = everything()
    assert decide(fs, None, now=BEFORE) == Decision(Mode.LIVE, Reason.ANONYMOUS, KEY, None)
    for user, claims in (("tina", {}), ("u1", {"org": "acme"}), ("u2", {})):
        assert decide(fs, user, claims, now=BEFORE) == Decision(
            Mode.SHADOW, Reason.DEFAULT, KEY, None
        )


def test_from_effective_at_anonymous_beats_targets_and_rules() -> None:
    fs = everything()
    for user in (None, ""):
        assert decide(fs, user, {"org": "acme"}, now=AFTER) == Decision(
            Mode.UNIFIED, Reason.ANONYMOUS, KEY, None
        )


def test_targets_beat_rules_and_rules_beat_rollout() -> None:
    fs = everything()
    acme = {"org": "acme"}
    assert decide(fs, "tina", acme, now=AFTER) == Decision(Mode.LEGACY, Reason.TARGET, KEY, None)
    assert decide(fs, "u1", acme, now=AFTER) == Decision(
        Mode.SHADOW, Reason.RULE, KEY, None, "staff"
    )
    rolled = decide(fs, "u1", {}, now=AFTER)
    assert (rolled.mode, rolled.reason, rolled.bucket) == (
        Mode.UNIFIED,
        Reason.ROLLOUT,
        bucket(KEY, "u1"),
    )


def test_rollout_beats_default_only_inside_its_share() -> None:
    fs = everything(share=50)
    inside, outside = users_by_bucket(KEY, 5000, count=3)
    for user in inside:
        assert decide(fs, user, {}, now=AFTER).reason is Reason.ROLLOUT
    for user in outside:
        assert decide(fs, user, {}, now=AFTER) == Decision(
            Mode.LIVE, Reason.DEFAULT, KEY, bucket(KEY, user)
        )


# --- effective_at ----------------------------------------------------------------------


def test_effective_at_without_before_serves_as_if_the_flag_were_absent() -> None:
    fs = flags("effective_at: 2030-01-01T10:00:00+01:00\ntargets: {unified: [alice]}\n")
    assert fs.flags[KEY].effective_at == AFTER  # +01:00 at 10:00 is 09:00Z
    no_flag = Decision(Mode.LEGACY, Reason.NO_FLAG, None, None)
    assert decide(fs, "alice", now=BEFORE) == no_flag
    assert decide(fs, None, now=BEFORE) == no_flag
    assert decide(fs, "alice", now=AFTER) == Decision(Mode.UNIFIED, Reason.TARGET, KEY, None)


def test_effective_at_applies_from_the_instant_itself() -> None:
    fs = flags("effective_at: 1893488400\ndefault: unified\n")  # Unix seconds of AFTER
    assert fs.flags[KEY].effective_at == AFTER
    assert decide(fs, now=AFTER - 0.001).reason is Reason.NO_FLAG
    assert decide(fs, now=AFTER).mode is Mode.UNIFIED
    assert decide(fs, now=AFTER + 86_400).mode is Mode.UNIFIED


@pytest.mark.parametrize(
    ("before", "user_mode", "anonymous_mode"),
    [
        ("{default: shadow}", Mode.SHADOW, Mode.LEGACY),  # anonymous defaults to legacy
        ("{default: live, anonymous: shadow}", Mode.LIVE, Mode.SHADOW),
        ("{default: unified, anonymous: unified}", Mode.UNIFIED, Mode.UNIFIED),
        ("{default: legacy}", Mode.LEGACY, Mode.LEGACY),
    ],
)
def test_before_modes_serve_users_and_anonymous_until_effective_at(
    before: str, user_mode: Mode, anonymous_mode: Mode
) -> None:
    fs = flags(f"effective_at: 2030-01-01T09:00:00Z\nbefore: {before}\ndefault: live\n")
    assert decide(fs, "u1", now=BEFORE) == Decision(user_mode, Reason.DEFAULT, KEY, None)
    assert decide(fs, None, now=BEFORE) == Decision(anonymous_mode, Reason.ANONYMOUS, KEY, None)
    assert decide(fs, "u1", now=AFTER).mode is Mode.LIVE


def test_the_decision_names_the_flag_and_rule_on_every_route_of_the_flag() -> None:
    fs = flags("rules:\n  - {name: acme, when: [{claim: org, equals: acme}], mode: unified}\n")
    for route in ROUTES:
        assert evaluate(fs, route, "u1", {"org": "acme"}).rule == "acme"
    assert evaluate(fs, "isolated", "u1", {"org": "acme"}).reason is Reason.NO_FLAG
