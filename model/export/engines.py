"""Two engines, one result shape: the Python explorer and spin on the exported Promela.

`python_engine(target)` builds the state graph with `callgate.model.explorer.build_graph` and
evaluates each planned invariant (`promela.plan_invariants`) on every reachable state;
`spin_engine(target)` exports the same target to Promela, runs `spin -a`, compiles the verifier
`pan` and runs it over the full state space. Both return an `EngineResult`:

* `states`: distinct reachable states (spin's "states, stored" less the one state before the
  initial choice that the Promela has and the model does not);
* `deadlocks`: reachable states with no successor in which every checked invariant holds (spin's
  invalid end states; a state that breaks an invariant is reported as that violation);
* `invariants`: each checked invariant, `holds` or `violated`; `not_checked`: the rest, with why.

`status` is `ok` (no deadlock, every checked invariant holds), `violated`, or `error` (the engine
could not finish: spin or a C compiler missing, the search cut short, a table the export cannot
encode); an error never carries counts that look like a pass.
"""

from __future__ import annotations

import os
import re
import resource
import shutil
import subprocess
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from callgate.model import explorer
from callgate.model.coupled import CrossInvariant
from callgate.model.export.promela import PRE_INITIAL, export, plan_invariants
from callgate.model.invariants import StateInvariant, StateView
from callgate.model.transitions import Composition, Machine, ModelError

SPIN_PACKAGE = "spin"  # Debian's package (tools/install-system-packages.sh, `make system`)
CC_FLAGS = ("-DSAFETY", "-DNOREDUCE")


class ToolMissing(Exception):
    """spin or a C compiler is not installed."""


@dataclass(frozen=True)
class EngineResult:
    """What one engine found on one machine or composition (see the module's text)."""

    engine: str
    composition: str
    status: str
    states: int | None
    deadlocks: int | None
    invariants: dict[str, str]
    not_checked: dict[str, str]
    seconds: float
    detail: str = ""
    figures: dict[str, object] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return self.status == "ok"

    def to_json(self) -> dict[str, object]:
        return {"engine": self.engine, "composition": self.composition, "status": self.status,
                "states": self.states, "deadlocks": self.deadlocks,
                "invariants": dict(sorted(self.invariants.items())),
                "not_checked": dict(sorted(self.not_checked.items())),
                "seconds": round(self.seconds, 3), "detail": self.detail,
                "figures": self.figures}


def _status(deadlocks: int, invariants: dict[str, str]) -> str:
    return "violated" if deadlocks or "violated" in invariants.values() else "ok"


def _error(engine: str, name: str, detail: str, start: float) -> EngineResult:
    return EngineResult(engine, name, "error", None, None, {}, {}, time.perf_counter() - start,
                        detail)


def python_engine(target: Machine | Composition,
                  state_invariants: Sequence[StateInvariant] | None = None,
                  cross_invariants: Sequence[CrossInvariant] | None = None) -> EngineResult:
    """The Python explorer's result (an `error` result if it cannot explore the tables)."""
    start = time.perf_counter()
    try:
        graph = explorer.build_graph(target)
    except ModelError as exc:
        return _error("python", target.name, f"cannot explore: {exc}", start)
    planned, skipped = plan_invariants(target, state_invariants, cross_invariants)
    positions = {slot: i for i, (slot, _) in enumerate(graph.slots)}
    machines = dict(graph.slots)
    violated: set[str] = set()
    deadlocks = 0
    for node in graph.graph.nodes:
        parts = graph.slot_states(node)
        here = False
        for p in planned:
            if p.state is not None:
                holds = p.state.holds(StateView(machines[p.slot], parts[positions[p.slot]]))
            else:
                assert p.cross is not None and isinstance(target, Composition)
                holds = p.cross.holds(target, parts)
            if not holds:
                violated.add(p.name)
                here = True
        if not here and graph.graph.out_degree(node) == 0:
            deadlocks += 1
    verdicts = {p.name: "violated" if p.name in violated else "holds" for p in planned}
    return EngineResult("python", target.name, _status(deadlocks, verdicts), graph.states,
                        deadlocks, verdicts, dict(skipped), time.perf_counter() - start,
                        figures={"edges": graph.edge_count,
                                 "transitions": len(graph.transitions)})


def _children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def find_tools() -> tuple[str, str]:
    """The paths of `spin` and a C compiler (`CC`, else cc, gcc or clang); ToolMissing naming
    what to install."""
    spin = shutil.which("spin")
    if spin is None:
        raise ToolMissing(f"spin is not installed: install Debian's `{SPIN_PACKAGE}` package "
                          f"(`make system`, or apt-get install {SPIN_PACKAGE})")
    for name in (os.environ.get("CC", ""), "cc", "gcc", "clang"):
        found = shutil.which(name) if name else None
        if found:
            return spin, found
    raise ToolMissing("no C compiler to build spin's verifier: install gcc")


_PATTERNS = {
    "stored": re.compile(r"^\s*(\d+) states, stored", re.M),
    "matched": re.compile(r"^\s*(\d+) states, matched", re.M),
    "errors": re.compile(r"errors: (\d+)"),
    "vector": re.compile(r"State-vector (\d+) byte"),
    "depth": re.compile(r"depth reached (\d+)"),
    "memory": re.compile(r"^\s*([\d.]+)\s+total actual memory usage", re.M),
    "elapsed": re.compile(r"pan: elapsed time ([\d.e+-]+) seconds"),
}
_VIOLATED = re.compile(r"^callgate: violated (holds_\d+)$", re.M)
_INCOMPLETE = ("max search depth too small", "Search not completed", "out of memory",
               "reached -DMEMLIM bound")


