"""Wall time of the standard gate against the reference implementation, and where it goes.

    .venv/bin/python benchmarks/bench_gate.py [--runs 3] [--budget standard] [--json]

With `--vs REV` (a commit, e.g. the previous main), the same command runs from a temporary
`git worktree` of REV too, in turn with this tree's (this, REV, this, REV, ...; `--warmup` runs
of each first, default 1, not counted, so that both start with their caches filled), and it prints both
sides' figures and the ratios this / REV of wall and CPU time, pair by pair (quote the median),
and whether the last pair's case verdicts, step counts and coverage agree.

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


def run_once(budget: str, out: Path, extra: tuple[str, ...] = (), root: Path = ROOT
             ) -> dict[str, Any]:
    """One gate run in a fresh process, with the callgate of `root`: wall seconds, the child's
    CPU seconds, exit code."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.monotonic()
    env = {**os.environ, "PYTHONPATH": str(root)}
    done = subprocess.run(gate_command(budget, out, extra), cwd=root, env=env,
                          capture_output=True, text=True, check=False)
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


def outcome(results: Path) -> dict[str, Any]:
    """What must not change between two runs: each case's verdict and steps (the parallel cases'
    steps follow the interleavings observed, and are left out), and the transitions covered."""
    cases: dict[str, tuple[str, int | None]] = {}
    covered: set[str] = set()
    for line in results.read_text(encoding="utf-8").splitlines():
        event = json.loads(line)
        if event.get("event") == "case":
            case = event["case"]
            steps = None if case["kind"] == "parallel" else int(case["steps"])
            cases[case["id"]] = (str(case.get("verdict")), steps)
            covered.update(case.get("covered", ()))
    return {"cases": cases, "covered": covered}


def versus_commit(budget: str, runs: int, rev: str, tmp: Path, warmup: int = 1
                  ) -> dict[str, Any]:
    """This tree against a temporary worktree of `rev`, in turn (see the module's doc)."""
    theirs_root = tmp / "baseline"
    subprocess.run(["git", "worktree", "add", "--detach", str(theirs_root), rev], cwd=ROOT,
                   check=True, capture_output=True)
    try:
        commit = subprocess.run(["git", "rev-parse", "--short", rev], cwd=ROOT, check=True,
                                capture_output=True, text=True).stdout.strip()
        mine_out, theirs_out = tmp / "this", tmp / "baseline-out"
        for _ in range(warmup):  # not counted: fill each side's caches
            run_once(budget, mine_out)
            run_once(budget, theirs_out, root=theirs_root)
        mine, theirs = [], []
        for _ in range(runs):
            mine.append(run_once(budget, mine_out))
            theirs.append(run_once(budget, theirs_out, root=theirs_root))
        a, b = outcome(mine_out / "results.jsonl"), outcome(theirs_out / "results.jsonl")
    finally:
        subprocess.run(["git", "worktree", "remove", "--force", str(theirs_root)], cwd=ROOT,
                       check=False, capture_output=True)

    def cpu(r: dict[str, Any]) -> float:
        return float(r["user"] + r["system"])

    return {
        "rev": rev, "commit": commit, "runs": runs, "warmup": warmup,
        "this": {"wall_seconds": spread([r["wall"] for r in mine]),
                 "cpu_seconds": spread([cpu(r) for r in mine]),
                 "exit_codes": [r["exit"] for r in mine]},
        "baseline": {"wall_seconds": spread([r["wall"] for r in theirs]),
                     "cpu_seconds": spread([cpu(r) for r in theirs]),
                     "exit_codes": [r["exit"] for r in theirs]},
        "wall_ratio": spread([x["wall"] / y["wall"] for x, y in zip(mine, theirs, strict=True)]),
        "cpu_ratio": spread([cpu(x) / cpu(y) for x, y in zip(mine, theirs, strict=True)]),
        "same_verdicts_and_steps": a["cases"] == b["cases"],
        "differences": {i: {"this": a["cases"].get(i), "baseline": b["cases"].get(i)}
                        for i in sorted(set(a["cases"]) | set(b["cases"]))
                        if a["cases"].get(i) != b["cases"].get(i)},
        "same_coverage": a["covered"] == b["covered"],
        "cases": len(a["cases"]), "covered": len(a["covered"]),
    }


def print_versus(v: dict[str, Any], shown: str) -> None:
    print(f"{shown}: this tree against {v['rev']} ({v['commit']}), in turn, {v['runs']} pairs "
          f"after {v['warmup']} warm-up run(s) of each, fresh processes")
    for side in ("this", "baseline"):
        for name in ("wall_seconds", "cpu_seconds"):
            s = v[side][name]
            print(f"  {side:8} {name.replace('_', ' '):12} min {s['min']:8.2f}  median "
                  f"{s['median']:8.2f}  max {s['max']:8.2f}")
    for name in ("wall_ratio", "cpu_ratio"):
        s = v[name]
        print(f"  {name.replace('_', ' '):21} min {s['min']:8.2f}  median {s['median']:8.2f}  "
              f"max {s['max']:8.2f}   (this / {v['commit']})")
    print(f"  exit codes: this {v['this']['exit_codes']}, baseline {v['baseline']['exit_codes']}")
    print(f"  last pair: same verdicts and steps {v['same_verdicts_and_steps']} "
          f"({v['cases']} cases), same coverage {v['same_coverage']} ({v['covered']} "
          f"transitions)")
    for case, sides in v["differences"].items():
        print(f"    differs: {case}: this {sides['this']}, baseline {sides['baseline']}")


def spread(values: list[float]) -> dict[str, float]:
    return {"min": round(min(values), 2), "median": round(statistics.median(values), 2),
            "max": round(max(values), 2)}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=3, help="gate runs to time (default 3)")
    parser.add_argument("--budget", default="standard", choices=("quick", "standard", "deep"))
    parser.add_argument("--json", action="store_true", help="print one JSON record")
    parser.add_argument("--vs", metavar="REV",
                        help="time this tree against commit REV (e.g. the previous main), in "
                             "turn, from a temporary git worktree")
    parser.add_argument("--warmup", type=int, default=1,
                        help="with --vs: uncounted runs of each side first (default 1)")
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
    shown = shlex.join(["callgate", *gate_command(args.budget, Path("OUT"))[3:]])
    if args.vs:
        with tempfile.TemporaryDirectory(prefix="bench-gate-") as tmp:
            record = versus_commit(args.budget, args.runs, args.vs, Path(tmp), args.warmup)
        record["command"] = shown
        record["machine"] = {"python": platform.python_version(),
                             "platform": platform.platform(), "cpus": os.cpu_count(),
                             "load_average": [round(x, 2) for x in os.getloadavg()]}
        if args.json:
            print(json.dumps(record, indent=1))
        else:
            print_versus(record, shown)
            print(f"load average at the end: {record['machine']['load_average']} on "
                  f"{record['machine']['cpus']} CPUs")
        return 0
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
