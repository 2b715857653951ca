"""The COM call object's rule obligations (spec/DOMAIN.md sections 2.2 to 2.7), and its observer.

Read each obligation next to the rule it cites, not next to `tables/com_call.py`: the obligations
say in their own words what the rules require, and the checker finds whether the table agrees.

The observer (`ComSeen`) keeps what the client and the test server have done, from the operations
and their results only: whether a call object exists, whether a call is in flight (Begin_
succeeded and Finish_ has not returned), whether the server still works on it or has signalled
(and with which [out] value), whether a Cancel or a Wait returned S_OK for it, and how many server
calls the client abandoned that the server has not answered yet. The table's own fields are read
only where a rule names the state they hold: the server object's support for asynchronous calls
(`factory`), cancellation enabled on the server's thread (`cancellable`) and the call object's
documented phase (`phase`: IDLE, PENDING, SIGNALED).
"""

from __future__ import annotations

from dataclasses import dataclass, replace

from callgate.model import codes
from callgate.model.obligations.core import (
    After,
    Always,
    ArgMap,
    Now,
    Obligation,
    Observer,
    Reach,
    Whenever,
    admitted,
    as_pinned,
    fails,
    may_be,
    only,
    succeeds,
)
from callgate.model.transitions import Allowed, AnyFailure, Exact, Value

M = "com_call"
ABANDON_CAP = 3  # the observer counts abandoned server calls up to this many


@dataclass(frozen=True)
class ComSeen:
    """What has happened to one call-object slot, in the rules' terms."""

    obj: str = "none"         # none | live | released: CreateCall returned S_OK; Release
    call: bool = False        # a call is in flight: Begin_ succeeded, Finish_ has not returned
    server: str = "idle"      # idle | working | answered: the test server's Begin_ processing
    answer: int = 0           # the [out] value the server signalled for the current call
    cancelled: bool = False   # ICancelMethodCalls::Cancel returned S_OK for the current call
    cancel_in_time: bool = False  # ... while the server still worked on it (not yet answered)
    wait_ok: bool = False     # ISynchronize::Wait returned S_OK for the current call
    abandoned: int = 0        # server calls the client left while the server still held them

    def __str__(self) -> str:
        return (f"obj={self.obj} call={self.call} server={self.server} answer={self.answer} "
                f"cancelled={self.cancelled} cancel_in_time={self.cancel_in_time} "
                f"wait_ok={self.wait_ok} abandoned={self.abandoned}")


def _end_call(seen: ComSeen) -> ComSeen:
    """The current call is over for the client; a server still working on it is abandoned."""
    left = seen.abandoned + (1 if seen.server == "working" else 0)
    return replace(seen, call=False, server="idle", answer=0, cancelled=False,
                   cancel_in_time=False, wait_ok=False, abandoned=min(left, ABANDON_CAP))


def observe(seen: ComSeen, op: str, args: ArgMap, outcome: Allowed) -> ComSeen:
    """The record after `op(args)` ended with `outcome`."""
    code = outcome.code
    if op == "CreateCall" and succeeds(code):
        return replace(seen, obj="live")
    if op == "Begin_" and seen.obj == "live" and succeeds(code):
        return replace(seen, call=True, server="working", answer=0, cancelled=False,
                       cancel_in_time=False, wait_ok=False)
    if op == "Wait" and seen.call and only(code, codes.S_OK):
        return replace(seen, wait_ok=True)
    if op == "Cancel" and seen.call and only(code, codes.S_OK):
        return replace(seen, cancelled=True,
                       cancel_in_time=seen.cancel_in_time or seen.server == "working")
    if op == "Finish_" and seen.call:
        return _end_call(seen)
    if op == "Release":
        return replace(_end_call(seen) if seen.call else seen, obj="released")
    if op == "server_signal" and seen.server == "working":
        out = args["out"]
        assert isinstance(out, int)
        return replace(seen, server="answered", answer=out)
    if op == "server_signal_late":
        return replace(seen, abandoned=max(0, seen.abandoned - 1))
    return seen


OBSERVER: Observer[ComSeen] = Observer(M, ComSeen(), observe)


# --- vocabulary -----------------------------------------------------------------------------

