"""The asynchronous RPC call's rule obligations (spec/DOMAIN.md sections 2.12 to 2.16), and its
observer.

The observer (`RpcSeen`) keeps, from the operations and their results only: the handle's life
(never initialised, initialised and unused, carrying a call, its call finally completed), whether
a call is outstanding (the stub returned success, no final RpcAsyncCompleteCall yet), its
NotificationType, what the manager routine did with it (holds it; completed it with a reply;
aborted or raised with a code), the cancels the client requested (and whether an abortive one came
while the routine still held the call), the notifications received, the last final status, and
whether RpcServerTestCancel has reported the cancel. No obligation reads the table's fields.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass, replace

from callgate.model import codes
from callgate.model.obligations.core import (
    MISSING,
    After,
    Always,
    ArgMap,
    Now,
    Obligation,
    Observer,
    Reach,
    Tables,
    Whenever,
    fails,
    may_be,
    only,
    succeeds,
)
from callgate.model.transitions import Actor, Allowed, Value

M = "rpc_call"
PENDING = codes.RPC_S_ASYNC_CALL_PENDING
RPC_OK = codes.RPC_S_OK
NOTIFIED = 1  # wait_notification's value when a notification arrived
RPC_CALL_COMPLETE = 0  # RPC_ASYNC_EVENT RpcCallComplete
NOTIFY_RULES = {"Event": "RPC-CLI-NOTIFY-01", "Apc": "RPC-CLI-NOTIFY-02",
                "Ioc": "RPC-CLI-NOTIFY-03", "Hwnd": "RPC-CLI-NOTIFY-04",
                "Callback": "RPC-CLI-NOTIFY-05"}
NEW_CALL = ("RpcAsyncInitializeHandle", "AsyncCall")  # the moves that start another call
CANCEL = "RpcAsyncCancelCall"
# What RpcAsyncInitializeHandle writes (RPC-INIT-01), as the adapter reports it.
INITIALISED: dict[str, Value] = {
    "Size": "sizeof(RPC_ASYNC_STATE)", "Signature": codes.RPC_ASYNC_STATE_SIGNATURE, "Lock": 0,
    "Flags": 0, "StubInfo": 0, "RuntimeInfo": 0, "Reserved": 0, "UserInfo_kept": True,
}


@dataclass(frozen=True)
class RpcSeen:
    """What has happened to one asynchronous RPC handle and its call, in the rules' terms."""

    handle: str = "raw"         # raw | init (unused since initialised) | call | final
    call: bool = False          # outstanding: the stub returned success, no final completion yet
    notify: str = ""            # the NotificationType of the current (or last) call
    server: str = "none"        # none | held | completed | aborted | raised | done (call over)
    #                             | failed: the call started on a binding to no server, so the
    #                               runtime, not a routine, ends it (RPC-CLI-COMPLETE-05)
    reply: int = 0              # the reply the manager routine completed with
    code: int = 0               # the code it aborted or raised with
    cancel: str = "no"          # no | soft | abort: the client's strongest accepted cancel
    abort_in_time: bool = False  # an abortive cancel was accepted while the routine held the call
    soft_in_time: bool = False  # a non-abortive cancel was accepted while the routine held it
    notes: int = 0              # completion notifications received for the call (2: two or more)
    status: str = "none"        # none | ok | failed: a final RpcAsyncGetCallStatus
    told: bool = False          # RpcServerTestCancel has reported the current cancel (RPC_S_OK)
    apc_null: bool = False      # the call was made with u.APC.hThread NULL (notify Apc)

    def __str__(self) -> str:
        return (f"handle={self.handle} call={self.call} notify={self.notify or '-'} "
                f"server={self.server} reply={self.reply} code={self.code} cancel={self.cancel} "
                f"abort_in_time={self.abort_in_time} soft_in_time={self.soft_in_time} "
                f"notes={self.notes} status={self.status} told={self.told} "
                f"apc_null={self.apc_null}")


def observe(seen: RpcSeen, op: str, args: ArgMap, outcome: Allowed) -> RpcSeen:
    """The record after `op(args)` ended with `outcome`."""
    after = _observe(seen, op, args, outcome)
    if after.handle == "final" and after.server not in ("held", "done"):
        # The call is over on both sides: only its notifications can still matter.
        return RpcSeen(handle="final", notify=after.notify, server="done", notes=after.notes)
    return after


