"""CoWaitForMultipleHandles's rule obligations (spec/DOMAIN.md section 2.11).

The observer keeps, from the operations and their results only, which of the two handles is known
to be signalled and whether a user APC is queued (`CowaitSeen`). Both handles start non-signalled
(the adapter creates them so) with no APC queued. Handle 0 is a manual-reset event, handle 1 an
auto-reset event: a wait that handle 1 satisfies (index 1, or WAITALL) resets it, and an APC that
ran (index WAIT_IO_COMPLETION) is no longer queued.
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
    may_be,
    only,
)
from callgate.model.transitions import Allowed

COWAIT = "cowait"
WAIT = ("CoWaitForMultipleHandles",)
TIMED = ("zero", "finite")


@dataclass(frozen=True)
class CowaitSeen:
    """What has happened to the two handles and the client thread's APC queue."""

    signalled: tuple[bool, bool] = (False, False)
    apc: bool = False

    def __str__(self) -> str:
        return f"signalled={self.signalled} apc={self.apc}"


def observe(seen: CowaitSeen, op: str, args: ArgMap, outcome: Allowed) -> CowaitSeen:
    if not only(outcome.code, codes.S_OK):
        return seen
    if op in ("set_handle", "reset_handle"):
        index = args["index"]
        assert isinstance(index, int)
        flags = list(seen.signalled)
        flags[index] = op == "set_handle"
        return replace(seen, signalled=(flags[0], flags[1]))
    if op == "queue_apc":
        return replace(seen, apc=True)
    if op == "CoWaitForMultipleHandles" and args["form"] == "valid":
        returned = dict(outcome.outputs).get("index")
        if args["flags"] == "waitall" or returned == 1:
            return replace(seen, signalled=(seen.signalled[0], False))
        if returned == codes.WAIT_IO_COMPLETION:
            return replace(seen, apc=False)
    return seen


OBSERVER: Observer[Any] = Observer(COWAIT, CowaitSeen(), observe)

W = Now[CowaitSeen]
R = After[CowaitSeen]


def valid(a: ArgMap, flags: str) -> bool:
    return a["form"] == "valid" and a["flags"] == flags


def signalled_index(n: W, _a: ArgMap, r: R) -> bool:
    """S_OK, and *lpdwindex is the index of a handle that was signalled."""
    index = r.output("index")
    return (only(r.code, codes.S_OK) and isinstance(index, int) and index in (0, 1)
            and n.seen.signalled[index])


def returns_handle(index: int) -> Any:
    """Where handle `index` is signalled, an outcome that returns it (else any outcome)."""
    def returns(n: W, _a: ArgMap, r: R) -> bool:
        return not n.seen.signalled[index] or r.output("index") == index
    return returns


def io_completion(_n: W, _a: ArgMap, r: R) -> bool:
    return only(r.code, codes.S_OK) and r.output("index") == codes.WAIT_IO_COMPLETION


def nothing_satisfies(n: W, a: ArgMap) -> bool:
    """A valid wait that no handle (and no APC) can satisfy."""
    if a["form"] != "valid":
        return False
    if a["flags"] == "waitall":
        return not all(n.seen.signalled)
    if a["flags"] == "alertable" and n.seen.apc:
        return False
    return not any(n.seen.signalled)


def refused(code: codes.Code, index_zero: bool) -> Any:
    """The code, nothing changed, and (if asked) *lpdwindex written as 0."""
    def check(n: W, _a: ArgMap, r: R) -> bool:
        return (only(r.code, code) and r.next.state == n.state
                and (not index_zero or r.output("index") == 0))
    return check


