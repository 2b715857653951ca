"""The RPC family's table: one asynchronous RPC call, its client handle and its server handle.

Data only; hold next to spec/DOMAIN.md sections 2.12 to 2.16. The manager routine is the
harness's test server (DESIGN.md principle 6): it keeps each dispatched call on its dispatch
thread until the harness says complete, abort or raise, so those are environment actions.

Fields:
  phase       client side: RAW (memory never initialised), INIT (initialised, no call), PENDING
              (call outstanding, server not finished), SENT (the server finished or the client
              cancelled abortively: the final result is on its way), READY (the client saw a
              notification or a final status), DONE (a final RpcAsyncCompleteCall returned)
  notify      the NotificationType of the current or last call
  notes       completion notifications the client observed for the current call
  cancel      RpcAsyncCancelCall requested: no, soft (fAbort FALSE) or abort (fAbort TRUE)
  server      the server handle: none (no call dispatched), held (manager routine holds it),
              gone (destroyed after complete, abort or exception, RPC-SRV-02)
  result      what the client's final completion reports: ok, cancelled, aborted, raised
  may_cancel  a cancel came in time to turn the result into RPC_S_CALL_CANCELLED, or not
              (RPC-CLI-CANCEL-05): the observed completion decides
  reply       the return value the server completed with (0: none)
  code        the code the server aborted or raised with (0: none)
"""

from __future__ import annotations

from callgate.model import codes
from callgate.model.codes import Family
from callgate.model.tables.table import not_offered, out, row, undefined
from callgate.model.transitions import (
    Actor,
    AnyFailure,
    Anything,
    Arg,
    CodeOf,
    Exact,
    Field,
    Machine,
    Operation,
    Outcome,
    Param,
    Returns,
    Row,
    Value,
    Var,
)

NOTIFY = ("None", "Event", "Apc", "Ioc", "Hwnd", "Callback")
NOTIFY_RULE = {"Event": "RPC-CLI-NOTIFY-01", "Apc": "RPC-CLI-NOTIFY-02",
               "Ioc": "RPC-CLI-NOTIFY-03", "Hwnd": "RPC-CLI-NOTIFY-04",
               "Callback": "RPC-CLI-NOTIFY-05"}
ABORT_CODES = (codes.ERROR_ACCESS_DENIED.value, codes.ERROR_NOT_ENOUGH_MEMORY.value)
RPC_OK = Exact(codes.RPC_S_OK)
PENDING_997 = Exact(codes.RPC_S_ASYNC_CALL_PENDING)
FINISHED_FAILURE = AnyFailure(Family.RPC_STATUS, (codes.RPC_S_ASYNC_CALL_PENDING,))
RpcAsyncCallComplete = 0  # RPC_ASYNC_EVENT RpcCallComplete
UNUSED = ("INIT", "DONE")
NO_CALL_HELD = "the test server holds no call for this handle"
CANNOT_ARISE = "cannot arise: the server finishes a call before the client sees it finished"

FIELDS = (
    Field("phase", ("RAW", "INIT", "PENDING", "SENT", "READY", "DONE"), "client-side phase"),
    Field("notify", NOTIFY, "NotificationType of the current or last call"),
    Field("notes", (0, 1), "completion notifications observed for the current call"),
    Field("cancel", ("no", "soft", "abort"), "RpcAsyncCancelCall requested"),
    Field("server", ("none", "held", "gone"), "the server async handle"),
    Field("result", ("none", "ok", "cancelled", "aborted", "raised"), "the final result"),
    Field("may_cancel", (False, True), "the final result may also be RPC_S_CALL_CANCELLED"),
    Field("reply", (0, 1, 2), "the procedure's return value, once the server completed"),
    Field("code", (0, *ABORT_CODES), "the code the server aborted or raised with"),
)

