"""The linearizability checker on hand-built histories: each verdict, and each way to get it wrong."""

from __future__ import annotations

import pytest

from callgate.conformance.implementations.reference.adapter import PINS
from callgate.conformance.judge.linearizability import (
    HistoryOp,
    Linearizability,
    check,
    check_slot,
    cut_history,
)
from callgate.model.families import MACHINES
from callgate.model.transitions import Args, Machine, State

COM = MACHINES["com_call"]
EVENT = MACHINES["event"]
S_OK = 0
PENDING = 0x80010115  # RPC_S_CALLPENDING: the pinned Begin_ refusal and Wait timeout code
# A call object after CreateCall: no call in flight.
IDLE = COM.make(factory=True, cancellable=True, phase="IDLE")
UNSIGNALLED = EVENT.make(kind="ManualResetEvent", signaled=False)
FINITE: Args = (("timeout", "finite"),)


def op(id: int, thread: str, name: str, invoked: float, returned: float | None,
       code: int | None, slot: str = "c0", args: Args = (), **extra: object) -> HistoryOp:
    return HistoryOp(id, slot, thread, name, args, invoked, returned, code, **extra)  # type: ignore[arg-type]


def verdict_of(ops: list[HistoryOp], initial: State = IDLE, machine: Machine = COM
               ) -> Linearizability:
    return check_slot(machine, ops, [initial], PINS).verdict


def test_two_overlapping_begins_where_one_wins_are_linearizable_with_the_winner_first() -> None:
    ops = [op(1, "a", "Begin_", 0.0, 1.0, PENDING), op(2, "b", "Begin_", 0.1, 0.9, S_OK)]
    result = check_slot(COM, ops, [IDLE], PINS)
    assert result.verdict is Linearizability.LINEARIZABLE
    assert result.order == (2, 1)


def test_two_begins_that_both_start_a_call_are_not_linearizable() -> None:
    ops = [op(1, "a", "Begin_", 0.0, 1.0, S_OK), op(2, "b", "Begin_", 0.1, 0.9, S_OK)]
    result = check_slot(COM, ops, [IDLE], PINS)
    assert result.verdict is Linearizability.NOT_LINEARIZABLE
    # Until the second response either Begin_ may still be the one that lost.
    assert result.culprit is not None and result.culprit.id == 1
    assert {o.id for o in result.counterexample} == {1, 2}


def test_real_time_order_is_respected() -> None:
    # The refusal returned before the winning Begin_ was invoked: it cannot follow it.
    ops = [op(1, "a", "Begin_", 0.0, 0.1, PENDING), op(2, "b", "Begin_", 0.2, 0.3, S_OK)]
    assert verdict_of(ops) is Linearizability.NOT_LINEARIZABLE
    # Overlapping, the same results are fine.
    ops = [op(1, "a", "Begin_", 0.0, 0.25, PENDING), op(2, "b", "Begin_", 0.2, 0.3, S_OK)]
    assert verdict_of(ops) is Linearizability.LINEARIZABLE


def test_an_unknown_outcome_may_have_taken_effect_or_not() -> None:
    took_effect = [op(1, "a", "Begin_", 0.0, None, None), op(2, "b", "Begin_", 0.5, 0.6, PENDING)]
    assert verdict_of(took_effect) is Linearizability.LINEARIZABLE
    never = [op(1, "a", "Begin_", 0.0, None, None), op(2, "b", "Begin_", 0.5, 0.6, S_OK)]
    assert verdict_of(never) is Linearizability.LINEARIZABLE
    # But not before its invocation: the refusal returned before the unknown Begin_ began.
    before = [op(1, "a", "Begin_", 0.5, None, None), op(2, "b", "Begin_", 0.0, 0.1, PENDING)]
    assert verdict_of(before) is Linearizability.NOT_LINEARIZABLE


def test_an_operation_the_model_does_not_offer_cannot_linearize() -> None:
    # Wait(finite) on a call object with no call object yet (phase NONE) is NOT_OFFERED.
    none = COM.make(factory=True, cancellable=True)
    ops = [op(1, "a", "Wait", 0.0, 0.1, S_OK, args=FINITE)]
    assert verdict_of(ops, initial=none) is Linearizability.NOT_LINEARIZABLE


