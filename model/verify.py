"""The `callgate model check` run: every proof, table check, exploration and liveness check for
the default configuration, robust to broken tables, and the state counts it reports beside
`model/pinned_counts.json`.

The default configuration: each machine on its own; the composition `DEFAULT_COMPOSITION` (two
call objects, COM-CF-10's reason for several objects) for the explorer's graph, tours and
deadlock freedom; and `BMC_COMPOSITION` (two call objects, an event and an RPC call) for bounded
model checking, whose symbolic encoding does not suffer the product's size.

A broken table never ends the run with a traceback: a check that cannot run on it (the explorer
meets a gap, a claim's situation is not DEFINED, a liveness condition names a missing field) is
the result ERROR with the reason, the gap itself is `totality[...]`'s counterexample (state,
operation, arguments), and the run fails. The pinned counts are reported, changed or not; a
change alone fails nothing (the semantic checks catch real errors). One check reads the pins
themselves, `pinned_counts.products`: a composition of independent machines has the product of
their figures (`product_counts`), so its pin must equal the product of its machines' pins; a
composition pin left behind when a machine's pin moved fails it. The benchmark composition's
counts, too large to explore here, are reported from that product of the machines found.

The registry's tables are checked by a pool of `WORKERS` processes: the table checks and
invariant proofs first, then bounded model checking, then the longest jobs (rpc_call's
obligations; the checks of its state graph: agreement, tours, liveness), then the rest, one job
per machine or composition. The workers are forked from this process when nothing has been
checked here yet and no other thread runs (`fresh_parent`; the CLI's case: the imports are not
repeated), and spawned otherwise. The results are put together in the order the checks always
had, so the report does not depend on the pool. Custom tables (a broken copy, in the tests) are
checked in this process, job after job, by the same functions. Every job runs with Python's
cycle collector off (`_timed_job`), and the report lists each job's CPU and wall time (`jobs`
in the JSON). With `cache` (the CLI's default, off with `--no-cache` or `CALLGATE_CACHE=off`) a
job whose checks all ended definitively is kept on disk and taken, not run, by the next run with
the same key (model/check_cache.py).
"""

from __future__ import annotations

import gc
import json
import multiprocessing
import os
import time
import traceback
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import Future, ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass, field
from pathlib import Path
from typing import TypeVar

from callgate.model import check_cache, coupled, explorer, liveness, proofs
from callgate.model.families import MACHINES
from callgate.model.invariants import Transition
from callgate.model.obligations import check_obligations, coverage_problems
from callgate.model.proofs import CheckResult, Counterexample, Result
from callgate.model.proofs.coupled import KIND as COUPLED_KIND
from callgate.model.proofs.coupled import prove_coupled, reachable_check
from callgate.model.transitions import Composition, Machine, ModelError, State

PINNED_FILE = Path(__file__).with_name("pinned_counts.json")
BMC_DEPTH = 6
DEFAULT_SLOTS = (("call_a", "com_call"), ("call_b", "com_call"))
BMC_SLOTS = (("call_a", "com_call"), ("call_b", "com_call"), ("event", "event"),
             ("rpc", "rpc_call"))

DEFAULT_COMPOSITION = Composition("two_call_objects", tuple(
    (slot, MACHINES[name]) for slot, name in DEFAULT_SLOTS))
BMC_COMPOSITION = Composition("clients", tuple((slot, MACHINES[name]) for slot, name in BMC_SLOTS))
# The benchmark's composition: large enough to pass 100,000 states (24 x 24 x 252).
LARGE_COMPOSITION = Composition("two_call_objects_and_container", (
    ("call_a", MACHINES["com_call"]), ("call_b", MACHINES["com_call"]),
    ("container", MACHINES["container"])))

Counts = dict[str, dict[str, dict[str, int]]]
# At most this many worker processes (the machine's cores, if fewer).
WORKERS = 2
# The machines whose jobs start first, the longest of the run: each one's obligations in one
# job, and the checks of its state graph (agreement, tours, liveness) in another, the graph
# built once for them. (Its obligations are not split in parts: each part would walk the graph
# with the observer again, and judged over all pinnings at once (obligations/checker.py) that
# walk is most of the work. Nor joined with the graph's checks: that one job, about 23 s of CPU
# on this 2-core machine, would outlast everything else on the other worker.)
SPLIT = ("rpc_call",)


