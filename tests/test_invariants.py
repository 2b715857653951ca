"""Each named invariant holds on the real tables, and a table broken for it yields a reachable
counterexample trace naming it (the trace replays through `step()` and ends in the violation)."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable

import pytest

from callgate.model import codes, invariants
from callgate.model.codes import Family
from callgate.model.families import MACHINES
from callgate.model.invariants import (
    ALL,
    BY_NAME,
    StateInvariant,
    StateView,
    Transition,
    TransitionInvariant,
    transitions_from,
    violated_composed,
)
from callgate.model.obligations import ALL as OBLIGATIONS
from callgate.model.proofs import Result, prove_invariants
from callgate.model.rules import catalogue
from callgate.model.tables.table import out, row, undefined
from callgate.model.transitions import (
    AnyFailure,
    AnySuccess,
    Arg,
    Composition,
    Const,
    Exact,
    Kind,
    Machine,
    Outcome,
    Returns,
    Row,
    Value,
    Var,
    reachable,
    step,
)

OK = Exact(codes.S_OK)
RPC_OK = Exact(codes.RPC_S_OK)


# --- helpers that break a table -----------------------------------------------------------


def _matches(r: Row, op: str, guard: dict[str, Value | tuple[Value, ...]],
             args: dict[str, Value | tuple[Value, ...]] | None = None) -> bool:
    def same(pairs: tuple[tuple[str, frozenset[Value]], ...],
             wanted: dict[str, Value | tuple[Value, ...]]) -> bool:
        have = dict(pairs)
        for name, value in wanted.items():
            values = frozenset(value) if isinstance(value, tuple) else frozenset([value])
            if have.get(name) != values:
                return False
        return True
    return r.op == op and same(r.guard, guard) and same(r.args, args or {})


def change(machine: Machine, op: str, guard: dict[str, Value | tuple[Value, ...]],
           new: Callable[[Row], Row], args: dict[str, Value | tuple[Value, ...]] | None = None
           ) -> Machine:
    """The machine with the one row of `op` whose guard includes `guard` replaced by new(row)."""
    hits = [i for i, r in enumerate(machine.rows) if _matches(r, op, guard, args)]
    assert len(hits) == 1, f"{machine.name}.{op} {guard}: {len(hits)} rows match"
    rows = list(machine.rows)
    rows[hits[0]] = new(rows[hits[0]])
    return dataclasses.replace(machine, rows=tuple(rows))


def outcomes(*items: Outcome) -> Callable[[Row], Row]:
    return lambda r: dataclasses.replace(r, outcomes=items, kind=Kind.DEFINED)


def edit_outcomes(edit: Callable[[Outcome], Outcome]) -> Callable[[Row], Row]:
    return lambda r: dataclasses.replace(r, outcomes=tuple(edit(o) for o in r.outcomes))


def drop_update(name: str) -> Callable[[Outcome], Outcome]:
    return lambda o: dataclasses.replace(o, updates=tuple(u for u in o.updates if u[0] != name))


def set_update(name: str, value: Value | Arg | Var) -> Callable[[Outcome], Outcome]:
    expr = value if isinstance(value, (Arg, Var)) else Const(value)
    return lambda o: dataclasses.replace(
        o, updates=(*(u for u in o.updates if u[0] != name), (name, expr)))


def add_outcome(extra: Outcome) -> Callable[[Row], Row]:
    return lambda r: dataclasses.replace(r, outcomes=(*r.outcomes, extra))


def replace_row(new_row: Row) -> Callable[[Row], Row]:
    return lambda r: new_row


COM = MACHINES["com_call"]
EVENT = MACHINES["event"]
CONTAINER = MACHINES["container"]
RPC = MACHINES["rpc_call"]
ORDER = MACHINES["rpc_order"]
PIPE = MACHINES["rpc_pipe"]
IN_FLIGHT = ("PENDING", "SIGNALED")

MUTANTS: dict[str, Callable[[], Machine]] = {
    "com.one_outstanding_call": lambda: change(
        COM, "Release", {"phase": "PENDING"}, edit_outcomes(drop_update("held"))),
    "com.begin_only_when_idle": lambda: change(
        COM, "Begin_", {"phase": IN_FLIGHT, "cancel": False},
        outcomes(out(AnySuccess(Family.HRESULT), "accepted while pending", phase="PENDING",
                     held=True))),
    "com.rejected_begin_changes_nothing": lambda: change(
        COM, "Begin_", {"phase": IN_FLIGHT, "cancel": False},
        outcomes(out(AnyFailure(Family.HRESULT), "rejected, and forgets the call",
                     phase="IDLE"))),
    "com.outputs_after_signal": lambda: change(
        COM, "Finish_", {"phase": "PENDING"},
        replace_row(row("Finish_", ("COM-FIN-03",),
                        out(OK, "outputs before the signal", outputs={"out": Var("out")},
                            phase="IDLE"),
                        state={"phase": "PENDING"}))),
    "com.outputs_at_most_once": lambda: change(
        COM, "Finish_", {"phase": "SIGNALED", "cancel": False},
        outcomes(out(OK, "outputs delivered, kept", outputs={"out": Var("out")}))),
    "com.nothing_pending_at_rest": lambda: change(
        COM, "Finish_", {"phase": "SIGNALED", "cancel": True},
        edit_outcomes(drop_update("cancel"))),
    "com.cancel_keeps_finish": lambda: change(
        COM, "Finish_", {"phase": "SIGNALED", "cancel": True},
        replace_row(undefined("Finish_", ("COM-FIN-05",), "broken: no Finish_ after cancel",
                              state={"phase": "SIGNALED", "cancel": True}))),
    "com.wait_ok_means_done": lambda: change(
        COM, "Wait", {"phase": "PENDING"}, add_outcome(out(OK, "done early")),
        args={"timeout": ("zero", "finite")}),
    "com.std_event_wait_consumes_the_signal": lambda: change(
        COM, "Wait", {"phase": "SIGNALED", "waited": True},
        outcomes(out(OK, "still signalled", when={"call_object_event": "ManualResetEvent"}),
                 out(OK, "a StdEvent that stays signalled",
                     when={"call_object_event": "StdEvent"})),
        args={"timeout": ("zero", "finite")}),
    "com.abandoned_calls_counted": lambda: change(
        COM, "Release", {"phase": "PENDING"}, edit_outcomes(set_update("orphan", 0))),
    "com.abandoned_only_after_release": lambda: change(
        COM, "Begin_", {"phase": "IDLE"}, edit_outcomes(set_update("orphan", 1))),
    "com.waited_only_when_signalled": lambda: change(
        COM, "Finish_", {"phase": "SIGNALED", "cancel": False},
        edit_outcomes(drop_update("waited"))),
    "com.cancel_only_in_window": lambda: change(
        COM, "Cancel", {"phase": "IDLE"},
        replace_row(row("Cancel", ("COM-CANCEL-02",), out(OK, "accepted while idle"),
                        state={"phase": "IDLE"}))),
    "com.test_cancel_only_reports": lambda: change(
        COM, "TestCancel", {"phase": IN_FLIGHT, "cancel": False},
        outcomes(out(Exact(codes.RPC_E_CALL_CANCELED), "cancelled, says it"))),
    "com.released_is_final": lambda: change(
        COM, "server_signal_late", {"orphan": 1}, edit_outcomes(set_update("phase", "IDLE"))),
    "com.late_signal_invisible": lambda: change(
        COM, "server_signal_late", {"orphan": 1}, edit_outcomes(set_update("out", 2))),
    "com.pending_call_is_held": lambda: change(
        COM, "server_impersonate", {"phase": "PENDING"}, edit_outcomes(set_update("held", False))),
    "com.outputs_only_when_signalled": lambda: change(
        COM, "Release", {"phase": "SIGNALED"}, edit_outcomes(drop_update("out"))),
    "com.signalled_call_has_outputs": lambda: change(
        COM, "server_signal", {"phase": "PENDING", "cancel": True},
        edit_outcomes(set_update("out", 0)), args={"then_impersonate": False}),
    "sync.auto_reset_wait": lambda: change(
        EVENT, "Wait", {"kind": "StdEvent", "signaled": True},
        edit_outcomes(drop_update("signaled"))),
    "sync.manual_reset_wait": lambda: change(
        EVENT, "Wait", {"kind": "ManualResetEvent", "signaled": True},
        edit_outcomes(set_update("signaled", False))),
    "sync.wait_ok_iff_signalled": lambda: change(
        EVENT, "Wait", {"kind": ("ManualResetEvent", "StdEvent"), "signaled": False},
        add_outcome(out(OK, "a spurious wake-up")), args={"timeout": ("zero", "finite")}),
    "sync.signal_and_reset_set_the_state": lambda: change(
        EVENT, "Reset", {"kind": ("ManualResetEvent", "StdEvent")},
        edit_outcomes(set_update("signaled", True))),
    "sync.class_is_fixed": lambda: change(
        EVENT, "SetEventHandle", {"kind": ("ManualResetEvent", "StdEvent")},
        edit_outcomes(set_update("kind", "StdEvent"))),
    "sync.container_capacity": lambda: change(
        CONTAINER, "AddSynchronize", {"created": True, "count": tuple(range(63))},
        outcomes(out(Exact(codes.RPC_E_OUT_OF_RESOURCES), "full too early"))),
    "sync.wait_multiple_returns_a_signalled_member": lambda: change(
        CONTAINER, "WaitMultiple", {"sig0": True, "sig1": False},
        outcomes(out(OK, "the wrong member", outputs={"member": 1}))),
    "rpc.one_notification_per_call": lambda: change(
        RPC, "wait_notification", {"notify": "Event", "notes": 1},
        outcomes(out(Returns(1, "notified"), "a second notification", notes=1))),
    "rpc.notification_not_lost": lambda: change(
        RPC, "wait_notification", {"notify": "Event", "phase": "SENT", "notes": 0},
        outcomes(out(Returns(0, "no notification"), "the notification was lost"))),
    "rpc.final_completion_leaves_no_call": lambda: change(
        RPC, "RpcAsyncCompleteCall", {"phase": "READY", "result": "ok", "may_cancel": False},
        edit_outcomes(drop_update("phase"))),
    "rpc.server_handle_dead_after_end": lambda: change(
        RPC, "server_complete", {"server": "held", "phase": "PENDING", "cancel": "no"},
        edit_outcomes(drop_update("server")),
        args={"thread": "routine"}),
    "rpc.dead_server_handle_stays_dead": lambda: change(
        RPC, "server_test_cancel", {"server": "gone"},
        replace_row(row("server_test_cancel", ("RPC-SRV-CANCEL-01",),
                        out(Exact(codes.RPC_S_CALL_IN_PROGRESS), "a dead handle answers"),
                        state={"server": "gone"}))),
    "rpc.cancel_keeps_completion": lambda: change(
        RPC, "RpcAsyncCompleteCall", {"phase": "READY", "result": "cancelled",
                                      "may_cancel": False},
        replace_row(undefined("RpcAsyncCompleteCall", ("RPC-CLI-CANCEL-04",),
                              "broken: a cancelled call cannot be completed",
                              state={"phase": "READY", "result": "cancelled",
                                     "may_cancel": False}))),
    "rpc.abort_code_reaches_client": lambda: change(
        RPC, "RpcAsyncCompleteCall", {"phase": "READY", "result": "aborted", "may_cancel": False},
        edit_outcomes(lambda o: dataclasses.replace(o, code=Exact(codes.RPC_S_CALL_FAILED))
                      if o.when == (("abort_code_delivery", "exact"),) else o)),
    "rpc.failed_call_changes_nothing": lambda: change(
        RPC, "AsyncCall", {"phase": "INIT"}, edit_outcomes(set_update("phase", "PENDING")),
        args={"binding": "bad", "hThread": "explicit"}),
    "rpc.pending_until_server_ends": lambda: change(
        RPC, "server_complete", {"server": "held", "phase": "PENDING", "cancel": "no"},
        edit_outcomes(drop_update("phase")),
        args={"thread": "routine"}),
    "rpc.cancelled_only_after_cancel": lambda: change(
        RPC, "RpcAsyncCompleteCall", {"phase": "READY", "result": "ok", "may_cancel": False},
        add_outcome(out(Exact(codes.RPC_S_CALL_CANCELLED), "cancelled without a cancel",
                        phase="DONE"))),
    "rpc.test_cancel_only_reports": lambda: change(
        RPC, "server_test_cancel", {"server": "held", "cancel": "no"},
        outcomes(out(RPC_OK, "reports a cancel nobody asked for"))),
    "rpc.cancel_remembered": lambda: change(
        RPC, "server_test_cancel", {"server": "held", "seen": False},
        outcomes(out(Exact(codes.RPC_S_CALL_IN_PROGRESS), "the cancel never arrives")),
        args={"timeout": "finite"}),
    "rpc.status_is_the_result": lambda: change(
        RPC, "RpcAsyncGetCallStatus", {"phase": "READY", "result": "ok", "may_cancel": True},
        edit_outcomes(drop_update("may_cancel"))),
    "rpc.cancel_kinds": lambda: change(
        RPC, "RpcAsyncCancelCall", {"phase": "PENDING"},
        edit_outcomes(set_update("phase", "SENT")), args={"abort": False}),
    "rpc.finished_call_has_a_result": lambda: change(
        RPC, "RpcAsyncCancelCall", {"phase": "PENDING"}, edit_outcomes(drop_update("result")),
        args={"abort": True}),
    "rpc.abort_code_recorded": lambda: change(
        RPC, "server_abort", {"server": "held", "phase": "PENDING", "cancel": "no"},
        edit_outcomes(set_update("code", 0)),
        args={"thread": "routine"}),
    # Section 2.17: the two invariants that span two calls on one binding.
    "rpc.order_issued_in_order": lambda: change(
        ORDER, "issue_async", {"c0": "none", "c1": "none"},
        outcomes(out(Exact(codes.RPC_S_OK), "the second call first", c1="issued"))),
    "rpc.order_causal_prefix": lambda: change(
        ORDER, "server_next_dispatch", {"noncausal": False, "c0": "issued", "c1": "issued"},
        outcomes(out(Exact(codes.RPC_S_OK), "call 1 overtakes", outputs={"call": 1},
                     c1="running"))),
    # Section 2.19: the pipes close and drain only after their ends.
    "rpc.pipe_closed_after_end": lambda: change(
        PIPE, "pull", {"phase": "in_closed", "out": "end"},
        outcomes(out(Exact(codes.RPC_S_OK), "the end, but the [out] stream goes on",
                     outputs={"count": 0}, out="closed"))),
    "rpc.pipe_drained_after_end": lambda: change(
        PIPE, "server_drain", {"phase": ("none", "in_open", "done", "failed")},
        outcomes(out(Exact(codes.RPC_S_OK), "drained while the client still pushes",
                     drained=True))),
    "rpc.cancel_recorded": lambda: change(
        RPC, "server_complete", {"server": "held", "phase": "PENDING", "cancel": "no"},
        edit_outcomes(set_update("may_cancel", True)),
        args={"thread": "routine"}),
}


# --- the invariants themselves ------------------------------------------------------------


def test_there_are_at_least_twelve_invariants_besides_the_auxiliary_ones() -> None:
    assert len([i for i in ALL if not i.auxiliary]) >= 12
    assert len(BY_NAME) == len(ALL), "invariant names must be unique"


@pytest.mark.parametrize("inv", ALL, ids=lambda i: i.name)
def test_each_invariant_names_a_machine_and_cites_catalogued_rules(inv: invariants.Invariant
                                                                   ) -> None:
    assert inv.machine in MACHINES
    assert inv.rules and set(inv.rules) <= set(catalogue())
    assert inv.doc and inv.name.split(".")[0] in ("com", "sync", "rpc")


@pytest.mark.parametrize("name", sorted(MACHINES))
def test_python_predicates_hold_on_every_reachable_state_and_step(name: str) -> None:
    machine = MACHINES[name]
    mine = [i for i in ALL if i.machine == name]
    if not mine:
        # A machine with no Z3 invariant yet (sections 2.8 and 2.11) is still checked against
        # the rules: its obligations must exist.
        assert [o for o in OBLIGATIONS if o.machine == name], name
        return
    for state in reachable(machine):
        view = StateView(machine, state)
        for inv in mine:
            if isinstance(inv, StateInvariant):
                assert inv.holds(view), f"{inv.name} fails in {machine.describe(state)}"
        for t in transitions_from(machine, state):
            for inv in mine:
                if isinstance(inv, TransitionInvariant):
                    assert inv.holds(t), f"{inv.name} fails for {t.op}{t.args} -> {t.allowed.label}"


def test_every_invariant_has_a_mutant_that_breaks_it() -> None:
    assert set(MUTANTS) == set(BY_NAME)


def _replay_ends_in_violation(machine: Machine, inv: invariants.Invariant,
                              steps: tuple[object, ...], start: tuple[Value, ...]) -> None:
    state = start
    last: Transition | None = None
    for s in steps:
        taken = step(machine, state, s.op, s.args)  # type: ignore[attr-defined]
        assert taken.kind is Kind.DEFINED
        nxt = tuple(v for _, v in s.next_state)  # type: ignore[attr-defined]
        index = next(i for i, a in enumerate(taken.allowed)
                     if a.next_state == nxt and a.label == s.outcome)  # type: ignore[attr-defined]
        last = Transition(machine, state, s.op, s.args, index, taken.allowed[index])  # type: ignore[attr-defined]
        state = nxt
    if isinstance(inv, StateInvariant):
        assert not inv.holds(StateView(machine, state))
    else:
        assert last is not None and not inv.holds(last)


@pytest.mark.parametrize("name", sorted(MUTANTS))
def test_a_table_broken_for_an_invariant_yields_a_trace_naming_it(name: str) -> None:
    inv = BY_NAME[name]
    broken = MUTANTS[name]()
    results = {r.name: r for r in prove_invariants(broken, traces_for={name})}
    result = results[name]
    assert result.result is Result.COUNTEREXAMPLE, result.detail
    assert result.failed
    cex = result.counterexample
    assert cex is not None and cex.violated == name and cex.kind == "trace"
    assert name in cex.what
    ((slot, fields),) = cex.initial
    assert slot == broken.name
    start = tuple(v for _, v in fields)
    assert start in broken.initial
    _replay_ends_in_violation(broken, inv, cex.steps, start)
    assert cex.to_json()["violated"] == name


def test_the_unbroken_tables_prove_every_invariant() -> None:
    for machine in MACHINES.values():
        for result in prove_invariants(machine):
            assert result.result is Result.PROVED, f"{result.name}: {result.detail}"


def test_a_composed_state_names_the_slot_that_breaks_an_invariant() -> None:
    composition = Composition("pair", (("a", COM), ("b", COM)))
    good = COM.make(phase="IDLE")
    bad = COM.make(phase="RELEASED", held=True)
    assert violated_composed(composition, (good, good)) == []
    assert violated_composed(composition, (good, bad)) == [
        "b: com.one_outstanding_call", "b: com.nothing_pending_at_rest"]
