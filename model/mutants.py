"""`callgate model mutants`: seeded errors in the tables, and which semantic check catches each.

A mutant is one error applied to one row of one machine, built in memory as a new `Machine`
(the table files are never edited). The operators, each applied over the rows of all four
machines in table order (the choice is deterministic: candidates spread evenly over the table):

* `drop_outcome`: one outcome of a row with several is removed;
* `add_outcome`: a row gains a wrong outcome (a success where every outcome fails, a failure
  code no outcome admits, or the other value of a plain return value), changing nothing;
* `wrong_next`: one field of one outcome's update is set to another value of its domain;
* `wrong_code`: an Exact code is replaced by another code of its family that the table uses;
* `remove_row`: a row is removed (a gap);
* `widen_guard`, `narrow_guard`: one field value is added to or removed from a row's guard;
* `forget_update`: one key of an outcome's update is dropped;
* `pin_changed`, `pin_removed`: the variation-point choice (`when`) of an outcome is changed to
  another choice of the same point, or removed (the outcome is then allowed under every pin);
* `not_offered`: a DEFINED row is made NOT_OFFERED (the harness never drives it, nothing is
  asserted there).

`AUDIT` names further mutants, one per class of error the table audit listed (issue 15), built
by the same operators on the rows concerned.

Each mutant runs the semantic checks of its machine, in this order: the table checks
(totality, determinism, well-formedness), the Z3 invariants, rule consistency (pinned codes for
every machine; claims and the joint consistency of the tables where the machine has claims),
deadlock freedom of its state graph, liveness under fairness, and the rule obligations. The
first check that fails (a counterexample, a violation, an unexpected conflict, or an error that
says the table is broken) kills the mutant. A solver answer of `unknown` kills nothing. A check
that raises anything but `ModelError` is a crash: a bug in the check, reported as such. The
machine's state counts beside `pinned_counts.json` are reported per mutant and never kill.
"""

from __future__ import annotations

import dataclasses
import multiprocessing
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import dataclass
from functools import partial
from typing import TYPE_CHECKING

from callgate.model import codes
from callgate.model.codes import Code, Family
from callgate.model.families import MACHINES
from callgate.model.transitions import (
    AnyFailure,
    AnySuccess,
    Anything,
    CodeOf,
    CodeSpec,
    Const,
    Exact,
    Kind,
    Machine,
    ModelError,
    Outcome,
    Returns,
    Row,
    Value,
)
from callgate.model.variations import BY_NAME

if TYPE_CHECKING:
    from callgate.model.explorer import StateGraph

OPERATORS: tuple[str, ...] = ("drop_outcome", "add_outcome", "wrong_next", "wrong_code",
                              "remove_row", "widen_guard", "narrow_guard", "forget_update",
                              "pin_changed", "pin_removed", "not_offered")
# How many mutants each operator takes from each machine (spread evenly over its candidates).
PER_MACHINE: dict[str, int] = {"com_call": 3, "rpc_call": 3, "event": 1, "container": 1}


@dataclass(frozen=True)
class Mutant:
    """One seeded error: which row of which machine, what changes, and how to build it."""

    name: str
    machine: str
    operator: str
    row: int
    description: str
    edit: Callable[[Row], Row | None]  # the row's replacement; None removes it

    def build(self, machines: Mapping[str, Machine] = MACHINES) -> Machine:
        """The mutated machine (a fresh `Machine`; the original is untouched)."""
        original = machines[self.machine]
        rows: list[Row] = []
        for i, r in enumerate(original.rows):
            new = self.edit(r) if i == self.row else r
            if new is not None:
                rows.append(new)
        return dataclasses.replace(original, rows=tuple(rows))


# --- the operators: each yields (row, detail, description, edit) candidates in table order -----

Candidate = tuple[int, str, str, Callable[[Row], Row | None]]


def _with_outcomes(r: Row, outcomes: Iterable[Outcome]) -> Row:
    return dataclasses.replace(r, outcomes=tuple(outcomes))