@dataclass(frozen=True)
class GraphReport:
    """What the explorer found for one machine or composition."""

    name: str
    states: int
    edges: int
    transitions: int
    seconds: float
    tour_length: int
    tour_paths: int
    edges_covered: int
    transition_tour_length: int
    transitions_covered: int
    unquiescent: int
    tour_seconds: float
    toured: bool = True  # False: no tour was computed (a coupled composition's report)

    def to_json(self) -> dict[str, object]:
        data: dict[str, object] = {"name": self.name, "states": self.states, "edges": self.edges,
                                   "transitions": self.transitions,
                                   "seconds": round(self.seconds, 4),
                                   "unquiescent_states": self.unquiescent}
        if self.toured:
            data.update({"tour_length": self.tour_length, "tour_paths": self.tour_paths,
                         "edges_covered": self.edges_covered,
                         "transition_tour_length": self.transition_tour_length,
                         "transitions_covered": self.transitions_covered})
        return data


@dataclass(frozen=True)
class PinnedCounts:
    """The state, edge and transition counts found, beside the pinned ones: reported, never a
    verdict. `changed` lists each figure that differs ("group.name: pinned X, found Y")."""

    found: Counts
    pinned: Counts
    changed: tuple[str, ...]

    def to_json(self) -> dict[str, object]:
        return {"changed": list(self.changed), "unchanged": not self.changed,
                "found": self.found, "pinned": self.pinned, "file": PINNED_FILE.name}


@dataclass(frozen=True)
class JobTime:
    """How long one job took where it ran: its CPU time (user and system, of the process that
    ran it) and its wall time, or `checked` "cache" (taken from the result cache, not run).
    `worker`: 0 for this process, 1, 2, ... for the pool's processes in the order they answered."""

    job: str
    checked: str
    cpu_seconds: float = 0.0
    wall_seconds: float = 0.0
    worker: int = 0

    def to_json(self) -> dict[str, object]:
        return {"job": self.job, "checked": self.checked,
                "cpu_seconds": round(self.cpu_seconds, 3),
                "wall_seconds": round(self.wall_seconds, 3), "worker": self.worker}


@dataclass(frozen=True)
class Report:
    """Everything `callgate model check` prints."""

    checks: tuple[CheckResult, ...]
    explorer: GraphReport | None
    machines: tuple[GraphReport, ...]
    seconds: float
    failed: tuple[str, ...] = field(default=())
    pinned: PinnedCounts | None = None
    coupled: tuple[GraphReport, ...] = ()
    # Where the time went: each job's CPU and wall time, and how the pool's workers started
    # ("fork", "spawn", or "" when every job ran in this process).
    jobs: tuple[JobTime, ...] = ()
    workers: str = ""

    @property
    def ok(self) -> bool:
        return not self.failed

    @property
    def from_cache(self) -> int:
        """How many checks were taken from the cache of definitive results, not checked now."""
        return sum(1 for c in self.checks if c.cached)

    @property
    def liveness(self) -> tuple[CheckResult, ...]:
        return tuple(c for c in self.checks if c.kind == liveness.KIND)

    def to_json(self) -> dict[str, object]:
        explorer_json: dict[str, object] = self.explorer.to_json() if self.explorer else {}
        explorer_json["machines"] = {m.name: m.to_json() for m in self.machines}
        explorer_json["coupled"] = {c.name: c.to_json() for c in self.coupled}
        return {"ok": self.ok, "seconds": round(self.seconds, 3),
                "summary": proofs.summarize(self.checks),
                "from_cache": self.from_cache,
                "failed": list(self.failed),
                "checks": [c.to_json() for c in self.checks],
                "liveness": [liveness_json(c) for c in self.liveness],
                "explorer": explorer_json,
                "pinned_counts": self.pinned.to_json() if self.pinned else None,
                "jobs": {"workers": self.workers or "none",
                         "cpu_seconds": round(sum(j.cpu_seconds for j in self.jobs), 3),
                         "each": [j.to_json() for j in self.jobs]}}