def _observe(seen: RpcSeen, op: str, args: ArgMap, outcome: Allowed) -> RpcSeen:
    code = outcome.code
    if op == "RpcAsyncInitializeHandle" and only(code, RPC_OK):
        if seen.server == "held":  # the routine still holds the old call, and its cancel
            return RpcSeen(handle="init", server="held", cancel=seen.cancel, told=seen.told)
        return RpcSeen(handle="init")
    if op == "AsyncCall" and succeeds(code):
        return RpcSeen(handle="call", call=True, notify=str(args["notify"]),
                       server="held" if args["binding"] == "good" else "failed",
                       apc_null=args["notify"] == "Apc" and args["hThread"] == "NULL")
    if op == "RpcAsyncGetCallStatus" and seen.call and not may_be(code, PENDING):
        if only(code, RPC_OK):
            return replace(seen, status="ok")
        return replace(seen, status="failed") if fails(code) else seen
    if op == "RpcAsyncCompleteCall" and seen.call and not may_be(code, PENDING):
        return replace(seen, call=False, handle="final")
    if op == "RpcAsyncCancelCall" and seen.call and only(code, RPC_OK):
        abort = args["abort"] is True
        return replace(seen, cancel="abort" if abort or seen.cancel == "abort" else "soft",
                       abort_in_time=seen.abort_in_time or (abort and seen.server == "held"),
                       soft_in_time=seen.soft_in_time or (not abort and seen.server == "held"))
    if op == "server_test_cancel" and seen.server == "held" and only(code, RPC_OK):
        return replace(seen, told=True)
    if op == "wait_notification" and only(code, NOTIFIED):
        return replace(seen, notes=min(2, seen.notes + 1))
    if op in ("server_complete", "server_abort", "server_raise") and seen.server == "held":
        value = args["reply" if op == "server_complete" else "code"]
        assert isinstance(value, int)
        ended = {"server_complete": "completed", "server_abort": "aborted",
                 "server_raise": "raised"}[op]
        return (replace(seen, server=ended, reply=value) if op == "server_complete"
                else replace(seen, server=ended, code=value))
    return seen


OBSERVER: Observer[RpcSeen] = Observer(M, RpcSeen(), observe)

# --- vocabulary -----------------------------------------------------------------------------

N = Now[RpcSeen]
A = After[RpcSeen]


def outstanding(n: N) -> bool:
    return bool(n.seen.call)


def held(n: N) -> bool:
    """The manager routine holds the call (dispatched, not yet completed, aborted or raised)."""
    return bool(n.seen.server == "held")


def finished(n: N) -> bool:
    """The call has completed: the routine ended it, an abortive cancel ended it at once, or it
    was made on a binding to no server and the runtime fails it ("or the call failed",
    RPC-CLI-COMPLETE-05)."""
    return (n.seen.server in ("completed", "aborted", "raised", "done", "failed")
            or bool(n.seen.abort_in_time))


def server_waiting_call(n: N) -> bool:
    """The routine holds the call and no abortive cancel ended it for the client."""
    return outstanding(n) and held(n) and not n.seen.abort_in_time


def answers_elsewhere(n: N) -> tuple[tuple[str, tuple[Value, ...], frozenset[str]], ...]:
    """What every operation but RpcServerTestCancel answers here, for each of its arguments:
    the codes, outputs and labels it allows (not the states it leads to). Memoised per state,
    pins and open points (it reads nothing else)."""
    memo = Tables.of(n.machine).memo
    key = ("answers_elsewhere", n.state, tuple(sorted(n.pins.items())), n.open_points)
    known = memo.get(key)
    if known is not None:
        return known  # type: ignore[return-value]
    found = []
    for operation in n.machine.operations:
        if operation.name.startswith("server_test_cancel"):
            continue
        for values in itertools.product(*(p.domain for p in operation.params)):
            args = {p.name: v for p, v in zip(operation.params, values, strict=True)}
            probe = n.probe(operation.name, **args)
            found.append((operation.name, tuple(values), frozenset(
                f"{probe.kind}:{a.code}:{a.outputs}:{a.label}" for a in probe.outcomes)))
    memo[key] = result = tuple(found)
    return result


def final(r: A) -> bool:
    """The outcome is not RPC_S_ASYNC_CALL_PENDING: a final completion or status."""
    return not may_be(r.code, PENDING)


def some_args(n: N, op: str) -> dict[str, Value]:
    """The first value of each parameter of `op` (to ask whether it is DEFINED at all)."""
    return {p.name: p.domain[0] for p in n.machine.operation(op).params}


def defined(n: N, op: str) -> bool:
    return n.probe(op, **some_args(n, op)).defined


def no_trace_left(n: N, _args: ArgMap, r: A) -> bool:
    """A failed AsyncCall: nothing new to complete, cancel, notify or serve."""
    if not fails(r.code):
        return True
    return all(r.next.probe(op, **some_args(n, op)).signature()
               == n.probe(op, **some_args(n, op)).signature()
               for op in ("wait_notification", "RpcAsyncCompleteCall", "RpcAsyncCancelCall",
                          "server_complete", "server_handle_live"))


def server_result(n: N, r: A) -> bool:
    """A final completion after the routine aborted or raised with a code: a failure with no
    reply; the code itself when abort_code_delivery pins 'exact'; RPC_S_CALL_CANCELLED too once
    the client cancelled (RPC-CLI-CANCEL-05)."""
    if not final(r):
        return True
    if n.seen.cancel != "no" and only(r.code, codes.RPC_S_CALL_CANCELLED):
        return True
    exact = n.pin("abort_code_delivery") != "exact" or only(r.code, n.seen.code)
    return fails(r.code) and r.output("reply") is MISSING and exact


def test_cancel_answer(n: N, _args: ArgMap, r: A) -> bool:
    """RPC_S_CALL_IN_PROGRESS before any cancel; after one, RPC_S_OK, or RPC_S_CALL_IN_PROGRESS
    while the notice is on its way (how far the call had got, RPC-CLI-CANCEL-05): that it does
    arrive is `rpc.cancel_reaches_the_server`, that it then stays is
    `rpc.server_test_cancel_only_reports`."""
    if n.seen.cancel == "no":
        return only(r.code, codes.RPC_S_CALL_IN_PROGRESS)
    return only(r.code, RPC_OK, codes.RPC_S_CALL_IN_PROGRESS)


