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
  result      what the client's final completion reports: ok, cancelled, aborted, raised, or
              failed (a call on a bad binding whose failure comes through the completion)
  may_cancel  a cancel came before the client saw the result, which may still turn it into
              RPC_S_CALL_CANCELLED (RPC-CLI-CANCEL-05; variation point late_cancel_result): the
              first final status or completion the client observes decides
  reply       the return value the server completed with (0: none)
  code        the code the server aborted or raised with (0: none)
  seen        the manager routine's RpcServerTestCancel has reported the cancel. A cancel
              notice travels to the server (RPC-CLI-CANCEL-05: its effect depends on how far
              the call had got), so until it is seen a test may still say "not cancelled"; the
              cancel stays remembered, and a test that waits a bounded time sees it. Once
              the server handle is gone nothing can test it, so it goes back to False then
"""

from __future__ import annotations

from dataclasses import replace

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
    Kind,
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
# A call that failed on its own (a bad binding): any failure but pending or cancelled.
CALL_FAILED = AnyFailure(Family.RPC_STATUS,
                         (codes.RPC_S_ASYNC_CALL_PENDING, codes.RPC_S_CALL_CANCELLED))
MAY_BE_CANCELLED = {"late_cancel_result": "may_be_cancelled"}
RpcAsyncCallComplete = 0  # RPC_ASYNC_EVENT RpcCallComplete
UNUSED = ("INIT", "DONE")
APC_THREAD = ("explicit", "NULL")
# Who ends a held call: the manager routine itself, or another thread once the routine has
# returned without ending it (the call was handed off, RPC-SRV-COMPLETE-07, RPC-SRV-EXC-02).
SERVER_THREAD = ("routine", "later")
THREAD_PARAM = Param("thread", SERVER_THREAD, "routine: the manager routine, before it returns; "
                     "later: another thread, after the routine returned without ending the call")
NULL_THREAD_APC = ("u.APC.hThread is read only for RpcNotificationTypeApc: the other kinds have "
                   "no thread to leave NULL")
NO_CALL_HELD = "the test server holds no call for this handle"

FIELDS = (
    Field("phase", ("RAW", "INIT", "PENDING", "SENT", "READY", "DONE"), "client-side phase"),
    Field("notify", NOTIFY, "NotificationType of the current or last call"),
    Field("notes", (0, 1), "completion notifications observed for the current call"),
    Field("cancel", ("no", "soft", "abort"), "RpcAsyncCancelCall requested"),
    Field("server", ("none", "held", "gone"), "the server async handle"),
    Field("result", ("none", "ok", "cancelled", "aborted", "raised", "failed"),
          "the final result"),
    Field("may_cancel", (False, True), "the final result may also be RPC_S_CALL_CANCELLED"),
    Field("reply", (0, 1, 2), "the procedure's return value, once the server completed"),
    Field("code", (0, *ABORT_CODES), "the code the server aborted or raised with"),
    Field("seen", (False, True), "the server's RpcServerTestCancel has reported the cancel"),
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
               Param("binding", ("good", "bad"), "a working binding, or one to no server"),
               Param("hThread", APC_THREAD, "u.APC.hThread for notify Apc: an explicit handle "
                     "of the issuing thread, or NULL (the thread that issues the call, "
                     "RPC-CLI-NOTIFY-02); other kinds have no thread and take `explicit`")),
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
              "RpcAsyncCompleteCall(pAsync, &reply) on the server handle: by the manager routine "
              "before it returns (`thread` routine), or by another thread after the routine "
              "returned without ending the call (`thread` later, RPC-SRV-COMPLETE-07).",
              (Param("reply", (1, 2), "the return value"), THREAD_PARAM), capability="rpc.call"),
    Operation("server_abort", Actor.SERVER,
              "RpcAsyncAbortCall(pAsync, code) on the server handle, by the manager routine or "
              "(`thread` later) by another thread after the routine returned.",
              (Param("code", ABORT_CODES, "ExceptionCode, non-zero"), THREAD_PARAM),
              capability="rpc.abort"),
    Operation("server_raise", Actor.SERVER,
              "The manager routine raises `code` on the dispatch thread, before any hand-off "
              "(`thread` routine); a raise after the routine handed the call off (`thread` "
              "later) is undefined (RPC-SRV-EXC-02).",
              (Param("code", ABORT_CODES, "the exception code"), THREAD_PARAM),
              capability="rpc.raise"),
    Operation("server_test_cancel", Actor.SERVER,
              "RpcServerTestCancel(RpcAsyncGetCallHandle(pAsync)) in the manager routine: once "
              "(`timeout` zero), or again until it reports RPC_S_OK or the request's finite wait "
              "is over (`timeout` finite).",
              (Param("timeout", ("zero", "finite"), "test once, or poll for a bounded time"),),
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
    elif result == "failed":
        outcomes.append(out(CALL_FAILED, "the call failed: the failure comes through the "
                            "completion", rules=("RPC-CLI-COMPLETE-05",), outputs=kept,
                            also=updates))
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
                            rules=("RPC-CLI-CANCEL-05",), outputs=kept, when=MAY_BE_CANCELLED,
                            also=updates))
    return outcomes


def _status(result: str, may_cancel: bool, **updates: Value) -> list[Outcome]:
    """Final RpcAsyncGetCallStatus outcomes: RPC_S_OK for success, any non-pending code else.

    The status and the final result are one: after RPC_S_OK the completion is RPC_S_OK
    (RPC-CLI-STATUS-02: the call completed successfully), and after a failure a call the server
    completed is one the cancel turned into RPC_S_CALL_CANCELLED."""
    outcomes: list[Outcome] = []
    if result == "ok":
        outcomes.append(out(RPC_OK, "finished", rules=("RPC-CLI-STATUS-02",),
                            also={**updates, "may_cancel": False}))
        if may_cancel:
            outcomes.append(out(FINISHED_FAILURE, "finished: the cancel took effect",
                                rules=("RPC-CLI-STATUS-03", "RPC-CLI-CANCEL-05"),
                                when=MAY_BE_CANCELLED,
                                also={**updates, "result": "cancelled", "may_cancel": False}))
    else:
        outcomes.append(out(FINISHED_FAILURE, "finished with a failure",
                            rules=("RPC-CLI-STATUS-03",), also=updates))
    return outcomes


def _completion_rows() -> list[Row]:
    rows: list[Row] = []
    for result in ("ok", "cancelled", "aborted", "raised", "failed"):
        # A finished call always has a result (invariant rpc.finished_call_has_a_result): the
        # last guard also admits "none" so that the table is total without a row no state
        # reaches.
        results = (result, "none") if result == "failed" else (result,)
        for may_cancel in (False, True):
            guard = {"result": results, "may_cancel": may_cancel}
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
    # An abortive cancel ends a pending call on the client at once (phase SENT), so a PENDING
    # call was cancelled softly or not at all; the soft rows' guard also admits "abort" so that
    # the table is total without a row no state reaches.
    for cancel, may in ((("no",), False), (("soft", "abort"), True)):
        rows += [
            row("server_complete",
                ("RPC-SRV-COMPLETE-01", "RPC-SRV-COMPLETE-02", "RPC-SRV-COMPLETE-03",
                 "RPC-SRV-COMPLETE-05", "RPC-SRV-02"),
                out(RPC_OK, "completed", phase="SENT", result="ok", reply=Arg("reply"),
                    may_cancel=may, server="gone", seen=False),
                state={"server": "held", "phase": "PENDING", "cancel": cancel},
                note="`reply` is the [out] value as the manager routine set it just before "
                     "RpcAsyncCompleteCall (RPC-SRV-COMPLETE-03); the client's completion "
                     "delivers exactly it, not what it held when the call was dispatched"),
            row("server_abort", ("RPC-SRV-ABORT-01", "RPC-SRV-02"),
                out(RPC_OK, "aborted", phase="SENT", result="aborted", code=Arg("code"),
                    may_cancel=may, server="gone", seen=False),
                state={"server": "held", "phase": "PENDING", "cancel": cancel}),
            row("server_raise", ("RPC-SRV-EXC-01", "RPC-SRV-02"),
                out(Anything("the manager routine raised; nothing returns to it"), "raised",
                    phase="SENT", result="raised", code=Arg("code"), may_cancel=may,
                    server="gone", seen=False),
                state={"server": "held", "phase": "PENDING", "cancel": cancel},
                args={"thread": "routine"}),
        ]
    rows += [
        row("server_complete", ("RPC-SRV-COMPLETE-06", "RPC-CLI-CANCEL-02", "RPC-SRV-02"),
            out(RPC_OK, late, server="gone", seen=False),
            out(AnyFailure(Family.RPC_STATUS), late + " (completion failed)", server="gone", seen=False),
            state={"server": "held", "phase": client_left}),
        row("server_abort", ("RPC-SRV-ABORT-01", "RPC-CLI-CANCEL-02", "RPC-SRV-02"),
            out(RPC_OK, late, server="gone", seen=False),
            out(AnyFailure(Family.RPC_STATUS), late + " (abort failed)", server="gone", seen=False),
            state={"server": "held", "phase": client_left}),
        row("server_raise", ("RPC-SRV-EXC-01", "RPC-CLI-CANCEL-02", "RPC-SRV-02"),
            out(Anything("the manager routine raised"), late, server="gone", seen=False),
            state={"server": "held", "phase": client_left}, args={"thread": "routine"}),
        undefined("server_raise", ("RPC-SRV-EXC-02",),
                  "the routine returned and handed the call off: an exception after the hand-off "
                  "point may crash the server; errors go through RpcAsyncAbortCall instead",
                  state={"server": "held"}, args={"thread": "later"}),
        undefined("server_complete", ("RPC-SRV-COMPLETE-04", "RPC-SRV-COMPLETE-05",
                                      "RPC-SRV-ABORT-05"),
                  "the server handle is already destroyed", state={"server": "gone"}),
        undefined("server_abort", ("RPC-SRV-ABORT-02", "RPC-SRV-ABORT-05"),
                  "the server handle is already destroyed", state={"server": "gone"}),
        not_offered("server_raise", ("RPC-SRV-02",),
                    "the manager routine of this call has ended (completed, aborted or raised): "
                    "there is no routine left to raise in", state={"server": "gone"}),
        row("server_test_cancel", ("RPC-SRV-CANCEL-01", "RPC-SRV-CANCEL-02"),
            out(Exact(codes.RPC_S_CALL_IN_PROGRESS), "not cancelled"),
            state={"server": "held", "cancel": "no"}),
        row("server_test_cancel", ("RPC-SRV-CANCEL-01", "RPC-SRV-CANCEL-02", "RPC-SRV-CANCEL-03",
                                   "RPC-STATE-01", "RPC-CLI-CANCEL-03", "RPC-CLI-CANCEL-05"),
            out(RPC_OK, "the server sees the cancel", seen=True),
            out(Exact(codes.RPC_S_CALL_IN_PROGRESS), "the cancel has not reached the server yet"),
            state={"server": "held", "cancel": ("soft", "abort"), "seen": False},
            args={"timeout": "zero"},
            note="the cancel notice is on its way: either answer, until the server has seen it"),
        row("server_test_cancel", ("RPC-SRV-CANCEL-01", "RPC-SRV-CANCEL-03", "RPC-STATE-01",
                                   "RPC-CLI-CANCEL-02", "RPC-CLI-CANCEL-03"),
            out(RPC_OK, "the cancel reached the server within the wait", seen=True),
            state={"server": "held", "cancel": ("soft", "abort"), "seen": False},
            args={"timeout": "finite"},
            note="the server is told (RPC-CLI-CANCEL-02, -03): a notice that never arrives is a "
                 "cancel forgotten"),
        row("server_test_cancel", ("RPC-SRV-CANCEL-01", "RPC-SRV-CANCEL-02"),
            out(RPC_OK, "the client cancelled"),
            state={"server": "held", "cancel": ("soft", "abort"), "seen": True}),
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
    return _by_thread(rows)


# What the later form of a server action cites besides the row's own rules: any thread may
# complete (RPC-SRV-COMPLETE-07); after the hand-off, errors go through RpcAsyncAbortCall
# (RPC-SRV-EXC-02).
LATER_RULES = {"server_complete": ("RPC-SRV-COMPLETE-07",),
               "server_abort": ("RPC-SRV-COMPLETE-07", "RPC-SRV-EXC-02")}


def _by_thread(rows: list[Row]) -> list[Row]:
    """Each DEFINED row of server_complete and server_abort twice: done by the manager routine,
    and done by another thread after the routine returned without ending the call. Both end the
    call the same way; the later one also cites the rules that allow it."""
    split: list[Row] = []
    for r in rows:
        if r.op not in LATER_RULES or r.kind is not Kind.DEFINED:
            split.append(r)
            continue
        split.append(replace(r, args=(*r.args, ("thread", frozenset({"routine"})))))
        split.append(replace(r, args=(*r.args, ("thread", frozenset({"later"}))),
                             rules=(*r.rules, *LATER_RULES[r.op])))
    return split


def _apc_threads(rows: tuple[Row, ...]) -> tuple[Row, ...]:
    """Each AsyncCall row twice: u.APC.hThread an explicit handle (for every notify kind), and
    NULL (for Apc only: the thread that issues the call, RPC-CLI-NOTIFY-02). NULL with any other
    kind is not a form the API has."""
    split: list[Row] = []
    for r in rows:
        if r.op != "AsyncCall":
            split.append(r)
            continue
        split.append(replace(r, args=(*r.args, ("hThread", frozenset({"explicit"})))))
        split.append(replace(r, args=(*r.args, ("notify", frozenset({"Apc"})),
                                      ("hThread", frozenset({"NULL"}))),
                             rules=tuple(dict.fromkeys((*r.rules, "RPC-CLI-NOTIFY-02")))))
    split.append(not_offered("AsyncCall", ("RPC-CLI-NOTIFY-02",), NULL_THREAD_APC,
                             args={"notify": tuple(k for k in NOTIFY if k != "Apc"),
                                   "hThread": "NULL"}))
    return tuple(split)


INIT_OUTPUTS: dict[str, Value] = {
    "Signature": codes.RPC_ASYNC_STATE_SIGNATURE, "Size": "sizeof(RPC_ASYNC_STATE)", "Lock": 0,
    "Flags": 0, "StubInfo": 0, "RuntimeInfo": 0, "Reserved": 0, "UserInfo_kept": True,
}
FRESH: dict[str, Value] = {
    "notes": 0, "cancel": "no", "result": "none", "may_cancel": False, "reply": 0, "code": 0,
    "seen": False,
}
# What RpcAsyncInitializeHandle resets: the cancel of the old call is left alone, since the
# server may still hold that call, and its RpcServerTestCancel keeps reporting the cancel
# (RPC-SRV-CANCEL-02); AsyncCall resets it.
REINITIALISED: dict[str, Value] = {k: v for k, v in FRESH.items() if k not in ("cancel", "seen")}
NEVER_INITIALISED = ("memory never initialised: its Size and Signature are whatever it held, a "
                     "handle no RPC function documents (RPC-INIT-05); a zeroed structure is the "
                     "invalid_handle operation")
NOT_TWO_CALLS = "the test server still holds this handle's previous call"
FAILED_LATER: dict[str, Value] = {**FRESH, "phase": "SENT", "result": "failed"}
IN_CALL = ("PENDING", "SENT", "READY")

ROWS: tuple[Row, ...] = _apc_threads((
    # --- RpcAsyncInitializeHandle ------------------------------------------------------------
    row("RpcAsyncInitializeHandle", ("RPC-INIT-01", "RPC-INIT-08", "RPC-SRV-CANCEL-02"),
        out(RPC_OK, "initialised", outputs=INIT_OUTPUTS, phase="INIT", also=REINITIALISED),
        state={"phase": ("RAW", "INIT", "DONE")}, args={"size": "exact"}),
    row("RpcAsyncInitializeHandle", ("RPC-INIT-02",),
        out(Exact(codes.RPC_S_INVALID_ARG), "wrong Size"),
        state={"phase": ("RAW", "INIT", "DONE")}, args={"size": ("smaller", "larger")}),
    undefined("RpcAsyncInitializeHandle", ("RPC-INIT-05", "RPC-INIT-07"),
              "re-initialising a handle whose call is outstanding overwrites what the runtime owns",
              state={"phase": IN_CALL}),

    # --- AsyncCall ---------------------------------------------------------------------------
    row("AsyncCall", ("RPC-CLI-CALL-01", "RPC-INIT-04", "RPC-INIT-06", "RPC-SRV-01"),
        out(RPC_OK, "call outstanding", phase="PENDING", notify=Arg("notify"), server="held",
            also=FRESH),
        state={"phase": "INIT", "server": ("none", "gone")}, args={"binding": "good"}),
    row("AsyncCall", ("RPC-INIT-08", "RPC-CLI-CALL-01"),
        out(RPC_OK, "reused without re-initialising", phase="PENDING", notify=Arg("notify"),
            server="held", when={"handle_reuse": "reuse_allowed"}, also=FRESH),
        out(FINISHED_FAILURE, "the stub raised: re-initialise first",
            when={"handle_reuse": "reinitialize_required"}),
        state={"phase": "DONE", "server": ("none", "gone")}, args={"binding": "good"}),
    row("AsyncCall", ("RPC-CLI-CALL-02", "RPC-CLI-COMPLETE-05"),
        out(FINISHED_FAILURE, "the stub raised; nothing to complete or cancel",
            when={"bad_binding_failure": "synchronous"}),
        out(RPC_OK, "the call started; its failure comes through the completion",
            notify=Arg("notify"), also=FAILED_LATER,
            when={"bad_binding_failure": "through_completion"}),
        state={"phase": "INIT", "server": ("none", "gone")}, args={"binding": "bad"}),
    row("AsyncCall", ("RPC-CLI-CALL-02", "RPC-CLI-COMPLETE-05", "RPC-INIT-08"),
        out(FINISHED_FAILURE, "the stub raised; nothing to complete or cancel",
            when={"bad_binding_failure": "synchronous"}),
        out(RPC_OK, "the call started; its failure comes through the completion",
            notify=Arg("notify"), also=FAILED_LATER,
            when={"bad_binding_failure": "through_completion", "handle_reuse": "reuse_allowed"}),
        out(FINISHED_FAILURE, "the stub raised: re-initialise first",
            when={"handle_reuse": "reinitialize_required"}),
        state={"phase": "DONE", "server": ("none", "gone")}, args={"binding": "bad"}),
    not_offered("AsyncCall", ("RPC-INIT-06",), NOT_TWO_CALLS,
                state={"phase": UNUSED, "server": "held"}),
    undefined("AsyncCall", ("RPC-INIT-01", "RPC-INIT-05"), NEVER_INITIALISED,
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
    undefined("RpcAsyncGetCallStatus", ("RPC-INIT-01", "RPC-INIT-05"), NEVER_INITIALISED,
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
    undefined("RpcAsyncCompleteCall", ("RPC-INIT-01", "RPC-INIT-05"), NEVER_INITIALISED,
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
    row("invalid_handle", ("RPC-CLI-COMPLETE-09", "RPC-SRV-COMPLETE-08"),
        out(Exact(codes.RPC_S_INVALID_ASYNC_HANDLE), "invalid handle"),
        args={"api": "RpcAsyncCompleteCall"},
        note="a zeroed handle is neither a client's nor a server's: both RpcAsyncCompleteCall "
             "rules give RPC_S_INVALID_ASYNC_HANDLE"),
    row("invalid_handle", ("RPC-CLI-CANCEL-01",),
        out(Exact(codes.RPC_S_INVALID_ASYNC_HANDLE), "invalid handle"),
        args={"api": "RpcAsyncCancelCall"}),
    row("invalid_handle", ("RPC-SRV-ABORT-04",),
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
        out(RPC_OK, "synchronous result", outputs={"reply": Arg("reply")}),
        note="the [async] manager routine answers a synchronous client's request: [async] in "
             "the ACF leaves the IDL and the wire format as they were (RPC-DECL-01)"),

    # --- the test server ---------------------------------------------------------------------
    *_server_rows(),
))

MACHINE = Machine(
    name="rpc_call",
    family="rpc",
    title="Asynchronous RPC call (RPC_ASYNC_STATE, client and server handles)",
    doc=__doc__ or "",
    fields=FIELDS,
    operations=OPERATIONS,
    rows=ROWS,
    initial=(("RAW", "None", 0, "no", "none", "none", False, 0, 0, False),),
    codes=Family.RPC_STATUS,
    # Nothing in flight: no call pending, the server holds none (RPC-CLI-COMPLETE-06, RPC-SRV-02).
    quiescent=(("phase", ("RAW", "INIT", "DONE")), ("server", ("none", "gone"))),
    diagram_fields=("phase",),
    slot_prefix="r",
    timed=(("wait_notification", None), ("server_test_cancel", "timeout")),
)
