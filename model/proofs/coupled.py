"""Proofs over coupled compositions (issue 18): the invariants that span several slots.

`CoupledStep` encodes one step of a coupled composition for Z3, the same definition
`Composition.moves` gives the explorer: a `move` index chooses either one slot stepping alone
(an action that is neither a link's follower nor hidden) or, through the stepping slot's links,
that slot with the followers its action drives; slots that do not move keep their state, and a
shared field takes the value the moving slots hold (they must agree), or keeps its value when
none of them moved.

`prove_coupled` proves each cross-object invariant inductive (Houdini over the cross invariants,
the slots' own state invariants and the agreement of the shared fields, as `prove_invariants`
does for one machine); an invariant that is not proved gets a shortest trace from an initial
state (bounded model checking to `TRACE_BOUND` steps) or, without one, the induction step.
"""

from __future__ import annotations

import time
from collections.abc import Collection, Sequence

import z3

from callgate.model.coupled import CrossInvariant, invariants_of
from callgate.model.invariants import ALL, StateInvariant, for_machine
from callgate.model.proofs.results import CheckResult, Counterexample, Result, TraceStep, fields_of
from callgate.model.proofs.solver import (
    DEFAULT_TIMEOUT_MS,
    SolverUnknown,
    is_sat,
    new_solver,
    unknown_result,
)
from callgate.model.proofs.traces import concrete_step
from callgate.model.symbolic import SymState, SymStep, pin_vars, pins_in_domain
from callgate.model.transitions import Action, Composition, State

KIND = "coupled"
TRACE_BOUND = 10


def _matches(sym: SymStep, action: Action) -> z3.BoolRef:
    return z3.And(sym.op_is(action.op), sym.args.equals(action.op, action.args))


def _guard(state: SymState, guard: Sequence[tuple[str, tuple[object, ...]]]) -> z3.BoolRef:
    return z3.And([state.is_(name, *values) for name, values in guard])  # type: ignore[arg-type]


class CoupledStep:
    """One step of a coupled composition over symbolic slot states `pre` -> `post`."""

    def __init__(self, comp: Composition, prefix: str, pre: Sequence[SymState],
                 post: Sequence[SymState], pins: dict[str, z3.ArithRef]) -> None:
        self.comp = comp
        self.move = z3.Int(f"{prefix}:move")
        self.steps = [SymStep(m, f"{prefix}.{slot}", pre=pre[j], post=post[j], pins=pins)
                      for j, (slot, m) in enumerate(comp.slots)]
        self.pre, self.post = list(pre), list(post)
        n = len(comp.slots)
        moves = []
        self.moved: list[list[z3.BoolRef]] = []  # moved[j][k]: slot k moves when slot j leads
        for j, (slot, _) in enumerate(comp.slots):
            sym = self.steps[j]
            alone = [a for a in (*comp.hidden, *(f for link in comp.links for f in link.followers))
                     if a.slot == slot]
            terms = [sym.relation, *[z3.Not(_matches(sym, a)) for a in alone]]
            moved: list[z3.BoolRef] = []
            for k in range(n):
                if k == j:
                    moved.append(z3.BoolVal(True))
                    continue
                drives = []
                for link in comp.links:
                    if link.leader.slot != slot:
                        continue
                    cond = z3.And(_matches(sym, link.leader), _guard(sym.pre, link.pre),
                                  _guard(sym.post, link.post))
                    for follower in link.followers:
                        if comp.position(follower.slot) == k:
                            drives.append((cond, follower))
                driven = z3.Or([c for c, _ in drives]) if drives else z3.BoolVal(False)
                moved.append(driven)
                follow = z3.And(self.steps[k].relation, z3.Or(
                    [z3.And(c, _matches(self.steps[k], f)) for c, f in drives])) if drives \
                    else z3.BoolVal(False)
                terms.append(z3.If(driven, follow, self._kept(k)))
            terms += self._shared(moved)
            self.moved.append(moved)
            moves.append(z3.And(self.move == j, *terms))
        self.relation = z3.And(self.move >= 0, self.move < n, z3.Or(moves))

    def _kept(self, k: int) -> z3.BoolRef:
        """Slot k keeps its state, shared fields aside."""
        slot, machine = self.comp.slots[k]
        shared = {name for group in self.comp.shared for s, name in group.fields if s == slot}
        return self.post[k].same_as(self.pre[k], [f.name for f in machine.fields
                                                  if f.name not in shared])

    def _shared(self, moved: list[z3.BoolRef]) -> list[z3.BoolRef]:
        terms: list[z3.BoolRef] = []
        for group in self.comp.shared:
            places = [(self.comp.position(slot), name) for slot, name in group.fields]
            for p, name in places:
                for q, other in places:
                    if p < q:
                        terms.append(z3.Implies(z3.And(moved[p], moved[q]),
                                                self.post[p][name] == self.post[q][other]))
            for p, name in places:
                value: z3.ArithRef = self.pre[p][name]
                for q, other in reversed(places):
                    if q != p:
                        value = z3.If(moved[q], self.post[q][other], value)
                terms.append(z3.Implies(z3.Not(moved[p]), self.post[p][name] == value))
        return terms

    def trace(self, model: z3.ModelRef) -> list[TraceStep]:
        """The concrete slot steps a model of this step chose (the leader's first)."""
        j = model.eval(self.move, model_completion=True).as_long()
        found = []
        for k in [j, *[k for k in range(len(self.comp.slots)) if k != j]]:
            if k == j or z3.is_true(model.eval(self.moved[j][k], model_completion=True)):
                slot, machine = self.comp.slots[k]
                found.append(concrete_step(machine, slot, self.steps[k], model))
        return found


