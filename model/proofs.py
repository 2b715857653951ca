"""Z3 proof obligations over the tables: invariants, bounded model checking, table checks,
rule consistency and agreement; each returns a `CheckResult` (a proof, or a counterexample as data).

Obligations are named for what they prove (mypyvy style):

* `prove_invariants`: init implies inv, and inv and one step imply inv' (Houdini: a state
  invariant that fails to be preserved is dropped and the rest re-proved, so the ones reported
  proved form an inductive set; each proof names the auxiliary invariants its unsat core used).
  A failure is searched for a reachable trace from an initial state (bounded model checking); if
  none is found within the bound the counterexample is the induction step itself.
* `check_bmc`: bounded model checking of a composition to depth k.
* `check_totality`, `check_determinism`, `check_well_formed`: the tables, symbolically over every
  field combination.
* `check_consistency`, `check_tables_consistent`: rule consistency from `callgate.model.claims`
  (unsat cores name the rule IDs and sources).
* `check_agreement`: each invariant's Python and Z3 forms agree on every reachable state and
  step, and the Z3 transition relation reaches exactly the states `step()` reaches.

A solver answer of `unknown` is reported as the result UNKNOWN, which is a failure, never a pass.
"""

from __future__ import annotations

import time
from collections.abc import Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from enum import Enum

import z3

from callgate.model import claims, codes
from callgate.model.codes import Family
from callgate.model.invariants import (
    ALL,
    Invariant,
    StateInvariant,
    StateView,
    Transition,
    TransitionInvariant,
    for_machine,
)
from callgate.model.symbolic import (
    SEVERITY,
    U32,
    ArgTerms,
    SymState,
    SymStep,
    admitted,
    choices,
    code_terms,
    guard,
    index_of,
    index_term,
    pin_vars,
    pins_in_domain,
    row_args,
    template_skeleton,
)
from callgate.model.transitions import (
    Args,
    Composition,
    Kind,
    Machine,
    ModelError,
    State,
    Value,
    find_row,
    step,
)
from callgate.model.variations import BY_NAME as POINTS

DEFAULT_TIMEOUT_MS = 30_000
# Every reachable state of com_call, event and rpc_call lies within 8 steps of an initial state,
# so a trace search to 14 finds any violation there; only the container's count (63 members)
# needs longer runs, and its violations beyond the bound are reported as induction steps.
TRACE_BOUND = 14


class Result(Enum):
    """The result of a check."""

    PROVED = "proved"
    COUNTEREXAMPLE = "counterexample"
    UNKNOWN = "unknown"
    CONFLICT = "conflict"


Fields = tuple[tuple[str, Value], ...]


def fields_of(machine: Machine, state: State) -> Fields:
    return tuple((f.name, v) for f, v in zip(machine.fields, state, strict=True))


@dataclass(frozen=True)
class TraceStep:
    """One step of a counterexample: what was done in which slot, and what the model allowed."""

    slot: str
    state: Fields
    op: str
    args: Args
    outcome: str
    code: str
    rules: tuple[str, ...]
    next_state: Fields

    def to_json(self) -> dict[str, object]:
        return {"slot": self.slot, "state": dict(self.state), "op": self.op,
                "args": dict(self.args), "outcome": self.outcome, "code": self.code,
                "rules": list(self.rules), "next_state": dict(self.next_state)}


@dataclass(frozen=True)
class Counterexample:
    """Why a check failed, as data.

    kind: "trace" (reachable from an initial state: `initial`, then `steps`; the last state or
    step breaks `violated`), "induction" (a state satisfying the other invariants whose one step
    breaks `violated`; no reachable trace was found within the bound), "table" (a state and
    operation a table gets wrong), "disagreement" (the Python and Z3 forms differ there).
    """

    kind: str
    violated: str
    what: str
    initial: tuple[tuple[str, Fields], ...] = ()
    steps: tuple[TraceStep, ...] = ()

    def to_json(self) -> dict[str, object]:
        return {"kind": self.kind, "violated": self.violated, "what": self.what,
                "initial": {slot: dict(f) for slot, f in self.initial},
                "steps": [s.to_json() for s in self.steps]}


