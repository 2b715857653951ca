"""The table checks, symbolically over every field combination: `check_totality` (some row
covers every state, operation and arguments), `check_determinism` (no two rows do) and
`check_well_formed` (updates stay in their domains; every pinning leaves a DEFINED row an
outcome)."""

from __future__ import annotations

import time
from collections.abc import Iterable

import z3

from callgate.model.proofs.results import CheckResult, Counterexample, Result, TraceStep, fields_of
from callgate.model.proofs.solver import (
    DEFAULT_TIMEOUT_MS,
    SolverUnknown,
    is_sat,
    new_solver,
    unknown_result,
)
from callgate.model.symbolic import (
    ArgTerms,
    SymState,
    admitted,
    choices,
    guard,
    index_term,
    pin_vars,
    pins_in_domain,
    row_args,
)
from callgate.model.transitions import Args, Kind, Machine, State
from callgate.model.variations import BY_NAME as POINTS


def _table_cex(machine: Machine, what: str, state: State, op: str, args: Args,
               outcome: str = "") -> Counterexample:
    fields = fields_of(machine, state)
    return Counterexample("table", f"{machine.name}.{op}", what, ((machine.name, fields),),
                          (TraceStep(machine.name, fields, op, args, outcome, "", (), ()),))


def check_totality(machine: Machine, timeout_ms: int = DEFAULT_TIMEOUT_MS) -> CheckResult:
    """Every field combination and every operation and arguments is covered by some row."""
    start = time.perf_counter()
    name = f"totality[{machine.name}]"
    pre = SymState(machine, "tot")
    args = ArgTerms(machine, "tot")
    solver = new_solver(timeout_ms)
    solver.add(pre.in_domain(), args.in_domain())
    try:
        for operation in machine.operations:
            rows = machine.rows_for(operation.name)
            covered = z3.Or([z3.And(guard(r, pre), row_args(r, args)) for r in rows]) if rows \
                else z3.BoolVal(False)
            solver.push()
            solver.add(z3.Not(covered))
            if is_sat(solver):
                model = solver.model()
                state, argv = pre.decode(model), args.decode(operation.name, model)
                solver.pop()
                what = (f"no row covers {operation.name}{dict(argv)} in "
                        f"{machine.describe(state)}: add a row (DEFINED, UNDEFINED or NOT_OFFERED)")
                return CheckResult(name, "table", Result.COUNTEREXAMPLE,
                                   time.perf_counter() - start, what,
                                   counterexample=_table_cex(machine, what, state,
                                                             operation.name, argv, "(no row)"))
            solver.pop()
    except SolverUnknown as exc:
        return unknown_result(name, "table", start, exc)
    combos = 1
    for f in machine.fields:
        combos *= len(f.domain)
    return CheckResult(name, "table", Result.PROVED, time.perf_counter() - start,
                       f"every one of {combos} field combinations x {len(machine.operations)} "
                       "operations (all arguments) is covered")


