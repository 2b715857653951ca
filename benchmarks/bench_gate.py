"""Wall time of the standard gate against the reference implementation, and where it goes.

    .venv/bin/python benchmarks/bench_gate.py [--runs 3] [--budget standard] [--json]

With `--vs-full-waits`, each run is followed by one with `--full-waits` (every harness wait at
its fixed length; callgate.conformance.judge.waits), and it prints their figures, the ratios of
the pairs and whether the last pair's case verdicts agree.

Runs `callgate run --adapter reference --budget standard` (seed 0) `--runs` times, each in a
fresh process as a user runs it, and prints the whole-process wall time (minimum, median,
maximum; quote the median), the user and system CPU seconds of the child, its exit code, and the
command. From the last run's results.jsonl it then says where the time went: the run's own
seconds (from its first case to its last, plan building included), the rest of the process
(start-up, imports, writing the reports), the seconds of the cases of each kind (directed,
multi, stateful, parallel) and the slowest cases. Issue 16 asks for the median under 60 s.

With `--vs-jobs M`, each run is followed by one with `--jobs M` (`--jobs 1`: the whole run in one
process, as before `--jobs` existed), and it prints the same comparison; `--jobs N` sets the
measured runs' own `--jobs` (default: callgate's, automatic).

CPU seconds close to the wall time mean the run had a processor to itself; much less means it
waited for one (a shared machine), and the wall figure is then an upper bound.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import shlex
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
TARGET_SECONDS = 60.0


def gate_command(budget: str, out: Path, extra: tuple[str, ...] = ()) -> list[str]:
    return [sys.executable, "-m", "callgate", "run", "--adapter", "reference", "--budget", budget,
            "--seed", "0", "--out", str(out), *extra]


def run_once(budget: str, out: Path, extra: tuple[str, ...] = ()) -> dict[str, Any]:
    """One gate run in a fresh process: wall seconds, the child's CPU seconds, exit code."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.monotonic()
    done = subprocess.run(gate_command(budget, out, extra), cwd=ROOT, capture_output=True,
                          text=True, check=False)
    wall = time.monotonic() - start
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    return {"wall": wall, "user": after.ru_utime - before.ru_utime,
            "system": after.ru_stime - before.ru_stime, "exit": done.returncode}


def breakdown(results: Path, wall: float, slowest: int = 8) -> dict[str, Any]:
    """Where one run's time went, read from its results.jsonl."""
    by_kind: dict[str, float] = {}
    count: dict[str, int] = {}
    cases: list[tuple[float, str, str]] = []
    run_seconds = 0.0
    waits: Any = None
    verdicts: dict[str, str] = {}
    for line in results.read_text(encoding="utf-8").splitlines():
        event = json.loads(line)
        if event.get("event") == "case":
            case = event["case"]
            verdicts[case["id"]] = str(case.get("verdict"))
            by_kind[case["kind"]] = by_kind.get(case["kind"], 0.0) + float(case["seconds"])
            count[case["kind"]] = count.get(case["kind"], 0) + 1
            cases.append((float(case["seconds"]), case["id"], case["kind"]))
        elif event.get("event") == "run_end":
            run_seconds = float(event["seconds"])
            waits = event.get("waits")
    return {
        "run_seconds": round(run_seconds, 2),
        "waits": waits,
        "verdicts": verdicts,
        "outside_run_seconds": round(wall - run_seconds, 2),
        "by_kind": {k: {"cases": count[k], "seconds": round(v, 2)}
                    for k, v in sorted(by_kind.items(), key=lambda kv: -kv[1])},
        "slowest": [{"id": i, "kind": k, "seconds": round(s, 2)}
                    for s, i, k in sorted(cases, reverse=True)[:slowest]],
    }


