"""Fleet-wide guards and drains: what a replica asks Prometheus, and what it concludes.

Pure (no I/O): `proxy/release/fleet_watch.py` sends the queries and hands the answers here.

Every replica counts its guards' observations in `strangler_guard_observations_total`
(flag, guard, result). The fleet guard of a flag sums the increase of that counter over
every replica in the guard's window, so each replica judges the same evidence with the
same rule as the local guard (`guards.exceeded`), `min_samples` counted fleet-wide.

An answer that says nothing is *inconclusive*: no series (no traffic yet, a scrape
missed), NaN, or fewer than `min_samples` observations. Inconclusive never trips and
never clears anything: silence is not read as health, nor as failure (the pitfall of
canary analyses that treat an empty query as 0 % errors or as a failed check).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from strangler.proxy.release.guards import exceeded

OBSERVATIONS = "strangler_guard_observations_total"
FLAGS_INFO = "strangler_flags_info"
REPLICAS = "strangler_build_info"
"""One series per scraped proxy (a `--workers` supervisor counts once); a target that
fails its scrape loses it at once (Prometheus marks its series stale)."""


class Verdict(StrEnum):
    """What one fleet-wide look at a guard's ratio concludes."""

    TRIP = "trip"  # enough samples fleet-wide, and the ratio above the limit
    WITHIN = "within"  # enough samples fleet-wide, and the ratio within the limit
    INCONCLUSIVE = "inconclusive"  # no series, NaN, or fewer than min_samples


class AnswerError(ValueError):
    """Prometheus answered, but not with an instant vector we can read."""


@dataclass(frozen=True, slots=True)
class Evidence:
    """Observations of one guard in its window, summed over every replica (estimates:
    `increase` extrapolates to the window's edges)."""

    total: float
    bad: float

    @property
    def ratio(self) -> float | None:
        return self.bad / self.total if self.total > 0 else None


def matchers(selector: str, *more: str) -> str:
    """The label matchers of a selector: the configured ones (picking this fleet's
    proxies, e.g. `job="strangler"`) and `more`."""
    parts = [p for p in (selector.strip(), *more) if p]
    return "{" + ", ".join(parts) + "}"


def observations_query(
    selector: str, flag: str, watched: str, window: float, digest: str, step: float
) -> str:
    """The fleet's observations of one guard of `flag` in the last `window` seconds, by
    result (`ok`, `bad`), made while each replica served the flag file `digest`.

    A new file starts a guard afresh (guards.py), so what replicas saw under the file
    before (and what replicas still on it see) must not count: each replica's counter is
    joined with its `strangler_flags_info` of this file, and the increase is taken over
    a subquery at `step` seconds (the poll interval; keep it no shorter than the scrape
    interval). Flag keys are `[a-z0-9_.-]+` and digests hex: safe inside PromQL strings.
    """
    seconds = max(1, math.ceil(window))
    every = max(1, math.ceil(step))
    observed = matchers(selector, f'flag="{flag}"', f'guard="{watched}"')
    served = matchers(selector, f'hash="{digest[:12]}"')
    counted = f"{OBSERVATIONS}{observed}"
    serving = f"{FLAGS_INFO}{served} == 1"
    joined = f"{counted} * on (job, instance) group_left () ({serving})"
    return f"sum by (result) (increase(({joined})[{seconds}s:{every}s]))"


def replicas_query(selector: str) -> str:
    """How many replicas of this fleet Prometheus scraped successfully last time."""
    return f"count({REPLICAS}{matchers(selector)})"


def hashes_query(selector: str) -> str:
    """Every replica's flag-file hash (`strangler flags status --fleet`)."""
    return f"{FLAGS_INFO}{matchers(selector)} == 1"


def loaded_query(selector: str) -> str:
    """When each replica applied its flag file (Unix time)."""
    return f"strangler_flags_loaded_timestamp_seconds{matchers(selector)}"


def vector(body: Any) -> list[tuple[dict[str, str], float]]:
    """The samples of an `/api/v1/query` answer: (labels, value) per series."""
    if not isinstance(body, dict) or body.get("status") != "success":
        error = body.get("error") if isinstance(body, dict) else None
        raise AnswerError(f"query failed: {error or 'not a Prometheus answer'}")
    data = body.get("data")
    if not isinstance(data, dict) or data.get("resultType") != "vector":
        raise AnswerError("the answer is not an instant vector")
    out: list[tuple[dict[str, str], float]] = []
    for series in data.get("result") or []:
        try:
            labels = dict(series["metric"])
            value = float(series["value"][1])
        except (KeyError, IndexError, TypeError, ValueError):
            raise AnswerError("a series without labels or value") from None
        out.append((labels, value))
    return out


