"""The reference adapter's `rpc_notif` slot (spec/DOMAIN.md section 2.18): one held call of the
test server, its subscriptions, and what the server has received through them.

The harness plays both the client and the manager routine. For each successful subscription it
keeps the NotificationInfo target it passed (an event for Event, a completion port for Ioc, a
routine for Apc and Callback); every target reports what reaches it to one queue of the slot, so
a wait looks at all of them at once. With `info` reused, the harness overwrites its
NotificationInfo right after the call returns; a runtime that copied it still delivers to the
original target (RPC-SRV-NOTIF-03).
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

from callgate.conformance.implementations.reference import rpc_notif as rn
from callgate.conformance.implementations.reference.host import Host, WorkerPool
from callgate.conformance.protocol.adapter import AdapterFault, Observation, Request

KIND_BITS = {"ClientDisconnect": rn.RpcNotificationClientDisconnect,
             "CallCancel": rn.RpcNotificationCallCancel, "both": 3, "other": 4}
KIND_OF_EVENT = {rn.RpcClientDisconnect: "ClientDisconnect", rn.RpcClientCancel: "CallCancel"}


@dataclass(eq=False)
class Target:
    """What one subscription's NotificationInfo names, as the harness set it up."""

    kinds: tuple[str, ...]
    type: str
    arrivals: queue.SimpleQueue[tuple[Target, int]]
    event: threading.Event = field(default_factory=threading.Event)  # for type Event

    def sink(self, rpc_event: int) -> None:
        if self.type == "Event":  # SetEvent: a second signal before the wait is the same one
            if self.event.is_set():
                return
            self.event.set()
        self.arrivals.put((self, rpc_event))


@dataclass(eq=False)
class NotifSlot:
    runtime: rn.NotifRuntime
    call: rn.NotifCall | None = None
    arrivals: queue.SimpleQueue[tuple[Target, int]] = field(default_factory=queue.SimpleQueue)
    stale: queue.SimpleQueue[tuple[Target, int]] = field(default_factory=queue.SimpleQueue)

    @classmethod
    def open(cls, host: Host, pool: WorkerPool) -> NotifSlot:
        return cls(rn.NotifRuntime(host, pool))

    def close(self) -> None:
        if self.call is not None:
            self.runtime.close(self.call)


def _held(s: NotifSlot, request: Request) -> rn.NotifCall:
    if s.call is None or s.call.completed:
        raise AdapterFault(f"{request.slot}.{request.op}: the test server holds no call; the "
                           f"model does not offer this operation here")
    return s.call


def _arg(request: Request, name: str) -> str:
    value = request.args.get(name)
    if not isinstance(value, str):
        raise KeyError(f"argument {name!r} is missing or not a string")
    return value


def notif_call(s: NotifSlot, request: Request) -> Observation:
    if s.call is not None and not s.call.completed:
        raise AdapterFault(f"{request.slot}.notif_call: the test server still holds the call")
    while not s.arrivals.empty():  # nothing of the last call is left to collect
        s.arrivals.get_nowait()
    s.call = s.runtime.dispatch()
    return Observation(rn.RPC_S_OK)


def subscribe(s: NotifSlot, request: Request) -> Observation:
    call = _held(s, request)
    kinds = _arg(request, "kinds")
    ntype = _arg(request, "type")
    binding = _arg(request, "binding")
    target = Target(("ClientDisconnect", "CallCancel") if kinds == "both" else (kinds,), ntype,
                    s.arrivals)
    info = rn.NotificationInfo(target.sink)

    def run() -> int:
        return s.runtime.RpcServerSubscribeForNotification(
            call if binding == "explicit" else None, KIND_BITS[kinds],
            rn.RPC_NOTIFICATION_TYPES[ntype], info)
    code = run() if binding == "NULL_other_thread" else call.dispatch.run(run)
    if code == rn.RPC_S_OK and _arg(request, "info") == "reused":
        # The caller may reuse NotificationInfo once the call returned (RPC-SRV-NOTIF-03).
        info.sink = Target(target.kinds, ntype, s.stale).sink
    return Observation(code)


def unsubscribe(s: NotifSlot, request: Request) -> Observation:
    call = _held(s, request)
    kind = KIND_BITS[_arg(request, "kind")]
    queued: list[int] | None = [] if _arg(request, "queued") == "given" else None
    code = call.dispatch.run(
        lambda: s.runtime.RpcServerUnsubscribeForNotification(call, kind, queued))
    if code == rn.RPC_S_OK and queued:
        return Observation(code, {"queued": queued[0]})
    return Observation(code)


def wait(s: NotifSlot, request: Request) -> Observation:
    s.runtime.deliver(_held(s, request))  # the server waits: the runtime delivers what it queued
    try:
        if _arg(request, "timeout") == "zero":
            target, rpc_event = s.arrivals.get_nowait()
        else:
            target, rpc_event = s.arrivals.get(timeout=request.wait_ms / 1000)
    except queue.Empty:
        return Observation(0)
    if target.type == "Event":
        target.event.clear()  # the harness's wait consumed the signal
    # Which subscription it came through; with both kinds in one, the routine's Event says.
    kind = target.kinds[0] if len(target.kinds) == 1 else KIND_OF_EVENT.get(rpc_event, "?")
    outputs: dict[str, str | int] = {"kind": kind}
    if target.type in ("Apc", "Callback"):
        outputs["Event"] = rpc_event
    return Observation(1, outputs)


def cancel(s: NotifSlot, request: Request) -> Observation:
    return Observation(s.runtime.cancel(_held(s, request)))


def disconnect(s: NotifSlot, request: Request) -> Observation:
    return Observation(s.runtime.disconnect(_held(s, request)))


def complete(s: NotifSlot, request: Request) -> Observation:
    return Observation(s.runtime.complete(_held(s, request)))


HANDLERS: Mapping[str, Callable[[NotifSlot, Request], Observation]] = {
    "notif_call": notif_call,
    "RpcServerSubscribeForNotification": subscribe,
    "RpcServerUnsubscribeForNotification": unsubscribe,
    "server_wait_notification": wait,
    "RpcAsyncCancelCall": cancel,
    "client_disconnect": disconnect,
    "server_complete": complete,
}
