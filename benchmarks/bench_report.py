"""The run's end: how long writing the reports of one results.jsonl takes, with the model's cache
empty (the first run after a change to the model or the report's code) and then filled.

    .venv/bin/python benchmarks/bench_report.py RESULTS.jsonl [--runs 3] [--root DIR]

Each measurement is a fresh process (`callgate report --from RESULTS.jsonl --out DIR`), with
`CALLGATE_CACHE_DIR` pointing at a temporary directory: the first run fills it (diagram
projections, SVGs, compiled templates, the unpinned graphs), the next `--runs` use it. Prints
wall and CPU seconds (the child's user and system time, Graphviz included) of each, and the
median of the warm runs. `--root DIR` runs the callgate of another tree (a worktree of the
previous main) for a comparison.
"""

from __future__ import annotations

import argparse
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def run_once(results: Path, cache: Path, root: Path = ROOT) -> tuple[float, float, int]:
    """One `callgate report` in a fresh process: wall seconds, CPU seconds, exit code."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    with tempfile.TemporaryDirectory() as out:
        env = {**os.environ, "PYTHONPATH": str(root), "CALLGATE_CACHE_DIR": str(cache)}
        start = time.monotonic()
        done = subprocess.run([sys.executable, "-m", "callgate", "report", "--from", str(results),
                               "--out", out], cwd=root, env=env, capture_output=True, check=False)
        wall = time.monotonic() - start
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return wall, cpu, done.returncode


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("results", type=Path, help="a run's results.jsonl")
    parser.add_argument("--runs", type=int, default=3, help="runs with the cache filled")
    parser.add_argument("--root", type=Path, default=ROOT, help="the callgate tree to run")
    args = parser.parse_args(argv)
    root = args.root.resolve()
    with tempfile.TemporaryDirectory() as cache:
        cold = run_once(args.results.resolve(), Path(cache), root)
        warm = [run_once(args.results.resolve(), Path(cache), root) for _ in range(args.runs)]
    print(f"cache empty:  wall {cold[0]:.2f} s, cpu {cold[1]:.2f} s, exit {cold[2]}")
    for wall, cpu, code in warm:
        print(f"cache filled: wall {wall:.2f} s, cpu {cpu:.2f} s, exit {code}")
    print(f"median filled: wall {statistics.median(w for w, _, _ in warm):.2f} s, "
          f"cpu {statistics.median(c for _, c, _ in warm):.2f} s")
    return 0 if cold[2] == 0 and all(code == 0 for _, _, code in warm) else 1


if __name__ == "__main__":
    sys.exit(main())
