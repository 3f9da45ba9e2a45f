"""Autobahn|Testsuite results against the pinned baseline (tests/autobahn/baseline.json).

    python tests/autobahn/verdict.py REPORTS_DIR MODE [MODE ...] [--update]

REPORTS_DIR holds one fuzzingclient report per mode (REPORTS_DIR/<mode>/index.json).
For each mode this prints how many cases ended in each outcome, then every case whose
outcome (the protocol behaviour, or the closing behaviour) is worse than the baseline
allows. Exit status 1 when there is any; 0 otherwise. `--update` writes the results as
the new baseline instead (for a change that makes cases better, or a new case list).
"""

from __future__ import annotations

import argparse
import json
import sys
from collections import Counter
from pathlib import Path

BASELINE = Path(__file__).resolve().parent / "baseline.json"

# From best to worst. INFORMATIONAL cases have no right answer (the RFC leaves a
# choice): they rank beside NON-STRICT, above any hard failure.
BEHAVIOUR = ("OK", "NON-STRICT", "INFORMATIONAL", "UNIMPLEMENTED", "FAILED")
CLOSE = ("OK", "INFORMATIONAL", "WRONG CODE", "UNCLEAN", "FAILED BY CLIENT", "FAILED")

# case id -> (behaviour, closing behaviour); the baseline writes them "OK/OK".
Results = dict[str, tuple[str, str]]


def read_report(path: Path, agent: str) -> Results:
    """One agent's results from a fuzzingclient index.json."""
    index = json.loads(path.read_text())
    cases = index[agent]
    return {case: (r["behavior"], r["behaviorClose"]) for case, r in cases.items()}


def _rank(order: tuple[str, ...], value: str) -> int:
    # An outcome this list does not know is treated as the worst.
    return order.index(value) if value in order else len(order)


def worse(got: tuple[str, str], allowed: tuple[str, str]) -> bool:
    """Whether `got` is worse than `allowed` in either behaviour."""
    return _rank(BEHAVIOUR, got[0]) > _rank(BEHAVIOUR, allowed[0]) or _rank(CLOSE, got[1]) > _rank(
        CLOSE, allowed[1]
    )


def case_key(case: str) -> tuple[int, ...]:
    return tuple(int(part) for part in case.split("."))


def summary(results: Results) -> str:
    counts = Counter(behaviour for behaviour, _ in results.values())
    closes = Counter(close for _, close in results.values())
    parts = [f"{counts[b]} {b}" for b in BEHAVIOUR if counts[b]]
    parts += [f"{n} {b}" for b, n in counts.items() if b not in BEHAVIOUR]
    close_parts = [f"{n} {c}" for c, n in sorted(closes.items()) if c != "OK"]
    text = f"{len(results)} cases: " + " / ".join(parts)
    return text + (f" (close: {', '.join(close_parts)})" if close_parts else "")


def regressions(results: Results, baseline: dict[str, str], *, partial: bool = False) -> list[str]:
    """Lines naming each case worse than the baseline, or missing from either side
    (`partial`: only some cases were run, so the others are not missing)."""
    lines = []
    for case in sorted(set(results) | (set() if partial else set(baseline)), key=case_key):
        if case not in results:
            lines.append(f"  {case}: not run (the baseline has it)")
        elif case not in baseline:
            lines.append(f"  {case}: {'/'.join(results[case])}, not in the baseline")
        else:
            behaviour, _, close = baseline[case].partition("/")
            if worse(results[case], (behaviour, close)):
                got = "/".join(results[case])
                lines.append(f"  {case}: {got}, the baseline allows {baseline[case]}")
    return lines


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("reports", type=Path)
    parser.add_argument("modes", nargs="+")
    parser.add_argument("--update", action="store_true", help="write the baseline instead")
    parser.add_argument("--partial", action="store_true", help="only some cases were run")
    args = parser.parse_args(argv)
    stored = json.loads(BASELINE.read_text()) if BASELINE.exists() else {}
    failed = False
    for mode in args.modes:
        results = read_report(args.reports / mode / "index.json", mode)
        print(f"autobahn: {mode}: {summary(results)}")
        if args.update:
            merged = {**stored.get(mode, {}), **{c: "/".join(r) for c, r in results.items()}}
            stored[mode] = {c: merged[c] for c in sorted(merged, key=case_key)}
            continue
        if mode not in stored:
            print(f"autobahn: {mode}: no baseline in {BASELINE}")
            failed = True
            continue
        lines = regressions(results, stored[mode], partial=args.partial)
        if lines:
            failed = True
            print(f"autobahn: {mode}: {len(lines)} cases worse than the baseline:")
            print("\n".join(lines))
    if args.update:
        BASELINE.write_text(json.dumps(stored, indent=1) + "\n")
        print(f"autobahn: baseline written to {BASELINE}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
