"""The flagd export, judged by an independent evaluator: openfeature-flagd-core 1.0.0, the
Python implementation of flagd's "fractional-v2" rule (the generation flagd 0.15.0 and
later run), must put every generated user in the mode strangler's own evaluate() gives."""

from __future__ import annotations

import json
import textwrap
from typing import Any

import pytest
from json_logic import jsonLogic  # type: ignore[import-untyped]
from openfeature.contrib.tools.flagd.core import FlagdCore
from openfeature.contrib.tools.flagd.core.targeting.targeting import OPERATORS
from openfeature.evaluation_context import EvaluationContext

from strangler.flags.evaluate import evaluate
from strangler.flags.flagd import RULE_GENERATION, flag_definition, flagd_document, problems
from strangler.flags.load import parse_flags
from strangler.flags.model import BASIS_POINTS, FlagSet

USERS = 10_000


def load(text: str) -> FlagSet:
    return parse_flags(textwrap.dedent(text).encode(), "flags.yaml")


def users(extra: tuple[str, ...] = ()) -> list[str]:
    """10,000 ids of the shapes tokens carry: plain, e-mail, uuid-like, non-ASCII."""
    shapes = ("user{}", "u{}@example.com", "0000{:04x}-7c1e-4b5a-9d0e-5b2f8c1a", "usér-{}-日本")
    generated = [shapes[n % len(shapes)].format(n) for n in range(USERS - len(extra))]
    return [*extra, *generated]


def flagd(flagset: FlagSet) -> FlagdCore:
    core = FlagdCore()
    # Through JSON text, as a flagd file would arrive.
    core.set_flags(json.dumps(flagd_document(flagset.flags.values())))
    return core


def assert_same_modes(flagset: FlagSet, route: str, ids: list[str]) -> None:
    core = flagd(flagset)
    flag = flagset.by_route[route]
    differ = []
    for user in ids:
        ours = evaluate(flagset, route, user).mode.value
        theirs = core.resolve_string_value(
            flag.key, "not-resolved", EvaluationContext(targeting_key=user)
        ).value
        if ours != theirs:
            differ.append((user, ours, theirs))
    assert differ == []


ROLLOUT_ONLY = """
flags:
  web:
    routes: [main]
    default: shadow
    rollout: {unified: 12.34, live: 0.01, shadow: 33.33}
"""


def test_a_rollout_puts_every_user_in_the_same_mode_in_flagd() -> None:
    flagset = load(ROLLOUT_ONLY)
    ids = users()
    assert_same_modes(flagset, "main", ids)
    # Not a vacuous match: every range of the rollout holds someone.
    seen = {evaluate(flagset, "main", user).mode.value for user in ids}
    assert seen == {"unified", "live", "shadow"}


@pytest.mark.parametrize("share", [0, 1, 50, 99.99, 100])
def test_edge_shares_are_exact_too(share: float) -> None:
    flagset = load(f"flags:\n  web:\n    routes: [main]\n    rollout: {{unified: {share}}}\n")
    assert_same_modes(flagset, "main", users()[:2000])


TARGETED = """
segments:
  staff: {users: [ann, bea]}
  beta: {users: [user1, user2, user3, user4, user5, user6, user7, user8, user9, user10]}
flags:
  unified_router:
    routes: [main, factory]
    anonymous: shadow
    targets: {unified: [alice, user12], shadow: [carol], legacy: [user4]}
    rules:
      - {name: staff, segment: staff, mode: live}
      - {name: half_beta, segment: beta, mode: unified, rollout: 50}
      - {name: nobody, segment: staff, mode: shadow, rollout: 0}
    rollout: {unified: 5, live: 5}
"""


def test_targets_rules_and_shares_of_rules_match_flagd() -> None:
    flagset = load(TARGETED)
    named = ("alice", "carol", "ann", "bea", "user12", *(f"user{n}" for n in range(1, 11)))
    assert_same_modes(flagset, "factory", users(named))
    reasons = {evaluate(flagset, "main", user).rule for user in named}
    assert {"staff", "half_beta"} <= reasons  # both rules decided someone