def agreement(comp: Composition, states: Sequence[SymState]) -> z3.BoolRef:
    """The shared fields hold one value each."""
    terms = []
    for group in comp.shared:
        (first_slot, first), *rest = group.fields
        for slot, name in rest:
            terms.append(states[comp.position(slot)][name]
                         == states[comp.position(first_slot)][first])
    return z3.And(terms)


def _initial(comp: Composition, states: Sequence[SymState]) -> z3.BoolRef:
    return z3.And(*[s.in_domain() for s in states], *[s.initial() for s in states],
                  agreement(comp, states))


def _by_slot(comp: Composition, states: Sequence[SymState]) -> dict[str, SymState]:
    return {slot: states[j] for j, (slot, _) in enumerate(comp.slots)}


def find_trace(comp: Composition, inv: CrossInvariant, bound: int = TRACE_BOUND,
               timeout_ms: int = DEFAULT_TIMEOUT_MS) -> Counterexample | None:
    """A shortest run of the composition from an initial state that breaks `inv`."""
    pins = pin_vars("cbmc")
    layer = [SymState(m, f"c0.{slot}") for slot, m in comp.slots]
    layers = [layer]
    solver = new_solver(timeout_ms)
    solver.add(pins_in_domain(pins), _initial(comp, layer))
    steps: list[CoupledStep] = []
    for depth in range(bound + 1):
        if depth:
            nxt = [SymState(m, f"c{depth}.{slot}") for slot, m in comp.slots]
            steps.append(CoupledStep(comp, f"c{depth - 1}", layers[-1], nxt, pins))
            solver.add(steps[-1].relation)
            layers.append(nxt)
        solver.push()
        solver.add(z3.Not(inv.formula(_by_slot(comp, layers[-1]))))
        if is_sat(solver):
            model = solver.model()
            trace = tuple(t for s in steps for t in s.trace(model))
            initial = tuple((slot, fields_of(m, layers[0][j].decode(model)))
                            for j, (slot, m) in enumerate(comp.slots))
            return Counterexample("trace", inv.name, _violation(inv) + f" ({depth}-step run)",
                                  initial, trace)
        solver.pop()
    return None


def _violation(inv: CrossInvariant) -> str:
    return (f"cross-object invariant {inv.name} ({', '.join(inv.rules)}): {inv.doc}; "
            f"{inv.describe()}")


