"""RPC server notifications (spec/DOMAIN.md section 2.18): RpcServerSubscribeForNotification and
RpcServerUnsubscribeForNotification, on real threads.

* `NotifCall`: one asynchronous call the test server's manager routine holds. The routine runs
  on a dispatch thread of its own (`DispatchThread`), which executes the server's commands in
  order; on that thread a NULL binding names the call (RPC-SRV-NOTIF-02).
* `NotificationInfo`: where a notification goes, by NotificationType: an event (Event), an
  APC routine (Apc), a completion port and key (Ioc), or a callback (Callback). The runtime
  copies it when a subscription succeeds (RPC-SRV-NOTIF-03).
* `NotifRuntime`: the subscriptions of each call. When the client cancels or disconnects, a
  runtime queues the notification for each subscription of that kind, at most once per call and
  kind (RPC-SRV-NOTIF-07), and delivers it through the copied NotificationInfo. The unsubscribe
  reports how many it queued (RPC-SRV-NOTIF-09).

When a queued notification arrives, and in which order two arrive, the documentation does not say
(a notification travels: RPC-SRV-NOTIF-07). The reference's choice: its notification thread
delivers what is queued for a call when the server waits for a notification (`deliver`), a
ClientDisconnect ahead of anything else still queued for the call (a dropped connection ends what
was pending on it). So a cancel followed by a disconnect reaches a server that waits only
afterwards disconnect first, and a server that waits between the two gets the cancel first: the
harness, which plays the server, reaches both orders.
"""

from __future__ import annotations

import copy
import queue
import threading
from collections.abc import Callable
from dataclasses import dataclass, field

from callgate.conformance.implementations.reference.host import COMMAND_SECONDS, Host, WorkerPool
from callgate.model import codes

RPC_S_OK = codes.RPC_S_OK.value
RPC_S_INVALID_ARG = codes.RPC_S_INVALID_ARG.value
RPC_S_CANNOT_SUPPORT = codes.RPC_S_CANNOT_SUPPORT.value
RPC_S_NO_CALL_ACTIVE = codes.RPC_S_NO_CALL_ACTIVE.value

# RPC_NOTIFICATIONS (a bitmask) and RPC_NOTIFICATION_TYPES.
RpcNotificationClientDisconnect = 1
RpcNotificationCallCancel = 2
RPC_NOTIFICATION_TYPES = {"None": 0, "Event": 1, "Apc": 2, "Ioc": 3, "Hwnd": 4, "Callback": 5}
# RPC_ASYNC_EVENT values an APC or callback routine receives.
RpcClientDisconnect = 3
RpcClientCancel = 4
EVENT_OF = {RpcNotificationClientDisconnect: RpcClientDisconnect,
            RpcNotificationCallCancel: RpcClientCancel}

_current = threading.local()  # the call the current thread's manager routine runs, if any


@dataclass
class NotificationInfo:
    """RPC_ASYNC_NOTIFICATION_INFO, reduced to what each type uses. `sink` is what the type
    names: the event to set, the APC or callback routine (called with the RPC_ASYNC_EVENT), or
    the completion port (a queue of (key, RPC_ASYNC_EVENT))."""

    sink: Callable[[int], None]


@dataclass(eq=False)
class Subscription:
    type: str
    info: NotificationInfo
    queued: int = 0


@dataclass(eq=False)
class NotifCall:
    """One held call: its subscriptions by kind, and what the client did."""

    dispatch: DispatchThread
    subscriptions: dict[int, Subscription] = field(default_factory=dict)
    notified: set[int] = field(default_factory=set)   # kinds already queued for this call
    pending: list[tuple[int, NotificationInfo]] = field(default_factory=list)  # not delivered
    cancelled: bool = False
    disconnected: bool = False
    completed: bool = False
    lock: threading.Lock = field(default_factory=threading.Lock)


class DispatchThread:
    """The thread the manager routine runs on: it executes commands in order."""

    def __init__(self, pool: WorkerPool) -> None:
        self._commands: queue.SimpleQueue[tuple[Callable[[], int], queue.SimpleQueue[int]] | None]
        self._commands = queue.SimpleQueue()
        self.call: NotifCall | None = None
        pool.submit(self._loop)

    def _loop(self) -> None:
        _current.call = self.call
        while True:
            item = self._commands.get()
            if item is None:
                _current.call = None
                return
            function, answer = item
            _current.call = self.call
            answer.put(function())

    def run(self, function: Callable[[], int]) -> int:
        answer: queue.SimpleQueue[int] = queue.SimpleQueue()
        self._commands.put((function, answer))
        return answer.get(timeout=COMMAND_SECONDS)

    def close(self) -> None:
        self._commands.put(None)