def notified_only_after_completion(kind: str) -> Obligation:
    return Obligation(
        f"rpc.notified_after_completion[{kind}]", (NOTIFY_RULES[kind], "RPC-CLI-CANCEL-02"),
        f"With NotificationType {kind}, the client receives the completion notification only once "
        f"the call has completed (the routine completed, aborted or raised, an abortive cancel "
        f"ended it, or the call on a binding to no server failed).",
        M, Whenever(("wait_notification",), lambda n, a: n.seen.notify == kind,
                    lambda n, a, r: not may_be(r.code, NOTIFIED) or finished(n)))


def notified_eventually(kind: str) -> Obligation:
    return Obligation(
        f"rpc.notified_eventually[{kind}]", (NOTIFY_RULES[kind],),
        f"With NotificationType {kind}, the runtime notifies when the call completes: from every "
        f"state where such a call is outstanding and not yet notified, a state where its "
        f"notification has been received is reachable (without the client cancelling or "
        f"starting another call).",
        M, Reach(lambda n: outstanding(n) and n.seen.notify == kind and n.seen.notes == 0,
                 lambda n: n.seen.notes >= 1, without=(*NEW_CALL, CANCEL)))


def answered_as_by_the_routine(n: N, a: ArgMap, r: A) -> bool:
    """RPC-SRV-COMPLETE-07: which thread ends the call changes nothing the client or the server
    can tell: the later form is answered as the routine's own, and the handle is gone after it."""
    op = "server_complete" if "reply" in a else "server_abort"
    value = a["reply" if op == "server_complete" else "code"]
    kwargs: dict[str, Value] = {("reply" if op == "server_complete" else "code"): value}
    return (n.probe(op, **kwargs, thread="routine").signature()
            == n.probe(op, **kwargs, thread="later").signature()
            and r.next.probe("server_handle_live").only(0))


def invalid_handle(api: str, rules: tuple[str, ...], text: str) -> Obligation:
    return Obligation(
        f"rpc.invalid_handle[{api}]", rules, text,
        M, Whenever(("invalid_handle",), lambda n, a: a["api"] == api,
                    lambda n, a, r: only(r.code, codes.RPC_S_INVALID_ASYNC_HANDLE), defined=True))


def unused_handle_code(n: N, r: A) -> bool:
    """D-12: RPC_S_INVALID_ASYNC_HANDLE or RPC_S_INVALID_BINDING, the pinned one when pinned."""
    pinned = n.pinned_code("unused_handle_status")
    choices = (pinned,) if pinned is not None else (codes.RPC_S_INVALID_ASYNC_HANDLE,
                                                    codes.RPC_S_INVALID_BINDING)
    return only(r.code, *choices)


# --- the obligations ------------------------------------------------------------------------

