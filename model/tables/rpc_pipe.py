"""Asynchronous pipes, what the documentation pins down: spec/DOMAIN.md section 2.19 (and
RPC-STATE-04 of 2.12).

Data only; hold next to the section. The `rpc_pipe` machine is one asynchronous call of a test
procedure with one `[in]` pipe and one `[out]` pipe (both asynchronous pipes, passed by
reference), notification by event. The client pushes the `[in]` pipe's data with `push(state,
buf, n)` and ends it with a push of 0 elements (RPC-PIPE-02), then pulls the `[out]` pipe
(RPC-PIPE-03): `pull` returns RPC_S_ASYNC_CALL_PENDING while the server has sent nothing yet. The
test server drains the `[in]` pipe once the client ended it, pushes one element or the end of the
`[out]` pipe, and completes the call.

Call phases (the client's view): `none`, `in_open` (pushing), `in_closed` (the 0-length push
done; pulling), `out_ended` (the 0-length pull came: the stream is over), `done`
(RpcAsyncCompleteCall returned), `failed` (a push, pull or completion failed with a pipe error).

What the documentation pins down and the model asserts:
* push in order returns RPC_S_OK; the 0-length push ends the stream (RPC-PIPE-02);
* pull with nothing sent yet returns RPC_S_ASYNC_CALL_PENDING (RPC-PIPE-03);
* pushing after the end, pulling before the `[in]` pipe is ended, and completing before the
  `[in]` pipe is drained fail with a pipe-filling error, on the client and on the server
  (RPC-PIPE-05). The code is the variation point `pipe_error_code` (D-16: no symbol is given);
* a failed push or pull needs no further call: a new call can start at once (RPC-PIPE-05);
* with `Flags = RPC_C_NOTIFY_ON_SEND_COMPLETE` the client is notified after each push completes
  (RPC-STATE-04); output `notified` says whether a send-complete notification came.

UNDEFINED (the documentation gives no result): pulling after the end of the `[out]` pipe, the
client completing before it pulled the `[out]` pipe to its end, the server completing before it
ended the `[out]` pipe. Not driven: receive failures after dispatch (the harness provokes no
transport failure), APC notification (RPC-PIPE-04's merged notifications), and RPC-PIPE-01, which
MIDL checks at compile time.
"""

from __future__ import annotations

from callgate.model import codes
from callgate.model.codes import Family
from callgate.model.tables.table import not_offered, out, row, undefined
from callgate.model.transitions import (
    Actor,
    Exact,
    Field,
    Machine,
    Operation,
    Outcome,
    Param,
    Value,
)
from callgate.model.variations import BY_NAME

OK = Exact(codes.RPC_S_OK)
PHASES = ("none", "in_open", "in_closed", "out_ended", "done", "failed")
LIVE = ("in_open", "in_closed", "out_ended")
OUT_STATES = ("empty", "data", "end", "closed")
PIPE_ERROR_CHOICES = BY_NAME["pipe_error_code"].choices


def pipe_error(label: str, **updates: Value) -> tuple[Outcome, ...]:
    """A pipe-filling error: one outcome per candidate code of D-16, under its pin."""
    return tuple(out(Exact(codes.by_name(name)), f"{label} ({name})",
                     when={"pipe_error_code": name}, also=updates)
                 for name in PIPE_ERROR_CHOICES)


def _push_rows() -> list:  # type: ignore[type-arg]
    rows = []
    for notify in (False, True):
        outputs: dict[str, Value] = {"notified": True} if notify else {}
        rows.append(row("push", ("RPC-PIPE-02", "RPC-STATE-04") if notify else ("RPC-PIPE-02",),
                        out(OK, "element sent", outputs=outputs),
                        state={"phase": "in_open", "notify": notify}, args={"n": 1}))
        rows.append(row("push", ("RPC-PIPE-02", "RPC-STATE-04") if notify else ("RPC-PIPE-02",),
                        out(OK, "stream ended", outputs=outputs, phase="in_closed"),
                        state={"phase": "in_open", "notify": notify}, args={"n": 0}))
    rows.append(row("push", ("RPC-PIPE-05",), *pipe_error("push after the end", phase="failed"),
                    state={"phase": ("in_closed", "out_ended")}))
    rows.append(not_offered("push", ("RPC-PIPE-05",),
                            "no call in progress (none yet, completed, or failed: a failed call "
                            "needs no further calls)",
                            state={"phase": ("none", "done", "failed")}))
    return rows