OPERATIONS = (
    Operation("RpcAsyncInitializeHandle", Actor.CLIENT,
              "RpcAsyncInitializeHandle(pAsync, Size); outputs are the fields it sets.",
              (Param("size", ("exact", "smaller", "larger"), "Size against sizeof(RPC_ASYNC_STATE)"),),
              capability="rpc.handle"),
    Operation("AsyncCall", Actor.CLIENT,
              "Call the [async] test procedure through its client stub, with NotificationType "
              "`notify` and the matching member of u filled in (RPC-INIT-04).",
              (Param("notify", NOTIFY, "RPC_NOTIFICATION_TYPES value"),
               Param("binding", ("good", "bad"), "a working binding, or one to no server")),
              capability="rpc.call"),
    Operation("RpcAsyncGetCallStatus", Actor.CLIENT, "RpcAsyncGetCallStatus(pAsync).",
              capability="rpc.call"),
    Operation("RpcAsyncCompleteCall", Actor.CLIENT,
              "RpcAsyncCompleteCall(pAsync, &Reply) on the client; outputs `reply`, and "
              "`resources_open` (the event or port the client supplied is still open).",
              capability="rpc.call"),
    Operation("RpcAsyncCancelCall", Actor.CLIENT, "RpcAsyncCancelCall(pAsync, fAbort).",
              (Param("abort", (False, True), "fAbort"),), capability="rpc.cancel"),
    Operation("wait_notification", Actor.CLIENT,
              "Wait a bounded time (alertably) for the next completion notification; returns 1 "
              "and output `Event` if one arrived, 0 if none did.",
              capability="rpc.call"),
    Operation("invalid_handle", Actor.CLIENT,
              "Call `api` with a zeroed RPC_ASYNC_STATE that was never initialised.",
              (Param("api", ("RpcAsyncGetCallStatus", "RpcAsyncCompleteCall",
                             "RpcAsyncCancelCall", "RpcAsyncAbortCall"), "which function"),),
              capability="rpc.handle"),
    Operation("sync_call", Actor.CLIENT,
              "A synchronous client calls the same asynchronous server procedure; the test "
              "server completes it at once with `reply`.",
              (Param("reply", (1, 2), "the return value"),), capability="rpc.call"),
    Operation("server_complete", Actor.SERVER,
              "The manager routine calls RpcAsyncCompleteCall(pAsync, &reply) on the server handle.",
              (Param("reply", (1, 2), "the return value"),), capability="rpc.call"),
    Operation("server_abort", Actor.SERVER, "RpcAsyncAbortCall(pAsync, code) on the server handle.",
              (Param("code", ABORT_CODES, "ExceptionCode, non-zero"),), capability="rpc.abort"),
    Operation("server_raise", Actor.SERVER,
              "The manager routine raises `code` on the dispatch thread, before any hand-off.",
              (Param("code", ABORT_CODES, "the exception code"),), capability="rpc.raise"),
    Operation("server_test_cancel", Actor.SERVER,
              "RpcServerTestCancel(RpcAsyncGetCallHandle(pAsync)) in the manager routine.",
              capability="rpc.server_test_cancel"),
    Operation("server_test_cancel_idle", Actor.SERVER,
              "RpcServerTestCancel(0) on a server thread that runs no call.",
              capability="rpc.server_test_cancel"),
    Operation("server_handle_live", Actor.SERVER,
              "How many server async handles of this call the runtime still holds (0 or 1).",
              capability="rpc.observe_server_handle"),
)


