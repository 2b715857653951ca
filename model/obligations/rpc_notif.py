"""RPC server notifications' rule obligations (spec/DOMAIN.md section 2.18), for the `rpc_notif`
machine: one asynchronous call the test server holds, its subscriptions, and the client's cancel
and disconnect.

The observer keeps, from the operations and their results only: whether a call is held, the
notification kinds the server has subscribed to for it (a subscribe that returned RPC_S_OK adds
them, an unsubscribe that returned RPC_S_OK takes its kind away) and with which type, which of the
client's actions happened (a cancel or a disconnect that returned RPC_S_OK), which kinds the
server has received, and which kinds were unsubscribed with *NotificationsQueued 1 before they
were received (they may still arrive, RPC-SRV-NOTIF-09).
"""

from __future__ import annotations

from dataclasses import dataclass, replace

from callgate.model import codes
from callgate.model.obligations.core import (
    MISSING,
    After,
    ArgMap,
    Now,
    Obligation,
    Observer,
    Whenever,
    fails,
    may_be,
    only,
)
from callgate.model.transitions import Allowed

MACHINE = "rpc_notif"
KINDS = ("ClientDisconnect", "CallCancel")
TRIGGER = {"RpcAsyncCancelCall": "CallCancel", "client_disconnect": "ClientDisconnect"}
EVENT = {"ClientDisconnect": 3, "CallCancel": 4}  # RPC_ASYNC_EVENT RpcClientDisconnect, -Cancel
VALID_TYPES = ("Event", "Apc", "Ioc", "Callback")


@dataclass(frozen=True)
class NotifSeen:
    """What has happened to the current call and its subscriptions."""

    call: str = "none"                         # none / held / done
    subscribed: frozenset[str] = frozenset()   # kinds subscribed and not unsubscribed
    ntype: str = ""                            # the type of the last successful subscription
    acted: frozenset[str] = frozenset()        # kinds whose event the client caused
    received: frozenset[str] = frozenset()     # kinds the server received
    queued: frozenset[str] = frozenset()       # unsubscribed with queued 1, not yet received

    def __str__(self) -> str:
        return (f"call={self.call} subscribed={sorted(self.subscribed)} ntype={self.ntype} "
                f"acted={sorted(self.acted)} received={sorted(self.received)} "
                f"queued={sorted(self.queued)}")

    def owed(self) -> frozenset[str]:
        """Kinds the server may still receive: subscribed (or queued at the unsubscribe), the
        client's event happened, and not received yet."""
        return ((self.subscribed & self.acted) | self.queued) - self.received


def _ok(outcome: Allowed) -> bool:
    return only(outcome.code, codes.RPC_S_OK)


def _kinds(value: object) -> tuple[str, ...]:
    return KINDS if value == "both" else (str(value),)


def observe(seen: NotifSeen, op: str, args: ArgMap, outcome: Allowed) -> NotifSeen:
    outputs = dict(outcome.outputs)
    if op == "notif_call" and _ok(outcome):
        return NotifSeen(call="held")
    if op == "server_complete":
        return replace(seen, call="done")
    if op == "RpcServerSubscribeForNotification" and _ok(outcome):
        return replace(seen, subscribed=seen.subscribed | set(_kinds(args["kinds"])),
                       ntype=str(args["type"]))
    if op == "RpcServerUnsubscribeForNotification" and _ok(outcome):
        kind = str(args["kind"])
        late = outputs.get("queued") == 1 and kind not in seen.received and kind in seen.acted
        return replace(seen, subscribed=seen.subscribed - {kind},
                       queued=seen.queued | {kind} if late else seen.queued)
    if op == "server_wait_notification" and only(outcome.code, 1):
        kind = str(outputs.get("kind"))
        return replace(seen, received=seen.received | {kind}, queued=seen.queued - {kind})
    if op in TRIGGER and _ok(outcome):
        return replace(seen, acted=seen.acted | {TRIGGER[op]})
    return seen


