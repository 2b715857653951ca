"""The COM family's table: a server object, its ICallFactory, and one client call object.

Data only (DESIGN.md principle 2). Hold this file next to spec/DOMAIN.md sections 2.2 to 2.7:
each row cites the rules it implements. The test server is the harness's (principle 6): it holds
each Begin_ until the harness tells it to signal, so `server_*` operations are environment
actions. One machine is one call-object slot; a client that needs several concurrent calls uses
several slots (COM-CF-10).

Fields:
  factory      the server object implements ICallFactory (COM-CF-01, COM-SRV-01)
  cancellable  cancellation is enabled on the thread that processes the call (COM-CANCEL-07)
  phase        NONE (no call object yet), IDLE (created, or finished: reusable), PENDING (Begin_
               accepted, server working), SIGNALED (the client's Wait sees the call done),
               RELEASED (final Release)
  cancel       ICancelMethodCalls::Cancel was accepted for the current call
  out          the [out] value the server signalled for the current call (0: none yet)
  held         the test server still holds the current call's Begin_ processing
  orphan       the test server holds a call the client abandoned (released, or cancelled and
               finished): its late Signal must change nothing the client sees (COM-CANCEL-11)
"""

from __future__ import annotations

import dataclasses

from callgate.model import codes
from callgate.model.codes import Family
from callgate.model.tables.shared import begin_rejected, call_cancelled, wait_timed_out
from callgate.model.tables.table import not_offered, out, row, undefined
from callgate.model.transitions import (
    Actor,
    AnyFailure,
    AnySuccess,
    Anything,
    Arg,
    Const,
    Exact,
    Field,
    Machine,
    Operation,
    Outcome,
    Param,
    Returns,
    Var,
)

LIVE = ("IDLE", "PENDING", "SIGNALED")
GONE = ("NONE", "RELEASED")
IN_FLIGHT = ("PENDING", "SIGNALED")
OK = Exact(codes.S_OK)

FIELDS = (
    Field("factory", (True, False), "the server object supports asynchronous calls"),
    Field("cancellable", (True, False), "cancellation enabled on the server's processing thread"),
    Field("phase", ("NONE", "IDLE", "PENDING", "SIGNALED", "RELEASED"), "the call object's phase"),
    Field("cancel", (False, True), "Cancel was accepted for the current call"),
    Field("out", (0, 1, 2), "[out] value signalled for the current call; 0 before the signal"),
    Field("held", (False, True), "the test server holds the current call"),
    Field("orphan", (False, True), "the test server holds a call the client abandoned"),
)

OPERATIONS = (
    Operation("QueryInterface", Actor.CLIENT,
              "IUnknown::QueryInterface: ICallFactory on the server object, the others on the "
              "call object.",
              (Param("iid", ("ICallFactory", "ISynchronize", "ICancelMethodCalls",
                             "IClientSecurity"), "the interface asked for"),),
              capability="com.call"),
    Operation("CreateCall", Actor.CLIENT,
              "ICallFactory::CreateCall(riid, pCtrlUnk, riid2, ppv); the adapter releases "
              "ICallFactory right after (COM-CF-07).",
              (Param("riid", ("async", "sync"), "AsyncIFoo's IID, or the synchronous IFoo's"),
               Param("aggregate", (False, True), "pass a controlling unknown (riid2=IUnknown)")),
              capability="com.call"),
    Operation("Begin_", Actor.CLIENT, "AsyncIFoo::Begin_M: starts the call.",
              capability="com.call"),
    Operation("Wait", Actor.CLIENT, "ISynchronize::Wait(0, ms) on the call object.",
              (Param("timeout", ("zero", "finite", "infinite"),
                     "0 ms, a short finite timeout, or INFINITE"),),
              capability="com.call"),
    Operation("Finish_", Actor.CLIENT, "AsyncIFoo::Finish_M: ends the call, returns [out].",
              capability="com.call"),
    Operation("Cancel", Actor.CLIENT, "ICancelMethodCalls::Cancel(ulSeconds) on the call object.",
              (Param("seconds", (0,), "ulSeconds"),), capability="com.cancel"),
    Operation("TestCancel", Actor.CLIENT, "ICancelMethodCalls::TestCancel on the call object.",
              capability="com.cancel"),
    Operation("Release", Actor.CLIENT, "IUnknown::Release: the client's final reference.",
              capability="com.call"),
    Operation("sync_call", Actor.CLIENT,
              "The synchronous IFoo::M through the same server object; the test server answers "
              "at once with `out`.",
              (Param("out", (1, 2), "the [out] value the server returns"),),
              capability="com.call"),
    Operation("probe_sta_wait", Actor.CLIENT,
              "On an STA thread, post a window message and Wait with a finite timeout; "
              "output `pumped` tells whether the message was dispatched during the wait.",
              capability="com.sta"),
    Operation("server_signal", Actor.SERVER,
              "The server's Begin_ processing calls ISynchronize::Signal with [out] = `out`; with "
              "`then_impersonate` it then calls CoImpersonateClient before returning and reports "
              "that code as output `impersonate`.",
              (Param("out", (1, 2), "the [out] value"),
               Param("then_impersonate", (False, True), "try CoImpersonateClient after Signal")),
              capability="com.call"),
    Operation("server_signal_late", Actor.SERVER,
              "The server signals a call the client abandoned.", capability="com.call"),
    Operation("server_test_cancel", Actor.SERVER,
              "ICancelMethodCalls::TestCancel from the server's Begin_ processing.",
              capability="com.cancel"),
    Operation("server_impersonate", Actor.SERVER,
              "CoImpersonateClient from the server's Begin_ processing, before Signal.",
              capability="com.security"),
)