def _final(result: str, may_cancel: bool, **updates: Value) -> list[Outcome]:
    """The final completion outcomes for a result (RpcAsyncCompleteCall or GetCallStatus)."""
    kept = {"resources_open": True}
    outcomes: list[Outcome] = []
    if result == "ok":
        outcomes.append(out(RPC_OK, "completed", rules=("RPC-CLI-COMPLETE-02",),
                            outputs={"reply": Var("reply"), **kept}, also=updates))
    elif result == "cancelled":
        outcomes.append(out(Exact(codes.RPC_S_CALL_CANCELLED), "cancelled",
                            rules=("RPC-CLI-COMPLETE-04",), outputs=kept, also=updates))
    else:
        source = "RPC-SRV-ABORT-01" if result == "aborted" else "RPC-SRV-EXC-01"
        outcomes.append(out(CodeOf(Var("code"), Family.RPC_STATUS), f"{result}: the code arrives",
                            rules=(source,), outputs=kept, when={"abort_code_delivery": "exact"},
                            also=updates))
        outcomes.append(out(FINISHED_FAILURE, f"{result}: some RPC failure",
                            rules=("RPC-CLI-COMPLETE-05",), outputs=kept,
                            when={"abort_code_delivery": "any_failure"}, also=updates))
    if may_cancel and result != "cancelled":
        outcomes.append(out(Exact(codes.RPC_S_CALL_CANCELLED), "the cancel took effect",
                            rules=("RPC-CLI-CANCEL-05",), outputs=kept, also=updates))
    return outcomes


def _status(result: str, may_cancel: bool, **updates: Value) -> list[Outcome]:
    """Final RpcAsyncGetCallStatus outcomes: RPC_S_OK for success, any non-pending code else."""
    outcomes: list[Outcome] = []
    if result == "ok":
        outcomes.append(out(RPC_OK, "finished", rules=("RPC-CLI-STATUS-02",), also=updates))
    if result != "ok" or may_cancel:
        outcomes.append(out(FINISHED_FAILURE, "finished with a failure",
                            rules=("RPC-CLI-STATUS-03",), also=updates))
    return outcomes


def _completion_rows() -> list[Row]:
    rows: list[Row] = []
    for result in ("ok", "cancelled", "aborted", "raised"):
        for may_cancel in (False, True):
            guard = {"result": result, "may_cancel": may_cancel}
            rows.append(row(
                "RpcAsyncCompleteCall",
                ("RPC-CLI-COMPLETE-01", "RPC-CLI-COMPLETE-03", "RPC-CLI-COMPLETE-06",
                 "RPC-CLI-COMPLETE-10", "RPC-CLI-CANCEL-04"),
                out(PENDING_997, "reply still on its way"),
                *_final(result, may_cancel, phase="DONE"),
                state={"phase": "SENT", **guard}))
            rows.append(row(
                "RpcAsyncCompleteCall",
                ("RPC-CLI-COMPLETE-03", "RPC-CLI-COMPLETE-06", "RPC-CLI-COMPLETE-10",
                 "RPC-CLI-CANCEL-04"),
                *_final(result, may_cancel, phase="DONE"),
                state={"phase": "READY", **guard}))
            rows.append(row(
                "RpcAsyncGetCallStatus", ("RPC-CLI-STATUS-01",),
                out(PENDING_997, "reply still on its way"),
                *_status(result, may_cancel, phase="READY"),
                state={"phase": "SENT", **guard}))
            rows.append(row(
                "RpcAsyncGetCallStatus", ("RPC-CLI-STATUS-03",),
                *_status(result, may_cancel),
                state={"phase": "READY", **guard}))
    for op in ("RpcAsyncCompleteCall", "RpcAsyncGetCallStatus"):
        rows.append(not_offered(op, ("RPC-CLI-STATUS-03",), CANNOT_ARISE,
                                state={"phase": ("SENT", "READY"), "result": "none"}))
    return rows


