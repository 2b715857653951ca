"""The liveness properties as data: for each machine, what "a call in flight", "finished",
"notified" and "held by the test server" are in its fields and operations, and which rules
promise each property.

These conditions are written here, apart from the family tables, from the rules' text: they say
what the properties are about in the tables' vocabulary (fields, operations, codes), never what
the tables answer. `callgate.model.liveness.checks` decides them on the state graph.
"""

from __future__ import annotations

from dataclasses import dataclass

from callgate.model import codes
from callgate.model.transitions import Value

Guard = tuple[tuple[str, tuple[Value, ...]], ...]
"""field -> allowed values, as a row's guard (every listed field must hold one of its values)."""


@dataclass(frozen=True)
class Holding:
    """Calls the test server holds, counted from one field: 1 when the field holds one of
    `values`, or, with no values, the field's value as a number (a bool counts 0 or 1)."""

    field: str
    values: tuple[Value, ...] = ()
    doc: str = ""


@dataclass(frozen=True)
class Calls:
    """How the client's calls on one machine begin and end.

    A call begins with a step from a state outside `in_flight` into it. It is finished by a step
    of a `finish` operation from a state in flight whose code is not one of `not_final` (the "not
    yet" answers); it is abandoned by a step of an `abandon` operation (no Finish_, no result).
    """

    machine: str
    in_flight: Guard
    finish: tuple[str, ...]
    not_final: tuple[codes.Code, ...] = ()
    abandon: tuple[str, ...] = ()


@dataclass(frozen=True)
class Finishes:
    """Every call that begins is finished exactly once, unless the client abandons it."""

    name: str
    rules: tuple[str, ...]
    calls: Calls
    doc: str


@dataclass(frozen=True)
class NotifiedOnce:
    """Every call gets at most one completion notification; one whose notification type asks for
    one gets it; none arrives before the call completed, outside a call, or for a call that asked
    for none.

    `op` observes notifications; a step of it returning `notified` is one. `begun`: a call has
    begun on the handle (and it was not initialised again since). `completed`: the call's result
    is on its way or delivered (a notification may arrive). `expects`: the call asked for a
    notification.
    """

    name: str
    rules: tuple[str, ...]
    calls: Calls
    op: str
    notified: int
    begun: Guard
    completed: Guard
    expects: Guard
    doc: str


@dataclass(frozen=True)
class ServerEnds:
    """Every call the test server holds is ended by the server (completed, aborted, raised,
    signalled): no client step makes the model forget a held call, and the server does not hold
    one forever."""

    name: str
    rules: tuple[str, ...]
    machine: str
    holds: tuple[Holding, ...]
    doc: str


Property = Finishes | NotifiedOnce | ServerEnds

COM_CALLS = Calls(
    machine="com_call",
    # COM-BEGIN-02: a call is in flight from Begin_ until Finish_ returns (PENDING or SIGNALED).
    in_flight=(("phase", ("PENDING", "SIGNALED")),),
    finish=("Finish_",),
    abandon=("Release",),  # COM-REL-01: the final Release without Finish_ abandons the call
)

RPC_CALLS = Calls(
    machine="rpc_call",
    # From the asynchronous stub's return (RPC-CLI-CALL-01) to a final RpcAsyncCompleteCall
    # (RPC-CLI-COMPLETE-06): outstanding, reply on its way, or seen but not yet completed.
    in_flight=(("phase", ("PENDING", "SENT", "READY")),),
    finish=("RpcAsyncCompleteCall",),
    not_final=(codes.RPC_S_ASYNC_CALL_PENDING,),  # RPC-CLI-COMPLETE-01: not final
)

NOTIFYING = ("Event", "Apc", "Ioc", "Hwnd", "Callback")

