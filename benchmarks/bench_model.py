"""Benchmark of the model checkers: `callgate model check`, and exploring a large composition.

Prints, with the command that produced them and the machine they were measured on:

* the wall time of `callgate model check --json` (a fresh process, as a user runs it), best of
  `--repeat` runs, the CPU time of each (its workers included), and the time the run reports
  for itself; with `--cold`, under `CALLGATE_CACHE=off` (every check runs);
* the reachable state graph of `callgate.model.verify.LARGE_COMPOSITION` (two call objects and a
  container: over 100,000 states), explored without networkx (`explore_counts`): states, edges,
  seconds, states per second and peak memory (the exploring process's peak resident set);
* building the networkx graph of the default composition (`build_graph`), with its tours.

Run: .venv/bin/python benchmarks/bench_model.py [--repeat N] [--cold] [--json]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import shlex
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def _peak_rss_mb() -> float:
    """Peak resident set of this process, in MB (Linux reports kB, macOS bytes)."""
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / (1 << 20) if sys.platform == "darwin" else peak / 1024


def _children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def time_model_check(repeat: int, cold: bool = False) -> dict[str, object]:
    """Run `callgate model check --json` in fresh processes; best wall time of `repeat`, and
    the CPU time (user and system, the pool's workers included) of each run. `cold`: with
    `CALLGATE_CACHE=off`, so every check runs."""
    command = [sys.executable, "-m", "callgate.conformance.cli.main", "model", "check", "--json"]
    env = {**os.environ, **({"CALLGATE_CACHE": "off"} if cold else {})}
    walls, cpus, reported, ok = [], [], [], True
    for _ in range(repeat):
        start, cpu = time.perf_counter(), _children_cpu()
        done = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, check=False,
                              env=env)
        walls.append(time.perf_counter() - start)
        cpus.append(_children_cpu() - cpu)
        data = json.loads(done.stdout)
        reported.append(float(data["seconds"]))
        ok = ok and done.returncode == 0
    return {"command": ("CALLGATE_CACHE=off " if cold else "") + "callgate model check --json",
            "exit_ok": ok, "wall_seconds_best": round(min(walls), 2),
            "wall_seconds_all": [round(w, 2) for w in walls],
            "cpu_seconds_all": [round(c, 2) for c in cpus],
            "reported_seconds_best": round(min(reported), 2)}


def explore_large() -> dict[str, object]:
    """Explore the large composition in a child process, so its peak memory is its own."""
    code = ("import json, sys; sys.path.insert(0, sys.argv[1]); "
            "from benchmarks.bench_model import _explore_here; print(json.dumps(_explore_here()))")
    done = subprocess.run([sys.executable, "-c", code, str(ROOT)], cwd=ROOT, capture_output=True,
                          text=True, check=True)
    result: dict[str, object] = json.loads(done.stdout)
    return result


def _explore_here() -> dict[str, object]:
    from callgate.model import explorer, verify
    before = _peak_rss_mb()
    figures = explorer.explore_counts(verify.LARGE_COMPOSITION)
    pinned = verify.pinned_counts()["benchmark"][verify.LARGE_COMPOSITION.name]
    return {"composition": verify.LARGE_COMPOSITION.name,
            "slots": [f"{slot}:{m.name}" for slot, m in verify.LARGE_COMPOSITION.slots],
            "states": figures.states, "edges": figures.edges, "transitions": figures.transitions,
            "seconds": round(figures.seconds, 2),
            "states_per_second": round(figures.states / figures.seconds),
            "edges_per_second": round(figures.edges / figures.seconds),
            "peak_rss_mb": round(_peak_rss_mb(), 1),
            "rss_before_mb": round(before, 1),
            "matches_pinned": pinned == {"states": figures.states, "edges": figures.edges,
                                         "transitions": figures.transitions}}


def build_default() -> dict[str, object]:
    from callgate.model import explorer, verify
    graph = explorer.build_graph(verify.DEFAULT_COMPOSITION)
    start = time.perf_counter()
    paths = explorer.tour(graph)
    tour_seconds = time.perf_counter() - start
    return {"composition": graph.name, "states": graph.states, "edges": graph.edge_count,
            "build_seconds": round(graph.seconds, 2),
            "states_per_second": round(graph.states / graph.seconds),
            "tour_length": explorer.tour_length(paths), "tour_seconds": round(tour_seconds, 2)}


def machine() -> dict[str, object]:
    return {"python": platform.python_version(), "platform": platform.platform(),
            "cpus": os.cpu_count(), "load_average": [round(x, 2) for x in os.getloadavg()]}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--repeat", type=int, default=3, help="runs of `model check` (best kept)")
    parser.add_argument("--json", action="store_true", help="print JSON")
    parser.add_argument("--cold", action="store_true",
                        help="time `model check` with CALLGATE_CACHE=off (every check runs)")
    args = parser.parse_args(argv)
    sys.path.insert(0, str(ROOT))
    figures = {"command": " ".join(shlex.quote(a) for a in [sys.executable, *sys.argv]),
               "machine": machine(), "model_check": time_model_check(args.repeat, args.cold),
               "large_composition": explore_large(), "default_composition": build_default()}
    if args.json:
        print(json.dumps(figures, indent=1))
        return 0
    check = figures["model_check"]
    large = figures["large_composition"]
    default = figures["default_composition"]
    assert isinstance(check, dict) and isinstance(large, dict) and isinstance(default, dict)
    print(f"command: {figures['command']}")
    print(f"machine: {figures['machine']}")
    print(f"{check['command']}: best {check['wall_seconds_best']} s wall of "
          f"{check['wall_seconds_all']}, CPU {check['cpu_seconds_all']} s "
          f"(reports {check['reported_seconds_best']} s itself); "
          f"exit ok: {check['exit_ok']}")
    print(f"explore {large['composition']} ({', '.join(large['slots'])}): {large['states']} "
          f"states, {large['edges']} edges in {large['seconds']} s = {large['states_per_second']} "
          f"states/s ({large['edges_per_second']} edges/s); peak memory {large['peak_rss_mb']} MB "
          f"RSS (before exploring: {large['rss_before_mb']} MB); matches pinned counts: "
          f"{large['matches_pinned']}")
    print(f"networkx graph of {default['composition']}: {default['states']} states, "
          f"{default['edges']} edges in {default['build_seconds']} s "
          f"({default['states_per_second']} states/s); edge tour {default['tour_length']} steps "
          f"in {default['tour_seconds']} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
