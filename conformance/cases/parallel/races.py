"""The named races (issue 7): directed parallel cases, each aimed at one window and citing its rules.

Slots are named as everywhere (`c0` a call object, `e0` an event, `r0` an RPC call) and hold
their machine's default configuration (`callgate.conformance.cases.slots`).
"""

from __future__ import annotations

from callgate.conformance.cases.parallel.case import ParallelCase
from callgate.conformance.cases.parallel.coupled import coupled_races
from callgate.conformance.cases.slots import default_slot, machine_of
from callgate.model.tables.rpc_handle import NOTIFY_RULE
from callgate.model.transitions import Action


def _a(slot: str, op: str, **args: object) -> Action:
    """The action `op` on `slot`, its arguments in the operation's parameter order."""
    names = [p.name for p in machine_of(slot).operation(op).params]
    return Action(slot, op, tuple((n, args[n]) for n in names))  # type: ignore[misc]


_COM = default_slot("c0")
_CREATE = _a("c0", "CreateCall", riid="async", aggregate=False)


def race_cases() -> list[ParallelCase]:
    """The races that matter (issue 7), each a named directed parallel case citing its rules."""
    rpc = default_slot("r0")
    init = _a("r0", "RpcAsyncInitializeHandle", size="exact")
    cases = [
        ParallelCase(
            "race-begin-begin", "two clients' Begin_ on one call object: exactly one starts the "
            "call, the other gets the pending code", (_COM,), (_CREATE,),
            ((_a("c0", "Begin_"),), (_a("c0", "Begin_"),)),
            ("COM-BEGIN-01", "COM-BEGIN-02", "COM-CF-10")),
        ParallelCase(
            "race-cancel-signal", "Cancel racing the server's Signal: the outcome is one of the "
            "documented ones, and Finish_ still ends the call", (_COM,),
            (_CREATE, _a("c0", "Begin_")),
            ((_a("c0", "Cancel", seconds=0), _a("c0", "Wait", timeout="finite")),
             (_a("c0", "server_signal", out=1, then_impersonate=False),)),
            ("COM-CANCEL-02", "COM-CANCEL-05", "COM-CANCEL-08", "COM-CANCEL-11", "COM-SRV-05",
             "COM-FIN-01", "COM-FIN-05"),
            suffix=(_a("c0", "Finish_"), _a("c0", "Finish_"))),
        ParallelCase(
            "race-signal-wait-event", "Signal racing ISynchronize::Wait with a timeout on a "
            "manual-reset event: a Signal that returned before the Wait's deadline wakes it",
            (default_slot("e0"),),
            (_a("e0", "CoCreateInstance", clsid="ManualResetEvent"),),
            ((_a("e0", "Wait", timeout="finite"),), (_a("e0", "Signal"),)),
            ("COM-SYNC-01", "COM-SYNC-04", "COM-WAIT-03", "COM-WAIT-05")),
        ParallelCase(
            "race-signal-wait-std-event", "Signal racing two Waits with a timeout on an "
            "auto-reset event: one signal wakes exactly one waiter",
            (default_slot("e0"),),
            (_a("e0", "CoCreateInstance", clsid="StdEvent"),),
            ((_a("e0", "Wait", timeout="finite"),), (_a("e0", "Wait", timeout="finite"),),
             (_a("e0", "Signal"),)),
            ("COM-SYNC-01", "COM-SYNC-03", "COM-WAIT-03", "COM-WAIT-05")),
        ParallelCase(
            "race-server-signal-wait", "the server's Signal racing the client's Wait with a "
            "timeout on the call object", (_COM,), (_CREATE, _a("c0", "Begin_")),
            ((_a("c0", "Wait", timeout="finite"), _a("c0", "Wait", timeout="zero")),
             (_a("c0", "server_signal", out=2, then_impersonate=False),)),
            ("COM-SRV-05", "COM-WAIT-02", "COM-WAIT-03", "COM-SYNC-01")),
        ParallelCase(
            "race-rpc-abort-complete", "RpcAsyncCancelCall(fAbort=TRUE) racing the server's "
            "RpcAsyncCompleteCall: exactly one completion notification", (rpc,),
            (init, _a("r0", "AsyncCall", notify="Event", binding="good", hThread="explicit")),
            ((_a("r0", "RpcAsyncCancelCall", abort=True), _a("r0", "wait_notification"),
              _a("r0", "wait_notification")),
             (_a("r0", "server_complete", reply=1, thread="routine"),)),
            ("RPC-CLI-CANCEL-02", "RPC-CLI-CANCEL-05", "RPC-CLI-NOTIFY-01",
             "RPC-SRV-COMPLETE-06")),
        ParallelCase(
            "race-rpc-poll-complete", "the server completes on another thread while the client "
            "polls RpcAsyncGetCallStatus", (rpc,),
            (init, _a("r0", "AsyncCall", notify="None", binding="good", hThread="explicit")),
            ((_a("r0", "RpcAsyncGetCallStatus"), _a("r0", "RpcAsyncGetCallStatus"),
              _a("r0", "RpcAsyncGetCallStatus")),
             (_a("r0", "server_complete", reply=2, thread="routine"),)),
            ("RPC-CLI-STATUS-01", "RPC-CLI-STATUS-03", "RPC-SRV-COMPLETE-01")),
    ]
    return cases + measured_races() + coupled_races()