def test_an_anonymous_connection_gets_the_anonymous_mode_in_flagd() -> None:
    flagset = load(TARGETED)
    core = flagd(flagset)
    for context in (EvaluationContext(), EvaluationContext(targeting_key="")):
        details = core.resolve_string_value("unified_router", "not-resolved", context)
        assert details.value == evaluate(flagset, "main", context.targeting_key).mode.value
        assert details.value == "shadow"


def test_a_kill_switch_is_legacy_for_everyone_without_targeting() -> None:
    killed = TARGETED.replace("anonymous: shadow", "anonymous: shadow\n    kill_switch: true")
    flagset = load(killed)
    definition = flag_definition(flagset.flags["unified_router"])
    assert "targeting" not in definition and definition["defaultVariant"] == "legacy"
    assert_same_modes(flagset, "main", users(("alice", "ann"))[:500])


def test_every_fractional_weighs_exactly_basis_points() -> None:
    """The bucket equals strangler's only when the weights add up to 10000."""

    def fractionals(node: Any) -> list[list[Any]]:
        if isinstance(node, dict):
            found = [node["fractional"]] if "fractional" in node else []
            return found + [f for value in node.values() for f in fractionals(value)]
        if isinstance(node, list):
            return [f for value in node for f in fractionals(value)]
        return []

    definition = flag_definition(load(TARGETED).flags["unified_router"])
    found = fractionals(definition["targeting"])
    assert len(found) == 2  # the rule's share and the rollout
    for args in found:
        assert args[0] == {"cat": ["unified_router:", {"var": "targetingKey"}]}
        assert sum(weight for _, weight in args[1:]) == BASIS_POINTS
    assert definition["metadata"] == {
        "strangler_routes": "main,factory",
        "strangler_bucketing": RULE_GENERATION,
    }


EFFECTIVE = """
flags:
  web:
    routes: [main]
    targets: {unified: [alice]}
    rollout: {unified: 30}
    effective_at: 2030-01-01T00:00:00Z
    before: {default: shadow, anonymous: live}
"""
STARTS = 1893456000  # 2030-01-01T00:00:00Z


@pytest.mark.parametrize("now", [STARTS - 1.5, STARTS - 0.25, STARTS, STARTS + 0.5, STARTS + 9])
def test_effective_at_switches_in_the_same_second(now: float) -> None:
    # flagd fills $flagd.timestamp from its clock, so the instant is given here as
    # flagd gives it: whole seconds.
    flagset = load(EFFECTIVE)
    targeting = flag_definition(flagset.flags["web"])["targeting"]
    for user in [None, "alice", *users()[:300]]:
        context = {"targetingKey": user, "$flagd": {"flagKey": "web", "timestamp": int(now)}}
        theirs = jsonLogic(targeting, context, OPERATORS)
        assert theirs == evaluate(flagset, "main", user, now=now).mode.value, (user, now)


def test_before_without_modes_is_legacy_as_if_there_were_no_flag() -> None:
    flagset = load(EFFECTIVE.replace("    before: {default: shadow, anonymous: live}\n", ""))
    targeting = flag_definition(flagset.flags["web"])["targeting"]
    context = {"targetingKey": "alice", "$flagd": {"flagKey": "web", "timestamp": STARTS - 1}}
    assert jsonLogic(targeting, context, OPERATORS) == "legacy"


def test_rules_on_claims_and_sub_second_instants_are_refused_not_approximated() -> None:
    flagset = load(
        """
        segments:
          acme: {when: [{claim: org, equals: acme}]}
        flags:
          web:
            routes: [main]
            rules:
              - {name: pros, when: [{claim: plan, one_of: [pro]}], mode: live}
              - {name: acme, segment: acme, mode: unified}
            effective_at: 2030-01-01T00:00:00.5Z
          api:
            routes: [api]
            rollout: {unified: 10}
        """
    )
    found = problems(flagset.flags["web"])
    assert len(found) == 3
    assert found[0].startswith("effective_at has a fraction of a second")
    assert found[1].startswith("rule 'pros' tests token claims (plan);")
    assert found[2].startswith("rule 'acme' tests token claims (org);")
    with pytest.raises(ValueError, match="cannot be exported exactly"):
        flag_definition(flagset.flags["web"])
    assert problems(flagset.flags["api"]) == []
