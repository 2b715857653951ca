"""RPC server notifications (client disconnect, call cancel): the `rpc_notif` machine.

Data only; hold next to spec/DOMAIN.md section 2.18 (RPC-SRV-NOTIF-01 .. -09).

One slot is one asynchronous RPC call to a procedure of the harness's test server, whose manager
routine holds the call until the harness says complete. While it holds it, the server subscribes
to notifications for the call (`RpcServerSubscribeForNotification`), waits for them, and
unsubscribes (`RpcServerUnsubscribeForNotification`); the client triggers them: it cancels the
call (`RpcAsyncCancelCall` with fAbort FALSE) or drops its connection (`client_disconnect`).

A machine of its own, not fields of `rpc_call`: the subscription state multiplies the states of
that machine (already the largest) by about a hundred. The client's side of the call (its
handle, completion and notification) is `rpc_call`'s business; here it is abstracted: the
client only starts the call, cancels it, or disconnects, and whatever its own completion
reports is not judged. The server's side is abstracted the same way: the manager routine ends
the call only with `server_complete` (RpcAsyncCompleteCall); RpcAsyncAbortCall and an exception
end it the same way for RPC-SRV-NOTIF-06 and are `rpc_call`'s rows.

Fields:
  call          none (no call yet), held (the manager routine holds the call), done (the server
                completed it)
  cancelled     the client called RpcAsyncCancelCall for this call
  disconnected  the client dropped its connection
  ntype         the notification type of this call's subscriptions (one per call in the model)
  disc, canc    the subscription to RpcNotificationClientDisconnect, RpcNotificationCallCancel:
                off (none), on (subscribed, the notification not yet received), got (subscribed,
                received: it cannot come again, RPC-SRV-NOTIF-07), late (unsubscribed while the
                runtime had queued it and the server had not received it yet: it may still
                arrive, RPC-SRV-NOTIF-09)

Whether a subscription made after the client cancelled or disconnected fires for that event is
not documented, so the harness subscribes before the client acts (those subscriptions are
UNDEFINED rows). RpcNotificationTypeHwnd is deprecated (RPC-STATE-03) and never subscribed.
RpcNotificationTypeIoc is subscribed one kind at a time, so that the harness knows which
subscription's port a completion came through (Ioc does not convey the kind,
RPC-SRV-NOTIF-07). Subscribe and Unsubscribe racing on one binding (RPC-SRV-NOTIF-08, D-13) is
never driven: no parallel case puts this machine in a race.
"""

from __future__ import annotations

from collections.abc import Iterator

from callgate.model import codes
from callgate.model.codes import Family
from callgate.model.tables.table import not_offered, out, row, undefined
from callgate.model.transitions import (
    Actor,
    AnyFailure,
    Exact,
    Field,
    Machine,
    Operation,
    Outcome,
    Param,
    Returns,
    Row,
    Value,
)

RPC_OK = Exact(codes.RPC_S_OK)
FAILED = AnyFailure(Family.RPC_STATUS)
KINDS = ("ClientDisconnect", "CallCancel")
# The subscription field and the trigger field of each notification kind.
FIELD_OF = {"ClientDisconnect": "disc", "CallCancel": "canc"}
TRIGGER_OF = {"ClientDisconnect": "disconnected", "CallCancel": "cancelled"}
# RPC_ASYNC_EVENT values the APC or callback routine receives (DOMAIN.md section 1).
EVENT_OF = {"ClientDisconnect": 3, "CallCancel": 4}  # RpcClientDisconnect, RpcClientCancel
TYPES = ("None", "Event", "Apc", "Ioc", "Callback")
USED_TYPES = ("Event", "Apc", "Ioc", "Callback")
CONVEYS_KIND = ("Apc", "Callback")  # the routine's Event argument names the kind
SUBSCRIPTION = ("off", "on", "got", "late")
ACTIVE = ("on", "got")  # subscribed and not yet unsubscribed
NO_CALL = "the test server holds no call in this slot"
CLIENT_GONE = "the client has disconnected: it has no call left to act on"
Guard = dict[str, Value | tuple[Value, ...]]
MAY_BE_ABSENT = {"cancel_notification": "may_be_absent"}

