"""Thread-level cancellation of synchronous COM calls: the `thread_cancel` machine.

Data only; hold next to spec/DOMAIN.md section 2.8.

One slot is one client thread (its own COM apartment) and one test server. The thread:

* enables and disables cancellation (`CoEnableCallCancellation(NULL)`,
  `CoDisableCallCancellation(NULL)`); the model bounds the nesting at two enables;
* re-initialises COM (`reinitialize`: `CoUninitialize` then `CoInitializeEx`), which turns
  cancellation off (COM-CCAN-06);
* registers its own cancel object, or removes it (`CoSetCancelObject`; the model bounds the stack
  at one registration of the harness's own object);
* makes a synchronous call (`start_sync_call`) that the test server holds until the harness lets it
  return (`server_return`); while the call is pending the thread is blocked in it, so it issues
  nothing else.

Another thread of the harness calls `CoCancelCall` and `CoGetCancelObject` with the client thread's
id, and the test server calls `CoTestCancel` from inside the held call.

Fields:
  count        enables not yet balanced by a disable (0..2)
  call         NONE, PENDING (the client is blocked in the call, the server holds it) or
               RELEASED (cancelled: the client thread got its result and is free again, the server
               still holds the call)
  cancellable  whether cancellation was enabled when the pending call started (COM-CCAN-05:
               sampled then, never changed while the call runs)
  registered   how many of the harness's own cancel objects are registered on the thread (0..1)

An asynchronous call on the same thread is not part of this machine: COM-CCAN-01 (these functions
do not act on asynchronous calls) is cited only by the rows where the thread has no synchronous
call, and no obligation exercises it.
"""

from __future__ import annotations

from callgate.model import codes
from callgate.model.tables.shared import call_cancelled
from callgate.model.tables.table import not_offered, out, row, undefined
from callgate.model.transitions import Actor, Exact, Field, Machine, Operation, Param, Plus

OK = Exact(codes.S_OK)
MAX_ENABLES = 2
COUNTS = tuple(range(MAX_ENABLES + 1))
FREE = ("NONE", "RELEASED")  # the client thread is not blocked in a call
BLOCKED = "the client thread is blocked in its synchronous call"
SERVER_IDLE = "the test server holds no call from this thread"
SERVER_BUSY = "the test server still holds this thread's previous call"
IIDS = ("ICancelMethodCalls", "IClassFactory")
OBJECTS = ("cancel_object", "plain_object", "NULL")
RESERVED = ("NULL", "non_NULL")


OPERATIONS = (
    Operation("CoEnableCallCancellation", Actor.CLIENT,
              "CoEnableCallCancellation on the client thread.",
              (Param("pReserved", RESERVED, "NULL, or a non-NULL pointer (reserved)"),),
              capability="com.thread_cancel"),
    Operation("CoDisableCallCancellation", Actor.CLIENT,
              "CoDisableCallCancellation on the client thread.",
              (Param("pReserved", RESERVED, "NULL, or a non-NULL pointer (reserved)"),),
              capability="com.thread_cancel"),
    Operation("reinitialize", Actor.CLIENT,
              "CoUninitialize then CoInitializeEx on the client thread; the code is "
              "CoInitializeEx's.", capability="com.thread_cancel"),
    Operation("start_sync_call", Actor.CLIENT,
              "The client thread starts the synchronous IFoo::M; the test server holds it. The "
              "code is the adapter's: S_OK once the server has received the call.",
              capability="com.thread_cancel.call"),
    Operation("CoCancelCall", Actor.CLIENT,
              "CoCancelCall(client thread id, 0) from another thread.",
              capability="com.thread_cancel.call"),
    Operation("CoGetCancelObject", Actor.CLIENT,
              "CoGetCancelObject(client thread id, iid, &pUnk) from another thread; output `own` "
              "says whether the object returned is the harness's own cancel object.",
              (Param("iid", IIDS, "IID_ICancelMethodCalls, or IID_IClassFactory (which no cancel "
                                  "object here supports)"),),
              capability="com.thread_cancel.object"),
    Operation("CoSetCancelObject", Actor.CLIENT,
              "CoSetCancelObject on the client thread: the harness's own cancel object (it "
              "exposes ICancelMethodCalls), an object without ICancelMethodCalls, or NULL; output "
              "`held` is how many references the runtime holds on the object passed (on the "
              "object removed, for NULL).",
              (Param("pUnk", OBJECTS, "which object"),),
              capability="com.thread_cancel.object"),
    Operation("server_test_cancel", Actor.SERVER,
              "CoTestCancel from inside the call the test server holds.",
              capability="com.thread_cancel.call"),
    Operation("server_return", Actor.SERVER,
              "The test server returns from the held call; the code is the HRESULT the client "
              "thread's call returned.",
              capability="com.thread_cancel.call"),
)