OBSERVER: Observer[NotifSeen] = Observer(MACHINE, NotifSeen(), observe)

N = Now[NotifSeen]
R = After[NotifSeen]


def fresh(n: N) -> bool:
    """A held call on which the client has not acted yet."""
    return n.seen.call == "held" and not n.seen.acted


def valid_subscription(n: N, a: ArgMap) -> bool:
    """A subscribe RPC-SRV-NOTIF-01 calls valid: a kind or both (both not with Event, and not
    with Ioc, which the model subscribes one kind at a time), a type other than None, a binding
    the calling thread may use (RPC-SRV-NOTIF-02), the kinds not subscribed yet, the type the
    call's other subscriptions have, before the client acts."""
    kinds = _kinds(a["kinds"])
    return (fresh(n) and a["kinds"] != "other" and a["type"] in VALID_TYPES
            and not (a["kinds"] == "both" and a["type"] in ("Event", "Ioc"))
            and a["binding"] in ("explicit", "NULL")
            and not (set(kinds) & (n.seen.subscribed | n.seen.queued | n.seen.received))
            and n.seen.ntype in ("", a["type"]))


def nothing_arrives(n: N) -> bool:
    """A finite wait from here returns 0 only."""
    return n.probe("server_wait_notification", timeout="finite").only(0)


def arrival_ok(n: N, r: R) -> bool:
    """A wait's outcome: 0, or 1 with a kind the server is owed (subscribed or queued, the client
    acted, not received before); with Apc or Callback, Event names that kind."""
    if only(r.code, 0):
        return True
    if not only(r.code, 1):
        return False
    kind = r.output("kind")
    if kind not in n.seen.owed():
        return False
    event = r.output("Event")
    if n.seen.ntype in ("Apc", "Callback"):
        return event == EVENT[str(kind)]
    return True


def _brings(n: N, r: R, kind: str) -> bool:
    """Where `kind` is owed, this outcome brings it (for `some`: the table must allow it)."""
    return kind not in n.seen.owed() or (only(r.code, 1) and r.output("kind") == kind)


def must_arrive(n: N) -> set[str]:
    """Kinds a finite wait must deliver one of: an owed disconnect, a queued kind, and (when
    cancel_notification is pinned 'delivered') an owed cancel."""
    owed = n.seen.owed()
    required = {k for k in owed if k == "ClientDisconnect" or k in n.seen.queued}
    if "CallCancel" in owed and n.pin("cancel_notification") == "delivered":
        required.add("CallCancel")
    return required


def _wait_finite(n: N, a: ArgMap, r: R) -> bool:
    return arrival_ok(n, r) and not (must_arrive(n) and only(r.code, 0))


def _unsubscribe(n: N, a: ArgMap, r: R) -> bool:
    """RPC_S_OK; queued 1 if the kind was received, 0 if the client never caused it; queued 0
    means it never comes, queued 1 that a finite wait brings it if it has not come yet."""
    kind = str(a["kind"])
    if not only(r.code, codes.RPC_S_OK):
        return False
    queued = r.output("queued")
    if kind in n.seen.received:
        return queued == 1
    if kind not in n.seen.acted:
        return queued == 0 and kind not in _may_deliver(r.next)
    if queued == 0:
        return kind not in _may_deliver(r.next)
    return queued == 1 and kind in _deliverable_kinds(r.next)


def _finite_outcomes(n: N) -> list[tuple[object, object]]:
    p = n.probe("server_wait_notification", timeout="finite")
    return [(a.code, dict(a.outputs).get("kind", MISSING)) for a in p.outcomes]


def _may_deliver(n: N) -> set[object]:
    return {k for code, k in _finite_outcomes(n) if only(code, 1)}  # type: ignore[arg-type]