def liveness_json(check: CheckResult) -> dict[str, object]:
    """One liveness check as the `liveness` section shows it: proved, violated (with its lasso
    or path) or error."""
    result = {Result.PROVED: "proved", Result.COUNTEREXAMPLE: "violated"}.get(check.result, "error")
    data: dict[str, object] = {"name": check.name, "rules": list(check.rules), "result": result,
                               "detail": check.detail}
    cex = check.counterexample
    if cex is not None:
        data["counterexample"] = {"kind": cex.kind, "what": cex.what, "pins": dict(cex.pins),
                                  "initial": {slot: dict(f) for slot, f in cex.initial},
                                  "prefix": [s.to_json() for s in cex.steps],
                                  "cycle": [s.to_json() for s in cex.cycle]}
    return data


def pinned_counts() -> Counts:
    """machines / compositions / benchmark -> name -> {states, edges, transitions}."""
    data = json.loads(PINNED_FILE.read_text(encoding="utf-8"))
    return {k: v for k, v in data.items() if not k.startswith("_")}


def compare_counts(found: Counts, pinned: Counts | None = None) -> PinnedCounts:
    """The found counts beside the pinned ones, with what changed."""
    pinned = pinned if pinned is not None else pinned_counts()
    changed = tuple(f"{group}.{name}: pinned {pinned.get(group, {}).get(name)}, found {counts}"
                    for group, entries in found.items() for name, counts in entries.items()
                    if pinned.get(group, {}).get(name) != counts)
    return PinnedCounts(found, {g: {n: pinned.get(g, {}).get(n, {}) for n in entries}
                                for g, entries in found.items()}, changed)


# The compositions whose slots are not coupled, by group and name in the pinned file: their
# figures follow from their machines' own (see `product_counts`), so the pins must agree.
PRODUCTS: dict[str, dict[str, tuple[str, ...]]] = {
    "compositions": {DEFAULT_COMPOSITION.name: tuple(m for _, m in DEFAULT_SLOTS)},
    "benchmark": {LARGE_COMPOSITION.name: tuple(m.name for _, m in LARGE_COMPOSITION.slots)},
}


def product_counts(parts: Sequence[Mapping[str, int]]) -> dict[str, int]:
    """The figures of a composition of independent machines from their own: the product of
    their states, and for edges and transitions each machine's times the other machines' states,
    summed (a step of the composition is a step of one of them, the others staying put)."""
    states = 1
    for part in parts:
        states *= part["states"]
    found = {"states": states}
    for figure in ("edges", "transitions"):
        total = 0
        for i, part in enumerate(parts):
            others = 1
            for j, other in enumerate(parts):
                if j != i:
                    others *= other["states"]
            total += part[figure] * others
        found[figure] = total
    return found


def check_pinned_products(pinned: Counts | None = None) -> CheckResult:
    """The pinned figures of each composition in `PRODUCTS` equal the product of its machines'
    pinned figures: a pin left behind when a machine's pin moved (or a wrong one) fails."""
    start = time.perf_counter()
    try:
        pins = pinned if pinned is not None else pinned_counts()
        wrong: list[str] = []
        for group, entries in PRODUCTS.items():
            for name, names in entries.items():
                parts = [pins["machines"][m] for m in names]
                expected = product_counts(parts)
                if pins.get(group, {}).get(name) != expected:
                    wrong.append(f"{group}.{name}: pinned {pins.get(group, {}).get(name)}, "
                                 f"its machines' pins give {expected}")
    except (OSError, ValueError, KeyError, TypeError) as exc:
        return cannot_run("pinned_counts.products", "explorer",
                          ModelError(f"{PINNED_FILE.name}: {type(exc).__name__}: {exc}"))
    seconds = time.perf_counter() - start
    if wrong:
        return CheckResult("pinned_counts.products", "explorer", Result.COUNTEREXAMPLE, seconds,
                           "stale pins in " + PINNED_FILE.name + ": " + "; ".join(wrong))
    count = sum(len(e) for e in PRODUCTS.values())
    return CheckResult("pinned_counts.products", "explorer", Result.PROVED, seconds,
                       f"the pins of {count} compositions of independent machines equal the "
                       f"products of their machines' pins")


def graph_report(graph: explorer.StateGraph) -> GraphReport:
    start = time.perf_counter()
    paths = explorer.tour(graph)
    covered = len(explorer.covered_edges(paths))
    tpaths = explorer.tour(graph, cover="transitions")
    taken = {(e.source, e.action) for p in tpaths for e in p}
    return GraphReport(graph.name, graph.states, graph.edge_count, len(graph.transitions),
                       graph.seconds, explorer.tour_length(paths), len(paths), covered,
                       explorer.tour_length(tpaths), len(taken & graph.transitions),
                       len(explorer.unquiescent_states(graph)), time.perf_counter() - start)