def _pull_rows() -> list:  # type: ignore[type-arg]
    return [
        row("pull", ("RPC-PIPE-05",), *pipe_error("pull before the [in] pipe ended",
                                                  phase="failed"),
            state={"phase": "in_open"}),
        row("pull", ("RPC-PIPE-03",),
            out(Exact(codes.RPC_S_ASYNC_CALL_PENDING), "no data yet"),
            state={"phase": "in_closed", "out": "empty"}),
        row("pull", ("RPC-PIPE-03",), out(OK, "one element", outputs={"count": 1}, out="empty"),
            state={"phase": "in_closed", "out": "data"}),
        row("pull", ("RPC-PIPE-03",),
            out(OK, "end of the stream", outputs={"count": 0}, out="closed", phase="out_ended"),
            state={"phase": "in_closed", "out": "end"}),
        not_offered("pull", ("RPC-PIPE-03",), "the [out] pipe is never closed before its end "
                    "reaches the client", state={"phase": "in_closed", "out": "closed"}),
        undefined("pull", ("RPC-PIPE-03",), "pulling after the end of the stream: not documented",
                  state={"phase": "out_ended"}),
        not_offered("pull", ("RPC-PIPE-05",), "no call in progress",
                    state={"phase": ("none", "done", "failed")}),
    ]


def _complete_rows() -> list:  # type: ignore[type-arg]
    return [
        row("RpcAsyncCompleteCall", ("RPC-PIPE-05",),
            *pipe_error("completed before the [in] pipe was drained", phase="failed"),
            state={"phase": "in_open"}),
        undefined("RpcAsyncCompleteCall", ("RPC-PIPE-05",),
                  "completing before the [out] pipe was pulled to its end: not documented",
                  state={"phase": "in_closed"}),
        row("RpcAsyncCompleteCall", ("RPC-PIPE-02",),
            out(Exact(codes.RPC_S_ASYNC_CALL_PENDING), "the server has not completed"),
            state={"phase": "out_ended", "server_done": False}),
        row("RpcAsyncCompleteCall", ("RPC-PIPE-02",), out(OK, "completed", phase="done"),
            state={"phase": "out_ended", "server_done": True}),
        not_offered("RpcAsyncCompleteCall", ("RPC-PIPE-05",), "no call in progress",
                    state={"phase": ("none", "done", "failed")}),
    ]


def _server_rows() -> list:  # type: ignore[type-arg]
    return [
        row("server_drain", ("RPC-PIPE-02",), out(OK, "[in] pipe drained to its end",
                                                  drained=True),
            state={"phase": ("in_closed", "out_ended"), "drained": False}),
        not_offered("server_drain", ("RPC-PIPE-02",),
                    "the server's pull would wait for the client's next push, or there is "
                    "nothing left to drain",
                    state={"phase": ("none", "in_open", "done", "failed")}),
        not_offered("server_drain", ("RPC-PIPE-02",), "already drained",
                    state={"phase": ("in_closed", "out_ended"), "drained": True}),
        row("server_push", ("RPC-PIPE-03",), out(OK, "one element sent", out="data"),
            state={"phase": "in_closed", "drained": True, "out": "empty"}, args={"n": 1}),
        row("server_push", ("RPC-PIPE-03",), out(OK, "stream ended", out="end"),
            state={"phase": "in_closed", "drained": True, "out": "empty"}, args={"n": 0}),
        not_offered("server_push", ("RPC-PIPE-03",),
                    "the test server sends after it drained the [in] pipe, one element at a "
                    "time, and nothing after the end",
                    state={"phase": "in_closed", "drained": False}),
        not_offered("server_push", ("RPC-PIPE-03",),
                    "the test server sends after it drained the [in] pipe, one element at a "
                    "time, and nothing after the end",
                    state={"phase": "in_closed", "drained": True, "out": ("data", "end",
                                                                          "closed")}),
        not_offered("server_push", ("RPC-PIPE-03",), "no call the server holds with its [out] "
                    "pipe open", state={"phase": ("none", "in_open", "out_ended", "done",
                                                  "failed")}),
        row("server_complete", ("RPC-PIPE-05",),
            *pipe_error("server completed before the [in] pipe was drained"),
            state={"phase": LIVE, "drained": False}),
        undefined("server_complete", ("RPC-PIPE-05",),
                  "the server completing before it ended the [out] pipe: not documented",
                  state={"phase": "in_closed", "drained": True}),
        not_offered("server_complete", ("RPC-PIPE-05",),
                    "the server never drained an [in] pipe the client has not ended",
                    state={"phase": "in_open", "drained": True}),
        row("server_complete", ("RPC-PIPE-02",), out(OK, "completed", server_done=True),
            state={"phase": "out_ended", "drained": True, "server_done": False}),
        not_offered("server_complete", ("RPC-PIPE-05",), "the server holds no call",
                    state={"phase": ("none", "done", "failed")}),
        not_offered("server_complete", ("RPC-PIPE-05",), "the server holds no call",
                    state={"phase": "out_ended", "drained": True, "server_done": True}),
    ]