def _replace_outcome(r: Row, index: int, new: Outcome) -> Row:
    return _with_outcomes(r, (new if i == index else o for i, o in enumerate(r.outcomes)))


def _values(vs: frozenset[Value]) -> str:
    if len(vs) > 6:
        return f"({len(vs)} values)"
    return "|".join(sorted(map(str, vs)))


def _where(machine: Machine, i: int, r: Row) -> str:
    guard = " ".join(f"{n}={_values(vs)}" for n, vs in r.guard)
    args = " ".join(f"{n}={_values(vs)}" for n, vs in r.args)
    inner = ", ".join(x for x in (guard, args) if x)
    return f"{machine.name} row {i} {r.op}" + (f" [{inner}]" if inner else "")


def _family(machine: Machine, spec: CodeSpec) -> Family:
    if isinstance(spec, Exact):
        return spec.code.family
    if isinstance(spec, (AnyFailure, AnySuccess)):
        return spec.family
    return machine.codes or Family.HRESULT


def _success(family: Family) -> Code:
    return codes.S_OK if family is Family.HRESULT else codes.RPC_S_OK


def _wrong_failure(family: Family) -> Code:
    return codes.E_FAIL if family is Family.HRESULT else codes.RPC_S_INTERNAL_ERROR


def _drop(k: int, r: Row) -> Row:
    return _with_outcomes(r, (x for j, x in enumerate(r.outcomes) if j != k))


def _add(extra: Outcome, r: Row) -> Row:
    return _with_outcomes(r, (*r.outcomes, extra))


def _recode(k: int, new: Code, r: Row) -> Row:
    return _replace_outcome(r, k, dataclasses.replace(r.outcomes[k], code=Exact(new)))


def _unpin(k: int, r: Row) -> Row:
    return _replace_outcome(r, k, dataclasses.replace(r.outcomes[k], when=()))


def drop_outcome(machine: Machine) -> Iterator[Candidate]:
    for i, r in enumerate(machine.rows):
        if len(r.outcomes) < 2:
            continue
        for k, o in enumerate(r.outcomes):
            yield (i, f"{k}", f"{_where(machine, i, r)}: outcome {o.code} [{o.label}] removed",
                   partial(_drop, k))


def _added(machine: Machine, r: Row) -> Outcome | None:
    specs = [o.code for o in r.outcomes]
    if any(isinstance(s, (Anything, CodeOf)) for s in specs):
        return None
    if all(isinstance(s, Returns) for s in specs):
        values = {s.value for s in specs if isinstance(s, Returns)}
        other = next((v for v in (0, 1) if v not in values), None)
        return None if other is None else Outcome(Returns(other, "mutant"), "mutant: wrong value")
    family = _family(machine, specs[0])
    success = _success(family)
    if not any(s.admits(success.value) for s in specs if not isinstance(s, Returns)):
        return Outcome(Exact(success), "mutant: a success where the call must fail")
    wrong = _wrong_failure(family)
    if any(s.admits(wrong.value) for s in specs if not isinstance(s, Returns)):
        return None
    return Outcome(Exact(wrong), "mutant: a plausible wrong failure code")


def add_outcome(machine: Machine) -> Iterator[Candidate]:
    for i, r in enumerate(machine.rows):
        if r.kind is not Kind.DEFINED:
            continue
        extra = _added(machine, r)
        if extra is None:
            continue
        yield (i, "0", f"{_where(machine, i, r)}: also allows {extra.code}, state unchanged",
               partial(_add, extra))


def _domain(machine: Machine, name: str) -> tuple[Value, ...]:
    return machine.fields[machine.index(name)].domain


def _next_value(domain: Sequence[Value], value: Value) -> Value:
    return domain[(list(domain).index(value) + 1) % len(domain)]