OPERATIONS = (
    Operation("notif_call", Actor.CLIENT,
              "The client starts an asynchronous call of the notification test procedure on a "
              "binding of its own; the test server's manager routine receives it and holds it. "
              "The code is the adapter's: RPC_S_OK once the routine holds the call.",
              capability="rpc.notif"),
    Operation("RpcServerSubscribeForNotification", Actor.SERVER,
              "RpcServerSubscribeForNotification(Binding, Notification, NotificationType, "
              "NotificationInfo) for the held call.",
              (Param("kinds", ("ClientDisconnect", "CallCancel", "both", "other"),
                     "Notification: RpcNotificationClientDisconnect, RpcNotificationCallCancel, "
                     "both (the bitmask 3), or a value outside RPC_NOTIFICATIONS (4)"),
               Param("type", TYPES, "NotificationType (RPC_NOTIFICATION_TYPES; Hwnd is "
                                    "deprecated and never used)"),
               Param("binding", ("explicit", "NULL", "NULL_other_thread"),
                     "the held call's binding handle, or NULL, from the manager routine on the "
                     "dispatch thread; or NULL from another server thread"),
               Param("info", ("kept", "reused"),
                     "NotificationInfo kept as it was, or overwritten by the caller right "
                     "after a successful call (RPC-SRV-NOTIF-03)")),
              capability="rpc.notif"),
    Operation("RpcServerUnsubscribeForNotification", Actor.SERVER,
              "RpcServerUnsubscribeForNotification(Binding, Notification, &NotificationsQueued) "
              "with the held call's binding; output `queued` is *NotificationsQueued.",
              (Param("kind", ("ClientDisconnect", "CallCancel", "both"),
                     "Notification: one kind, or both (the bitmask 3)"),
               Param("queued", ("given", "NULL"), "NotificationsQueued: a pointer, or NULL")),
              capability="rpc.notif"),
    Operation("server_wait_notification", Actor.SERVER,
              "The server waits for the next notification of the held call's subscriptions: "
              "once without waiting (`timeout` zero) or for a bounded time (`timeout` finite). "
              "Returns 1 with output `kind` (which subscription it came through) and, for "
              "Apc and Callback, output `Event` (the routine's RPC_ASYNC_EVENT argument), or "
              "0 if none arrived.",
              (Param("timeout", ("zero", "finite"), "look once, or wait a bounded time"),),
              capability="rpc.notif"),
    Operation("RpcAsyncCancelCall", Actor.CLIENT,
              "RpcAsyncCancelCall(pAsync, FALSE) on the client's handle of the held call.",
              capability="rpc.notif"),
    Operation("client_disconnect", Actor.CLIENT,
              "The client drops its connection to the server while the call is held (it frees "
              "its binding and closes the connection). The code is the adapter's: RPC_S_OK.",
              capability="rpc.notif.disconnect"),
    Operation("server_complete", Actor.SERVER,
              "The manager routine completes the held call: RpcAsyncCompleteCall(pAsync, "
              "&reply) on the server handle.",
              capability="rpc.notif"),
)


