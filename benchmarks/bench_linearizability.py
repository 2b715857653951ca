"""Measures the linearizability checker on generated histories of 100, 1,000 and 10,000 operations.

    .venv/bin/python benchmarks/bench_linearizability.py [--sizes 100,1000,10000] [--slots 10]
                                                         [--overlap 4] [--repeat 3] [--json]

Each history is made from the model itself, so it is linearizable by construction: per slot (a
system event, half of them `CLSID_StdEvent` and half `CLSID_ManualResetEvent`), a random
sequence of `Signal`, `Reset` and `ISynchronize::Wait` (zero timeout) is stepped through the
model, each operation gets the code of the outcome the model picked, and the operations are
given overlapping intervals around their linearization points: each interval stretches up to
`--overlap` neighbouring points either side, so several operations are in flight at every
moment and the checker must search. Operations of all slots are interleaved on one time axis.

Figures per size: the partitioned check (`callgate.conformance.judge.linearizability.check`, slots checked
apart as Porcupine does), the same operations as one slot (no partitioning: all on one event),
and a broken history (one Wait's result flipped near the end) with the search for its shortest
non-linearizable cut. Best of `--repeat` runs. The acceptance bound is the partitioned
1,000-operation history deciding in under a second; the script says whether it held.
"""

from __future__ import annotations

import argparse
import json
import platform
import random
import sys
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from callgate.conformance.implementations.reference.adapter import PINS
from callgate.conformance.judge.linearizability import HistoryOp, Linearizability, check
from callgate.model.families import MACHINES
from callgate.model.transitions import Exact, Returns, State, step

EVENT = MACHINES["event"]
ACTIONS = (("Signal", ()), ("Reset", ()), ("Wait", (("timeout", "zero"),)))


def _code(allowed: Any) -> int:
    spec = allowed.code
    if isinstance(spec, Exact):
        return spec.code.value
    if isinstance(spec, Returns):
        return spec.value
    raise ValueError(f"no concrete code for {spec}")


def history(size: int, slots: int, overlap: int, rng: random.Random
            ) -> tuple[list[HistoryOp], dict[str, State]]:
    """`size` operations over `slots` events, linearizable by construction."""
    states = {f"e{i}": EVENT.make(kind="StdEvent" if i % 2 else "ManualResetEvent")
              for i in range(slots)}
    initial = dict(states)
    ops = []
    for n in range(size):
        slot = f"e{rng.randrange(slots)}"
        name, args = rng.choice(ACTIONS)
        result = step(EVENT, states[slot], name, args, PINS)
        allowed = rng.choice(result.allowed)
        states[slot] = allowed.next_state
        point = float(n)
        before = rng.uniform(0.0, overlap)
        after = rng.uniform(0.0, overlap)
        ops.append(HistoryOp(n, slot, f"t{n % 8}", name, args, point - before, point + after,
                             _code(allowed)))
    return ops, initial


def best(fn: Any, repeat: int) -> tuple[float, Any]:
    times = []
    result = None
    for _ in range(repeat):
        started = time.perf_counter()
        result = fn()
        times.append(time.perf_counter() - started)
    return min(times), result


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="100,1000,10000")
    parser.add_argument("--slots", type=int, default=10)
    parser.add_argument("--overlap", type=float, default=4.0)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args(argv)
    sizes = [int(s) for s in args.sizes.split(",")]
    rows = []
    ok = True
    for size in sizes:
        rng = random.Random(args.seed + size)
        ops, initial = history(size, args.slots, args.overlap, rng)
        machines = {slot: EVENT for slot in initial}
        starts = {slot: [state] for slot, state in initial.items()}
        partitioned, verdict = best(
            lambda ops=ops, machines=machines, starts=starts: check(ops, machines, starts, PINS),
            args.repeat)
        assert verdict.verdict is Linearizability.LINEARIZABLE, verdict.summary()
        explored = verdict.explored
        # One slot: the same kinds of operations all on one event (its own linearizable history).
        one_ops, one_initial = history(size, 1, args.overlap, random.Random(args.seed + size))
        single, single_verdict = best(
            lambda one_ops=one_ops, one_initial=one_initial: check(
                one_ops, {"e0": EVENT}, {"e0": [one_initial["e0"]]}, PINS),
            args.repeat)
        # A broken history: flip the result of a Wait near the end.
        waits = [i for i, o in enumerate(ops) if o.op == "Wait"]
        flip = waits[int(len(waits) * 0.9)]
        bad = list(ops)
        bad[flip] = replace(bad[flip], code=0x80010115 if bad[flip].code == 0 else 0)
        broken, broken_verdict = best(
            lambda bad=bad, machines=machines, starts=starts: check(bad, machines, starts, PINS),
            args.repeat)
        failing = broken_verdict.failing()
        row = {
            "operations": size, "slots": args.slots, "overlap": args.overlap,
            "partitioned_seconds": round(partitioned, 4), "configurations": explored,
            "one_slot_seconds": round(single, 4),
            "one_slot_verdict": single_verdict.verdict.value,
            "broken_seconds_with_shrink": round(broken, 4),
            "broken_verdict": broken_verdict.verdict.value,
            "broken_cut_operations": len(failing.counterexample) if failing else None,
        }
        rows.append(row)
        if size == 1000 and partitioned >= 1.0:
            ok = False
    command = " ".join([".venv/bin/python", "benchmarks/bench_linearizability.py", *(
        argv if argv is not None else sys.argv[1:])])
    environment = {"python": platform.python_version(), "platform": platform.platform(),
                   "command": command}
    if args.json:
        print(json.dumps({"environment": environment, "rows": rows,
                          "thousand_under_one_second": ok}, indent=1))
    else:
        print(f"command: {command}")
        print(f"python {environment['python']} on {environment['platform']}")
        print(f"{'ops':>6} {'partitioned s':>14} {'configs':>8} {'one slot s':>11} "
              f"{'broken s':>9} {'broken verdict':>17} {'cut ops':>8}")
        for row in rows:
            print(f"{row['operations']:>6} {row['partitioned_seconds']:>14.4f} "
                  f"{row['configurations']:>8} {row['one_slot_seconds']:>11.4f} "
                  f"{row['broken_seconds_with_shrink']:>9.4f} {row['broken_verdict']:>17} "
                  f"{row['broken_cut_operations']!s:>8}")
        print("1,000-operation partitioned history under 1 s: " + ("yes" if ok else "NO"))
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