def transitions_of(graph: explorer.StateGraph, machine: Machine) -> list[Transition]:
    """A machine graph's edges as invariant `Transition`s (unpinned: outcome index = allowed)."""
    return [Transition(machine, e.source, e.op, e.args, e.outcome, e.allowed)  # type: ignore[arg-type]
            for e in graph.edges()]


def _parents(graph: explorer.StateGraph, machine: Machine) -> dict[State, Transition | None]:
    tree = explorer.parents(graph)
    return {node: (None if e is None else  # type: ignore[misc]
                   Transition(machine, e.source, e.op, e.args, e.outcome, e.allowed))  # type: ignore[arg-type]
            for node, e in tree.items()}


def _timed(name: str, kind: str, body: Callable[[], tuple[bool, str, Counterexample | None]]
           ) -> CheckResult:
    start = time.perf_counter()
    ok, detail, cex = body()
    return CheckResult(name, kind, Result.PROVED if ok else Result.COUNTEREXAMPLE,
                       time.perf_counter() - start, detail, counterexample=cex)


def cannot_run(name: str, kind: str, exc: BaseException, seconds: float = 0.0,
               hint: str = "") -> CheckResult:
    """The result ERROR for a check that could not run on the tables given."""
    if isinstance(exc, ModelError):
        why = str(exc)
    else:  # a fault of callgate itself: keep where it happened, so it can be reported
        where = traceback.extract_tb(exc.__traceback__)[-1:] if exc.__traceback__ else []
        place = f" at {Path(where[0].filename).name}:{where[0].lineno}" if where else ""
        why = f"{type(exc).__name__}: {exc}{place}"
    return CheckResult(name, kind, Result.ERROR, seconds,
                       f"could not run: {why}" + (f". {hint}" if hint else ""))


def guarded(names: Sequence[tuple[str, str]], body: Callable[[], list[CheckResult]],
            hint: str = "") -> list[CheckResult]:
    """The checks `body` runs, or one ERROR per (name, kind) in `names` if it raises."""
    start = time.perf_counter()
    try:
        return body()
    except Exception as exc:
        seconds = time.perf_counter() - start
        return [cannot_run(name, kind, exc, seconds, hint) for name, kind in names]


def deadlock_free(graph: explorer.StateGraph) -> CheckResult:
    """From every reachable state of the graph a quiescent state is reachable."""
    def deadlock() -> tuple[bool, str, Counterexample | None]:
        stuck = explorer.unquiescent_states(graph)
        if not stuck:
            return True, f"from each of {graph.states} states a quiescent state is reachable", None
        path = explorer.shortest_path(graph, None, stuck[0])
        steps = tuple(proofs.TraceStep(e.slot, (("state", graph.describe(e.source)),), e.op,
                                       e.args, e.label, e.code, e.rules,
                                       (("state", graph.describe(e.target)),)) for e in path)
        return False, (f"{len(stuck)} states cannot reach a quiescent state, e.g. "
                       f"{graph.describe(stuck[0])}"), Counterexample(
            "trace", "deadlock freedom", "no quiescent state is reachable from the last state",
            (), steps)

    return _timed(f"deadlock_free[{graph.name}]", "explorer", deadlock)


def explorer_checks(report: GraphReport, graph: explorer.StateGraph) -> list[CheckResult]:
    """Deadlock freedom and tour coverage of one graph, as checks."""
    def coverage() -> tuple[bool, str, Counterexample | None]:
        ok = report.edges_covered == report.edges and report.transitions_covered == report.transitions
        return ok, (f"edge tour {report.tour_length} steps in {report.tour_paths} paths for "
                    f"{report.edges} edges ({report.tour_length / max(1, report.edges):.2f}x); "
                    f"transition tour {report.transition_tour_length} steps for "
                    f"{report.transitions} transitions"), None

    tour_check = _timed(f"tour[{graph.name}]", "explorer", coverage)
    return [deadlock_free(graph),
            CheckResult(tour_check.name, tour_check.kind, tour_check.result,
                        tour_check.seconds + report.tour_seconds, tour_check.detail)]


