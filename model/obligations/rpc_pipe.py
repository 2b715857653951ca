"""Asynchronous pipes' rule obligations (spec/DOMAIN.md section 2.19, and RPC-STATE-04).

The observer keeps, from the operations and their results only, what happened to the current
call's pipes (`PipeSeen`): whether a call is in progress and was started with
RPC_C_NOTIFY_ON_SEND_COMPLETE, whether the client ended its `[in]` pipe (a 0-length push that
succeeded), whether the server drained it, what the server sent on the `[out]` pipe and the
client has not pulled yet, whether the client pulled the end, whether the server completed, and
whether the call failed with a pipe error.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any

from callgate.model import codes
from callgate.model.obligations.core import (
    After,
    ArgMap,
    Now,
    Obligation,
    Observer,
    Whenever,
    as_pinned,
    only,
)
from callgate.model.transitions import Allowed

PIPE = "rpc_pipe"
PIPE_CODES = (codes.RPC_X_WRONG_PIPE_ORDER, codes.RPC_X_PIPE_DISCIPLINE_ERROR,
              codes.RPC_X_PIPE_CLOSED, codes.RPC_X_INVALID_PIPE_OBJECT)


@dataclass(frozen=True)
class PipeSeen:
    """What happened to the current call's pipes."""

    started: bool = False
    notify: bool = False
    in_ended: bool = False
    drained: bool = False
    unread: str = ""  # what the server sent and the client has not pulled: "", "data", "end"
    out_ended: bool = False
    server_done: bool = False
    failed: bool = False
    completed: bool = False

    @property
    def live(self) -> bool:
        return self.started and not self.failed and not self.completed

    def __str__(self) -> str:
        return ", ".join(f"{k}={v}" for k, v in self.__dict__.items())


def observe(seen: PipeSeen, op: str, args: ArgMap, outcome: Allowed) -> PipeSeen:
    code = outcome.code
    if any(only(code, c) for c in PIPE_CODES) and op != "server_complete":
        return replace(seen, failed=True)
    if not only(code, codes.RPC_S_OK):
        return seen
    if op == "start_call":
        return PipeSeen(started=True, notify=bool(args["send_complete"]))
    if op == "push" and args["n"] == 0:
        return replace(seen, in_ended=True)
    if op == "server_drain":
        return replace(seen, drained=True)
    if op == "server_push":
        return replace(seen, unread="end" if args["n"] == 0 else "data")
    if op == "pull":
        return replace(seen, unread="", out_ended=seen.out_ended or seen.unread == "end")
    if op == "server_complete":
        return replace(seen, server_done=True)
    if op == "RpcAsyncCompleteCall":
        return replace(seen, completed=True)
    return seen


OBSERVER: Observer[Any] = Observer(PIPE, PipeSeen(), observe)

N = Now[PipeSeen]
R = After[PipeSeen]


def pipe_error(n: N, _a: ArgMap, r: R) -> bool:
    """A pipe-filling error: exactly the pinned candidate of D-16, if one is pinned."""
    return as_pinned(n, "pipe_error_code", r) and only(r.code, *PIPE_CODES)


def pipe_error_ends_call(n: N, a: ArgMap, r: R) -> bool:
    """A pipe error, after which no push or pull is offered and a new call can start."""
    after = r.next
    return (pipe_error(n, a, r) and not after.probe("push", n=1).defined
            and not after.probe("pull").defined
            and after.probe("start_call", send_complete=False).only(codes.RPC_S_OK))


def pushed(n: N, a: ArgMap, r: R) -> bool:
    """RPC_S_OK; after the 0-length push the stream is over: another push is refused."""
    if not only(r.code, codes.RPC_S_OK):
        return False
    if a["n"] != 0:
        return True
    later = r.next.probe("push", n=1)
    return later.defined and later.fails()


def in_open(n: N, _a: ArgMap) -> bool:
    return n.seen.live and not n.seen.in_ended


OBLIGATIONS: tuple[Obligation, ...] = (
    Obligation(
        "pipe.push", ("RPC-PIPE-02",),
        "While the call's [in] pipe is open the client's push returns RPC_S_OK; a push of 0 "
        "elements ends the stream, so a later push is refused.",
        PIPE, Whenever(("push",), in_open, pushed, defined=True)),
    Obligation(
        "pipe.send_complete", ("RPC-STATE-04",),
        "With Flags = RPC_C_NOTIFY_ON_SEND_COMPLETE the client is notified after each send "
        "(every push on the open [in] pipe).",
        PIPE, Whenever(("push",), lambda n, a: in_open(n, a) and n.seen.notify,
                       lambda n, a, r: r.output("notified") is True, defined=True)),
    Obligation(
        "pipe.pull_pending", ("RPC-PIPE-03",),
        "Once the [in] pipe is ended, a pull while the server has sent nothing yet returns "
        "RPC_S_ASYNC_CALL_PENDING and changes nothing.",
        PIPE, Whenever(("pull",), lambda n, a: (n.seen.live and n.seen.in_ended
                                                and not n.seen.out_ended and not n.seen.unread),
                       lambda n, a, r: (only(r.code, codes.RPC_S_ASYNC_CALL_PENDING)
                                        and r.next.state == n.state),
                       defined=True)),
    Obligation(
        "pipe.pull_data", ("RPC-PIPE-03",),
        "A pull returns what the server sent: one element, or 0 elements at the end of the "
        "stream.",
        PIPE, Whenever(("pull",), lambda n, a: n.seen.live and n.seen.in_ended
                       and bool(n.seen.unread),
                       lambda n, a, r: (only(r.code, codes.RPC_S_OK) and r.output("count")
                                        == (0 if n.seen.unread == "end" else 1)),
                       defined=True)),
    Obligation(
        "pipe.push_after_end", ("RPC-PIPE-05",),
        "A push after the [in] pipe was ended is in the wrong order: it fails with a "
        "pipe-filling error (the pinned candidate of D-16), and the failed call needs no "
        "further call: no push or pull is offered on it and a new call can start.",
        PIPE, Whenever(("push",), lambda n, a: n.seen.live and n.seen.in_ended,
                       pipe_error_ends_call, defined=True),
        points=("pipe_error_code",)),
    Obligation(
        "pipe.pull_before_end", ("RPC-PIPE-05",),
        "A pull while the [in] pipe is still open is in the wrong order: it fails with a "
        "pipe-filling error, and the failed call needs no further call.",
        PIPE, Whenever(("pull",), in_open, pipe_error_ends_call, defined=True),
        points=("pipe_error_code",)),
    Obligation(
        "pipe.client_complete_undrained", ("RPC-PIPE-05",),
        "The client completing the call (RpcAsyncCompleteCall) while its [in] pipe is still "
        "open fails with a pipe-filling error, and the failed call needs no further call.",
        PIPE, Whenever(("RpcAsyncCompleteCall",), in_open, pipe_error_ends_call, defined=True),
        points=("pipe_error_code",)),
    Obligation(
        "pipe.server_complete_undrained", ("RPC-PIPE-05",),
        "The server completing the call (RpcAsyncCompleteCall) before it pulled the [in] pipe "
        "to its end fails with a pipe-filling error.",
        PIPE, Whenever(("server_complete",), lambda n, a: n.seen.live and not n.seen.drained,
                       pipe_error, defined=True),
        points=("pipe_error_code",)),
)