NO_OBJECT = "no call object in this slot (not created, or released)"


def wait_timed_out_unless_released() -> tuple[Outcome, ...]:
    """Wait on a cancelled, pending call times out only if the cancel does not release the
    client at once (variation point cancel_releases_client)."""
    return tuple(dataclasses.replace(o, when=(*o.when, ("cancel_releases_client",
                                                        "when_server_signals")))
                 for o in wait_timed_out())


def sta_wait_pumped() -> tuple[Outcome, ...]:
    """A finite Wait on an STA thread times out having run the modal loop: the window message
    posted before it was dispatched during the wait (COM-WAIT-06)."""
    return tuple(dataclasses.replace(o, outputs=(*o.outputs, ("pumped", Const(True))))
                 for o in wait_timed_out())


ROWS = (
    # --- QueryInterface ----------------------------------------------------------------------
    row("QueryInterface", ("COM-CF-01", "COM-SRV-01"),
        out(OK, "supports asynchronous calls"),
        state={"factory": True}, args={"iid": "ICallFactory"}),
    row("QueryInterface", ("COM-CF-01",),
        out(Exact(codes.E_NOINTERFACE), "no asynchronous calls"),
        state={"factory": False}, args={"iid": "ICallFactory"}),
    row("QueryInterface", ("COM-WAIT-01", "COM-SYNC-06"),
        out(OK, "the call object exposes ISynchronize"),
        state={"phase": LIVE}, args={"iid": "ISynchronize"}),
    row("QueryInterface", ("COM-CANCEL-01",),
        out(OK, "ICancelMethodCalls present"),
        out(Exact(codes.E_NOINTERFACE), "ICancelMethodCalls absent",
            when={"call_object_origin": "same_apartment"}),
        state={"phase": LIVE}, args={"iid": "ICancelMethodCalls"}),
    row("QueryInterface", ("COM-SEC-01",),
        out(OK, "IClientSecurity present"),
        out(Exact(codes.E_NOINTERFACE), "IClientSecurity absent",
            when={"call_object_origin": "same_apartment"}),
        state={"phase": LIVE}, args={"iid": "IClientSecurity"}),
    not_offered("QueryInterface", ("COM-REL-01",), NO_OBJECT,
                state={"phase": GONE},
                args={"iid": ("ISynchronize", "ICancelMethodCalls", "IClientSecurity")}),

    # --- CreateCall --------------------------------------------------------------------------
    not_offered("CreateCall", ("COM-CF-01",),
                "the server object has no ICallFactory, so the client cannot call CreateCall",
                state={"factory": False}),
    row("CreateCall", ("COM-CF-02", "COM-CF-07", "COM-CF-09", "COM-CF-10"),
        out(OK, "fresh call object", phase="IDLE"),
        out(AnyFailure(Family.HRESULT), "no call object in the same apartment",
            rules=("COM-CF-08",), when={"call_object_origin": "same_apartment"}),
        state={"factory": True, "phase": "NONE"}, args={"riid": "async", "aggregate": False}),
    row("CreateCall", ("COM-CF-06", "COM-CF-02"),
        out(OK, "fresh aggregated call object", phase="IDLE"),
        out(AnyFailure(Family.HRESULT), "no call object in the same apartment",
            rules=("COM-CF-08",), when={"call_object_origin": "same_apartment"}),
        state={"factory": True, "phase": "NONE"}, args={"riid": "async", "aggregate": True}),
    row("CreateCall", ("COM-CF-03",),
        out(Exact(codes.E_NOINTERFACE), "not an asynchronous interface"),
        state={"factory": True, "phase": "NONE"}, args={"riid": "sync"}),
    not_offered("CreateCall", ("COM-CF-10",),
                "this slot already holds a call object; another CreateCall makes another object, "
                "which is another slot",
                state={"factory": True, "phase": ("IDLE", "PENDING", "SIGNALED", "RELEASED")}),

    # --- Begin_ ------------------------------------------------------------------------------
    row("Begin_", ("COM-BEGIN-01", "COM-BEGIN-04", "COM-FIN-04"),
        out(AnySuccess(Family.HRESULT), "call started",
            phase="PENDING", held=True, cancel=False, out=0),
        state={"phase": "IDLE"}),
    row("Begin_", ("COM-BEGIN-02", "COM-CF-10"), *begin_rejected(),
        state={"phase": IN_FLIGHT, "cancel": False}),
    row("Begin_", ("COM-BEGIN-03", "COM-CANCEL-03"), *begin_rejected(),
        state={"phase": IN_FLIGHT, "cancel": True}),
    not_offered("Begin_", ("COM-REL-01",), NO_OBJECT, state={"phase": GONE}),

    # --- Wait --------------------------------------------------------------------------------
    row("Wait", ("COM-WAIT-02", "COM-WAIT-05", "COM-WAIT-09"),
        out(OK, "the call is done: Finish_ may be called"),
        state={"phase": "SIGNALED"}),
    row("Wait", ("COM-WAIT-03", "COM-WAIT-04", "COM-WAIT-05", "COM-WAIT-09"),
        *wait_timed_out(),
        state={"phase": "PENDING", "cancel": False}, args={"timeout": ("zero", "finite")}),
    row("Wait", ("COM-WAIT-03", "COM-WAIT-04", "COM-CANCEL-04", "COM-CANCEL-11"),
        *wait_timed_out_unless_released(),
        out(OK, "the cancel released the client", phase="SIGNALED",
            when={"cancel_releases_client": "at_once"}),
        state={"phase": "PENDING", "cancel": True}, args={"timeout": ("zero", "finite")}),
    not_offered("Wait", ("COM-WAIT-05",),
                "INFINITE would block until the server signals, and the harness holds the server",
                state={"phase": "PENDING"}, args={"timeout": "infinite"}),
    row("Wait", ("COM-WAIT-07", "COM-WAIT-05"),
        out(Exact(codes.RPC_E_NO_SYNC), "nothing to wait on"),
        out(OK, "still signalled from the last call"),
        *wait_timed_out(),
        state={"phase": "IDLE"}, args={"timeout": ("zero", "finite")},
        note="no call in flight: the documentation gives several readings"),
    not_offered("Wait", ("COM-WAIT-07",),
                "INFINITE with no call in flight may block forever",
                state={"phase": "IDLE"}, args={"timeout": "infinite"}),
    not_offered("Wait", ("COM-REL-01",), NO_OBJECT, state={"phase": GONE}),

    # --- Finish_ -----------------------------------------------------------------------------
    row("Finish_", ("COM-FIN-01", "COM-FIN-04", "COM-SRV-04"),
        out(OK, "outputs delivered", outputs={"out": Var("out")}, phase="IDLE", out=0),
        state={"phase": "SIGNALED", "cancel": False}),
    row("Finish_", ("COM-FIN-05", "COM-CANCEL-03", "COM-CANCEL-09"),
        *call_cancelled("cancelled", phase="IDLE", cancel=False),
        state={"phase": "SIGNALED", "cancel": True, "out": 0, "held": False}),
    row("Finish_", ("COM-FIN-05", "COM-CANCEL-03", "COM-CANCEL-09", "COM-CANCEL-11"),
        *call_cancelled("cancelled; the server's late result will be discarded",
                        phase="IDLE", cancel=False, held=False, orphan=True),
        state={"phase": ("SIGNALED", "PENDING"), "cancel": True, "out": 0, "held": True}),
    row("Finish_", ("COM-FIN-05", "COM-CANCEL-04", "COM-CANCEL-09"),
        *call_cancelled("cancelled", phase="IDLE", cancel=False, out=0),
        out(OK, "completed before the cancel took effect", outputs={"out": Var("out")},
            phase="IDLE", cancel=False, out=0),
        state={"phase": "SIGNALED", "cancel": True, "out": (1, 2)}),
    undefined("Finish_", ("COM-FIN-03",),
              "Finish_ before Wait reported S_OK: the client 'cannot' do this; no result given",
              state={"phase": "PENDING", "cancel": False}),
    undefined("Finish_", ("COM-FIN-05",),
              "a pending, cancelled call whose server is no longer held cannot arise; "
              "no result given",
              state={"phase": "PENDING", "cancel": True, "held": False}),
    undefined("Finish_", ("COM-FIN-05",),
              "a cancelled call with outputs still held by the server cannot arise",
              state={"phase": "PENDING", "cancel": True, "out": (1, 2), "held": True}),
    row("Finish_", ("COM-FIN-02",),
        out(Exact(codes.RPC_E_CALL_COMPLETE), "no call in progress"),
        state={"phase": "IDLE"}),
    not_offered("Finish_", ("COM-REL-01",), NO_OBJECT, state={"phase": GONE}),

    # --- Cancel ------------------------------------------------------------------------------
    row("Cancel", ("COM-CANCEL-02", "COM-CANCEL-05"),
        out(OK, "cancel request issued", cancel=True),
        state={"phase": "PENDING", "cancel": False, "cancellable": True}),
    row("Cancel", ("COM-CANCEL-07",),
        out(Exact(codes.CO_E_CANCEL_DISABLED), "cancellation not enabled"),
        state={"phase": "PENDING", "cancel": False, "cancellable": False}),
    row("Cancel", ("COM-CANCEL-06",), *call_cancelled("already cancelled"),
        state={"phase": "PENDING", "cancel": True}),
    row("Cancel", ("COM-CANCEL-06", "COM-CANCEL-08"),
        *call_cancelled("already cancelled"),
        out(Exact(codes.RPC_E_CALL_COMPLETE), "the call already completed"),
        state={"phase": "SIGNALED", "cancel": True}),
    row("Cancel", ("COM-CANCEL-08", "COM-CANCEL-02"),
        out(Exact(codes.RPC_E_CALL_COMPLETE), "the call already completed",
            when={"cancel_after_signal": "RPC_E_CALL_COMPLETE"}),
        out(OK, "cancel request issued before Finish_", cancel=True,
            when={"cancel_after_signal": "accepted"}),
        state={"phase": "SIGNALED", "cancel": False, "cancellable": True}),
    row("Cancel", ("COM-CANCEL-08", "COM-CANCEL-07"),
        out(Exact(codes.RPC_E_CALL_COMPLETE), "the call already completed"),
        out(Exact(codes.CO_E_CANCEL_DISABLED), "cancellation not enabled"),
        state={"phase": "SIGNALED", "cancel": False, "cancellable": False}),
    undefined("Cancel", ("COM-CANCEL-02",),
              "no call between Begin_ and Finish_: outside the window for cancelling",
              state={"phase": "IDLE"}),
    not_offered("Cancel", ("COM-REL-01",), NO_OBJECT, state={"phase": GONE}),

    # --- TestCancel --------------------------------------------------------------------------
    row("TestCancel", ("COM-CANCEL-10",),
        out(Exact(codes.RPC_E_CALL_CANCELED), "cancelled"),
        state={"phase": IN_FLIGHT, "cancel": True}),
    row("TestCancel", ("COM-CANCEL-10",),
        out(Exact(codes.RPC_S_CALLPENDING), "not cancelled"),
        state={"phase": IN_FLIGHT, "cancel": False}),
    undefined("TestCancel", ("COM-CANCEL-02",), "no call in progress: no result documented",
              state={"phase": "IDLE"}),
    not_offered("TestCancel", ("COM-REL-01",), NO_OBJECT, state={"phase": GONE}),

    # --- Release -----------------------------------------------------------------------------
    row("Release", ("COM-FIN-04",),
        out(Returns(0, "references left"), "released", phase="RELEASED"),
        state={"phase": "IDLE"}),
    row("Release", ("COM-REL-01",),
        out(Returns(0, "references left"), "released; COM cleans up the call",
            phase="RELEASED", cancel=False, out=0),
        state={"phase": IN_FLIGHT, "held": False}),
    row("Release", ("COM-REL-01", "COM-REL-02"),
        out(Returns(0, "references left"), "released; the server's call is abandoned",
            phase="RELEASED", cancel=False, out=0, held=False, orphan=True),
        state={"phase": IN_FLIGHT, "held": True}),
    not_offered("Release", ("COM-REL-01",), NO_OBJECT, state={"phase": GONE}),

    # --- the synchronous method, for comparison ----------------------------------------------
    row("sync_call", ("COM-SRV-03", "COM-SRV-04", "COM-FIN-01"),
        out(OK, "synchronous result", outputs={"out": Arg("out")})),

    # --- STA modal loop ----------------------------------------------------------------------
    row("probe_sta_wait", ("COM-WAIT-06", "COM-WAIT-03"),
        *sta_wait_pumped(),
        state={"phase": "PENDING", "cancel": False}),
    not_offered("probe_sta_wait", ("COM-WAIT-06",),
                "the probe needs a call that stays pending through the wait",
                state={"phase": ("NONE", "IDLE", "SIGNALED", "RELEASED")}),
    not_offered("probe_sta_wait", ("COM-WAIT-06",),
                "after a cancel the wait may end at once",
                state={"phase": "PENDING", "cancel": True}),

    # --- the test server ---------------------------------------------------------------------
    row("server_signal", ("COM-SRV-05", "COM-SYNC-01", "COM-BEGIN-01"),
        out(OK, "signalled", phase="SIGNALED", out=Arg("out"), held=False),
        state={"held": True, "phase": "PENDING"}, args={"then_impersonate": False}),
    row("server_signal", ("COM-SRV-06", "COM-SRV-05"),
        out(OK, "signalled; impersonation refused afterwards",
            outputs={"impersonate": AnyFailure(Family.HRESULT)},
            phase="SIGNALED", out=Arg("out"), held=False),
        state={"held": True, "phase": "PENDING"}, args={"then_impersonate": True}),
    row("server_signal", ("COM-CANCEL-11", "COM-CANCEL-04"),
        out(OK, "late result discarded", held=False),
        state={"held": True, "phase": "SIGNALED"}),
    not_offered("server_signal", ("COM-SRV-05",), "the test server holds no current call",
                state={"held": False}),
    not_offered("server_signal", ("COM-SRV-05",), "a held call always has a call object in "
                "flight", state={"held": True, "phase": ("NONE", "IDLE", "RELEASED")}),
    row("server_signal_late", ("COM-REL-01", "COM-REL-02", "COM-CANCEL-11"),
        out(Anything("COM-REL-02: the server's view after the client left is unverified"),
            "late result of an abandoned call", orphan=False),
        state={"orphan": True}),
    not_offered("server_signal_late", ("COM-REL-01",), "no abandoned call is held",
                state={"orphan": False}),
    row("server_test_cancel", ("COM-CANCEL-10", "COM-CANCEL-11"),
        out(Exact(codes.RPC_E_CALL_CANCELED), "the client cancelled"),
        state={"held": True, "cancel": True}),
    row("server_test_cancel", ("COM-CANCEL-10",),
        out(Exact(codes.RPC_S_CALLPENDING), "not cancelled"),
        state={"held": True, "cancel": False}),
    not_offered("server_test_cancel", ("COM-CANCEL-10",), "the test server holds no current call",
                state={"held": False}),
    row("server_impersonate", ("COM-SRV-07",),
        out(OK, "impersonating before Signal"),
        state={"held": True}),
    not_offered("server_impersonate", ("COM-SRV-07",), "the test server holds no current call",
                state={"held": False}),
)

MACHINE = Machine(
    name="com_call",
    family="com",
    title="COM asynchronous call object (ICallFactory, Begin_/Finish_, ICancelMethodCalls)",
    doc=__doc__ or "",
    fields=FIELDS,
    operations=OPERATIONS,
    rows=ROWS,
    initial=tuple(
        tuple(state) for state in (
            (True, True, "NONE", False, 0, False, False),
            (True, False, "NONE", False, 0, False, False),
            (False, True, "NONE", False, 0, False, False),
        )
    ),
    # Nothing in flight: no call pending or held by the test server (COM-FIN-04, COM-REL-01).
    quiescent=(("phase", ("NONE", "IDLE", "RELEASED")), ("held", (False,)), ("orphan", (False,))),
    diagram_fields=("phase",),
    slot_prefix="c",
    slot_config=(("factory", True), ("cancellable", True)),
    timed=(("Wait", "timeout"),),
)