def _deliverable_kinds(n: N) -> set[object]:
    """Kinds a finite wait must deliver: it never returns 0, and they are among its outcomes."""
    outcomes = _finite_outcomes(n)
    if any(only(code, 0) for code, _ in outcomes):  # type: ignore[arg-type]
        return set()
    return {k for code, k in outcomes}


def _acts_then_waits(n: N) -> list[N]:
    """From `n`: the client cancels and disconnects; the states that leads to."""
    states = [n]
    for op in ("RpcAsyncCancelCall", "client_disconnect"):
        nxt = []
        for s in states:
            p = s.probe(op)
            nxt += [replace(s, state=o.next_state) for o in p.outcomes] if p.defined else [s]
        states = nxt
    return states


OBLIGATIONS: tuple[Obligation, ...] = (
    Obligation(
        "rpc_notif.subscribe", ("RPC-SRV-NOTIF-01", "RPC-SRV-NOTIF-02", "RPC-SRV-NOTIF-04"),
        "A valid RpcServerSubscribeForNotification (one kind with Event, Apc, Ioc or Callback, "
        "or both kinds in one call with Apc or Callback; the call's own binding, or NULL on the "
        "dispatch thread) is DEFINED and returns RPC_S_OK.",
        MACHINE, Whenever(("RpcServerSubscribeForNotification",), valid_subscription,
                          lambda n, a, r: only(r.code, codes.RPC_S_OK), defined=True)),
    Obligation(
        "rpc_notif.subscribe_checks", ("RPC-SRV-NOTIF-01", "RPC-SRV-NOTIF-02"),
        "RpcServerSubscribeForNotification fails, and subscribes nothing, with "
        "RpcNotificationTypeNone (RPC_S_INVALID_ARG exactly), with a value outside "
        "RPC_NOTIFICATIONS, and with a NULL binding on a thread that runs no call.",
        MACHINE, Whenever(("RpcServerSubscribeForNotification",),
                          lambda n, a: (fresh(n) and a["info"] == "kept"
                                        and (a["kinds"] == "other" or a["type"] == "None"
                                             or a["binding"] == "NULL_other_thread")),
                          lambda n, a, r: (fails(r.code) and r.next.state == n.state
                                           and (a["kinds"] == "other" or a["type"] != "None"
                                                or only(r.code, codes.RPC_S_INVALID_ARG))),
                          defined=True)),
    Obligation(
        "rpc_notif.info_copied", ("RPC-SRV-NOTIF-03",),
        "NotificationInfo is copied by a successful subscribe: overwriting it right afterwards "
        "changes nothing, so a subscribe with it reused leads to a state where the client's "
        "cancel and disconnect bring exactly the notifications they bring with it kept.",
        MACHINE, Whenever(("RpcServerSubscribeForNotification",),
                          lambda n, a: valid_subscription(n, a) and a["info"] == "reused",
                          lambda n, a, r: any(
                              o.next_state == r.next.state
                              for o in n.probe("RpcServerSubscribeForNotification",
                                               **{**a, "info": "kept"}).outcomes),
                          defined=True)),
    Obligation(
        "rpc_notif.one_call", ("RPC-SRV-NOTIF-05",),
        "A subscription covers one call: a new call starts with none, so the client's cancel "
        "and disconnect of the new call bring the server no notification.",
        MACHINE, Whenever(("notif_call",), lambda n, a: n.seen.call != "held",
                          lambda n, a, r: (only(r.code, codes.RPC_S_OK)
                                           and all(nothing_arrives(s)
                                                   for s in _acts_then_waits(r.next))),
                          defined=True)),
    Obligation(
        "rpc_notif.delivery", ("RPC-SRV-NOTIF-07",),
        "A wait for notifications brings only a kind the server subscribed to (or unsubscribed "
        "with it queued), whose event the client caused, at most once per call; with Apc or "
        "Callback the routine's Event argument is RpcClientDisconnect or RpcClientCancel for "
        "that kind. Each kind owed may arrive, and a look without waiting may also find "
        "nothing (a notification travels).",
        MACHINE, Whenever(("server_wait_notification",), lambda n, a: n.seen.call == "held",
                          lambda n, a, r: arrival_ok(n, r),
                          some=(lambda n, a, r: _brings(n, r, "ClientDisconnect"),
                                lambda n, a, r: _brings(n, r, "CallCancel"),
                                lambda n, a, r: a["timeout"] == "finite" or only(r.code, 0)))),
    Obligation(
        "rpc_notif.delivered", ("RPC-SRV-NOTIF-07", "RPC-SRV-NOTIF-01", "RPC-SRV-NOTIF-09"),
        "A bounded wait brings a notification the runtime owes: a client disconnect subscribed "
        "to, a kind unsubscribed with *NotificationsQueued 1 and not yet received, and the "
        "client's cancel when cancel_notification is pinned 'delivered' (D-20: unpinned, it may "
        "never reach the subscriber).",
        MACHINE, Whenever(("server_wait_notification",),
                          lambda n, a: n.seen.call == "held" and a["timeout"] == "finite",
                          _wait_finite, defined=True),
        points=("cancel_notification",)),
    Obligation(
        "rpc_notif.cancel_may_be_absent", ("RPC-SRV-NOTIF-07", "RPC-SRV-NOTIF-01"),
        "D-20: a bounded wait while only the client's cancel is owed may bring it (the table "
        "must allow the arrival, whatever the pin), and may end with none unless "
        "cancel_notification is pinned 'delivered'.",
        MACHINE, Whenever(("server_wait_notification",),
                          lambda n, a: (n.seen.call == "held" and a["timeout"] == "finite"
                                        and n.seen.owed() == {"CallCancel"}
                                        and not n.seen.queued),
                          lambda n, a, r: True, defined=True,
                          some=(lambda n, a, r: only(r.code, 1),
                                lambda n, a, r: (n.pin("cancel_notification") == "delivered"
                                                 or only(r.code, 0)))),
        points=("cancel_notification",)),
    Obligation(
        "rpc_notif.unsubscribe", ("RPC-SRV-NOTIF-09",),
        "RpcServerUnsubscribeForNotification of one subscribed kind with NotificationsQueued "
        "is DEFINED and returns RPC_S_OK; *queued is 1 for a kind received and 0 for one whose "
        "event never happened; a kind not queued never arrives afterwards, one queued and not "
        "yet received arrives within a bounded wait.",
        MACHINE, Whenever(("RpcServerUnsubscribeForNotification",),
                          lambda n, a: (n.seen.call == "held" and a["queued"] == "given"
                                        and a["kind"] in n.seen.subscribed),
                          _unsubscribe, defined=True)),
    Obligation(
        "rpc_notif.complete_subscribed", ("RPC-SRV-NOTIF-09", "RPC-SRV-NOTIF-06"),
        "Unsubscribing must come before the call completes: completing while a kind is still "
        "subscribed is never DEFINED (RPC-SRV-NOTIF-06: the server may crash later).",
        MACHINE, Whenever(("server_complete",), lambda n, a: n.seen.call == "held",
                          lambda n, a, r: not n.seen.subscribed)),
    Obligation(
        "rpc_notif.complete_clean", ("RPC-SRV-NOTIF-09",),
        "With every kind unsubscribed and every queued notification received, completing the "
        "call is DEFINED and, while the client is connected, returns RPC_S_OK.",
        MACHINE, Whenever(("server_complete",),
                          lambda n, a: (n.seen.call == "held" and not n.seen.subscribed
                                        and not (n.seen.queued - n.seen.received)),
                          lambda n, a, r: ("ClientDisconnect" in n.seen.acted
                                           or only(r.code, codes.RPC_S_OK)),
                          defined=True,
                          some=(lambda n, a, r: may_be(r.code, codes.RPC_S_OK),))),
)