def evidence(samples: list[tuple[dict[str, str], float]]) -> Evidence | None:
    """A guard's fleet-wide counts from its observations query; None when the answer
    says nothing (no series, or NaN/Inf)."""
    by_result: dict[str, float] = {}
    for labels, value in samples:
        if not math.isfinite(value):
            return None
        result = labels.get("result", "")
        by_result[result] = by_result.get(result, 0.0) + value
    if not by_result:
        return None
    bad = by_result.get("bad", 0.0)
    return Evidence(total=bad + by_result.get("ok", 0.0), bad=bad)


def verdict(limit: float, min_samples: int, seen: Evidence | None) -> Verdict:
    """The local guard's rule applied to the fleet's counts; silence is inconclusive."""
    if seen is None or seen.total < min_samples:
        return Verdict.INCONCLUSIVE
    if exceeded(limit, min_samples, seen.total, seen.bad):
        return Verdict.TRIP
    return Verdict.WITHIN


def replica_count(samples: list[tuple[dict[str, str], float]]) -> int | None:
    """The answer of `replicas_query`; None when it says nothing."""
    if len(samples) != 1 or not math.isfinite(samples[0][1]) or samples[0][1] < 1:
        return None
    return int(samples[0][1])


@dataclass(frozen=True, slots=True)
class DrainRate:
    """The rate one replica drains at, and the arithmetic behind it (for the log)."""

    per_replica: float
    basis: str


def per_replica_rate(
    fleet_rate: float | None,
    rate: float | None,
    replicas_seen: int | None,
    replicas_hint: int | None,
) -> DrainRate | None:
    """How fast this replica closes moved connections; None: it keeps them.

    A fleet-wide rate is shared: fleet_rate / the replicas Prometheus sees; without an
    answer, / the configured `fleet.replicas`; without that, the flag's per-replica
    `rate` if it gives one; else the whole fleet rate, as if this replica were alone.
    """
    if fleet_rate is None:
        return None if rate is None else DrainRate(rate, f"{rate:g}/s per replica")
    if replicas_seen is not None:
        return DrainRate(
            fleet_rate / replicas_seen,
            f"fleet rate {fleet_rate:g}/s over {replicas_seen} replicas seen by Prometheus",
        )
    if replicas_hint is not None:
        return DrainRate(
            fleet_rate / replicas_hint,
            f"fleet rate {fleet_rate:g}/s over {replicas_hint} replicas (fleet.replicas; "
            "Prometheus did not answer)",
        )
    if rate is not None:
        return DrainRate(rate, f"{rate:g}/s per replica (no replica count for the fleet rate)")
    return DrainRate(
        fleet_rate, f"fleet rate {fleet_rate:g}/s on this replica alone (no replica count)"
    )


@dataclass(frozen=True, slots=True)
class Replica:
    """One scraped proxy and the flag file it serves (`strangler flags status --fleet`)."""

    instance: str
    hashes: tuple[str, ...]
    """Usually one; two while a `--workers` supervisor's workers switch files."""
    loaded_at: float | None


def replicas_view(
    hashes: list[tuple[dict[str, str], float]], loaded: list[tuple[dict[str, str], float]]
) -> list[Replica]:
    """Every replica's flag hash and load time, from `hashes_query` and `loaded_query`."""
    found: dict[str, set[str]] = {}
    for labels, _ in hashes:
        found.setdefault(_instance(labels), set()).add(labels.get("hash", "?"))
    at: dict[str, float] = {}
    for labels, value in loaded:
        if math.isfinite(value):
            at[_instance(labels)] = max(value, at.get(_instance(labels), value))
    return [
        Replica(name, tuple(sorted(found.get(name, ()))), at.get(name))
        for name in sorted(found.keys() | at.keys())
    ]


def flag_files(replicas: list[Replica]) -> set[str]:
    """The distinct flag-file hashes the fleet serves: more than one is skew."""
    return {h for r in replicas for h in r.hashes}


def _instance(labels: dict[str, str]) -> str:
    instance = labels.get("instance", "?")
    job = labels.get("job")
    return instance if job is None else f"{job}/{instance}"