def wrong_next(machine: Machine) -> Iterator[Candidate]:
    for i, r in enumerate(machine.rows):
        for k, o in enumerate(r.outcomes):
            for name, expr in o.updates:
                if not isinstance(expr, Const):
                    continue
                for value in _domain(machine, name):
                    if value == expr.value:
                        continue

                    def edit(r: Row, k: int = k, name: str = name, value: Value = value) -> Row:
                        o = r.outcomes[k]
                        return _replace_outcome(r, k, dataclasses.replace(o, updates=tuple(
                            (n, Const(value) if n == name else e) for n, e in o.updates)))
                    yield (i, f"{k}.{name}.{value}", f"{_where(machine, i, r)}: outcome "
                           f"[{o.label}] sets {name}={value!r} instead of {expr.value!r}", edit)


def _table_codes(machine: Machine, family: Family) -> list[Code]:
    found = {o.code.code for r in machine.rows for o in r.outcomes
             if isinstance(o.code, Exact) and o.code.code.family is family}
    return sorted(found, key=lambda c: c.value)


def wrong_code(machine: Machine) -> Iterator[Candidate]:
    for i, r in enumerate(machine.rows):
        for k, o in enumerate(r.outcomes):
            if not isinstance(o.code, Exact):
                continue
            used = _table_codes(machine, o.code.code.family)
            for new in used:
                if new.value == o.code.code.value:
                    continue
                yield (i, f"{k}.{new.name}", f"{_where(machine, i, r)}: outcome [{o.label}] "
                       f"returns {new.name} instead of {o.code.code.name}",
                       partial(_recode, k, new))


def remove_row(machine: Machine) -> Iterator[Candidate]:
    for i, r in enumerate(machine.rows):
        yield i, "", f"{_where(machine, i, r)} ({r.kind.value}) removed: a gap", lambda r: None


def _reguard(name: str, values: frozenset[Value], r: Row) -> Row:
    return dataclasses.replace(r, guard=tuple((n, values if n == name else vs)
                                              for n, vs in r.guard))


def widen_guard(machine: Machine) -> Iterator[Candidate]:
    for i, r in enumerate(machine.rows):
        for name, values in r.guard:
            missing = [v for v in _domain(machine, name) if v not in values]
            if not missing:
                continue
            v = missing[0]
            yield (i, f"{name}.{v}", f"{_where(machine, i, r)}: guard also admits {name}={v!r}",
                   partial(_reguard, name, values | {v}))


def narrow_guard(machine: Machine) -> Iterator[Candidate]:
    for i, r in enumerate(machine.rows):
        for name, values in r.guard:
            if len(values) < 2:
                continue
            v = next(x for x in _domain(machine, name) if x in values)
            yield (i, f"{name}.{v}", f"{_where(machine, i, r)}: guard no longer admits {name}={v!r}",
                   partial(_reguard, name, values - {v}))


def forget_update(machine: Machine) -> Iterator[Candidate]:
    for i, r in enumerate(machine.rows):
        for k, o in enumerate(r.outcomes):
            for name, expr in o.updates:
                def edit(r: Row, k: int = k, name: str = name) -> Row:
                    o = r.outcomes[k]
                    return _replace_outcome(r, k, dataclasses.replace(
                        o, updates=tuple((n, e) for n, e in o.updates if n != name)))
                yield (i, f"{k}.{name}", f"{_where(machine, i, r)}: outcome [{o.label}] forgets "
                       f"the update {name} := {expr}", edit)


def pin_changed(machine: Machine) -> Iterator[Candidate]:
    for i, r in enumerate(machine.rows):
        for k, o in enumerate(r.outcomes):
            for point, choice in o.when:
                new = str(_next_value(BY_NAME[point].choices, choice))

                def edit(r: Row, k: int = k, point: str = point, new: str = new) -> Row:
                    o = r.outcomes[k]
                    return _replace_outcome(r, k, dataclasses.replace(o, when=tuple(
                        (p, new if p == point else c) for p, c in o.when)))
                yield (i, f"{k}.{point}", f"{_where(machine, i, r)}: outcome {o.code} "
                       f"[{o.label}] allowed under {point}={new} instead of {choice}", edit)


