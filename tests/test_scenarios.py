"""Golden scenarios from the documentation's own procedures, stepped through the model.

Each step gives what the documentation says happens; the model must allow it, and must refuse
the plausible wrong answer next to it.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import pytest

from callgate.model import codes
from callgate.model.tables.com_call import MACHINE as COM
from callgate.model.tables.rpc_handle import MACHINE as RPC
from callgate.model.tables.sync_object import CONTAINER, EVENT
from callgate.model.transitions import Args, Kind, Machine, Tracker
from callgate.model.variations import check_pins


@dataclass
class S:
    """One scenario step: operation, arguments, the documented result, and a wrong result."""

    op: str
    args: Mapping[str, object] = field(default_factory=dict)
    code: int = 0
    outputs: Mapping[str, object] = field(default_factory=dict)
    wrong: int | None = None


def play(machine: Machine, steps: Sequence[S], pins: Mapping[str, str] | None = None,
         start: object = None) -> Tracker:
    first = start if start is not None else machine.initial[0]
    tracker = Tracker(machine, check_pins(pins or {}), [first])  # type: ignore[list-item]
    for i, s in enumerate(steps):
        args: Args = tuple(sorted(s.args.items(), key=lambda kv: kv[0]))  # type: ignore[arg-type]
        op = machine.operation(s.op)
        args = tuple((p.name, dict(args)[p.name]) for p in op.params)
        if s.wrong is not None:
            probe = Tracker(machine, tracker.pins, tracker.states)
            assert not probe.observe(s.op, args, s.wrong, s.outputs).ok, \
                f"step {i} {s.op}: the model accepted the wrong code {codes.describe(s.wrong)}"
        judgement = tracker.observe(s.op, args, s.code, s.outputs)
        assert judgement.ok, (f"step {i} {s.op}{dict(args)} -> {codes.describe(s.code)}: allowed "
                              f"{[a.describe() for a in judgement.allowed]} ({judgement.kind})")
    return tracker


OK = codes.S_OK.value
PENDING = codes.RPC_S_CALLPENDING.value


def test_making_an_asynchronous_call_procedure() -> None:
    """S-COM-MAKE: QI for ICallFactory, CreateCall, Begin_, Wait times out, Wait succeeds,
    Finish_, reuse, a second Begin_ while pending, Finish_ with no call in progress."""
    play(COM, [
        S("QueryInterface", {"iid": "ICallFactory"}, OK, wrong=codes.E_NOINTERFACE.value),
        S("CreateCall", {"riid": "async", "aggregate": False}, OK),
        S("QueryInterface", {"iid": "ISynchronize"}, OK),
        S("Begin_", {}, OK, wrong=codes.RPC_S_CALLPENDING.value),
        S("Wait", {"timeout": "zero"}, codes.RPC_E_TIMEOUT.value, wrong=OK),
        S("Wait", {"timeout": "finite"}, PENDING, wrong=OK),
        S("Begin_", {}, PENDING, wrong=OK),
        S("server_signal", {"out": 1, "then_impersonate": False}, OK),
        S("Wait", {"timeout": "infinite"}, OK, wrong=PENDING),
        S("Finish_", {}, OK, {"out": 1}, wrong=codes.RPC_E_CALL_COMPLETE.value),
        S("Finish_", {}, codes.RPC_E_CALL_COMPLETE.value, wrong=OK),
        S("Begin_", {}, OK),
        S("server_signal", {"out": 2, "then_impersonate": False}, OK),
        S("Wait", {"timeout": "zero"}, OK),
        S("Finish_", {}, OK, {"out": 2}),
        S("Release", {}, 0),
    ])


def test_finish_must_deliver_the_outputs_of_this_call_not_the_last() -> None:
    tracker = play(COM, [
        S("CreateCall", {"riid": "async", "aggregate": False}, OK),
        S("Begin_", {}, OK), S("server_signal", {"out": 1, "then_impersonate": False}, OK),
        S("Finish_", {}, OK, {"out": 1}),
        S("Begin_", {}, OK), S("server_signal", {"out": 2, "then_impersonate": False}, OK),
    ])
    assert not tracker.observe("Finish_", (), OK, {"out": 1}).ok


def test_object_without_factory_refuses_asynchronous_calls() -> None:
    tracker = Tracker(COM, states=[COM.make(factory=False)])
    assert not tracker.observe("QueryInterface", (("iid", "ICallFactory"),), OK, {}).ok
    assert tracker.observe("QueryInterface", (("iid", "ICallFactory"),),
                           codes.E_NOINTERFACE.value, {}).ok
    assert tracker.kind("CreateCall", (("riid", "async"), ("aggregate", False))) \
        is Kind.NOT_OFFERED


def test_canceling_an_asynchronous_call_procedure() -> None:
    """S-COM-CANCEL and S-ICMC: Cancel, TestCancel from both sides, Begin_ refused until
    Finish_; Wait returns S_OK only once the server has returned from Begin_ (seed 000), then
    Finish_ reports the cancel and cleans up."""
    pins = {"cancelled_code": "RPC_E_CALL_CANCELED"}
    tracker = play(COM, [
        S("CreateCall", {"riid": "async", "aggregate": False}, OK),
        S("Begin_", {}, OK),
        S("TestCancel", {}, PENDING, wrong=codes.RPC_E_CALL_CANCELED.value),
        S("Cancel", {"seconds": 0}, OK),
        S("TestCancel", {}, codes.RPC_E_CALL_CANCELED.value, wrong=PENDING),
        S("server_test_cancel", {}, codes.RPC_E_CALL_CANCELED.value, wrong=PENDING),
        S("Begin_", {}, PENDING, wrong=OK),
        S("Cancel", {"seconds": 0}, codes.RPC_E_CALL_CANCELED.value, wrong=OK),
        S("Wait", {"timeout": "zero"}, PENDING, wrong=OK),
    ], pins=pins)
    assert tracker.kind("Finish_") is Kind.UNDEFINED  # COM-FIN-03: not before Wait says S_OK
    tracker = play(COM, [
        S("server_signal", {"out": 1, "then_impersonate": False}, OK),
        S("Wait", {"timeout": "zero"}, OK, wrong=PENDING),
        S("Finish_", {}, codes.RPC_E_CALL_CANCELED.value, wrong=OK),
        S("Begin_", {}, OK),
    ], pins=pins, start=next(iter(tracker.states)))
    assert tracker.states == {COM.make(phase="PENDING", held=True)}


def test_cancel_is_refused_when_the_server_thread_disabled_it() -> None:
    play(COM, [
        S("CreateCall", {"riid": "async", "aggregate": False}, OK),
        S("Begin_", {}, OK),
        S("Cancel", {"seconds": 0}, codes.CO_E_CANCEL_DISABLED.value, wrong=OK),
    ], start=COM.make(cancellable=False))


def test_release_of_a_pending_call_is_allowed_and_cleans_up() -> None:
    tracker = play(COM, [
        S("CreateCall", {"riid": "async", "aggregate": False}, OK),
        S("Begin_", {}, OK),
        S("Release", {}, 0),
    ])
    assert tracker.kind("Finish_") is Kind.NOT_OFFERED
    assert tracker.kind("server_signal_late") is Kind.DEFINED


def test_wait_timeout_code_is_a_named_variation_point() -> None:
    steps = [S("CreateCall", {"riid": "async", "aggregate": False}, OK), S("Begin_", {}, OK)]
    timeout = [S("Wait", {"timeout": "zero"}, PENDING)]
    play(COM, steps + timeout)
    play(COM, steps + timeout, pins={"call_wait_timeout_code": "RPC_S_CALLPENDING"})
    with pytest.raises(AssertionError, match="allowed"):
        play(COM, steps + timeout, pins={"call_wait_timeout_code": "RPC_E_TIMEOUT"})


def test_unknown_pins_are_refused_with_the_known_choices() -> None:
    with pytest.raises(ValueError, match="choose one of"):
        check_pins({"call_wait_timeout_code": "E_FAIL"})
    with pytest.raises(ValueError, match="unknown variation point"):
        check_pins({"no_such_point": "x"})


def test_std_event_resets_itself_and_manual_reset_event_does_not() -> None:
    created = {"new_event_state": "nonsignaled"}
    play(EVENT, [
        S("CoCreateInstance", {"clsid": "StdEvent"}, OK),
        S("Signal", {}, OK),
        S("Wait", {"timeout": "zero"}, OK),
        S("Wait", {"timeout": "zero"}, PENDING, wrong=OK),
    ], pins=created)
    play(EVENT, [
        S("CoCreateInstance", {"clsid": "ManualResetEvent"}, OK),
        S("Signal", {}, OK),
        S("Wait", {"timeout": "zero"}, OK),
        S("Wait", {"timeout": "finite"}, OK, wrong=PENDING),
        S("Reset", {}, OK),
        S("Wait", {"timeout": "zero"}, PENDING, wrong=OK),
    ], pins=created)


def test_an_undocumented_initial_state_stays_a_set_until_observed() -> None:
    tracker = play(EVENT, [S("CoCreateInstance", {"clsid": "ManualResetEvent"}, OK)])
    assert len(tracker.states) == 2
    assert tracker.observe("Wait", (("timeout", "zero"),), OK, {}).ok
    assert tracker.states == {EVENT.make(kind="ManualResetEvent", signaled=True)}


def test_container_holds_63_members_and_reports_the_signalled_one() -> None:
    steps = [S("CoCreateInstance"), S("WaitMultiple", {"timeout": "zero"},
                                      codes.RPC_E_NO_SYNC.value)]
    steps += [S("AddSynchronize", {}, OK)] * 63
    steps += [
        S("AddSynchronize", {}, codes.RPC_E_OUT_OF_RESOURCES.value, wrong=OK),
        S("WaitMultiple", {"timeout": "zero"}, codes.RPC_E_TIMEOUT.value, wrong=PENDING),
        S("member_signal", {"index": 1}, OK),
        S("WaitMultiple", {"timeout": "finite"}, OK, {"member": 1}),
    ]
    tracker = play(CONTAINER, steps)
    assert not tracker.observe("WaitMultiple", (("timeout", "zero"),), OK, {"member": 0}).ok


RPC_OK = codes.RPC_S_OK.value
IO_PENDING = codes.RPC_S_ASYNC_CALL_PENDING.value


def test_sending_the_asynchronous_reply_with_the_cancel_polling_loop() -> None:
    """S-RPC-SEND's sample: the manager routine polls RpcServerTestCancel, sees the cancel, and
    still calls RpcAsyncCompleteCall; the client is notified once and completes."""
    tracker = play(RPC, [
        S("RpcAsyncInitializeHandle", {"size": "smaller"}, codes.RPC_S_INVALID_ARG.value,
          wrong=RPC_OK),
        S("RpcAsyncInitializeHandle", {"size": "exact"}, RPC_OK,
          {"Signature": 0x43595341, "Size": "sizeof(RPC_ASYNC_STATE)", "Lock": 0, "Flags": 0,
           "StubInfo": 0, "RuntimeInfo": 0, "Reserved": 0, "UserInfo_kept": True}),
        S("AsyncCall", {"notify": "Event", "binding": "good", "hThread": "explicit"}, RPC_OK),
        S("RpcAsyncGetCallStatus", {}, IO_PENDING, wrong=RPC_OK),
        S("RpcAsyncCompleteCall", {}, IO_PENDING, wrong=RPC_OK),
        S("wait_notification", {}, 0, wrong=1),
        S("server_test_cancel", {"timeout": "zero"}, codes.RPC_S_CALL_IN_PROGRESS.value,
          wrong=RPC_OK),
        S("server_test_cancel", {"timeout": "finite"}, codes.RPC_S_CALL_IN_PROGRESS.value,
          wrong=RPC_OK),
        S("RpcAsyncCancelCall", {"abort": False}, RPC_OK),
        # The cancel notice may still be on its way; a test that waits sees it.
        S("server_test_cancel", {"timeout": "zero"}, codes.RPC_S_CALL_IN_PROGRESS.value),
        S("server_test_cancel", {"timeout": "finite"}, RPC_OK,
          wrong=codes.RPC_S_CALL_IN_PROGRESS.value),
        S("server_test_cancel", {"timeout": "zero"}, RPC_OK,
          wrong=codes.RPC_S_CALL_IN_PROGRESS.value),
        S("server_handle_live", {}, 1),
        S("server_complete", {"reply": 1, "thread": "routine"}, RPC_OK),
        S("server_handle_live", {}, 0, wrong=1),
        S("wait_notification", {}, 1, {"Event": 0}),
        S("wait_notification", {}, 0, wrong=1),
        S("RpcAsyncCompleteCall", {}, RPC_OK, {"reply": 1, "resources_open": True},
          wrong=IO_PENDING),
    ])
    assert tracker.kind("RpcAsyncCompleteCall") is Kind.UNDEFINED


def test_abortive_cancel_completes_at_once_and_the_server_answer_is_discarded() -> None:
    play(RPC, [
        S("RpcAsyncInitializeHandle", {"size": "exact"}, RPC_OK,
          {"Signature": 0x43595341, "Size": "sizeof(RPC_ASYNC_STATE)", "Lock": 0, "Flags": 0,
           "StubInfo": 0, "RuntimeInfo": 0, "Reserved": 0, "UserInfo_kept": True}),
        S("AsyncCall", {"notify": "Callback", "binding": "good", "hThread": "explicit"}, RPC_OK),
        S("RpcAsyncCancelCall", {"abort": True}, RPC_OK),
        S("wait_notification", {}, 1, {"Event": 0}),
        S("RpcAsyncCompleteCall", {}, codes.RPC_S_CALL_CANCELLED.value, {"resources_open": True},
          wrong=RPC_OK),
        S("server_test_cancel", {"timeout": "finite"}, RPC_OK),
        S("server_complete", {"reply": 2, "thread": "routine"}, RPC_OK),
        S("wait_notification", {}, 0, wrong=1),
    ])


def test_abort_code_reaches_the_client_when_pinned_exact() -> None:
    steps = [
        S("RpcAsyncInitializeHandle", {"size": "exact"}, RPC_OK,
          {"Signature": 0x43595341, "Size": "sizeof(RPC_ASYNC_STATE)", "Lock": 0, "Flags": 0,
           "StubInfo": 0, "RuntimeInfo": 0, "Reserved": 0, "UserInfo_kept": True}),
        S("AsyncCall", {"notify": "None", "binding": "good", "hThread": "explicit"}, RPC_OK),
        S("server_abort", {"code": 5, "thread": "routine"}, RPC_OK),
        S("RpcAsyncGetCallStatus", {}, 5),
        S("wait_notification", {}, 0, wrong=1),
        S("RpcAsyncCompleteCall", {}, 5, {"resources_open": True},
          wrong=codes.RPC_S_CALL_FAILED.value),
    ]
    play(RPC, steps, pins={"abort_code_delivery": "exact"})


def test_a_stub_that_raises_at_the_call_needs_no_completion() -> None:
    tracker = play(RPC, [
        S("RpcAsyncInitializeHandle", {"size": "exact"}, RPC_OK,
          {"Signature": 0x43595341, "Size": "sizeof(RPC_ASYNC_STATE)", "Lock": 0, "Flags": 0,
           "StubInfo": 0, "RuntimeInfo": 0, "Reserved": 0, "UserInfo_kept": True}),
        S("AsyncCall", {"notify": "Event", "binding": "bad",
                        "hThread": "explicit"}, codes.RPC_S_CALL_FAILED.value,
          wrong=RPC_OK),
        S("wait_notification", {}, 0, wrong=1),
    ], pins={"bad_binding_failure": "synchronous"})
    assert tracker.kind("RpcAsyncCancelCall", (("abort", False),)) is Kind.UNDEFINED


def test_a_bad_binding_may_fail_through_the_completion() -> None:
    """RPC-CLI-COMPLETE-05: the call may start and its failure come through the completion."""
    play(RPC, [
        S("RpcAsyncInitializeHandle", {"size": "exact"}, RPC_OK,
          {"Signature": 0x43595341, "Size": "sizeof(RPC_ASYNC_STATE)", "Lock": 0, "Flags": 0,
           "StubInfo": 0, "RuntimeInfo": 0, "Reserved": 0, "UserInfo_kept": True}),
        S("AsyncCall", {"notify": "Event", "binding": "bad", "hThread": "explicit"}, RPC_OK),
        S("wait_notification", {}, 1, {"Event": 0}),
        S("RpcAsyncCompleteCall", {}, codes.RPC_S_CALL_FAILED_DNE.value,
          {"resources_open": True}, wrong=RPC_OK),
    ], pins={"bad_binding_failure": "through_completion"})