OBLIGATIONS: tuple[Obligation, ...] = (
    # 2.12 declaring and initialising
    Obligation(
        "rpc.sync_client_served", ("RPC-DECL-02",),
        "A synchronous client can talk to the asynchronous server whatever the asynchronous call "
        "is doing: sync_call(reply = v) is DEFINED in every state, returns RPC_S_OK with reply v "
        "and changes nothing.",
        M, Whenever(("sync_call",), lambda n, a: True,
                    lambda n, a, r: (only(r.code, RPC_OK) and r.output("reply") == a["reply"]
                                     and r.next.state == n.state), defined=True)),
    Obligation(
        "rpc.reply_is_the_servers",
        ("RPC-DECL-01", "RPC-CLI-COMPLETE-02", "RPC-SRV-COMPLETE-02", "RPC-SRV-COMPLETE-03"),
        "A RpcAsyncCompleteCall that returns RPC_S_OK follows the routine's RpcAsyncCompleteCall "
        "and hands back the Reply it passed, as a synchronous call answered the same way would "
        "(only the stub's signature differs, not the wire).",
        M, Whenever(("RpcAsyncCompleteCall",), lambda n, a: outstanding(n),
                    lambda n, a, r: (not may_be(r.code, RPC_OK)
                                     or (n.seen.server == "completed"
                                         and r.output("reply") == n.seen.reply
                                         and n.probe("sync_call", reply=n.seen.reply).only(RPC_OK)
                                         and only(r.code, RPC_OK))))),
    Obligation(
        "rpc.initialize", ("RPC-INIT-01",),
        "RpcAsyncInitializeHandle(p, sizeof(RPC_ASYNC_STATE)) on a handle with no outstanding "
        "call is DEFINED and returns RPC_S_OK with Size, Signature 0x43595341, Lock 0, Flags 0, "
        "StubInfo and RuntimeInfo NULL, Reserved 0, and UserInfo left alone.",
        M, Whenever(("RpcAsyncInitializeHandle",),
                    lambda n, a: not outstanding(n) and a["size"] == "exact",
                    lambda n, a, r: only(r.code, RPC_OK) and all(
                        r.output(k) == v for k, v in INITIALISED.items()), defined=True)),
    Obligation(
        "rpc.initialize_wrong_size", ("RPC-INIT-02",),
        "RpcAsyncInitializeHandle with a Size larger or smaller than the structure is DEFINED, "
        "returns RPC_S_INVALID_ARG and changes nothing.",
        M, Whenever(("RpcAsyncInitializeHandle",),
                    lambda n, a: not outstanding(n) and a["size"] != "exact",
                    lambda n, a, r: only(r.code, codes.RPC_S_INVALID_ARG)
                    and r.next.state == n.state, defined=True)),
    Obligation(
        "rpc.any_notification_type", ("RPC-INIT-04",),
        "After initialising, the client may choose any NotificationType (filling the matching "
        "member of u): on a freshly initialised handle with a working binding, AsyncCall is "
        "DEFINED and succeeds for each of None, Event, Apc, Ioc, Hwnd and Callback (Apc with an "
        "explicit hThread here; its NULL form is rpc.apc_null_thread_call).",
        M, Whenever(("AsyncCall",), lambda n, a: n.seen.handle == "init" and not held(n)
                    and a["binding"] == "good" and a["hThread"] == "explicit",
                    lambda n, a, r: succeeds(r.code), defined=True)),
    Obligation(
        "rpc.one_handle_per_call", ("RPC-INIT-06",),
        "Every outstanding call needs its own handle: AsyncCall on a handle whose call is "
        "outstanding is never DEFINED.",
        M, Whenever(("AsyncCall",), lambda n, a: outstanding(n), never_defined=True)),
    Obligation(
        "rpc.handle_kept_until_final", ("RPC-INIT-07",),
        "The client keeps the handle until RpcAsyncCompleteCall is final: re-initialising it "
        "while its call is outstanding is never DEFINED.",
        M, Whenever(("RpcAsyncInitializeHandle",), lambda n, a: outstanding(n),
                    never_defined=True)),
    Obligation(
        "rpc.call_handle_names_the_call", ("RPC-STATE-01", "RPC-SRV-CANCEL-03"),
        "RpcAsyncGetCallHandle gives the call's binding: RpcServerTestCancel on it, while the "
        "routine holds the call, is DEFINED and answers RPC_S_OK or RPC_S_CALL_IN_PROGRESS, never "
        "RPC_S_INVALID_BINDING or RPC_S_NO_CALL_ACTIVE.",
        M, Whenever(("server_test_cancel",), lambda n, a: held(n),
                    lambda n, a, r: only(r.code, RPC_OK, codes.RPC_S_CALL_IN_PROGRESS),
                    defined=True)),
    Obligation(
        "rpc.event_is_call_complete", ("RPC-STATE-02",),
        "When the runtime notifies the client it stores the kind of event: every notification "
        "received carries Event = RpcCallComplete.",
        M, Whenever(("wait_notification",), lambda n, a: True,
                    lambda n, a, r: not may_be(r.code, NOTIFIED)
                    or r.output("Event") == RPC_CALL_COMPLETE)),
    # 2.13 making the call, notifications
    Obligation(
        "rpc.call_returns_at_once", ("RPC-CLI-CALL-01",),
        "A successful AsyncCall returns without waiting for the server: RpcAsyncGetCallStatus "
        "then reports RPC_S_ASYNC_CALL_PENDING and the routine holds the call (it can complete "
        "it).",
        M, Whenever(("AsyncCall",), lambda n, a: a["binding"] == "good",
                    lambda n, a, r: (not succeeds(r.code)
                                     or (r.next.probe("RpcAsyncGetCallStatus").only(PENDING)
                                         and r.next.probe("server_complete", reply=1,
                                                          thread="routine").defined)))),
    Obligation(
        "rpc.raised_call_leaves_nothing", ("RPC-CLI-CALL-02",),
        "An AsyncCall that fails (the stub raised) leaves nothing behind: no notification will "
        "arrive for it, and there is nothing new to complete, cancel or serve.",
        M, Whenever(("AsyncCall",), lambda n, a: True, no_trace_left)),
    *(notified_only_after_completion(kind) for kind in NOTIFY_RULES),
    *(notified_eventually(kind) for kind in NOTIFY_RULES),
    Obligation(
        "rpc.apc_null_thread_notified", ("RPC-CLI-NOTIFY-02",),
        "With NotificationType Apc and u.APC.hThread NULL the APC goes to the thread that issued "
        "the call: AsyncCall in that form is DEFINED on a fresh handle with a working binding, "
        "and from every state where such a call is outstanding and not yet notified, a state "
        "where its notification has been received (an alertable wait on the issuing thread) is "
        "reachable.",
        M, Reach(lambda n: outstanding(n) and n.seen.apc_null and n.seen.notes == 0,
                 lambda n: n.seen.notes >= 1, without=(*NEW_CALL, CANCEL))),
    Obligation(
        "rpc.apc_null_thread_call", ("RPC-CLI-NOTIFY-02", "RPC-INIT-04"),
        "AsyncCall with NotificationType Apc and u.APC.hThread NULL on a freshly initialised "
        "handle with a working binding is DEFINED and succeeds.",
        M, Whenever(("AsyncCall",), lambda n, a: (n.seen.handle == "init" and not held(n)
                                                 and a["binding"] == "good"
                                                 and a["hThread"] == "NULL"
                                                 and a["notify"] == "Apc"),
                    lambda n, a, r: succeeds(r.code), defined=True)),
    Obligation(
        "rpc.no_thread_without_apc", ("RPC-CLI-NOTIFY-02",),
        "u.APC.hThread is read only for NotificationType Apc: AsyncCall with hThread NULL and any "
        "other NotificationType is never DEFINED.",
        M, Whenever(("AsyncCall",), lambda n, a: a["hThread"] == "NULL" and a["notify"] != "Apc",
                    never_defined=True)),
    Obligation(
        "rpc.one_notification_per_call", tuple(NOTIFY_RULES.values()),
        "The runtime notifies when the call completes, and a call completes once: no call "
        "delivers a second completion notification.",
        M, Always(lambda n: n.seen.notes <= 1)),
    Obligation(
        "rpc.none_not_notified", ("RPC-CLI-NOTIFY-06",),
        "With NotificationType None there is no notification: wait_notification never reports "
        "one.",
        M, Whenever(("wait_notification",), lambda n, a: n.seen.notify == "None",
                    lambda n, a, r: not may_be(r.code, NOTIFIED))),
    Obligation(
        "rpc.none_polls_to_completion", ("RPC-CLI-NOTIFY-06",),
        "With NotificationType None the client learns of completion by polling: from every "
        "state where such a call is outstanding, a state where RpcAsyncGetCallStatus has "
        "returned a final value is reachable.",
        M, Reach(lambda n: outstanding(n) and n.seen.notify == "None" and n.seen.status == "none",
                 lambda n: n.seen.status != "none", without=NEW_CALL)),
    # 2.14 status and completion
    Obligation(
        "rpc.status_pending_while_server_works", ("RPC-CLI-STATUS-01", "RPC-CLI-CANCEL-03"),
        "While the routine holds the call and no abortive cancel ended it (a non-abortive cancel "
        "leaves the client waiting), RpcAsyncGetCallStatus is DEFINED and returns "
        "RPC_S_ASYNC_CALL_PENDING.",
        M, Whenever(("RpcAsyncGetCallStatus",), lambda n, a: server_waiting_call(n),
                    lambda n, a, r: only(r.code, PENDING), defined=True)),
    Obligation(
        "rpc.status_after_success", ("RPC-CLI-STATUS-02",),
        "After the routine completed the call and no cancel was requested, RpcAsyncGetCallStatus "
        "is DEFINED and returns RPC_S_OK, or RPC_S_ASYNC_CALL_PENDING only while the reply is on "
        "its way (no notification, no final status yet).",
        M, Whenever(("RpcAsyncGetCallStatus",), lambda n, a: outstanding(n)
                    and n.seen.server == "completed" and n.seen.cancel == "no",
                    lambda n, a, r: only(r.code, RPC_OK) or (
                        only(r.code, PENDING) and n.seen.notes == 0 and n.seen.status == "none"),
                    defined=True)),
    Obligation(
        "rpc.final_status_means_finished", ("RPC-CLI-STATUS-03",),
        "Any status other than pending means the call is finished: the routine completed, "
        "aborted or raised, an abortive cancel ended it, or the call on a binding to no server "
        "failed; RpcAsyncCompleteCall then gives the final result (DEFINED, never pending).",
        M, Whenever(("RpcAsyncGetCallStatus",), lambda n, a: outstanding(n),
                    lambda n, a, r: not final(r) or (
                        finished(n)
                        and r.next.probe("RpcAsyncCompleteCall").defined
                        and not r.next.probe("RpcAsyncCompleteCall").may_be(PENDING)))),
    Obligation(
        "rpc.status_tells_the_result", ("RPC-CLI-STATUS-02", "RPC-CLI-STATUS-03"),
        "RPC_S_OK from RpcAsyncGetCallStatus means the call completed successfully, so its final "
        "RpcAsyncCompleteCall returns RPC_S_OK; after a failure status it does not.",
        M, Whenever(("RpcAsyncCompleteCall",), lambda n, a: outstanding(n)
                    and n.seen.status != "none",
                    lambda n, a, r: (only(r.code, RPC_OK) if n.seen.status == "ok"
                                     else not may_be(r.code, RPC_OK)))),
    Obligation(
        "rpc.reuse_as_pinned", ("RPC-INIT-08",),
        "A handle whose call has completed, used for a new call without RpcAsyncInitializeHandle "
        "(D-11): where handle_reuse pins reinitialize_required (Windows 2000, the conceptual "
        "page: the stub may raise), the call fails; where it pins reuse_allowed (Windows XP "
        "on), a call on a working binding is DEFINED and may succeed.",
        M, Whenever(("AsyncCall",), lambda n, a: (n.seen.handle == "final"
                                                  and n.pin("handle_reuse") is not None),
                    lambda n, a, r: (fails(r.code)
                                     if n.pin("handle_reuse") == "reinitialize_required"
                                     else True),
                    some=(lambda n, a, r: (n.pin("handle_reuse") != "reuse_allowed"
                                           or a["binding"] != "good" or succeeds(r.code)),)),
        points=("handle_reuse",)),
    Obligation(
        "rpc.unused_handle_status", ("RPC-CLI-STATUS-04",),
        "RpcAsyncGetCallStatus on an initialised handle that has carried no call is DEFINED and "
        "returns RPC_S_INVALID_ASYNC_HANDLE or RPC_S_INVALID_BINDING (D-12), the one "
        "unused_handle_status pins when pinned.",
        M, Whenever(("RpcAsyncGetCallStatus",), lambda n, a: n.seen.handle == "init",
                    lambda n, a, r: unused_handle_code(n, r), defined=True),
        points=("unused_handle_status",)),
    Obligation(
        "rpc.invalid_handle[RpcAsyncGetCallStatus]", ("RPC-CLI-STATUS-04",),
        "RpcAsyncGetCallStatus on a zeroed, never initialised structure is DEFINED and returns "
        "RPC_S_INVALID_ASYNC_HANDLE or RPC_S_INVALID_BINDING (D-12), the pinned one when pinned.",
        M, Whenever(("invalid_handle",), lambda n, a: a["api"] == "RpcAsyncGetCallStatus",
                    lambda n, a, r: unused_handle_code(n, r), defined=True),
        points=("unused_handle_status",)),
    Obligation(
        "rpc.complete_pending_while_server_works", ("RPC-CLI-COMPLETE-01", "RPC-CLI-CANCEL-03"),
        "Before the reply is received (the routine holds the call, no abortive cancel), "
        "RpcAsyncCompleteCall is DEFINED, returns RPC_S_ASYNC_CALL_PENDING and is not final: "
        "nothing changes.",
        M, Whenever(("RpcAsyncCompleteCall",), lambda n, a: server_waiting_call(n),
                    lambda n, a, r: only(r.code, PENDING) and r.next.state == n.state,
                    defined=True)),
    Obligation(
        "rpc.complete_after_success", ("RPC-CLI-COMPLETE-02",),
        "After the routine completed the call and no cancel was requested, RpcAsyncCompleteCall "
        "is DEFINED and returns RPC_S_OK, or RPC_S_ASYNC_CALL_PENDING only while the reply is on "
        "its way (no notification, no final status yet).",
        M, Whenever(("RpcAsyncCompleteCall",), lambda n, a: outstanding(n)
                    and n.seen.server == "completed" and n.seen.cancel == "no",
                    lambda n, a, r: only(r.code, RPC_OK) or (
                        only(r.code, PENDING) and n.seen.notes == 0 and n.seen.status == "none"),
                    defined=True)),
    Obligation(
        "rpc.reply_may_be_on_its_way", ("RPC-CLI-COMPLETE-01", "RPC-CLI-STATUS-01"),
        "Once the call has completed but before the client was notified or saw a final status, "
        "the reply may or may not have been received: RpcAsyncCompleteCall and "
        "RpcAsyncGetCallStatus each allow RPC_S_ASYNC_CALL_PENDING and a final value.",
        M, Whenever(("RpcAsyncCompleteCall", "RpcAsyncGetCallStatus"),
                    lambda n, a: (outstanding(n) and finished(n) and n.seen.notes == 0
                                  and n.seen.status == "none"),
                    defined=True, some=(lambda n, a, r: only(r.code, PENDING),
                                        lambda n, a, r: final(r)))),
    Obligation(
        "rpc.cancel_may_take_effect", ("RPC-CLI-CANCEL-05", "RPC-CLI-COMPLETE-04"),
        "A non-abortive cancel that reached the routine while it held the call may end the call "
        "up cancelled (how often the server checks decides): once the routine ended it, and "
        "unless RpcAsyncGetCallStatus already said RPC_S_OK, RPC_S_CALL_CANCELLED is among the "
        "final RpcAsyncCompleteCall results allowed. The rule is a MAY: an implementation that "
        "pins late_cancel_result=server_result declares it always returns the routine's result.",
        M, Whenever(("RpcAsyncCompleteCall",),
                    lambda n, a: (outstanding(n) and n.seen.soft_in_time
                                  and not n.seen.abort_in_time and n.seen.status != "ok"
                                  and n.seen.server in ("completed", "aborted", "raised")
                                  and n.pin("late_cancel_result") != "server_result"),
                    defined=True,
                    some=(lambda n, a, r: only(r.code, codes.RPC_S_CALL_CANCELLED),))),
    Obligation(
        "rpc.no_outputs_on_failure", ("RPC-CLI-COMPLETE-03",),
        "[out] values are valid only with RPC_S_OK: a RpcAsyncCompleteCall outcome other than "
        "RPC_S_OK asserts no reply.",
        M, Whenever(("RpcAsyncCompleteCall",), lambda n, a: True,
                    lambda n, a, r: only(r.code, RPC_OK) or r.output("reply") is MISSING)),
    Obligation(
        "rpc.cancelled_call_reports_cancelled", ("RPC-CLI-COMPLETE-04", "RPC-CLI-CANCEL-02"),
        "A call cancelled on the client (an abortive cancel accepted while the routine held it) "
        "completes with RPC_S_CALL_CANCELLED: every final RpcAsyncCompleteCall returns it.",
        M, Whenever(("RpcAsyncCompleteCall",), lambda n, a: outstanding(n)
                    and n.seen.abort_in_time,
                    lambda n, a, r: not final(r) or only(r.code, codes.RPC_S_CALL_CANCELLED))),
    Obligation(
        "rpc.final_completion_is_final", ("RPC-CLI-COMPLETE-06",),
        "A RpcAsyncCompleteCall that returns anything but pending is final: afterwards neither "
        "RpcAsyncCompleteCall nor RpcAsyncCancelCall is DEFINED, and the handle may be "
        "initialised for a new call.",
        M, Whenever(("RpcAsyncCompleteCall",), lambda n, a: outstanding(n),
                    lambda n, a, r: not final(r) or (
                        not defined(r.next, "RpcAsyncCompleteCall")
                        and not r.next.probe("RpcAsyncCancelCall", abort=False).defined
                        and not r.next.probe("RpcAsyncCancelCall", abort=True).defined
                        and r.next.probe("RpcAsyncInitializeHandle", size="exact").defined))),
    invalid_handle("RpcAsyncCompleteCall", ("RPC-CLI-COMPLETE-09", "RPC-SRV-COMPLETE-08"),
                   "RpcAsyncCompleteCall (client or server side) on an invalid handle is DEFINED "
                   "and returns RPC_S_INVALID_ASYNC_HANDLE."),
    Obligation(
        "rpc.client_closes_its_resources", ("RPC-CLI-COMPLETE-10",),
        "The runtime does not close the event or port the client supplied: every final "
        "RpcAsyncCompleteCall leaves it open (output resources_open).",
        M, Whenever(("RpcAsyncCompleteCall",), lambda n, a: outstanding(n),
                    lambda n, a, r: not final(r) or r.output("resources_open") is True)),
    # 2.15 cancelling
    Obligation(
        "rpc.cancel_accepted", ("RPC-CLI-CANCEL-01",),
        "RpcAsyncCancelCall (abortive or not) on a handle whose call is outstanding is DEFINED "
        "and returns RPC_S_OK.",
        M, Whenever(("RpcAsyncCancelCall",), lambda n, a: outstanding(n),
                    lambda n, a, r: only(r.code, RPC_OK), defined=True)),
    invalid_handle("RpcAsyncCancelCall", ("RPC-CLI-CANCEL-01",),
                   "RpcAsyncCancelCall on an invalid handle is DEFINED and returns "
                   "RPC_S_INVALID_ASYNC_HANDLE."),
    Obligation(
        "rpc.abortive_cancel_rushes_notification", ("RPC-CLI-CANCEL-02",),
        "An abortive cancel while the routine holds the call cancels it on the client at once "
        "and rushes the notification: with a NotificationType other than None, the next "
        "wait_notification delivers it.",
        M, Whenever(("RpcAsyncCancelCall",), lambda n, a: a["abort"] is True
                    and server_waiting_call(n) and n.seen.notify != "None" and n.seen.notes == 0,
                    lambda n, a, r: r.next.probe("wait_notification").only(NOTIFIED))),
    Obligation(
        "rpc.abortive_cancel_needs_no_server", ("RPC-CLI-CANCEL-02",),
        "After an abortive cancel the client does not wait for the server's answer: from every "
        "such state the client alone (no server move) reaches a final RpcAsyncCompleteCall.",
        M, Reach(lambda n: outstanding(n) and n.seen.abort_in_time, lambda n: not outstanding(n),
                 actors=(Actor.CLIENT,))),
    Obligation(
        "rpc.cancel_reaches_the_server", ("RPC-CLI-CANCEL-02", "RPC-CLI-CANCEL-03"),
        "Either kind of cancel is sent to the server: from every state where a cancel was "
        "accepted and the routine still holds the call, a state is reachable, with the routine "
        "still holding it and no further cancel, where RpcServerTestCancel reports the cancel "
        "(RPC_S_OK).",
        M, Reach(lambda n: n.seen.cancel != "no" and held(n),
                 lambda n: (n.seen.cancel != "no" and held(n)
                            and n.probe("server_test_cancel", timeout="finite").only(RPC_OK)),
                 without=(*NEW_CALL, CANCEL))),
    Obligation(
        "rpc.completion_after_cancel", ("RPC-CLI-CANCEL-04",),
        "Cancelling does not replace completing: from every state where a cancel was accepted "
        "for an outstanding call, a final RpcAsyncCompleteCall for it is reachable.",
        M, Reach(lambda n: outstanding(n) and n.seen.cancel != "no", lambda n: not outstanding(n),
                 without=NEW_CALL)),
    Obligation(
        "rpc.cancel_is_not_completion", ("RPC-CLI-CANCEL-04",),
        "RpcAsyncCancelCall never ends the call: afterwards RpcAsyncCompleteCall is still "
        "DEFINED.",
        M, Whenever(("RpcAsyncCancelCall",), lambda n, a: outstanding(n),
                    lambda n, a, r: r.next.probe("RpcAsyncCompleteCall").defined)),
    # 2.16 server side
    Obligation(
        "rpc.server_holds_live_handle", ("RPC-SRV-01",),
        "The manager routine gets the server async handle and keeps it to reply: while it holds "
        "the call, server_handle_live is DEFINED and returns 1.",
        M, Whenever(("server_handle_live",), lambda n, a: held(n),
                    lambda n, a, r: only(r.code, 1), defined=True)),
    Obligation(
        "rpc.server_handle_destroyed",
        ("RPC-SRV-02", "RPC-SRV-COMPLETE-05", "RPC-SRV-COMPLETE-06"),
        "Once the routine called RpcAsyncCompleteCall or RpcAsyncAbortCall, or raised, whatever "
        "that returned, the runtime has destroyed the server handle: server_handle_live returns "
        "0, and no second completion or abort is DEFINED.",
        M, Whenever(("server_complete", "server_abort", "server_raise"), lambda n, a: held(n),
                    lambda n, a, r: (r.next.probe("server_handle_live").only(0)
                                     and not defined(r.next, "server_complete")
                                     and not defined(r.next, "server_abort")))),
    Obligation(
        "rpc.server_can_complete", ("RPC-SRV-COMPLETE-01",),
        "Every call the routine holds can be completed: server_complete is DEFINED whenever it "
        "holds one.",
        M, Whenever(("server_complete",), lambda n, a: held(n), defined=True)),
    Obligation(
        "rpc.any_thread_ends_call", ("RPC-SRV-COMPLETE-07", "RPC-SRV-EXC-02"),
        "Any thread of the process may complete the call, and after the hand-off errors go "
        "through RpcAsyncAbortCall: while the routine holds the call, RpcAsyncCompleteCall or "
        "RpcAsyncAbortCall by another thread after the routine returned without ending the call "
        "is DEFINED, is answered exactly as the routine's own would be, and destroys the server "
        "handle.",
        M, Whenever(("server_complete", "server_abort"),
                    lambda n, a: held(n) and a["thread"] == "later",
                    answered_as_by_the_routine, defined=True)),
    Obligation(
        "rpc.no_raise_after_hand_off", ("RPC-SRV-EXC-02",),
        "An exception raised after the routine handed the call off has no documented result: "
        "server_raise in the later form is never DEFINED.",
        M, Whenever(("server_raise",), lambda n, a: a["thread"] == "later", never_defined=True)),
    Obligation(
        "rpc.abort_accepted", ("RPC-SRV-ABORT-01",),
        "RpcAsyncAbortCall(p, code != 0) while the routine holds the call and the client waits "
        "for it is DEFINED and returns RPC_S_OK.",
        M, Whenever(("server_abort",), lambda n, a: server_waiting_call(n),
                    lambda n, a, r: only(r.code, RPC_OK), defined=True)),
    Obligation(
        "rpc.abort_reaches_client", ("RPC-SRV-ABORT-01",),
        "After the routine aborted with code c, the client's final RpcAsyncCompleteCall is a "
        "fault with no [out] values: c itself when abort_code_delivery pins 'exact' "
        "(RPC-CLI-COMPLETE-05), RPC_S_CALL_CANCELLED also allowed once the client cancelled.",
        M, Whenever(("RpcAsyncCompleteCall",), lambda n, a: outstanding(n)
                    and n.seen.server == "aborted", lambda n, a, r: server_result(n, r)),
        points=("abort_code_delivery",)),
    Obligation(
        "rpc.raise_ends_call", ("RPC-SRV-EXC-01",),
        "After the routine raised code c on the dispatch thread (before any hand-off) the runtime "
        "ends the call: the client's final RpcAsyncCompleteCall is a failure with no [out] "
        "values (c itself when abort_code_delivery pins 'exact'; RPC_S_CALL_CANCELLED also "
        "allowed once the client cancelled).",
        M, Whenever(("RpcAsyncCompleteCall",), lambda n, a: outstanding(n)
                    and n.seen.server == "raised", lambda n, a, r: server_result(n, r)),
        points=("abort_code_delivery",)),
    invalid_handle("RpcAsyncAbortCall", ("RPC-SRV-ABORT-04",),
                   "RpcAsyncAbortCall on an invalid handle is DEFINED and returns "
                   "RPC_S_INVALID_ASYNC_HANDLE."),
    Obligation(
        "rpc.server_test_cancel", ("RPC-SRV-CANCEL-01",),
        "RpcServerTestCancel on the call the routine holds is DEFINED and returns "
        "RPC_S_CALL_IN_PROGRESS while the client has not cancelled; after a cancel RPC_S_OK (or "
        "RPC_S_CALL_IN_PROGRESS while the notice has not arrived, RPC-CLI-CANCEL-05).",
        M, Whenever(("server_test_cancel",), lambda n, a: held(n), test_cancel_answer,
                    defined=True)),
    Obligation(
        "rpc.cancel_notice_on_its_way", ("RPC-CLI-CANCEL-05", "RPC-SRV-CANCEL-01"),
        "A cancel takes effect depending on how far the call had got (RPC-CLI-CANCEL-05): until "
        "RpcServerTestCancel has reported it, a single RpcServerTestCancel (zero timeout) on the "
        "call the routine holds may still answer RPC_S_CALL_IN_PROGRESS, the notice not having "
        "arrived; the table must allow that answer.",
        M, Whenever(("server_test_cancel",), lambda n, a: (held(n) and n.seen.cancel != "no"
                                                          and not n.seen.told
                                                          and a["timeout"] == "zero"),
                    defined=True,
                    some=(lambda n, a, r: only(r.code, codes.RPC_S_CALL_IN_PROGRESS),))),
    Obligation(
        "rpc.server_test_cancel_no_call", ("RPC-SRV-CANCEL-01", "RPC-SRV-CANCEL-03"),
        "RpcServerTestCancel(0) on a server thread that runs no call is DEFINED in every state "
        "and returns RPC_S_NO_CALL_ACTIVE.",
        M, Whenever(("server_test_cancel_idle",), lambda n, a: True,
                    lambda n, a, r: only(r.code, codes.RPC_S_NO_CALL_ACTIVE), defined=True)),
    Obligation(
        "rpc.server_test_cancel_only_reports", ("RPC-SRV-CANCEL-02",),
        "RpcServerTestCancel only reports: it changes no state on either side (afterwards every "
        "other operation is answered as before; RpcServerTestCancel itself, once it has reported "
        "the cancel, may go on reporting it), and a cancelled call must still be completed or "
        "aborted by the routine (server_complete stays DEFINED).",
        M, Whenever(("server_test_cancel",), lambda n, a: held(n),
                    lambda n, a, r: (answers_elsewhere(n) == answers_elsewhere(r.next)
                                     and r.next.probe("server_complete", reply=1,
                                                      thread="routine").defined))),
)