def pin_removed(machine: Machine) -> Iterator[Candidate]:
    for i, r in enumerate(machine.rows):
        for k, o in enumerate(r.outcomes):
            if not o.when:
                continue
            pins = ", ".join(f"{p}={c}" for p, c in o.when)
            yield (i, f"{k}", f"{_where(machine, i, r)}: outcome {o.code} [{o.label}] allowed "
                   f"under every pin, not only {pins}",
                   partial(_unpin, k))


def not_offered(machine: Machine) -> Iterator[Candidate]:
    for i, r in enumerate(machine.rows):
        if r.kind is Kind.DEFINED:
            yield (i, "", f"{_where(machine, i, r)}: DEFINED made NOT_OFFERED (never driven, "
                   "nothing asserted)",
                   lambda r: dataclasses.replace(r, kind=Kind.NOT_OFFERED, outcomes=()))


OPERATOR_FUNCTIONS: dict[str, Callable[[Machine], Iterator[Candidate]]] = {
    "drop_outcome": drop_outcome, "add_outcome": add_outcome, "wrong_next": wrong_next,
    "wrong_code": wrong_code, "remove_row": remove_row, "widen_guard": widen_guard,
    "narrow_guard": narrow_guard, "forget_update": forget_update, "pin_changed": pin_changed,
    "pin_removed": pin_removed, "not_offered": not_offered,
}

# One mutant per class of table error the audit listed (issue 15): operator, machine, the row
# (found by its operation and state guard, and arguments it must admit, so that the entry stays
# right when rows are added), detail (as in the mutant's name), and the class it stands for.
def _name(machine: str, operator: str, row: int, detail: str) -> str:
    return f"{machine}.{operator}.row{row}" + (f".{detail}" if detail else "")


RowRef = tuple[str, tuple[tuple[str, tuple[Value, ...]], ...], tuple[tuple[str, Value], ...]]


def _ref(op: str, args: Mapping[str, Value] | None = None, **guard: tuple[Value, ...]) -> RowRef:
    return op, tuple(sorted(guard.items())), tuple(sorted((args or {}).items()))


AUDIT: tuple[tuple[str, str, RowRef, str, str], ...] = (
    ("forget_update", "rpc_call", _ref("RpcAsyncCancelCall", {"abort": False}, phase=("PENDING",)),
     "0.cancel", "a soft RPC cancel accepted but forgotten, so the server never sees it"),
    ("add_outcome", "rpc_call",
     _ref("wait_notification", notes=(0,), notify=("Event",), phase=("INIT", "PENDING", "RAW")),
     "0", "a completion notification before the call completed"),
    ("drop_outcome", "rpc_call",
     _ref("RpcAsyncCompleteCall", may_cancel=(True,), phase=("SENT",), result=("ok",)), "2",
     "RPC_S_CALL_CANCELLED removed after a cancel that may take effect"),
    ("wrong_code", "rpc_call", _ref("RpcAsyncCompleteCall", phase=("PENDING",)), "0.RPC_S_OK",
     "RPC_S_ASYNC_CALL_PENDING removed for a CompleteCall while the server holds the call"),
    ("wrong_next", "com_call", _ref("Release", phase=("SIGNALED",)), "0.phase.SIGNALED",
     "a released call object still answering Wait with S_OK"),
    ("drop_outcome", "com_call", _ref("Finish_", cancel=(True,), phase=("SIGNALED",)), "0",
     "Finish_ of a cancelled call returning S_OK only (under cancelled_code=RPC_E_CALL_CANCELED)"),
    ("wrong_code", "com_call", _ref("Wait", {"timeout": "zero"}, phase=("PENDING",)),
     "0.RPC_E_TIMEOUT", "a wrong exact code under a pinned variation point (D-01: Wait's timeout)"),
    ("wrong_code", "com_call", _ref("Begin_", cancel=(False,), phase=("PENDING", "SIGNALED")),
     "1.E_NOINTERFACE",
     "a wrong exact code under a pinned variation point (D-02: Begin_ while in flight)"),
    ("wrong_code", "com_call", _ref("Cancel", cancel=(True,), phase=("PENDING",)),
     "1.RPC_E_CALL_CANCELED",
     "a wrong exact code under a pinned variation point (D-03: Cancel of a cancelled call)"),
    ("wrong_next", "com_call",
     _ref("server_signal", {"then_impersonate": False}, cancel=(False,), phase=("PENDING",)),
     "0.phase.PENDING",
     "a begun call that can never be finished (the server's Signal leaves it pending)"),
    ("narrow_guard", "rpc_call",
     _ref("server_complete", cancel=("abort", "soft"), phase=("PENDING",), server=("held",)),
     "cancel.soft",
     "a soft-cancelled RPC call the server can never answer (no row lets it complete)"),
    ("not_offered", "rpc_call",
     _ref("server_complete", cancel=("abort", "soft"), phase=("PENDING",), server=("held",)), "",
     "a cancelled RPC call the server can never complete (the row says the harness cannot)"),
    ("remove_row", "rpc_call",
     _ref("server_complete", cancel=("no",), phase=("PENDING",), server=("held",)), "",
     "a missing row (server_complete of an uncancelled call)"),
)