def check_determinism(machine: Machine, timeout_ms: int = DEFAULT_TIMEOUT_MS) -> CheckResult:
    """No two rows cover the same state, operation and arguments. (Several outcomes within one
    row are the documented nondeterminism: MAY rules and variation points.)"""
    start = time.perf_counter()
    name = f"determinism[{machine.name}]"
    pre = SymState(machine, "det")
    args = ArgTerms(machine, "det")
    solver = new_solver(timeout_ms)
    solver.add(pre.in_domain(), args.in_domain())
    several = [r for r in machine.rows if len(r.outcomes) > 1]
    pinned = [r for r in several if any(o.when for o in r.outcomes)]
    may = [r for r in several if r not in pinned and _may(r.cited_rules())]
    other = [machine.rows.index(r) for r in several if r not in pinned and r not in may]
    try:
        for operation in machine.operations:
            rows = machine.rows_for(operation.name)
            if len(rows) < 2:
                continue
            covers = [z3.And(guard(r, pre), row_args(r, args)) for r in rows]
            solver.push()
            solver.add(z3.Sum([z3.If(c, 1, 0) for c in covers]) >= 2)
            if is_sat(solver):
                model = solver.model()
                state, argv = pre.decode(model), args.decode(operation.name, model)
                which = [machine.rows.index(r) for r, c in zip(rows, covers, strict=True)
                         if z3.is_true(model.eval(c, model_completion=True))]
                solver.pop()
                cited = "; ".join(f"row {i} ({', '.join(machine.rows[i].rules)})" for i in which)
                what = (f"{len(which)} rows cover {operation.name}{dict(argv)} in "
                        f"{machine.describe(state)}: {cited}; make their guards disjoint")
                return CheckResult(name, "table", Result.COUNTEREXAMPLE,
                                   time.perf_counter() - start, what,
                                   counterexample=_table_cex(machine, what, state,
                                                             operation.name, argv,
                                                             f"rows {which}"))
            solver.pop()
    except SolverUnknown as exc:
        return unknown_result(name, "table", start, exc)
    return CheckResult(name, "table", Result.PROVED, time.perf_counter() - start,
                       f"rows of each operation have disjoint guards; {len(several)} rows offer "
                       f"several outcomes: {len(pinned)} through variation points, {len(may)} "
                       f"citing a MAY rule, {len(other)} otherwise (timing, unspecified order)"
                       + (f": rows {other}" if other else ""))


def check_well_formed(machine: Machine, timeout_ms: int = DEFAULT_TIMEOUT_MS) -> CheckResult:
    """Every update lands inside its field's domain, and every pinning of the variation points
    leaves each DEFINED row at least one outcome."""
    start = time.perf_counter()
    name = f"well_formed[{machine.name}]"
    pre = SymState(machine, "wf")
    args = ArgTerms(machine, "wf")
    pins = pin_vars("wf")
    solver = new_solver(timeout_ms)
    solver.add(pre.in_domain(), args.in_domain(), pins_in_domain(pins))
    try:
        for choice in choices(machine):
            row, outcome = choice.row, choice.outcome
            for field_name, expr in outcome.updates:
                target = pre.domain(field_name)
                solver.push()
                solver.add(guard(row, pre), row_args(row, args),
                           index_term(expr, target, pre, args, row.op) == -1)
                if is_sat(solver):
                    model = solver.model()
                    state, argv = pre.decode(model), args.decode(row.op, model)
                    solver.pop()
                    what = (f"row {choice.row_index} ({', '.join(row.rules)}), outcome "
                            f"{outcome.label!r}: {field_name} := {expr} leaves the domain "
                            f"{target} in {machine.describe(state)}")
                    return CheckResult(name, "table", Result.COUNTEREXAMPLE,
                                       time.perf_counter() - start, what,
                                       counterexample=_table_cex(machine, what, state, row.op,
                                                                 argv, outcome.label))
                solver.pop()
        for r, row in enumerate(machine.rows):
            if row.kind is not Kind.DEFINED:
                continue
            solver.push()
            solver.add(z3.Not(z3.Or([admitted(o, pins) for o in row.outcomes])))
            if is_sat(solver):
                model = solver.model()
                chosen = {p: POINTS[p].choices[model.eval(v, model_completion=True).as_long()]
                          for p, v in pins.items()
                          if any(p == q for o in row.outcomes for q, _ in o.when)}
                solver.pop()
                what = (f"row {r} ({', '.join(row.rules)}) of {row.op} has no outcome under the "
                        f"pins {chosen}")
                state = next(iter(machine.all_states()))
                return CheckResult(name, "table", Result.COUNTEREXAMPLE,
                                   time.perf_counter() - start, what,
                                   counterexample=_table_cex(machine, what, state, row.op, ()))
            solver.pop()
    except SolverUnknown as exc:
        return unknown_result(name, "table", start, exc)
    return CheckResult(name, "table", Result.PROVED, time.perf_counter() - start,
                       "updates stay in their domains; every pinning leaves each DEFINED row an "
                       "outcome")


def _may(rule_ids: Iterable[str]) -> bool:
    from callgate.model.rules import Level, catalogue

    rules = catalogue()
    return any(Level.MAY in rules[r].split_levels or Level.UNDEFINED in rules[r].split_levels
               for r in rule_ids if r in rules)
