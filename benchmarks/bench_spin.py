"""Benchmark of the spin engine (issue 20, item 5): a composition beyond the Python explorer, and
states per second of spin against the explorer on one composition both explore.

Prints, with the command that produced them:

* `--big` (default `com_call*5`, five independent COM call objects) handed to spin: states,
  deadlocks, invariant verdicts, wall time of the whole run (export, `spin -a`, the C compiler,
  pan) and of pan's search alone, pan's own memory figure and the largest child process's peak
  resident set;
* `--compare` (default `two_call_objects_and_container`): the same composition explored by
  `callgate.model.explorer.explore_counts` in a child process and by spin; both state counts
  (they must be equal) and each engine's states per CPU second (pan's search against the
  explorer's; CPU time, since on a shared machine wall time measures the neighbours).

Run: .venv/bin/python benchmarks/bench_spin.py [--big NAME] [--compare NAME] [--json]
(`--big none` or `--compare none` leaves that part out.)
"""

from __future__ import annotations

import argparse
import json
import platform
import resource
import shlex
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from callgate.model.export import engines, targets  # noqa: E402


def _children_peak_mb() -> float:
    peak = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    return round(peak / (1 << 20) if sys.platform == "darwin" else peak / 1024, 1)


def spin_figures(name: str, hash_bits: int) -> dict[str, object]:
    start = time.perf_counter()
    result = engines.spin_engine(targets.resolve(name), hash_bits=hash_bits,
                                 max_depth=10_000_000, memory_mb=8192, optimize=True)
    wall = time.perf_counter() - start
    figures = result.figures
    pan_seconds = figures.get("pan_seconds")
    cpu = figures.get("step_cpu_seconds")
    pan_cpu = cpu.get("pan") if isinstance(cpu, dict) else None
    states = result.states
    rate = (round(states / pan_cpu) if isinstance(states, int) and
            isinstance(pan_cpu, float) and pan_cpu > 0 else None)
    return {"composition": name, "status": result.status, "states": states,
            "deadlocks": result.deadlocks,
            "invariants_holding": sum(v == "holds" for v in result.invariants.values()),
            "invariants_checked": len(result.invariants), "wall_seconds": round(wall, 2),
            "steps_seconds": figures.get("step_seconds"), "steps_cpu_seconds": cpu,
            "pan_seconds": pan_seconds, "pan_cpu_seconds": pan_cpu,
            "pan_states_per_cpu_second": rate, "pan_memory_mb": figures.get("memory_mb"),
            "children_peak_rss_mb": _children_peak_mb(),
            "compile_flags": figures.get("compile_flags"), "pan_args": figures.get("pan_args"),
            "detail": result.detail}


def python_figures(name: str) -> dict[str, object]:
    """`explore_counts` in a child process (its peak memory is its own)."""
    code = ("import json, sys; sys.path.insert(0, sys.argv[1]); "
            "from callgate.model.explorer import explore_counts; "
            "from callgate.model.export.targets import resolve; "
            "import time; cpu = time.process_time(); "
            "f = explore_counts(resolve(sys.argv[2])); cpu = time.process_time() - cpu; "
            "print(json.dumps({'states': f.states, 'edges': f.edges, 'seconds': f.seconds, "
            "'cpu_seconds': cpu}))")
    done = subprocess.run([sys.executable, "-c", code, str(ROOT), name], cwd=ROOT,
                          capture_output=True, text=True, check=True)
    found: dict[str, object] = json.loads(done.stdout)
    seconds, cpu, states = found["seconds"], found["cpu_seconds"], found["states"]
    assert isinstance(seconds, float) and isinstance(cpu, float) and isinstance(states, int)
    found["states_per_cpu_second"] = round(states / cpu)
    found["seconds"], found["cpu_seconds"] = round(seconds, 2), round(cpu, 2)
    return found


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--big", default="com_call*5", help="the composition handed to spin")
    parser.add_argument("--compare", default="two_call_objects_and_container",
                        help="the composition both engines explore")
    parser.add_argument("--hash-bits", type=int, default=25, help="pan's -w for --big")
    parser.add_argument("--json", action="store_true", help="print a JSON record")
    args = parser.parse_args()
    command = "python benchmarks/bench_spin.py " + " ".join(shlex.quote(a) for a in sys.argv[1:])
    record: dict[str, object] = {
        "command": command.strip(), "machine": f"{platform.system()} {platform.machine()}",
        "python": platform.python_version(), "spin": _spin_version()}
    ok = True
    if args.compare != "none":
        python = python_figures(args.compare)
        spin_small = spin_figures(args.compare, 22)
        rate = spin_small["pan_states_per_cpu_second"]
        explorer_rate = python["states_per_cpu_second"]
        assert isinstance(explorer_rate, int)
        record["compare"] = {
            "composition": args.compare, "python": python, "spin": spin_small,
            "states_agree": python["states"] == spin_small["states"],
            "spin_over_python_states_per_cpu_second":
                round(rate / explorer_rate, 1) if isinstance(rate, int) else None}
        ok = python["states"] == spin_small["states"]
    if args.big != "none":
        big = spin_figures(args.big, args.hash_bits)
        record["big"] = big
        ok = ok and big["status"] == "ok"
    if args.json:
        json.dump(record, sys.stdout, indent=1)
        sys.stdout.write("\n")
        return 0 if ok else 1
    print(f"command: {record['command']}  ({record['machine']}, Python {record['python']}, "
          f"{record['spin']})")
    if args.compare != "none":
        _print_compare(args.compare, record["compare"])  # type: ignore[arg-type]
    if args.big != "none":
        _print_big(args.big, big)
    return 0 if ok else 1


def _print_compare(name: str, compare: dict[str, dict[str, object]]) -> None:
    python, spin_small = compare["python"], compare["spin"]
    print(f"{name}: explorer {python['states']} states in {python['seconds']} s wall, "
          f"{python['cpu_seconds']} s CPU ({python['states_per_cpu_second']} states per CPU "
          f"second); spin {spin_small['states']} states, pan {spin_small['pan_seconds']} s wall, "
          f"{spin_small['pan_cpu_seconds']} s CPU ({spin_small['pan_states_per_cpu_second']} "
          f"states per CPU second); states agree: {compare['states_agree']}; spin/explorer "
          f"states per CPU second: {compare['spin_over_python_states_per_cpu_second']}x")


def _print_big(name: str, big: dict[str, object]) -> None:
    print(f"{name} on spin: {big['status']}, {big['states']} states, {big['deadlocks']} "
          f"deadlocks, {big['invariants_holding']} of {big['invariants_checked']} invariants "
          f"hold; {big['wall_seconds']} s wall in all (steps, wall: {big['steps_seconds']}; CPU: "
          f"{big['steps_cpu_seconds']}), pan {big['pan_seconds']} s wall "
          f"({big['pan_states_per_cpu_second']} states per CPU second), pan's memory "
          f"{big['pan_memory_mb']} MB, largest child peak RSS {big['children_peak_rss_mb']} MB")
    if big["detail"]:
        print(big["detail"])


def _spin_version() -> str:
    try:
        done = subprocess.run(["spin", "-V"], capture_output=True, text=True, check=False)
    except OSError:
        return "spin not installed"
    return done.stdout.strip()


if __name__ == "__main__":
    sys.exit(main())
