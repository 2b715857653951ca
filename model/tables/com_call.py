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
               accepted, the server still holds its processing), SIGNALED (the server signalled:
               Begin_ has returned, outputs ready), RELEASED (final Release)
  cancel       ICancelMethodCalls::Cancel was accepted for the current call
  out          the [out] value the server signalled for the current call (0: none yet)
  held         the test server still holds the current call's Begin_ processing (exactly while
               the call is PENDING: nothing but the server's Signal ends Begin_ processing, and a
               Wait returns S_OK only once it has, COM-WAIT-02)
  orphan       how many calls the client abandoned that the test server still holds: a count,
               whose bound is 1 because only the final Release abandons a held call (COM-REL-01)
               and nothing follows it; the late Signal of each changes nothing the client sees
  waited       a Wait has returned S_OK since the server signalled the current call: with a
               CLSID_StdEvent behind the call object that Wait consumed the signal (COM-SYNC-03)
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
    Plus,
    Var,
)

LIVE = ("IDLE", "PENDING", "SIGNALED")
GONE = ("NONE", "RELEASED")
IN_FLIGHT = ("PENDING", "SIGNALED")
NOT_HELD = ("NONE", "IDLE", "SIGNALED", "RELEASED")
OK = Exact(codes.S_OK)
INFINITE = 0xFFFFFFFF  # ulSeconds INFINITE
MAX_ORPHANS = 1
WAIT_POINT = "call_wait_timeout_code"

FIELDS = (
    Field("factory", (True, False), "the server object supports asynchronous calls"),
    Field("cancellable", (True, False), "cancellation enabled on the server's processing thread"),
    Field("phase", ("NONE", "IDLE", "PENDING", "SIGNALED", "RELEASED"), "the call object's phase"),
    Field("cancel", (False, True), "Cancel was accepted for the current call"),
    Field("out", (0, 1, 2), "[out] value signalled for the current call; 0 before the signal"),
    Field("held", (False, True), "the test server holds the current call"),
    Field("orphan", tuple(range(MAX_ORPHANS + 1)),
          "how many abandoned calls the test server still holds"),
    Field("waited", (False, True), "a Wait returned S_OK since the server signalled"),
)