def _subscribe_rows() -> list[Row]:
    op = "RpcServerSubscribeForNotification"
    held: Guard = {"call": "held"}
    valid_bindings: tuple[Guard, ...] = ({"binding": "explicit"}, {"binding": "NULL"})
    calm: Guard = {**held, "disconnected": False, "cancelled": False}
    # The argument checks: each form fails whatever the subscriptions are. They are driven with
    # NotificationInfo kept (reusing it matters only after a success) and before the client
    # acts, which keeps the walk short.
    checks: tuple[tuple[Guard, tuple[str, ...], Outcome, str], ...] = (
        ({"kinds": "other"}, ("RPC-SRV-NOTIF-01",),
         out(FAILED, "not a notification this runtime supports"),
         "Vista returns RPC_S_CANNOT_SUPPORT (1764); other versions are not pinned"),
        ({"kinds": (*KINDS, "both"), "type": "None"}, ("RPC-SRV-NOTIF-01",),
         out(Exact(codes.RPC_S_INVALID_ARG), "RpcNotificationTypeNone"), ""),
        ({"kinds": (*KINDS, "both"), "type": USED_TYPES, "binding": "NULL_other_thread"},
         ("RPC-SRV-NOTIF-02",),
         out(FAILED, "a NULL binding names the current thread's call, and this thread runs "
                     "none"), "on any thread but the dispatch thread an explicit binding is "
                              "needed"),
    )
    rows: list[Row] = [
        not_offered(op, ("RPC-SRV-NOTIF-05",), NO_CALL, state={"call": ("none", "done")}),
    ]
    for form, rules, failure, note in checks:
        rows += [
            row(op, rules, failure, state=calm, args={**form, "info": "kept"}, note=note),
            not_offered(op, rules, "argument checks are driven with NotificationInfo kept: "
                                   "reusing it matters only after a success",
                        state=held, args={**form, "info": "reused"}),
            not_offered(op, rules, "argument checks are driven before the client acts",
                        state={**held, "disconnected": True}, args={**form, "info": "kept"}),
            not_offered(op, rules, "argument checks are driven before the client acts",
                        state={**held, "disconnected": False, "cancelled": True},
                        args={**form, "info": "kept"}),
        ]
    for bind in valid_bindings:
        rows += [
            undefined(op, ("RPC-SRV-NOTIF-04",),
                      "RpcNotificationTypeEvent takes one kind per subscription call: the "
                      "pages give no result for both at once",
                      state=held, args={"kinds": "both", "type": "Event", **bind}),
            not_offered(op, ("RPC-SRV-NOTIF-04", "RPC-SRV-NOTIF-07"),
                        "Ioc does not convey the kind: the model subscribes Ioc one kind at a "
                        "time, so that the port says which kind arrived",
                        state=held, args={"kinds": "both", "type": "Ioc", **bind}),
        ]
        for kinds in (*KINDS, "both"):
            types = USED_TYPES if kinds != "both" else CONVEYS_KIND
            wanted: tuple[str, ...] = KINDS if kinds == "both" else (kinds,)
            args: dict[str, Value | tuple[Value, ...]] = {"kinds": kinds, "type": types, **bind}
            rows += [
                undefined(op, ("RPC-SRV-NOTIF-07",),
                          "the client already acted: whether a subscription made afterwards "
                          "fires for that event is not documented",
                          state={**held, "disconnected": True}, args=args),
                undefined(op, ("RPC-SRV-NOTIF-07",),
                          "the client already acted: whether a subscription made afterwards "
                          "fires for that event is not documented",
                          state={**held, "disconnected": False, "cancelled": True}, args=args),
            ]
            for t in types:
                targs = {**args, "type": t}
                others = tuple(x for x in USED_TYPES if x != t)
                rows.append(not_offered(op, ("RPC-SRV-NOTIF-04",),
                                        "the model gives a call's subscriptions one "
                                        "notification type",
                                        state={**calm, "ntype": others}, args=targs))
                same: Guard = {**calm, "ntype": ("none", t)}
                # a kind already subscribed (or with a queued notification) blocks the call
                for i, kind in enumerate(wanted):
                    earlier: Guard = {FIELD_OF[k]: "off" for k in wanted[:i]}
                    rows.append(undefined(
                        op, ("RPC-SRV-NOTIF-05",),
                        "a second subscription to a kind this call already has (or had, with "
                        "a notification still queued): the pages give no result",
                        state={**same, **earlier,
                               FIELD_OF[kind]: tuple(s for s in SUBSCRIPTION if s != "off")},
                        args=targs))
                cited = ["RPC-SRV-NOTIF-01", "RPC-SRV-NOTIF-03", "RPC-SRV-NOTIF-05"]
                if kinds == "both" or t == "Event":
                    cited.append("RPC-SRV-NOTIF-04")
                if bind["binding"] == "NULL":
                    cited.append("RPC-SRV-NOTIF-02")
                rows.append(row(
                    op, tuple(cited),
                    out(RPC_OK, "subscribed", ntype=t,
                        also={FIELD_OF[k]: "on" for k in wanted}),
                    state={**same, **{FIELD_OF[k]: "off" for k in wanted}}, args=targs,
                    note="the runtime copied NotificationInfo: reusing it afterwards changes "
                         "nothing (RPC-SRV-NOTIF-03)"))
    return rows