def _explorer_names(name: str) -> list[tuple[str, str]]:
    return [(f"deadlock_free[{name}]", "explorer"), (f"tour[{name}]", "explorer")]


def composition(name: str, slots: Sequence[tuple[str, str]], machines: Mapping[str, Machine]
                ) -> Composition:
    """A composition of the given machines by slot; a missing machine is a ModelError."""
    missing = sorted({m for _, m in slots} - set(machines))
    if missing:
        raise ModelError(f"composition {name} needs machines {missing}, which were not given")
    return Composition(name, tuple((slot, machines[m]) for slot, m in slots))


def explore_composition(comp: Composition) -> tuple[GraphReport | None, list[CheckResult]]:
    """The composition's graph report and explorer checks (ERRORs if it cannot be explored)."""
    found: list[GraphReport] = []

    def body() -> list[CheckResult]:
        graph = explorer.build_graph(comp)
        found.append(graph_report(graph))
        return explorer_checks(found[0], graph)

    checks = guarded(_explorer_names(comp.name), body)
    return (found[0] if found else None), checks


def coupled_checks(comp: Composition) -> tuple[GraphReport | None, list[CheckResult]]:
    """A coupled composition's graph report, its deadlock freedom, its cross invariants on every
    reachable state, and their proofs (ERRORs if it cannot be explored or encoded). No tour: the
    harness's cases do not follow one over a coupled composition, and the one over the two call
    objects alone would cost more than every other check here together."""
    found: list[GraphReport] = []
    names = [(f"deadlock_free[{comp.name}]", "explorer"),
             (f"{COUPLED_KIND}.explored[{comp.name}]", COUPLED_KIND)]

    def explore() -> list[CheckResult]:
        graph = explorer.build_graph(comp)
        found.append(GraphReport(graph.name, graph.states, graph.edge_count,
                                 len(graph.transitions), graph.seconds, 0, 0, 0, 0, 0,
                                 len(explorer.unquiescent_states(graph)), 0.0, toured=False))
        return [deadlock_free(graph), reachable_check(comp, list(graph.graph.nodes))]

    checks = guarded(names, explore)
    checks += guarded([(f"{COUPLED_KIND}[{comp.name}]: {i.name}", COUPLED_KIND)
                       for i in coupled.invariants_of(comp)], lambda: prove_coupled(comp))
    return (found[0] if found else None), checks


def _bmc(depth: int, machines: Mapping[str, Machine] | None = None) -> CheckResult:
    name = f"bmc[{BMC_COMPOSITION.name}, k={depth}]"
    return guarded([(name, "bmc")], lambda: [proofs.check_bmc(
        composition(BMC_COMPOSITION.name, BMC_SLOTS, machines or MACHINES), depth)])[0]


@dataclass(frozen=True)
class MachineResult:
    """One machine's checks that need its state graph (`parts` of them: agreement, explorer,
    liveness), from one graph built for them all."""

    agreement: list[CheckResult] = field(default_factory=list)
    explorer: list[CheckResult] = field(default_factory=list)
    report: GraphReport | None = None
    liveness: list[CheckResult] = field(default_factory=list)


PARTS = ("agreement", "explorer", "liveness")
HINT = "See the table checks above: a gap or an overlap stops the explorer"


def _machine_checks(tables: Mapping[str, Machine] | None, name: str,
                    parts: Sequence[str] = PARTS) -> MachineResult:
    """The checks of one machine that read its state graph. `tables` None: the registry's."""
    machine = (tables or MACHINES)[name]
    graphs: list[explorer.StateGraph] = []

    def agreement() -> list[CheckResult]:
        # The explored graph may come from the disk cache (a pure function of the model's
        # source and the machine, see explorer/cache.py; CALLGATE_CACHE=off builds it).
        graph = explorer.cached_graph(machine)
        graphs.append(graph)
        if "agreement" not in parts:
            return []
        reachable = list(graph.graph.nodes)
        return [proofs.check_relation_agreement(machine, reachable, _parents(graph, machine)),
                proofs.check_agreement(machine, reachable, transitions_of(graph, machine))]

    result = MachineResult(guarded([(f"agreement.relation[{name}]", "agreement"),
                                    (f"agreement.invariants[{name}]", "agreement")],
                                   agreement, HINT))
    if "agreement" not in parts:
        result.agreement.clear()
    graph = graphs[0] if graphs else None
    if "explorer" in parts:
        if graph is None:
            result.explorer.extend(cannot_run(n, k, ModelError(f"no state graph of {name}"), 0.0,
                                              HINT) for n, k in _explorer_names(name))
        else:
            found: list[GraphReport] = []

            def explore(graph: explorer.StateGraph = graph) -> list[CheckResult]:
                found.append(graph_report(graph))
                return explorer_checks(found[0], graph)
            result.explorer.extend(guarded(_explorer_names(name), explore, HINT))
            result = MachineResult(result.agreement, result.explorer,
                                   found[0] if found else None, result.liveness)
    if "liveness" in parts:
        props = [p for p in liveness.PROPERTIES if liveness.machine_of(p) == name]
        result.liveness.extend(guarded([(p.name, liveness.KIND) for p in props],
                                       lambda: liveness.check_liveness(machine, graph), HINT))
    return result


