"""Checking the parts of a flag file that pick users by who they are: segments, the
conditions on claims, and each flag's rules."""

from __future__ import annotations

from typing import Any

from strangler.flags.model import BASIS_POINTS, Condition, Mode, Operator, Rule, Segment
from strangler.flags.report import kind, name_list
from strangler.flags.schema import CONDITION_KEYS, MODES, OPERATORS, RULE_KEYS, SEGMENT_KEYS
from strangler.flags.validate_values import ValueChecks
from strangler.flags.yaml_source import SpelledInt


def _atoms(rule: Rule) -> frozenset[tuple[str, str, object]]:
    """A rule's conditions as comparable atoms (one_of order does not matter)."""
    atoms: set[tuple[str, str, object]] = {
        (c.claim, c.op.value, frozenset(c.value) if isinstance(c.value, tuple) else c.value)
        for c in rule.when
    }
    if rule.segment is not None:
        atoms.add(("", "segment", rule.segment.name))
    return frozenset(atoms)


class RuleChecks(ValueChecks):
    """Reads segments, conditions and rules; remembers which segments rules use."""

    def __init__(self, source: str, *, collect: bool) -> None:
        super().__init__(source, collect=collect)
        self._segment_names: set[str] = set()
        self._used_segments: set[str] = set()

    # -- segments --

    def _segments(self, raw: Any) -> dict[str, Segment]:
        if raw is None:
            return {}
        if not isinstance(raw, dict):
            self._fail(
                "segments", f"must be a mapping of segment names to segments, not {kind(raw)}."
            )
        self._segment_names = {str(name) for name in raw}
        segments: dict[str, Segment] = {}
        for name, body in raw.items():
            segment = self._try(self._segment, name, body)
            if segment is not None:
                segments[segment.name] = segment
        return segments

    def _segment(self, name: Any, body: Any) -> Segment | None:
        at = f"segments.{name}"
        name = self._name(name, at, "segment names")
        if not isinstance(body, dict):
            self._fail(at, f"must be a mapping with 'users' and/or 'when', not {kind(body)}.")
        errors = self._errors
        self._reject_unknown_keys(body, SEGMENT_KEYS, at)
        users = self._try(self._user_list, body.get("users", []), f"{at}.users") or frozenset()
        when = self._try(self._conditions, body.get("when", []), f"{at}.when") or ()
        if self._errors > errors:
            return None
        if not users and not when:
            self._fail(at, "needs 'users' (a list of user ids) or 'when' (conditions), or both.")
        return Segment(name, users, when)

    def _user_list(self, raw: Any, at: str) -> frozenset[str]:
        if not isinstance(raw, list):
            self._fail(at, f"must be a list of user ids (use [] for none), not {kind(raw)}.")
        users = (self._try(self._user_id, item, f"{at}[{index}]") for index, item in enumerate(raw))
        return frozenset(user for user in users if user is not None)

    # -- conditions --

    def _conditions(self, raw: Any, at: str) -> tuple[Condition, ...]:
        if not isinstance(raw, list):
            self._fail(
                at,
                f"must be a list of conditions such as {{claim: org, equals: acme}}, "
                f"not {kind(raw)}.",
            )
        found = (
            self._try(self._condition, item, f"{at}[{index}]") for index, item in enumerate(raw)
        )
        return tuple(condition for condition in found if condition is not None)

    def _condition(self, raw: Any, at: str) -> Condition:
        if not isinstance(raw, dict):
            self._fail(
                at, f"must be a mapping such as {{claim: org, equals: acme}}, not {kind(raw)}."
            )
        self._reject_unknown_keys(raw, CONDITION_KEYS, at)
        if "claim" not in raw:
            self._fail(f"{at}.claim", "is required: name the claim to test (e.g. claim: org).")
        claim = raw["claim"]
        if not isinstance(claim, str) or not claim:
            self._fail(f"{at}.claim", f"must be a claim name, not {kind(claim)}.")
        ops = [key for key in raw if key in OPERATORS]
        if not ops:
            self._fail(at, f"needs one operator: {', '.join(OPERATORS)}.")
        if len(ops) > 1:
            self._fail(
                f"{at}.{ops[1]}",
                f"a condition has one operator, this one has {' and '.join(ops)}; "
                "write one condition per test (all of them must hold).",
            )
        op = Operator(ops[0])
        key = f"{at}.{op.value}"
        value = raw[op.value]
        if op is Operator.EXISTS:
            if not isinstance(value, bool):
                self._fail(key, f"must be true or false, not {kind(value)}.")
            return Condition(claim, op, value)
        if op is Operator.ONE_OF:
            if not isinstance(value, list) or not value:
                self._fail(key, f"must be a non-empty list of values, not {kind(value)}.")
            return Condition(
                claim,
                op,
                tuple(self._claim_value(item, f"{key}[{i}]") for i, item in enumerate(value)),
            )
        if op is Operator.ENDS_WITH:
            if not isinstance(value, str) or not value:
                self._fail(key, f"must be a non-empty string, not {kind(value)}.")
            if "." in value and value[0] not in "@.":
                self._warn(
                    key,
                    "this suffix has no '@' or '.' in front, so it also matches longer "
                    "domains ending in the same letters; start it with '@' for addresses "
                    "or '.' for subdomains.",
                )
            return Condition(claim, op, value)
        return Condition(claim, op, self._claim_value(value, key))

    def _claim_value(self, value: Any, at: str) -> str:
        # Messages never repeat the value: it may be an email or another identifier.
        if isinstance(value, SpelledInt):
            self._fail(
                at,
                "YAML reads this as a number with a different spelling "
                "(leading zero, underscore, colon or prefix); put it in quotes.",
            )
        if isinstance(value, bool):
            return "true" if value else "false"
        if isinstance(value, int | str):
            return str(value)
        self._fail(
            at, f"must be a string, a whole number or true/false, not {kind(value)} (quote it)."
        )

    # -- rules --

    def _rules(self, raw: Any, at: str, segments: dict[str, Segment]) -> tuple[Rule, ...]:
        if not isinstance(raw, list):
            self._fail(at, f"must be a list of rules, not {kind(raw)}.")
        names: dict[str, int] = {}
        rules: list[tuple[int, Rule]] = []
        for index, item in enumerate(raw):
            rule = self._try(self._rule, item, f"{at}[{index}]", index, names, segments)
            if rule is None:
                continue
            if rule.rollout == 0:
                self._warn(f"{at}[{index}].rollout", "rollout 0 means this rule never applies.")
            atoms = _atoms(rule)
            for earlier_index, earlier in rules:
                if earlier.rollout == BASIS_POINTS and _atoms(earlier) <= atoms:
                    self._warn(
                        f"{at}[{index}]",
                        f"rule '{rule.name}' can never apply: every user it matches also "
                        f"matches rule '{earlier.name}' (rules[{earlier_index}]), which comes "
                        "first and applies to all of them.",
                    )
                    break
            rules.append((index, rule))
        return tuple(rule for _, rule in rules)

    def _rule(
        self,
        raw: Any,
        at: str,
        index: int,
        names: dict[str, int],
        segments: dict[str, Segment],
    ) -> Rule | None:
        if not isinstance(raw, dict):
            self._fail(
                at,
                f"must be a mapping with name, mode and 'when' or 'segment', not {kind(raw)}.",
            )
        errors = self._errors
        self._reject_unknown_keys(raw, RULE_KEYS, at)
        if "name" not in raw:
            self._fail(f"{at}.name", "is required: rules are reported by name.")
        name = self._name(raw["name"], f"{at}.name", "rule names")
        first = names.setdefault(name, index)
        if first != index:
            self._note(
                f"{at}.name",
                f"rule '{name}' is already defined at rules[{first}]; rule names must be unique "
                "within a flag.",
            )
        if "mode" not in raw:
            self._note(f"{at}.mode", f"is required: the mode ({', '.join(MODES)}) to give.")
        mode = self._try(self._mode, raw.get("mode", "legacy"), f"{at}.mode") or Mode.LEGACY
        when = self._try(self._conditions, raw.get("when", []), f"{at}.when") or ()
        segment = None
        if "segment" in raw:
            segment = self._try(self._segment_ref, raw["segment"], f"{at}.segment", segments)
        share = BASIS_POINTS
        if "rollout" in raw:
            basis_points = self._try(self._basis_points, raw["rollout"], f"{at}.rollout")
            share = BASIS_POINTS if basis_points is None else basis_points
        if self._errors > errors:
            return None
        if not when and segment is None:
            self._fail(
                at,
                "needs 'when' (conditions) or 'segment', or both: a rule for everyone "
                "is what default and rollout are for.",
            )
        return Rule(name=name, mode=mode, when=when, segment=segment, rollout=share)

    def _segment_ref(self, value: Any, at: str, segments: dict[str, Segment]) -> Segment | None:
        if not isinstance(value, str):
            self._fail(at, f"must be a segment name, not {kind(value)}.")
        self._used_segments.add(value)
        segment = segments.get(value)
        if segment is None:
            if value in self._segment_names:
                # Defined but invalid: its own error is reported; do not pile on.
                self._fail(at, f"segment '{value}' is invalid (see its own error).")
            self._fail(
                at,
                f"unknown segment '{value}'; segments are {name_list(self._segment_names)}.",
            )
        return segment