N = Now[ComSeen]
A = After[ComSeen]
TIMEOUT_CODES = (codes.RPC_S_CALLPENDING, codes.RPC_E_TIMEOUT)  # D-01's defined readings
# The operations a client makes on its call object (Release aside).
CALL_OBJECT_OPS: tuple[tuple[str, dict[str, Value]], ...] = (
    ("Begin_", {}), ("Finish_", {}), ("Wait", {"timeout": "zero"}), ("Wait", {"timeout": "finite"}),
    ("Wait", {"timeout": "infinite"}), ("Cancel", {"seconds": 0}), ("TestCancel", {}),
    ("QueryInterface", {"iid": "ISynchronize"}), ("QueryInterface", {"iid": "ICancelMethodCalls"}),
)


def live(n: N) -> bool:
    return bool(n.seen.obj == "live")


def in_flight(n: N) -> bool:
    return bool(n.seen.call)


def answered(n: N) -> bool:
    return bool(n.seen.server == "answered")


def standard_marshaling(n: N) -> bool:
    return n.pin("call_object_origin") in (None, "standard_marshaling")


def client_view(n: N) -> tuple[object, ...]:
    """Everything the client can tell about its call object: what each of its operations does."""
    return tuple(n.probe(op, **args).signature() for op, args in CALL_OBJECT_OPS)


def late_answers(n: N) -> int:
    """How many late answers (server_signal_late) the test server can still give in a row."""
    count, state = 0, n.state
    while count < ABANDON_CAP:
        answer = Now(n.machine, state, n.seen, n.pins, n.open_points).probe("server_signal_late")
        if not answer.defined:
            break
        count += 1
        state = answer.outcomes[0].next_state
    return count


def begin_refused(n: N, _args: ArgMap, a: A) -> bool:
    """A Begin_ while a call is in flight: refused (D-02's pinned reading), nothing changed."""
    return as_pinned(n, "begin_pending_code", a) and a.next.state == n.state


def fails_output(after: A, name: str) -> bool:
    """The outcome asserts output `name` and every value it admits is a failure."""
    value = after.output(name)
    return isinstance(value, (Exact, AnyFailure)) and fails(value)


def finish_delivers(n: N, _args: ArgMap, a: A) -> bool:
    """Finish_ returns what the synchronous method answered with the same value returns."""
    sync = n.probe("sync_call", out=n.seen.answer)
    mine = admitted(a.code)
    same_code = sync.defined and mine is not None and all(admitted(s.code) == mine
                                                          for s in sync.outcomes)
    return (same_code and a.output("out") == n.seen.answer
            and a.next["phase"] == "IDLE")


def gone_after_release(_n: N, _args: ArgMap, a: A) -> bool:
    nxt = a.next
    return not any(nxt.probe(op, **args).defined for op, args in CALL_OBJECT_OPS)


# --- the obligations ------------------------------------------------------------------------

