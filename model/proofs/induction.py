"""`prove_invariants`: init implies inv, and inv and one step imply inv', for each invariant of
a machine (Houdini over the state invariants, so the ones reported proved form an inductive set;
each proof names the auxiliary invariants its unsat core used). A failure gets a reachable trace
when one exists within the bound, else the induction step itself as its counterexample."""

from __future__ import annotations

import time
from collections.abc import Collection, Sequence

import z3

from callgate.model.invariants import (
    ALL,
    Invariant,
    StateInvariant,
    TransitionInvariant,
    for_machine,
)
from callgate.model.proofs.results import CheckResult, Counterexample, Result, TraceStep, fields_of
from callgate.model.proofs.solver import (
    DEFAULT_TIMEOUT_MS,
    SolverUnknown,
    is_sat,
    new_solver,
    unknown_result,
)
from callgate.model.proofs.traces import TRACE_BOUND, find_trace, violation
from callgate.model.symbolic import SymStep
from callgate.model.transitions import Args, Machine, State, step


def prove_invariants(machine: Machine, invariants: Sequence[Invariant] | None = None,
                     trace_bound: int = TRACE_BOUND, timeout_ms: int = DEFAULT_TIMEOUT_MS,
                     traces_for: Collection[str] | None = None) -> list[CheckResult]:
    """Prove each invariant of `machine` inductive (Houdini over the state invariants).

    Results come in the order of `invariants`. A proved invariant's `support` lists the other
    state invariants the consecution proof needed (its unsat core): the strengthening it used.
    A failed invariant gets a reachable trace when one exists within `trace_bound` steps (only
    those named in `traces_for`, when given; the others get the induction step).
    """
    invs = list(for_machine(machine.name, tuple(invariants if invariants is not None else ALL)))
    spent: dict[str, float] = dict.fromkeys((i.name for i in invs), 0.0)
    failures: dict[str, Counterexample] = {}
    unknown: dict[str, str] = {}
    support: dict[str, tuple[str, ...]] = {}
    states = [i for i in invs if isinstance(i, StateInvariant)]
    transitions = [i for i in invs if isinstance(i, TransitionInvariant)]
    sym = SymStep(machine, "ind")

    # init: every initial state satisfies every state invariant
    init = new_solver(timeout_ms)
    init.add(sym.pre.in_domain(), sym.pre.initial())
    for inv in states:
        start = time.perf_counter()
        init.push()
        init.add(z3.Not(inv.formula(sym.pre)))
        try:
            if is_sat(init):
                bad = sym.pre.decode(init.model())
                failures[inv.name] = Counterexample(
                    "trace", inv.name, violation(inv) + " (an initial state breaks it)",
                    ((machine.name, fields_of(machine, bad)),))
        except SolverUnknown as exc:
            unknown[inv.name] = str(exc)
        init.pop()
        spent[inv.name] += time.perf_counter() - start

    solver = new_solver(timeout_ms, cores=True)
    solver.add(sym.relation)
    pre = {i.name: i.formula(sym.pre) for i in states}
    post = {i.name: i.formula(sym.post) for i in states}
    candidates = [i for i in states if i.name not in failures and i.name not in unknown]
    ctis: dict[str, tuple[State, str, Args, int]] = {}

    def consecution(goal: z3.BoolRef, name: str) -> tuple[bool, tuple[str, ...]]:
        """(holds, support) for: candidates at pre and one step imply goal."""
        solver.push()
        tracks = {}
        for other in candidates:
            flag = z3.Bool(f"support:{other.name}")
            tracks[str(flag)] = other.name
            solver.assert_and_track(pre[other.name], flag)
        solver.add(z3.Not(goal))
        try:
            if is_sat(solver):
                pre_state, op, args, choice, _ = sym.decode(solver.model())
                ctis[name] = (pre_state, op, args, choice.outcome_index)
                return False, ()
            core = tuple(sorted(tracks[str(c)] for c in solver.unsat_core() if str(c) in tracks))
            return True, tuple(c for c in core if c != name)
        finally:
            solver.pop()

    changed = True
    while changed:
        changed = False
        for inv in list(candidates):
            start = time.perf_counter()
            try:
                holds, used = consecution(post[inv.name], inv.name)
            except SolverUnknown as exc:
                unknown[inv.name] = str(exc)
                candidates.remove(inv)
                changed = True
                continue
            finally:
                spent[inv.name] += time.perf_counter() - start
            if holds:
                support[inv.name] = used
            else:
                candidates.remove(inv)
                changed = True
    for tinv in transitions:
        start = time.perf_counter()
        try:
            holds, used = consecution(tinv.formula(sym), tinv.name)
            if holds:
                support[tinv.name] = used
        except SolverUnknown as exc:
            unknown[tinv.name] = str(exc)
        spent[tinv.name] += time.perf_counter() - start

    results: list[CheckResult] = []
    for each in invs:
        start = time.perf_counter()
        kind = "invariant"
        name = each.name
        if name in unknown:
            results.append(CheckResult(name, kind, Result.UNKNOWN, spent[name],
                                       f"Z3 answered unknown: {unknown[name]}", each.rules))
            continue
        if name in support and name not in failures:
            used = support[name]
            detail = f"inductive {each.kind} invariant"
            detail += f", strengthened by {', '.join(used)}" if used else ", inductive on its own"
            results.append(CheckResult(name, kind, Result.PROVED, spent[name], detail, each.rules,
                                       used))
            continue
        cex = failures.get(name)
        try:
            if cex is None and (traces_for is None or name in traces_for):
                cex = find_trace(machine, each, trace_bound, timeout_ms)
        except SolverUnknown as exc:
            results.append(unknown_result(name, kind, start, exc, each.rules))
            continue
        if cex is None:
            pre_state, op, args, index = ctis[name]
            allowed = step(machine, pre_state, op, args).allowed[index]
            cex = Counterexample(
                "induction", name,
                violation(each) + (f" (not inductive: no trace within {trace_bound} steps; "
                                   "strengthen it with an auxiliary invariant)"
                                   if traces_for is None or name in traces_for
                                   else " (not preserved by this step; no trace searched)"),
                ((machine.name, fields_of(machine, pre_state)),),
                (TraceStep(machine.name, fields_of(machine, pre_state), op, args, allowed.label,
                           str(allowed.code), allowed.rules,
                           fields_of(machine, allowed.next_state)),))
        seconds = spent[name] + time.perf_counter() - start
        results.append(CheckResult(name, kind, Result.COUNTEREXAMPLE, seconds,
                                   f"{len(cex.steps)}-step {cex.kind} counterexample",
                                   each.rules, counterexample=cex))
    return results
