"""Races across coupled objects (issue 18): each aims at one coupling of
`callgate.model.coupled` or of the thread-level cancellation state, and cites its rules.

The harness judges each slot against its own machine, which is exact here: the couplings these
races exercise are inside one adapter object or between objects whose own results show them.

* Two call objects of one server object (`calls_one_server`: in the reference adapter, slots of
  one configuration come from one server object): the server's Signal of one call must reach
  that call object alone, and each Finish_ returns its own call's [out] (COM-CF-10).
* A call object and the event it aggregates (`call_with_event`: the call object's Wait is
  ISynchronize::Wait on that event): a new call starts with the event reset, Waits racing the
  server's Signal all see it, the event being a ManualResetEvent (COM-SYNC-06, COM-SYNC-04),
  and none sees it before.
* A thread's cancellation state and its synchronous call: whether the call can be cancelled is
  fixed when it starts (COM-CCAN-05), so a disable after the cancel does not make a later
  CoCancelCall report that cancellation is disabled.
"""

from __future__ import annotations

from callgate.conformance.cases.parallel.case import ParallelCase
from callgate.conformance.cases.slots import default_slot, machine_of
from callgate.model.transitions import Action, Value


def _act(slot: str, op: str, **args: Value) -> Action:
    names = [p.name for p in machine_of(slot).operation(op).params]
    return Action(slot, op, tuple((n, args[n]) for n in names))


def _create(slot: str) -> Action:
    return _act(slot, "CreateCall", riid="async", aggregate=False)


def _signal(slot: str, out: int) -> Action:
    return _act(slot, "server_signal", out=out, then_impersonate=False)


def coupled_races() -> list[ParallelCase]:
    """The races across coupled objects."""
    calls = (default_slot("c0"), default_slot("c1"))
    both_pending = (_create("c0"), _create("c1"), _act("c0", "Begin_"), _act("c1", "Begin_"))
    thread = (default_slot("t0"),)
    return [
        ParallelCase(
            "race-one-server-signal-other-wait", "two call objects of one server object: the "
            "server signals one call while the client waits on the other, which must time out; "
            "then each call finishes with its own [out]", calls, both_pending,
            ((_signal("c0", 1),), (_act("c1", "Wait", timeout="finite"),)),
            ("COM-CF-10", "COM-SYNC-06", "COM-SRV-05", "COM-WAIT-02", "COM-WAIT-03",
             "COM-FIN-01"),
            suffix=(_act("c1", "Wait", timeout="zero"), _signal("c1", 2),
                    _act("c0", "Wait", timeout="zero"), _act("c1", "Wait", timeout="zero"),
                    _act("c0", "Finish_"), _act("c1", "Finish_"))),
        ParallelCase(
            "race-one-server-finish-together", "two call objects of one server object finish "
            "at once: each Wait and Finish_ sees its own call's signal and [out]", calls,
            both_pending,
            ((_signal("c0", 1), _act("c0", "Wait", timeout="finite"), _act("c0", "Finish_")),
             (_signal("c1", 2), _act("c1", "Wait", timeout="finite"), _act("c1", "Finish_"))),
            ("COM-CF-10", "COM-SRV-05", "COM-WAIT-02", "COM-FIN-01")),
        ParallelCase(
            "race-call-event-waits-signal", "on the call object's second call (its event was "
            "reset when the call began: a Wait with no wait at all sees it pending), two Waits "
            "on the event racing the server's Signal: the event is a ManualResetEvent "
            "aggregated by the call object, so a Signal that returned before a Wait's deadline "
            "wakes both", (calls[0],),
            (_create("c0"), _act("c0", "Begin_"), _signal("c0", 2),
             _act("c0", "Wait", timeout="zero"), _act("c0", "Finish_"), _act("c0", "Begin_"),
             _act("c0", "Wait", timeout="zero")),
            ((_act("c0", "Wait", timeout="finite"),), (_act("c0", "Wait", timeout="finite"),),
             (_signal("c0", 1),)),
            ("COM-SYNC-06", "COM-SYNC-04", "COM-SRV-05", "COM-WAIT-02", "COM-WAIT-03"),
            suffix=(_act("c0", "Wait", timeout="zero"), _act("c0", "Finish_"))),
        ParallelCase(
            "race-thread-cancel-fixed-at-start", "CoCancelCall of a synchronous call that "
            "started with cancellation enabled, racing the server's CoTestCancel; then the "
            "thread disables cancellation, and a second CoCancelCall reports the call cancelled "
            "or gone, never that cancellation is disabled (it was fixed when the call started)",
            thread,
            (_act("t0", "CoEnableCallCancellation", pReserved="NULL"),
             _act("t0", "start_sync_call")),
            ((_act("t0", "CoCancelCall"),),
             (_act("t0", "server_test_cancel"), _act("t0", "server_test_cancel"))),
            ("COM-CCAN-05", "COM-CCAN-02", "COM-CCAN-08", "COM-CCAN-09"),
            suffix=(_act("t0", "CoDisableCallCancellation", pReserved="NULL"),
                    _act("t0", "CoCancelCall"), _act("t0", "server_return"))),
    ]
