"""Kill rate and median time to kill of directed cases alone, stateful cases alone, and both.

Runs the seeded-fault mutants (`callgate.conformance.mutants`) once per configuration, on the same
mutants, budget and seed, and prints one line per configuration with the command that made it.
The parallel cases (a third kind) are shown too, alone and with everything, for comparison.

    .venv/bin/python benchmarks/bench_mutants.py [--budget quick] [--seed 0] [--workers 2]
                                                 [--only NAME ...] [--json]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shlex
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from callgate.conformance import mutants

CONFIGS: dict[str, tuple[str, ...]] = {
    "directed": ("directed",),
    "stateful": ("stateful",),
    "directed+stateful": ("directed", "stateful"),
    "parallel": ("parallel",),
    "all": mutants.KINDS,
}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--budget", default="quick")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--only", nargs="+", default=None, metavar="NAME")
    parser.add_argument("--configs", nargs="+", default=list(CONFIGS), choices=list(CONFIGS))
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    command = "python benchmarks/bench_mutants.py " + " ".join(
        shlex.quote(a) for a in sys.argv[1:])
    rows = []
    for name in args.configs:
        started = time.perf_counter()
        report = mutants.run_mutants(args.only, args.budget, args.seed, CONFIGS[name],
                                     args.workers)
        rows.append({
            "config": name, "kinds": list(CONFIGS[name]), "total": len(report.results),
            "killed": len(report.killed), "kill_rate": round(report.kill_rate, 4),
            "median_seconds_to_kill": report.median_seconds_to_kill,
            "minimal_counterexamples": report.minimal_counterexamples,
            "wall_seconds": round(time.perf_counter() - started, 1),
            "survivors": [r.name for r in report.survivors],
        })
        print(f"{name}: {len(report.killed)}/{len(report.results)} killed", file=sys.stderr,
              flush=True)
    record = {"command": command, "budget": args.budget, "seed": args.seed,
              "workers": args.workers, "cpus": os.cpu_count(),
              "python": platform.python_version(), "configs": rows}
    if args.json:
        print(json.dumps(record, indent=2))
        return 0
    print(f"command: {command}")
    print(f"budget {args.budget}, seed {args.seed}, {args.workers} workers, "
          f"{os.cpu_count()} CPUs, Python {platform.python_version()}")
    print(f"{'cases':<19} {'killed':>9} {'kill rate':>9} {'median s':>9} {'minimal':>8} "
          f"{'wall s':>7}  survivors")
    for row in rows:
        median = row["median_seconds_to_kill"]
        print(f"{row['config']:<19} {row['killed']:>4}/{row['total']:<4} "
              f"{row['kill_rate']:>9.1%} {'-' if median is None else f'{median:.2f}':>9} "
              f"{row['minimal_counterexamples']:>8} {row['wall_seconds']:>7}  "
              f"{len(row['survivors'])}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