def _unsubscribe_rows() -> list[Row]:
    op = "RpcServerUnsubscribeForNotification"
    held = {"call": "held"}
    rows: list[Row] = [
        not_offered(op, ("RPC-SRV-NOTIF-05",), NO_CALL, state={"call": ("none", "done")}),
        undefined(op, ("RPC-SRV-NOTIF-09",),
                  "it takes exactly one notification value: no result is given for a "
                  "combination", state=held, args={"kind": "both"}),
        undefined(op, ("RPC-SRV-NOTIF-09",),
                  "NotificationsQueued is required: no result is given for NULL",
                  state=held, args={"kind": KINDS, "queued": "NULL"}),
    ]
    for kind in KINDS:
        f, trig = FIELD_OF[kind], TRIGGER_OF[kind]
        args = {"kind": kind, "queued": "given"}
        rows += [
            undefined(op, ("RPC-SRV-NOTIF-09",),
                      "no subscription of this kind is active: no result is given",
                      state={**held, f: ("off", "late")}, args=args),
            row(op, ("RPC-SRV-NOTIF-09",),
                out(RPC_OK, "the one notification was queued and received",
                    outputs={"queued": 1}, also={f: "off"}),
                state={**held, f: "got"}, args=args),
            row(op, ("RPC-SRV-NOTIF-09", "RPC-SRV-NOTIF-07"),
                out(RPC_OK, "nothing happened: nothing queued", outputs={"queued": 0},
                    also={f: "off"}),
                state={**held, f: "on", trig: False}, args=args),
            row(op, ("RPC-SRV-NOTIF-09", "RPC-SRV-NOTIF-07"),
                out(RPC_OK, "the runtime had not queued it: it will not come",
                    outputs={"queued": 0}, also={f: "off"}),
                out(RPC_OK, "queued and not yet received: it may still arrive",
                    outputs={"queued": 1}, also={f: "late"}),
                state={**held, f: "on", trig: True}, args=args),
        ]
    return rows


# Each kind's subscription, as guard fragments with what a wait may deliver through it:
# "" nothing, "due" (subscribed, the client acted, not yet received) or "late" (queued before
# the unsubscribe, not yet received).
def _fragments(kind: str) -> Iterator[tuple[dict[str, Value | tuple[Value, ...]], str]]:
    f, trig = FIELD_OF[kind], TRIGGER_OF[kind]
    yield {f: ("off", "got")}, ""
    yield {f: "on", trig: False}, ""
    yield {f: "on", trig: True}, "due"
    yield {f: "late"}, "late"


def _arrival(kind: str, status: str, conveys: bool) -> Outcome:
    outputs: dict[str, Value] = {"kind": kind}
    if conveys:
        outputs["Event"] = EVENT_OF[kind]
    rules = ("RPC-SRV-NOTIF-07", "RPC-SRV-NOTIF-09") if status == "late" else ("RPC-SRV-NOTIF-07",)
    return out(Returns(1, "notified"), f"{kind} notification", rules=rules, outputs=outputs,
               also={FIELD_OF[kind]: "got" if status == "due" else "off"})


def _wait_rows() -> list[Row]:
    op = "server_wait_notification"
    rows: list[Row] = [not_offered(op, ("RPC-SRV-NOTIF-05",), NO_CALL,
                                   state={"call": ("none", "done")})]
    nothing = out(Returns(0, "no notification"), "nothing arrived")
    for dguard, dstatus in _fragments("ClientDisconnect"):
        for cguard, cstatus in _fragments("CallCancel"):
            deliverable = [(k, s) for k, s in (("ClientDisconnect", dstatus),
                                               ("CallCancel", cstatus)) if s]
            for conveys, ntypes in ((True, CONVEYS_KIND), (False, ("none", "Event", "Ioc"))):
                state = {"call": "held", "ntype": ntypes, **dguard, **cguard}
                arrivals = [_arrival(k, s, conveys) for k, s in deliverable]
                rows.append(row(op, ("RPC-SRV-NOTIF-07",), *arrivals, nothing, state=state,
                                args={"timeout": "zero"},
                                note="a notification travels: a look without waiting may come "
                                     "before it"))
                finite: list[Outcome] = list(arrivals)
                if not deliverable:
                    finite.append(nothing)
                elif deliverable == [("CallCancel", "due")]:
                    # D-20: the cancel notification may never reach a user subscriber
                    finite.append(out(Returns(0, "no notification"),
                                      "the cancel notification did not reach the subscriber",
                                      rules=("RPC-SRV-NOTIF-01",), when=MAY_BE_ABSENT))
                rules = ("RPC-SRV-NOTIF-07", "RPC-SRV-NOTIF-01")
                rows.append(row(op, rules, *finite, state=state, args={"timeout": "finite"},
                                note="a notification the runtime owes arrives within the wait; "
                                     "one at a time"))
    return rows


