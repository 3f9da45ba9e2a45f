"""The flag file's schema: the reference, and the keys each part of the file allows.

This is the file release managers edit; docs/FLAGS.md is the full guide, this is the
reference. ``flags.validate`` checks a file against it.

Schema::

    version: 1                  # optional; only 1 is accepted
    segments:                   # optional: named groups of users, shared by every flag
      beta_testers:             # segment name: lowercase letters, digits, "_", "." and "-"
        users: [u1, u2]         #   listed users are in it, and so is anyone who satisfies
        when:                   #   every condition (a segment needs users, when, or both)
          - {claim: plan, one_of: [pro, enterprise]}
    flags:                      # optional; missing, empty or {} means every route is legacy
      unified_router:           # flag key: lowercase letters, digits, "_", "." and "-"
        routes: [main, factory] # required, non-empty list of route names; a route may
                                #   belong to one flag only (across the whole file)
        default: legacy         # optional (legacy): mode for users outside every rollout share
        anonymous: legacy       # optional (legacy): mode for connections without a user id
        kill_switch: false      # optional (false): true sends everyone on these routes to legacy
        targets:                # optional: mode -> list of user ids, beats rules and rollout
          unified: [alice]      #   numbers are accepted as ids ("1234" and 1234 are the same user)
          shadow: [bob]         #   a user may appear under one mode only
        rules:                  # optional: tried in order after targets; the first match wins
          - name: acme_staff    #   required, unique in the flag; reported in Decision.rule
            when:               #   every condition must hold; operators: equals, one_of,
              - {claim: org, equals: acme}              # ends_with, exists (true/false)
              - {claim: email, ends_with: "@example.com"}
            mode: unified       #   required
          - {name: beta, segment: beta_testers, mode: shadow, rollout: 50}
                                #   segment: members only; rollout: the share (0..100) of
                                #   matching users it applies to, by bucket; the rest go on
        rollout:                # optional: percent of users per mode, 0..100, up to 2 decimals
          unified: 5            #   keys: unified, live, shadow (legacy gets what remains);
          shadow: 20            #   the shares must add up to 100 or less
        effective_at: 2030-01-01T09:00:00Z  # optional: ISO 8601 with a timezone, or Unix
                                #   seconds; until then the routes are served as if the flag
                                #   were absent (legacy, no_flag), or as 'before' says:
        before: {default: shadow, anonymous: legacy}  # optional, needs effective_at
        on_change: {drain: {rate: 50}}  # optional: keep (default) leaves open connections
                                #   alone; drain closes moved ones, at most rate per second
                                #   per replica (each proxy process drains on its own), or
                                #   {drain: {fleet_rate: 150}}: per second across every
                                #   replica, each taking fleet_rate / replicas (Prometheus
                                #   counts them; a rate beside it is the fallback)
        guard:                  # optional: limits the proxy watches (it decides what to do)
          max_mismatch_ratio: 0.05      # 0..1; at least one of the three ratios
          max_unified_error_ratio: 0.02 # 0..1
          max_unified_turn_failure_ratio: 0.02  # 0..1: unified turns (every mode) that
                                #   missed the golden path, abandoned ones aside
          window: 300           #   seconds (default 300)
          min_samples: 100      #   observations (turns) needed before judging (default 100)
          source: local         #   whose observations: local (default, this process),
                                #   fleet (every replica, from Prometheus; the local guard
                                #   judges while Prometheus is out of reach), or both

Modes are ``legacy``, ``shadow``, ``live`` and ``unified``. Users are placed by a
deterministic bucket (see ``flags.bucketing``); ranges are laid out from bucket 0 in the
order unified | live | shadow | legacy, so raising a share only moves users forward.
A rule's ``rollout`` uses the same bucket: it covers buckets below its share.

Precedence for one connection: kill switch, effective_at (before it: ``before``), then
anonymous, then targets, then rules, then rollout, then default (see ``flags.evaluate``).

Conditions compare a claim's text: strings as they are, whole numbers in decimal,
booleans as true/false; a list-valued claim satisfies a condition if any element does.

Write user ids that look like numbers with leading zeros, underscores or colons in quotes
("0123"): YAML would read them as different numbers, so such spellings are rejected.
Duplicate keys anywhere in the file are rejected too (YAML would silently keep the last).
Error messages never repeat a user id: they point at its position, e.g. ``targets.shadow[2]``.
"""

from __future__ import annotations

import re

from strangler.flags.model import ROLLOUT_ORDER, Mode, Operator

VERSION = 1
"""The one ``version:`` a flag file may declare (``strangler --version`` shows it)."""
TOP_KEYS = ("version", "segments", "flags")
FLAG_KEYS = (
    "routes",
    "default",
    "anonymous",
    "kill_switch",
    "targets",
    "rules",
    "rollout",
    "effective_at",
    "before",
    "on_change",
    "guard",
)
SEGMENT_KEYS = ("users", "when")
RULE_KEYS = ("name", "when", "segment", "mode", "rollout")
OPERATORS = tuple(op.value for op in Operator)
CONDITION_KEYS = ("claim", *OPERATORS)
BEFORE_KEYS = ("default", "anonymous")
GUARD_RATIOS = (
    "max_mismatch_ratio",
    "max_unified_error_ratio",
    "max_unified_turn_failure_ratio",
)
"""A guard's limits, 0..1: it needs at least one."""
GUARD_KEYS = (
    *GUARD_RATIOS,
    "window",
    "min_samples",
    "source",
)
DRAIN_KEYS = ("rate", "fleet_rate")
NAME = re.compile(r"[a-z0-9_.-]+")
"""Flag keys, segment names and rule names."""
MODES = tuple(mode.value for mode in Mode)
ROLLOUT_MODES = tuple(mode.value for mode in ROLLOUT_ORDER)
