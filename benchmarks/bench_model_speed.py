"""Speed of the model checkers against a previous version (issue 20, item 6): the wall time of
`callgate model check --json`, and the explorers' states per second.

* `callgate model check --json`, here and in the checkout given by `--baseline` (for example
  `git worktree add ../callgate-main main`), run in turn (here, baseline, here, ...) `--repeat`
  times; the medians and the median of the pairwise ratios. Twice: cold (`CALLGATE_CACHE=off`:
  every state graph is built and every check is checked) and warm (each side's cache, in a
  directory of its own, filled by one run that is not counted: explored graphs, and where the
  checkout has it, model/check_cache.py's definitive results, which a warm run takes instead of
  checking; `from_cache` counts them). The two outputs must give every check both have the same
  result, and the checks only one has are named (a new check is not a changed result).
* Exploring compositions of independent slots with the compiled explorers (`explore_bitset`,
  `explore_compiled`) and with the previous path (`explore_counts`, which steps the tables at
  every state): states, seconds, states per second, and the peak memory of the exploring process.
  The previous path runs only on compositions under `--reference-limit` states (it takes about
  40 us a state).

Run: .venv/bin/python benchmarks/bench_model_speed.py --baseline ../callgate-main [--repeat 5]
     [--json]
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
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

# name -> machines of its slots (all independent: the compiled explorers take no coupled ones)
COMPOSITIONS: dict[str, tuple[str, ...]] = {
    "two_call_objects_and_container": ("com_call", "com_call", "container"),
    "four_call_objects": ("com_call",) * 4,
    "five_call_objects": ("com_call",) * 5,
    "five_pipes": ("rpc_pipe",) * 5,
}


def _model_check(root: Path, env: dict[str, str]) -> tuple[float, dict[str, str]]:
    """One run's wall seconds, and each check's result by name (and, under `FROM_CACHE`, how
    many checks were taken from the cache; 0 for a checkout without one)."""
    start = time.perf_counter()
    done = subprocess.run([sys.executable, "-m", "callgate", "model", "check", "--json"],
                          cwd=root, env={**os.environ, "PYTHONPATH": str(root), **env},
                          capture_output=True, text=True, check=False)
    wall = time.perf_counter() - start
    data = json.loads(done.stdout)
    return wall, {c["name"]: c["result"] for c in data["checks"]} | {
        FROM_CACHE: str(data.get("from_cache", 0))}


FROM_CACHE = " from_cache"  # not a check's name (none starts with a space)


def _cache_env(cache: str, where: Path) -> dict[str, str]:
    if cache == "cold":
        return {"CALLGATE_CACHE": "off"}
    return {"CALLGATE_CACHE": "on", "CALLGATE_CACHE_DIR": str(where)}


def time_model_check(baseline: Path | None, repeat: int, cache: str) -> dict[str, object]:
    """`cache`: "cold" (no graph cache) or "warm" (a cache filled by an uncounted run)."""
    here: list[float] = []
    there: list[float] = []
    changed: set[str] = set()
    only: set[str] = set()
    cached: list[int] = []
    with tempfile.TemporaryDirectory(prefix="callgate-bench-") as scratch:
        ours_env = _cache_env(cache, Path(scratch) / "here")
        theirs_env = _cache_env(cache, Path(scratch) / "baseline")
        if cache == "warm":
            _model_check(ROOT, ours_env)
            if baseline is not None:
                _model_check(baseline, theirs_env)
        for _ in range(repeat):
            wall, ours = _model_check(ROOT, ours_env)
            here.append(wall)
            cached.append(int(ours.pop(FROM_CACHE)))
            if baseline is not None:
                wall, theirs = _model_check(baseline, theirs_env)
                theirs.pop(FROM_CACHE)
                there.append(wall)
                changed |= {n for n in ours.keys() & theirs.keys() if ours[n] != theirs[n]}
                only |= ours.keys() ^ theirs.keys()
    result: dict[str, object] = {"command": "callgate model check --json", "cache": cache,
                                 "wall_median": round(statistics.median(here), 2),
                                 "wall_all": [round(w, 2) for w in here],
                                 "from_cache_all": cached}
    if baseline is not None:
        result.update({"baseline_wall_median": round(statistics.median(there), 2),
                       "baseline_wall_all": [round(w, 2) for w in there],
                       "ratio_median": round(statistics.median(
                           a / b for a, b in zip(here, there, strict=True)), 3),
                       "same_results": not changed, "changed_results": sorted(changed),
                       "checks_in_one_only": sorted(only)})
    return result


def _explore_here(name: str, engine: str) -> dict[str, object]:
    """Explore one composition in this (child) process."""
    import resource

    from callgate.model import explorer
    from callgate.model.families import MACHINES
    from callgate.model.transitions import Composition
    comp = Composition(name, tuple((f"s{i}", MACHINES[m]) for i, m in
                                   enumerate(COMPOSITIONS[name])))
    if engine == "reference":
        figures = explorer.explore_counts(comp)
        states, edges, seconds = figures.states, figures.edges, figures.seconds
    else:
        run = explorer.explore_bitset if engine == "bitset" else explorer.explore_compiled
        found = run(comp)
        states, edges, seconds = found.states, found.edges, found.seconds
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return {"composition": name, "engine": engine, "states": states, "edges": edges,
            "seconds": round(seconds, 3), "states_per_second": round(states / seconds),
            "peak_rss_mb": round(peak / (1 << 20) if sys.platform == "darwin" else peak / 1024,
                                 1)}


def explore(name: str, engine: str, root: Path) -> dict[str, object]:
    # `callgate` from `root` (the working directory and PYTHONPATH); this script from ROOT,
    # appended last (the previous checkout need not have it).
    code = ("import json, sys; sys.path.append(sys.argv[1]); "
            "from benchmarks.bench_model_speed import _explore_here; "
            "print(json.dumps(_explore_here(sys.argv[2], sys.argv[3])))")
    done = subprocess.run([sys.executable, "-c", code, str(ROOT), name, engine], cwd=root,
                          env={**os.environ, "PYTHONPATH": str(root)}, capture_output=True,
                          text=True, check=True)
    result: dict[str, object] = json.loads(done.stdout)
    return result


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--baseline", type=Path, help="a checkout of the previous version")
    parser.add_argument("--repeat", type=int, default=5, help="runs of `model check` each")
    parser.add_argument("--reference-limit", type=int, default=200_000,
                        help="explore with the previous path only below this many states")
    parser.add_argument("--json", action="store_true", help="print JSON")
    parser.add_argument("--model-check-only", action="store_true",
                        help="time `model check` only, not the explorers")
    args = parser.parse_args(argv)
    sys.path.insert(0, str(ROOT))
    figures: dict[str, object] = {
        "command": " ".join(shlex.quote(a) for a in [sys.executable, *sys.argv]),
        "machine": {"python": platform.python_version(), "platform": platform.platform(),
                    "cpus": os.cpu_count(),
                    "load_average": [round(x, 2) for x in os.getloadavg()]},
        "model_check": [time_model_check(args.baseline, args.repeat, cache)
                        for cache in ("cold", "warm")]}
    runs = []
    for name in () if args.model_check_only else COMPOSITIONS:
        bitset = explore(name, "bitset", ROOT)
        runs.append(bitset)
        if int(bitset["states"]) <= args.reference_limit:  # type: ignore[call-overload]
            runs.append(explore(name, "sweep", ROOT))
            runs.append(explore(name, "reference", args.baseline or ROOT))
    figures["explore"] = runs
    if args.json:
        print(json.dumps(figures, indent=1))
        return 0
    print(f"command: {figures['command']}\nmachine: {figures['machine']}")
    timed = figures["model_check"]
    assert isinstance(timed, list)
    for check in timed:
        line = (f"callgate model check --json ({check['cache']} cache): median "
                f"{check['wall_median']} s wall {check['wall_all']}; checks from the cache "
                f"{check['from_cache_all']}")
        if "ratio_median" in check:
            line += (f"; previous {check['baseline_wall_median']} s "
                     f"{check['baseline_wall_all']}; ratio {check['ratio_median']}; same results: "
                     f"{check['same_results']} {check['changed_results']}; checks in one only: "
                     f"{check['checks_in_one_only']}")
        print(line)
    for run in runs:
        print(f"explore {run['composition']} [{run['engine']}]: {run['states']} states, "
              f"{run['edges']} edges in {run['seconds']} s = {run['states_per_second']} "
              f"states/s; peak {run['peak_rss_mb']} MB")
    return 0


if __name__ == "__main__":
    sys.exit(main())
