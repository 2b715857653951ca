"""Thread-level cancellation's rule obligations (spec/DOMAIN.md section 2.8), for the
`thread_cancel` machine: one client thread, its synchronous call, and the cancellation functions.

The observer keeps, from the operations and their results only: how many enables are not yet
balanced (a successful enable adds one; a disable while some are outstanding takes one away,
whatever it returns, D-10; re-initialising COM clears them), whether the thread's synchronous call
is pending or was cancelled and released, whether cancellation was enabled when it started, and
whether the harness's own cancel object is registered.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

from callgate.model import codes
from callgate.model.obligations.core import (
    After,
    ArgMap,
    Now,
    Obligation,
    Observer,
    Probe,
    Whenever,
    as_pinned,
    may_be,
    only,
)
from callgate.model.transitions import Allowed

MACHINE = "thread_cancel"
MAX_SEEN = 3  # one more than the table's bound on nested enables


@dataclass(frozen=True)
class ThreadSeen:
    """What has happened on the client thread."""

    enables: int = 0           # enables not yet balanced by a disable
    call: str = "none"         # none / pending / released
    enabled_at_start: bool = False
    own: bool = False          # the harness's own cancel object is registered

    def __str__(self) -> str:
        return (f"enables={self.enables} call={self.call} enabled_at_start={self.enabled_at_start}"
                f" own={self.own}")


def observe(seen: ThreadSeen, op: str, args: ArgMap, outcome: Allowed) -> ThreadSeen:
    ok = only(outcome.code, codes.S_OK)
    if op == "CoEnableCallCancellation" and ok:
        # capped, so that a broken table that lets enables pile up cannot make the observed
        # state space infinite
        return replace(seen, enables=min(seen.enables + 1, MAX_SEEN))
    if op == "CoDisableCallCancellation" and seen.enables > 0:
        return replace(seen, enables=seen.enables - 1)
    if op == "reinitialize" and ok:
        return replace(seen, enables=0)
    if op == "start_sync_call" and ok:
        return replace(seen, call="pending", enabled_at_start=seen.enables > 0)
    if op == "CoCancelCall" and ok and seen.call == "pending":
        return replace(seen, call="released")
    if op == "server_return":
        return replace(seen, call="none", enabled_at_start=False)
    if op == "CoSetCancelObject" and ok:
        return replace(seen, own=args["pUnk"] == "cancel_object")
    return seen


OBSERVER: Observer[ThreadSeen] = Observer(MACHINE, ThreadSeen(), observe)

T = Now[ThreadSeen]
R = After[ThreadSeen]


def cancels_after_a_call_starts(n: T) -> list[Probe]:
    """From `n`: start a synchronous call, then CoCancelCall; one probe per way the start goes."""
    start = n.probe("start_sync_call")
    return [replace(n, state=o.next_state).probe("CoCancelCall") for o in start.outcomes]


def later_calls_cancellable(n: T, yes: bool) -> bool:
    """A call started from `n` can be cancelled (S_OK only) or cannot (CO_E_CANCEL_DISABLED only)."""
    probes = cancels_after_a_call_starts(n)
    code = codes.S_OK if yes else codes.CO_E_CANCEL_DISABLED
    return bool(probes) and all(p.defined and p.only(code) for p in probes)


def free(n: T) -> bool:
    """No call of the thread in progress and none held: the thread can start one."""
    return n.seen.call == "none"


def disable_nested(n: T, _args: ArgMap, r: R) -> bool:
    """D-10: CO_E_CANCEL_DISABLED or S_OK, exactly the pinned reading when pinned; afterwards
    cancellation is still enabled for a new call."""
    choice = n.pin("disable_nested_code")
    allowed = ((codes.CO_E_CANCEL_DISABLED, codes.S_OK) if choice is None
               else (codes.by_name(choice),))
    return only(r.code, *allowed) and (not free(n) or later_calls_cancellable(r.next, True))


OBLIGATIONS: tuple[Obligation, ...] = (
    Obligation(
        "thread_cancel.enable", ("COM-CCAN-03", "COM-CCAN-02"),
        "CoEnableCallCancellation(NULL) on a thread with no call in progress and fewer enables "
        "than the model's bound is DEFINED and returns S_OK; a synchronous call started "
        "afterwards can be cancelled (CoCancelCall returns S_OK).",
        MACHINE, Whenever(("CoEnableCallCancellation",),
                          lambda n, a: free(n) and a["pReserved"] == "NULL" and n.seen.enables < 2,
                          lambda n, a, r: (only(r.code, codes.S_OK)
                                           and later_calls_cancellable(r.next, True)),
                          defined=True)),
    Obligation(
        "thread_cancel.disable_balancing", ("COM-CCAN-04", "COM-CCAN-02"),
        "The disable that balances the only outstanding enable is DEFINED and returns S_OK; a "
        "synchronous call started afterwards cannot be cancelled (CO_E_CANCEL_DISABLED).",
        MACHINE, Whenever(("CoDisableCallCancellation",),
                          lambda n, a: free(n) and a["pReserved"] == "NULL" and n.seen.enables == 1,
                          lambda n, a, r: (only(r.code, codes.S_OK)
                                           and later_calls_cancellable(r.next, False)),
                          defined=True)),
    Obligation(
        "thread_cancel.disable_nested", ("COM-CCAN-04", "COM-CCAN-03"),
        "A disable while more enables remain is DEFINED, returns CO_E_CANCEL_DISABLED (the page) "
        "or S_OK (Wine), exactly the disable_nested_code reading when pinned (D-10), and "
        "cancellation stays enabled: a call started afterwards can be cancelled. Unpinned, "
        "the table allows both readings.",
        MACHINE, Whenever(("CoDisableCallCancellation",),
                          lambda n, a: free(n) and a["pReserved"] == "NULL" and n.seen.enables >= 2,
                          disable_nested, defined=True,
                          some=(lambda n, a, r: (n.pin("disable_nested_code") == "S_OK"
                                                 or may_be(r.code, codes.CO_E_CANCEL_DISABLED)),
                                lambda n, a, r: (n.pin("disable_nested_code")
                                                 == "CO_E_CANCEL_DISABLED"
                                                 or may_be(r.code, codes.S_OK)))),
        points=("disable_nested_code",)),
    Obligation(
        "thread_cancel.not_enabled", ("COM-CCAN-02", "COM-CCAN-05", "COM-CCAN-08"),
        "CoCancelCall of a pending call that started while no enable was outstanding is DEFINED, "
        "returns CO_E_CANCEL_DISABLED and leaves the call pending (the server's CoTestCancel "
        "still returns RPC_S_CALLPENDING).",
        MACHINE, Whenever(("CoCancelCall",),
                          lambda n, a: n.seen.call == "pending" and not n.seen.enabled_at_start,
                          lambda n, a, r: (only(r.code, codes.CO_E_CANCEL_DISABLED)
                                           and r.next.probe("server_test_cancel")
                                           .only(codes.RPC_S_CALLPENDING)),
                          defined=True)),
    Obligation(
        "thread_cancel.cancel_accepted", ("COM-CCAN-08", "COM-CCAN-05", "COM-CCAN-09"),
        "CoCancelCall of a pending call that started with cancellation enabled is DEFINED and "
        "returns S_OK; the server's CoTestCancel then returns RPC_E_CALL_CANCELED.",
        MACHINE, Whenever(("CoCancelCall",),
                          lambda n, a: n.seen.call == "pending" and n.seen.enabled_at_start,
                          lambda n, a, r: (only(r.code, codes.S_OK)
                                           and r.next.probe("server_test_cancel")
                                           .only(codes.RPC_E_CALL_CANCELED)),
                          defined=True)),
    Obligation(
        "thread_cancel.fixed_at_start", ("COM-CCAN-05",),
        "Enabling or disabling while a call of the thread is in progress does not change what "
        "CoCancelCall does to that call.",
        MACHINE, Whenever(("CoEnableCallCancellation", "CoDisableCallCancellation"),
                          lambda n, a: n.seen.call != "none",
                          lambda n, a, r: (r.next.probe("CoCancelCall").signature()
                                           == n.probe("CoCancelCall").signature()))),
    Obligation(
        "thread_cancel.already_cancelled", ("COM-CCAN-08",),
        "CoCancelCall of a call already cancelled (no cancel object of the harness's own "
        "registered under it) is DEFINED and does not return S_OK: "
        "RPC_E_CALL_CANCELED, which the table must allow, or E_NOINTERFACE (the released call's "
        "cancel object may be gone).",
        MACHINE, Whenever(("CoCancelCall",),
                          lambda n, a: n.seen.call == "released" and not n.seen.own,
                          lambda n, a, r: only(r.code, codes.RPC_E_CALL_CANCELED,
                                               codes.E_NOINTERFACE),
                          defined=True,
                          some=(lambda n, a, r: may_be(r.code, codes.RPC_E_CALL_CANCELED),))),
    Obligation(
        "thread_cancel.no_cancel_object", ("COM-CCAN-08",),
        "CoCancelCall for a thread with no call and no cancel object registered is DEFINED and "
        "returns E_NOINTERFACE (or CO_E_CANCEL_DISABLED when no enable is outstanding either).",
        MACHINE, Whenever(("CoCancelCall",), lambda n, a: free(n) and not n.seen.own,
                          lambda n, a, r: only(r.code, codes.E_NOINTERFACE,
                                               *((codes.CO_E_CANCEL_DISABLED,)
                                                 if n.seen.enables == 0 else ())),
                          defined=True,
                          some=(lambda n, a, r: may_be(r.code, codes.E_NOINTERFACE),))),
    Obligation(
        "thread_cancel.reinitialize", ("COM-CCAN-06",),
        "After CoUninitialize and CoInitializeEx, cancellation is disabled even if it had been "
        "enabled: a call started afterwards cannot be cancelled.",
        MACHINE, Whenever(("reinitialize",), lambda n, a: free(n) and not n.seen.own,
                          lambda n, a, r: (only(r.code, codes.S_OK)
                                           and later_calls_cancellable(r.next, False)),
                          defined=True)),
    Obligation(
        "thread_cancel.test_cancel", ("COM-CCAN-09",),
        "CoTestCancel inside the held call is DEFINED: RPC_S_CALLPENDING while the call is not "
        "cancelled, RPC_E_CALL_CANCELED once it is.",
        MACHINE, Whenever(("server_test_cancel",), lambda n, a: n.seen.call != "none",
                          lambda n, a, r: only(r.code, codes.RPC_E_CALL_CANCELED
                                               if n.seen.call == "released"
                                               else codes.RPC_S_CALLPENDING),
                          defined=True)),
    Obligation(
        "thread_cancel.get_innermost", ("COM-CCAN-10",),
        "CoGetCancelObject(IID_ICancelMethodCalls) while a call is pending is DEFINED and returns "
        "S_OK with the pending call's cancel object, not the harness's own one (the innermost "
        "registration).",
        MACHINE, Whenever(("CoGetCancelObject",),
                          lambda n, a: n.seen.call == "pending" and a["iid"] == "ICancelMethodCalls",
                          lambda n, a, r: only(r.code, codes.S_OK) and r.output("own") is False,
                          defined=True)),
    Obligation(
        "thread_cancel.get_own", ("COM-CCAN-10", "COM-CCAN-11"),
        "With only the harness's own cancel object registered, CoGetCancelObject is DEFINED: S_OK "
        "with that object for IID_ICancelMethodCalls, E_NOINTERFACE for an interface it lacks.",
        MACHINE, Whenever(("CoGetCancelObject",), lambda n, a: free(n) and n.seen.own,
                          lambda n, a, r: (only(r.code, codes.S_OK) and r.output("own") is True
                                           if a["iid"] == "ICancelMethodCalls"
                                           else only(r.code, codes.E_NOINTERFACE)),
                          defined=True)),
    Obligation(
        "thread_cancel.set_object", ("COM-CCAN-11",),
        "CoSetCancelObject of an object with ICancelMethodCalls (none registered) is DEFINED, "
        "returns S_OK and AddRefs it (held 1); of an object without ICancelMethodCalls it returns "
        "E_NOINTERFACE, holds no reference and changes nothing.",
        MACHINE, Whenever(("CoSetCancelObject",),
                          lambda n, a: free(n) and not n.seen.own and a["pUnk"] != "NULL",
                          lambda n, a, r: (only(r.code, codes.S_OK) and r.output("held") == 1
                                           if a["pUnk"] == "cancel_object"
                                           else (only(r.code, codes.E_NOINTERFACE)
                                                 and r.output("held") == 0
                                                 and r.next.state == n.state)),
                          defined=True)),
    Obligation(
        "thread_cancel.set_null", ("COM-CCAN-11",),
        "CoSetCancelObject(NULL) with the harness's object registered is DEFINED, returns S_OK and "
        "Releases the object (held 0).",
        MACHINE, Whenever(("CoSetCancelObject",),
                          lambda n, a: free(n) and n.seen.own and a["pUnk"] == "NULL",
                          lambda n, a, r: only(r.code, codes.S_OK) and r.output("held") == 0,
                          defined=True)),
    Obligation(
        "thread_cancel.cancelled_result", ("COM-CCAN-08", "COM-CANCEL-09"),
        "A synchronous call cancelled and released returns the cancelled code (RPC_S_CALL_CANCELED, "
        "which no header defines: D-03), the reading cancelled_code pins when pinned: when its "
        "server returns, every outcome is that failure.",
        MACHINE, Whenever(("server_return",), lambda n, a: n.seen.call == "released",
                          lambda n, a, r: as_pinned(n, "cancelled_code", r)),
        points=("cancelled_code",)),
)