def row_index(machine: Machine, ref: RowRef) -> int:
    """The index of the first DEFINED row of `machine` for the operation whose state guard is
    exactly `ref`'s and whose arguments admit `ref`'s; ModelError when none does."""
    op, guard, args = ref
    wanted = {name: frozenset(values) for name, values in guard}
    for index, r in enumerate(machine.rows):
        if r.op != op or r.kind is not Kind.DEFINED:
            continue
        have = {name: frozenset(values) for name, values in r.guard}
        row_args = dict(r.args)
        if have == wanted and all(value in row_args.get(name, frozenset([value]))
                                  for name, value in args):
            return index
    raise ModelError(f"{machine.name}: no DEFINED {op} row with guard {dict(guard)} admitting "
                     f"{dict(args)}")


# Mutants that no check can kill because they change nothing observable, each with the argument.
EQUIVALENT: dict[str, str] = {
    _name("rpc_call", "forget_update", row_index(MACHINES["rpc_call"], _ref(
        "server_complete", cancel=("no",), phase=("PENDING",), server=("held",))), "0.seen"):
        "server_complete of an uncancelled call (guard cancel=no) resets seen to False; seen "
        "becomes True only through server_test_cancel when cancel is soft or abort, and "
        "AsyncCall sets cancel=no and seen=False together, so seen is already False in every "
        "reachable state the row admits: forgetting the update changes no reachable step",
    _name("com_call", "pin_removed", row_index(MACHINES["com_call"], _ref(
        "QueryInterface", {"iid": "ICallFactory"}, factory=(True,))), "0"):
        "the row's two outcomes are S_OK with the same next state, one under each "
        "call_object_origin choice; allowing the first under every choice adds only what the "
        "second already allows under same_apartment",
    _name("rpc_call", "pin_removed", row_index(MACHINES["rpc_call"], _ref(
        "RpcAsyncCompleteCall", phase=("READY",), result=("aborted",), may_cancel=(False,))),
        "0"):
        "the exact abort code (abort codes are non-zero, so RPC failures) is already among the "
        "'any RPC failure' outcome allowed under abort_code_delivery=any_failure: allowing it "
        "under every choice changes nothing",
    _name("rpc_call", "wrong_next", row_index(MACHINES["rpc_call"], _ref(
        "RpcAsyncInitializeHandle", {"size": "exact"}, phase=("DONE", "INIT", "RAW"))),
        "0.notes.1"):
        "notes counts the current call's notifications; in INIT every wait_notification row "
        "answers 'no notification' whatever notes is, and AsyncCall sets notes := 0, so the "
        "value RpcAsyncInitializeHandle leaves in notes is never observed",
    _name("rpc_call", "forget_update", row_index(MACHINES["rpc_call"], _ref(
        "RpcAsyncInitializeHandle", {"size": "exact"}, phase=("DONE", "INIT", "RAW"))),
        "0.notes"):
        "the same argument: notes in INIT is never observed before AsyncCall resets it",
    # Section 2.17: rows for states no run reaches (the tables cover every field combination).
    **{_name("rpc_order", operator, row_index(MACHINES["rpc_order"], _ref(
        "sync_call", noncausal=(False,), c0=("issued",), c1=("running",))), detail):
        "on a causal binding call 1 is never running while call 0 waits (invariant "
        "rpc.order_causal_prefix): the row's state is unreachable"
        for operator, detail in (("add_outcome", "0"), ("not_offered", ""))},
    **{_name("rpc_order", operator, row_index(MACHINES["rpc_order"], _ref(
        "server_next_dispatch", noncausal=(True,), c0=("none",), c1=("issued",))), detail):
        "call 1 is never issued before call 0 (invariant rpc.order_issued_in_order): the row's "
        "state is unreachable"
        for operator, detail in (("wrong_next", "0.c1.issued"), ("forget_update", "0.c1"))},
    # Section 2.19: after a failed push the phase `failed` and the phase `none` offer the same
    # steps with the same results (only start_call, which succeeds from both).
    _name("rpc_pipe", "wrong_next", row_index(MACHINES["rpc_pipe"], _ref(
        "push", phase=("in_closed", "out_ended"))), "3.phase.none"):
        "a call that failed and a slot with no call offer the same operations with the same "
        "results (start_call alone, RPC_S_OK): the two phases differ only in the rows' "
        "citations",
}


