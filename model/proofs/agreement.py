"""The agreement of the model's two writings: `check_agreement` (each invariant's Python and Z3
forms give the same verdict on every reachable state and step) and `check_relation_agreement`
(the Z3 transition relation reaches exactly the states `step()` reaches)."""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence

import z3

from callgate.model.invariants import (
    ALL,
    Invariant,
    StateInvariant,
    StateView,
    Transition,
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
from callgate.model.symbolic import SymStep, index_of, template_skeleton
from callgate.model.transitions import Args, Machine, State, find_row
from callgate.model.variations import BY_NAME as POINTS


def _disagreement(name: str, start: float, what: str, machine: Machine, state: State,
                  trace: tuple[TraceStep, ...] = ()) -> CheckResult:
    cex = Counterexample("disagreement", name, what, ((machine.name, fields_of(machine, state)),),
                         trace)
    return CheckResult(name, "agreement", Result.COUNTEREXAMPLE, time.perf_counter() - start,
                       what, counterexample=cex)


_INTS: dict[int, z3.IntNumRef] = {}


def _int(value: int) -> z3.IntNumRef:
    if value not in _INTS:
        _INTS[value] = z3.IntVal(value)
    return _INTS[value]


def _concrete(sym: SymStep, state: State, op: str, args: Args, choice: int, post: State,
              when: Mapping[str, str]) -> list[tuple[z3.ExprRef, z3.ExprRef]]:
    """Substitution pairs that make a symbolic step the concrete one."""
    pairs: list[tuple[z3.ExprRef, z3.ExprRef]] = []
    for f, value in zip(sym.machine.fields, state, strict=True):
        pairs.append((sym.pre[f.name], _int(index_of(f.domain, value))))
    for f, value in zip(sym.machine.fields, post, strict=True):
        pairs.append((sym.post[f.name], _int(index_of(f.domain, value))))
    for name, value in args:
        pairs.append((sym.args.vars[op][name], _int(index_of(sym.args.domain(op, name), value))))
    for point, chosen in when.items():
        pairs.append((sym.pins[point], _int(POINTS[point].choices.index(chosen))))
    pairs += [(sym.op, _int(sym.op_names.index(op))), (sym.choice, _int(choice))]
    return pairs


def _substitute(term: z3.ExprRef, pairs: Sequence[tuple[z3.ExprRef, z3.ExprRef]]) -> z3.ExprRef:
    """`z3.substitute` without its per-pair Python checks (the pairs are Int to Int by
    construction); the checks cost more than the substitution here."""
    count = len(pairs)
    sources = (z3.Ast * count)()
    targets = (z3.Ast * count)()
    for i, (a, b) in enumerate(pairs):
        sources[i] = a.as_ast()
        targets[i] = b.as_ast()
    ctx = term.ctx
    return z3.z3._to_expr_ref(z3.z3core.Z3_substitute(ctx.ref(), term.as_ast(), count, sources,
                                                       targets), ctx)


def check_relation_agreement(machine: Machine, reachable: Sequence[State],
                             parents: Mapping[State, Transition | None],
                             timeout_ms: int = DEFAULT_TIMEOUT_MS) -> CheckResult:
    """The Z3 transition relation reaches exactly the states `step()` reaches.

    Two queries: no Z3 step leads from a reachable state outside the reachable set, and the
    step by which breadth-first search first reached each state is a Z3 step too.
    """
    start = time.perf_counter()
    name = f"agreement.relation[{machine.name}]"
    sym = SymStep(machine, "agr")
    member_pre = sym.pre.among(reachable)
    member_post = sym.post.among(reachable)
    solver = new_solver(timeout_ms)
    try:
        solver.push()
        solver.add(member_pre, sym.relation, z3.Not(member_post))
        if is_sat(solver):
            pre, op, args, choice, post = sym.decode(solver.model())
            return _disagreement(name, start, f"Z3 steps {op}{dict(args)} (outcome "
                                 f"{choice.outcome.label!r}) from a reachable state to "
                                 f"{machine.describe(post)}, which step() never reaches",
                                 machine, pre)
        solver.pop()
        # Each breadth-first edge, made concrete in the choice's own term, must simplify to true.
        skeleton = template_skeleton(machine)
        index = {(c.row_index, c.outcome_index): c for c in skeleton.choices}
        terms: dict[int, z3.BoolRef] = {}
        for t in parents.values():
            if t is None:
                continue
            row = machine.rows.index(find_row(machine, t.state, t.op, t.args))
            choice = index[(row, t.outcome)]
            if choice.index not in terms:
                terms[choice.index] = skeleton.choice_term(choice)
            values = _concrete(skeleton, t.state, t.op, t.args, choice.index, t.allowed.next_state,
                               dict(t.allowed.when))
            if not z3.is_true(z3.simplify(_substitute(terms[choice.index], values))):
                return _disagreement(name, start, f"step() takes {t.op}{dict(t.args)} (outcome "
                                     f"{t.allowed.label!r}) to "
                                     f"{machine.describe(t.allowed.next_state)}; the Z3 relation "
                                     "has no such step", machine, t.state)
    except SolverUnknown as exc:
        return unknown_result(name, "agreement", start, exc)
    return CheckResult(name, "agreement", Result.PROVED, time.perf_counter() - start,
                       f"Z3 and step() reach the same {len(reachable)} states")


def check_agreement(machine: Machine, reachable: Sequence[State],
                    transitions: Sequence[Transition],
                    invariants: Sequence[Invariant] | None = None,
                    timeout_ms: int = DEFAULT_TIMEOUT_MS) -> CheckResult:
    """Each invariant's Python predicate and Z3 formula give the same verdict on every reachable
    state (state invariants) and every reachable step (transition invariants)."""
    start = time.perf_counter()
    name = f"agreement.invariants[{machine.name}]"
    invs = for_machine(machine.name, tuple(invariants if invariants is not None else ALL))
    sym = SymStep(machine, "agi")
    solver = new_solver(timeout_ms)
    solver.add(sym.pre.among(reachable))
    views = [StateView(machine, s) for s in reachable]
    index = {(c.row_index, c.outcome_index): c.index for c in sym.choices}

    def choice_of(t: Transition) -> int:
        row = machine.rows.index(find_row(machine, t.state, t.op, t.args))
        return index[(row, t.outcome)]

    try:
        for inv in invs:
            if isinstance(inv, StateInvariant):
                formula = inv.formula(sym.pre)
                false = [v.state for v in views if not inv.holds(v)]
                solver.push()
                if false:
                    solver.add(z3.Not(sym.pre.among(false)))
                solver.add(z3.Not(formula))
                if is_sat(solver):
                    state = sym.pre.decode(solver.model())
                    return _disagreement(name, start, f"{inv.name}: Python holds, Z3 fails in "
                                         f"{machine.describe(state)}", machine, state)
                solver.pop()
                for state in false:
                    solver.push()
                    solver.add(sym.pre.equals(state), formula)
                    if is_sat(solver):
                        return _disagreement(name, start, f"{inv.name}: Python fails, Z3 holds "
                                             f"in {machine.describe(state)}", machine, state)
                    solver.pop()
                continue
            formula = inv.formula(sym)
            false_steps = [t for t in transitions if not inv.holds(t)]
            solver.push()
            solver.add(sym.relation)
            if false_steps:
                solver.add(z3.Not(z3.Or([sym.equals(t.state, t.op, t.args, choice_of(t))
                                         for t in false_steps])))
            solver.add(z3.Not(formula))
            if is_sat(solver):
                pre, op, args, choice, _ = sym.decode(solver.model())
                return _disagreement(name, start, f"{inv.name}: Python holds, Z3 fails for "
                                     f"{op}{dict(args)} -> {choice.outcome.label!r} in "
                                     f"{machine.describe(pre)}", machine, pre)
            solver.pop()
            for t in false_steps:
                solver.push()
                solver.add(sym.relation, sym.equals(t.state, t.op, t.args, choice_of(t)),
                           z3.Not(formula))
                if not is_sat(solver):
                    return _disagreement(name, start, f"{inv.name}: Python fails, Z3 holds for "
                                         f"{t.op}{dict(t.args)} -> {t.allowed.label!r} in "
                                         f"{machine.describe(t.state)}", machine, t.state)
                solver.pop()
    except SolverUnknown as exc:
        return unknown_result(name, "agreement", start, exc)
    return CheckResult(name, "agreement", Result.PROVED, time.perf_counter() - start,
                       f"{len(invs)} invariants agree on {len(reachable)} states and "
                       f"{len(transitions)} steps")
