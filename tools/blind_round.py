"""Run the standard gate against each fault of the blind round (blind_faults.BLIND_FAULTS).

    python tools/blind_round.py [NAME ...] [--budget standard] [--seed 0] [--json FILE]

Each fault is the reference implementation with that one fault switched on, run in process
with the gate's own unit order (`run_gate`, one process) until its first failing case, as
`callgate mutants` stops at a kill; a fault no case fails runs the whole budget. An `error`
case also ends the run and is reported as such (look at its message: on a loaded machine a
timeout can be the machine's doing). Prints one table row per fault: the fault, the rule it
breaks, the verdict (killed or survived), the case that failed and its kind, its length
after shrinking, and the seconds from the start of the run.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from callgate.conformance.budgets import BUDGETS
from callgate.conformance.gate import RunOptions, StopRun, Tick, run_gate
from callgate.conformance.implementations.reference.adapter import ReferenceAdapter
from callgate.conformance.implementations.reference.blind_faults import BLIND_FAULTS
from callgate.conformance.mutants import case_kind
from callgate.conformance.results import CaseResult, Verdict


def run_one(name: str, budget: str, seed: int) -> dict[str, Any]:
    """The gate against the reference with blind fault `name`: the first failing case, if any."""
    adapter = ReferenceAdapter(faults={name})
    found: list[tuple[CaseResult, float]] = []
    cases = 0
    started = time.perf_counter()

    def progress(tick: Tick) -> None:
        nonlocal cases
        cases = tick.cases
        result = tick.result
        if result is not None and result.verdict in (Verdict.FAIL, Verdict.ERROR):
            found.append((result, time.perf_counter() - started))
            raise StopRun

    try:
        with tempfile.TemporaryDirectory(prefix=f"callgate-blind-{name}-") as out:
            run_gate(adapter, RunOptions(f"reference+{name}", BUDGETS[budget], seed, Path(out),
                                         reports=False, jobs=1), progress)
    finally:
        adapter.shutdown()
    row: dict[str, Any] = {"fault": name, "rule": BLIND_FAULTS[name].rule,
                           "effect": BLIND_FAULTS[name].effect, "cases": cases,
                           # how often the faulty branch was taken: 0 means no case reached it
                           "acted": adapter.host.acted,
                           "seconds": round(time.perf_counter() - started, 1)}
    if not found:
        row["verdict"] = "survived"
        return row
    result, at = found[0]
    row.update(verdict="killed" if result.verdict is Verdict.FAIL else "error",
               case=result.id, kind=case_kind(result), seconds=round(at, 1),
               length=result.length_after or len(result.trace),
               failed_rules=list(result.failed_rules), message=result.message[:300])
    return row


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("names", nargs="*", help="blind faults to run (default: all)")
    parser.add_argument("--budget", default="standard", choices=sorted(BUDGETS))
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--json", metavar="FILE", help="also write the rows as JSON lines")
    args = parser.parse_args(argv)
    names = args.names or sorted(BLIND_FAULTS)
    unknown = sorted(set(names) - set(BLIND_FAULTS))
    if unknown:
        parser.error(f"unknown blind fault(s): {', '.join(unknown)}")
    print("| fault | rule | verdict | case (kind, length) | seconds |")
    print("|---|---|---|---|---|")
    for name in names:
        row = run_one(name, args.budget, args.seed)
        where = (f"`{row['case']}` ({row['kind']}, {row['length']} steps)" if "case" in row
                 else f"none of {row['cases']} cases (the fault acted {row['acted']} times)")
        print(f"| `{name}` | {row['rule']} | {row['verdict']} | {where} | {row['seconds']} |",
              flush=True)
        if args.json:
            with open(args.json, "a", encoding="utf-8") as stream:
                stream.write(json.dumps(row) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
