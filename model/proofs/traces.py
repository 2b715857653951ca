"""Counterexample traces: Z3 models decoded into steps that `step()` re-checks, and the search
for a shortest trace from an initial state that breaks an invariant."""

from __future__ import annotations

import z3

from callgate.model.invariants import Invariant, StateInvariant
from callgate.model.proofs.results import Counterexample, TraceStep, fields_of
from callgate.model.proofs.solver import DEFAULT_TIMEOUT_MS, is_sat, new_solver
from callgate.model.symbolic import SymState, SymStep
from callgate.model.transitions import Machine, ModelError, find_row, step

# Every reachable state of com_call, event and rpc_call lies within 8 steps of an initial state,
# so a trace search to 14 finds any violation there; only the container's count (63 members)
# needs longer runs, and its violations beyond the bound are reported as induction steps.
TRACE_BOUND = 14


def concrete_step(machine: Machine, slot: str, sym: SymStep, model: z3.ModelRef) -> TraceStep:
    """A decoded symbolic step, re-checked against `step()` (a mismatch is an encoder bug)."""
    pre, op, args, choice, post = sym.decode(model)
    taken = step(machine, pre, op, args)
    row = find_row(machine, pre, op, args)
    if row is not choice.row or choice.outcome_index >= len(taken.allowed):
        raise ModelError(f"{machine.name}: the Z3 encoding chose row {choice.row_index} for "
                         f"{op}{dict(args)} in {machine.describe(pre)}; step() disagrees")
    allowed = taken.allowed[choice.outcome_index]
    if allowed.next_state != post:
        raise ModelError(f"{machine.name}: the Z3 encoding leads {op}{dict(args)} from "
                         f"{machine.describe(pre)} to {machine.describe(post)}; step() says "
                         f"{machine.describe(allowed.next_state)}")
    return TraceStep(slot, fields_of(machine, pre), op, args, allowed.label, str(allowed.code),
                     allowed.rules, fields_of(machine, post))


def violation(inv: Invariant) -> str:
    return f"{inv.kind} invariant {inv.name} ({', '.join(inv.rules)}): {inv.doc}"


def find_trace(machine: Machine, inv: Invariant, bound: int = TRACE_BOUND,
               timeout_ms: int = DEFAULT_TIMEOUT_MS) -> Counterexample | None:
    """A shortest trace from an initial state that breaks `inv`, up to `bound` steps."""
    states = [SymState(machine, "k0")]
    solver = new_solver(timeout_ms)
    solver.add(states[0].in_domain(), states[0].initial())
    steps: list[SymStep] = []
    for depth in range(bound + 1):
        if depth:
            sym = SymStep(machine, f"k{depth - 1}", pre=states[-1],
                          post=SymState(machine, f"k{depth}"))
            states.append(sym.post)
            steps.append(sym)
            solver.add(sym.relation)
        if isinstance(inv, StateInvariant):
            goal = z3.Not(inv.formula(states[depth]))
        elif depth == 0:
            continue
        else:
            goal = z3.Not(inv.formula(steps[-1]))
        solver.push()
        solver.add(goal)
        found = is_sat(solver)
        if found:
            model = solver.model()
            trace = tuple(concrete_step(machine, machine.name, s, model) for s in steps)
            solver.pop()
            return Counterexample("trace", inv.name, violation(inv),
                                  ((machine.name, fields_of(machine, states[0].decode(model))),),
                                  trace)
        solver.pop()
    return None
