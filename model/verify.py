"""The `callgate model check` run: every proof, table check and exploration for the default
configuration, and the state counts pinned in `model/pinned_counts.json`.

The default configuration: each machine on its own; the composition `DEFAULT_COMPOSITION` (two
call objects, COM-CF-10's reason for several objects) for the explorer's graph, tours and
deadlock freedom; and `BMC_COMPOSITION` (two call objects, an event and an RPC call) for bounded
model checking, whose symbolic encoding does not suffer the product's size.
"""

from __future__ import annotations

import dataclasses
import json
import multiprocessing
import os
import time
from collections.abc import Callable
from concurrent.futures import Future, ProcessPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

from callgate.model import explorer, proofs
from callgate.model.families import MACHINES
from callgate.model.invariants import Transition
from callgate.model.proofs import CheckResult, Counterexample, Result
from callgate.model.transitions import Composition, Machine, State

PINNED_FILE = Path(__file__).with_name("pinned_counts.json")
BMC_DEPTH = 6

DEFAULT_COMPOSITION = Composition("two_call_objects", (
    ("call_a", MACHINES["com_call"]), ("call_b", MACHINES["com_call"])))
BMC_COMPOSITION = Composition("clients", (
    ("call_a", MACHINES["com_call"]), ("call_b", MACHINES["com_call"]),
    ("event", MACHINES["event"]), ("rpc", MACHINES["rpc_call"])))
# The benchmark's composition: large enough to pass 100,000 states.
LARGE_COMPOSITION = Composition("three_call_objects_and_event", (
    ("call_a", MACHINES["com_call"]), ("call_b", MACHINES["com_call"]),
    ("call_c", MACHINES["com_call"]), ("event", MACHINES["event"])))


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

    def to_json(self) -> dict[str, object]:
        return {"name": self.name, "states": self.states, "edges": self.edges,
                "transitions": self.transitions, "seconds": round(self.seconds, 4),
                "tour_length": self.tour_length, "tour_paths": self.tour_paths,
                "edges_covered": self.edges_covered,
                "transition_tour_length": self.transition_tour_length,
                "transitions_covered": self.transitions_covered,
                "unquiescent_states": self.unquiescent}


@dataclass(frozen=True)
class Report:
    """Everything `callgate model check` prints."""

    checks: tuple[CheckResult, ...]
    explorer: GraphReport
    machines: tuple[GraphReport, ...]
    seconds: float
    failed: tuple[str, ...] = field(default=())

    @property
    def ok(self) -> bool:
        return not self.failed

    def to_json(self) -> dict[str, object]:
        explorer_json = self.explorer.to_json()
        explorer_json["machines"] = {m.name: m.to_json() for m in self.machines}
        return {"ok": self.ok, "seconds": round(self.seconds, 3),
                "summary": proofs.summarize(self.checks),
                "failed": list(self.failed),
                "checks": [c.to_json() for c in self.checks],
                "explorer": explorer_json}


def pinned_counts() -> dict[str, dict[str, dict[str, int]]]:
    """machines / compositions / benchmark -> name -> {states, edges, transitions}."""
    data = json.loads(PINNED_FILE.read_text(encoding="utf-8"))
    return {k: v for k, v in data.items() if not k.startswith("_")}


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


def explorer_checks(report: GraphReport, graph: explorer.StateGraph) -> list[CheckResult]:
    """Deadlock freedom and tour coverage of one graph, as checks."""
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

    def coverage() -> tuple[bool, str, Counterexample | None]:
        ok = report.edges_covered == report.edges and report.transitions_covered == report.transitions
        return ok, (f"edge tour {report.tour_length} steps in {report.tour_paths} paths for "
                    f"{report.edges} edges ({report.tour_length / max(1, report.edges):.2f}x); "
                    f"transition tour {report.transition_tour_length} steps for "
                    f"{report.transitions} transitions"), None

    tour_check = _timed(f"tour[{graph.name}]", "explorer", coverage)
    return [_timed(f"deadlock_free[{graph.name}]", "explorer", deadlock),
            dataclasses.replace(tour_check, seconds=tour_check.seconds + report.tour_seconds)]


