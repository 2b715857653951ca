"""The synchronization family's rule obligations (spec/DOMAIN.md sections 2.9 and 2.10): system
events (ISynchronize on CLSID_ManualResetEvent and CLSID_StdEvent) and ISynchronizeContainer.

The observers keep, from the operations and their results only, which class was created and
whether the object is known to be signalled (`EventSeen`: unknown right after creation, since the
initial state is not documented, COM-SYNC-05), and for a container how many members were added and
which of the first two were signalled (`ContainerSeen`).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Any

from callgate.model import codes
from callgate.model.obligations.core import (
    After,
    Always,
    ArgMap,
    Now,
    Obligation,
    Observer,
    Whenever,
    as_pinned,
    fails,
    may_be,
    only,
)
from callgate.model.transitions import Allowed

EVENT = "event"
CONTAINER = "container"
CAPACITY = 63  # COM-CONT-02
GENERIC_FAILURES = (codes.E_INVALIDARG, codes.E_OUTOFMEMORY, codes.E_FAIL)  # COM-SYNC-07, -08


@dataclass(frozen=True)
class EventSeen:
    """What has happened to one system event."""

    created: str = ""              # the class CoCreateInstance created ("" before)
    signalled: bool | None = None  # known signalled / known not signalled / unknown

    def __str__(self) -> str:
        return f"created={self.created or '-'} signalled={self.signalled}"


def observe_event(seen: EventSeen, op: str, args: ArgMap, outcome: Allowed) -> EventSeen:
    ok = only(outcome.code, codes.S_OK)
    if op == "CoCreateInstance" and ok:
        return EventSeen(str(args["clsid"]), None)
    if not seen.created or not ok:
        return seen
    if op == "Signal":
        return replace(seen, signalled=True)
    if op in ("Reset", "SetEventHandle"):
        return replace(seen, signalled=False)
    if op == "Wait" and seen.created == "StdEvent":
        return replace(seen, signalled=False)
    if op == "Wait":
        return replace(seen, signalled=True)
    return seen


@dataclass(frozen=True)
class ContainerSeen:
    """What has happened to one synchronization container."""

    created: bool = False
    members: int = 0                               # AddSynchronize calls that returned S_OK
    signalled: tuple[bool, bool] = (False, False)  # members 0 and 1 signalled

    def __str__(self) -> str:
        return f"created={self.created} members={self.members} signalled={self.signalled}"


def observe_container(seen: ContainerSeen, op: str, args: ArgMap, outcome: Allowed
                      ) -> ContainerSeen:
    ok = only(outcome.code, codes.S_OK)
    if op == "CoCreateInstance" and ok:
        return replace(seen, created=True)
    if op == "AddSynchronize" and ok:
        return replace(seen, members=min(seen.members + 1, CAPACITY + 1))
    if op in ("member_signal", "member_reset") and ok:
        index = args["index"]
        assert isinstance(index, int)
        flags = list(seen.signalled)
        flags[index] = op == "member_signal"
        return replace(seen, signalled=(flags[0], flags[1]))
    return seen


OBSERVERS: tuple[Observer[Any], ...] = (
    Observer(EVENT, EventSeen(), observe_event),
    Observer(CONTAINER, ContainerSeen(), observe_container),
)

E = Now[EventSeen]
K = Now[ContainerSeen]


def created(n: E) -> bool:
    return bool(n.seen.created)


def signalled_member(n: K, _args: ArgMap, r: After[ContainerSeen]) -> bool:
    """S_OK, and the member returned is one that was signalled."""
    member = r.output("member")
    return (only(r.code, codes.S_OK) and isinstance(member, int)
            and member in (0, 1) and n.seen.signalled[member])


def returns_member(index: int) -> Callable[[K, ArgMap, After[ContainerSeen]], bool]:
    """Where member `index` is signalled, an outcome that returns it (else any outcome)."""
    def returns(n: K, _args: ArgMap, r: After[ContainerSeen]) -> bool:
        return not n.seen.signalled[index] or r.output("member") == index
    return returns


def handle_call(r: After[EventSeen]) -> bool:
    """S_OK or one of the generic failures."""
    return only(r.code, codes.S_OK, *GENERIC_FAILURES)


OBLIGATIONS: tuple[Obligation, ...] = (
    # 2.9 system synchronization objects
    Obligation(
        "event.create", ("COM-SYNC-06",),
        "The two system classes exist: CoCreateInstance of CLSID_ManualResetEvent or "
        "CLSID_StdEvent is DEFINED, returns S_OK and creates an object of that class.",
        EVENT, Whenever(("CoCreateInstance",), lambda n, a: not created(n),
                        lambda n, a, r: only(r.code, codes.S_OK) and r.next["kind"] == a["clsid"],
                        defined=True)),
    Obligation(
        "event.signal", ("COM-SYNC-01",),
        "Signal is DEFINED on an event, returns S_OK and puts it in the signalled state: a "
        "Wait(0) then returns S_OK.",
        EVENT, Whenever(("Signal",), lambda n, a: created(n),
                        lambda n, a, r: (only(r.code, codes.S_OK)
                                         and r.next.probe("Wait", timeout="zero").only(codes.S_OK)),
                        defined=True)),
    Obligation(
        "event.reset", ("COM-SYNC-02", "COM-SYNC-05"),
        "Reset is DEFINED on an event whatever its state, returns S_OK and puts it in the "
        "non-signalled state (a known starting point): a Wait(0) then fails.",
        EVENT, Whenever(("Reset",), lambda n, a: created(n),
                        lambda n, a, r: (only(r.code, codes.S_OK)
                                         and r.next.probe("Wait", timeout="zero").fails()),
                        defined=True)),
    Obligation(
        "event.wait_signalled", ("COM-SYNC-01", "COM-SYNC-03", "COM-SYNC-04"),
        "Wait (any timeout) on an event known to be signalled is DEFINED and returns S_OK.",
        EVENT, Whenever(("Wait",), lambda n, a: n.seen.signalled is True,
                        lambda n, a, r: only(r.code, codes.S_OK), defined=True)),
    Obligation(
        "event.wait_not_signalled", ("COM-SYNC-02", "COM-SYNC-03"),
        "Wait with a zero or finite timeout on an event known to be non-signalled is DEFINED, "
        "does not return S_OK (it times out with a failure) and changes nothing.",
        EVENT, Whenever(("Wait",), lambda n, a: n.seen.signalled is False
                        and a["timeout"] in ("zero", "finite"),
                        lambda n, a, r: fails(r.code) and r.next.state == n.state, defined=True)),
    Obligation(
        "event.wait_times_out", ("COM-WAIT-03", "COM-WAIT-04"),
        "Wait with a zero or finite timeout on an event known to be non-signalled times out: a "
        "failure, exactly the event_wait_timeout_code reading of D-01 when pinned.",
        EVENT, Whenever(("Wait",), lambda n, a: n.seen.signalled is False
                        and a["timeout"] in ("zero", "finite"),
                        lambda n, a, r: as_pinned(n, "event_wait_timeout_code", r), defined=True),
        points=("event_wait_timeout_code",)),
    Obligation(
        "event.std_event_resets", ("COM-SYNC-03",),
        "On a StdEvent, a Wait that returns S_OK resets the object: a second Wait (zero or "
        "finite) without a new Signal does not return S_OK.",
        EVENT, Whenever(("Wait",), lambda n, a: n.seen.created == "StdEvent",
                        lambda n, a, r: (not may_be(r.code, codes.S_OK)
                                         or (r.next.probe("Wait", timeout="zero").fails()
                                             and r.next.probe("Wait", timeout="finite").fails())))),
    Obligation(
        "event.manual_reset_stays", ("COM-SYNC-04",),
        "On a ManualResetEvent, a Wait that returns S_OK does not reset it: the state is "
        "unchanged and a repeated Wait(0) returns S_OK.",
        EVENT, Whenever(("Wait",), lambda n, a: n.seen.created == "ManualResetEvent",
                        lambda n, a, r: (not may_be(r.code, codes.S_OK)
                                         or (r.next.state == n.state
                                             and r.next.probe("Wait", timeout="zero")
                                             .only(codes.S_OK))))),
    Obligation(
        "event.wait_zero_returns", ("COM-WAIT-05",),
        "Wait with a zero timeout returns at once whatever the state: it is DEFINED on every "
        "event.",
        EVENT, Whenever(("Wait",), lambda n, a: created(n) and a["timeout"] == "zero",
                        defined=True)),
    Obligation(
        "event.wait_infinite_until_signalled", ("COM-WAIT-05",),
        "Wait(INFINITE) waits until the event is signalled: wherever it is DEFINED it returns "
        "S_OK.",
        EVENT, Whenever(("Wait",), lambda n, a: a["timeout"] == "infinite",
                        lambda n, a, r: only(r.code, codes.S_OK))),
    Obligation(
        "event.get_handle", ("COM-SYNC-07",),
        "ISynchronizeHandle::GetHandle is DEFINED on an event and returns S_OK with a handle "
        "(output nonnull), or a generic failure (E_INVALIDARG, E_OUTOFMEMORY, E_FAIL).",
        EVENT, Whenever(("GetHandle",), lambda n, a: created(n),
                        lambda n, a, r: handle_call(r) and (not may_be(r.code, codes.S_OK)
                                                            or r.output("nonnull") is True),
                        defined=True)),
    Obligation(
        "event.set_event_handle", ("COM-SYNC-08",),
        "ISynchronizeEvent::SetEventHandle with a fresh non-signalled event is DEFINED and "
        "returns S_OK or a generic failure; after S_OK the object stands for the new event: a "
        "Wait(0) fails.",
        EVENT, Whenever(("SetEventHandle",), lambda n, a: created(n),
                        lambda n, a, r: handle_call(r) and (
                            not may_be(r.code, codes.S_OK)
                            or r.next.probe("Wait", timeout="zero").fails()),
                        defined=True)),
    # 2.10 the synchronization container
    Obligation(
        "container.add", ("COM-CONT-01",),
        "AddSynchronize on a container holding fewer than 63 members is DEFINED and returns S_OK.",
        CONTAINER, Whenever(("AddSynchronize",),
                            lambda n, a: n.seen.created and n.seen.members < CAPACITY,
                            lambda n, a, r: only(r.code, codes.S_OK), defined=True)),
    Obligation(
        "container.full", ("COM-CONT-02",),
        "AddSynchronize on a container that already holds 63 members is DEFINED, returns "
        "RPC_E_OUT_OF_RESOURCES and adds nothing.",
        CONTAINER, Whenever(("AddSynchronize",),
                            lambda n, a: n.seen.created and n.seen.members >= CAPACITY,
                            lambda n, a, r: (only(r.code, codes.RPC_E_OUT_OF_RESOURCES)
                                             and r.next.state == n.state), defined=True)),
    Obligation(
        "container.never_more_than_63", ("COM-CONT-02",),
        "A container holds at most 63 members: no sequence of operations gets a 64th "
        "AddSynchronize accepted.",
        CONTAINER, Always(lambda n: n.seen.members <= CAPACITY)),
    Obligation(
        "container.wait_signalled", ("COM-CONT-03",),
        "WaitMultiple (any timeout) when some member is signalled is DEFINED and returns S_OK, "
        "and *ppSync (output member) is a member that was signalled.",
        CONTAINER, Whenever(("WaitMultiple",),
                            lambda n, a: n.seen.created and any(n.seen.signalled),
                            signalled_member, defined=True,
                            # "the member that was signaled": with both signalled the rule
                            # names neither, so the table must allow each
                            some=(returns_member(0), returns_member(1)))),
    Obligation(
        "container.wait_times_out", ("COM-CONT-04",),
        "WaitMultiple with a zero or finite timeout on a non-empty container with no member "
        "signalled is DEFINED and returns RPC_E_TIMEOUT.",
        CONTAINER, Whenever(("WaitMultiple",),
                            lambda n, a: (n.seen.created and n.seen.members > 0
                                          and not any(n.seen.signalled)
                                          and a["timeout"] in ("zero", "finite")),
                            lambda n, a, r: only(r.code, codes.RPC_E_TIMEOUT), defined=True)),
    Obligation(
        "container.wait_empty", ("COM-CONT-05",),
        "WaitMultiple on an empty container is DEFINED and returns RPC_E_NO_SYNC.",
        CONTAINER, Whenever(("WaitMultiple",), lambda n, a: n.seen.created and n.seen.members == 0,
                            lambda n, a, r: only(r.code, codes.RPC_E_NO_SYNC), defined=True)),
)