def _client_rows() -> list[Row]:
    rows: list[Row] = []
    for op in ("RpcAsyncCancelCall", "client_disconnect"):
        rows += [
            not_offered(op, ("RPC-SRV-NOTIF-05",), NO_CALL, state={"call": ("none", "done")}),
            not_offered(op, ("RPC-SRV-NOTIF-07",), CLIENT_GONE,
                        state={"call": "held", "disconnected": True}),
        ]
    rows += [
        row("RpcAsyncCancelCall", ("RPC-SRV-NOTIF-07", "RPC-CLI-CANCEL-01", "RPC-CLI-CANCEL-03"),
            out(RPC_OK, "the server is told of the cancel", cancelled=True),
            state={"call": "held", "disconnected": False},
            note="a second cancel of the same call is accepted too; the CallCancel "
                 "notification still comes at most once (RPC-SRV-NOTIF-07)"),
        row("client_disconnect", ("RPC-SRV-NOTIF-07",),
            out(RPC_OK, "the connection is gone", disconnected=True),
            state={"call": "held", "disconnected": False}),
        row("notif_call", ("RPC-SRV-NOTIF-05", "RPC-CLI-CALL-01"),
            out(RPC_OK, "a new call, with no subscription", call="held", cancelled=False,
                disconnected=False, ntype="none", disc="off", canc="off"),
            state={"call": ("none", "done")},
            note="a subscription covers one call: the new call starts with none"),
        not_offered("notif_call", ("RPC-SRV-NOTIF-05",),
                    "the test server still holds this slot's call", state={"call": "held"}),
    ]
    return rows


def _complete_rows() -> list[Row]:
    op = "server_complete"
    unsubscribed = ("off", "late")
    return [
        not_offered(op, ("RPC-SRV-NOTIF-05",), NO_CALL, state={"call": ("none", "done")}),
        undefined(op, ("RPC-SRV-NOTIF-06", "RPC-SRV-NOTIF-09"),
                  "the call completes while still subscribed: the server may crash later",
                  state={"call": "held", "disc": ACTIVE}),
        undefined(op, ("RPC-SRV-NOTIF-06", "RPC-SRV-NOTIF-09"),
                  "the call completes while still subscribed: the server may crash later",
                  state={"call": "held", "disc": unsubscribed, "canc": ACTIVE}),
        not_offered(op, ("RPC-SRV-NOTIF-09",),
                    "a notification is still queued: the server compares NotificationsQueued "
                    "with what it received before it lets its state go, so the harness waits "
                    "for it first",
                    state={"call": "held", "disc": "late", "canc": unsubscribed}),
        not_offered(op, ("RPC-SRV-NOTIF-09",),
                    "a notification is still queued: the harness waits for it first",
                    state={"call": "held", "disc": "off", "canc": "late"}),
        row(op, ("RPC-SRV-NOTIF-09", "RPC-SRV-COMPLETE-01"),
            out(RPC_OK, "completed", call="done"),
            state={"call": "held", "disc": "off", "canc": "off", "disconnected": False}),
        row(op, ("RPC-SRV-NOTIF-09", "RPC-SRV-COMPLETE-06"),
            out(RPC_OK, "completed; the reply has no client to go to", call="done"),
            out(FAILED, "the client is gone: the completion fails", call="done"),
            state={"call": "held", "disc": "off", "canc": "off", "disconnected": True}),
    ]


ROWS: tuple[Row, ...] = (
    *_client_rows(),
    *_subscribe_rows(),
    *_unsubscribe_rows(),
    *_wait_rows(),
    *_complete_rows(),
)

MACHINE = Machine(
    name="rpc_notif",
    family="rpc",
    title="RPC server notifications (RpcServerSubscribeForNotification, "
          "RpcServerUnsubscribeForNotification)",
    doc=__doc__ or "",
    fields=(
        Field("call", ("none", "held", "done"), "the call the test server holds"),
        Field("cancelled", (False, True), "the client cancelled the call"),
        Field("disconnected", (False, True), "the client dropped its connection"),
        Field("ntype", ("none", *USED_TYPES), "the notification type of the subscriptions"),
        Field("disc", SUBSCRIPTION, "the RpcNotificationClientDisconnect subscription"),
        Field("canc", SUBSCRIPTION, "the RpcNotificationCallCancel subscription"),
    ),
    operations=OPERATIONS,
    rows=ROWS,
    initial=(("none", False, False, "none", "off", "off"),),
    codes=Family.RPC_STATUS,
    quiescent=(("call", ("none", "done")),),
    diagram_fields=("call", "disc", "canc"),
    slot_prefix="n",
    timed=(("server_wait_notification", "timeout"),),
)