def _spread(items: Sequence[Candidate], k: int) -> list[Candidate]:
    if len(items) <= k:
        return list(items)
    if k == 1:
        return [items[len(items) // 2]]
    return [items[round(i * (len(items) - 1) / (k - 1))] for i in range(k)]


def catalogue(machines: Mapping[str, Machine] = MACHINES) -> dict[str, Mutant]:
    """Every mutant by name, in a stable order: the spread of each operator over each machine,
    then the audit's classes, then the listed equivalents (each name once)."""
    found: dict[str, Mutant] = {}
    every: dict[str, Mutant] = {}
    for machine_name, machine in machines.items():
        for operator, generate in OPERATOR_FUNCTIONS.items():
            candidates = list(generate(machine))
            for row, detail, description, edit in candidates:
                name = _name(machine_name, operator, row, detail)
                every[name] = Mutant(name, machine_name, operator, row, description, edit)
            for row, detail, _, _ in _spread(candidates, PER_MACHINE.get(machine_name, 1)):
                name = _name(machine_name, operator, row, detail)
                found[name] = every[name]
    for operator, machine_name, ref, detail, why in AUDIT:
        name = _name(machine_name, operator, row_index(machines[machine_name], ref), detail)
        base = every[name]
        found[name] = dataclasses.replace(base, description=f"{base.description} (audit: {why})")
    for name in EQUIVALENT:
        found.setdefault(name, every[name])
    return found


# --- running the checks on one mutant --------------------------------------------------------


@dataclass(frozen=True)
class MutantResult:
    """What the checks made of one mutant."""

    name: str
    machine: str
    operator: str
    description: str
    status: str  # killed, equivalent, survived, crashed
    killed_by: str = ""  # the check (as `callgate model check` names it), or where it crashed
    finding: str = ""  # the result in it that failed (an invariant, an obligation, ...)
    detail: str = ""
    checks_run: tuple[str, ...] = ()
    pinned_counts_changed: tuple[str, ...] | None = None  # None: no graph (a gap or an overlap)
    seconds: float = 0.0
    reason: str = ""  # why an equivalent mutant is one

    def to_json(self) -> dict[str, object]:
        data: dict[str, object] = {
            "name": self.name, "machine": self.machine, "operator": self.operator,
            "description": self.description, "status": self.status,
            "killed_by": self.killed_by or None, "finding": self.finding or None,
            "detail": self.detail,
            "checks_run": list(self.checks_run),
            "pinned_counts_changed": (None if self.pinned_counts_changed is None
                                      else list(self.pinned_counts_changed)),
            "seconds": round(self.seconds, 3)}
        if self.reason:
            data["reason"] = self.reason
        return data


def _first_line(text: str) -> str:
    return text.strip().splitlines()[0] if text.strip() else ""


def _has_claims(machine: str) -> bool:
    from callgate.model import claims

    return any(s.machine == machine for s in claims.SITUATIONS)


def checks_for(machine: Machine, machines: Mapping[str, Machine],
               graph: Callable[[], StateGraph]
               ) -> list[tuple[str, Callable[[], Sequence[object]]]]:
    """The semantic checks of one (mutated) machine, in the order they are run: (label, body),
    each body returning `CheckResult`s. `machines` is the whole registry with this machine in
    its place (for the checks that read several tables); `graph` gives its state graph."""
    from callgate.model import liveness, proofs, verify
    from callgate.model.obligations import check_machine

    name = machine.name
    steps: list[tuple[str, Callable[[], Sequence[object]]]] = [
        (f"totality[{name}]", lambda: [proofs.check_totality(machine)]),
        (f"determinism[{name}]", lambda: [proofs.check_determinism(machine)]),
        (f"well_formed[{name}]", lambda: [proofs.check_well_formed(machine)]),
        (f"invariants[{name}]", lambda: proofs.prove_invariants(machine)),
        ("consistency.pinned_codes", lambda: [proofs.check_pinned_codes(machines)]),
    ]
    if _has_claims(name):
        steps += [("consistency.claims", lambda: proofs.check_consistency(machines=machines)),
                  ("consistency.tables", lambda: [proofs.check_tables_consistent(machines)])]
    steps += [
        (f"deadlock_free[{name}]", lambda: [verify.deadlock_free(graph())]),
        (f"liveness[{name}]", lambda: liveness.check_liveness(machine, graph())),
        (f"obligations[{name}]", lambda: check_machine(machine, known={})),
    ]
    return steps


def _pinned_changes(machine: Machine, graphs: Callable[[], StateGraph]
                    ) -> tuple[str, ...] | None:
    from callgate.model import verify

    try:
        graph = graphs()
    except ModelError:
        return None
    found = {"states": graph.states, "edges": graph.edge_count,
             "transitions": len(graph.transitions)}
    pinned = verify.pinned_counts().get("machines", {}).get(machine.name, {})
    return tuple(f"{key}: pinned {pinned.get(key)}, found {value}"
                 for key, value in found.items() if pinned.get(key) != value)


def run_mutant(name: str, all_checks: bool = False) -> MutantResult:
    """Build the mutant `name` and run its machine's checks until one kills it (or all of them,
    with `all_checks`, to show that none crashes)."""
    from callgate.model.proofs import CheckResult, Result

    start = time.perf_counter()
    mutant = catalogue()[name]
    try:
        machine = mutant.build()
    except ModelError as exc:  # the operator built a table Machine refuses: a kill at build
        return MutantResult(name, mutant.machine, mutant.operator, mutant.description, "killed",
                            "machine", "Machine", _first_line(str(exc)), ("machine",), None,
                            time.perf_counter() - start)
    machines = {**MACHINES, machine.name: machine}
    built: list[StateGraph] = []

    def graph() -> StateGraph:
        from callgate.model import explorer

        if not built:
            built.append(explorer.build_graph(machine))
        return built[0]
    ran: list[str] = []
    killed_by = finding = detail = ""
    for label, body in checks_for(machine, machines, graph):
        ran.append(label)
        try:
            results = [r for r in body() if isinstance(r, CheckResult)]
        except ModelError as exc:
            results = [CheckResult(label, "mutant", Result.ERROR, 0.0, f"could not run: {exc}")]
        except Exception as exc:  # a check that crashes on a bad table: a bug in the check
            return MutantResult(name, mutant.machine, mutant.operator, mutant.description,
                                "crashed", label, "", f"{type(exc).__name__}: {exc}", tuple(ran),
                                _pinned_changes(machine, graph), time.perf_counter() - start)
        hit = next((r for r in results if r.failed and r.result is not Result.UNKNOWN), None)
        if hit is not None and not killed_by:
            killed_by, finding, detail = label, hit.name, _first_line(hit.detail)
            if not all_checks:
                break
    status = "killed" if killed_by else ("equivalent" if name in EQUIVALENT else "survived")
    return MutantResult(name, mutant.machine, mutant.operator, mutant.description, status,
                        killed_by, finding, detail, tuple(ran), _pinned_changes(machine, graph),
                        time.perf_counter() - start, EQUIVALENT.get(name, "") if
                        status == "equivalent" else "")


@dataclass(frozen=True)
class Report:
    """Everything `callgate model mutants` prints."""

    results: tuple[MutantResult, ...]
    seconds: float
    command: str = ""

    def of(self, status: str) -> list[MutantResult]:
        return [r for r in self.results if r.status == status]

    @property
    def ok(self) -> bool:
        return not self.of("survived") and not self.of("crashed")

    def to_json(self) -> dict[str, object]:
        killed = self.of("killed")
        return {
            "ok": self.ok, "total": len(self.results), "killed": len(killed),
            "killed_by": {r.name: f"{r.killed_by}: {r.finding}" for r in killed},
            "equivalent": [{"name": r.name, "reason": r.reason} for r in self.of("equivalent")],
            "survivors": [r.name for r in self.of("survived")],
            "crashed": [{"name": r.name, "check": r.killed_by, "detail": r.detail}
                        for r in self.of("crashed")],
            "operators": {op: sum(1 for r in self.results if r.operator == op)
                          for op in OPERATORS},
            "machines": {m: sum(1 for r in self.results if r.machine == m) for m in MACHINES},
            "mutants": [r.to_json() for r in self.results],
            "seconds": round(self.seconds, 2), "command": self.command}


def _run_pair(args: tuple[str, bool]) -> MutantResult:
    return run_mutant(*args)


def run(names: Sequence[str] | None = None, workers: int = 2, all_checks: bool = False,
        progress: Callable[[MutantResult, int, int], None] | None = None,
        command: str = "") -> Report:
    """Run the mutants `names` (default: all), `workers` at a time in spawned processes (1: in
    this process). An unknown name is a ValueError."""
    start = time.perf_counter()
    known = catalogue()
    chosen = list(known) if names is None else list(dict.fromkeys(names))
    unknown = [n for n in chosen if n not in known]
    if unknown:
        raise ValueError(f"unknown model mutant(s): {', '.join(unknown)}; "
                         "`callgate model mutants --list` lists them")
    results: dict[str, MutantResult] = {}
    jobs = [(n, all_checks) for n in chosen]
    if workers <= 1 or len(jobs) <= 1:
        for job in jobs:
            results[job[0]] = _run_pair(job)
            if progress:
                progress(results[job[0]], len(results), len(jobs))
    else:
        with ProcessPoolExecutor(max_workers=workers,
                                 mp_context=multiprocessing.get_context("spawn")) as pool:
            for future in as_completed([pool.submit(_run_pair, job) for job in jobs]):
                result = future.result()
                results[result.name] = result
                if progress:
                    progress(result, len(results), len(jobs))
    return Report(tuple(results[n] for n in chosen), time.perf_counter() - start, command)