def spread(values: list[float]) -> dict[str, float]:
    return {"min": round(min(values), 2), "median": round(statistics.median(values), 2),
            "max": round(max(values), 2)}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=3, help="gate runs to time (default 3)")
    parser.add_argument("--budget", default="standard", choices=("quick", "standard", "deep"))
    parser.add_argument("--json", action="store_true", help="print one JSON record")
    parser.add_argument("--vs-full-waits", action="store_true",
                        help="time each run against one with --full-waits (the fixed wait "
                             "lengths), in turn, and compare their verdicts")
    parser.add_argument("--jobs", default=None, metavar="N|auto",
                        help="the measured runs' --jobs (default: callgate's own, auto)")
    parser.add_argument("--vs-jobs", default=None, metavar="M",
                        help="time each run against one with --jobs M (e.g. 1), in turn, and "
                             "compare their verdicts")
    args = parser.parse_args(argv)
    if args.runs < 1:
        parser.error("--runs must be at least 1")
    if args.vs_full_waits and args.vs_jobs:
        parser.error("give one of --vs-full-waits and --vs-jobs")
    mine: tuple[str, ...] = ("--jobs", args.jobs) if args.jobs else ()
    theirs_extra = (*mine, "--full-waits") if args.vs_full_waits else ("--jobs", args.vs_jobs)
    versus: dict[str, Any] | None = None
    with tempfile.TemporaryDirectory(prefix="bench-gate-") as tmp:
        out, fixed = Path(tmp) / "report", Path(tmp) / "full-waits"
        runs, others = [], []
        for _ in range(args.runs):
            runs.append(run_once(args.budget, out, mine))
            if args.vs_full_waits or args.vs_jobs:
                others.append(run_once(args.budget, fixed, theirs_extra))
        where = breakdown(out / "results.jsonl", runs[-1]["wall"])
        if args.vs_full_waits or args.vs_jobs:
            theirs = breakdown(fixed / "results.jsonl", others[-1]["wall"])
            versus = {
                "wall_seconds": spread([r["wall"] for r in others]),
                "cpu_seconds": spread([r["user"] + r["system"] for r in others]),
                "wall_ratio": spread([a["wall"] / b["wall"] for a, b in zip(runs, others, strict=True)]),
                "cpu_ratio": spread([(a["user"] + a["system"]) / (b["user"] + b["system"])
                                     for a, b in zip(runs, others, strict=True)]),
                "command": shlex.join(["callgate", *gate_command(args.budget, Path("OUT"),
                                                                   theirs_extra)[3:]]),
                "same_verdicts": where["verdicts"] == theirs["verdicts"],
                "exit_codes": [r["exit"] for r in others]}
    where.pop("verdicts")
    shown = shlex.join(["callgate", *gate_command(args.budget, Path("OUT"), mine)[3:]])
    record = {
        "command": shown, "runs": args.runs,
        "wall_seconds": spread([r["wall"] for r in runs]),
        "user_seconds": spread([r["user"] for r in runs]),
        "system_seconds": spread([r["system"] for r in runs]),
        "exit_codes": [r["exit"] for r in runs],
        "target_seconds": TARGET_SECONDS,
        "last_run": where,
        "vs_full_waits" if args.vs_full_waits else "vs_jobs": versus,
        "machine": {"python": platform.python_version(), "platform": platform.platform(),
                    "cpus": os.cpu_count(), "load_average": [round(x, 2) for x in os.getloadavg()]},
    }
    if args.json:
        print(json.dumps(record, indent=1))
        return 0
    print(f"command: {shown}  ({args.runs} runs, fresh processes)")
    for name in ("wall_seconds", "user_seconds", "system_seconds"):
        s = record[name]
        print(f"  {name.replace('_', ' '):15} min {s['min']:8.2f}  median {s['median']:8.2f}  "
              f"max {s['max']:8.2f}")
    print(f"  exit codes: {record['exit_codes']}; target: median wall under {TARGET_SECONDS:g} s "
          f"({'met' if record['wall_seconds']['median'] < TARGET_SECONDS else 'NOT met'})")
    print(f"last run: {where['run_seconds']} s in the run, {where['outside_run_seconds']} s "
          f"outside it (start-up, imports, reports)")
    for kind, k in where["by_kind"].items():
        print(f"  {kind:10} {k['cases']:4} cases {k['seconds']:8.2f} s")
    print("  slowest: " + ", ".join(f"{c['id']} {c['seconds']} s" for c in where["slowest"]))
    print(f"  waits: {where['waits']}")
    if versus is not None:
        print(f"against {versus['command']}, run in turn:")
        for name in ("wall_seconds", "cpu_seconds", "wall_ratio", "cpu_ratio"):
            v = versus[name]
            print(f"  {name.replace('_', ' '):15} min {v['min']:8.2f}  median {v['median']:8.2f}  "
                  f"max {v['max']:8.2f}")
        print(f"  exit codes {versus['exit_codes']}; same verdicts in the last pair: "
              f"{versus['same_verdicts']}")
    print(f"load average at the end: {record['machine']['load_average']} on "
          f"{record['machine']['cpus']} CPUs")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