def _obligation_checks(tables: Mapping[str, Machine] | None, name: str, part: int = 0,
                       parts: int = 1) -> list[CheckResult]:
    """The obligations of machine `name` (without the catalogue's coverage check): every
    `parts`-th one from the `part`-th, in their order."""
    from callgate.model.obligations import ALL
    mine = [o for o in ALL if o.machine == name]
    return check_obligations(machines=tables or MACHINES, obligations=mine[part::parts])


def _merged(parts: Sequence[list[CheckResult]]) -> list[CheckResult]:
    """The results of `_obligation_checks`' parts in the order of the whole (dealt in turn)."""
    merged: list[CheckResult] = []
    for i in range(max((len(p) for p in parts), default=0)):
        merged += [p[i] for p in parts if i < len(p)]
    return merged


def _consistency_checks(tables: Mapping[str, Machine] | None) -> list[CheckResult]:
    machines = tables or MACHINES
    return (guarded([("consistency.tables", "consistency")],
                    lambda: [proofs.check_tables_consistent(machines)])
            + guarded([("consistency.claims", "consistency")],
                      lambda: proofs.check_consistency(machines=machines)))


def _table_and_invariant_checks(tables: Mapping[str, Machine] | None) -> list[CheckResult]:
    machines = tables or MACHINES
    checks: list[CheckResult] = []
    for machine in machines.values():
        checks += _table_checks(machine)
    for machine in machines.values():
        checks += guarded([(f"invariants[{machine.name}]", "invariant")],
                          lambda machine=machine: proofs.prove_invariants(machine))  # type: ignore[misc]
    return checks


def _default_checks(tables: Mapping[str, Machine] | None
                    ) -> tuple[GraphReport | None, list[CheckResult]]:
    try:
        return explore_composition(
            composition(DEFAULT_COMPOSITION.name, DEFAULT_SLOTS, tables or MACHINES))
    except ModelError as exc:
        return None, [cannot_run(n, k, exc) for n, k in _explorer_names(DEFAULT_COMPOSITION.name)]


def _bmc_check(tables: Mapping[str, Machine] | None, depth: int) -> CheckResult:
    return _bmc(depth, tables)


def _coupled(tables: Mapping[str, Machine] | None, index: int
             ) -> tuple[GraphReport | None, list[CheckResult]]:
    comp = coupled.COUPLED[index]
    try:
        comp = coupled.with_machines(comp, tables or MACHINES)
    except ModelError as exc:
        return None, [cannot_run(f"deadlock_free[{comp.name}]", "explorer", exc)]
    return coupled_checks(comp)


T = TypeVar("T")


def _job_name(fn: Callable[..., object], args: tuple[object, ...]) -> str:
    return f"{fn.__name__.lstrip('_')}({', '.join(map(repr, args))})"


def _timed_job(fn: Callable[..., T], tables: Mapping[str, Machine] | None, *args: object
               ) -> tuple[T, float, float, int]:
    """`fn(tables, *args)` with the CPU and wall time it took, and the process that ran it.

    Python's cycle collector is off while the job runs (and back as it was after): the jobs
    build large graphs, memos and Z3 terms that live for the whole job, and each collection of
    the oldest generation walked all of them again, about a fifth of the run's CPU time
    (benchmarks/README.md). Reference counting still frees everything that is not in a cycle;
    the few cycles a job leaves are collected once it ends."""
    cpu, wall = time.process_time(), time.perf_counter()
    collecting = gc.isenabled()
    gc.disable()
    try:
        value = fn(tables, *args)
    finally:
        if collecting:
            gc.enable()
    return value, time.process_time() - cpu, time.perf_counter() - wall, os.getpid()


