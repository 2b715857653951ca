"""Kill rate and median time to kill of directed cases alone, stateful cases alone, and both.

Runs the seeded-fault mutants (`callgate.conformance.mutants`) once per configuration, on the same
mutants, budget and seed, and prints one line per configuration with the command that made it.
The parallel cases (a third kind) are shown too, alone and with everything, for comparison.

    .venv/bin/python benchmarks/bench_mutants.py [--budget quick] [--seed 0] [--workers 2]
                                                 [--only NAME ...] [--json]

With `--vs DIR` it instead times one `callgate mutants --json` run (all kinds of case) of this
tree against the same run of another checkout DIR (the previous main, say: `git worktree add
DIR main`), each in a fresh process, in turn (`--repeat` pairs), and prints per tree the wall
seconds, the kills and the minimal counterexamples, and the ratio of wall seconds, this tree's
over DIR's, pair by pair (the machine is shared: pairs keep the ratio meaningful when its
speed drifts).

With `--summarize FILE ...` it reads `mutants.json` reports (`callgate mutants --out DIR`) and
prints per report its seconds, kills of the non-equivalent mutants, equivalent mutants run or
left out, the median time to kill and the 10 slowest mutants (their seconds and what killed
them): the figures of issue 20's mutant target, before and after.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shlex
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from callgate.conformance import mutants

HERE = Path(__file__).resolve().parent.parent


def run_tree(tree: Path, args: argparse.Namespace) -> dict[str, Any]:
    """One `callgate mutants --json` run of the code in `tree`, in a fresh process."""
    command = [sys.executable, "-m", "callgate", "mutants", "--json", "--budget", args.budget,
               "--seed", str(args.seed), "--workers", str(args.workers)]
    if args.only:
        command += ["--only", *args.only]
    env = {**os.environ, "PYTHONPATH": str(tree)}
    started = time.perf_counter()
    done = subprocess.run(command, cwd=tree, env=env, capture_output=True, text=True,
                          check=False)
    wall = time.perf_counter() - started
    if done.returncode not in (0, 1):
        raise SystemExit(f"{tree}: callgate mutants exited {done.returncode}: "
                         f"{done.stderr[-2000:]}")
    report = json.loads(done.stdout)
    return {"tree": str(tree), "wall_seconds": round(wall, 1), "total": report["total"],
            "killed": report["killed"],
            "minimal_counterexamples": report["minimal_counterexamples"],
            "median_seconds_to_kill": report["median_seconds_to_kill"],
            "killed_names": sorted(m["name"] for m in report["mutants"] if m["killed"])}


def compare(args: argparse.Namespace, command: str) -> int:
    """This tree against `args.vs`, in turn, `args.repeat` pairs."""
    pairs = []
    for _ in range(args.repeat):
        this = run_tree(HERE, args)
        that = run_tree(Path(args.vs).resolve(), args)
        pairs.append({"this": this, "baseline": that,
                      "ratio": round(this["wall_seconds"] / that["wall_seconds"], 3)})
        print(f"pair {len(pairs)}: {this['wall_seconds']} s against {that['wall_seconds']} s",
              file=sys.stderr, flush=True)
    ratio = statistics.median(p["ratio"] for p in pairs)
    record = {"command": command, "budget": args.budget, "seed": args.seed,
              "workers": args.workers, "cpus": os.cpu_count(),
              "load_average": os.getloadavg(), "pairs": pairs, "median_ratio": ratio}
    if args.json:
        print(json.dumps(record, indent=2))
        return 0
    print(f"command: {command}")
    for i, pair in enumerate(pairs, 1):
        for side in ("this", "baseline"):
            row = pair[side]
            print(f"pair {i} {side:<8} {row['wall_seconds']:>8} s  killed {row['killed']}/"
                  f"{row['total']}  minimal {row['minimal_counterexamples']}  "
                  f"median s to kill {row['median_seconds_to_kill']}")
        same = pair["this"]["killed_names"] == pair["baseline"]["killed_names"]
        print(f"pair {i} ratio {pair['ratio']} (same mutants killed: {same})")
    print(f"median ratio, this tree over the baseline: {ratio}")
    return 0

def summarize(paths: list[str], slowest: int = 10) -> int:
    """The figures of each `mutants.json` report in `paths`, and its slowest mutants."""
    for path in paths:
        report = json.loads(Path(path).read_text(encoding="utf-8"))
        rows = report["mutants"]
        equivalent = set(report.get("equivalent", ()))
        left_out = set(report.get("not_run", ()))
        killable = [m for m in rows if m["name"] not in equivalent]
        print(f"{path}: {report['seconds']} s ({report.get('command', '')})")
        print(f"  killed {sum(m['killed'] for m in killable)} of {len(killable)} non-equivalent; "
              f"equivalent run {len(equivalent & {m['name'] for m in rows}) - len(left_out)}, "
              f"not run {len(left_out)}; median s to kill {report['median_seconds_to_kill']}; "
              f"minimal {report['minimal_counterexamples']}; worker seconds "
              f"{round(sum(m['seconds'] for m in rows), 1)}")
        for m in sorted(rows, key=lambda m: -m["seconds"])[:slowest]:
            print(f"  {m['seconds']:>8.1f} s  {m['name']}  "
                  f"{m['killed_by'] or ('not run' if not m.get('ran', True) else 'survived')}")
    return 0


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
    parser.add_argument("--workers", default="2", help="a number, or auto")
    parser.add_argument("--only", nargs="+", default=None, metavar="NAME")
    parser.add_argument("--configs", nargs="+", default=list(CONFIGS), choices=list(CONFIGS))
    parser.add_argument("--json", action="store_true")
    parser.add_argument("--vs", metavar="DIR", help="another checkout to time against")
    parser.add_argument("--repeat", type=int, default=1, help="pairs of runs with --vs")
    parser.add_argument("--summarize", nargs="+", metavar="FILE",
                        help="print the figures of these mutants.json reports and stop")
    args = parser.parse_args()
    if args.summarize:
        return summarize(args.summarize)
    command = "python benchmarks/bench_mutants.py " + " ".join(
        shlex.quote(a) for a in sys.argv[1:])
    if args.vs:
        return compare(args, command)
    rows = []
    for name in args.configs:
        started = time.perf_counter()
        report = mutants.run_mutants(args.only, args.budget, args.seed, CONFIGS[name],
                                     None if args.workers == "auto" else int(args.workers))
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