@dataclass(frozen=True)
class Conflict:
    """A set of documented claims and table constraints that cannot all hold (an unsat core)."""

    members: tuple[str, ...]
    rules: tuple[str, ...]
    sources: tuple[str, ...]
    discrepancy: str
    expected: bool
    note: str = ""

    def to_json(self) -> dict[str, object]:
        return {"members": list(self.members), "rules": list(self.rules),
                "sources": list(self.sources), "discrepancy": self.discrepancy,
                "expected": self.expected, "note": self.note}


@dataclass(frozen=True)
class CheckResult:
    """One check: its name, kind, result, time, and the evidence."""

    name: str
    kind: str
    result: Result
    seconds: float
    detail: str = ""
    rules: tuple[str, ...] = ()
    support: tuple[str, ...] = ()
    counterexample: Counterexample | None = None
    conflict: Conflict | None = None

    @property
    def failed(self) -> bool:
        """A counterexample, an unknown, or a conflict nobody expected."""
        if self.result is Result.CONFLICT:
            return self.conflict is None or not self.conflict.expected
        return self.result is not Result.PROVED

    def to_json(self) -> dict[str, object]:
        data: dict[str, object] = {"name": self.name, "kind": self.kind,
                                   "result": self.result.value, "seconds": round(self.seconds, 4),
                                   "detail": self.detail, "rules": list(self.rules)}
        if self.support:
            data["support"] = list(self.support)
        if self.counterexample is not None:
            data["counterexample"] = self.counterexample.to_json()
        if self.conflict is not None:
            data["conflict"] = self.conflict.to_json()
            data["expected"] = self.conflict.expected
        return data


class SolverUnknown(Exception):
    """Z3 answered unknown (a timeout or an incomplete theory): an error, never a pass."""


def _solver(timeout_ms: int = DEFAULT_TIMEOUT_MS, cores: bool = False) -> z3.Solver:
    solver = z3.Solver()
    solver.set("timeout", timeout_ms)
    if cores:
        solver.set("core.minimize", True)
    return solver


def _check(solver: z3.Solver) -> bool:
    """True for sat, False for unsat; unknown raises."""
    answer = solver.check()
    if answer == z3.unknown:
        raise SolverUnknown(solver.reason_unknown())
    return bool(answer == z3.sat)


def _unknown(name: str, kind: str, start: float, exc: SolverUnknown, rules: tuple[str, ...] = ()
             ) -> CheckResult:
    return CheckResult(name, kind, Result.UNKNOWN, time.perf_counter() - start,
                       f"Z3 answered unknown ({exc}); raise the timeout or simplify the query",
                       rules)


# --- decoding traces ------------------------------------------------------------------------


def _concrete_step(machine: Machine, slot: str, sym: SymStep, model: z3.ModelRef) -> TraceStep:
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


def _violation(inv: Invariant) -> str:
    return f"{inv.kind} invariant {inv.name} ({', '.join(inv.rules)}): {inv.doc}"


def find_trace(machine: Machine, inv: Invariant, bound: int = TRACE_BOUND,
               timeout_ms: int = DEFAULT_TIMEOUT_MS) -> Counterexample | None:
    """A shortest trace from an initial state that breaks `inv`, up to `bound` steps."""
    states = [SymState(machine, "k0")]
    solver = _solver(timeout_ms)
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
        found = _check(solver)
        if found:
            model = solver.model()
            trace = tuple(_concrete_step(machine, machine.name, s, model) for s in steps)
            solver.pop()
            return Counterexample("trace", inv.name, _violation(inv),
                                  ((machine.name, fields_of(machine, states[0].decode(model))),),
                                  trace)
        solver.pop()
    return None