OBLIGATIONS: tuple[Obligation, ...] = (
    Obligation(
        "cowait.any_signalled", ("COM-CWMH-01",),
        "Without WAITALL (and with no APC that an alertable wait could run), a wait on handles "
        "of which at least one is signalled is DEFINED for any timeout, returns S_OK, and "
        "*lpdwindex is the index of a signalled handle; with both signalled, either index is "
        "allowed.",
        COWAIT, Whenever(WAIT, lambda n, a: (a["form"] == "valid" and a["flags"] != "waitall"
                                             and any(n.seen.signalled)
                                             and not (a["flags"] == "alertable" and n.seen.apc)),
                         signalled_index, defined=True,
                         some=(returns_handle(0), returns_handle(1)))),
    Obligation(
        "cowait.all_signalled", ("COM-CWMH-02",),
        "With COWAIT_WAITALL and every handle signalled, the wait is DEFINED for any timeout and "
        "returns S_OK.",
        COWAIT, Whenever(WAIT, lambda n, a: valid(a, "waitall") and all(n.seen.signalled),
                         lambda n, a, r: only(r.code, codes.S_OK), defined=True)),
    Obligation(
        "cowait.waitall_needs_all", ("COM-CWMH-02",),
        "With COWAIT_WAITALL, one signalled handle is not enough: where a handle is not "
        "signalled the wait never returns S_OK.",
        COWAIT, Whenever(WAIT, lambda n, a: valid(a, "waitall") and not all(n.seen.signalled),
                         lambda n, a, r: not may_be(r.code, codes.S_OK))),
    Obligation(
        "cowait.timeout", ("COM-CWMH-03",),
        "A zero or finite wait that nothing satisfies (no handle signalled; for WAITALL not all; "
        "for an alertable wait also no APC queued) is DEFINED, returns RPC_S_CALLPENDING when "
        "the timeout expires, and changes nothing.",
        COWAIT, Whenever(WAIT, lambda n, a: nothing_satisfies(n, a) and a["timeout"] in TIMED,
                         refused(codes.RPC_S_CALLPENDING, False), defined=True)),
    Obligation(
        "cowait.null_index", ("COM-CWMH-04",),
        "lpdwindex == NULL is DEFINED in every state and returns E_INVALIDARG without waiting "
        "or changing anything.",
        COWAIT, Whenever(WAIT, lambda n, a: a["form"] == "null_index",
                         refused(codes.E_INVALIDARG, False), defined=True)),
    Obligation(
        "cowait.null_handles", ("COM-CWMH-04",),
        "pHandles == NULL (cHandles 2) is DEFINED in every state, returns E_INVALIDARG, changes "
        "nothing and writes 0 to *lpdwindex.",
        COWAIT, Whenever(WAIT, lambda n, a: a["form"] == "null_handles",
                         refused(codes.E_INVALIDARG, True), defined=True)),
    Obligation(
        "cowait.bad_flags", ("COM-CWMH-04",),
        "dwFlags with a bit no COWAIT_FLAGS value defines is DEFINED in every state and returns "
        "E_INVALIDARG, changing nothing.",
        COWAIT, Whenever(WAIT, lambda n, a: a["form"] == "bad_flags",
                         refused(codes.E_INVALIDARG, False), defined=True)),
    Obligation(
        "cowait.zero_count", ("COM-CWMH-05",),
        "cHandles == 0 with a valid pHandles is DEFINED in every state, returns RPC_E_NO_SYNC, "
        "changes nothing and writes 0 to *lpdwindex.",
        COWAIT, Whenever(WAIT, lambda n, a: a["form"] == "zero_count",
                         refused(codes.RPC_E_NO_SYNC, True), defined=True)),
    Obligation(
        "cowait.null_handles_zero_count", ("COM-CWMH-04", "COM-CWMH-05"),
        "pHandles == NULL with cHandles == 0 (D-06) is DEFINED, fails with exactly the "
        "cowait_null_handles_code reading when pinned (E_INVALIDARG or RPC_E_NO_SYNC), changes "
        "nothing and writes 0 to *lpdwindex.",
        COWAIT, Whenever(WAIT, lambda n, a: a["form"] == "null_handles_zero_count",
                         lambda n, a, r: (as_pinned(n, "cowait_null_handles_code", r)
                                          and only(r.code, codes.E_INVALIDARG,
                                                   codes.RPC_E_NO_SYNC)
                                          and r.next.state == n.state
                                          and r.output("index") == 0),
                         defined=True),
        points=("cowait_null_handles_code",)),
    Obligation(
        "cowait.alertable_apc", ("COM-CWMH-06",),
        "An alertable wait with a user APC queued is DEFINED for any timeout, and returning S_OK "
        "with *lpdwindex == WAIT_IO_COMPLETION is always allowed; with no handle signalled it is "
        "the only result, and the APC is no longer queued.",
        COWAIT, Whenever(WAIT, lambda n, a: valid(a, "alertable") and n.seen.apc,
                         lambda n, a, r: (any(n.seen.signalled)
                                          or (io_completion(n, a, r) and not r.next["apc"])),
                         defined=True, some=(io_completion,))),
)