def _notification_rows() -> list[Row]:
    rows: list[Row] = [
        row("wait_notification", ("RPC-CLI-NOTIFY-06",),
            out(Returns(0, "no notification"), "None: the client polls instead"),
            state={"notify": "None"}),
    ]
    for kind, rule in NOTIFY_RULE.items():
        arrives = out(Returns(1, "notified"), f"{kind} notification", notes=1,
                      outputs={"Event": RpcAsyncCallComplete})
        rows += [
            row("wait_notification", (rule, "RPC-STATE-02", "RPC-CLI-CANCEL-02"),
                out(Returns(1, "notified"), f"{kind} notification", notes=1, phase="READY",
                    outputs={"Event": RpcAsyncCallComplete}),
                state={"notify": kind, "phase": "SENT", "notes": 0}),
            row("wait_notification", (rule, "RPC-STATE-02"), arrives,
                state={"notify": kind, "phase": "READY", "notes": 0}),
            row("wait_notification", (rule, "RPC-CLI-COMPLETE-06"),
                out(Returns(0, "no notification"), "none seen before completion"),
                arrives,
                state={"notify": kind, "phase": "DONE", "notes": 0},
                note="the client completed before it looked: the one notification may be seen "
                     "or may not"),
            row("wait_notification", (rule,),
                out(Returns(0, "no notification"), "exactly one notification per call"),
                state={"notify": kind, "notes": 1}),
            row("wait_notification", (rule, "RPC-CLI-CALL-01", "RPC-CLI-CALL-02"),
                out(Returns(0, "no notification"), "nothing has completed"),
                state={"notify": kind, "phase": ("RAW", "INIT", "PENDING"), "notes": 0}),
        ]
    return rows


def _server_rows() -> list[Row]:
    client_left = ("RAW", "INIT", "SENT", "READY", "DONE")
    late = "the client already cancelled abortively: the server's answer is discarded"
    rows: list[Row] = []
    for cancel, may in (("no", False), ("soft", True), ("abort", True)):
        rows += [
            row("server_complete",
                ("RPC-SRV-COMPLETE-01", "RPC-SRV-COMPLETE-02", "RPC-SRV-COMPLETE-03",
                 "RPC-SRV-COMPLETE-05", "RPC-SRV-COMPLETE-07", "RPC-SRV-02"),
                out(RPC_OK, "completed", phase="SENT", result="ok", reply=Arg("reply"),
                    may_cancel=may, server="gone"),
                state={"server": "held", "phase": "PENDING", "cancel": cancel}),
            row("server_abort", ("RPC-SRV-ABORT-01", "RPC-SRV-02"),
                out(RPC_OK, "aborted", phase="SENT", result="aborted", code=Arg("code"),
                    may_cancel=may, server="gone"),
                state={"server": "held", "phase": "PENDING", "cancel": cancel}),
            row("server_raise", ("RPC-SRV-EXC-01", "RPC-SRV-02"),
                out(Anything("the manager routine raised; nothing returns to it"), "raised",
                    phase="SENT", result="raised", code=Arg("code"), may_cancel=may,
                    server="gone"),
                state={"server": "held", "phase": "PENDING", "cancel": cancel}),
        ]
    rows += [
        row("server_complete", ("RPC-SRV-COMPLETE-06", "RPC-CLI-CANCEL-02", "RPC-SRV-02"),
            out(RPC_OK, late, server="gone"),
            out(AnyFailure(Family.RPC_STATUS), late + " (completion failed)", server="gone"),
            state={"server": "held", "phase": client_left}),
        row("server_abort", ("RPC-SRV-ABORT-01", "RPC-CLI-CANCEL-02", "RPC-SRV-02"),
            out(RPC_OK, late, server="gone"),
            out(AnyFailure(Family.RPC_STATUS), late + " (abort failed)", server="gone"),
            state={"server": "held", "phase": client_left}),
        row("server_raise", ("RPC-SRV-EXC-01", "RPC-CLI-CANCEL-02", "RPC-SRV-02"),
            out(Anything("the manager routine raised"), late, server="gone"),
            state={"server": "held", "phase": client_left}),
        undefined("server_complete", ("RPC-SRV-COMPLETE-04", "RPC-SRV-COMPLETE-05",
                                      "RPC-SRV-ABORT-05"),
                  "the server handle is already destroyed", state={"server": "gone"}),
        undefined("server_abort", ("RPC-SRV-ABORT-02", "RPC-SRV-ABORT-05"),
                  "the server handle is already destroyed", state={"server": "gone"}),
        undefined("server_raise", ("RPC-SRV-EXC-02",),
                  "the call is over: raising now is after the hand-off", state={"server": "gone"}),
        row("server_test_cancel", ("RPC-SRV-CANCEL-01", "RPC-SRV-CANCEL-02", "RPC-SRV-CANCEL-03",
                                   "RPC-STATE-01", "RPC-CLI-CANCEL-03"),
            out(RPC_OK, "the client cancelled"),
            state={"server": "held", "cancel": ("soft", "abort")}),
        row("server_test_cancel", ("RPC-SRV-CANCEL-01", "RPC-SRV-CANCEL-02"),
            out(Exact(codes.RPC_S_CALL_IN_PROGRESS), "not cancelled"),
            state={"server": "held", "cancel": "no"}),
        undefined("server_test_cancel", ("RPC-SRV-COMPLETE-04",),
                  "the server handle is destroyed: touching it is not allowed",
                  state={"server": "gone"}),
        row("server_test_cancel_idle", ("RPC-SRV-CANCEL-01", "RPC-SRV-CANCEL-03"),
            out(Exact(codes.RPC_S_NO_CALL_ACTIVE), "no call on this thread")),
        row("server_handle_live", ("RPC-SRV-02", "RPC-SRV-01"),
            out(Returns(1, "live"), "the manager routine holds the handle"),
            state={"server": "held"}),
        row("server_handle_live", ("RPC-SRV-02",),
            out(Returns(0, "destroyed"), "no live server handle"),
            state={"server": ("none", "gone")}),
    ]
    rows += [not_offered(op, ("RPC-SRV-01",), NO_CALL_HELD, state={"server": "none"})
             for op in ("server_complete", "server_abort", "server_raise", "server_test_cancel")]
    return rows