# --- invariants: induction ------------------------------------------------------------------


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
    init = _solver(timeout_ms)
    init.add(sym.pre.in_domain(), sym.pre.initial())
    for inv in states:
        start = time.perf_counter()
        init.push()
        init.add(z3.Not(inv.formula(sym.pre)))
        try:
            if _check(init):
                bad = sym.pre.decode(init.model())
                failures[inv.name] = Counterexample(
                    "trace", inv.name, _violation(inv) + " (an initial state breaks it)",
                    ((machine.name, fields_of(machine, bad)),))
        except SolverUnknown as exc:
            unknown[inv.name] = str(exc)
        init.pop()
        spent[inv.name] += time.perf_counter() - start

    solver = _solver(timeout_ms, cores=True)
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
            if _check(solver):
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
            results.append(_unknown(name, kind, start, exc, each.rules))
            continue
        if cex is None:
            pre_state, op, args, index = ctis[name]
            allowed = step(machine, pre_state, op, args).allowed[index]
            cex = Counterexample(
                "induction", name,
                _violation(each) + (f" (not inductive: no trace within {trace_bound} steps; "
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


# --- bounded model checking of compositions -------------------------------------------------


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
    solver = _solver(timeout_ms)
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
            found = _check(solver)
            if found:
                model = solver.model()
                broken = [label for label, g in goals
                          if z3.is_true(model.eval(g, model_completion=True))]
                trace = []
                for k, selector in enumerate(selectors):
                    j = model.eval(selector, model_completion=True).as_long()
                    slot, machine = slots[j]
                    trace.append(_concrete_step(machine, slot, steps[k][j], model))
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
        return _unknown(name, "bmc", start, exc)
    count = sum(len(for_machine(m.name, invs)) for _, m in slots)
    return CheckResult(name, "bmc", Result.PROVED, time.perf_counter() - start,
                       f"no run of up to {depth} steps over slots "
                       f"{', '.join(f'{s}:{m.name}' for s, m in slots)} breaks any of "
                       f"{count} slot invariants (every pinning)")


# --- table checks ---------------------------------------------------------------------------


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
    solver = _solver(timeout_ms)
    solver.add(pre.in_domain(), args.in_domain())
    try:
        for operation in machine.operations:
            rows = machine.rows_for(operation.name)
            covered = z3.Or([z3.And(guard(r, pre), row_args(r, args)) for r in rows]) if rows \
                else z3.BoolVal(False)
            solver.push()
            solver.add(z3.Not(covered))
            if _check(solver):
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
        return _unknown(name, "table", start, exc)
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
    solver = _solver(timeout_ms)
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
            if _check(solver):
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
        return _unknown(name, "table", start, exc)
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
    solver = _solver(timeout_ms)
    solver.add(pre.in_domain(), args.in_domain(), pins_in_domain(pins))
    try:
        for choice in choices(machine):
            row, outcome = choice.row, choice.outcome
            for field_name, expr in outcome.updates:
                target = pre.domain(field_name)
                solver.push()
                solver.add(guard(row, pre), row_args(row, args),
                           index_term(expr, target, pre, args, row.op) == -1)
                if _check(solver):
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
            if _check(solver):
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
        return _unknown(name, "table", start, exc)
    return CheckResult(name, "table", Result.PROVED, time.perf_counter() - start,
                       "updates stay in their domains; every pinning leaves each DEFINED row an "
                       "outcome")


# --- agreement ------------------------------------------------------------------------------


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
    solver = _solver(timeout_ms)
    try:
        solver.push()
        solver.add(member_pre, sym.relation, z3.Not(member_post))
        if _check(solver):
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
        return _unknown(name, "agreement", start, exc)
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
    solver = _solver(timeout_ms)
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
                if _check(solver):
                    state = sym.pre.decode(solver.model())
                    return _disagreement(name, start, f"{inv.name}: Python holds, Z3 fails in "
                                         f"{machine.describe(state)}", machine, state)
                solver.pop()
                for state in false:
                    solver.push()
                    solver.add(sym.pre.equals(state), formula)
                    if _check(solver):
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
            if _check(solver):
                pre, op, args, choice, _ = sym.decode(solver.model())
                return _disagreement(name, start, f"{inv.name}: Python holds, Z3 fails for "
                                     f"{op}{dict(args)} -> {choice.outcome.label!r} in "
                                     f"{machine.describe(pre)}", machine, pre)
            solver.pop()
            for t in false_steps:
                solver.push()
                solver.add(sym.relation, sym.equals(t.state, t.op, t.args, choice_of(t)),
                           z3.Not(formula))
                if not _check(solver):
                    return _disagreement(name, start, f"{inv.name}: Python fails, Z3 holds for "
                                         f"{t.op}{dict(t.args)} -> {t.allowed.label!r} in "
                                         f"{machine.describe(t.state)}", machine, t.state)
                solver.pop()
    except SolverUnknown as exc:
        return _unknown(name, "agreement", start, exc)
    return CheckResult(name, "agreement", Result.PROVED, time.perf_counter() - start,
                       f"{len(invs)} invariants agree on {len(reachable)} states and "
                       f"{len(transitions)} steps")


# --- rule consistency -----------------------------------------------------------------------


@dataclass(frozen=True)
class Tracked:
    """A named constraint of the consistency problem: a claim, a fact, or a table's answer."""

    name: str
    term: z3.BoolRef = field(compare=False)
    rules: tuple[str, ...]
    sources: tuple[str, ...]
    table: bool


class _ClaimSpace:
    """Z3 terms shared by the claims: each situation's result, the pins, the undefined symbols."""

    def __init__(self, situations: Sequence[claims.Situation]) -> None:
        self.pins = pin_vars("cons")
        self.result = {s.key: z3.Int(f"result[{s.key}]") for s in situations}
        names = {u.name for u in codes.UNDEFINED_SYMBOLS}
        self.defined = {n: z3.Bool(f"defined[{n}]") for n in names}
        self.value = {n: z3.Int(f"value[{n}]") for n in names}
        self.base = [pins_in_domain(self.pins)]
        self.base += [z3.And(v >= 0, v < U32) for v in (*self.result.values(), *self.value.values())]
        # A name is one code: a symbol no header defines would denote none of the defined codes
        # (each of which has its own name).
        defined_values = sorted({c.value for c in codes.ALL})
        self.base += [z3.And([v != d for d in defined_values]) for v in self.value.values()]

    def says(self, key: str, says: claims.Says) -> z3.BoolRef:
        result = self.result[key]
        if isinstance(says, claims.IsCode):
            return result == _code_named(says.name).value
        if isinstance(says, claims.IsSymbol):
            if says.name not in self.value:
                raise ModelError(f"claim names {says.name}, which callgate.model.codes does not list as an "
                                 "undefined symbol; use IsCode for defined codes")
            return z3.And(self.defined[says.name], result == self.value[says.name])
        low = SEVERITY if says.family is Family.HRESULT else 1
        return z3.And(result >= low, result < U32)


def _code_named(name: str) -> codes.Code:
    for code in codes.ALL:
        if name == code.name or name in code.aliases:
            return code
    raise ModelError(f"no code named {name!r} in model/codes.py")


def _claim_rules(rule_ids: Iterable[str]) -> tuple[str, ...]:
    return tuple(dict.fromkeys(rule_ids))


def _situation_table(space: _ClaimSpace, situation: claims.Situation,
                     machines: Mapping[str, Machine]) -> Tracked | None:
    """What the model's table allows as the situation's result (None outside the model)."""
    if not situation.machine:
        return None
    machine = machines[situation.machine]
    state = machine.make(**dict(situation.state))
    args = tuple((p.name, dict(situation.args)[p.name])
                 for p in machine.operation(situation.op).params)
    taken = step(machine, state, situation.op, args)
    if taken.kind is not Kind.DEFINED:
        raise ModelError(f"claims.py situation {situation.key}: {situation.op} is "
                         f"{taken.kind.value} in {machine.describe(state)}; point the situation "
                         "at a DEFINED row")
    dummy = SymState(machine, "cons.dummy")
    dummy_args = ArgTerms(machine, "cons.dummy")
    options = []
    for allowed in taken.allowed:
        pinned = [space.pins[p] == POINTS[p].choices.index(c) for p, c in allowed.when]
        options.append(z3.And(*pinned, code_terms(allowed.code, space.result[situation.key],
                                                   z3.Bool(f"cons.failure[{situation.key}]"),
                                                   dummy, dummy_args, situation.op)))
    row = machine.rows.index(taken.row)
    name = f"table:{machine.name}.{situation.op}#row{row}@{situation.key}"
    return Tracked(name, z3.Or(options), taken.row.cited_rules(), (f"model/tables ({machine.name})",), True)


def claim_constraints(claim_list: Sequence[claims.Claim] | None = None,
                      machines: Mapping[str, Machine] | None = None,
                      situations: Sequence[claims.Situation] | None = None,
                      facts: Sequence[claims.SymbolUndefined] | None = None,
                      ) -> tuple[_ClaimSpace, list[Tracked]]:
    """Every claim, fact and table answer of the situations, as named Z3 constraints."""
    from callgate.model.families import MACHINES  # the registry imports every table; only needed here

    machines = machines if machines is not None else MACHINES
    situations = situations if situations is not None else claims.SITUATIONS
    claim_list = claim_list if claim_list is not None else claims.CLAIMS
    facts = facts if facts is not None else claims.FACTS
    space = _ClaimSpace(situations)
    by_key = {s.key: s for s in situations}
    tracked: list[Tracked] = []
    for claim in claim_list:
        if claim.situation not in by_key:
            raise ModelError(f"claim {claim.id} names unknown situation {claim.situation!r}")
        tracked.append(Tracked(claim.id, space.says(claim.situation, claim.says),
                               _claim_rules(claim.rules), (claim.source,), False))
    for fact in facts:
        tracked.append(Tracked(fact.id, z3.Not(space.defined[fact.symbol]), (), (fact.source,),
                               False))
    used = {c.situation for c in claim_list}
    for situation in situations:
        if situation.key in used:
            table = _situation_table(space, situation, machines)
            if table is not None:
                tracked.append(table)
    return space, tracked


def _variables(term: z3.ExprRef) -> set[str]:
    found: set[str] = set()
    todo = [term]
    seen: set[int] = set()
    while todo:
        t = todo.pop()
        if t.get_id() in seen:
            continue
        seen.add(t.get_id())
        if z3.is_const(t) and t.decl().kind() == z3.Z3_OP_UNINTERPRETED:
            found.add(str(t))
        todo.extend(t.children())
    return found


def _components(items: Sequence[Tracked]) -> list[list[Tracked]]:
    """Groups of constraints that share no variable with other groups."""
    owner: dict[str, int] = {}
    root = list(range(len(items)))

    def find(i: int) -> int:
        while root[i] != i:
            root[i] = root[root[i]]
            i = root[i]
        return i

    for i, item in enumerate(items):
        for var in _variables(item.term):
            if var in owner:
                a, b = find(i), find(owner[var])
                root[a] = b
            else:
                owner[var] = i
    groups: dict[int, list[Tracked]] = {}
    for i, item in enumerate(items):
        groups.setdefault(find(i), []).append(item)
    return list(groups.values())


def minimal_conflicts(items: Sequence[Tracked], base: Sequence[z3.BoolRef],
                      timeout_ms: int = DEFAULT_TIMEOUT_MS) -> list[tuple[Tracked, ...]]:
    """Every minimal set of constraints that cannot hold together (MARCO, per component)."""
    found: list[tuple[Tracked, ...]] = []
    for group in _components(items):
        found += _marco(group, base, timeout_ms)
    return found


def _marco(group: Sequence[Tracked], base: Sequence[z3.BoolRef], timeout_ms: int
           ) -> list[tuple[Tracked, ...]]:
    check = _solver(timeout_ms)
    check.add(*base)
    use = {t.name: z3.Bool(f"use:{t.name}") for t in group}
    by_flag = {str(flag): name for name, flag in use.items()}
    for t in group:
        check.add(z3.Implies(use[t.name], t.term))
    by_name = {t.name: t for t in group}

    def sat(names: Iterable[str]) -> bool:
        answer = check.check(*[use[n] for n in names])
        if answer == z3.unknown:
            raise SolverUnknown(check.reason_unknown())
        return bool(answer == z3.sat)

    if sat(by_name):
        return []
    seeds = z3.Solver()
    select = {n: z3.Bool(f"select:{n}") for n in by_name}
    muses: list[tuple[Tracked, ...]] = []
    while seeds.check() == z3.sat:
        model = seeds.model()
        seed = [n for n in by_name if not z3.is_false(model.eval(select[n]))]
        if sat(seed):
            grown = set(seed)
            for n in by_name:
                if n not in grown and sat(grown | {n}):
                    grown.add(n)
            seeds.add(z3.Or([select[n] for n in by_name if n not in grown]))
            continue
        core = [by_flag[str(c)] for c in check.unsat_core()]
        for n in list(core):
            trial = [x for x in core if x != n]
            if not sat(trial):
                core = [by_flag[str(c)] for c in check.unsat_core()] if check.unsat_core() \
                    else trial
        muses.append(tuple(by_name[n] for n in sorted(core)))
        seeds.add(z3.Not(z3.And([select[n] for n in core])))
    return muses


def _explain(mus: Sequence[Tracked], known: Sequence[claims.KnownConflict],
             symbol_claims: set[str]) -> claims.KnownConflict | None:
    """The known conflict that explains a minimal conflict, if any.

    Its documented members (claims, facts) must all belong to the known conflict, and either
    there are two or more of them (the documents disagree; table rows at most carry the
    disagreement between situations through a shared variation point), or the one claim names
    an undefined symbol (the tables necessarily read it as a real code).
    """
    documented = {t.name for t in mus if not t.table}
    if not documented or (len(documented) < 2 and not documented <= symbol_claims):
        return None
    return next((k for k in known if documented <= k.members), None)


def _conflict(mus: Sequence[Tracked], known: claims.KnownConflict | None) -> Conflict:
    return Conflict(tuple(t.name for t in mus),
                    tuple(dict.fromkeys(r for t in mus for r in t.rules)),
                    tuple(dict.fromkeys(s for t in mus for s in t.sources)),
                    known.id if known else "", known is not None,
                    f"{known.note} ({known.found_by})" if known else "")


def check_consistency(claim_list: Sequence[claims.Claim] | None = None,
                      machines: Mapping[str, Machine] | None = None,
                      known: Sequence[claims.KnownConflict] | None = None,
                      timeout_ms: int = DEFAULT_TIMEOUT_MS) -> list[CheckResult]:
    """Every minimal set of documented claims (with the tables' answers in their situations)
    that cannot all hold, each matched to a known discrepancy; and whether each known
    discrepancy still shows up."""
    start = time.perf_counter()
    known = known if known is not None else claims.KNOWN_CONFLICTS
    claim_list = claim_list if claim_list is not None else claims.CLAIMS
    symbol_claims = {c.id for c in claim_list if isinstance(c.says, claims.IsSymbol)}
    try:
        space, tracked = claim_constraints(claim_list, machines)
        muses = minimal_conflicts(tracked, space.base, timeout_ms)
    except SolverUnknown as exc:
        return [_unknown("consistency.claims", "consistency", start, exc)]
    elapsed = (time.perf_counter() - start) / max(1, len(muses) + 1)
    results: list[CheckResult] = []
    counters: dict[str, int] = {}
    seen: set[str] = set()
    for mus in sorted(muses, key=lambda m: tuple(t.name for t in m)):
        explained = _explain(mus, known, symbol_claims)
        label = explained.id if explained else "unexpected"
        counters[label] = counters.get(label, 0) + 1
        conflict = _conflict(mus, explained)
        if explained:
            seen.add(explained.id)
            detail = f"{explained.id}: " + " + ".join(conflict.members)
        else:
            detail = ("NEW: " + " + ".join(conflict.members) + " cannot all hold; explain it in "
                      "model/claims.py KNOWN_CONFLICTS, or fix the claims or the tables")
        results.append(CheckResult(f"consistency.{label}#{counters[label]}", "consistency",
                                   Result.CONFLICT, elapsed, detail, conflict.rules,
                                   conflict=conflict))
    missing = [k.id for k in known if k.id not in seen]
    if missing:
        results.append(CheckResult("consistency.known_conflicts_found", "consistency",
                                   Result.COUNTEREXAMPLE, elapsed,
                                   f"known conflicts {', '.join(missing)} no longer show up: the "
                                   "claims that encode them changed"))
    else:
        results.append(CheckResult("consistency.known_conflicts_found", "consistency",
                                   Result.PROVED, elapsed,
                                   f"all {len(known)} known conflicts show up "
                                   f"({', '.join(k.id for k in known)})"))
    return results


def _may(rule_ids: Iterable[str]) -> bool:
    from callgate.model.rules import Level, catalogue

    rules = catalogue()
    return any(Level.MAY in rules[r].split_levels or Level.UNDEFINED in rules[r].split_levels
               for r in rule_ids if r in rules)


def _must(rule_ids: Iterable[str]) -> bool:
    from callgate.model.rules import Level, catalogue

    rules = catalogue()
    return any(Level.MUST in rules[r].split_levels for r in rule_ids if r in rules)


def check_tables_consistent(machines: Mapping[str, Machine] | None = None,
                            claim_list: Sequence[claims.Claim] | None = None,
                            known: Sequence[claims.KnownConflict] | None = None,
                            timeout_ms: int = DEFAULT_TIMEOUT_MS) -> CheckResult:
    """One implementation can satisfy every table row that cites a MUST rule and every
    documented claim not involved in a known conflict: one global choice of the variation
    points gives every such row an outcome and agrees with every such claim."""
    from callgate.model.families import MACHINES

    start = time.perf_counter()
    name = "consistency.tables"
    machines = machines if machines is not None else MACHINES
    known = known if known is not None else claims.KNOWN_CONFLICTS
    disputed = set().union(*(k.members for k in known)) if known else set()
    claim_list = [c for c in (claim_list if claim_list is not None else claims.CLAIMS)
                  if c.id not in disputed and _must(c.rules)]
    try:
        space, tracked = claim_constraints(claim_list, machines)
        tracked = [t for t in tracked if t.name not in disputed]
        rows = 0
        for machine in machines.values():
            for r, row in enumerate(machine.rows):
                if row.kind is Kind.DEFINED and _must(row.cited_rules()):
                    rows += 1
                    tracked.append(Tracked(
                        f"{machine.name}.{row.op}#row{r}",
                        z3.Or([admitted(o, space.pins) for o in row.outcomes]),
                        row.cited_rules(), (f"model/tables ({machine.name})",), True))
        solver = _solver(timeout_ms, cores=True)
        solver.add(*space.base)
        flags = {}
        for t in tracked:
            flag = z3.Bool(f"track:{t.name}")
            flags[str(flag)] = t
            solver.assert_and_track(t.term, flag)
        if _check(solver):
            return CheckResult(name, "consistency", Result.PROVED, time.perf_counter() - start,
                               f"{rows} rows citing MUST rules and {len(claim_list)} undisputed "
                               "MUST claims hold together under one pinning")
        core = [flags[str(c)] for c in solver.unsat_core()]
    except SolverUnknown as exc:
        return _unknown(name, "consistency", start, exc)
    conflict = _conflict(core, None)
    return CheckResult(name, "consistency", Result.CONFLICT, time.perf_counter() - start,
                       "these table rows and claims cannot all hold: " + ", ".join(conflict.members),
                       conflict.rules, conflict=conflict)


def summarize(results: Iterable[CheckResult]) -> dict[str, int]:
    """Counts of results by value."""
    counts = {r.value: 0 for r in Result}
    for r in results:
        counts[r.result.value] += 1
    return counts


# re-exported for tests and the CLI
__all__ = [
    "CheckResult", "Conflict", "Counterexample", "Result", "SolverUnknown", "TraceStep", "Tracked",
    "check_agreement", "check_bmc", "check_consistency", "check_determinism",
    "check_relation_agreement", "check_tables_consistent", "check_totality", "check_well_formed",
    "claim_constraints", "find_trace", "minimal_conflicts", "prove_invariants", "summarize",
]