MACHINE = Machine(
    name="rpc_pipe",
    family="rpc",
    title="Asynchronous pipes: one call with an [in] and an [out] pipe",
    doc=__doc__ or "",
    fields=(
        Field("phase", PHASES, "the call, from the client's side"),
        Field("notify", (False, True), "the call was started with RPC_C_NOTIFY_ON_SEND_COMPLETE"),
        Field("drained", (False, True), "the server pulled the [in] pipe to its end"),
        Field("out", OUT_STATES, "the [out] pipe: nothing sent, an element waiting, the end "
              "waiting, or closed (the end pulled)"),
        Field("server_done", (False, True), "the server completed the call"),
    ),
    operations=(
        Operation("start_call", Actor.CLIENT,
                  "RpcAsyncInitializeHandle, then the asynchronous call of the pipe procedure "
                  "(Flags RPC_C_NOTIFY_ON_SEND_COMPLETE when `send_complete`); the stub's code.",
                  (Param("send_complete", (False, True), "Flags = RPC_C_NOTIFY_ON_SEND_COMPLETE"),),
                  capability="rpc.pipe"),
        Operation("push", Actor.CLIENT,
                  "The [in] pipe's push(state, buf, n) with n elements (0 ends the stream); "
                  "output `notified` (with RPC_C_NOTIFY_ON_SEND_COMPLETE): a send-complete "
                  "notification came after it.",
                  (Param("n", (1, 0), "how many elements"),), capability="rpc.pipe"),
        Operation("pull", Actor.CLIENT,
                  "The [out] pipe's pull(state, buf, 1, &count); output `count`.",
                  capability="rpc.pipe"),
        Operation("RpcAsyncCompleteCall", Actor.CLIENT, "RpcAsyncCompleteCall(pAsync, &reply).",
                  capability="rpc.pipe"),
        Operation("server_drain", Actor.SERVER,
                  "The manager routine pulls the [in] pipe until a pull returns 0 elements.",
                  capability="rpc.pipe"),
        Operation("server_push", Actor.SERVER,
                  "The manager routine pushes n elements on the [out] pipe (0 ends it).",
                  (Param("n", (1, 0), "how many elements"),), capability="rpc.pipe"),
        Operation("server_complete", Actor.SERVER,
                  "RpcAsyncCompleteCall on the server's handle.", capability="rpc.pipe"),
    ),
    rows=(
        row("start_call", ("RPC-PIPE-02", "RPC-STATE-04"),
            out(OK, "call started", phase="in_open", notify=False, drained=False, out="empty",
                server_done=False),
            state={"phase": ("none", "done")}, args={"send_complete": False}),
        row("start_call", ("RPC-PIPE-02", "RPC-STATE-04"),
            out(OK, "call started", phase="in_open", notify=True, drained=False, out="empty",
                server_done=False),
            state={"phase": ("none", "done")}, args={"send_complete": True}),
        row("start_call", ("RPC-PIPE-05",),
            out(OK, "a new call after a failed one, with no clean-up call", phase="in_open",
                notify=False, drained=False, out="empty", server_done=False),
            state={"phase": "failed"}, args={"send_complete": False}),
        row("start_call", ("RPC-PIPE-05",),
            out(OK, "a new call after a failed one, with no clean-up call", phase="in_open",
                notify=True, drained=False, out="empty", server_done=False),
            state={"phase": "failed"}, args={"send_complete": True}),
        not_offered("start_call", ("RPC-PIPE-02",), "this slot's call is still in progress",
                    state={"phase": LIVE}),
        *_push_rows(),
        *_pull_rows(),
        *_complete_rows(),
        *_server_rows(),
    ),
    initial=(("none", False, False, "empty", False),),
    codes=Family.RPC_STATUS,
    quiescent=(("phase", ("none", "done", "failed")),),
    diagram_fields=("phase",),
    slot_prefix="p",
)