class NotifRuntime:
    """The server side of the RPC runtime for notifications: calls, subscriptions, delivery."""

    def __init__(self, host: Host, pool: WorkerPool) -> None:
        self.host = host
        self.pool = pool
        self._latest: NotifCall | None = None
        self._history: dict[int, Subscription] = {}  # the last subscription of each kind

    # --- the client's side --------------------------------------------------------------------

    def dispatch(self) -> NotifCall:
        """A new asynchronous call arrives: a dispatch thread runs its manager routine."""
        thread = DispatchThread(self.pool)
        call = NotifCall(thread)
        if self.host.fault("notif_subscriptions_per_binding"):
            call.subscriptions = {k: Subscription(sub.type, sub.info)
                                  for k, sub in self._history.items()}
        thread.call = call
        self._latest = call
        thread.run(lambda: RPC_S_OK)  # the routine has started and holds the call
        return call

    def cancel(self, call: NotifCall) -> int:
        """RpcAsyncCancelCall(pAsync, FALSE): the server is told."""
        with call.lock:
            call.cancelled = True
        self._notify(call, RpcNotificationCallCancel)
        return RPC_S_OK

    def disconnect(self, call: NotifCall) -> int:
        """The client's connection goes away."""
        with call.lock:
            call.disconnected = True
        self._notify(call, RpcNotificationClientDisconnect)
        return RPC_S_OK

    def _notify(self, call: NotifCall, kind: int) -> None:
        """Queue `kind` for its subscription, once per call; `deliver` sends it."""
        with call.lock:
            if kind in call.notified and not self.host.fault("notif_repeats"):
                return
            for subscribed, sub in call.subscriptions.items():
                if subscribed == kind or self.host.fault("notif_unsubscribed_kind"):
                    call.notified.add(kind)
                    sub.queued += 1
                    call.pending.append((kind, sub.info))

    def deliver(self, call: NotifCall) -> None:
        """The notification thread: deliver what is queued for `call`, ClientDisconnect first,
        through the NotificationInfo copied at the subscription (the event set, the APC queued
        and run, the completion posted, the callback called) before the server's wait looks."""
        with call.lock:
            queued, call.pending = call.pending, []
        queued.sort(key=lambda item: item[0] != RpcNotificationClientDisconnect)  # stable
        for kind, info in queued:
            self.host.pause()
            info.sink(EVENT_OF[kind])

    # --- the server's side --------------------------------------------------------------------

    def _call_of(self, binding: NotifCall | None) -> NotifCall | None:
        if binding is None and self.host.fault("notif_null_binding_any_thread"):
            return getattr(_current, "call", None) or self._latest
        return binding if binding is not None else getattr(_current, "call", None)

    def RpcServerSubscribeForNotification(self, binding: NotifCall | None, notification: int,
                                          notification_type: int,
                                          info: NotificationInfo) -> int:
        if notification not in (1, 2, 3):
            return RPC_S_CANNOT_SUPPORT
        types = {v: k for k, v in RPC_NOTIFICATION_TYPES.items()}
        kind_name = types.get(notification_type, "None")
        if kind_name == "None" and self.host.fault("notif_type_none_accepted"):
            return RPC_S_OK
        if kind_name in ("None", "Hwnd"):
            return RPC_S_INVALID_ARG
        if notification == 3 and (kind_name in ("Event", "Ioc")
                                  or self.host.fault("notif_both_refused")):
            return RPC_S_INVALID_ARG  # one kind per subscription for these types
        call = self._call_of(binding)
        if call is None:
            return RPC_S_NO_CALL_ACTIVE
        kept = info if self.host.fault("notif_info_not_copied") else copy.copy(info)
        kinds = [k for k in (RpcNotificationClientDisconnect, RpcNotificationCallCancel)
                 if k & notification]
        with call.lock:
            if call.completed:
                return RPC_S_NO_CALL_ACTIVE
            if any(k in call.subscriptions for k in kinds):
                return RPC_S_INVALID_ARG
            for k in kinds:  # one subscription per kind, sharing the copied info
                call.subscriptions[k] = Subscription(kind_name, kept)
                self._history[k] = Subscription(kind_name, kept)
        return RPC_S_OK

    def RpcServerUnsubscribeForNotification(self, binding: NotifCall | None, notification: int,
                                            queued: list[int] | None) -> int:
        if notification not in (1, 2):
            return RPC_S_CANNOT_SUPPORT
        if queued is None:
            return RPC_S_INVALID_ARG
        call = self._call_of(binding)
        if call is None:
            return RPC_S_NO_CALL_ACTIVE
        with call.lock:
            sub = call.subscriptions.pop(notification, None)
        if sub is None:
            return RPC_S_INVALID_ARG
        count = sub.queued
        if len(call.notified) != count and self.host.fault("unsubscribe_counts_call"):
            count = len(call.notified)  # the blind fault: every kind queued for the call
        queued[:] = [0 if self.host.fault("notif_queued_zero") else count]
        return RPC_S_OK

    def complete(self, call: NotifCall) -> int:
        """RpcAsyncCompleteCall on the server handle; the routine's thread ends."""
        with call.lock:
            call.completed = True
            call.subscriptions.clear()
        call.dispatch.close()
        return RPC_S_OK

    def close(self, call: NotifCall) -> None:
        with call.lock:
            done = call.completed
            call.completed = True
        if not done:
            call.dispatch.close()