def test_a_timed_out_wait_linearizes_at_its_deadline_so_a_lost_wakeup_shows() -> None:
    signal = op(2, "b", "Signal", 0.0, 0.001, S_OK, slot="e0")
    lost = op(1, "a", "Wait", 0.0, 0.06, PENDING, slot="e0", args=FINITE, not_before=0.048)
    assert verdict_of([lost, signal], UNSIGNALLED, EVENT) is Linearizability.NOT_LINEARIZABLE
    # Without the deadline the same history would pass: the Wait could go first.
    early = op(1, "a", "Wait", 0.0, 0.06, PENDING, slot="e0", args=FINITE)
    assert verdict_of([early, signal], UNSIGNALLED, EVENT) is Linearizability.LINEARIZABLE
    # And a Signal that came after the deadline leaves the timeout allowed.
    late = op(2, "b", "Signal", 0.05, 0.051, S_OK, slot="e0")
    assert verdict_of([lost, late], UNSIGNALLED, EVENT) is Linearizability.LINEARIZABLE


def test_slots_are_checked_apart_and_the_failing_one_is_named() -> None:
    ops = [op(1, "a", "Begin_", 0.0, 1.0, S_OK, slot="c0"),
           op(2, "b", "Begin_", 0.1, 0.9, PENDING, slot="c0"),
           op(3, "a", "Begin_", 0.0, 1.0, S_OK, slot="c1"),
           op(4, "b", "Begin_", 0.1, 0.9, S_OK, slot="c1")]
    result = check(ops, {"c0": COM, "c1": COM}, {"c0": [IDLE], "c1": [IDLE]}, PINS)
    assert result.verdict is Linearizability.NOT_LINEARIZABLE
    verdicts = {s.slot: s.verdict for s in result.slots}
    assert verdicts == {"c0": Linearizability.LINEARIZABLE,
                        "c1": Linearizability.NOT_LINEARIZABLE}
    failing = result.failing()
    assert failing is not None and failing.slot == "c1"
    assert "c1" in result.summary()


def test_an_undeclared_slot_is_refused_with_the_declared_ones_named() -> None:
    with pytest.raises(ValueError, match="declared slots: c0"):
        check([op(1, "a", "Begin_", 0.0, 1.0, S_OK, slot="zz")], {"c0": COM}, {"c0": [IDLE]})


def test_an_exhausted_budget_is_unknown_and_never_a_pass() -> None:
    # Many overlapping refusals around one winner: the search needs more than one configuration.
    ops = [op(i, f"t{i}", "Begin_", 0.0, 1.0, PENDING) for i in range(6)]
    ops.append(op(9, "w", "Begin_", 0.0, 1.0, S_OK))
    assert verdict_of(ops) is Linearizability.LINEARIZABLE
    result = check(ops, {"c0": COM}, {"c0": [IDLE]}, PINS, budget=2)
    assert result.verdict is Linearizability.UNKNOWN
    assert result.summary().startswith("unknown") and "not a pass" in result.summary()


def test_the_counterexample_is_the_shortest_failing_cut() -> None:
    # A correct call cycle, then two Begin_ that both win, then more operations after them.
    ops = [op(1, "a", "Begin_", 0.0, 0.1, S_OK),
           op(2, "a", "server_signal", 0.2, 0.3, S_OK, args=(("out", 1), ("then_impersonate",
                                                                          False))),
           op(3, "a", "Finish_", 0.4, 0.5, S_OK, outputs=(("out", 1),)),
           op(4, "a", "Begin_", 1.0, 1.2, S_OK),
           op(5, "b", "Begin_", 1.0, 1.1, S_OK),
           op(6, "a", "Wait", 2.0, 2.1, PENDING, args=(("timeout", "zero"),)),
           op(7, "b", "Begin_", 3.0, 3.1, PENDING)]
    result = check_slot(COM, ops, [IDLE], PINS)
    assert result.verdict is Linearizability.NOT_LINEARIZABLE
    assert result.culprit is not None and result.culprit.id == 4
    assert {o.id for o in result.counterexample} == {1, 2, 3, 4, 5}
    # The cut itself is not linearizable (the shrinking never invents a failure) ...
    assert verdict_of(list(result.counterexample)) is Linearizability.NOT_LINEARIZABLE
    # ... and the cut one response earlier is.
    earlier = cut_history(ops, 1.1)
    assert verdict_of(earlier) is Linearizability.LINEARIZABLE


def test_cutting_a_history_makes_running_operations_optional() -> None:
    ops = [op(1, "a", "Begin_", 0.0, 1.0, S_OK), op(2, "b", "Begin_", 0.5, 0.6, PENDING),
           op(3, "b", "Begin_", 2.0, 2.1, PENDING)]
    cut = cut_history(ops, 0.6)
    assert [(o.id, o.optional) for o in cut] == [(1, True), (2, False)]