INIT_OUTPUTS: dict[str, Value] = {
    "Signature": codes.RPC_ASYNC_STATE_SIGNATURE, "Size": "sizeof(RPC_ASYNC_STATE)", "Lock": 0,
    "Flags": 0, "StubInfo": 0, "RuntimeInfo": 0, "Reserved": 0, "UserInfo_kept": True,
}
FRESH: dict[str, Value] = {
    "notes": 0, "cancel": "no", "result": "none", "may_cancel": False, "reply": 0, "code": 0,
}
IN_CALL = ("PENDING", "SENT", "READY")

ROWS: tuple[Row, ...] = (
    # --- RpcAsyncInitializeHandle ------------------------------------------------------------
    # The cancel flag is left alone: the server may still hold the old call, and its
    # RpcServerTestCancel keeps reporting the cancel (RPC-SRV-CANCEL-02); AsyncCall resets it.
    row("RpcAsyncInitializeHandle", ("RPC-INIT-01", "RPC-INIT-08", "RPC-SRV-CANCEL-02"),
        out(RPC_OK, "initialised", outputs=INIT_OUTPUTS, phase="INIT",
            also={k: v for k, v in FRESH.items() if k != "cancel"}),
        state={"phase": ("RAW", "INIT", "DONE")}, args={"size": "exact"}),
    row("RpcAsyncInitializeHandle", ("RPC-INIT-02",),
        out(Exact(codes.RPC_S_INVALID_ARG), "wrong Size"),
        state={"phase": ("RAW", "INIT", "DONE")}, args={"size": ("smaller", "larger")}),
    undefined("RpcAsyncInitializeHandle", ("RPC-INIT-05", "RPC-INIT-07"),
              "re-initialising a handle whose call is outstanding overwrites what the runtime owns",
              state={"phase": IN_CALL}),

    # --- AsyncCall ---------------------------------------------------------------------------
    row("AsyncCall", ("RPC-CLI-CALL-01", "RPC-DECL-01", "RPC-INIT-04", "RPC-INIT-06",
                      "RPC-SRV-01"),
        out(RPC_OK, "call outstanding", phase="PENDING", notify=Arg("notify"), server="held",
            also=FRESH),
        state={"phase": "INIT", "server": ("none", "gone")}, args={"binding": "good"}),
    row("AsyncCall", ("RPC-INIT-08", "RPC-CLI-CALL-01"),
        out(RPC_OK, "reused without re-initialising", phase="PENDING", notify=Arg("notify"),
            server="held", when={"handle_reuse": "reuse_allowed"}, also=FRESH),
        out(FINISHED_FAILURE, "the stub raised: re-initialise first",
            when={"handle_reuse": "reinitialize_required"}),
        state={"phase": "DONE", "server": ("none", "gone")}, args={"binding": "good"}),
    row("AsyncCall", ("RPC-CLI-CALL-02",),
        out(FINISHED_FAILURE, "the stub raised; nothing to complete or cancel"),
        state={"phase": UNUSED}, args={"binding": "bad"}),
    not_offered("AsyncCall", ("RPC-INIT-06",),
                "the test server still holds this handle's previous call",
                state={"phase": UNUSED, "server": "held"}, args={"binding": "good"}),
    undefined("AsyncCall", ("RPC-INIT-01", "RPC-INIT-05"), "the handle was never initialised",
              state={"phase": "RAW"}),
    undefined("AsyncCall", ("RPC-INIT-06", "RPC-INIT-07"),
              "every outstanding call needs its own handle", state={"phase": IN_CALL}),

    # --- RpcAsyncGetCallStatus ---------------------------------------------------------------
    row("RpcAsyncGetCallStatus", ("RPC-CLI-STATUS-01",),
        out(PENDING_997, "call outstanding"), state={"phase": "PENDING"}),
    row("RpcAsyncGetCallStatus", ("RPC-CLI-STATUS-04", "RPC-CLI-COMPLETE-06"),
        out(Exact(codes.RPC_S_INVALID_ASYNC_HANDLE), "no call on this handle",
            when={"unused_handle_status": "RPC_S_INVALID_ASYNC_HANDLE"}),
        out(Exact(codes.RPC_S_INVALID_BINDING), "no call on this handle",
            when={"unused_handle_status": "RPC_S_INVALID_BINDING"}),
        state={"phase": UNUSED}),
    undefined("RpcAsyncGetCallStatus", ("RPC-INIT-03",), "the handle was never initialised",
              state={"phase": "RAW"}),

    # --- RpcAsyncCompleteCall ----------------------------------------------------------------
    row("RpcAsyncCompleteCall", ("RPC-CLI-COMPLETE-01",),
        out(PENDING_997, "not final: the call is still outstanding"), state={"phase": "PENDING"}),
    row("RpcAsyncCompleteCall", ("RPC-CLI-COMPLETE-09",),
        out(Exact(codes.RPC_S_INVALID_ASYNC_HANDLE), "no call on this handle"),
        out(Exact(codes.RPC_S_INVALID_BINDING), "no call on this handle"),
        state={"phase": "INIT"},
        note="open item 4: which code Windows gives for a handle that never carried a call"),
    undefined("RpcAsyncCompleteCall", ("RPC-CLI-COMPLETE-07",),
              "a second completion after a final one", state={"phase": "DONE"}),
    undefined("RpcAsyncCompleteCall", ("RPC-INIT-03",), "the handle was never initialised",
              state={"phase": "RAW"}),
    *_completion_rows(),

    # --- RpcAsyncCancelCall ------------------------------------------------------------------
    row("RpcAsyncCancelCall", ("RPC-CLI-CANCEL-01", "RPC-CLI-CANCEL-02"),
        out(RPC_OK, "cancelled at once on the client", phase="SENT", cancel="abort",
            result="cancelled"),
        state={"phase": "PENDING"}, args={"abort": True}),
    row("RpcAsyncCancelCall", ("RPC-CLI-CANCEL-01", "RPC-CLI-CANCEL-03", "RPC-CLI-CANCEL-07"),
        out(RPC_OK, "the server is told; the client keeps waiting", cancel="soft"),
        state={"phase": "PENDING"}, args={"abort": False}),
    row("RpcAsyncCancelCall", ("RPC-CLI-CANCEL-01", "RPC-CLI-CANCEL-05"),
        out(RPC_OK, "the result may now be cancelled", cancel="abort", may_cancel=True),
        state={"phase": "SENT"}, args={"abort": True}),
    row("RpcAsyncCancelCall", ("RPC-CLI-CANCEL-01", "RPC-CLI-CANCEL-05"),
        out(RPC_OK, "too late to change the result"),
        state={"phase": "SENT"}, args={"abort": False}),
    row("RpcAsyncCancelCall", ("RPC-CLI-CANCEL-01", "RPC-CLI-CANCEL-05"),
        out(RPC_OK, "too late to change the result"),
        state={"phase": "READY"}),
    undefined("RpcAsyncCancelCall", ("RPC-CLI-COMPLETE-07",),
              "cancel after a final completion", state={"phase": "DONE"}),
    undefined("RpcAsyncCancelCall", ("RPC-CLI-CANCEL-06",),
              "no call was initiated on this handle", state={"phase": ("RAW", "INIT")}),

    # --- notifications -----------------------------------------------------------------------
    *_notification_rows(),

    # --- invalid handles ---------------------------------------------------------------------
    row("invalid_handle", ("RPC-CLI-COMPLETE-09",),
        out(Exact(codes.RPC_S_INVALID_ASYNC_HANDLE), "invalid handle"),
        args={"api": "RpcAsyncCompleteCall"}),
    row("invalid_handle", ("RPC-CLI-CANCEL-01",),
        out(Exact(codes.RPC_S_INVALID_ASYNC_HANDLE), "invalid handle"),
        args={"api": "RpcAsyncCancelCall"}),
    row("invalid_handle", ("RPC-SRV-ABORT-04", "RPC-SRV-COMPLETE-08"),
        out(Exact(codes.RPC_S_INVALID_ASYNC_HANDLE), "invalid handle"),
        args={"api": "RpcAsyncAbortCall"}),
    row("invalid_handle", ("RPC-CLI-STATUS-04",),
        out(Exact(codes.RPC_S_INVALID_ASYNC_HANDLE), "invalid handle",
            when={"unused_handle_status": "RPC_S_INVALID_ASYNC_HANDLE"}),
        out(Exact(codes.RPC_S_INVALID_BINDING), "invalid handle",
            when={"unused_handle_status": "RPC_S_INVALID_BINDING"}),
        args={"api": "RpcAsyncGetCallStatus"}),

    # --- a synchronous client of the same server ---------------------------------------------
    row("sync_call", ("RPC-DECL-02", "RPC-DECL-01"),
        out(RPC_OK, "synchronous result", outputs={"reply": Arg("reply")})),

    # --- the test server ---------------------------------------------------------------------
    *_server_rows(),
)

MACHINE = Machine(
    name="rpc_call",
    family="rpc",
    title="Asynchronous RPC call (RPC_ASYNC_STATE, client and server handles)",
    doc=__doc__ or "",
    fields=FIELDS,
    operations=OPERATIONS,
    rows=ROWS,
    initial=(("RAW", "None", 0, "no", "none", "none", False, 0, 0),),
    codes=Family.RPC_STATUS,
    # Nothing in flight: no call pending, the server holds none (RPC-CLI-COMPLETE-06, RPC-SRV-02).
    quiescent=(("phase", ("RAW", "INIT", "DONE")), ("server", ("none", "gone"))),
    diagram_fields=("phase",),
    slot_prefix="r",
    timed=(("wait_notification", None),),
)