def fresh_parent() -> bool:
    """Whether this process may fork the pool's workers: fork exists here, no other thread runs
    (forking copies only the calling thread, so a lock another thread holds stays held in the
    child), and nothing has been checked here yet (Z3's main context was never made, no table
    answered a step), so a forked worker starts as a spawned one would, but for the imports it
    need not repeat. Otherwise the workers are spawned, each importing the tables afresh."""
    import threading

    import z3
    return ("fork" in multiprocessing.get_all_start_methods()
            and threading.active_count() == 1
            and getattr(z3.z3, "_main_ctx", None) is None
            and not any(m._step_memo or m._rows_memo for m in MACHINES.values()))


class _Jobs:
    """Where the checks run: for the registry's own tables, a pool of processes (one per core,
    at most `WORKERS`), forked from this process when `fresh_parent` allows (the imports done
    once) and spawned otherwise, each job reading the registry's tables as their source says;
    for custom tables (or without processes), here, in order, when its result is asked for.
    Either way every check runs. `times` holds each job's `JobTime`, in the order submitted."""

    def __init__(self, tables: Mapping[str, Machine], pooled: bool, cache: bool = False,
                 registry: bool = True) -> None:
        self.tables = tables
        # Definitive results are taken from and kept in model/check_cache.py's folder.
        self.cache = cache
        self.registry = registry
        self.pool: ProcessPoolExecutor | None = None
        self.times: list[JobTime | None] = []
        self.workers: dict[int, int] = {}
        self.method = ""
        workers = min(WORKERS, os.cpu_count() or 1)
        if pooled and workers >= 2:
            self.method = "fork" if fresh_parent() else "spawn"
            try:
                self.pool = ProcessPoolExecutor(
                    max_workers=workers, mp_context=multiprocessing.get_context(self.method))
            except (OSError, RuntimeError):  # pragma: no cover - no processes here: run inline
                self.pool = None
                self.method = ""

    def submit(self, fn: Callable[..., T], *args: object) -> Callable[[], T]:
        """Start `fn(tables, *args)`; the returned function waits for its result. With the
        cache on, a stored result is taken instead, and a definitive new one is stored."""
        index = len(self.times)
        self.times.append(None)
        if not self.cache:
            return self._start(index, fn, *args)
        name, stored = check_cache.cached(fn, args, None if self.registry else self.tables)
        if stored is not None:
            self.times[index] = JobTime(_job_name(fn, args), "cache")
            return stored
        get = self._start(index, fn, *args)
        kept: list[T] = []

        def result() -> T:
            if not kept:
                kept.append(get())
                check_cache.store(name, kept[0])
            return kept[0]
        return result

    def _start(self, index: int, fn: Callable[..., T], *args: object) -> Callable[[], T]:
        job = _job_name(fn, args)
        kept: list[T] = []

        def timed(value: T, cpu: float, wall: float, pid: int) -> T:
            worker = 0 if pid == os.getpid() else self.workers.setdefault(pid, len(self.workers) + 1)
            self.times[index] = JobTime(job, "now", cpu, wall, worker)
            kept.append(value)
            return value

        if self.pool is None:
            tables = self.tables
            return lambda: kept[0] if kept else timed(*_timed_job(fn, tables, *args))
        future: Future[tuple[T, float, float, int]] = self.pool.submit(_timed_job, fn, None, *args)

        def result() -> T:
            if kept:
                return kept[0]
            try:
                return timed(*future.result())
            except BrokenProcessPool:  # pragma: no cover - a worker died: run it here
                return timed(*_timed_job(fn, None, *args))
        return result

    def close(self) -> None:
        if self.pool is not None:
            self.pool.shutdown()


def _table_checks(machine: Machine) -> list[CheckResult]:
    checks: list[CheckResult] = []
    for check, label in ((proofs.check_totality, "totality"),
                         (proofs.check_determinism, "determinism"),
                         (proofs.check_well_formed, "well_formed")):
        name = f"{label}[{machine.name}]"
        checks += guarded([(name, "table")], lambda check=check: [check(machine)])  # type: ignore[misc]
    return checks