def measured_races() -> list[ParallelCase]:
    """Races whose observations tell every ordering of their conflicting operations apart
    (issue 16): each ends with observations that show what the race did. A notification kind
    that queues (an APC, a completion packet, a callback) counts deliveries where an event merges
    them, so a second wait_notification after the race sees a second notification; the final
    RpcAsyncCompleteCall reads the result (cancelled, or the reply); a Wait and Finish_ after a
    COM race show whether the call completed and with what."""
    rpc = default_slot("r0")
    init = _a("r0", "RpcAsyncInitializeHandle", size="exact")
    read_out = (_a("r0", "wait_notification"), _a("r0", "wait_notification"),
                _a("r0", "RpcAsyncCompleteCall"))
    cases = [
        ParallelCase(
            f"race-rpc-abort-complete-{notify.lower()}", "RpcAsyncCancelCall(fAbort=TRUE) "
            f"racing the server's RpcAsyncCompleteCall with {notify} notification: exactly one "
            "notification (a second wait sees none), and the final completion reads the "
            "result of whichever came first", (rpc,),
            (init, _a("r0", "AsyncCall", notify=notify, binding="good", hThread="explicit")),
            ((_a("r0", "RpcAsyncCancelCall", abort=True),),
             (_a("r0", "server_complete", reply=1, thread="routine"),)),
            ("RPC-CLI-CANCEL-02", "RPC-CLI-CANCEL-05", NOTIFY_RULE[notify],
             "RPC-SRV-COMPLETE-06", "RPC-CLI-COMPLETE-02", "RPC-CLI-COMPLETE-04"),
            suffix=read_out)
        for notify in ("Apc", "Ioc", "Callback")
    ]
    cases += [
        ParallelCase(
            "race-rpc-soft-cancel-test-ioc", "RpcAsyncCancelCall(fAbort=FALSE) racing the "
            "manager routine's RpcServerTestCancel: a test after the cancel returned sees it, "
            "then the server completes and the client gets one notification and the reply",
            (rpc,), (init, _a("r0", "AsyncCall", notify="Ioc", binding="good", hThread="explicit")),
            ((_a("r0", "RpcAsyncCancelCall", abort=False),),
             (_a("r0", "server_test_cancel", timeout="zero"),
              _a("r0", "server_test_cancel", timeout="finite"),
              _a("r0", "server_complete", reply=2, thread="routine"))),
            ("RPC-CLI-CANCEL-03", "RPC-SRV-CANCEL-01", "RPC-SRV-CANCEL-02",
             "RPC-CLI-NOTIFY-03", "RPC-CLI-COMPLETE-02"),
            suffix=read_out),
        ParallelCase(
            "race-rpc-poll-complete-read", "the server completes while the client polls "
            "RpcAsyncGetCallStatus and then completes: once the status is final the "
            "completion reads the reply", (rpc,),
            (init, _a("r0", "AsyncCall", notify="None", binding="good", hThread="explicit")),
            ((_a("r0", "RpcAsyncGetCallStatus"), _a("r0", "RpcAsyncCompleteCall")),
             (_a("r0", "server_complete", reply=2, thread="routine"),)),
            ("RPC-CLI-STATUS-01", "RPC-CLI-STATUS-02", "RPC-CLI-COMPLETE-01",
             "RPC-CLI-COMPLETE-02", "RPC-SRV-COMPLETE-01")),
        ParallelCase(
            "race-cancel-wait-signal", "ICancelMethodCalls::Cancel(1) waiting for the server "
            "while the server's Signal completes the call: a call that completes within "
            "ulSeconds gives RPC_E_CALL_COMPLETE; an accepted Cancel says a second passed without "
            "it", (_COM,), (_CREATE, _a("c0", "Begin_")),
            ((_a("c0", "Cancel", seconds=1),),
             (_a("c0", "server_signal", out=1, then_impersonate=False),)),
            ("COM-CANCEL-05", "COM-CANCEL-08", "COM-SRV-05", "COM-FIN-01", "COM-FIN-05"),
            suffix=(_a("c0", "Wait", timeout="finite"), _a("c0", "Finish_"))),
        ParallelCase(
            "race-cancel-test-cancel", "ICancelMethodCalls::Cancel racing the server's "
            "TestCancel: a test after Cancel returned S_OK sees the cancel; Wait and Finish_ "
            "then end the call", (_COM,), (_CREATE, _a("c0", "Begin_")),
            ((_a("c0", "Cancel", seconds=0),),
             (_a("c0", "server_test_cancel"), _a("c0", "server_test_cancel"),
              _a("c0", "server_signal", out=1, then_impersonate=False))),
            ("COM-CANCEL-05", "COM-CANCEL-10", "COM-CANCEL-11", "COM-FIN-05"),
            suffix=(_a("c0", "Wait", timeout="finite"), _a("c0", "Finish_"))),
    ]
    thread = default_slot("t0")
    cases += [
        ParallelCase(
            "race-co-cancel-co-cancel", "two CoCancelCall of one pending synchronous call from "
            "two threads: one request is made (S_OK); the other finds the call already "
            "cancelled or its cancel object gone, never a second S_OK; the server then sees "
            "the cancel and returns", (thread,),
            (_a("t0", "CoEnableCallCancellation", pReserved="NULL"),
             _a("t0", "start_sync_call")),
            ((_a("t0", "CoCancelCall"),), (_a("t0", "CoCancelCall"),)),
            ("COM-CCAN-08", "COM-CCAN-09", "COM-CANCEL-11"),
            suffix=(_a("t0", "server_test_cancel"), _a("t0", "server_return"))),
    ]
    return cases