OBLIGATIONS: tuple[Obligation, ...] = (
    # 2.2 ICallFactory and CreateCall
    Obligation(
        "com.query_call_factory", ("COM-CF-01", "COM-SRV-01"),
        "QueryInterface(ICallFactory) on the server object is DEFINED and returns S_OK when the "
        "object supports asynchronous calls, E_NOINTERFACE when it does not.",
        M, Whenever(("QueryInterface",), lambda n, a: a["iid"] == "ICallFactory",
                    lambda n, a, r: only(r.code, codes.S_OK if n["factory"]
                                         else codes.E_NOINTERFACE), defined=True)),
    Obligation(
        "com.no_factory_no_create_call", ("COM-SRV-01", "COM-CF-01"),
        "Without ICallFactory (the object does not support asynchronous calls) there is nothing "
        "to call CreateCall on: CreateCall is never DEFINED.",
        M, Whenever(("CreateCall",), lambda n, a: not n["factory"], never_defined=True)),
    Obligation(
        "com.create_call", ("COM-CF-02", "COM-CF-06", "COM-CF-09"),
        "CreateCall with the asynchronous IID (with or without a controlling unknown) on a "
        "factory with no call object yet is DEFINED; S_OK gives a fresh call object in IDLE; "
        "under standard marshaling every outcome is S_OK; in the same apartment it may succeed "
        "or fail (COM-CF-08), and the table allows both.",
        M, Whenever(("CreateCall",),
                    lambda n, a: bool(n["factory"]) and n.seen.obj == "none" and a["riid"] == "async",
                    lambda n, a, r: ((succeeds(r.code) and r.next["phase"] == "IDLE")
                                     or (not standard_marshaling(n) and fails(r.code))),
                    defined=True,
                    some=(lambda n, a, r: succeeds(r.code),
                          lambda n, a, r: standard_marshaling(n) or fails(r.code))),
        points=("call_object_origin",)),
    Obligation(
        "com.create_call_sync_iid", ("COM-CF-03",),
        "CreateCall with an IID that is not an asynchronous interface's is DEFINED, returns "
        "E_NOINTERFACE and creates nothing.",
        M, Whenever(("CreateCall",),
                    lambda n, a: bool(n["factory"]) and n.seen.obj == "none" and a["riid"] == "sync",
                    lambda n, a, r: only(r.code, codes.E_NOINTERFACE) and r.next.state == n.state,
                    defined=True)),
    Obligation(
        "com.call_object_usable", ("COM-CF-07",),
        "After CreateCall returned S_OK (and ICallFactory was released), the call object is "
        "usable: Begin_ is DEFINED on it and succeeds.",
        M, Whenever(("CreateCall",), lambda n, a: True,
                    lambda n, a, r: not succeeds(r.code) or r.next.probe("Begin_").succeeds())),
    # 2.3 Begin_
    Obligation(
        "com.begin_starts_call", ("COM-BEGIN-01",),
        "Begin_ on a call object with no call in flight is DEFINED and succeeds, and control "
        "returns before the server has finished: a Wait with zero timeout does not yet return "
        "S_OK, and the server can still signal.",
        M, Whenever(("Begin_",), lambda n, a: live(n) and not in_flight(n),
                    lambda n, a, r: (succeeds(r.code)
                                     and r.next.probe("Wait", timeout="zero").fails()
                                     and r.next.probe("server_signal", out=1,
                                                      then_impersonate=False).defined),
                    defined=True)),
    Obligation(
        "com.one_call_at_a_time", ("COM-BEGIN-02", "COM-CF-10"),
        "While a call is in flight (Begin_ succeeded, Finish_ not returned) and not cancelled, "
        "Begin_ is DEFINED, fails (exactly RPC_S_CALLPENDING when begin_pending_code pins that "
        "reading of D-02) and changes nothing.",
        M, Whenever(("Begin_",), lambda n, a: in_flight(n) and not n.seen.cancelled, begin_refused,
                    defined=True), points=("begin_pending_code",)),
    Obligation(
        "com.begin_refused_until_finish", ("COM-BEGIN-03", "COM-CANCEL-03"),
        "After an accepted Cancel and until Finish_ returns, Begin_ is DEFINED, fails (D-02's "
        "pinned reading when pinned) and changes nothing.",
        M, Whenever(("Begin_",), lambda n, a: in_flight(n) and n.seen.cancelled, begin_refused,
                    defined=True), points=("begin_pending_code",)),
    # 2.4 Wait
    Obligation(
        "com.query_synchronize", ("COM-WAIT-01", "COM-SYNC-06"),
        "QueryInterface(ISynchronize) on a call object, in any phase, is DEFINED and returns S_OK.",
        M, Whenever(("QueryInterface",), lambda n, a: live(n) and a["iid"] == "ISynchronize",
                    lambda n, a, r: only(r.code, codes.S_OK), defined=True)),
    Obligation(
        "com.wait_after_signal", ("COM-WAIT-02",),
        "Once the server has signalled the call in flight, the client's first Wait (any timeout) "
        "is DEFINED and returns S_OK.",
        M, Whenever(("Wait",), lambda n, a: in_flight(n) and answered(n) and not n.seen.wait_ok,
                    lambda n, a, r: only(r.code, codes.S_OK), defined=True)),
    Obligation(
        "com.wait_ok_means_begin_returned", ("COM-WAIT-02",),
        "A Wait that returns S_OK on a call in flight means the server's Begin_ processing is "
        "over: the server has signalled.",
        M, Whenever(("Wait",), lambda n, a: in_flight(n),
                    lambda n, a, r: not may_be(r.code, codes.S_OK) or answered(n))),
    Obligation(
        "com.wait_ok_allows_finish", ("COM-WAIT-02",),
        "After a Wait returned S_OK on a call in flight, Finish_ may be called: it is DEFINED.",
        M, Whenever(("Wait",), lambda n, a: in_flight(n),
                    lambda n, a, r: not may_be(r.code, codes.S_OK)
                    or r.next.probe("Finish_").defined)),
    Obligation(
        "com.wait_times_out", ("COM-WAIT-03", "COM-WAIT-04"),
        "Wait with a zero or finite timeout on a call in flight that the server has not "
        "signalled and that was not cancelled is DEFINED, returns a failure (exactly the "
        "call_wait_timeout_code reading of D-01 when pinned) and changes nothing: Wait may be called "
        "again.",
        M, Whenever(("Wait",),
                    lambda n, a: (in_flight(n) and not answered(n) and not n.seen.cancelled
                                  and a["timeout"] in ("zero", "finite")),
                    lambda n, a, r: as_pinned(n, "call_wait_timeout_code", r) and r.next.state == n.state,
                    defined=True), points=("call_wait_timeout_code",)),
    Obligation(
        "com.no_finish_before_done", ("COM-WAIT-03", "COM-FIN-03"),
        "While the server has not signalled the call in flight and no Wait has returned S_OK "
        "for it, the client must not call Finish_ yet: Finish_ is not DEFINED.",
        M, Whenever(("Finish_",), lambda n, a: in_flight(n) and not answered(n)
                    and not n.seen.wait_ok, never_defined=True)),
    Obligation(
        "com.wait_zero_returns", ("COM-WAIT-05",),
        "Wait with a zero timeout returns at once whatever the state: it is DEFINED on every "
        "call object.",
        M, Whenever(("Wait",), lambda n, a: live(n) and a["timeout"] == "zero", defined=True)),
    Obligation(
        "com.wait_infinite_until_signalled", ("COM-WAIT-05",),
        "Wait(INFINITE) waits until the object is signalled: wherever it is DEFINED it returns "
        "S_OK.",
        M, Whenever(("Wait",), lambda n, a: a["timeout"] == "infinite",
                    lambda n, a, r: only(r.code, codes.S_OK))),
    Obligation(
        "com.sta_wait_pumps", ("COM-WAIT-06",),
        "A finite Wait on an STA thread runs the modal loop: wherever probe_sta_wait is DEFINED, "
        "the window message posted before it was dispatched (output pumped is True).",
        M, Whenever(("probe_sta_wait",), lambda n, a: True,
                    lambda n, a, r: r.output("pumped") is True)),
    Obligation(
        "com.sta_wait_times_out", ("COM-WAIT-06", "COM-WAIT-03", "COM-WAIT-04"),
        "The STA probe is a Wait with a finite timeout: on a call in flight that the server has "
        "not signalled and that was not cancelled it returns a failure, exactly the "
        "call_wait_timeout_code reading of D-01 when pinned, and changes nothing.",
        M, Whenever(("probe_sta_wait",),
                    lambda n, a: in_flight(n) and not answered(n) and not n.seen.cancelled,
                    lambda n, a, r: as_pinned(n, "call_wait_timeout_code", r)
                    and r.next.state == n.state), points=("call_wait_timeout_code",)),
    Obligation(
        "com.sta_wait_probe_offered", ("COM-WAIT-06",),
        "The STA probe can be made: from every initial state of a server object that supports "
        "asynchronous calls, a state where probe_sta_wait is DEFINED is reachable.",
        M, Reach(lambda n: n.state in n.machine.initial and bool(n["factory"]),
                 lambda n: n.probe("probe_sta_wait").defined)),
    Obligation(
        "com.repeated_wait", ("COM-SYNC-06", "COM-SYNC-03", "COM-SYNC-04"),
        "The call object's ISynchronize is a StdEvent or a ManualResetEvent: once Wait returned "
        "S_OK for the call in flight, a further Wait returns S_OK (manual reset) or times out "
        "(auto reset), and nothing else.",
        M, Whenever(("Wait",), lambda n, a: in_flight(n) and n.seen.wait_ok,
                    lambda n, a, r: only(r.code, codes.S_OK, *TIMEOUT_CODES))),
    # 2.5 Finish_, Release
    Obligation(
        "com.finish_delivers", ("COM-FIN-01", "COM-SRV-04"),
        "Finish_ after the server signalled [out] = v, with no cancel accepted, is DEFINED, "
        "returns exactly what the synchronous method answered with v returns (code and [out] = "
        "v), and the call object is IDLE again.",
        M, Whenever(("Finish_",), lambda n, a: in_flight(n) and answered(n)
                    and not n.seen.cancelled, finish_delivers, defined=True)),
    Obligation(
        "com.begun_call_can_finish", ("COM-FIN-01", "COM-SRV-05", "COM-WAIT-02"),
        "A begun call can be finished: from every state with a call in flight, a state where "
        "Finish_ has returned for it is reachable without releasing the call object.",
        M, Reach(in_flight, lambda n: live(n) and not in_flight(n), without=("Release",))),
    Obligation(
        "com.finish_without_call", ("COM-FIN-02",),
        "Finish_ on a call object with no call in flight (never begun, or already finished) is "
        "DEFINED, returns RPC_E_CALL_COMPLETE and changes nothing.",
        M, Whenever(("Finish_",), lambda n, a: live(n) and not in_flight(n),
                    lambda n, a, r: only(r.code, codes.RPC_E_CALL_COMPLETE)
                    and r.next.state == n.state, defined=True)),
    Obligation(
        "com.reuse_after_finish", ("COM-FIN-04",),
        "Once Finish_ ends a call, the client may start another call or release the object: "
        "Begin_ is DEFINED and succeeds, and Release is DEFINED.",
        M, Whenever(("Finish_",), lambda n, a: in_flight(n),
                    lambda n, a, r: r.next.probe("Begin_").succeeds()
                    and r.next.probe("Release").defined)),
    Obligation(
        "com.release_abandons_call", ("COM-REL-01", "COM-FIN-04"),
        "Release is DEFINED on a call object, with or without a call in flight; afterwards "
        "nothing runs on it: Finish_, Wait, Begin_, Cancel, TestCancel and QueryInterface are "
        "not DEFINED, so no outputs reach the client.",
        M, Whenever(("Release",), lambda n, a: live(n), gone_after_release, defined=True)),
    Obligation(
        "com.abandoned_calls_counted", ("COM-REL-01", "COM-CANCEL-11"),
        "COM notices each abandoned call and discards its late result: the test server can give "
        "exactly as many late answers as server calls the client abandoned (released, or "
        "cancelled and finished, while the server still held them).",
        M, Always(lambda n: (late_answers(n) == n.seen.abandoned if n.seen.abandoned < ABANDON_CAP
                             else late_answers(n) >= ABANDON_CAP))),
    Obligation(
        "com.late_answer_discarded", ("COM-CANCEL-11", "COM-REL-01"),
        "The late answer of an abandoned call changes nothing the client can tell: every "
        "operation on the call object answers as before.",
        M, Whenever(("server_signal_late",), lambda n, a: True,
                    lambda n, a, r: client_view(r.next) == client_view(n))),
    Obligation(
        "com.finish_after_cancel_reachable", ("COM-FIN-05", "COM-CANCEL-03"),
        "After an accepted Cancel the client must still call Finish_: from every such state a "
        "state where Finish_ is DEFINED is reachable.",
        M, Reach(lambda n: in_flight(n) and n.seen.cancelled,
                 lambda n: in_flight(n) and n.probe("Finish_").defined)),
    Obligation(
        "com.finish_after_cancel_cleans_up", ("COM-FIN-05", "COM-CANCEL-03", "COM-CANCEL-09"),
        "Finish_ of a cancelled call cleans the call object up (Begin_ is DEFINED and succeeds "
        "again) and, unless the server had answered, returns a failure: the cancelled code "
        "(D-03), pinned reading when pinned.",
        M, Whenever(("Finish_",), lambda n, a: in_flight(n) and n.seen.cancelled,
                    lambda n, a, r: (r.next.probe("Begin_").succeeds()
                                     and (answered(n) or as_pinned(n, "cancelled_code", r)))),
        points=("cancelled_code",)),
    Obligation(
        "com.finish_cancelled_may_fail", ("COM-FIN-05", "COM-CANCEL-09", "COM-CANCEL-05"),
        "A cancel issued while the server still worked on the call may take effect (S_OK from "
        "Cancel only means the request was issued, COM-CANCEL-05), and a cancelled method "
        "returns the cancelled code (COM-CANCEL-09, D-03; likely RPC_E_CALL_CANCELED, "
        "COM-FIN-05): once the server has answered, Finish_ of such a call is DEFINED and that "
        "failure, the pinned reading when pinned, is among its allowed results.",
        M, Whenever(("Finish_",), lambda n, a: (in_flight(n) and n.seen.cancel_in_time
                                                and answered(n)),
                    defined=True, some=(lambda n, a, r: as_pinned(n, "cancelled_code", r),)),
        points=("cancelled_code",)),
    # 2.6 server side, security
    Obligation(
        "com.sync_call_same_result", ("COM-SRV-03", "COM-SRV-04"),
        "A synchronous call to the same interface is served (run asynchronously on the server "
        "without the client telling): sync_call(out = v) is DEFINED where the server supports "
        "asynchronous calls, returns S_OK with [out] = v, and leaves the call object as it was.",
        M, Whenever(("sync_call",), lambda n, a: bool(n["factory"]),
                    lambda n, a, r: (only(r.code, codes.S_OK) and r.output("out") == a["out"]
                                     and r.next.state == n.state), defined=True)),
    Obligation(
        "com.signal_reaches_call_object", ("COM-SRV-05", "COM-SYNC-01"),
        "When the server is ready to return from Begin_ it signals the call object: server_signal "
        "for the call it works on is DEFINED, returns S_OK, and a Wait(0) then returns S_OK.",
        M, Whenever(("server_signal",), lambda n, a: in_flight(n) and n.seen.server == "working"
                    and not n.seen.wait_ok,
                    lambda n, a, r: (only(r.code, codes.S_OK)
                                     and r.next.probe("Wait", timeout="zero").only(codes.S_OK)),
                    defined=True)),
    Obligation(
        "com.no_signal_without_call", ("COM-SRV-05",),
        "The server signals only a call it is working on: server_signal is not DEFINED when the "
        "test server holds no current call.",
        M, Whenever(("server_signal",), lambda n, a: n.seen.server != "working",
                    never_defined=True)),
    Obligation(
        "com.no_impersonation_after_signal", ("COM-SRV-06",),
        "Once Signal has completed the server cannot impersonate the client: wherever "
        "server_signal with then_impersonate is DEFINED, CoImpersonateClient's code (output "
        "impersonate) is a failure.",
        M, Whenever(("server_signal",), lambda n, a: a["then_impersonate"] is True,
                    lambda n, a, r: fails_output(r, "impersonate"))),
    Obligation(
        "com.impersonation_before_signal", ("COM-SRV-07",),
        "Before Signal the server may impersonate: CoImpersonateClient from the Begin_ processing "
        "the server holds is DEFINED and returns S_OK.",
        M, Whenever(("server_impersonate",), lambda n, a: n.seen.server == "working",
                    lambda n, a, r: only(r.code, codes.S_OK), defined=True)),
    Obligation(
        "com.client_security", ("COM-SEC-01",),
        "QueryInterface(IClientSecurity) on a standard-marshaled proxy call object is DEFINED "
        "and returns S_OK.",
        M, Whenever(("QueryInterface",), lambda n, a: live(n) and a["iid"] == "IClientSecurity",
                    lambda n, a, r: not standard_marshaling(n) or only(r.code, codes.S_OK),
                    defined=True), points=("call_object_origin",)),
    # 2.7 cancelling
    Obligation(
        "com.query_cancel_methods", ("COM-CANCEL-01",),
        "QueryInterface(ICancelMethodCalls) on a call object is DEFINED: S_OK under standard "
        "marshaling; for a same-apartment call object S_OK or E_NOINTERFACE, both allowed.",
        M, Whenever(("QueryInterface",), lambda n, a: live(n) and a["iid"] == "ICancelMethodCalls",
                    lambda n, a, r: only(r.code, codes.S_OK) if standard_marshaling(n)
                    else only(r.code, codes.S_OK, codes.E_NOINTERFACE), defined=True,
                    some=(lambda n, a, r: only(r.code, codes.S_OK),
                          lambda n, a, r: (standard_marshaling(n)
                                           or only(r.code, codes.E_NOINTERFACE)))),
        points=("call_object_origin",)),
    Obligation(
        "com.cancel_window", ("COM-CANCEL-02", "COM-CANCEL-05"),
        "Cancelling is allowed from Begin_ until Finish_ returns: Cancel with a finite ulSeconds "
        "is DEFINED on every call in flight. ulSeconds is how long Cancel waits for the server "
        "to finish (COM-CANCEL-05): INFINITE returns only when the server does, so it is asked "
        "only where the server has answered.",
        M, Whenever(("Cancel",), lambda n, a: in_flight(n) and a["seconds"] != codes.INFINITE,
                    defined=True)),
    Obligation(
        "com.cancel_accepted", ("COM-CANCEL-05",),
        "Cancel with a finite ulSeconds on a call in flight that the server has not answered, "
        "not yet cancelled, with cancellation enabled, is DEFINED and returns S_OK; S_OK only "
        "means the request was issued: the call is still in flight (PENDING or SIGNALED).",
        M, Whenever(("Cancel",), lambda n, a: in_flight(n) and not answered(n)
                    and not n.seen.cancelled and bool(n["cancellable"])
                    and a["seconds"] != codes.INFINITE,
                    lambda n, a, r: only(r.code, codes.S_OK)
                    and r.next["phase"] in ("PENDING", "SIGNALED"), defined=True)),
    Obligation(
        "com.cancel_twice", ("COM-CANCEL-06",),
        "Cancel of a call already cancelled is DEFINED, changes nothing, and fails: with the "
        "cancelled code of D-03 (pinned reading when pinned), or RPC_E_CALL_COMPLETE once the "
        "server has answered (COM-CANCEL-08).",
        M, Whenever(("Cancel",), lambda n, a: in_flight(n) and n.seen.cancelled,
                    lambda n, a, r: (r.next.state == n.state and fails(r.code)
                                     and (as_pinned(n, "cancelled_code", r)
                                          or (answered(n)
                                              and only(r.code, codes.RPC_E_CALL_COMPLETE)))),
                    defined=True), points=("cancelled_code",)),
    Obligation(
        "com.cancel_disabled", ("COM-CANCEL-07",),
        "Cancel when cancellation is not enabled on the thread processing the call is DEFINED "
        "and returns CO_E_CANCEL_DISABLED (or RPC_E_CALL_COMPLETE once the server answered), and "
        "records no cancel: TestCancel still returns RPC_S_CALLPENDING.",
        M, Whenever(("Cancel",), lambda n, a: in_flight(n) and not n["cancellable"],
                    lambda n, a, r: ((only(r.code, codes.CO_E_CANCEL_DISABLED)
                                      or (answered(n) and only(r.code, codes.RPC_E_CALL_COMPLETE)))
                                     and r.next.probe("TestCancel").only(codes.RPC_S_CALLPENDING)),
                    defined=True)),
    Obligation(
        "com.cancel_after_completion", ("COM-CANCEL-08", "COM-CANCEL-02"),
        "Cancel(0) after the server answered (the call completed within the timeout), with "
        "cancellation enabled and not yet cancelled, returns RPC_E_CALL_COMPLETE, or is accepted "
        "with S_OK while Finish_ has not returned; exactly RPC_E_CALL_COMPLETE when "
        "cancel_after_signal pins that reading.",
        M, Whenever(("Cancel",), lambda n, a: in_flight(n) and answered(n)
                    and not n.seen.cancelled and bool(n["cancellable"]),
                    lambda n, a, r: (only(r.code, codes.RPC_E_CALL_COMPLETE)
                                     or (n.pin("cancel_after_signal") != "RPC_E_CALL_COMPLETE"
                                         and only(r.code, codes.S_OK))),
                    defined=True), points=("cancel_after_signal",)),
    Obligation(
        "com.cancel_before_completion", ("COM-CANCEL-08",),
        "A call the server has not answered has not completed: Cancel on it never returns "
        "RPC_E_CALL_COMPLETE.",
        M, Whenever(("Cancel",), lambda n, a: in_flight(n) and not answered(n),
                    lambda n, a, r: not may_be(r.code, codes.RPC_E_CALL_COMPLETE))),
    Obligation(
        "com.test_cancel", ("COM-CANCEL-10",),
        "TestCancel on a call in flight is DEFINED and returns RPC_E_CALL_CANCELED if a Cancel "
        "was accepted for it, RPC_S_CALLPENDING otherwise.",
        M, Whenever(("TestCancel",), lambda n, a: in_flight(n),
                    lambda n, a, r: only(r.code, codes.RPC_E_CALL_CANCELED if n.seen.cancelled
                                         else codes.RPC_S_CALLPENDING), defined=True)),
    Obligation(
        "com.server_test_cancel", ("COM-CANCEL-10", "COM-CANCEL-11"),
        "TestCancel from the server's Begin_ processing, while it works on the call in flight, "
        "is DEFINED and returns RPC_E_CALL_CANCELED if the client's Cancel was accepted, "
        "RPC_S_CALLPENDING otherwise.",
        M, Whenever(("server_test_cancel",), lambda n, a: in_flight(n)
                    and n.seen.server == "working",
                    lambda n, a, r: only(r.code, codes.RPC_E_CALL_CANCELED if n.seen.cancelled
                                         else codes.RPC_S_CALLPENDING), defined=True)),
)