def pinned_check(found: dict[str, dict[str, dict[str, int]]]) -> CheckResult:
    """The state, edge and transition counts equal the pinned ones (a changed model is noticed)."""
    def body() -> tuple[bool, str, Counterexample | None]:
        pinned = pinned_counts()
        wrong = []
        for group, entries in found.items():
            for name, counts in entries.items():
                expected = pinned.get(group, {}).get(name)
                if expected != counts:
                    wrong.append(f"{group}.{name}: pinned {expected}, found {counts}")
        if wrong:
            return False, ("; ".join(wrong) + f". If the model change is intended, update "
                           f"{PINNED_FILE.name}"), None
        return True, f"{sum(len(v) for v in found.values())} pinned counts match", None
    return _timed("pinned_counts", "explorer", body)


def _bmc(depth: int) -> CheckResult:
    return proofs.check_bmc(BMC_COMPOSITION, depth)


def _start_bmc(depth: int) -> tuple[ProcessPoolExecutor | None, Future[CheckResult] | None]:
    """Bounded model checking is the longest single proof: on a machine with a second core it
    runs in a second process while the rest goes on."""
    if (os.cpu_count() or 1) < 2:
        return None, None
    try:
        pool = ProcessPoolExecutor(max_workers=1, mp_context=multiprocessing.get_context("spawn"))
        return pool, pool.submit(_bmc, depth)
    except (OSError, RuntimeError):  # pragma: no cover - no processes here: run it inline
        return None, None


def _finish_bmc(pool: ProcessPoolExecutor | None, future: Future[CheckResult] | None,
                depth: int) -> CheckResult:
    if pool is None or future is None:
        return _bmc(depth)
    try:
        return future.result()
    except Exception:  # pragma: no cover - the worker died: run it here instead
        return _bmc(depth)
    finally:
        pool.shutdown()


def run(bmc_depth: int = BMC_DEPTH, parallel: bool = True) -> Report:
    """Every check of `callgate model check`, in order."""
    start = time.perf_counter()
    pool, future = _start_bmc(bmc_depth) if parallel else (None, None)
    checks: list[CheckResult] = []
    for machine in MACHINES.values():
        checks += [proofs.check_totality(machine), proofs.check_determinism(machine),
                   proofs.check_well_formed(machine)]
    for machine in MACHINES.values():
        checks += proofs.prove_invariants(machine)
    graphs: dict[str, explorer.StateGraph] = {}
    reports: list[GraphReport] = []
    for name, machine in MACHINES.items():
        graph = explorer.build_graph(machine)
        graphs[name] = graph
        reachable = list(graph.graph.nodes)
        checks.append(proofs.check_relation_agreement(machine, reachable,
                                                      _parents(graph, machine)))
        checks.append(proofs.check_agreement(machine, reachable, transitions_of(graph, machine)))
    checks.append(proofs.check_tables_consistent())
    checks += proofs.check_consistency()
    for graph in graphs.values():
        report = graph_report(graph)
        reports.append(report)
        checks += explorer_checks(report, graph)
    default = explorer.build_graph(DEFAULT_COMPOSITION)
    default_report = graph_report(default)
    checks += explorer_checks(default_report, default)
    found = {"machines": {r.name: {"states": r.states, "edges": r.edges,
                                   "transitions": r.transitions} for r in reports},
             "compositions": {default.name: {"states": default_report.states,
                                             "edges": default_report.edges,
                                             "transitions": default_report.transitions}}}
    checks.append(pinned_check(found))
    checks.insert(next(i for i, c in enumerate(checks) if c.kind == "consistency"),
                  _finish_bmc(pool, future, bmc_depth))
    failed = tuple(c.name for c in checks if c.failed)
    return Report(tuple(checks), default_report, tuple(reports), time.perf_counter() - start,
                  failed)