ROWS = (
    # --- enable and disable (COM-CCAN-02..04, -07) -------------------------------------------
    row("CoEnableCallCancellation", ("COM-CCAN-03", "COM-CCAN-02"),
        out(OK, "enabled; one more enable to balance", count=Plus("count", 1)),
        state={"call": FREE, "count": range(0, MAX_ENABLES)}, args={"pReserved": "NULL"}),
    not_offered("CoEnableCallCancellation", ("COM-CCAN-03",),
                f"the model bounds the nesting at {MAX_ENABLES} enables",
                state={"call": FREE, "count": MAX_ENABLES}, args={"pReserved": "NULL"}),
    row("CoDisableCallCancellation", ("COM-CCAN-04",),
        out(OK, "the balancing disable: cancellation is off", count=0),
        state={"call": FREE, "count": 1}, args={"pReserved": "NULL"}),
    row("CoDisableCallCancellation", ("COM-CCAN-04", "COM-CCAN-03"),
        out(Exact(codes.CO_E_CANCEL_DISABLED), "enables remain: cancellation stays enabled",
            count=Plus("count", -1), when={"disable_nested_code": "CO_E_CANCEL_DISABLED"}),
        out(OK, "enables remain: cancellation stays enabled",
            count=Plus("count", -1), when={"disable_nested_code": "S_OK"}),
        state={"call": FREE, "count": range(2, MAX_ENABLES + 1)}, args={"pReserved": "NULL"},
        note="D-10: the page says CO_E_CANCEL_DISABLED, Wine returns S_OK"),
    undefined("CoDisableCallCancellation", ("COM-CCAN-04",),
              "a disable with no enable outstanding: the page gives no result (Wine returns "
              "CO_E_CANCEL_DISABLED, D-10)",
              state={"call": FREE, "count": 0}, args={"pReserved": "NULL"}),
    *(undefined(op, ("COM-CCAN-07",), "pReserved must be NULL; no result is given otherwise",
                state={"call": FREE}, args={"pReserved": "non_NULL"})
      for op in ("CoEnableCallCancellation", "CoDisableCallCancellation")),
    *(not_offered(op, ("COM-CCAN-05",), BLOCKED, state={"call": "PENDING"})
      for op in ("CoEnableCallCancellation", "CoDisableCallCancellation")),

    # --- re-initialisation (COM-CCAN-06) -------------------------------------------------------
    row("reinitialize", ("COM-CCAN-06",),
        out(OK, "COM re-initialised: cancellation is disabled", count=0),
        state={"call": "NONE", "registered": 0}),
    not_offered("reinitialize", ("COM-CCAN-06",),
                "the harness removes its own cancel object before uninitialising",
                state={"call": "NONE", "registered": 1}),
    not_offered("reinitialize", ("COM-CCAN-06",),
                "a call of this thread is still in progress (blocked, or held by the server)",
                state={"call": ("PENDING", "RELEASED")}),

    # --- the synchronous call ------------------------------------------------------------------
    row("start_sync_call", ("COM-CCAN-05", "COM-CCAN-02"),
        out(OK, "started with cancellation disabled", call="PENDING", cancellable=False),
        state={"call": "NONE", "count": 0}),
    row("start_sync_call", ("COM-CCAN-05", "COM-CCAN-02"),
        out(OK, "started with cancellation enabled", call="PENDING", cancellable=True),
        state={"call": "NONE", "count": range(1, MAX_ENABLES + 1)}),
    not_offered("start_sync_call", ("COM-CCAN-05",), BLOCKED, state={"call": "PENDING"}),
    not_offered("start_sync_call", ("COM-CCAN-05",), SERVER_BUSY, state={"call": "RELEASED"}),
    row("server_return", ("COM-CCAN-05",),
        out(OK, "the call returns normally", call="NONE", cancellable=False),
        state={"call": "PENDING"}),
    row("server_return", ("COM-CCAN-08", "COM-CANCEL-11", "COM-CANCEL-09"),
        *call_cancelled("the server returns; the client's call had returned cancelled and the "
                        "late result is discarded", call="NONE", cancellable=False),
        state={"call": "RELEASED"}),
    not_offered("server_return", ("COM-CCAN-05",), SERVER_IDLE, state={"call": "NONE"}),

    # --- CoCancelCall from another thread (COM-CCAN-08, -02, -05) ------------------------------
    row("CoCancelCall", ("COM-CCAN-08", "COM-CCAN-02", "COM-CCAN-05", "COM-CANCEL-11"),
        out(OK, "cancel requested: the client thread is released", call="RELEASED"),
        state={"call": "PENDING", "cancellable": True}),
    row("CoCancelCall", ("COM-CCAN-08", "COM-CCAN-02", "COM-CCAN-05"),
        out(Exact(codes.CO_E_CANCEL_DISABLED), "cancellation was not enabled when the call "
                                               "started"),
        state={"call": "PENDING", "cancellable": False}),
    row("CoCancelCall", ("COM-CCAN-08",),
        out(Exact(codes.RPC_E_CALL_CANCELED), "already cancelled"),
        out(Exact(codes.E_NOINTERFACE), "the released call no longer has a cancel object"),
        state={"call": "RELEASED", "registered": 0},
        note="both conditions of COM-CCAN-08 hold (already cancelled; the client thread left the "
             "call, so no cancel object may be registered) and no precedence is given"),
    row("CoCancelCall", ("COM-CCAN-08", "COM-CCAN-01"),
        out(Exact(codes.E_NOINTERFACE), "no cancel object registered"),
        state={"call": "NONE", "registered": 0, "count": range(1, MAX_ENABLES + 1)}),
    row("CoCancelCall", ("COM-CCAN-08", "COM-CCAN-02", "COM-CCAN-01"),
        out(Exact(codes.E_NOINTERFACE), "no cancel object registered"),
        out(Exact(codes.CO_E_CANCEL_DISABLED), "cancellation not enabled on the thread"),
        state={"call": "NONE", "registered": 0, "count": 0},
        note="both conditions of COM-CCAN-08 hold and no precedence is given"),
    undefined("CoCancelCall", ("COM-CCAN-08", "COM-CANCEL-09"),
              "the topmost registered object may be the harness's own: the result is its "
              "Cancel's, which is up to its implementer",
              state={"call": FREE, "registered": 1}),

    # --- CoTestCancel on the server (COM-CCAN-09) ----------------------------------------------
    row("server_test_cancel", ("COM-CCAN-09",),
        out(Exact(codes.RPC_S_CALLPENDING), "not cancelled"),
        state={"call": "PENDING"}),
    row("server_test_cancel", ("COM-CCAN-09", "COM-CANCEL-11"),
        out(Exact(codes.RPC_E_CALL_CANCELED), "cancelled"),
        state={"call": "RELEASED"}),
    not_offered("server_test_cancel", ("COM-CCAN-09",), SERVER_IDLE, state={"call": "NONE"}),

    # --- cancel objects (COM-CCAN-10, -11) -----------------------------------------------------
    row("CoGetCancelObject", ("COM-CCAN-10",),
        out(OK, "the pending call's cancel object (the innermost)", outputs={"own": False}),
        state={"call": "PENDING"}, args={"iid": "ICancelMethodCalls"}),
    undefined("CoGetCancelObject", ("COM-CCAN-10",),
              "which interfaces beyond ICancelMethodCalls the runtime's cancel object supports "
              "is not documented",
              state={"call": "PENDING"}, args={"iid": "IClassFactory"}),
    row("CoGetCancelObject", ("COM-CCAN-10", "COM-CCAN-11"),
        out(OK, "the harness's own cancel object", outputs={"own": True}),
        state={"call": "NONE", "registered": 1}, args={"iid": "ICancelMethodCalls"}),
    row("CoGetCancelObject", ("COM-CCAN-10",),
        out(Exact(codes.E_NOINTERFACE), "the cancel object does not support the iid"),
        state={"call": "NONE", "registered": 1}, args={"iid": "IClassFactory"}),
    undefined("CoGetCancelObject", ("COM-CCAN-10",),
              "no cancel object is registered on the thread: the page gives no result",
              state={"call": "NONE", "registered": 0}),
    undefined("CoGetCancelObject", ("COM-CCAN-10",),
              "whether a cancelled call's registration outlives the client's return is not "
              "documented", state={"call": "RELEASED"}),
    row("CoSetCancelObject", ("COM-CCAN-11",),
        out(OK, "registered and AddRef'd", outputs={"held": 1}, registered=1),
        state={"call": "NONE", "registered": 0}, args={"pUnk": "cancel_object"}),
    not_offered("CoSetCancelObject", ("COM-CCAN-11",),
                "the model bounds the stack at one registration of the harness's object",
                state={"call": "NONE", "registered": 1}, args={"pUnk": "cancel_object"}),
    row("CoSetCancelObject", ("COM-CCAN-11",),
        out(Exact(codes.E_NOINTERFACE), "the object has no ICancelMethodCalls",
            outputs={"held": 0}),
        state={"call": "NONE"}, args={"pUnk": "plain_object"}),
    row("CoSetCancelObject", ("COM-CCAN-11",),
        out(OK, "the topmost registration removed and Released", outputs={"held": 0},
            registered=0),
        state={"call": "NONE", "registered": 1}, args={"pUnk": "NULL"}),
    undefined("CoSetCancelObject", ("COM-CCAN-11",),
              "NULL with nothing registered: no registration to remove, no result given",
              state={"call": "NONE", "registered": 0}, args={"pUnk": "NULL"}),
    undefined("CoSetCancelObject", ("COM-CCAN-11",),
              "whether a cancelled call's registration is still the topmost one is not "
              "documented", state={"call": "RELEASED"}),
    not_offered("CoSetCancelObject", ("COM-CCAN-11",), BLOCKED, state={"call": "PENDING"}),
)

MACHINE = Machine(
    name="thread_cancel",
    family="com",
    title="Thread-level cancellation of synchronous calls (CoEnableCallCancellation, "
          "CoCancelCall, CoTestCancel, CoGetCancelObject, CoSetCancelObject)",
    doc=__doc__ or "",
    fields=(
        Field("count", COUNTS, "enables not yet balanced by a disable"),
        Field("call", ("NONE", "PENDING", "RELEASED"),
              "the thread's synchronous call: none, pending, or cancelled and released while "
              "the server still holds it"),
        Field("cancellable", (False, True), "cancellation was enabled when the call started"),
        Field("registered", (0, 1), "the harness's own cancel objects registered"),
    ),
    operations=OPERATIONS,
    rows=ROWS,
    initial=((0, "NONE", False, 0),),
    codes=codes.Family.HRESULT,
    quiescent=(("call", ("NONE",)), ("registered", (0,))),
    diagram_fields=("count", "call", "cancellable", "registered"),
    slot_prefix="t",
)