def run(bmc_depth: int = BMC_DEPTH, parallel: bool = True,
        machines: Mapping[str, Machine] | None = None, cache: bool = False) -> Report:
    """Every check of `callgate model check`, in order, on `machines` (default: the registry's
    tables). The registry's tables are checked by a pool of processes (`parallel`), the longest
    jobs first; custom machines run in this process only. The checks and their order are the
    same either way. `cache`: take definitive results kept by an earlier run with the same key
    and keep new ones (model/check_cache.py; off when `CALLGATE_CACHE` is)."""
    start = time.perf_counter()
    custom = machines is not None and (
        set(machines) != set(MACHINES) or any(machines[n] is not MACHINES[n] for n in machines))
    tables: Mapping[str, Machine] = machines if machines is not None else MACHINES
    jobs = _Jobs(tables, parallel and not custom, cache and check_cache.enabled(), not custom)
    try:
        from callgate.model.obligations import ALL
        from callgate.model.obligations.checker import coverage_result
        owners = list(dict.fromkeys(o.machine for o in ALL))
        # First, so that it runs in a fresh process as it did before the pool: which supporting
        # invariants Z3's minimized unsat core names depends on what the process asked Z3 before.
        # The same for bounded model checking (the longest single proof), on the other worker.
        first = jobs.submit(_table_and_invariant_checks)
        bmc = jobs.submit(_bmc_check, bmc_depth)
        # Then the longest first (as measured on the registry's tables), so the pool ends soon.
        # Its obligations, and the checks of its state graph (built once for its agreement,
        # tours and liveness): two jobs of about the same length, one per worker.
        heavy = [name for name in SPLIT if name in tables]
        obligations = {name: jobs.submit(_obligation_checks, name) for name in heavy
                       if name in owners}
        whole = {name: jobs.submit(_machine_checks, name) for name in heavy}
        coupled_jobs = [jobs.submit(_coupled, i) for i in range(len(coupled.COUPLED))]
        obligations.update({name: jobs.submit(_obligation_checks, name) for name in owners
                            if name not in obligations})
        whole.update({name: jobs.submit(_machine_checks, name) for name in tables
                      if name not in heavy})
        default = jobs.submit(_default_checks)
        consistency = jobs.submit(_consistency_checks)

        results = {name: whole[name]() for name in tables}
        checks = first()
        for name in tables:
            checks += results[name].agreement
        checks.append(bmc())
        checks += consistency()
        # The rules restated apart from the tables (DESIGN.md principle 10): their agreement.
        obligation_checks: list[CheckResult] = []
        try:
            for name in owners:
                obligation_checks += obligations[name]()
            obligation_checks.append(coverage_result(coverage_problems()))
        except Exception as exc:
            obligation_checks = [cannot_run("obligations", "obligation", exc)]
        checks += obligation_checks
        reports: list[GraphReport] = []
        for name in tables:
            checks += results[name].explorer
            report = results[name].report
            if report is not None:
                reports.append(report)
        for name in tables:
            checks += results[name].liveness
        default_report, default_checks = default()
        checks += default_checks
        coupled_reports: list[GraphReport] = []
        for get in coupled_jobs:
            report, more = get()
            checks += more
            if report is not None:
                coupled_reports.append(report)
    finally:
        jobs.close()
    found: Counts = {"machines": {r.name: {"states": r.states, "edges": r.edges,
                                           "transitions": r.transitions} for r in reports}}
    compositions = ([default_report] if default_report is not None else []) + coupled_reports
    if compositions:
        found["compositions"] = {r.name: {"states": r.states, "edges": r.edges,
                                          "transitions": r.transitions} for r in compositions}
    machine_counts = found["machines"]
    for name, names in PRODUCTS["benchmark"].items():  # too large to explore here: from its parts
        if all(m in machine_counts for m in names):
            found.setdefault("benchmark", {})[name] = product_counts(
                [machine_counts[m] for m in names])
    checks.append(check_pinned_products())
    try:
        pinned: PinnedCounts | None = compare_counts(found)
    except (OSError, ValueError):  # pragma: no cover - a missing or broken file is reported as such
        pinned = None
    failed = tuple(c.name for c in checks if c.failed)
    return Report(tuple(checks), default_report, tuple(reports), time.perf_counter() - start,
                  failed, pinned, tuple(coupled_reports),
                  tuple(t for t in jobs.times if t is not None), jobs.method)