OPERATIONS = (
    Operation("QueryInterface", Actor.CLIENT,
              "IUnknown::QueryInterface: ICallFactory on the server object, the others on the "
              "call object (AsyncIFoo: the asynchronous interface, COM-CF-07).",
              (Param("iid", ("ICallFactory", "ISynchronize", "ICancelMethodCalls",
                             "IClientSecurity", "AsyncIFoo"), "the interface asked for"),),
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
              (Param("seconds", (0, 1, INFINITE),
                     "ulSeconds: 0, one second (a finite wait for the server), or INFINITE "
                     "(0xFFFFFFFF)"),), capability="com.cancel"),
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
NOT_HELD_NOTE = "the test server holds no current call"
RELEASE_VALUE = Anything("IUnknown::Release's value: no rule gives it")


def _with_event(event: str, outcomes: tuple[Outcome, ...]) -> tuple[Outcome, ...]:
    """The outcomes, allowed when the call object aggregates `event` (call_object_event)."""
    return tuple(dataclasses.replace(o, when=(*o.when, ("call_object_event", event)))
                 for o in outcomes)


def sta_wait_pumped() -> tuple[Outcome, ...]:
    """A finite Wait on an STA thread times out having run the modal loop: the window message
    posted before it was dispatched during the wait (COM-WAIT-06)."""
    return tuple(dataclasses.replace(o, outputs=(*o.outputs, ("pumped", Const(True))))
                 for o in wait_timed_out(WAIT_POINT))


ROWS = (
    # --- QueryInterface ----------------------------------------------------------------------
    row("QueryInterface", ("COM-CF-01", "COM-SRV-01"),
        out(OK, "supports asynchronous calls: the proxy offers a proxy call object",
            rules=("COM-CF-09",), when={"call_object_origin": "standard_marshaling"}),
        out(OK, "supports asynchronous calls",
            when={"call_object_origin": "same_apartment"}),
        state={"factory": True}, args={"iid": "ICallFactory"},
        note="through a standard proxy the client obtains a proxy call object by this query "
             "(COM-CF-09: it always can)"),
    row("QueryInterface", ("COM-CF-01",),
        out(Exact(codes.E_NOINTERFACE), "no asynchronous calls"),
        state={"factory": False}, args={"iid": "ICallFactory"}),
    row("QueryInterface", ("COM-WAIT-01", "COM-SYNC-06"),
        out(OK, "the call object exposes ISynchronize"),
        state={"phase": LIVE}, args={"iid": "ISynchronize"}),
    row("QueryInterface", ("COM-CF-07",),
        out(OK, "the call object answers for the asynchronous interface"),
        state={"phase": LIVE}, args={"iid": "AsyncIFoo"},
        note="seed 000, step 3: a client that did not ask CreateCall for AsyncIFoo queries the "
             "call object for it"),
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
                args={"iid": ("ISynchronize", "ICancelMethodCalls", "IClientSecurity",
                              "AsyncIFoo")}),

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
    # RPC-MISC-04: Begin_ on the Async interface is COM's way to make an asynchronous RPC.
    row("Begin_", ("COM-BEGIN-01", "COM-BEGIN-04", "COM-FIN-04", "RPC-MISC-04"),
        out(AnySuccess(Family.HRESULT), "call started",
            phase="PENDING", held=True, cancel=False, out=0, waited=False),
        state={"phase": "IDLE"}),
    row("Begin_", ("COM-BEGIN-02", "COM-CF-10"), *begin_rejected(),
        state={"phase": IN_FLIGHT, "cancel": False}),
    row("Begin_", ("COM-BEGIN-03", "COM-CANCEL-03"), *begin_rejected(),
        state={"phase": IN_FLIGHT, "cancel": True}),
    not_offered("Begin_", ("COM-REL-01",), NO_OBJECT, state={"phase": GONE}),

    # --- Wait --------------------------------------------------------------------------------
    row("Wait", ("COM-WAIT-02", "COM-WAIT-05", "COM-WAIT-09"),
        out(OK, "the call is done: Finish_ may be called", waited=True),
        state={"phase": "SIGNALED", "waited": False}),
    row("Wait", ("COM-SYNC-06", "COM-WAIT-05"),
        *_with_event("ManualResetEvent", (
            out(OK, "still signalled: a manual-reset event stays signalled",
                rules=("COM-SYNC-04",)),)),
        *_with_event("StdEvent", wait_timed_out(WAIT_POINT, rules=("COM-SYNC-03",))),
        state={"phase": "SIGNALED", "waited": True}, args={"timeout": ("zero", "finite")},
        note="a repeated Wait: the call object aggregates either system event (COM-SYNC-06)"),
    not_offered("Wait", ("COM-SYNC-06", "COM-SYNC-03"),
                "with a CLSID_StdEvent behind the call object the first S_OK reset it: INFINITE "
                "would wait for a Signal no one sends",
                state={"phase": "SIGNALED", "waited": True}, args={"timeout": "infinite"}),
    row("Wait", ("COM-WAIT-02", "COM-WAIT-03", "COM-WAIT-04", "COM-WAIT-05", "COM-WAIT-09"),
        *wait_timed_out(WAIT_POINT),
        state={"phase": "PENDING"}, args={"timeout": ("zero", "finite")},
        note="the server still holds Begin_, cancelled or not: 'If Wait returns S_OK, the Begin_ "
             "method has returned' (seed 000), so it does not"),
    not_offered("Wait", ("COM-WAIT-05",),
                "INFINITE would block until the server signals, and the harness holds the server",
                state={"phase": "PENDING"}, args={"timeout": "infinite"}),
    row("Wait", ("COM-WAIT-07", "COM-WAIT-05"),
        out(Exact(codes.RPC_E_NO_SYNC), "nothing to wait on"),
        out(OK, "still signalled from the last call"),
        *wait_timed_out(WAIT_POINT),
        state={"phase": "IDLE"}, args={"timeout": ("zero", "finite")},
        note="no call in flight: the documentation gives several readings"),
    not_offered("Wait", ("COM-WAIT-07",),
                "INFINITE with no call in flight may block forever",
                state={"phase": "IDLE"}, args={"timeout": "infinite"}),
    not_offered("Wait", ("COM-REL-01",), NO_OBJECT, state={"phase": GONE}),

    # --- Finish_ -----------------------------------------------------------------------------
    row("Finish_", ("COM-FIN-01", "COM-FIN-04", "COM-SRV-04"),
        out(OK, "outputs delivered", outputs={"out": Var("out")}, phase="IDLE", out=0,
            waited=False),
        state={"phase": "SIGNALED", "cancel": False}),
    row("Finish_", ("COM-FIN-05", "COM-CANCEL-03", "COM-CANCEL-09", "COM-CANCEL-04"),
        *call_cancelled("cancelled", phase="IDLE", cancel=False, out=0, waited=False),
        out(OK, "completed before the cancel took effect", outputs={"out": Var("out")},
            rules=("COM-CANCEL-05", "COM-FIN-01"), phase="IDLE", cancel=False, out=0,
            waited=False),
        state={"phase": "SIGNALED", "cancel": True}),
    undefined("Finish_", ("COM-FIN-03",),
              "Finish_ before Wait reported S_OK (the server still holds Begin_, cancelled or "
              "not): the client 'cannot' do this; no result given. After a Cancel too, the "
              "client waits for the signal first (COM-FIN-05, DOMAIN.md's state diagram)",
              state={"phase": "PENDING"}),
    row("Finish_", ("COM-FIN-02",),
        out(Exact(codes.RPC_E_CALL_COMPLETE), "no call in progress"),
        state={"phase": "IDLE"}),
    not_offered("Finish_", ("COM-REL-01",), NO_OBJECT, state={"phase": GONE}),

    # --- Cancel ------------------------------------------------------------------------------
    row("Cancel", ("COM-CANCEL-02", "COM-CANCEL-05"),
        out(OK, "cancel request issued", cancel=True),
        state={"phase": "PENDING", "cancel": False, "cancellable": True},
        args={"seconds": (0, 1)},
        note="with ulSeconds 1 the harness holds the server, so the call does not finish within "
             "the timeout: the request stands"),
    not_offered("Cancel", ("COM-CANCEL-05",),
                "ulSeconds INFINITE waits for the server to finish, and the harness holds it",
                state={"phase": "PENDING", "cancel": False, "cancellable": True},
                args={"seconds": INFINITE}),
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
        state={"phase": "SIGNALED", "cancel": False, "cancellable": True}, args={"seconds": 0}),
    row("Cancel", ("COM-CANCEL-08",),
        out(Exact(codes.RPC_E_CALL_COMPLETE), "the call completed within the timeout"),
        state={"phase": "SIGNALED", "cancel": False, "cancellable": True},
        args={"seconds": (1, INFINITE)}),
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
        out(RELEASE_VALUE, "released", phase="RELEASED"),
        state={"phase": "IDLE"}),
    row("Release", ("COM-REL-01",),
        out(RELEASE_VALUE, "released; COM cleans up the call",
            phase="RELEASED", cancel=False, out=0, waited=False),
        state={"phase": "SIGNALED"}),
    row("Release", ("COM-REL-01", "COM-REL-02"),
        out(RELEASE_VALUE, "released; the server's call is abandoned",
            phase="RELEASED", cancel=False, out=0, held=False, orphan=Const(MAX_ORPHANS),
            waited=False),
        state={"phase": "PENDING"},
        note="the final Release abandons the one call in flight: the test server now holds one "
             "abandoned call (none before: no earlier abandonment leaves the object usable)"),
    not_offered("Release", ("COM-REL-01",), NO_OBJECT, state={"phase": GONE}),

    # --- the synchronous method, for comparison ----------------------------------------------
    row("sync_call", ("COM-SRV-03", "COM-SRV-04", "COM-FIN-01"),
        out(OK, "synchronous result", outputs={"out": Arg("out")})),

    # --- STA modal loop ----------------------------------------------------------------------
    row("probe_sta_wait", ("COM-WAIT-06", "COM-WAIT-03"),
        *sta_wait_pumped(),
        state={"phase": "PENDING"}),
    not_offered("probe_sta_wait", ("COM-WAIT-06",),
                "the probe needs a call that stays pending through the wait",
                state={"phase": NOT_HELD}),

    # --- the test server ---------------------------------------------------------------------
    row("server_signal", ("COM-SRV-05", "COM-SYNC-01", "COM-BEGIN-01"),
        out(OK, "signalled", phase="SIGNALED", out=Arg("out"), held=False, waited=False),
        state={"phase": "PENDING", "cancel": False}, args={"then_impersonate": False}),
    row("server_signal", ("COM-CANCEL-11", "COM-SRV-05", "COM-WAIT-02"),
        out(OK, "the server returns after the cancel: Begin_ has returned",
            phase="SIGNALED", out=Arg("out"), held=False, waited=False),
        state={"phase": "PENDING", "cancel": True}, args={"then_impersonate": False},
        note="a server that saw the cancel cleans up and returns early; its Signal still ends "
             "Begin_ for the client, whose Wait now returns S_OK"),
    row("server_signal", ("COM-SRV-06", "COM-SRV-05"),
        out(OK, "signalled; impersonation refused afterwards",
            outputs={"impersonate": AnyFailure(Family.HRESULT)},
            phase="SIGNALED", out=Arg("out"), held=False, waited=False),
        state={"phase": "PENDING"}, args={"then_impersonate": True}),
    not_offered("server_signal", ("COM-SRV-05",), NOT_HELD_NOTE, state={"phase": NOT_HELD}),
    row("server_signal_late", ("COM-REL-01", "COM-REL-02", "COM-CANCEL-11"),
        out(Anything("COM-REL-02: the server's view after the client left is unverified"),
            "late result of an abandoned call", orphan=Plus("orphan", -1)),
        state={"orphan": tuple(range(1, MAX_ORPHANS + 1))}),
    not_offered("server_signal_late", ("COM-REL-01",), "no abandoned call is held",
                state={"orphan": 0}),
    row("server_test_cancel", ("COM-CANCEL-10", "COM-CANCEL-11"),
        out(Exact(codes.RPC_E_CALL_CANCELED), "the client cancelled"),
        state={"phase": "PENDING", "cancel": True}),
    row("server_test_cancel", ("COM-CANCEL-10",),
        out(Exact(codes.RPC_S_CALLPENDING), "not cancelled"),
        state={"phase": "PENDING", "cancel": False}),
    not_offered("server_test_cancel", ("COM-CANCEL-10",), NOT_HELD_NOTE,
                state={"phase": NOT_HELD}),
    row("server_impersonate", ("COM-SRV-07",),
        out(OK, "impersonating before Signal"),
        state={"phase": "PENDING"}),
    not_offered("server_impersonate", ("COM-SRV-07",), NOT_HELD_NOTE,
                state={"phase": NOT_HELD}),
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
            (True, True, "NONE", False, 0, False, 0, False),
            (True, False, "NONE", False, 0, False, 0, False),
            (False, True, "NONE", False, 0, False, 0, False),
        )
    ),
    # Nothing in flight: no call pending or held by the test server (COM-FIN-04, COM-REL-01).
    quiescent=(("phase", ("NONE", "IDLE", "RELEASED")), ("held", (False,)), ("orphan", (0,))),
    diagram_fields=("phase",),
    slot_prefix="c",
    slot_config=(("factory", True), ("cancellable", True)),
    timed=(("Wait", "timeout"),),
)