PROPERTIES: tuple[Property, ...] = (
    Finishes(
        "com.begun_call_is_finished",
        ("COM-BEGIN-01", "COM-BEGIN-02", "COM-SRV-05", "COM-WAIT-02", "COM-FIN-01", "COM-FIN-05",
         "COM-CANCEL-03", "COM-REL-01"),
        COM_CALLS,
        "A begun COM call can be finished: the server signals (COM-SRV-05), Wait then says "
        "S_OK and Finish_ may be called (COM-WAIT-02), Finish_ ends the call (COM-FIN-01), "
        "also after a cancel (COM-FIN-05, COM-CANCEL-03); the only other way out is the final "
        "Release (COM-REL-01).",
    ),
    Finishes(
        "rpc.call_completed_exactly_once",
        ("RPC-CLI-CALL-01", "RPC-CLI-COMPLETE-01", "RPC-CLI-COMPLETE-06", "RPC-CLI-COMPLETE-07",
         "RPC-CLI-CANCEL-03", "RPC-CLI-CANCEL-04", "RPC-SRV-COMPLETE-01", "RPC-SRV-ABORT-01",
         "RPC-SRV-EXC-01"),
        RPC_CALLS,
        "Every outstanding RPC call gets exactly one final RpcAsyncCompleteCall: the server ends "
        "it (RPC-SRV-COMPLETE-01, RPC-SRV-ABORT-01, RPC-SRV-EXC-01), RPC_S_ASYNC_CALL_PENDING is "
        "not final (RPC-CLI-COMPLETE-01), any other result is, once (RPC-CLI-COMPLETE-06, -07), "
        "and a cancel does not replace completing (RPC-CLI-CANCEL-03, -04).",
    ),
    NotifiedOnce(
        "rpc.call_notified_exactly_once",
        ("RPC-CLI-NOTIFY-01", "RPC-CLI-NOTIFY-02", "RPC-CLI-NOTIFY-03", "RPC-CLI-NOTIFY-04",
         "RPC-CLI-NOTIFY-05", "RPC-CLI-NOTIFY-06", "RPC-STATE-02", "RPC-CLI-CALL-02",
         "RPC-CLI-CANCEL-02", "RPC-CLI-CANCEL-04"),
        RPC_CALLS,
        op="wait_notification",
        notified=1,
        begun=(("phase", ("PENDING", "SENT", "READY", "DONE")),),
        completed=(("phase", ("SENT", "READY", "DONE")),),
        expects=(("notify", NOTIFYING),),
        doc="The runtime notifies the client once when the call completes (RPC-CLI-NOTIFY-01 to "
            "-05, RPC-STATE-02), promptly after an abortive cancel (RPC-CLI-CANCEL-02), and not "
            "at all with NotificationType None (RPC-CLI-NOTIFY-06) or for a call whose stub "
            "raised (RPC-CLI-CALL-02).",
    ),
    ServerEnds(
        "com.server_ends_every_call",
        ("COM-SRV-05", "COM-CANCEL-04", "COM-CANCEL-11", "COM-REL-01"),
        "com_call",
        (Holding("held", doc="the current call's Begin_ processing"),
         Holding("orphan", doc="calls the client abandoned (released, or cancelled and "
                               "finished) that the server still processes")),
        "The test server ends every Begin_ it holds by signalling (COM-SRV-05), also after a "
        "cancel (COM-CANCEL-04: the server may go on; COM-CANCEL-11: its late result is "
        "discarded) and after the client released the call (COM-REL-01).",
    ),
    ServerEnds(
        "rpc.server_ends_every_call",
        ("RPC-SRV-01", "RPC-SRV-02", "RPC-SRV-COMPLETE-01", "RPC-SRV-ABORT-01", "RPC-SRV-EXC-01",
         "RPC-SRV-CANCEL-02"),
        "rpc_call",
        (Holding("server", ("held",), doc="the manager routine holds the server handle"),),
        "The manager routine ends every dispatched call by RpcAsyncCompleteCall, "
        "RpcAsyncAbortCall or raising (RPC-SRV-COMPLETE-01, RPC-SRV-ABORT-01, RPC-SRV-EXC-01), "
        "after which the handle is gone (RPC-SRV-02), a cancelled call too (RPC-SRV-CANCEL-02).",
    ),
)


def machine_of(prop: Property) -> str:
    """The machine a property is about."""
    return prop.machine if isinstance(prop, ServerEnds) else prop.calls.machine