def prove_coupled(comp: Composition, invariants: Sequence[CrossInvariant] | None = None,
                  timeout_ms: int = DEFAULT_TIMEOUT_MS, trace_bound: int = TRACE_BOUND,
                  traces_for: Collection[str] | None = None) -> list[CheckResult]:
    """Prove each cross invariant of `comp` (or the `invariants` given) inductive, Houdini-style,
    with the slots' own state invariants and the shared fields' agreement as candidate
    strengthenings. An invariant not proved gets a shortest trace within `trace_bound` steps
    (only those named in `traces_for`, when given; the others get the induction step)."""
    invs = tuple(invariants) if invariants is not None else invariants_of(comp)
    start = time.perf_counter()
    pins = pin_vars("cind")
    pre = [SymState(m, f"i.pre.{slot}") for slot, m in comp.slots]
    post = [SymState(m, f"i.post.{slot}") for slot, m in comp.slots]
    step = CoupledStep(comp, "i", pre, post, pins)
    # name -> (formula over pre, formula over post)
    candidates: dict[str, tuple[z3.BoolRef, z3.BoolRef]] = {
        f"shared[{comp.name}]": (agreement(comp, pre), agreement(comp, post))}
    for j, (slot, machine) in enumerate(comp.slots):
        for each in for_machine(machine.name, ALL):
            if isinstance(each, StateInvariant):
                candidates[f"{slot}: {each.name}"] = (each.formula(pre[j]), each.formula(post[j]))
    for inv in invs:
        candidates[inv.name] = (inv.formula(_by_slot(comp, pre)),
                                inv.formula(_by_slot(comp, post)))
    failed: dict[str, str] = {}
    init = new_solver(timeout_ms)
    init.add(_initial(comp, pre))
    try:
        for name, (before, _) in list(candidates.items()):
            init.push()
            init.add(z3.Not(before))
            if is_sat(init):
                failed[name] = "an initial state breaks it"
                del candidates[name]
            init.pop()
        solver = new_solver(timeout_ms)
        solver.add(pins_in_domain(pins), step.relation, *[s.in_domain() for s in pre])
        changed = True
        while changed:
            changed = False
            for name in list(candidates):
                solver.push()
                solver.add(*[before for before, _ in candidates.values()])
                solver.add(z3.Not(candidates[name][1]))
                if is_sat(solver):
                    failed[name] = "not preserved by a step"
                    del candidates[name]
                    changed = True
                solver.pop()
    except SolverUnknown as exc:
        return [unknown_result(f"{KIND}[{comp.name}]: {i.name}", KIND, start, exc, i.rules)
                for i in invs]
    seconds = (time.perf_counter() - start) / max(1, len(invs))
    results = []
    for inv in invs:
        name = f"{KIND}[{comp.name}]: {inv.name}"
        if inv.name in candidates:
            results.append(CheckResult(
                name, KIND, Result.PROVED, seconds,
                f"inductive over {comp.name} (slots {', '.join(s for s, _ in comp.slots)}), "
                f"with the slots' state invariants and the shared fields' agreement; "
                f"{inv.describe()}", inv.rules))
            continue
        began = time.perf_counter()
        searched = traces_for is None or inv.name in traces_for
        try:
            cex = find_trace(comp, inv, trace_bound, timeout_ms) if searched else None
        except SolverUnknown as exc:
            results.append(unknown_result(name, KIND, began, exc, inv.rules))
            continue
        if cex is None:
            cex = Counterexample("induction", inv.name, _violation(inv) + (
                f" ({failed[inv.name]}; no run of up to {trace_bound} steps breaks it: "
                "strengthen it)" if searched else f" ({failed[inv.name]}; no trace searched)"),
                ())
        results.append(CheckResult(name, KIND, Result.COUNTEREXAMPLE,
                                   seconds + time.perf_counter() - began,
                                   f"{len(cex.steps)}-step {cex.kind} counterexample",
                                   inv.rules, counterexample=cex))
    return results


def reachable_check(comp: Composition, states: Sequence[tuple[State, ...]],
                    invariants: Sequence[CrossInvariant] | None = None) -> CheckResult:
    """The Python form of the cross invariants on every state the explorer reached: the same
    data as the Z3 form, so a disagreement with `prove_coupled` is an encoder bug."""
    start = time.perf_counter()
    invs = tuple(invariants) if invariants is not None else invariants_of(comp)
    broken = [(inv.name, s) for inv in invs for s in states if not inv.holds(comp, s)]
    name = f"{KIND}.explored[{comp.name}]"
    if not broken:
        return CheckResult(name, KIND, Result.PROVED, time.perf_counter() - start,
                           f"{len(invs)} cross invariants hold in each of the {len(states)} "
                           "reachable states")
    inv_name, state = broken[0]
    initial = tuple((slot, fields_of(m, state[j])) for j, (slot, m) in enumerate(comp.slots))
    return CheckResult(name, KIND, Result.COUNTEREXAMPLE, time.perf_counter() - start,
                       f"{len(broken)} (invariant, state) pairs broken, e.g. {inv_name}",
                       counterexample=Counterexample("trace", inv_name,
                                                     "a reachable state breaks it", initial))