def parse_pan(output: str) -> dict[str, object]:
    """The figures of one pan run: states stored, errors (deadlocks and assertion violations
    together), the flags of the violated invariants, whether the search was complete, ..."""
    found: dict[str, object] = {}
    for key, pattern in _PATTERNS.items():
        match = pattern.search(output)
        if match:
            found[key] = float(match[1]) if key in ("memory", "elapsed") else int(match[1])
    found["violated"] = sorted(set(_VIOLATED.findall(output)))
    found["complete"] = ("Full statespace search" in output and "stored" in found
                         and not any(text in output for text in _INCOMPLETE))
    return found


def spin_engine(target: Machine | Composition,
                state_invariants: Sequence[StateInvariant] | None = None,
                cross_invariants: Sequence[CrossInvariant] | None = None, *,
                hash_bits: int | None = None, max_depth: int | None = None, memory_mb: int = 4096,
                timeout: float | None = None, keep: Path | None = None,
                optimize: bool | None = None) -> EngineResult:
    """spin's result on the exported Promela: `spin -a`, `cc` and `pan -c0` (the search goes on
    past errors and counts them all). `keep` is a directory for the generated files (default: a
    temporary one). `optimize`: compile pan with -O2 (slower to build, faster to search) or -O0
    (for small models, where the compiler's time is most of the run); by default -O2 for
    compositions of three slots or more. `max_depth` (pan's -m, whose stack pan allocates
    whole) and `hash_bits` (pan's -w): by default 10 million and 24 for three slots or more,
    else 1 million and 22. When an invariant is violated, pan runs a second time with -A
    (assertions off) to count the deadlocks alone."""
    start = time.perf_counter()
    try:
        spin, cc = find_tools()
    except ToolMissing as exc:
        return _error("spin", target.name, str(exc), start)
    try:
        model = export(target, state_invariants, cross_invariants)
    except ModelError as exc:
        return _error("spin", target.name, f"cannot export: {exc}", start)
    large = isinstance(target, Composition) and len(target.slots) >= 3
    optimize = large if optimize is None else optimize
    max_depth = (10_000_000 if large else 1_000_000) if max_depth is None else max_depth
    hash_bits = (24 if large else 22) if hash_bits is None else hash_bits
    with tempfile.TemporaryDirectory(prefix="callgate-spin-") as scratch:
        work = keep or Path(scratch)
        work.mkdir(parents=True, exist_ok=True)
        (work / "model.pml").write_text(model.text, encoding="utf-8")
        flags = ("-O2" if optimize else "-O0", *CC_FLAGS, f"-DMEMLIM={memory_mb}")
        pan_args = ("-c0", "-n", f"-m{max_depth}", f"-w{hash_bits}")
        steps = [("spin -a", [spin, "-a", "model.pml"]),
                 ("cc", [cc, *flags, "-o", "pan", "pan.c"]),
                 ("pan", ["./pan", *pan_args])]
        timings: dict[str, float] = {}
        cpu_timings: dict[str, float] = {}
        outputs: list[str] = []
        for what, command in steps:
            began, cpu = time.perf_counter(), _children_cpu()
            try:
                done = subprocess.run(command, cwd=work, capture_output=True, text=True,
                                      timeout=timeout, check=False)
            except subprocess.TimeoutExpired:
                return _error("spin", target.name, f"{what} ran out of time ({timeout} s)",
                              start)
            timings[what] = round(time.perf_counter() - began, 3)
            cpu_timings[what] = round(_children_cpu() - cpu, 3)
            outputs.append(done.stdout + done.stderr)
            if done.returncode != 0 and what != "pan":
                return _error("spin", target.name,
                              f"{what} failed ({done.returncode}): {outputs[-1][-2000:]}", start)
            if what == "pan":
                first = parse_pan(outputs[-1])
                if first["violated"] and first.get("errors") and first["complete"]:
                    # errors counts deadlocks and violations together: count deadlocks alone
                    steps.append(("pan -A", ["./pan", "-A", *pan_args]))
    output = outputs[2]
    pan = parse_pan(output)
    if len(outputs) > 3:
        again = parse_pan(outputs[3])
        if not again["complete"] or again.get("stored") != pan.get("stored"):
            return _error("spin", target.name, "pan -A (deadlocks alone) did not repeat the "
                          "search", start)
        pan["deadlocks"] = again.get("errors")
    else:
        pan["deadlocks"] = 0 if pan["violated"] else pan.get("errors")
    figures: dict[str, object] = {
        "outcomes": model.outcomes, "branches": model.branches, "state_vector_bytes": pan.get("vector"),
        "depth": pan.get("depth"), "memory_mb": pan.get("memory"),
        "pan_seconds": pan.get("elapsed"), "step_seconds": timings,
        "step_cpu_seconds": cpu_timings,
        "compile_flags": " ".join(flags), "pan_args": " ".join(pan_args)}
    if not pan["complete"]:
        tail = "\n".join(output.strip().splitlines()[-15:])
        return EngineResult("spin", target.name, "error", None, None, {}, {},
                            time.perf_counter() - start,
                            f"spin did not search the whole state space:\n{tail}", figures)
    stored = pan["stored"]
    assert isinstance(stored, int)
    flags_violated = pan["violated"]
    assert isinstance(flags_violated, list)
    verdicts = {c.name: "violated" if c.flag in flags_violated else "holds"
                for c in model.invariants}
    deadlocks = pan["deadlocks"]
    if not isinstance(deadlocks, int):
        return EngineResult("spin", target.name, "error", None, None, {}, {},
                            time.perf_counter() - start, "pan printed no error count", figures)
    return EngineResult("spin", target.name, _status(deadlocks, verdicts), stored - PRE_INITIAL,
                        deadlocks, verdicts, dict(model.not_exported),
                        time.perf_counter() - start, figures=figures)
