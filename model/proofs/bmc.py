"""`check_bmc`: bounded model checking of a composition: no run of up to k steps, under any
pinning of the variation points, breaks an invariant of any slot."""

from __future__ import annotations

import time
from collections.abc import Sequence

import z3

from callgate.model.invariants import (
    ALL,
    Invariant,
    StateInvariant,
    TransitionInvariant,
    for_machine,
)
from callgate.model.proofs.results import CheckResult, Counterexample, Result, fields_of
from callgate.model.proofs.solver import (
    DEFAULT_TIMEOUT_MS,
    SolverUnknown,
    is_sat,
    new_solver,
    unknown_result,
)
from callgate.model.proofs.traces import concrete_step
from callgate.model.symbolic import SymState, SymStep, pin_vars, pins_in_domain
from callgate.model.transitions import Composition


def check_bmc(composition: Composition, depth: int, invariants: Sequence[Invariant] | None = None,
              timeout_ms: int = DEFAULT_TIMEOUT_MS) -> CheckResult:
    """No run of `composition` of up to `depth` steps breaks an invariant of any slot.

    The variation-point pins are one unknown choice for the whole run (one implementation), so
    the result holds for every pinning.
    """
    start = time.perf_counter()
    name = f"bmc[{composition.name}, k={depth}]"
    invs = tuple(invariants if invariants is not None else ALL)
    pins = pin_vars("bmc")
    slots = composition.slots
    layers: list[list[SymState]] = [[SymState(m, f"b0.{slot}") for slot, m in slots]]
    solver = new_solver(timeout_ms)
    solver.add(pins_in_domain(pins))
    for state in layers[0]:
        solver.add(state.in_domain(), state.initial())
    selectors: list[z3.ArithRef] = []
    steps: list[list[SymStep]] = []
    try:
        for d in range(depth + 1):
            goals: list[tuple[str, z3.BoolRef]] = []
            if d:
                selector = z3.Int(f"b{d - 1}:slot")
                selectors.append(selector)
                solver.add(selector >= 0, selector < len(slots))
                layer, layer_steps = [], []
                for j, (slot, machine) in enumerate(slots):
                    sym = SymStep(machine, f"b{d - 1}.{slot}", pre=layers[-1][j],
                                  post=SymState(machine, f"b{d}.{slot}"), pins=pins)
                    solver.add(z3.If(selector == j, sym.relation, sym.post.same_as(sym.pre)))
                    layer.append(sym.post)
                    layer_steps.append(sym)
                    goals += [(f"{slot}: {inv.name}",
                               z3.And(selector == j, z3.Not(inv.formula(sym))))
                              for inv in for_machine(machine.name, invs)
                              if isinstance(inv, TransitionInvariant)]
                layers.append(layer)
                steps.append(layer_steps)
            for j, (slot, machine) in enumerate(slots):
                goals += [(f"{slot}: {inv.name}", z3.Not(inv.formula(layers[-1][j])))
                          for inv in for_machine(machine.name, invs)
                          if isinstance(inv, StateInvariant)]
            if not goals:
                continue
            solver.push()
            solver.add(z3.Or([g for _, g in goals]))
            found = is_sat(solver)
            if found:
                model = solver.model()
                broken = [label for label, g in goals
                          if z3.is_true(model.eval(g, model_completion=True))]
                trace = []
                for k, selector in enumerate(selectors):
                    j = model.eval(selector, model_completion=True).as_long()
                    slot, machine = slots[j]
                    trace.append(concrete_step(machine, slot, steps[k][j], model))
                initial = tuple((slot, fields_of(machine, layers[0][j].decode(model)))
                                for j, (slot, machine) in enumerate(slots))
                cex = Counterexample("trace", broken[0], f"{len(trace)}-step run breaks "
                                     + "; ".join(broken), initial, tuple(trace))
                return CheckResult(name, "bmc", Result.COUNTEREXAMPLE,
                                   time.perf_counter() - start, cex.what,
                                   counterexample=cex)
            solver.pop()
            # No run of this length breaks anything: every run's states and steps so far keep the
            # invariants, which prunes the next depth's search (sound: the query was unsat).
            solver.add(z3.Not(z3.Or([g for _, g in goals])))
    except SolverUnknown as exc:
        return unknown_result(name, "bmc", start, exc)
    count = sum(len(for_machine(m.name, invs)) for _, m in slots)
    return CheckResult(name, "bmc", Result.PROVED, time.perf_counter() - start,
                       f"no run of up to {depth} steps over slots "
                       f"{', '.join(f'{s}:{m.name}' for s, m in slots)} breaks any of "
                       f"{count} slot invariants (every pinning)")
